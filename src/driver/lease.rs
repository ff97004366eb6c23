//! The fast path: a pinned thread re-acquiring its own idle connection, and
//! returning it when nobody waits for it, without the pool lock.
//!
//! When the core grants a connection to the owner pinned to it and no other
//! waiter could use it, the pool *leases* it to that owner: the core goes on
//! seeing it checked out to the owner, while between the owner's checkouts
//! the connection sits *parked* in the lease. The owner's next `get()` takes
//! it back with one atomic swap; its checkin parks it with another. This is
//! exactly the decision the core would make (a pinned owner, its connection
//! idle, nobody else waiting for it), taken without asking.
//!
//! Anyone about to give the core an input whose answer could depend on a
//! leased connection *recalls* the lease first, under the pool lock. Recall
//! raises the `recalled` flag, then tries to take the parked connection:
//! if it gets it, it checks it in to the core itself; if not, the owner
//! holds it, and the owner's next park or take sees the flag and returns
//! the connection through the core. All puts and takes are swaps on one
//! word, so their modification order decides every race: either the recall
//! takes the parked connection, or the owner's later swap reads the value
//! the recall's swap wrote and so also sees the flag raised before it.
//! Exactly one side ends up holding the connection and checks it in; no
//! wake-up is lost and none is duplicated.
//!
//! Under `Pinning::Strict` the owners pinned to one connection share its
//! lease: one whose checkout finds the connection parked in a co-owner's
//! lease takes it there, under the lock, and keeps that lease as its own
//! ([`Core::may_share_lease`](crate::core::Core::may_share_lease)). From
//! then on they pass the connection through the one lease, without the
//! lock. The core no longer knows which of them holds it; the lease does
//! (see [`Lease::held_by`]), for an owner asking again while holding it.

use std::time::Duration;

use super::{Handed, Leased};
use crate::core::{ConnId, OwnerId};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering, TakeCell};

/// `owner` takes back the connection parked in its lease. `None` if
/// nothing was parked — or if the lease was recalled meanwhile, or the
/// connection has outlived its lifetime (by the pool's clock, `now`, read
/// only when a lifetime is set): the connection then goes to `check_in`,
/// back through the core, since its waiters come first and it closes what
/// has expired. When `owner` itself holds it, `held` is told (out of line)
/// before the owner asks the core, which then refuses it as the holder.
#[inline(always)]
pub(crate) fn take_back<C: Send + 'static>(
    lease: Arc<Lease<C>>,
    owner: OwnerId,
    now: impl Fn() -> Duration,
    check_in: impl FnOnce(Handed<C>),
    held: impl FnOnce(Arc<Lease<C>>),
) -> Option<Handed<C>> {
    match lease.hand_over(owner, now) {
        Ok((handed, false)) => Some(handed),
        Ok((recalled, true)) => {
            check_in(recalled);
            None
        }
        Err(lease) => {
            if lease.held_by(owner) {
                held(lease);
            }
            None
        }
    }
}

