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
}

/// Every waiting ticket, indexed three ways.
///
/// Costs (W = waiters): insert, remove, "oldest waiter that can use
/// connection C" and waking the oldest sleeper are O(log W); a request
/// taking a connection ahead of a whole queue is O(1), ahead of part of
/// one O(the waiters it passed). Tickets are issued in arrival order, so
/// every queue here is a `BTreeSet<Ticket>` and its first element is its
/// oldest member: nothing ever scans all waiters on a checkin.
#[derive(Clone, Debug, Default)]
pub(super) struct Waiters {
    /// Every waiter, by ticket (the queues keep the order).
    all: HashMap<Ticket, Waiter>,
    /// Waiters bound to one connection.
    by_conn: HashMap<ConnId, Queue>,
    /// Waiters that can use any connection.
    any: Queue,
    /// Sleeping waiters in sleep order (under every policy but Handoff).
    sleepers: BTreeMap<u64, Ticket>,
    /// Each owner's tickets: a set of pairs, so a waiter costs no
    /// allocation of its own.
    by_owner: BTreeSet<(OwnerId, Ticket)>,
    next_sleep: u64,
    /// The most times a waiter that has left was bypassed.
    most_bypassed_gone: u64,
    /// Members of `any` whose grant will pin their owner: counted as they
    /// come and go, since the metrics read it after every input.
    unbound_pinning: usize,
}

/// Waiters that can use the same connections, oldest first.
#[derive(Clone, Debug, Default)]
struct Queue {
    tickets: BTreeSet<Ticket>,
    /// Requests that took a connection ahead of every member: a member's
    /// bypass count is what this gained since it joined, plus what it
    /// brought along, so the common bypass (a new request taking an idle
    /// connection beside the whole queue) is one increment, not one per
    /// waiter.
    barges: u64,
}

impl Queue {
    /// Counts `taker` as bypassing every member that arrived before it.
    fn passed_by(&mut self, taker: Ticket, all: &mut HashMap<Ticket, Waiter>) {
        match self.tickets.last() {
            Some(&newest) if newest < taker => self.barges += 1,
            Some(_) => {
                for ticket in self.tickets.range(..taker) {
                    all.get_mut(ticket).expect("queued tickets wait").bypassed += 1;
                }
            }
            None => {}
        }
    }

    /// `waiter`'s bypass count while it is a member.
    fn bypassed(&self, waiter: &Waiter) -> u64 {
        waiter.bypassed + (self.barges - waiter.joined)
    }
}

impl Waiters {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn get(&self, ticket: Ticket) -> Option<&Waiter> {
        self.all.get(&ticket)
    }

