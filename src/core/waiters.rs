//! Waiter bookkeeping: who waits, for what, in which order, and who sleeps.
//! Pure bookkeeping; every decision about waiters is made in `core/mod.rs`.

use std::time::Duration;

use super::conn_table::ConnTable;
use super::lazy_order::LazyOrder;
use super::ordered::OrderedDeque;
use super::tickets::{Issuer, TicketMap};
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
    /// Times a later request took a connection this waiter could have
    /// used, up to when it joined its queue (see [`Waiters::bypassed`]).
    bypassed: u64,
    /// Its queue's [`Queue::barges`] when it joined it.
    joined: u64,
    /// Whether the connection it is granted pins its owner (false for an
    /// unpinned checkout).
    pub pins: bool,
    /// When its checkout started, on the driver's clock.
    pub since: Duration,
    /// When the core times it out itself, if the driver asked it to
    /// ([`Core::time_out_at`](super::Core::time_out_at)).
    deadline: Option<Duration>,
}

/// Every waiting ticket, indexed three ways.
///
/// Tickets are issued in arrival order, so every queue here is an
/// [`OrderedDeque`] of tickets and its first is its oldest member: nothing
/// ever scans all waiters on a checkin. Costs (W = waiters): a waiter
/// joining at the back of its queue, the oldest leaving, "oldest waiter
/// that can use connection C" and waking the oldest sleeper are O(1)
/// (lookups by connection aside); a waiter leaving from the middle of its
/// queue (timed out, cancelled) or moving queue O(W). A request taking a
/// connection ahead of a whole queue is O(1), ahead of part of one O(the
/// waiters it passed). Only an owner that is gone while it waits (or
/// while an owner sharing its [`OwnerFilter`] bucket does) costs a
/// scan of all waiters.
#[derive(Clone, Debug, Default)]
pub(super) struct Waiters {
    /// Every waiter, by ticket (the queues keep the order).
    all: TicketMap<Waiter>,
    /// Issues the tickets, with the slots their records are kept at.
    issuer: Issuer,
    /// The waiters by what they can use.
    queues: Queues,
    /// Sleeping waiters in the order they fell asleep.
    sleepers: SleepOrder,
    /// Which owners may be waiting: an owner that is gone, or pinned for
    /// the first time, is looked for among the waiters only if it may.
    owners: OwnerFilter,
    /// The most times a waiter that has left was bypassed.
    most_bypassed_gone: u64,
    /// Waiters whose owner's Strict pin has not served it yet (the core's
    /// `unserved`): the oldest is the one an idle connection nobody is
    /// pinned to goes to.
    unserved: OrderedDeque<Ticket>,
    /// The waiters with a deadline, earliest first. A driver gives every
    /// checkout the same timeout, so deadlines come in arrival order and
    /// nearly every one joins at the back; the oldest waiters leave first,
    /// from the front, but not always: a pinned waiter granted its own
    /// connection ahead of older waiters for others leaves from the
    /// middle, its entry left stale (see [`LazyOrder`]). Cutting it out
    /// cost a pinned contended turn 128 of its 4,401 instructions
    /// (`benches/instructions.sh`).
    deadlines: LazyOrder<(Duration, Ticket)>,
}

/// The waiters' queues: one per connection that has (or had) waiters
/// bound to it, and one of those that can use any. They hold tickets;
/// a waiter's record stays in [`Waiters::all`] and is handed in as it
/// joins or leaves a queue, so each change looks it up once (it was
/// three times to join and three to leave: the core's hand-off went
/// from 1,585 instructions to 1,417, `benches/instructions.sh`).
#[derive(Clone, Debug, Default)]
struct Queues {
    /// Waiters bound to one connection. A queue that empties stays, its
    /// buffer kept for the connection's next waiter: under contention a
    /// pinned owner's queue empties and refills on most turns, and
    /// freeing and allocating it each time cost a hand-off about 220 of
    /// its 1,900 instructions (`benches/instructions.sh`,
    /// `pinpool-core-handoff`). They are swept out whenever they outnumber
    /// the queues in use (a closed connection's stays until then), which
    /// keeps memory O(connections) at O(1) amortized time.
    by_conn: ConnTable<Queue>,
    /// Members of `by_conn` with no waiter.
    empty_queues: usize,
    /// Waiters that can use any connection.
    any: Queue,
    /// Members of `any` whose grant will pin their owner: counted as they
    /// come and go, since the metrics read it after every input.
    unbound_pinning: usize,
}

