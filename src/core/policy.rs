//! The core's policies: how owners are bound to connections
//! ([`Pinning`], [`Overflow`]), what a checkin does for waiters
//! ([`WakePolicy`]), and when a session is reset ([`Reset`]).

use std::time::Duration;

/// How owners (threads or tasks) are bound to connections.
///
/// ```
/// use pinpool::core::{Checkout, Config, ConnId, Core, OwnerId, Pinning};
///
/// // One connection, held by owner 1; owner 2 asks.
/// let asks = |pinning| -> Result<_, Box<dyn std::error::Error>> {
///     let mut core = Core::new(Config { max_size: 1, pinning, ..Config::default() })?;
///     core.checkout(OwnerId(1));
///     core.poll_action(); // Open
///     core.connected(ConnId(1))?;
///     core.checkout(OwnerId(2));
///     Ok(core.state())
/// };
/// // Strict: bound to the busy connection for life, owner 2 waits for it.
/// assert_eq!(asks(Pinning::Strict)?.pins, vec![(ConnId(1), 2)]);
/// // Exclusive: a session of its own, owner 2 waits for a pin to free.
/// assert_eq!(asks(Pinning::Exclusive)?.waiting_for_pin, 1);
/// // Off: nobody is pinned.
/// assert_eq!(asks(Pinning::Off)?.pinned_owners, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pinning {
    /// An owner's first checkout binds it to one connection for life (the
    /// MongoDB Ruby driver's and PyMongo's requests model). While fewer than
    /// `max_size` connections exist each new owner gets its own; after that
    /// new owners are bound to existing connections by the [`Overflow`] rule.
    /// Until its connection is first handed to it, an owner so bound takes
    /// instead an idle connection nobody is pinned to, if one frees up
    /// first, and its pin moves there: it has no session to keep yet.
    /// An owner whose connection is busy waits for *that* connection.
    /// When its connection closes, its pin moves to the replacement; if
    /// that fails to connect, to the least loaded live connection that is
    /// idle or that others already wait for, where there is one (its
    /// session is gone either way, and that one serves it in turn).
    Strict,
    /// An owner prefers the connection it used last; if that one is busy it
    /// takes any idle connection (or opens one) and is re-pinned to it.
    /// Waiting owners are served in arrival order by whichever connection
    /// frees first (HikariCP-like).
    Affinity,
    /// No pinning: a plain FIFO pool.
    Off,
    /// A **session** per owner: as [`Strict`](Self::Strict), an owner's
    /// first checkout binds it to one connection for life, but a
    /// connection is pinned to at most one owner at a time. Once
    /// `max_size` connections are pinned, a new owner waits — FIFO among
    /// such owners, under the checkout timeout — for a pin to be released
    /// (its thread exits, its scope or session ends, it unpins, or its
    /// connection closes and is not replaced for it); the released
    /// connection is [reset](Reset) before it is bound to the next owner.
    /// Checkouts that pin nobody use only connections nobody is pinned to.
    /// For SQL session state: transactions, `SET`, temporary tables,
    /// prepared statements, advisory locks, `LISTEN`.
    Exclusive,
}

impl Pinning {
    /// Whether an owner stays bound to its connection for life and waits
    /// for *that* connection when it is busy ([`Strict`](Self::Strict)
    /// and [`Exclusive`](Self::Exclusive)).
    ///
    /// ```
    /// use pinpool::core::Pinning;
    /// assert!(Pinning::Exclusive.binds_for_life());
    /// assert!(!Pinning::Affinity.binds_for_life());
    /// ```
    pub fn binds_for_life(self) -> bool {
        matches!(self, Pinning::Strict | Pinning::Exclusive)
    }
}