    /// All waiting tickets, oldest first.
    pub fn tickets(&self) -> Vec<Ticket> {
        let mut tickets: Vec<Ticket> = self.all.keys().copied().collect();
        tickets.sort_unstable();
        tickets
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
                joined: 0,
                pins,
                since,
            },
        );
        self.enqueue(ticket, want);
        self.by_owner.insert((owner, ticket));
        if sleeping {
            self.sleep(ticket);
        }
    }

    pub fn remove(&mut self, ticket: Ticket) -> Option<Waiter> {
        let want = self.all.get(&ticket)?.want;
        self.unqueue(ticket, want);
        let waiter = self.all.remove(&ticket).expect("found above");
        self.most_bypassed_gone = self.most_bypassed_gone.max(waiter.bypassed);
        if let Some(order) = waiter.sleep {
            self.sleepers.remove(&order);
        }
        self.by_owner.remove(&(waiter.owner, ticket));
        Some(waiter)
    }

    /// The tickets `owner` is waiting with.
    pub fn of_owner(&self, owner: OwnerId) -> Vec<Ticket> {
        let all = (owner, Ticket(u64::MIN))..=(owner, Ticket(u64::MAX));
        self.by_owner.range(all).map(|&(_, t)| t).collect()
    }

    pub fn set_want(&mut self, ticket: Ticket, want: Want) {
        let old = self.all[&ticket].want;
        self.unqueue(ticket, old);
        self.enqueue(ticket, want);
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
        let Some(queue) = self.by_conn.remove(&from) else {
            return;
        };
        for &ticket in &queue.tickets {
            let waiter = self.all.get_mut(&ticket).expect("queued tickets wait");
            waiter.bypassed = queue.bypassed(waiter);
            self.enqueue(ticket, want);
        }
    }

    /// How many times a later request took a connection `ticket`'s waiter
    /// could have used.
    pub fn bypassed(&self, ticket: Ticket) -> Option<u64> {
        let waiter = self.all.get(&ticket)?;
        Some(self.queue(waiter.want)?.bypassed(waiter))
    }

    /// The most times any waiter, waiting or gone, was bypassed. O(W).
    pub fn most_bypassed(&self) -> u64 {
        self.all
            .values()
            .filter_map(|waiter| Some(self.queue(waiter.want)?.bypassed(waiter)))
            .fold(self.most_bypassed_gone, u64::max)
    }

    /// The oldest waiter that can use connection `conn`: one bound to it,
    /// or, if `serves_any` (the core's rule: under
    /// [`Pinning::Exclusive`](super::Pinning) only a connection nobody is
    /// pinned to), one that can use any.
    pub fn oldest_for(&self, conn: ConnId, serves_any: bool) -> Option<Ticket> {
        let bound = self.by_conn.get(&conn).and_then(|q| q.tickets.first());
        let any = self.any.tickets.first().filter(|_| serves_any);
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
        let bound = self.by_conn.get(&conn).into_iter().flat_map(|q| &q.tickets);
        let any = self.any.tickets.iter().filter(move |_| serves_any);
        bound.chain(any).copied()
    }

    /// Waiters bound to `conn`.
    pub fn bound_to(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, |q| q.tickets.len())
    }

    /// The `n`th oldest unbound waiter.
    pub fn nth_unbound(&self, n: usize) -> Option<Ticket> {
        self.any.tickets.iter().nth(n).copied()
    }

    /// Whether some waiter can use any connection.
    pub fn any_unbound(&self) -> bool {
        !self.any.tickets.is_empty()
    }

    /// The oldest unbound waiter whose grant will pin its owner (a Strict
    /// or Exclusive owner waiting to be bound). O(unbound waiters).
    pub fn oldest_unbound_pinning(&self) -> Option<Ticket> {
        self.any.tickets.iter().copied().find(|t| self.all[t].pins)
    }

    /// How many unbound waiters will pin their owner when granted.
    pub fn unbound_pinning(&self) -> usize {
        self.unbound_pinning
    }

    /// Records that `taker`, arriving later than some waiters that could
    /// have used `conn` (see [`Waiters::eligible_for`]), took it. O(1)
    /// when it arrived after all of them (a new request barging), else
    /// O(passed).
    pub fn pass_over(&mut self, conn: ConnId, taker: Ticket, serves_any: bool) {
        let Waiters {
            all, by_conn, any, ..
        } = self;
        if let Some(queue) = by_conn.get_mut(&conn) {
            queue.passed_by(taker, all);
        }
        if serves_any {
            any.passed_by(taker, all);
        }
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

    fn queue(&self, want: Want) -> Option<&Queue> {
        match want {
            Want::Conn(conn) => self.by_conn.get(&conn),
            Want::Any => Some(&self.any),
        }
    }

    /// Puts `ticket` (in `all`) at its place in the queue of `want`.
    fn enqueue(&mut self, ticket: Ticket, want: Want) {
        let queue = match want {
            Want::Conn(conn) => self.by_conn.entry(conn).or_default(),
            Want::Any => &mut self.any,
        };
        queue.tickets.insert(ticket);
        let waiter = self.all.get_mut(&ticket).expect("enqueued tickets wait");
        waiter.want = want;
        waiter.joined = queue.barges;
        if want == Want::Any && waiter.pins {
            self.unbound_pinning += 1;
        }
    }

    /// Takes `ticket` out of the queue of `want`, its bypass count taken
    /// along.
    fn unqueue(&mut self, ticket: Ticket, want: Want) {
        let queue = match want {
            Want::Conn(conn) => self.by_conn.get_mut(&conn),
            Want::Any => Some(&mut self.any),
        };
        let Some(queue) = queue else { return };
        if !queue.tickets.remove(&ticket) {
            return;
        }
        let waiter = self.all.get_mut(&ticket).expect("queued tickets wait");
        waiter.bypassed = queue.bypassed(waiter);
        if want == Want::Any && waiter.pins {
            self.unbound_pinning -= 1;
        }
        if let Want::Conn(conn) = want
            && queue.tickets.is_empty()
        {
            self.by_conn.remove(&conn);
        }
    }
}
