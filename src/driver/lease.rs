//! The fast path: a pinned thread re-acquiring its own idle connection, and
//! returning it when nobody waits for it, without the pool lock.
//!
//! When the core grants a connection to the owner pinned to it and no other
//! waiter could use it, the pool *leases* it to that owner: the core goes on
//! seeing it checked out to the owner, while between the owner's checkouts
//! the connection sits *parked* in the lease. The owner's next `get()` takes
//! it back with one atomic exchange; its checkin parks it with another. This
//! is exactly the decision the core would make (a pinned owner, its
//! connection idle, nobody else waiting for it), taken without asking.
//!
//! Anyone about to give the core an input whose answer could depend on a
//! leased connection *recalls* the lease first, under the pool lock. Recall
//! *closes* the lease's cell ([`TakeCell`]), taking the parked connection
//! if there is one, and checks it in to the core itself; if there is none,
//! the owner holds it, and the owner's next park fails on the closed cell
//! and returns the connection through the core. Open, full and closed are
//! states of one word, so its modification order decides every race:
//! exactly one side ends up holding the connection and checks it in; no
//! wake-up is lost and none is duplicated. And a holder whose park
//! succeeded is done with the lease: it never reads it again.
//!
//! Under `Pinning::Strict` the owners pinned to one connection share its
//! lease: one whose checkout finds the connection parked in a co-owner's
//! lease takes it there, under the lock, and keeps that lease as its own
//! ([`Core::may_share_lease`](crate::core::Core::may_share_lease)). From
//! then on they pass the connection through the one lease, without the
//! lock. The core no longer knows which of them holds it; the lease does
//! (see [`Lease::held_by`]), for an owner asking again while holding it.

use std::ptr::NonNull;
use std::time::Duration;

use super::{Handed, Leased};
use crate::core::{ConnId, OwnerId};
use crate::sync::{Arc, AtomicU64, Ordering, TakeCell};

/// What an owner found in its lease ([`Lease::take_back`]), to
/// [`settle`](Found::settle) once it has let go of wherever it keeps the
/// lease (a thread-local: settling may take the pool lock).
pub(crate) enum Found<C> {
    /// Its connection, to use.
    Taken(Handed<C>),
    /// Its connection, past its lifetime (by the pool's clock, read only
    /// when a lifetime is set): back through the core, which closes it.
    Expired(Handed<C>),
    /// Nothing parked, because the owner itself holds the connection.
    HeldByOwner,
    /// Nothing parked: the lease was recalled, or a co-owner has it.
    Nothing,
}

impl<C> Found<C> {
    /// The connection to use, if any: an expired one goes to `check_in`,
    /// and an owner holding its own connection tells `held` (out of line)
    /// before asking the core, which then refuses it as the holder.
    #[inline(always)]
    pub(crate) fn settle(
        self,
        check_in: impl FnOnce(Handed<C>),
        held: impl FnOnce(),
    ) -> Option<Handed<C>> {
        match self {
            Found::Taken(handed) => Some(handed),
            Found::Expired(handed) => {
                check_in(handed);
                None
            }
            Found::HeldByOwner => {
                held();
                None
            }
            Found::Nothing => None,
        }
    }
}

/// The lease a connection was handed out with, as its holder keeps it: a
/// plain pointer, not a counted reference, so that a pinned checkout and
/// its checkin touch no reference count (two atomic read-modify-writes of
/// the four a pinned get + drop took, `benches/blocking.rs`).
///
/// Why it stays valid: every lease is made in an `Arc` that the pool's
/// lock holder keeps in its table ([`Inner`](super::Inner)'s `leases`,
/// then, once recalled, `ended`) until the lease's connection comes back
/// to the core — and only a holder brings it back, after its last use of
/// this pointer. A `HeldLease` is made only with the connection in hand
/// (taken from the lease's cell, granted by the core, or taken back by a
/// recall, which checks it in at once), so while one exists its
/// connection is out of the core and the table keeps the lease. A holder that
/// parks the connection drops its `HeldLease` at once (see
/// [`LeaseCell::put`]); debug builds check, as the connection comes
/// back, that the table still had the lease.
pub(crate) struct HeldLease<C>(NonNull<Lease<C>>);

