//! The connection-slot table: which connections exist and what state each is
//! in. Pure bookkeeping; every decision about slots is made in `core/mod.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::conn_table::ConnTable;
use super::ordered::OrderedDeque;
use super::{ConnId, OwnerId, Ticket};

/// Where a connection is in its life. A closed connection has no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    /// Reserved against `max_size`, waiting for a connect permit.
    Pending,
    /// Being established by the driver.
    Connecting,
    /// Established, held by nobody; `order` is its place in the idle list.
    Idle { order: u64 },
    /// Established and checked out.
    InUse { holder: OwnerId },
    /// Established, its session state being reset by the driver between
    /// owners: neither idle nor grantable.
    Resetting,
}

/// One connection slot.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub state: SlotState,
    /// The pool generation this connection belongs to.
    pub generation: u64,
    /// Owners pinned to this connection.
    pub pinned: BTreeSet<OwnerId>,
    /// The waiter whose request opened this connection: a connect failure is
    /// reported to it.
    pub requested_by: Option<Ticket>,
    /// When it was established (its lifetime starts there).
    pub born: Duration,
    /// When it entered its current state (connect start, idle since,
    /// checked out at), on the driver's clock.
    pub since: Duration,
    /// Whether its current checkout was reported as a leak.
    pub leak_reported: bool,
    /// Whether an owner may have left session state on it since it was
    /// established or last reset (see [`Reset`](super::Reset)).
    pub dirty: bool,
    /// Under [`WakePolicy::Eventual`](super::WakePolicy::Eventual): from
    /// when its next checkin hands it to a waiter directly.
    pub fair_from: Duration,
}

/// All live slots plus indexes over them.
///
/// Costs (S = live slots ≤ `max_size`): lookups and state changes are
/// O(log S); a connection going idle, the most or least recently idle
/// leaving, a pending slot starting and a slot being created are O(1);
/// a slot being removed and scans for a connection with a property are
/// O(S).
#[derive(Clone, Debug, Default)]
pub(super) struct Slots {
    slots: ConnTable<Slot>,
    /// Idle connections in the order they became idle (last = most recent),
    /// with their place in that order. Not a `BTreeMap`: under contention
    /// with barging (`Eventual`) every checkin puts a connection here and
    /// the next checkout takes it, and inserting into and removing from a
    /// B-tree was 250 of the 967 instructions of the core's checkout +
    /// checkin (`benches/instructions.sh`, `pinpool-core-checkout-checkin`).
    idle: OrderedDeque<(u64, ConnId)>,
    /// Pending slots in creation order (ids count up).
    pending: OrderedDeque<ConnId>,
    connecting: usize,
    in_use: usize,
    resetting: usize,
    next_id: u64,
    next_idle_order: u64,
}

impl Slots {
    pub fn get(&self, id: ConnId) -> Option<&Slot> {
        self.slots.get(id)
    }

    /// The slot `id`. Callers name only ids they found in the table.
    pub fn slot(&self, id: ConnId) -> &Slot {
        self.slots.get(id).expect("slot ids come from the table")
    }

    pub fn slot_mut(&mut self, id: ConnId) -> &mut Slot {
        self.slots
            .get_mut(id)
            .expect("slot ids come from the table")
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Slot)> {
        self.slots.iter()
    }

    pub fn total(&self) -> usize {
        self.slots.len()
    }
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
    pub fn connecting(&self) -> usize {
        self.connecting
    }
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
    pub fn in_use(&self) -> usize {
        self.in_use
    }
    pub fn resetting(&self) -> usize {
        self.resetting
    }

    /// Reserves a new slot, numbered after every earlier one.
    pub fn create_pending(&mut self, generation: u64, requested_by: Option<Ticket>) -> ConnId {
        self.next_id += 1;
        let id = ConnId(self.next_id);
        self.slots.push(
            id,
            Slot {
                state: SlotState::Pending,
                generation,
                pinned: BTreeSet::new(),
                requested_by,
                born: Duration::ZERO,
                since: Duration::ZERO,
                leak_reported: false,
                dirty: false,
                fair_from: Duration::ZERO,
            },
        );
        self.pending.insert(id);
        id
    }

    /// Moves the oldest pending slot to `Connecting` at `now`.
    pub fn start_oldest_pending(&mut self, now: Duration) -> Option<ConnId> {
        let id = self.pending.pop_first()?;
        let slot = self.slot_mut(id);
        slot.state = SlotState::Connecting;
        slot.since = now;
        self.connecting += 1;
        Some(id)
    }