/// Waiters that can use the same connections, oldest first.
#[derive(Clone, Debug, Default)]
struct Queue {
    tickets: OrderedDeque<Ticket>,
    /// Requests that took a connection ahead of every member: a member's
    /// bypass count is what this gained since it joined, plus what it
    /// brought along, so the common bypass (a new request taking an idle
    /// connection beside the whole queue) is one increment, not one per
    /// waiter.
    barges: u64,
}

impl Queue {
    /// Counts `taker` as bypassing every member that arrived before it.
    /// The empty check inline: most queues a checkout passes are empty (a
    /// connection's queue stays once its last waiter leaves).
    #[inline]
    fn passed_by(&mut self, taker: Ticket, all: &mut TicketMap<Waiter>) {
        if !self.tickets.is_empty() {
            self.passed_by_members(taker, all);
        }
    }

    fn passed_by_members(&mut self, taker: Ticket, all: &mut TicketMap<Waiter>) {
        let (Some(oldest), Some(newest)) = (self.tickets.first(), self.tickets.last()) else {
            return;
        };
        if oldest > taker {
            // The common case under contention, a hand-off to the oldest
            // waiter: it passed nobody (and the walk below would find as
            // much, after a binary search).
            return;
        }
        if newest < taker {
            self.barges += 1;
        } else {
            for ticket in self.tickets.below(taker) {
                all.get_mut(ticket).expect("queued tickets wait").bypassed += 1;
            }
        }
    }

    /// `waiter`'s bypass count while it is a member.
    fn bypassed(&self, waiter: &Waiter) -> u64 {
        waiter.bypassed + (self.barges - waiter.joined)
    }
}

/// Which owners may have waiting tickets, as counts of tickets in 64
/// buckets of owners: an owner whose bucket counts none has none, and one
/// whose bucket counts some may (another owner of its bucket may be the
/// one waiting). A miss is all the questions need, so this is exact
/// where it matters: an owner that waits with nothing, nearly every
/// owner that is gone or pinned for the first time, costs no scan of the
/// waiters, and a false alarm costs one.
///
/// It replaced a hash map of each waiting owner's count, exact but paid
/// for on every wait: without its entry's insert and removal a contended
/// turn counts 111 fewer instructions unpinned (4,053 → 3,942) and 114
/// fewer pinned (4,634 → 4,520; `benches/instructions.sh`).
#[derive(Clone, Debug)]
struct OwnerFilter([u32; OwnerFilter::BUCKETS]);

impl Default for OwnerFilter {
    fn default() -> Self {
        OwnerFilter([0; OwnerFilter::BUCKETS])
    }
}

impl OwnerFilter {
    const BUCKETS: usize = 64;

    /// `owner`'s bucket: Fibonacci hashing, whose top bits spread owner
    /// ids that count up, or up in steps, over every bucket.
    fn bucket(owner: OwnerId) -> usize {
        (owner.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::BUCKETS.trailing_zeros()))
            as usize
    }

    fn add(&mut self, owner: OwnerId) {
        self.0[Self::bucket(owner)] += 1;
    }

    /// Counts out one ticket `owner` had [added](Self::add).
    fn remove(&mut self, owner: OwnerId) {
        self.0[Self::bucket(owner)] -= 1;
    }

    /// Whether `owner` may be waiting; false only if it is not.
    fn may_wait(&self, owner: OwnerId) -> bool {
        self.0[Self::bucket(owner)] > 0
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.iter().all(|&count| count == 0)
    }
}