/// When the core asks its driver to **reset** a connection's session state
/// ([`Action::Reset`](super::Action::Reset), the manager's `reset`) before
/// anyone else may use it. While a reset runs the connection is neither
/// idle nor grantable; one that fails closes the connection
/// ([`CloseReason::ResetFailed`](super::CloseReason::ResetFailed)), so
/// dirty state never reaches the next owner.
///
/// ```
/// use pinpool::blocking::{Manager, Pool};
/// use pinpool::core::{Pinning, Reset};
///
/// struct Sessions; // each connection: the `SET`s its owner made
/// impl Manager for Sessions {
///     type Connection = Vec<&'static str>;
///     type Error = std::io::Error;
///     fn connect(&self) -> std::io::Result<Self::Connection> {
///         Ok(Vec::new())
///     }
///     fn reset(&self, conn: &mut Self::Connection) -> std::io::Result<()> {
///         conn.clear(); // DISCARD ALL
///         Ok(())
///     }
/// }
/// let pool = Pool::builder()
///     .max_size(1)
///     .pinning(Pinning::Exclusive)
///     .reset(Reset::OwnerChange)
///     .build(Sessions)?;
/// std::thread::scope(|s| s.spawn(|| pool.get().map(|mut c| c.push("SET role = alice"))).join().unwrap())?;
/// // That thread exited: its session was reset before this one got it.
/// assert!(pool.get()?.is_empty());
/// assert_eq!(pool.state().counters.resets, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Reset {
    /// Never: for managers with nothing to reset, which then save the
    /// round trip through the pool lock that a no-op reset costs.
    Never,
    /// When a connection's owners change (the default): once the last
    /// owner pinned to a connection it used lets go — its thread exits,
    /// its scope or session ends, it unpins, or Affinity moves it
    /// elsewhere — the connection is reset before any other owner is
    /// granted it. Checkouts that pin nobody leave it as it is.
    #[default]
    OwnerChange,
    /// As [`OwnerChange`](Self::OwnerChange), and also at every checkin of
    /// a checkout that pinned nobody ([`Pinning::Off`], an async `get()`
    /// outside a pinned scope), so that no two checkouts ever share
    /// session state (pgbouncer's `server_reset_query` in session mode).
    /// Such checkouts then take no lock-free fast path.
    EveryUnpinnedCheckin,
}

/// Which existing connection a new owner is bound to under
/// [`Pinning::Strict`] once `max_size` connections exist.
///
/// ```
/// use pinpool::core::{Config, ConnId, Core, Health, OwnerId, Overflow};
///
/// let config = Config { max_size: 2, overflow: Overflow::LeastLoaded, ..Config::default() };
/// let mut core = Core::new(config)?;
/// for (owner, conn) in [(1, 1), (2, 2)] {
///     core.checkout(OwnerId(owner));
///     core.poll_action(); // Open
///     core.connected(ConnId(conn))?;
///     core.poll_action(); // Grant
/// }
/// core.checkin(ConnId(2), Health::Healthy)?;
/// core.checkout(OwnerId(3)); // the pool is full: bound to an existing one
/// assert_eq!(core.pinned_conn(OwnerId(3)), Some(ConnId(2)), "the idle one");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// The connection with the fewest pinned owners, preferring an idle one
    /// (ties go to the lowest connection id).
    LeastLoaded,
    /// A uniformly random existing connection, busy or not, chosen with the
    /// core's seeded generator (the rule "A Curious Concurrency Case"
    /// describes and simulated; kept for study).
    Random,
    /// A uniformly random *idle* connection; if none is idle the owner waits
    /// unbound and is bound when one frees (the rule in that post's Ruby
    /// code; kept for study).
    RandomIdle,
}

