//! The stash: idle connections the pool hands out itself, without the pool
//! lock, to checkouts that pin nobody (an async `get()` outside a pinned
//! scope, and every checkout under `Pinning::Off`).
//!
//! When the core grants a connection to such a checkout and allows it
//! ([`Core::may_stash`](crate::core::Core::may_stash): nobody waits for
//! it), the driver *stash-leases* it into one of the stash's cells: the
//! core goes on seeing it checked out, while between checkouts it sits
//! parked in its cell. A later checkout that pins nobody takes any parked
//! connection with one atomic swap, and its checkin parks it back in the
//! same cell with another — what the core would do with an idle connection
//! and no waiters, taken without asking.
//!
//! This is the lease protocol of [`super::lease`], per cell: whoever is
//! about to give the core an input whose answer could depend on a stashed
//! connection *recalls* its lease first, under the pool lock — closes the
//! cell, taking the parked connection if there is one. A holder's park
//! into a closed cell fails, and the holder returns the connection through
//! the core; open, full and closed are states of one word, so exactly one
//! side ends up holding the connection and returns it.
//!
//! What differs from an owner's lease is that a cell is *reused*: once a
//! lease has ended in the core, the cell is opened again for another. That
//! cannot confuse a holder of the old lease: a lease ends only when its
//! connection comes back to the core, so while anyone holds it its cell
//! stays closed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::Handed;
use super::lease::LeaseCell;
use crate::core::ConnId;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// One stash lease: the cell it parks in and the lease's number, which
/// tells it from earlier and later leases of the same cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StashLease {
    pub(crate) cell: usize,
    pub(crate) number: u64,
}

/// The cells, shared by the fast path and the lock holder.
pub(crate) struct Stash<C> {
    cells: Box<[CachePadded<Cell<C>>]>,
    /// One past the highest cell ever armed: the fast path looks no further.
    used: AtomicUsize,
}

struct Cell<C> {
    lease: LeaseCell<C>,
    /// The leased connection's id and the lease's number: written when the
    /// cell is armed, read by whoever takes the connection out (the take
    /// is ordered after the arming through the puts and takes before it).
    conn: AtomicU64,
    number: AtomicU64,
}

// Not `const`-initialised: loom's `thread_local!` has no such form.
#[allow(clippy::missing_const_for_thread_local)]
mod last_cell {
    crate::sync::thread_local! {
        /// The cell this thread last took from: it starts looking there,
        /// so while threads are no more than the connections, each keeps
        /// to a cell of its own and none contend.
        pub(super) static LAST_CELL: std::cell::Cell<usize> = std::cell::Cell::new(0);
    }
}
use last_cell::LAST_CELL;

/// The most cells a stash has, whatever the pool's `max_size`. A cell is
/// taken by a connection for as long as its stash lease lasts (out or
/// parked), so this many unpinned connections can be on the fast path at
/// once; a connection granted while every cell is taken is simply not
/// stashed and comes back through the core. Bounding the cells keeps a
/// pool's memory to the connections that exist (a `max_size` of 10,000 set
/// as "unlimited" allocates nothing for the ones never opened) and the
/// fast path's scan short. 64 is four times the threads the contended
/// benchmarks run, and more than the cores of the machines this pool is
/// measured on; above it, extra connections cost a lock per checkout,
/// which is what every pool without a stash pays.
pub(crate) const MAX_CELLS: usize = 64;

/// The cells a pool of `max_size` connections stashes in.
pub(crate) fn cells_for(max_size: usize) -> usize {
    max_size.min(MAX_CELLS)
}

impl<C> Stash<C> {
    /// A stash of `cells` cells (see [`cells_for`]).
    pub(crate) fn new(cells: usize) -> Self {
        Stash {
            cells: (0..cells)
                .map(|_| {
                    CachePadded::new(Cell {
                        lease: LeaseCell::new(None),
                        conn: AtomicU64::new(0),
                        number: AtomicU64::new(0),
                    })
                })
                .collect(),
            used: AtomicUsize::new(0),
        }
    }

    /// Takes any parked connection (the fast path; no lock). One that
    /// outlived its lifetime by the pool's clock `now` goes to `check_in`,
    /// back through the core (which closes it), and the answer is `None`.
    #[inline]
    pub(crate) fn take(
        &self,
        now: impl Fn() -> Duration,
        check_in: impl FnOnce(Handed<C>),
    ) -> Option<Handed<C>> {
        let used = self.used.load(Ordering::Relaxed);
        if used == 0 {
            return None;
        }
        let start = LAST_CELL.try_with(|last| last.get()).unwrap_or(0) % used;
        // Every cell once, from `start` round: a plain loop, which the
        // compiler inlines whole (an iterator chain it may not).
        let mut index = start;
        let (handed, expired) = loop {
            if let Some(found) = self.take_from(index, &now) {
                break found;
            }
            index = if index + 1 == used { 0 } else { index + 1 };
            if index == start {
                return None;
            }
        };
        if expired {
            check_in(handed);
            return None;
        }
        Some(handed)
    }

