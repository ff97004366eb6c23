//! A connection manager for tests that counts everything it does, and
//! helpers that wait on the pool's own state instead of sleeping.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pinpool::blocking::{Manager, Pool};
use pinpool::core::{Pinning, PoolState, WakePolicy};

/// Every wake policy (Bounded and Eventual with small bounds and a short
/// period, so tests reach them).
pub const WAKE_POLICIES: [WakePolicy; 5] = [
    WakePolicy::Handoff,
    WakePolicy::Broadcast,
    WakePolicy::Signal,
    WakePolicy::Bounded(2),
    // Counting every checkin: the tests' holds are shorter than the
    // default's `min_hold`, and `bypass_bound` checks the count.
    WakePolicy::Eventual {
        bypasses: 2,
        period: Duration::from_micros(100),
        min_hold: Duration::ZERO,
    },
];

/// The bypass bound a pool's counters must respect under `wake` and
/// `pinning`: `Bounded`'s count, and `Eventual`'s where every checkin
/// counts (a zero `min_hold`) except under `Strict`. A waiter bound to one
/// connection, and one passed over at checkins ending shorter holds, are
/// bounded by the period alone.
pub fn bypass_bound(wake: WakePolicy, pinning: Pinning) -> Option<u32> {
    match wake {
        WakePolicy::Bounded(bound) => Some(bound),
        WakePolicy::Eventual {
            bypasses, min_hold, ..
        } if pinning != Pinning::Strict && min_hold.is_zero() => Some(bypasses),
        _ => None,
    }
}

/// Every pinning mode.
pub const PINNINGS: [Pinning; 3] = [Pinning::Strict, Pinning::Affinity, Pinning::Off];

/// What the manager saw, shared with the test.
#[derive(Default)]
pub struct Tally {
    pub connects: AtomicUsize,
    pub failed_connects: AtomicUsize,
    pub live: AtomicUsize,
    pub max_live: AtomicUsize,
    pub validations: AtomicUsize,
    /// Calls of `has_broken`.
    pub broken_checks: AtomicUsize,
    /// (connection number, threads that used it) for every closed connection.
    pub closed: Mutex<Vec<(usize, HashSet<ThreadId>)>>,
}

/// A connection that records who used it and can be marked broken.
pub struct TestConn {
    pub number: usize,
    pub users: HashSet<ThreadId>,
    pub uses: usize,
    pub broken: bool,
    pub invalid: bool,
    tally: Arc<Tally>,
}

impl TestConn {
    /// Records a use by the current thread.
    pub fn touch(&mut self) {
        self.uses += 1;
        self.users.insert(thread::current().id());
    }
}

impl Drop for TestConn {
    fn drop(&mut self) {
        self.tally.live.fetch_sub(1, Ordering::SeqCst);
        let users = std::mem::take(&mut self.users);
        self.tally.closed.lock().push((self.number, users));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("connect refused (attempt {0})")]
pub struct Refused(pub usize);

/// Counts connects, live connections and validations; can refuse every
/// other connect, or fail every validation.
#[derive(Clone, Default)]
pub struct TestManager {
    pub tally: Arc<Tally>,
    pub fail_every_other: Arc<AtomicBool>,
    pub never_valid: Arc<AtomicBool>,
}

impl TestManager {
    pub fn failing_half() -> Self {
        let manager = TestManager::default();
        manager.fail_every_other.store(true, Ordering::SeqCst);
        manager
    }

    /// Every connection it opens fails validation.
    pub fn never_valid() -> Self {
        let manager = TestManager::default();
        manager.never_valid.store(true, Ordering::SeqCst);
        manager
    }
}

impl TestManager {
    fn open(&self) -> Result<TestConn, Refused> {
        let attempt = self.tally.connects.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_every_other.load(Ordering::SeqCst) && attempt.is_multiple_of(2) {
            self.tally.failed_connects.fetch_add(1, Ordering::SeqCst);
            return Err(Refused(attempt));
        }
        let live = self.tally.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.tally.max_live.fetch_max(live, Ordering::SeqCst);
        Ok(TestConn {
            number: attempt,
            users: HashSet::new(),
            uses: 0,
            broken: false,
            invalid: false,
            tally: Arc::clone(&self.tally),
        })
    }

    fn is_broken(&self, conn: &TestConn) -> bool {
        self.tally.broken_checks.fetch_add(1, Ordering::SeqCst);
        conn.broken
    }

    fn check(&self, conn: &TestConn) -> Result<(), Refused> {
        self.tally.validations.fetch_add(1, Ordering::SeqCst);
        if conn.invalid || self.never_valid.load(Ordering::SeqCst) {
            Err(Refused(conn.number))
        } else {
            Ok(())
        }
    }
}

impl Manager for TestManager {
    type Connection = TestConn;
    type Error = Refused;

    fn connect(&self) -> Result<TestConn, Refused> {
        self.open()
    }

    fn validate(&self, conn: &mut TestConn) -> Result<(), Refused> {
        self.check(conn)
    }