impl Waiters {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn get(&self, ticket: Ticket) -> Option<&Waiter> {
        self.all.get(ticket)
    }

    /// A new ticket (see [`Issuer::issue`]).
    pub fn issue(&mut self) -> Ticket {
        self.issuer.issue()
    }

    /// All waiting tickets, oldest first.
    pub fn tickets(&self) -> Vec<Ticket> {
        let mut tickets: Vec<Ticket> = self.all.iter().map(|(ticket, _)| ticket).collect();
        tickets.sort_unstable();
        tickets
    }

    /// `ticket`, the last [issued](Waiters::issue), joins the line.
    pub fn insert(
        &mut self,
        ticket: Ticket,
        owner: OwnerId,
        want: Want,
        pins: bool,
        sleeping: bool,
        since: Duration,
    ) {
        let mut waiter = Waiter {
            owner,
            want,
            sleep: None,
            bypassed: 0,
            joined: 0,
            pins,
            since,
            deadline: None,
        };
        self.queues.join(ticket, &mut waiter, want);
        if sleeping {
            self.sleepers.push(ticket, &mut waiter);
        }
        self.issuer.take(ticket);
        self.all.insert(ticket, waiter);
        debug_assert_eq!(self.issuer.taken(), self.all.len(), "a slot each");
        if sleeping {
            self.sleepers.tidy(&self.all);
        }
        self.owners.add(owner);
    }

    pub fn remove(&mut self, ticket: Ticket) -> Option<Waiter> {
        let mut waiter = self.all.remove(ticket)?;
        self.issuer.give_back(ticket);
        debug_assert_eq!(self.issuer.taken(), self.all.len(), "a slot each");
        self.queues.leave(ticket, &mut waiter);
        if !self.unserved.is_empty() {
            self.unserved.remove(ticket);
        }
        if let Some(deadline) = waiter.deadline
            && self.deadlines.stale((deadline, ticket))
        {
            self.tidy_deadlines();
        }
        self.most_bypassed_gone = self.most_bypassed_gone.max(waiter.bypassed);
        if let Some(place) = waiter.sleep {
            self.sleepers.left(place, ticket, &self.all);
        }
        self.owners.remove(waiter.owner);
        Some(waiter)
    }

    /// Gives waiter `ticket` a deadline (replacing any it had); whether
    /// it is waiting.
    #[inline]
    pub fn set_deadline(&mut self, ticket: Ticket, deadline: Duration) -> bool {
        let Some(waiter) = self.all.get_mut(ticket) else {
            return false;
        };
        // The earlier entry goes stale before the new one is added: they
        // may be one and the same.
        let untidy = (waiter.deadline.replace(deadline))
            .is_some_and(|previous| self.deadlines.stale((previous, ticket)));
        self.deadlines.insert((deadline, ticket));
        if untidy {
            self.tidy_deadlines();
        }
        true
    }

    #[inline]
    fn tidy_deadlines(&mut self) {
        let all = &self.all;
        self.deadlines.tidy(|(deadline, ticket)| {
            all.get(ticket)
                .is_some_and(|w| w.deadline == Some(deadline))
        });
    }

    /// The waiter whose deadline comes first, and that deadline.
    pub fn earliest_deadline(&self) -> Option<(Duration, Ticket)> {
        self.deadlines.first()
    }

    /// Marks `ticket` as the checkout of an owner whose pin has not
    /// served it yet.
    pub fn mark_unserved(&mut self, ticket: Ticket) {
        self.unserved.insert(ticket);
    }

    /// The oldest waiter marked [unserved](Self::mark_unserved).
    pub fn oldest_unserved(&self) -> Option<Ticket> {
        self.unserved.first()
    }

    /// The waiters marked [unserved](Self::mark_unserved), oldest first.
    pub fn unserved(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.unserved.iter()
    }

    /// `owner` was served, or lost its pin: its waiters are no longer
    /// unserved. O(unserved waiters).
    pub fn served(&mut self, owner: OwnerId) {
        if self.unserved.is_empty() {
            return;
        }
        let theirs: Vec<Ticket> = (self.unserved.iter())
            .filter(|&ticket| self.all[ticket].owner == owner)
            .collect();
        for ticket in theirs {
            self.unserved.remove(ticket);
        }
    }

