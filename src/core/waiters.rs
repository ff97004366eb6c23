//! Waiter bookkeeping: who waits, for what, in which order, and who sleeps.
//! Pure bookkeeping; every decision about waiters is made in `core/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use super::{ConnId, OwnerId, Ticket};

/// What a waiter can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    /// Only this connection (a [`Pinning::Strict`](super::Pinning) pin).
    Conn(ConnId),
    /// Any connection.
    Any,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Waiter {
    pub owner: OwnerId,
    pub want: Want,
    /// Place in the sleep order; `None` once woken and not yet retried.
    pub sleep: Option<u64>,
    /// Times a later request took a connection this waiter could have used.
    pub bypassed: u64,
    /// Whether the connection it is granted pins its owner (false for an
    /// unpinned checkout).
    pub pins: bool,
    /// When its checkout started, on the driver's clock.
    pub since: Duration,
}

/// Every waiting ticket, indexed three ways.
///
/// Costs (W = waiters): insert, remove, "oldest waiter that can use
/// connection C" and waking the oldest sleeper are O(log W). Tickets are
/// issued in arrival order, so every queue here is a `BTreeSet<Ticket>` and
/// its first element is its oldest member: nothing ever scans all waiters on
/// a checkin.
#[derive(Clone, Debug, Default)]
pub(super) struct Waiters {
    all: BTreeMap<Ticket, Waiter>,
    /// Waiters bound to one connection.
    by_conn: HashMap<ConnId, BTreeSet<Ticket>>,
    /// Waiters that can use any connection.
    any: BTreeSet<Ticket>,
    /// Sleeping waiters in sleep order (Broadcast and Signal only).
    sleepers: BTreeMap<u64, Ticket>,
    by_owner: HashMap<OwnerId, Vec<Ticket>>,
    next_sleep: u64,
}

impl Waiters {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn get(&self, ticket: Ticket) -> Option<&Waiter> {
        self.all.get(&ticket)
    }

    /// All waiting tickets, oldest first.
    pub fn tickets(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.all.keys().copied()
    }

    pub fn insert(
        &mut self,
        ticket: Ticket,
        owner: OwnerId,
        want: Want,
        pins: bool,
        sleeping: bool,
        since: Duration,
    ) {
        self.all.insert(
            ticket,
            Waiter {
                owner,
                want,
                sleep: None,
                bypassed: 0,
                pins,
                since,
            },
        );
        self.queue_of(want).insert(ticket);
        self.by_owner.entry(owner).or_default().push(ticket);
        if sleeping {
            self.sleep(ticket);
        }
    }

    pub fn remove(&mut self, ticket: Ticket) -> Option<Waiter> {
        let waiter = self.all.remove(&ticket)?;
        self.unqueue(ticket, waiter.want);
        if let Some(order) = waiter.sleep {
            self.sleepers.remove(&order);
        }
        if let Some(tickets) = self.by_owner.get_mut(&waiter.owner) {
            tickets.retain(|t| *t != ticket);
            if tickets.is_empty() {
                self.by_owner.remove(&waiter.owner);
            }
        }
        Some(waiter)
    }

    /// The tickets `owner` is waiting with.
    pub fn of_owner(&self, owner: OwnerId) -> Vec<Ticket> {
        self.by_owner.get(&owner).cloned().unwrap_or_default()
    }

    pub fn set_want(&mut self, ticket: Ticket, want: Want) {
        let old = self.all[&ticket].want;
        self.unqueue(ticket, old);
        self.queue_of(want).insert(ticket);
        self.all.get_mut(&ticket).expect("checked above").want = want;
    }

    /// Rebinds every waiter of connection `from` to connection `to`.
    pub fn retarget(&mut self, from: ConnId, to: ConnId) {
        let Some(tickets) = self.by_conn.remove(&from) else {
            return;
        };
        let want = Want::Conn(to);
        for ticket in &tickets {
            self.all.get_mut(ticket).expect("queued tickets wait").want = want;
        }
        self.queue_of(want).extend(tickets);
    }

    /// Unbinds every waiter of connection `from`: they can use any.
    pub fn unbind(&mut self, from: ConnId) {
        let Some(tickets) = self.by_conn.remove(&from) else {
            return;
        };
        for ticket in &tickets {
            self.all.get_mut(ticket).expect("queued tickets wait").want = Want::Any;
        }
        self.any.extend(tickets);
    }