    fn has_broken(&self, conn: &mut TestConn) -> bool {
        self.is_broken(conn)
    }
}

/// The same manager for the async pool.
#[cfg(feature = "tokio")]
impl pinpool::tokio::Manager for TestManager {
    type Connection = TestConn;
    type Error = Refused;

    async fn connect(&self) -> Result<TestConn, Refused> {
        tokio::task::yield_now().await; // a connect is never instant
        self.open()
    }

    async fn validate(&self, conn: &mut TestConn) -> Result<(), Refused> {
        self.check(conn)
    }

    fn has_broken(&self, conn: &mut TestConn) -> bool {
        self.is_broken(conn)
    }
}

/// A pool whose state a test can wait on, blocking or async.
pub trait Observed {
    fn snapshot(&self) -> PoolState;
}

impl<M: Manager> Observed for Pool<M> {
    fn snapshot(&self) -> PoolState {
        self.state()
    }
}

#[cfg(feature = "tokio")]
impl<M: pinpool::tokio::Manager> Observed for pinpool::tokio::Pool<M> {
    fn snapshot(&self) -> PoolState {
        self.state()
    }
}

/// Waits until the pool's state satisfies `done`, yielding between looks;
/// fails the test (never hangs) if it takes more than 20 s.
pub fn wait_for_state(
    pool: &impl Observed,
    what: &str,
    done: impl Fn(&PoolState) -> bool,
) -> PoolState {
    let mut seen = None;
    wait_until(what, || {
        let state = pool.snapshot();
        let met = done(&state);
        seen = Some(state);
        met
    });
    seen.expect("looked at least once")
}

/// Waits until `done` holds, yielding between looks: for what the pool
/// finishes on a thread of its own (a broken connection's drop on a
/// `pinpool-close` thread); fails the test (never hangs) after 20 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// Whether the pool has settled: no connect in flight, and every
/// connection the manager opened and has not closed is one the pool counts
/// (closes and connects finish outside the pool lock, so a snapshot can be
/// a moment early).
pub fn settled(state: &PoolState, tally: &Tally) -> bool {
    state.connecting == 0
        && state.pending == 0
        && state.resetting == 0
        && state.counters.opened as usize == tally.connects.load(Ordering::SeqCst)
        && tally.live.load(Ordering::SeqCst) == state.idle + state.in_use
}

/// Every connection ever opened is connecting, idle, checked out, being
/// reset, closed or counted as failed.
pub fn assert_conservation(state: &PoolState, tally: &Tally) {
    let c = state.counters;
    assert_eq!(
        c.opened,
        (state.idle + state.in_use + state.resetting) as u64 + c.closed + c.connect_failures,
        "conservation: {state:?}"
    );
    assert_eq!(
        c.connect_failures as usize,
        tally.failed_connects.load(Ordering::SeqCst)
    );
}

/// `owners` owners are pinned, spread over the connections so that each
/// has as many as the others, give or take one.
pub fn assert_spread_evenly(state: &PoolState, owners: usize) {
    let counts = state.pins.iter().map(|&(_, owners)| owners);
    let (fewest, most) = (counts.clone().min(), counts.max());
    assert_eq!(state.pinned_owners, owners, "{state:?}");
    assert!(most <= fewest.map(|n| n + 1), "{owners} owners: {state:?}");
}

/// Waits for the pool to settle, then checks conservation. A leak never
/// settles and fails after 20 s.
pub fn assert_conserved(pool: &Pool<TestManager>, tally: &Tally) -> PoolState {
    let state = wait_for_state(pool, "the pool to settle", |s| settled(s, tally));
    assert_conservation(&state, tally);
    state
}

/// The PostgreSQL server's URL (`PINPOOL_PG_URL`: `tests/run.sh` starts a
/// throwaway cluster), or `None` after saying so loudly; under `CI=true`
/// a missing server fails the test instead.
pub fn pg_url() -> Option<String> {
    match std::env::var("PINPOOL_PG_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PINPOOL_PG_URL is not set: tests/run.sh starts the server")
        }
        Err(_) => {
            eprintln!("SKIPPED: no PostgreSQL server (run bash tests/run.sh)");
            None
        }
    }
}

/// The `host:port` of the TCP server `url` names (`None` for a Unix
/// socket): what a proxy in front of it forwards to.
#[cfg(feature = "postgres")]
pub fn pg_upstream(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = url.parse().expect("a valid URL");
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => return None,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some(format!("{host}:{port}"))
}

/// A config for the server `url` names, its user and database, reached
/// at `address` (`host:port`, a proxy in front of it) instead.
#[cfg(feature = "postgres")]
pub fn pg_through(url: &str, address: &str) -> tokio_postgres::Config {
    let server: tokio_postgres::Config = url.parse().expect("a valid URL");
    let (host, port) = address.split_once(':').expect("host:port");
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().expect("a port"))
        .user(server.get_user().unwrap_or("postgres"))
        .dbname(server.get_dbname().unwrap_or("postgres"));
    config
}