    /// The tickets `owner` is waiting with, oldest first. O(W) if it may
    /// have any (see [`OwnerFilter`]).
    pub fn of_owner(&self, owner: OwnerId) -> Vec<Ticket> {
        if !self.owners.may_wait(owner) {
            return Vec::new();
        }
        let mut tickets: Vec<Ticket> = (self.all.iter())
            .filter(|(_, waiter)| waiter.owner == owner)
            .map(|(ticket, _)| ticket)
            .collect();
        tickets.sort_unstable();
        tickets
    }

    pub fn set_want(&mut self, ticket: Ticket, want: Want) {
        let waiter = self.all.get_mut(ticket).expect("a waiting ticket");
        self.queues.leave(ticket, waiter);
        self.queues.join(ticket, waiter, want);
    }

    /// Rebinds every waiter of connection `from` to connection `to`.
    pub fn retarget(&mut self, from: ConnId, to: ConnId) {
        self.move_queue(from, Want::Conn(to));
    }

    /// Unbinds every waiter of connection `from`: they can use any.
    pub fn unbind(&mut self, from: ConnId) {
        self.move_queue(from, Want::Any);
    }

    /// Moves every waiter of connection `from` to the queue of `want`.
    fn move_queue(&mut self, from: ConnId, want: Want) {
        let Some(queue) = self.queues.by_conn.remove(from) else {
            return;
        };
        if queue.tickets.is_empty() {
            self.queues.empty_queues -= 1;
        }
        for ticket in queue.tickets.iter() {
            let waiter = self.all.get_mut(ticket).expect("queued tickets wait");
            waiter.bypassed = queue.bypassed(waiter);
            self.queues.join(ticket, waiter, want);
        }
    }

    /// How many times a later request took a connection `ticket`'s waiter
    /// could have used.
    pub fn bypassed(&self, ticket: Ticket) -> Option<u64> {
        let waiter = self.all.get(ticket)?;
        Some(self.queues.of(waiter.want)?.bypassed(waiter))
    }

    /// The most times any waiter, waiting or gone, was bypassed. O(W).
    pub fn most_bypassed(&self) -> u64 {
        self.all
            .values()
            .filter_map(|waiter| Some(self.queues.of(waiter.want)?.bypassed(waiter)))
            .fold(self.most_bypassed_gone, u64::max)
    }

    /// The oldest waiter that can use connection `conn`: one bound to it,
    /// or, if `serves_any` (the core's rule: under
    /// [`Pinning::Exclusive`](super::Pinning) only a connection nobody is
    /// pinned to), one that can use any.
    pub fn oldest_for(&self, conn: ConnId, serves_any: bool) -> Option<Ticket> {
        let bound = self
            .queues
            .by_conn
            .get(conn)
            .and_then(|q| q.tickets.first());
        let any = self.queues.any.tickets.first().filter(|_| serves_any);
        match (bound, any) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every waiter that could use `conn`: those bound to it and, if
    /// `serves_any` (see [`Waiters::oldest_for`]), the unbound ones.
    pub fn eligible_for(
        &self,
        conn: ConnId,
        serves_any: bool,
    ) -> impl Iterator<Item = Ticket> + '_ {
        let bound = (self.queues.by_conn.get(conn).into_iter()).flat_map(|q| q.tickets.iter());
        let any = self.queues.any.tickets.iter().filter(move |_| serves_any);
        bound.chain(any)
    }

    /// Waiters bound to `conn`.
    pub fn bound_to(&self, conn: ConnId) -> usize {
        self.queues.by_conn.get(conn).map_or(0, |q| q.tickets.len())
    }

    /// The `n`th oldest unbound waiter.
    pub fn nth_unbound(&self, n: usize) -> Option<Ticket> {
        self.queues.any.tickets.iter().nth(n)
    }