// SAFETY: it shares a `&Lease<C>`, as an `Arc<Lease<C>>` would; a lease is
// `Send` and `Sync` when `C` is `Send`.
#[allow(unsafe_code)]
unsafe impl<C: Send> Send for HeldLease<C> {}
#[allow(unsafe_code)]
unsafe impl<C: Send> Sync for HeldLease<C> {}

// The crate's fourth audited `unsafe`: see the type's documentation.
#[allow(unsafe_code)]
impl<C> HeldLease<C> {
    /// The holder's pointer to `lease`, which lives in an `Arc` in the
    /// pool's table (see the type's documentation).
    fn new(lease: &Lease<C>) -> Self {
        HeldLease(NonNull::from(lease))
    }

    /// The holder's pointer to a lease the pool keeps in its table.
    pub(crate) fn of(lease: &Arc<Lease<C>>) -> Self {
        Self::new(lease)
    }

    #[inline(always)]
    pub(crate) fn get(&self) -> &Lease<C> {
        // SAFETY: the pool's table keeps the lease while its connection
        // is out, and a `HeldLease` exists only while it is (see above).
        unsafe { self.0.as_ref() }
    }

    /// A counted reference, for an owner to keep the lease.
    pub(crate) fn to_arc(&self) -> Arc<Lease<C>> {
        let raw = self.0.as_ptr().cast_const();
        // SAFETY: every lease is made in an `Arc` (see above), whose data
        // pointer this is, and that `Arc` is alive: the new count is ours.
        unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        }
    }

    /// Whether `lease` is this one.
    pub(crate) fn is(&self, lease: &Arc<Lease<C>>) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(lease))
    }
}

/// The half of a lease the fast path touches: the parked connection (its
/// cell closed once the lease is recalled) and the count of checkouts
/// served without the core. An owner's [`Lease`] has one; so has each cell
/// of the [stash](super::stash). The protocol is in the [module
/// documentation](self).
pub(crate) struct LeaseCell<C> {
    parked: TakeCell<C>,
    /// When the leased connection outlives its lifetime, in nanoseconds of
    /// the pool's clock; [`NEVER`] without one. Written when the lease
    /// starts, before the connection is first handed out (so the taker's
    /// swap orders it), read by each taker.
    expires: AtomicU64,
    /// Checkouts served by the fast path. Written only by whoever holds the
    /// connection, read once by whoever returns it to the core.
    reuses: AtomicU64,
    /// Of those, how many the pool's metrics have counted (only under the
    /// pool lock; see [`LeaseCell::unreported`]).
    #[cfg(feature = "metrics")]
    reported: AtomicU64,
    /// The use being timed for the metrics, if any.
    #[cfg(feature = "metrics")]
    sample: UseSample,
}

/// Samples of how long the fast path's checkouts hold their connection,
/// for the `use_time` metric: the lease's first use and every
/// [`UseSample::EVERY`]th after it are timed (two clock reads), the
/// others cost a branch. Nanoseconds of the pool's clock, plus one, so
/// that 0 means none.
#[cfg(feature = "metrics")]
#[derive(Default)]
struct UseSample {
    /// When the timed use began (written by its holder, or under the lock
    /// when the lease starts).
    from: AtomicU64,
    /// The last use timed, until the pool lock's holder takes it.
    took: AtomicU64,
}

#[cfg(feature = "metrics")]
impl UseSample {
    /// A power of two: the test is a mask.
    const EVERY: u64 = 64;