    /// The connection parked in cell `index`, if any, and whether it has
    /// outlived its lifetime. Inlined: it is most of the fast
    /// path, and a call per cell looked at would double its cost.
    #[inline(always)]
    fn take_from(&self, index: usize, now: impl Fn() -> Duration) -> Option<(Handed<C>, bool)> {
        let cell = &self.cells[index];
        if cell.lease.is_empty() {
            return None; // a load, so an empty cell's line is not stolen
        }
        let (conn, expired) = cell.lease.take(now)?;
        let _ = LAST_CELL.try_with(|last| last.set(index));
        let handed = Handed {
            id: ConnId(cell.conn.load(Ordering::Relaxed)),
            conn,
            lease: Some(super::Leased::Stash(StashLease {
                cell: index,
                number: cell.number.load(Ordering::Relaxed),
            })),
        };
        Some((handed, expired))
    }

    /// The holder parks its connection. `Err` gives it back when the lease
    /// was recalled meanwhile: the holder must return it to the core.
    #[inline]
    pub(crate) fn park(
        &self,
        lease: StashLease,
        conn: Box<C>,
        now: impl Fn() -> Duration,
    ) -> Result<(), Box<C>> {
        self.cells[lease.cell].lease.put(conn, now)
    }

    /// The cell of `lease` (under the pool lock, for the metrics).
    pub(crate) fn cell(&self, lease: StashLease) -> &LeaseCell<C> {
        &self.cells[lease.cell].lease
    }
}

/// The stash's leases as the pool lock's holder keeps them: which cell
/// holds which lease, and which cells are free. Only used under the lock.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Per cell: the lease armed there, with whether it was recalled, until
    /// it ends in the core.
    leases: Vec<Option<LeaseRecord>>,
    /// Free cells, lowest first: the fast path's scan stays short.
    free: BinaryHeap<Reverse<usize>>,
    /// Leases armed and not recalled: a recall with none has nothing to do.
    active: usize,
    numbers: u64,
}

#[derive(Clone, Copy)]
struct LeaseRecord {
    conn: ConnId,
    number: u64,
    recalled: bool,
}

impl Ledger {
    pub(crate) fn new(cells: usize) -> Self {
        Ledger {
            leases: vec![None; cells],
            free: (0..cells).map(Reverse).collect(),
            active: 0,
            numbers: 0,
        }
    }

    /// Arms a free cell with a lease of `conn`, just handed out, which
    /// outlives its lifetime at `expires`; `None` if no cell is free (every
    /// cell's connection is still out).
    pub(crate) fn arm<C>(
        &mut self,
        stash: &Stash<C>,
        conn: ConnId,
        expires: Option<Duration>,
    ) -> Option<StashLease> {
        let Reverse(index) = self.free.pop()?;
        self.numbers += 1;
        self.active += 1;
        let lease = StashLease {
            cell: index,
            number: self.numbers,
        };
        self.leases[index] = Some(LeaseRecord {
            conn,
            number: lease.number,
            recalled: false,
        });
        let cell = &stash.cells[index];
        cell.conn.store(conn.0, Ordering::Relaxed);
        cell.number.store(lease.number, Ordering::Relaxed);
        cell.lease.rearm(expires);
        stash.used.fetch_max(index + 1, Ordering::Relaxed);
        Some(lease)
    }

    /// Whether a lease armed here is still live (not recalled).
    pub(crate) fn has_active(&self) -> bool {
        self.active > 0
    }

    /// Recalls the leases of the connections `which` selects that are not
    /// recalled yet, adding to `parked` those found parked, to be checked
    /// in now; the others come back when their holders see the recall.
    pub(crate) fn recall<C>(
        &mut self,
        stash: &Stash<C>,
        which: impl Fn(ConnId) -> bool,
        parked: &mut Vec<Handed<C>>,
    ) {
        for (index, entry) in self.leases.iter_mut().enumerate() {
            let Some(entry) = entry.as_mut().filter(|e| !e.recalled && which(e.conn)) else {
                continue;
            };
            entry.recalled = true;
            self.active -= 1;
            if let Some(conn) = stash.cells[index].lease.recall() {
                parked.push(Handed {
                    id: entry.conn,
                    conn,
                    lease: Some(super::Leased::Stash(StashLease {
                        cell: index,
                        number: entry.number,
                    })),
                });
            }
        }
    }