    /// Whether some waiter can use any connection.
    pub fn any_unbound(&self) -> bool {
        !self.queues.any.tickets.is_empty()
    }

    /// The oldest unbound waiter whose grant will pin its owner (a Strict
    /// or Exclusive owner waiting to be bound). O(unbound waiters).
    pub fn oldest_unbound_pinning(&self) -> Option<Ticket> {
        self.queues.any.tickets.iter().find(|&t| self.all[t].pins)
    }

    /// How many unbound waiters will pin their owner when granted.
    pub fn unbound_pinning(&self) -> usize {
        self.queues.unbound_pinning
    }

    /// Records that `taker`, arriving later than some waiters that could
    /// have used `conn` (see [`Waiters::eligible_for`]), took it. O(1)
    /// when it arrived after all of them (a new request barging), else
    /// O(passed).
    #[inline]
    pub fn pass_over(&mut self, conn: ConnId, taker: Ticket, serves_any: bool) {
        let Waiters { all, queues, .. } = self;
        let Queues { by_conn, any, .. } = queues;
        if let Some(queue) = by_conn.get_mut(conn) {
            queue.passed_by(taker, all);
        }
        if serves_any {
            any.passed_by(taker, all);
        }
    }

    /// Puts `ticket` to sleep at the back of the sleep order.
    pub fn sleep(&mut self, ticket: Ticket) {
        let waiter = self.all.get_mut(ticket).expect("sleepers wait");
        self.sleepers.push(ticket, waiter);
        self.sleepers.tidy(&self.all);
    }

    /// Wakes `ticket` if it sleeps; whether it did.
    pub fn wake(&mut self, ticket: Ticket) -> bool {
        let Some(waiter) = self.all.get_mut(ticket) else {
            return false;
        };
        let Some(place) = waiter.sleep.take() else {
            return false;
        };
        self.sleepers.left(place, ticket, &self.all);
        true
    }

    /// The longest sleeper.
    pub fn oldest_sleeper(&self) -> Option<Ticket> {
        self.sleepers.oldest()
    }

    pub fn sleeping(&self) -> usize {
        self.sleepers.order.live()
    }
}

impl Queues {
    fn of(&self, want: Want) -> Option<&Queue> {
        match want {
            Want::Conn(conn) => self.by_conn.get(conn),
            Want::Any => Some(&self.any),
        }
    }

    /// Puts `ticket`, whose record is `waiter`, at its place in the queue
    /// of `want`.
    fn join(&mut self, ticket: Ticket, waiter: &mut Waiter, want: Want) {
        let queue = match want {
            Want::Conn(conn) => {
                let (queue, new) = self.by_conn.get_or_insert_with(conn, Queue::default);
                if !new && queue.tickets.is_empty() {
                    self.empty_queues -= 1;
                }
                queue
            }
            Want::Any => &mut self.any,
        };
        queue.tickets.insert(ticket);
        waiter.want = want;
        waiter.joined = queue.barges;
        if want == Want::Any && waiter.pins {
            self.unbound_pinning += 1;
        }
        debug_assert!(self.empty_queues_counted());
    }

    /// Takes `ticket`, whose record is `waiter`, out of its queue, its
    /// bypass count taken along.
    fn leave(&mut self, ticket: Ticket, waiter: &mut Waiter) {
        let want = waiter.want;
        let queue = match want {
            Want::Conn(conn) => self.by_conn.get_mut(conn),
            Want::Any => Some(&mut self.any),
        };
        let Some(queue) = queue else { return };
        if !queue.tickets.remove(ticket) {
            return;
        }
        waiter.bypassed = queue.bypassed(waiter);
        if want == Want::Any && waiter.pins {
            self.unbound_pinning -= 1;
        }
        if matches!(want, Want::Conn(_)) && queue.tickets.is_empty() {
            self.empty_queues += 1;
            if self.empty_queues > 2 * (self.by_conn.len() - self.empty_queues) + 32 {
                self.by_conn.retain(|queue| !queue.tickets.is_empty());
                self.empty_queues = 0;
            }
        }
        debug_assert!(self.empty_queues_counted());
    }