    /// The oldest waiter that can use connection `conn`: one bound to it,
    /// or, if `serves_any` (the core's rule: under
    /// [`Pinning::Exclusive`](super::Pinning) only a connection nobody is
    /// pinned to), one that can use any.
    pub fn oldest_for(&self, conn: ConnId, serves_any: bool) -> Option<Ticket> {
        let bound = self.by_conn.get(&conn).and_then(|q| q.first());
        let any = self.any.first().filter(|_| serves_any);
        match (bound, any) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Every waiter that could use `conn`: those bound to it and, if
    /// `serves_any` (see [`Waiters::oldest_for`]), the unbound ones.
    pub fn eligible_for(
        &self,
        conn: ConnId,
        serves_any: bool,
    ) -> impl Iterator<Item = Ticket> + '_ {
        let bound = self.by_conn.get(&conn).into_iter().flatten();
        let any = self.any.iter().filter(move |_| serves_any);
        bound.chain(any).copied()
    }

    /// Waiters bound to `conn`.
    pub fn bound_to(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, BTreeSet::len)
    }

    /// The `n`th oldest unbound waiter.
    pub fn nth_unbound(&self, n: usize) -> Option<Ticket> {
        self.any.iter().nth(n).copied()
    }

    /// Whether some waiter can use any connection.
    pub fn any_unbound(&self) -> bool {
        !self.any.is_empty()
    }

    /// The oldest unbound waiter whose grant will pin its owner (a Strict
    /// or Exclusive owner waiting to be bound). O(unbound waiters).
    pub fn oldest_unbound_pinning(&self) -> Option<Ticket> {
        self.any.iter().copied().find(|t| self.all[t].pins)
    }

    /// How many unbound waiters will pin their owner when granted.
    /// O(unbound waiters).
    pub fn unbound_pinning(&self) -> usize {
        self.any.iter().filter(|t| self.all[t].pins).count()
    }

    /// Records that `taker`, arriving later than some waiters that could
    /// have used `conn` (see [`Waiters::eligible_for`]), took it; returns
    /// the largest bypass count among them.
    pub fn pass_over(&mut self, conn: ConnId, taker: Ticket, serves_any: bool) -> u64 {
        if self.all.is_empty() {
            return 0; // the common case: nobody waits
        }
        let bound = self
            .by_conn
            .get(&conn)
            .into_iter()
            .flat_map(|q| q.range(..taker));
        let any = self.any.range(..taker).filter(|_| serves_any);
        let passed: Vec<Ticket> = bound.chain(any).copied().collect();
        let mut most = 0;
        for ticket in passed {
            let waiter = self.all.get_mut(&ticket).expect("queued tickets wait");
            waiter.bypassed += 1;
            most = most.max(waiter.bypassed);
        }
        most
    }

    /// Puts `ticket` to sleep at the back of the sleep order.
    pub fn sleep(&mut self, ticket: Ticket) {
        self.next_sleep += 1;
        let order = self.next_sleep;
        let waiter = self.all.get_mut(&ticket).expect("sleepers wait");
        if let Some(old) = waiter.sleep.replace(order) {
            self.sleepers.remove(&old);
        }
        self.sleepers.insert(order, ticket);
    }

    /// Wakes `ticket` if it sleeps; whether it did.
    pub fn wake(&mut self, ticket: Ticket) -> bool {
        let Some(waiter) = self.all.get_mut(&ticket) else {
            return false;
        };
        let Some(order) = waiter.sleep.take() else {
            return false;
        };
        self.sleepers.remove(&order);
        true
    }

    /// The longest sleeper.
    pub fn oldest_sleeper(&self) -> Option<Ticket> {
        self.sleepers.first_key_value().map(|(_, &ticket)| ticket)
    }

    pub fn sleeping(&self) -> usize {
        self.sleepers.len()
    }

    fn queue_of(&mut self, want: Want) -> &mut BTreeSet<Ticket> {
        match want {
            Want::Conn(conn) => self.by_conn.entry(conn).or_default(),
            Want::Any => &mut self.any,
        }
    }

    fn unqueue(&mut self, ticket: Ticket, want: Want) {
        match want {
            Want::Conn(conn) => {
                if let Some(queue) = self.by_conn.get_mut(&conn) {
                    queue.remove(&ticket);
                    if queue.is_empty() {
                        self.by_conn.remove(&conn);
                    }
                }
            }
            Want::Any => {
                self.any.remove(&ticket);
            }
        }
    }
}