/// What a checkin does for the owners waiting in line.
///
/// ```
/// use pinpool::core::{Action, Checkout, Config, ConnId, Core, Health, OwnerId, WakePolicy};
///
/// // Owner 1 holds the only connection, owner 2 waits; owner 1 checks in.
/// let checkin = |wake| -> Result<_, Box<dyn std::error::Error>> {
///     let mut core = Core::new(Config { max_size: 1, wake, ..Config::default() })?;
///     core.checkout(OwnerId(1));
///     core.poll_action(); // Open
///     core.connected(ConnId(1))?;
///     core.poll_action(); // Grant
///     let Checkout::Waiting(ticket) = core.checkout(OwnerId(2)) else { unreachable!() };
///     core.checkin(ConnId(1), Health::Healthy)?;
///     Ok((ticket, core.poll_action()))
/// };
/// // Handoff: straight to the waiter.
/// let (ticket, action) = checkin(WakePolicy::Handoff)?;
/// assert_eq!(action, Some(Action::Grant { ticket, conn: ConnId(1) }));
/// // Broadcast: the waiter is woken to try again (and may lose the race).
/// let (ticket, action) = checkin(WakePolicy::Broadcast)?;
/// assert_eq!(action, Some(Action::Wake(ticket)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakePolicy {
    /// The checked-in connection is granted directly to the oldest waiter
    /// that can use it: no futile wake-up, no lost wake-up, no barging.
    Handoff,
    /// Every sleeping waiter is woken and retries (`ConditionVariable#broadcast`).
    Broadcast,
    /// The oldest sleeping waiter is woken, whatever connection it waits for
    /// (`ConditionVariable#signal`: the 2013 Ruby driver bug, kept for study).
    Signal,
    /// Eventual fairness (parking_lot's idea, with a bypass count for a
    /// clock): a checkin leaves the connection idle and wakes the oldest
    /// waiter that can use it, so a request arriving meanwhile — typically
    /// the returning thread asking again while it still runs — may take it
    /// first instead of waiting for the woken thread to be scheduled. Once
    /// that waiter has been passed over this many times the connection is
    /// handed to it directly. Throughput under oversubscription approaches
    /// a barging pool's; no waiter is passed over much more than this
    /// bound (plus the connections already idle when it was reached).
    Bounded(u32),
    /// Eventual fairness by count *and* time (the default). As under
    /// `Bounded`, a checkin leaves the connection idle and wakes the oldest
    /// waiter that can use it, so the returning thread may barge; the
    /// connection is handed to that waiter directly once `period` has
    /// passed since the connection's last direct hand-off (parking_lot's
    /// clock) or — for a waiter any connection could serve, at a checkin
    /// ending a hold of at least `min_hold` — once it has been passed over
    /// `bypasses` times, whichever comes first.
    ///
    /// The clock bounds the wait when holds are long, where `Bounded(n)`
    /// alone would allow `n` holds. The count drains a queue quickly when
    /// holds are short: a waiter that could use any connection keeps every
    /// owner off the lock-free fast path while it waits, and handing it
    /// this connection leaves the returning thread free to take another. A
    /// waiter bound to one connection (a [`Pinning::Strict`] pin) slows
    /// only that connection's owners, and a hand-off makes them — the
    /// returning thread first — wait for it in turn, a context switch
    /// each; for it the count would buy nothing the period does not, so
    /// only the period applies. Nor does the count apply to a hold shorter
    /// than `min_hold`: the waiter it would go to is usually not running
    /// yet, and where threads outnumber cores a connection handed to a
    /// thread that waits for a core sits unused for the wait while
    /// running threads, finding none free, queue up behind it — one
    /// convoy feeding the next. Needs the driver's clock
    /// ([`Config::needs_clock`](super::Config::needs_clock)).
    Eventual {
        /// Hand over once the oldest waiter, if any connection could serve
        /// it, was passed over this often.
        bypasses: u32,
        /// Hand over at the first checkin this long after the connection's
        /// last direct hand-off.
        period: Duration,
        /// Count toward `bypasses` only at a checkin ending a hold at least
        /// this long (`Duration::ZERO`: at every checkin).
        min_hold: Duration,
    },
}

/// The core's default wake policy, and the blocking pool's:
/// [`WakePolicy::Eventual`], 16 bypasses (after holds of 10 µs or more)
/// or parking_lot's half a millisecond (the async pool's builder starts
/// with `Handoff` instead:
/// [`BuiltPool::DEFAULT_WAKE`](crate::BuiltPool::DEFAULT_WAKE) says why).
/// Real checkouts (a database round trip) hold a connection longer than
/// that, so every contended checkin is then a FIFO hand-off; only holds
/// shorter than the period, with more threads than connections, see
/// barging — which is when a hand-off to a thread that is not running
/// would cost a context switch per checkout.
/// (The count was chosen on the contended benchmark, where 16 kept
/// `Affinity` at 16 threads on its fast path and larger counts were
/// markedly slower; `min_hold` on the same benchmark and the fairness
/// one, where 10 µs keeps the count's short tails on 20 µs holds and
/// takes `Affinity` and `Off` out of a hand-off convoy on holds of
/// nanoseconds: `docs/benchmarks.md`.)
impl Default for WakePolicy {
    fn default() -> Self {
        Self::DEFAULT_EVENTUAL
    }
}

impl WakePolicy {
    /// [`WakePolicy::Eventual`] with 16 bypasses (counted after holds
    /// of 10 µs or more) or 500 µs: the core's default, and the blocking
    /// pool's (the async pool's builder starts with
    /// [`Handoff`](Self::Handoff): see [`BuiltPool`](crate::BuiltPool)).
    pub const DEFAULT_EVENTUAL: WakePolicy = WakePolicy::Eventual {
        bypasses: 16,
        period: Duration::from_micros(500),
        min_hold: Self::DEFAULT_MIN_HOLD,
    };

    /// [`DEFAULT_EVENTUAL`](Self::DEFAULT_EVENTUAL)'s `min_hold`: about
    /// what waking a parked thread costs on an idle core, so holds
    /// shorter than it are cheaper to barge past than to hand over.
    pub const DEFAULT_MIN_HOLD: Duration = Duration::from_micros(10);

    /// Whether a checkin may leave a connection idle beside a waiter that
    /// could use it, waking that waiter instead of handing it over
    /// (eventual fairness: [`Bounded`](Self::Bounded) and
    /// [`Eventual`](Self::Eventual)).
    pub fn barges(self) -> bool {
        matches!(self, WakePolicy::Bounded(_) | WakePolicy::Eventual { .. })
    }
}