    /// Whether `empty_queues` counts the empty queues (the test builds
    /// check it after every change: the fuzzer and the state-machine
    /// tests drive it).
    fn empty_queues_counted(&self) -> bool {
        let empty = self.by_conn.values().filter(|q| q.tickets.is_empty());
        empty.count() == self.empty_queues
    }
}

/// Sleeping waiters in the order they fell asleep (under every policy but
/// Handoff; the oldest is the one [`Waiters::oldest_sleeper`] names).
///
/// A waiter that wakes or leaves leaves its entry behind, stale (its
/// [`Waiter::sleep`] no longer names that place), rather than being cut
/// out of the middle: most wakes go to the oldest waiter for one
/// connection, not to the oldest sleeper, and shifting the entries behind
/// it cost a pinned `contended` turn about 200 instructions
/// (`benches/instructions.sh`; the turn went 7,055 → 6,926 without it).
/// [`LazyOrder`] keeps the first entry the oldest sleeper.
#[derive(Clone, Debug, Default)]
struct SleepOrder {
    /// (place, ticket), places ascending; some stale.
    order: LazyOrder<(u64, Ticket)>,
    /// The last place given.
    last: u64,
}

impl SleepOrder {
    /// Puts `waiter` (`ticket`) to sleep at the back; its earlier place,
    /// if it slept already, goes stale. Leaves [`Self::tidy`] to the
    /// caller, which holds the waiter.
    fn push(&mut self, ticket: Ticket, waiter: &mut Waiter) {
        self.last += 1;
        if let Some(earlier) = waiter.sleep.replace(self.last) {
            self.order.stale((earlier, ticket));
        }
        self.order.insert((self.last, ticket));
    }

    /// The sleeper `ticket` at `place` woke or left: its entry is stale now.
    fn left(&mut self, place: u64, ticket: Ticket, all: &TicketMap<Waiter>) {
        if self.order.stale((place, ticket)) {
            self.tidy(all);
        }
    }

    fn tidy(&mut self, all: &TicketMap<Waiter>) {
        self.order
            .tidy(|(place, ticket)| all.get(ticket).is_some_and(|w| w.sleep == Some(place)));
    }