    /// The cells of the leases not yet ended (for the metrics' counts).
    pub(crate) fn live_cells<'s, C>(
        &'s self,
        stash: &'s Stash<C>,
    ) -> impl Iterator<Item = &'s LeaseCell<C>> {
        (self.leases.iter().zip(stash.cells.iter()))
            .filter(|(entry, _)| entry.is_some())
            .map(|(_, cell)| &cell.lease)
    }

    /// The lease ends: its connection was checked in to the core. Returns
    /// the checkouts served under it without the core.
    pub(crate) fn end<C>(&mut self, stash: &Stash<C>, lease: StashLease) -> u64 {
        let current = self.leases[lease.cell].is_some_and(|e| e.number == lease.number);
        if !current {
            debug_assert!(false, "{lease:?} ended twice");
            return 0;
        }
        if self.leases[lease.cell].is_some_and(|e| !e.recalled) {
            self.active -= 1;
        }
        self.leases[lease.cell] = None;
        self.free.push(Reverse(lease.cell));
        stash.cells[lease.cell].lease.reuses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock of a pool without lifetimes, which is never read.
    fn no_clock() -> Duration {
        panic!("the clock is read only for a connection with a lifetime")
    }

    fn held<C>(stash: &Stash<C>) -> Handed<C> {
        stash
            .take(no_clock, |_| panic!("not recalled"))
            .expect("a parked connection")
    }

    /// Recalls every lease: what was found parked.
    fn recall_all<C>(ledger: &mut Ledger, stash: &Stash<C>) -> Vec<Handed<C>> {
        let mut parked = Vec::new();
        ledger.recall(stash, |_| true, &mut parked);
        parked
    }

    /// A one-cell stash with `value` parked as `conn` under a fresh lease.
    fn parked<C>(conn: ConnId, value: C) -> (Stash<C>, Ledger, StashLease) {
        let stash = Stash::new(1);
        let mut ledger = Ledger::new(1);
        let lease = ledger.arm(&stash, conn, None).unwrap();
        assert!(stash.park(lease, Box::new(value), no_clock).is_ok());
        (stash, ledger, lease)
    }

    fn stash_lease<C>(handed: &Handed<C>) -> StashLease {
        match handed.lease {
            Some(super::super::Leased::Stash(lease)) => lease,
            _ => panic!("a stash lease"),
        }
    }

    #[test]
    fn parked_connections_are_taken_and_counted_without_the_ledger() {
        let stash = Stash::new(2);
        let mut ledger = Ledger::new(2);
        let lease = ledger.arm(&stash, ConnId(7), None).unwrap();
        assert!(stash.take(no_clock, |_| ()).is_none(), "nothing parked yet");
        stash.park(lease, Box::new("seven"), no_clock).unwrap();
        for _ in 0..3 {
            let handed = held(&stash);
            assert_eq!((handed.id, *handed.conn), (ConnId(7), "seven"));
            (stash.park(stash_lease(&handed), handed.conn, no_clock)).unwrap();
        }
        assert!(recall_all(&mut ledger, &stash).len() == 1);
        assert_eq!(ledger.end(&stash, lease), 3);
    }

    #[test]
    fn a_recall_while_held_is_seen_by_the_holders_park() {
        let (stash, mut ledger, lease) = parked(ConnId(1), 1);
        let handed = held(&stash);
        assert!(recall_all(&mut ledger, &stash).is_empty(), "it is out");
        let refused = stash.park(lease, handed.conn, no_clock);
        assert_eq!(refused.map_err(|c| *c), Err(1), "the holder keeps it");
        assert!(stash.take(no_clock, |_| panic!("none")).is_none());
    }

    /// A cell is armed again only after its lease ended in the core, and
    /// then it is open: the next lease parks and is taken as usual.
    #[test]
    fn a_cell_is_reopened_for_the_next_lease() {
        let (stash, mut ledger, first) = parked(ConnId(1), 1);
        let recalled = recall_all(&mut ledger, &stash);
        assert_eq!(recalled.len(), 1);
        ledger.end(&stash, first);
        let second = ledger.arm(&stash, ConnId(2), None).unwrap();
        assert_eq!(second.cell, first.cell);
        stash.park(second, Box::new(2), no_clock).unwrap();
        assert_eq!(held(&stash).id, ConnId(2));
    }
}
