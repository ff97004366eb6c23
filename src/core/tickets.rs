//! Issuing tickets, each with a slot, and keeping records by ticket at
//! their slots.
//!
//! Every checkout that waits, and every input about a waiter, looks its
//! record up: the core's, and again the driver's. As hash maps keyed by
//! ticket, inserting and removing those two records cost a contended
//! turn about 300 of its 4,200 instructions (`benches/instructions.sh`,
//! the `contended` scenarios). A ticket carries the slot its records are
//! kept at instead, so a lookup is an index and a check of the number.

use super::Ticket;

/// Issues tickets: numbers counting up, each with a slot no waiting
/// ticket holds.
#[derive(Clone, Debug, Default)]
pub(super) struct Issuer {
    /// The last number issued.
    issued: u64,
    /// Slots given back, the most recent last: reused first, while the
    /// records kept there are still in the cache.
    free: Vec<usize>,
    /// Slots ever taken: 0, 1, … `slots - 1`.
    slots: usize,
}

impl Issuer {
    /// A new ticket, with a slot free now. The slot is not taken: most
    /// checkouts never wait (they are granted or fail at once), and
    /// those that do [take](Issuer::take) it when they join the line.
    pub fn issue(&mut self) -> Ticket {
        self.issued += 1;
        let slot = self.free.last().copied().unwrap_or(self.slots);
        Ticket::new(self.issued, slot)
    }

    /// `ticket`, the last issued, joins the line: its slot is its own
    /// until [given back](Issuer::give_back). It is still free: between
    /// a ticket's issue and its joining only waiters leave.
    pub fn take(&mut self, ticket: Ticket) {
        let slot = ticket.slot();
        if slot == self.slots {
            self.slots += 1;
        } else if self.free.last() == Some(&slot) {
            self.free.pop();
        } else {
            // A waiter left since the issue, and its slot is on top of
            // this one: the checkout's reap of expired connections
            // provisions, which may grant a waiter an idle connection.
            let at = self.free.iter().rposition(|&free| free == slot);
            self.free
                .swap_remove(at.expect("a ticket's slot is free until it waits"));
        }
    }

    /// `ticket` has left the line: its slot goes to a later ticket.
    pub fn give_back(&mut self, ticket: Ticket) {
        debug_assert!(
            !self.free.contains(&ticket.slot()),
            "{ticket} given back twice"
        );
        self.free.push(ticket.slot());
    }

    /// Slots taken by a ticket now.
    pub fn taken(&self) -> usize {
        self.slots - self.free.len()
    }
}

/// A record for each of some tickets, kept at the ticket's slot.
///
/// A slot's record is found only by the ticket it was kept for: a
/// ticket that has left, whose slot a later ticket holds now, finds
/// nothing.
#[derive(Clone, Debug)]
pub(crate) struct TicketMap<T> {
    records: Vec<Option<(Ticket, T)>>,
    len: usize,
}

impl<T> Default for TicketMap<T> {
    fn default() -> Self {
        TicketMap {
            records: Vec::new(),
            len: 0,
        }
    }
}

impl<T> TicketMap<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keeps `record` for `ticket`. Its slot must be free here: the
    /// ticket that held it before has been [removed](Self::remove).
    pub fn insert(&mut self, ticket: Ticket, record: T) {
        let slot = ticket.slot();
        if slot >= self.records.len() {
            self.records.resize_with(slot + 1, || None);
        }
        let kept = &mut self.records[slot];
        debug_assert!(kept.is_none(), "{ticket}'s slot is taken");
        if kept.replace((ticket, record)).is_none() {
            self.len += 1;
        }
    }

    pub fn get(&self, ticket: Ticket) -> Option<&T> {
        match self.records.get(ticket.slot())? {
            Some((kept, record)) if *kept == ticket => Some(record),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, ticket: Ticket) -> Option<&mut T> {
        match self.records.get_mut(ticket.slot())? {
            Some((kept, record)) if *kept == ticket => Some(record),
            _ => None,
        }
    }

    pub fn remove(&mut self, ticket: Ticket) -> Option<T> {
        let kept = self.records.get_mut(ticket.slot())?;
        if kept.as_ref().is_none_or(|(holder, _)| *holder != ticket) {
            return None;
        }
        self.len -= 1;
        kept.take().map(|(_, record)| record)
    }

    /// Every ticket with its record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Ticket, &T)> {
        (self.records.iter().flatten()).map(|(ticket, record)| (*ticket, record))
    }

    /// Every record, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.iter().map(|(_, record)| record)
    }
}