    fn oldest(&self) -> Option<Ticket> {
        self.order.first().map(|(_, ticket)| ticket)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// `owner` joins the line for `want`; its ticket.
    fn join(waiters: &mut Waiters, owner: OwnerId, want: Want, sleeping: bool) -> Ticket {
        let ticket = waiters.issue();
        let pins = matches!(want, Want::Conn(_));
        waiters.insert(ticket, owner, want, pins, sleeping, Duration::ZERO);
        ticket
    }

    /// `n` waiters for any connection, asleep in ticket order, and their
    /// tickets.
    fn asleep(n: u64) -> (Waiters, Vec<Ticket>) {
        let mut waiters = Waiters::default();
        let tickets = (1..=n)
            .map(|owner| join(&mut waiters, OwnerId(owner), Want::Any, true))
            .collect();
        (waiters, tickets)
    }

    #[test]
    fn the_oldest_sleeper_survives_wakes_behind_and_ahead_of_it() {
        let (mut waiters, t) = asleep(4);
        assert!(waiters.wake(t[2]), "from the middle");
        assert!(!waiters.wake(t[2]), "awake already");
        assert_eq!(waiters.oldest_sleeper(), Some(t[0]));
        assert!(waiters.wake(t[0]));
        assert_eq!(waiters.oldest_sleeper(), Some(t[1]));
        waiters.remove(t[1]);
        assert_eq!(
            waiters.oldest_sleeper(),
            Some(t[3]),
            "t[2]'s place is stale"
        );
        waiters.sleep(t[0]);
        waiters.sleep(t[3]); // again: to the back, its old place stale
        assert_eq!(waiters.oldest_sleeper(), Some(t[0]));
        assert_eq!(waiters.sleeping(), 2);
    }

    #[test]
    fn an_owner_is_forgotten_once_it_stops_waiting() {
        let mut waiters = Waiters::default();
        let (alice, bob) = (OwnerId(1), OwnerId(2));
        let t: Vec<Ticket> = [alice, bob, alice]
            .into_iter()
            .map(|owner| join(&mut waiters, owner, Want::Any, false))
            .collect();
        assert_eq!(waiters.of_owner(alice), [t[0], t[2]]);
        waiters.remove(t[2]);
        assert_eq!(waiters.of_owner(alice), [t[0]]);
        waiters.remove(t[0]);
        waiters.remove(t[1]);
        assert!(waiters.of_owner(alice).is_empty());
        assert!(waiters.owners.is_empty(), "counted out");
    }

    /// An owner that shares its bucket with a waiting one is looked for,
    /// and not found; owners counting up spread over every bucket.
    #[test]
    fn an_owner_in_a_waiting_owners_bucket_is_not_taken_for_it() {
        let mut waiters = Waiters::default();
        let alice = OwnerId(1);
        let alias = (2..)
            .map(OwnerId)
            .find(|&owner| OwnerFilter::bucket(owner) == OwnerFilter::bucket(alice))
            .expect("buckets are few");
        let ticket = join(&mut waiters, alice, Want::Any, false);
        assert!(waiters.owners.may_wait(alias), "a false alarm");
        assert!(waiters.of_owner(alias).is_empty());
        assert_eq!(waiters.of_owner(alice), [ticket]);
        let buckets: HashSet<usize> = (0..OwnerFilter::BUCKETS as u64)
            .map(|owner| OwnerFilter::bucket(OwnerId(owner)))
            .collect();
        assert!(buckets.len() > OwnerFilter::BUCKETS / 2, "{buckets:?}");
    }

    #[test]
    fn a_connections_queue_outlives_its_last_waiter_but_not_for_ever() {
        let mut waiters = Waiters::default();
        let wait_for = |waiters: &mut Waiters, conn: u64| {
            join(waiters, OwnerId(conn), Want::Conn(ConnId(conn)), false)
        };
        let gone = wait_for(&mut waiters, 1);
        waiters.remove(gone);
        assert_eq!(waiters.queues.by_conn.len(), 1, "kept, empty, for the next");
        assert_eq!(waiters.bound_to(ConnId(1)), 0);
        assert_eq!(waiters.oldest_for(ConnId(1), false), None);
        let stays = wait_for(&mut waiters, 1);
        assert_eq!(waiters.oldest_for(ConnId(1), false), Some(stays));
        assert_eq!(waiters.queues.empty_queues, 0, "in use again");
        // A waiter each for 1,000 connections that come and go: the
        // empty queues of the gone are swept out.
        for conn in 2..1_002 {
            let ticket = wait_for(&mut waiters, conn);
            waiters.remove(ticket);
            assert!(
                waiters.queues.by_conn.len() <= 2 + 32 + 1,
                "{}",
                waiters.queues.by_conn.len()
            );
        }
        assert_eq!(waiters.oldest_for(ConnId(1), false), Some(stays));
        assert_eq!(waiters.bound_to(ConnId(1)), 1, "the queue in use stays");
        assert!(waiters.queues.empty_queues_counted());
        waiters.unbind(ConnId(1));
        assert_eq!(waiters.oldest_for(ConnId(2), true), Some(stays));
    }

    #[test]
    fn stale_places_do_not_pile_up() {
        let (mut waiters, t) = asleep(3);
        // The one in the middle wakes and sleeps again, over and over, behind
        // an oldest sleeper that never wakes: every round leaves a stale
        // place that is not at the front.
        for _ in 0..1_000 {
            waiters.wake(t[1]);
            waiters.sleep(t[1]);
        }
        assert_eq!(waiters.sleeping(), 3);
        assert!(waiters.sleepers.order.kept() <= 2 * 3 + 32 + 1);
        assert_eq!(waiters.oldest_sleeper(), Some(t[0]));
    }
}