    /// Ids of the pending slots (unstarted, so still free to re-generation).
    pub fn pending_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.pending.iter()
    }

    /// Marks an established connection idle since `now` (most recent in
    /// idle order).
    pub fn set_idle(&mut self, id: ConnId, now: Duration) {
        self.next_idle_order += 1;
        let order = self.next_idle_order;
        self.set_state(id, SlotState::Idle { order }, now);
        self.idle.insert((order, id));
    }

    /// Marks a connection checked out by `holder` at `now`.
    pub fn set_in_use(&mut self, id: ConnId, holder: OwnerId, now: Duration) {
        self.set_state(id, SlotState::InUse { holder }, now);
        self.in_use += 1;
    }

    /// Marks a connection being reset since `now`; it is clean once the
    /// reset is done.
    pub fn set_resetting(&mut self, id: ConnId, now: Duration) {
        self.set_state(id, SlotState::Resetting, now);
        self.slot_mut(id).dirty = false;
        self.resetting += 1;
    }

    /// Forgets a slot, whatever its state.
    pub fn remove(&mut self, id: ConnId) -> Slot {
        let slot = self.slots.remove(id).expect("slot ids come from the table");
        self.leave(id, slot.state);
        slot
    }

    /// Idle connections, most recently idle first.
    pub fn idle_newest_first(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.idle.iter().rev().map(|(_, id)| id)
    }

    /// Idle connections, least recently idle first.
    pub fn idle_oldest_first(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.idle.iter().map(|(_, id)| id)
    }

    /// Ids of the checked-out connections.
    pub fn in_use_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        (self.slots.iter())
            .filter(|(_, slot)| matches!(slot.state, SlotState::InUse { .. }))
            .map(|(id, _)| id)
    }

    /// Ids of the connections being established.
    pub fn connecting_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        (self.slots.iter())
            .filter(|(_, slot)| slot.state == SlotState::Connecting)
            .map(|(id, _)| id)
    }

    /// The `n`th live slot in id order (n < `total()`).
    pub fn nth(&self, n: usize) -> ConnId {
        self.slots.iter().nth(n).expect("n < total").0
    }

    /// The `n`th idle connection in idle order (n < `idle()`).
    pub fn nth_idle(&self, n: usize) -> Option<ConnId> {
        self.idle.iter().nth(n).map(|(_, id)| id)
    }

    /// Pending and connecting slots nobody is pinned to: on their way for
    /// whoever asks first. O(S).
    pub fn unpinned_on_the_way(&self) -> usize {
        (self.slots.iter())
            .map(|(_, slot)| slot)
            .filter(|s| matches!(s.state, SlotState::Pending | SlotState::Connecting))
            .filter(|s| s.pinned.is_empty())
            .count()
    }

    pub fn is_idle(&self, id: ConnId) -> bool {
        matches!(self.get(id).map(|s| s.state), Some(SlotState::Idle { .. }))
    }

    pub fn holder(&self, id: ConnId) -> Option<OwnerId> {
        match self.get(id)?.state {
            SlotState::InUse { holder } => Some(holder),
            _ => None,
        }
    }

    /// Records another holder for a checked-out connection (see
    /// [`Core::note_lease_holder`](super::Core::note_lease_holder)).
    pub fn set_holder(&mut self, id: ConnId, holder: OwnerId) {
        if let Some(Slot {
            state: SlotState::InUse { holder: held },
            ..
        }) = self.slots.get_mut(id)
        {
            *held = holder;
        }
    }

    /// Moves `id` to `state`, taking it out of the index of its old one
    /// (one lookup: this is every checkout's and checkin's path).
    fn set_state(&mut self, id: ConnId, state: SlotState, now: Duration) {
        let slot = self
            .slots
            .get_mut(id)
            .expect("slot ids come from the table");
        let old = std::mem::replace(&mut slot.state, state);
        slot.since = now;
        slot.leak_reported = false;
        self.leave(id, old);
    }

    /// Removes `id` from the index of `state`, the state it is leaving.
    fn leave(&mut self, id: ConnId, state: SlotState) {
        match state {
            SlotState::Pending => {
                self.pending.remove(id);
            }
            SlotState::Connecting => self.connecting -= 1,
            SlotState::Idle { order } => {
                self.idle.remove((order, id));
            }
            SlotState::InUse { .. } => self.in_use -= 1,
            SlotState::Resetting => self.resetting -= 1,
        }
    }
}