/// The half of a lease the fast path touches: the parked connection, the
/// recall flag and the count of checkouts served without the core. An
/// owner's [`Lease`] has one; so has each cell of the
/// [stash](super::stash). The protocol is in the [module
/// documentation](self): a recall raises the flag, then takes; a holder
/// puts, then checks the flag; a taker takes, then checks it.
pub(crate) struct LeaseCell<C> {
    parked: TakeCell<C>,
    pub(super) recalled: AtomicBool,
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
            recalled: AtomicBool::new(false),
            expires: AtomicU64::new(expiry_nanos(expires)),
            reuses: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            reported: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            sample: UseSample::default(),
        }
    }

    /// Takes the parked connection, if any, and says whether the lease was
    /// recalled meanwhile or the connection has outlived its lifetime by
    /// the clock `now` (the taker must then return it through the core);
    /// otherwise counts a checkout served.
    #[inline(always)]
    pub(crate) fn take(&self, now: impl Fn() -> Duration) -> Option<(Box<C>, bool)> {
        let conn = self.parked.take()?;
        if self.recalled.load(Ordering::SeqCst) || self.expired(&now) {
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

    /// The holder parks the connection; `false` when the lease was
    /// recalled meanwhile (whoever then gets it returns it to the core).
    /// `now` is the pool's clock, read only to end a timed use (see
    /// [`UseSample`]).
    #[inline(always)]
    pub(crate) fn put(&self, conn: Box<C>, now: impl Fn() -> Duration) -> bool {
        #[cfg(feature = "metrics")]
        self.sample.finish(now);
        #[cfg(not(feature = "metrics"))]
        let _ = now;
        self.parked.put(conn);
        !self.recalled.load(Ordering::SeqCst)
    }

    /// Whether nothing looked parked (a plain load: a hint).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Takes what is parked without touching the flag or the count.
    pub(crate) fn take_parked(&self) -> Option<Box<C>> {
        self.parked.take()
    }

    /// Ends the lease (under the pool lock). Returns the parked connection
    /// if it was parked; otherwise its holder will return it.
    pub(crate) fn recall(&self) -> Option<Box<C>> {
        self.recalled.store(true, Ordering::SeqCst);
        self.parked.take()
    }

    /// Starts a new lease in this (empty) cell (under the pool lock), of
    /// a connection that outlives its lifetime at `expires`.
    pub(crate) fn rearm(&self, expires: Option<Duration>) {
        self.reuses.store(0, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.reported.store(0, Ordering::Relaxed);
        self.expires.store(expiry_nanos(expires), Ordering::Relaxed);
        self.recalled.store(false, Ordering::SeqCst);
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
    /// The lease was recalled but the owner got the connection: it must
    /// return it through the core (ending the lease) and ask the core.
    Recalled(Box<C>),
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

    /// `owner` takes the parked connection back (an expired one as
    /// recalled; see [`LeaseCell::take`]).
    #[inline(always)]
    pub(crate) fn reacquire(&self, owner: OwnerId, now: impl Fn() -> Duration) -> Reacquire<C> {
        match self.cell.take(now) {
            Some((conn, false)) => {
                self.holder.store(owner.0, Ordering::Relaxed);
                Reacquire::Held(conn)
            }
            Some((conn, true)) => Reacquire::Recalled(conn),
            None => Reacquire::Empty,
        }
    }

    /// `owner` takes the parked connection, handed over with this lease,
    /// and whether it must go back through the core (recalled, or past
    /// its lifetime; see [`Lease::reacquire`]); `Err` gives the lease back
    /// when nothing was parked.
    #[inline(always)]
    pub(crate) fn hand_over(
        self: Arc<Self>,
        owner: OwnerId,
        now: impl Fn() -> Duration,
    ) -> Result<(Handed<C>, bool), Arc<Self>> {
        let (conn, recalled) = match self.reacquire(owner, now) {
            Reacquire::Held(conn) => (conn, false),
            Reacquire::Recalled(conn) => (conn, true),
            Reacquire::Empty => return Err(self),
        };
        let handed = Handed {
            id: self.conn,
            conn,
            lease: Some(Leased::Owner(self)),
        };
        Ok((handed, recalled))
    }

    /// The holder parks the connection. `Err` gives it back when the lease
    /// was recalled meanwhile: the caller must check it in to the core.
    /// (Only its owner parks in a lease, so taking back whatever is parked
    /// is safe here; the stash's reused cells settle under the lock.)
    #[inline]
    pub(crate) fn park(&self, conn: Box<C>, now: impl Fn() -> Duration) -> Result<(), Box<C>> {
        self.holder.store(NOBODY, Ordering::Relaxed);
        if self.cell.put(conn, now) {
            return Ok(());
        }
        // The recall may have taken it already; whoever gets it returns it.
        self.cell.take_parked().map_or(Ok(()), Err)
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
            Reacquire::Recalled(_)
        ));
        assert_eq!(lease.reuses(), 1, "the expired take is not a reuse");
    }

    #[test]
    fn a_reacquire_after_a_recall_returns_the_connection_to_the_core() {
        let lease = lease();
        lease.park(Box::new("conn"), never).unwrap();
        // The recall raised the flag but the owner's swap came first.
        lease.cell.recalled.store(true, Ordering::SeqCst);
        assert!(matches!(
            lease.reacquire(OWNER, never),
            Reacquire::Recalled(_)
        ));
        assert_eq!(lease.reuses(), 0);
    }
}