    fn nanos(at: Duration) -> u64 {
        u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn start(&self, at: Duration) {
        self.from.store(Self::nanos(at), Ordering::Relaxed);
    }

    /// Ends the timed use, if one is: a load and a branch on the fast
    /// path, the clock read out of line.
    #[inline(always)]
    fn finish(&self, now: impl Fn() -> Duration) {
        let from = self.from.load(Ordering::Relaxed);
        if from != 0 {
            self.finish_timed(from, now());
        }
    }

    #[cold]
    #[inline(never)]
    fn finish_timed(&self, from: u64, now: Duration) {
        let took = Self::nanos(now).saturating_sub(from);
        self.took.store(took + 1, Ordering::Relaxed);
        self.from.store(0, Ordering::Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn start_now(&self, now: impl Fn() -> Duration) {
        self.start(now());
    }

    fn take(&self) -> Option<Duration> {
        match self.took.swap(0, Ordering::Relaxed) {
            0 => None,
            took => Some(Duration::from_nanos(took - 1)),
        }
    }
}

/// A lease whose connection has no lifetime.
const NEVER: u64 = u64::MAX;

/// A lifetime's end as the cell stores it.
fn expiry_nanos(expires: Option<Duration>) -> u64 {
    expires.map_or(NEVER, |at| u64::try_from(at.as_nanos()).unwrap_or(NEVER))
}

impl<C> LeaseCell<C> {
    /// An empty cell for a lease of a connection that outlives its
    /// lifetime at `expires` (a stash cell sets it again at each
    /// [`rearm`](Self::rearm)).
    pub(crate) fn new(expires: Option<Duration>) -> Self {
        LeaseCell {
            parked: TakeCell::empty(),
            expires: AtomicU64::new(expiry_nanos(expires)),
            reuses: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            reported: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            sample: UseSample::default(),
        }
    }

    /// Takes the parked connection, if any (a recalled lease has none),
    /// and says whether it has outlived its lifetime by the clock `now`
    /// (the taker must then return it through the core); otherwise counts
    /// a checkout served.
    #[inline(always)]
    pub(crate) fn take(&self, now: impl Fn() -> Duration) -> Option<(Box<C>, bool)> {
        let conn = self.parked.take()?;
        if self.expired(&now) {
            return Some((conn, true));
        }
        // Only the holder writes, so a load and a store suffice.
        let reuses = self.reuses.load(Ordering::Relaxed) + 1;
        self.reuses.store(reuses, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if reuses & (UseSample::EVERY - 1) == 0 {
            self.sample.start_now(now);
        }
        Some((conn, false))
    }

    /// Whether the leased connection has outlived its lifetime; the clock
    /// is read only when it has one.
    #[inline]
    fn expired(&self, now: impl Fn() -> Duration) -> bool {
        let expires = self.expires.load(Ordering::Relaxed);
        expires != NEVER && expiry_nanos(Some(now())) >= expires
    }

    /// The holder parks the connection; `Err` gives it back when the lease
    /// was recalled meanwhile (the holder must return it to the core).
    /// `now` is the pool's clock, read only to end a timed use (see
    /// [`UseSample`]). Once the park succeeds the holder must not touch
    /// the cell again: a recall may take the connection and end the lease
    /// at once.
    #[inline(always)]
    pub(crate) fn put(&self, conn: Box<C>, now: impl Fn() -> Duration) -> Result<(), Box<C>> {
        #[cfg(feature = "metrics")]
        self.sample.finish(now);
        #[cfg(not(feature = "metrics"))]
        let _ = now;
        self.parked.put(conn)
    }

    /// Whether nothing looked parked (a plain load: a hint).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Ends the lease (under the pool lock): closes the cell. Returns the
    /// parked connection if it was parked; otherwise its holder will
    /// return it.
    pub(crate) fn recall(&self) -> Option<Box<C>> {
        self.parked.close()
    }

    /// Starts a new lease in this cell, empty or closed (under the pool
    /// lock), of a connection that outlives its lifetime at `expires`.
    /// Opened last: a taker's exchange orders the fields' writes before
    /// its reads, through the first park.
    pub(crate) fn rearm(&self, expires: Option<Duration>) {
        self.reuses.store(0, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.reported.store(0, Ordering::Relaxed);
        self.expires.store(expiry_nanos(expires), Ordering::Relaxed);
        self.parked.reopen();
    }

    /// Fast-path checkouts served; read by whoever returns the connection.
    pub(crate) fn reuses(&self) -> u64 {
        self.reuses.load(Ordering::Relaxed)
    }

    /// Fast-path checkouts served since the metrics last asked, which now
    /// count them (under the pool lock: the holder only ever adds to
    /// `reuses`, so this may run while the lease is in use).
    #[cfg(feature = "metrics")]
    pub(crate) fn unreported(&self) -> u64 {
        let reuses = self.reuses();
        reuses.saturating_sub(self.reported.swap(reuses, Ordering::Relaxed))
    }

    /// Times the lease's first use, which began `at` (under the pool lock,
    /// as the lease starts).
    pub(crate) fn time_first_use(&self, at: Duration) {
        #[cfg(feature = "metrics")]
        self.sample.start(at);
        #[cfg(not(feature = "metrics"))]
        let _ = at;
    }

    /// The last use timed and not yet reported (under the pool lock).
    #[cfg(feature = "metrics")]
    pub(crate) fn timed_use(&self) -> Option<Duration> {
        self.sample.take()
    }
}

/// One lease of one connection to its pinned owner, and to the owners
/// pinned to it too under `Pinning::Strict`, who share it (see
/// [`Core::note_lease_holder`](crate::core::Core::note_lease_holder)).
pub(crate) struct Lease<C> {
    pub(crate) conn: ConnId,
    /// The owner it was granted to: its end ends the lease.
    pub(crate) owner: OwnerId,
    cell: LeaseCell<C>,
    /// Who holds the connection: the owner whose take found it parked,
    /// [`NOBODY`] from just before it is parked again. Relaxed: only an
    /// owner asking whether *it* holds the connection reads this, and
    /// coherence gives it its own latest write — its id if it holds the
    /// connection, else [`NOBODY`] or a later taker's id — and under the
    /// pool lock, the parking of any guard that was returned before it.
    holder: AtomicU64,
}

/// No owner (owner ids count from 1).
const NOBODY: u64 = 0;

/// What the owner's attempt to take its parked connection found.
pub(crate) enum Reacquire<C> {
    /// The owner holds the connection again.
    Held(Box<C>),
    /// The owner got the connection but it has outlived its lifetime: it
    /// must return it through the core (ending the lease) and ask the core.
    Expired(Box<C>),
    /// Nothing parked: the recall took it, or it is in use elsewhere.
    Empty,
}

impl<C> Lease<C> {
    /// A lease of `conn` to `owner`; the connection outlives its lifetime
    /// at `expires` (see [`Core::expires_at`](crate::core::Core::expires_at)).
    pub(crate) fn new(conn: ConnId, owner: OwnerId, expires: Option<Duration>) -> Self {
        Lease {
            conn,
            owner,
            cell: LeaseCell::new(expires),
            holder: AtomicU64::new(owner.0),
        }
    }

    /// `owner` takes the parked connection back (see [`LeaseCell::take`]).
    #[inline(always)]
    pub(crate) fn reacquire(&self, owner: OwnerId, now: impl Fn() -> Duration) -> Reacquire<C> {
        match self.cell.take(now) {
            Some((conn, false)) => {
                self.holder.store(owner.0, Ordering::Relaxed);
                Reacquire::Held(conn)
            }
            Some((conn, true)) => Reacquire::Expired(conn),
            None => Reacquire::Empty,
        }
    }

    /// `owner` takes the parked connection, handed over with this lease
    /// (see [`Found`]).
    #[inline(always)]
    pub(crate) fn take_back(&self, owner: OwnerId, now: impl Fn() -> Duration) -> Found<C> {
        let handed = |conn| Handed {
            id: self.conn,
            conn,
            lease: Some(Leased::Owner(HeldLease::new(self))),
        };
        match self.reacquire(owner, now) {
            Reacquire::Held(conn) => Found::Taken(handed(conn)),
            Reacquire::Expired(conn) => Found::Expired(handed(conn)),
            Reacquire::Empty if self.held_by(owner) => Found::HeldByOwner,
            Reacquire::Empty => Found::Nothing,
        }
    }

    /// The holder parks the connection. `Err` gives it back when the lease
    /// was recalled meanwhile: the caller must check it in to the core.
    /// (See [`LeaseCell::put`]: once parked, the lease is not touched.)
    #[inline]
    pub(crate) fn park(&self, conn: Box<C>, now: impl Fn() -> Duration) -> Result<(), Box<C>> {
        self.holder.store(NOBODY, Ordering::Relaxed);
        self.cell.put(conn, now)
    }

    /// Whether `owner` holds the connection (reliable when `owner` asks:
    /// see [`Lease::holder`]).
    pub(crate) fn held_by(&self, owner: OwnerId) -> bool {
        self.holder.load(Ordering::Relaxed) == owner.0
    }

    /// Its connection goes back to the core (under the pool lock): held
    /// by nobody in the lease any more.
    pub(crate) fn returned(&self) {
        self.holder.store(NOBODY, Ordering::Relaxed);
    }

    /// Ends the lease (under the pool lock); see [`LeaseCell::recall`].
    pub(crate) fn recall(&self) -> Option<Box<C>> {
        self.cell.recall()
    }

    /// Fast-path checkouts served; read by whoever returns the connection.
    pub(crate) fn reuses(&self) -> u64 {
        self.cell.reuses()
    }

    /// Its fast-path half (under the pool lock, for the metrics).
    pub(crate) fn cell(&self) -> &LeaseCell<C> {
        &self.cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: OwnerId = OwnerId(1);

    fn lease() -> Lease<&'static str> {
        Lease::new(ConnId(1), OWNER, None)
    }

    /// The clock of a pool without lifetimes or timed uses, never read.
    fn never() -> Duration {
        panic!("the clock is read only for a connection with a lifetime")
    }

    #[test]
    fn the_owner_reuses_its_parked_connection_and_counts_it() {
        let lease = lease();
        assert!(lease.park(Box::new("conn"), never).is_ok());
        for _ in 0..3 {
            let Reacquire::Held(conn) = lease.reacquire(OWNER, never) else {
                panic!("parked, not recalled")
            };
            assert!(lease.park(conn, never).is_ok());
        }
        assert_eq!(lease.reuses(), 3);
    }

    /// The lease names who holds its connection for that owner's own
    /// question: its grantee at first, each owner whose take found it
    /// parked, and nobody once parked or returned to the core.
    #[test]
    fn the_holder_is_whoever_took_it_last_and_nobody_once_parked() {
        let (lease, co_owner) = (lease(), OwnerId(2));
        assert!(lease.held_by(OWNER), "granted to its owner, in its hands");
        lease.park(Box::new("conn"), never).unwrap();
        assert!(!lease.held_by(OWNER), "parked");
        let Reacquire::Held(conn) = lease.reacquire(co_owner, never) else {
            panic!("parked")
        };
        assert!(lease.held_by(co_owner) && !lease.held_by(OWNER));
        lease.park(conn, never).unwrap();
        let Reacquire::Held(_) = lease.reacquire(OWNER, never) else {
            panic!("parked")
        };
        lease.returned();
        assert!(!lease.held_by(OWNER), "back in the core");
    }

    #[test]
    fn a_recall_takes_a_parked_connection() {
        let lease = lease();
        lease.park(Box::new("conn"), never).unwrap();
        assert_eq!(lease.recall().as_deref(), Some(&"conn"));
        assert!(matches!(lease.reacquire(OWNER, never), Reacquire::Empty));
    }

    #[test]
    fn a_recall_while_held_is_seen_by_the_holders_park() {
        let lease = lease();
        lease.park(Box::new("conn"), never).unwrap();
        let Reacquire::Held(conn) = lease.reacquire(OWNER, never) else {
            panic!("parked")
        };
        assert!(lease.recall().is_none(), "the holder has it");
        assert_eq!(lease.park(conn, never).map_err(|c| *c), Err("conn"));
        assert!(lease.recall().is_none(), "nothing left parked");
    }

    #[test]
    fn an_expired_connection_is_returned_to_the_core_not_reused() {
        let lease = Lease::new(ConnId(1), OWNER, Some(Duration::from_secs(60)));
        lease.park(Box::new("conn"), never).unwrap();
        let Reacquire::Held(conn) = lease.reacquire(OWNER, || Duration::from_secs(59)) else {
            panic!("not expired yet")
        };
        lease.park(conn, never).unwrap();
        assert!(matches!(
            lease.reacquire(OWNER, || Duration::from_secs(60)),
            Reacquire::Expired(_)
        ));
        assert_eq!(lease.reuses(), 1, "the expired take is not a reuse");
    }

    /// A recalled lease stays closed: nothing parks in it again, so no
    /// later take can find a connection the core has taken back.
    #[test]
    fn a_recalled_lease_takes_no_more_parks() {
        let lease = lease();
        assert!(lease.recall().is_none(), "held by its owner");
        assert_eq!(
            lease.park(Box::new("conn"), never).map_err(|c| *c),
            Err("conn")
        );
        assert!(matches!(lease.reacquire(OWNER, never), Reacquire::Empty));
        assert_eq!(lease.reuses(), 0);
    }
}