/// The record of `ticket`, which must have one (as a map's index).
impl<T> std::ops::Index<Ticket> for TicketMap<T> {
    type Output = T;

    fn index(&self, ticket: Ticket) -> &T {
        self.get(ticket)
            .unwrap_or_else(|| panic!("no record for {ticket}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_reused_and_a_ticket_that_left_finds_nothing_there() {
        let mut issuer = Issuer::default();
        let mut records = TicketMap::default();
        let first = issuer.issue();
        assert_eq!(
            first.slot(),
            issuer.issue().slot(),
            "not taken: never waited"
        );
        issuer.take(first);
        let second = issuer.issue();
        issuer.take(second);
        assert_ne!(first.slot(), second.slot(), "both hold theirs");
        let numbers = (first.number(), second.number());
        assert_eq!(numbers, (1, 3), "the one not taken was numbered too");
        assert_eq!(second.to_string(), "ticket#3");
        let hasher = std::hash::RandomState::new();
        use std::hash::BuildHasher;
        let hashed = (hasher.hash_one(second), hasher.hash_one(3u64));
        assert_eq!(hashed.0, hashed.1, "hashed as its number");
        records.insert(first, "first");
        records.insert(second, "second");
        assert_eq!(records.remove(first), Some("first"));
        issuer.give_back(first);
        let third = issuer.issue();
        issuer.take(third);
        assert_eq!(third.slot(), first.slot(), "the slot given back");
        assert!(third > second, "numbered in arrival order");
        records.insert(third, "third");
        assert_eq!(records.get(first), None, "gone: its slot is third's now");
        assert_eq!(records.get_mut(first), None);
        assert_eq!(records.remove(first), None);
        assert_eq!(records.get(third), Some(&"third"));
        assert_eq!(records[third], "third");
        assert_eq!(records.len(), 2);
        assert_eq!(issuer.taken(), 2);
        let mut all: Vec<_> = records.values().copied().collect();
        all.sort_unstable();
        assert_eq!(all, ["second", "third"]);
    }

    #[test]
    fn slots_stay_below_the_most_tickets_held_at_once() {
        let mut issuer = Issuer::default();
        let mut records = TicketMap::default();
        let mut held = std::collections::VecDeque::new();
        for n in 0..1_000 {
            let ticket = issuer.issue();
            issuer.take(ticket);
            assert!(ticket.slot() < 8, "{ticket} at {}", ticket.slot());
            records.insert(ticket, n);
            held.push_back(ticket);
            if held.len() == 8 {
                let oldest = held.pop_front().expect("8 held");
                assert_eq!(records.remove(oldest).map(|n| n + 1), Some(n - 6));
                issuer.give_back(oldest);
            }
        }
        assert_eq!((records.len(), issuer.taken()), (7, 7));
    }

    #[test]
    fn a_slot_given_back_after_an_issue_leaves_the_issued_one_free() {
        let mut issuer = Issuer::default();
        let waiting: Vec<Ticket> = (0..3)
            .map(|_| {
                let ticket = issuer.issue();
                issuer.take(ticket);
                ticket
            })
            .collect();
        issuer.give_back(waiting[0]);
        let new = issuer.issue();
        assert_eq!(new.slot(), waiting[0].slot());
        // Before it joins, a reap fails another waiter.
        issuer.give_back(waiting[2]);
        issuer.take(new);
        assert_eq!(issuer.taken(), 2);
        assert_eq!(issuer.issue().slot(), waiting[2].slot(), "still free");
    }
}
