//! Network faults between the pool and each real server, through a
//! Toxiproxy-style proxy (`fault_proxy`): latency, a thin pipe, lossy
//! links, a 5 s blackhole healed just as a connect's handshake is lost, a
//! half-open stall, the link cut while connects are in flight, and a slow
//! close as the pools are dropped — each under
//! load (32 threads over a pinned and an unpinned pool; 256 tasks, half
//! pinned), for both adapters.
//!
//! What must hold, phase by phase: every checkout and every round trip
//! ends by its timeout (nothing hangs), failures are typed, broken sockets
//! are replaced, connects in flight never exceed `max_connecting` and are
//! few while the server is unreachable (backed off: no reconnect storm),
//! the pool recovers within two maintenance intervals of the heal (or of
//! the server's last answer slower than the timeouts, where it was that
//! slow: the proxy times the server), and afterwards every socket the
//! pool opened is live in it or closed: the proxy's own count of links
//! equals the pool's count, the server sees at most `max_size` per pool,
//! no pin is left, and dropping the pool closes them all without waiting
//! on the server's end.
//!
//! Each test prints a table of its phases (`cargo test --test faults --
//! --nocapture`); the README quotes one run.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pinpool::core::{Event, Pinning, PoolState};

mod fault_proxy;
mod server;
mod support;

use fault_proxy::FaultProxy;

/// A pool's bounds in these tests.
const MAX_SIZE: usize = 8;
const MAX_CONNECTING: usize = 2;
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// The adapters' connect and round-trip timeouts, and the pool's.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the server is unreachable in the blackhole phase (at least:
/// it is healed at the next handshake it swallows after that).
const BLACKHOLE: Duration = Duration::from_secs(5);
/// How long the links stall (half-open) in their phase.
const STALL: Duration = Duration::from_secs(5);
/// How long the proxy keeps a link open after the pool closed its end,
/// as the pools are dropped.
const SLOW_CLOSE: Duration = Duration::from_secs(2);
/// What a loaded 2-core machine may add to a timeout before the call
/// returns: scheduling, not waiting.
const SLACK: Duration = Duration::from_millis(1500);

/// One test at a time: each loads both cores, and the bounds on how long
/// a call takes are about the pool, not about a neighbour's load.
static TURN: Mutex<()> = Mutex::new(());

/// Whatever a worker's round trip returned as an error.
type Failure = Box<dyn StdError + Send + Sync>;

// ---------------------------------------------------------------------
// What each phase records.

/// What happened when — connects, failures, heals — for a failed
/// recovery's message: the tally says how often, this says in what order.
mod journal {
    use std::fmt::Write;
    use std::time::Instant;

    use parking_lot::Mutex;

    static LINES: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());

    pub fn note(line: String) {
        LINES.lock().push((Instant::now(), line));
    }

    /// The lines noted since `start`, each with its milliseconds since.
    pub fn since(start: Instant) -> String {
        let mut text = String::new();
        let lines = LINES.lock();
        // The first lines say how it went; a long tail only repeats them.
        for (at, line) in lines.iter().filter(|(at, _)| *at >= start).take(200) {
            let _ = writeln!(text, "{:>6} ms {line}", (*at - start).as_millis());
        }
        text
    }
}

/// The connects the pool started, as its events report them.
#[derive(Default)]
struct Connects {
    started: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Connects {
    fn observe(&self, event: &Event) {
        match event {
            Event::ConnectionCreated(_) => {
                self.started.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            }
            Event::ConnectionReady { .. } | Event::ConnectionFailed(_) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Event::ConnectionClosed { .. } => {}
            _ => return,
        }
        journal::note(format!("{event:?}"));
    }

    /// Starts a phase: what it reports is counted from here.
    fn begin(&self) -> usize {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        self.max_in_flight.store(in_flight, Ordering::SeqCst);
        self.started.load(Ordering::SeqCst)
    }
}

/// What the workers did in one phase.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    /// Failures by kind (the error's `Display` up to its first colon).
    errors: Mutex<Vec<String>>,
    errors_changed: parking_lot::Condvar,
    waits: Mutex<Vec<Duration>>,
    /// The longest checkout and the longest round trip, to check bounds.
    longest_get: Mutex<Duration>,
    longest_trip: Mutex<Duration>,
    /// The workers that succeeded at least once, for the recovery wait.
    served: Mutex<std::collections::HashSet<usize>>,
    served_changed: parking_lot::Condvar,
    /// Each worker's last failure in full, to say what held up one not
    /// served.
    last_failure: Mutex<std::collections::BTreeMap<usize, String>>,
}

impl Tally {
    fn checkout(&self, worker: usize, took: Duration, result: Result<(), String>) {
        let mut longest = self.longest_get.lock();
        *longest = (*longest).max(took);
        match result {
            Ok(()) => self.waits.lock().push(took),
            Err(message) => self.failed(worker, message),
        }
    }

    /// Records `worker`'s failure, its error's text `message`.
    fn failed(&self, worker: usize, message: String) {
        journal::note(format!("worker {worker}: {message}"));
        self.errors.lock().push(kind_of(&message));
        self.last_failure.lock().insert(worker, message);
        self.errors_changed.notify_all();
    }

    /// Whether some operation has failed by `deadline`.
    fn felt_by(&self, deadline: Instant) -> bool {
        let mut errors = self.errors.lock();
        while errors.is_empty() {
            if self
                .errors_changed
                .wait_until(&mut errors, deadline)
                .timed_out()
            {
                break;
            }
        }
        !errors.is_empty()
    }

    /// Records `worker`'s round trip sent at `sent`; returns whether it
    /// succeeded (a failed one's connection is discarded: after an I/O
    /// failure the session's state is unknown).
    fn round_trip(&self, worker: usize, sent: Instant, result: Result<(), Failure>) -> bool {
        let took = sent.elapsed();
        let mut longest = self.longest_trip.lock();
        *longest = (*longest).max(took);
        drop(longest);
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
                self.succeeded(worker);
                true
            }
            Err(error) => {
                self.failed(worker, error.to_string());
                false
            }
        }
    }

    fn p99_wait(&self) -> Duration {
        let mut waits = self.waits.lock().clone();
        waits.sort();
        waits
            .get(waits.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or_default()
    }

    fn error_kinds(&self) -> String {
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for kind in self.errors.lock().iter() {
            *kinds.entry(kind.clone()).or_default() += 1;
        }
        let kinds: Vec<_> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        }
    }
}

/// An error's kind: its message up to the first colon or digit, so that
/// the table groups alike failures.
fn kind_of(text: &str) -> String {
    let end = text
        .find(|c: char| c == ':' || c == '(' || c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].trim().to_owned()
}

/// A phase's row in the printed table.
struct Row {
    phase: &'static str,
    ok: usize,
    errors: String,
    p99_wait: Duration,
    longest_get: Duration,
    longest_trip: Duration,
    connects: usize,
    max_in_flight: usize,
}

// ---------------------------------------------------------------------
// The two servers.

/// What the scenarios need of an adapter: managers pointed at the proxy,
/// one bounded round trip, and the server's count of the pool's sockets.
trait Backend: Send + Sync + 'static {
    type Blocking: pinpool::blocking::Manager;
    type Async: pinpool::tokio::Manager;
    const NAME: &'static str;

    /// The server's `host:port`, or `None` (after saying so) to skip.
    fn upstream(&self) -> Option<String>;
    fn blocking(&self, proxy: &str) -> Self::Blocking;
    fn asynchronous(&self, proxy: &str) -> Self::Async;
    /// One round trip, bounded by [`IO_TIMEOUT`]; a failed one leaves the
    /// connection marked broken where the driver cannot recover it.
    fn trip(
        conn: &mut <Self::Blocking as pinpool::blocking::Manager>::Connection,
    ) -> Result<(), Failure>;
    fn trip_async(
        conn: &mut <Self::Async as pinpool::tokio::Manager>::Connection,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    /// How many sockets of the pools under test the server has open.
    fn server_sockets(&self) -> usize;
}

mod mongo {
    use super::*;
    use bson::doc;
    use pinpool::mongodb::{AsyncMongoConnection, MongoConnection, MongoManager};

    pub struct Mongo {
        server: Option<super::server::Server>,
        /// The server's socket count before the test, the monitor's own
        /// included.
        baseline: usize,
    }

    impl Mongo {
        pub fn new() -> Mongo {
            let server = super::server::shared();
            let mut mongo = Mongo {
                server,
                baseline: 0,
            };
            mongo.baseline = mongo.count();
            mongo
        }

        fn manager(address: &str) -> MongoManager {
            MongoManager::new(&format!("mongodb://{address}"))
                .expect("a valid URI")
                .app_name("pinpool-faults")
                .connect_timeout(IO_TIMEOUT)
                .io_timeout(IO_TIMEOUT)
        }

        fn count(&self) -> usize {
            let Some(server) = &self.server else { return 0 };
            let address = server.uri.trim_start_matches("mongodb://");
            let mut monitor = pinpool::blocking::Manager::connect(&Self::manager(address))
                .expect("a monitoring connection");
            let status = monitor
                .command("admin", doc! { "serverStatus": 1 })
                .expect("serverStatus");
            let current = status
                .get_document("connections")
                .ok()
                .and_then(|c| c.get("current"))
                .and_then(|n| n.as_i64().or(n.as_i32().map(i64::from)))
                .expect("a connection count");
            // Less this monitor itself.
            usize::try_from(current - 1).expect("a count")
        }
    }

    impl Backend for Mongo {
        type Blocking = MongoManager;
        type Async = MongoManager;
        const NAME: &'static str = "MongoDB";

        fn upstream(&self) -> Option<String> {
            let server = self.server.as_ref()?;
            Some(server.uri.trim_start_matches("mongodb://").to_owned())
        }

        fn blocking(&self, proxy: &str) -> MongoManager {
            Self::manager(proxy)
        }

        fn asynchronous(&self, proxy: &str) -> MongoManager {
            Self::manager(proxy)
        }

        fn trip(conn: &mut MongoConnection) -> Result<(), Failure> {
            // A timed-out round trip marks the socket broken itself.
            conn.command("admin", doc! { "ping": 1 })?;
            Ok(())
        }

        async fn trip_async(conn: &mut AsyncMongoConnection) -> Result<(), Failure> {
            conn.command("admin", doc! { "ping": 1 }).await?;
            Ok(())
        }

        fn server_sockets(&self) -> usize {
            self.count().saturating_sub(self.baseline)
        }
    }
}

mod pg {
    use super::*;
    use pinpool::postgres::{AsyncPgManager, BlockingPgClient, PgClient, PgManager};

    /// The pools' sessions carry this name, so the server's count is of
    /// them alone.
    const TAG: &str = "pinpool-faults";

    pub struct Pg {
        url: Option<String>,
    }

    impl Pg {
        pub fn new() -> Pg {
            Pg {
                url: support::pg_url(),
            }
        }

        /// The server's config with the proxy's address in place of the
        /// server's, and the tag.
        fn config(&self, proxy: &str) -> tokio_postgres::Config {
            let url = self.url.as_deref().expect("a server");
            let mut config = support::pg_through(url, proxy);
            config.application_name(TAG).connect_timeout(IO_TIMEOUT);
            config
        }
    }

    impl Backend for Pg {
        type Blocking = PgManager;
        type Async = AsyncPgManager;
        const NAME: &'static str = "PostgreSQL";

        fn upstream(&self) -> Option<String> {
            support::pg_upstream(self.url.as_deref()?)
        }

        fn blocking(&self, proxy: &str) -> PgManager {
            PgManager::new(self.config(proxy).into()).io_timeout(IO_TIMEOUT)
        }

        fn asynchronous(&self, proxy: &str) -> AsyncPgManager {
            AsyncPgManager::new(self.config(proxy)).io_timeout(IO_TIMEOUT)
        }

        fn trip(conn: &mut BlockingPgClient) -> Result<(), Failure> {
            // `postgres::Client` bounds no query but this one: its
            // blocking API has no timeout of its own.
            conn.is_valid(IO_TIMEOUT)?;
            Ok(())
        }

        async fn trip_async(conn: &mut PgClient) -> Result<(), Failure> {
            match tokio::time::timeout(IO_TIMEOUT, conn.simple_query("SELECT 1")).await {
                Ok(result) => result.map(drop).map_err(Into::into),
                Err(elapsed) => {
                    // Its reply, lost on the link, would leave every later
                    // one a query behind: the session is of no more use.
                    conn.abort();
                    Err(elapsed.into())
                }
            }
        }

        fn server_sockets(&self) -> usize {
            let url = self.url.as_deref().expect("a server");
            let mut observer =
                postgres::Client::connect(url, postgres::NoTls).expect("an observer connection");
            let row = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&TAG],
                )
                .expect("pg_stat_activity");
            usize::try_from(row.get::<_, i64>(0)).expect("a count")
        }
    }
}

// ---------------------------------------------------------------------
// The phases, the same for both pools: the workers record into the
// current phase's tally while this steers the proxy.

/// The tally the workers record into now.
type Current = Mutex<Arc<Tally>>;

/// Runs every phase against `proxy` while `workers` workers load the
/// pools, printing the table as it goes. `clear` clears every pool and
/// makes it ready again, so that all its connections are opened anew;
/// `states` reads the pools' states, for a failure's message.
fn run_phases(
    proxy: &FaultProxy,
    current: &Current,
    connects: &Connects,
    pools: usize,
    workers: usize,
    clear: &dyn Fn(),
    states: &dyn Fn() -> Vec<PoolState>,
) {
    let phase = |name: &'static str, toxic: &dyn Fn(), last: Duration| {
        let tally = Arc::new(Tally::default());
        *current.lock() = Arc::clone(&tally);
        let started = connects.begin();
        toxic();
        thread::sleep(last); // the phase's length: the load runs meanwhile
        let row = Row {
            phase: name,
            ok: tally.ok.load(Ordering::SeqCst),
            errors: tally.error_kinds(),
            p99_wait: tally.p99_wait(),
            longest_get: *tally.longest_get.lock(),
            longest_trip: *tally.longest_trip.lock(),
            connects: connects.started.load(Ordering::SeqCst) - started,
            max_in_flight: connects.max_in_flight.load(Ordering::SeqCst),
        };
        row.print();
        (tally, row)
    };
    // Heals the link and waits until every worker is served again, which
    // must take at most two maintenance intervals: a connect stuck in the
    // fault as it heals is given up by its timeout (one interval), and
    // connects then back off for at most one more. That bound is the
    // pool's part and assumes a server that answers within the timeouts:
    // where the proxy saw the server itself keep a request or a connect
    // waiting longer after the heal (on CI once, a loaded 2-core machine
    // took a second to start a session), the two intervals run from its
    // last such answer instead.
    let recover = |after: &str| {
        let tally = Arc::new(Tally::default());
        *current.lock() = Arc::clone(&tally);
        let healed = Instant::now();
        journal::note("healed".to_owned());
        proxy.heal();
        let took = tally.wait_until_all_succeeded(workers, healed + 10 * MAINTENANCE_INTERVAL);
        let server_back = proxy
            .server_slow_until(healed..healed + took, IO_TIMEOUT)
            .map(|back| back.saturating_duration_since(healed));
        // What the workers met on the way, who is still not served, the
        // pools' states and what happened when say what held them up.
        let why = || {
            format!(
                "meanwhile: {}; not served yet: [{}]; the pools: {:?}; \
                 the server slow until {server_back:?} after the heal; since the heal:\n{}",
                tally.error_kinds(),
                tally.unserved(workers),
                states(),
                journal::since(healed)
            )
        };
        assert!(
            tally.all_served(workers),
            "{after}: a worker not served again in {took:?}; {}",
            why()
        );
        assert!(
            took <= server_back.unwrap_or_default() + 2 * MAINTENANCE_INTERVAL + SLACK,
            "{after}: not every worker served within {took:?}; {}",
            why()
        );
        recovered_row(took, server_back)
    };
    // A phase the workers must feel, which may cost at most `ceiling`
    // connects.
    let outage = |name: &'static str, fault: &dyn Fn(), last: Duration, ceiling: usize| {
        let (tally, row) = phase(name, fault, last);
        // A checkout already waiting when the fault began may only feel it
        // by its timeout, which can outlast a short phase: the fault, still
        // on, gets that long to be felt.
        let felt = tally.felt_by(Instant::now() + CHECKOUT_TIMEOUT + SLACK);
        assert!(felt, "{name}: the fault was felt");
        assert!(
            row.connects <= ceiling,
            "{name}: {} connects (at most {ceiling})",
            row.connects
        );
        row
    };

    let mut rows = Vec::new();
    let (steady, row) = phase("steady", &|| {}, Duration::from_millis(500));
    assert_eq!(steady.errors.lock().len(), 0, "{}", steady.error_kinds());
    rows.push(row);

    let (latency, row) = phase(
        "latency 25 ± 10 ms",
        &|| proxy.latency(25, 10),
        2 * MAINTENANCE_INTERVAL,
    );
    assert_eq!(
        latency.errors.lock().len(),
        0,
        "no timeout fires early: {}",
        latency.error_kinds()
    );
    assert!(row.ok > 0);
    rows.push(row);
    proxy.heal();

    // A thin pipe: the round trips are small, so it only slows them.
    let (narrow, row) = phase(
        "bandwidth 16 KiB/s",
        &|| proxy.bandwidth(16 << 10),
        MAINTENANCE_INTERVAL,
    );
    assert_eq!(narrow.errors.lock().len(), 0, "{}", narrow.error_kinds());
    assert!(row.ok > 0);
    rows.push(row);
    proxy.heal();

    // Bursts of loss: every 700 ms, every link forwards nothing for 200 ms
    // and is then reset, as a flaky network's stalls end.
    let lossy = &|| {
        for _ in 0..3 {
            proxy.blackhole();
            thread::sleep(Duration::from_millis(200)); // the burst's stall
            proxy.reset_links();
            proxy.heal();
            thread::sleep(Duration::from_millis(500)); // then calm
        }
    };
    let (loss, row) = phase("loss: 3 bursts of 200 ms", lossy, Duration::ZERO);
    assert!(
        row.ok > 0,
        "the healthy links keep serving: {}",
        loss.error_kinds()
    );
    assert!(row.connects > 0, "broken sockets are replaced");
    rows.push(row);
    recover("after the loss");

    // Each connect in flight ends by its timeout: few of them. (A
    // connect into the blackhole may hold its thread past that: the
    // `postgres` crate's connect timeout bounds the TCP connect, not the
    // handshake. The pool has given it up by then; the cut below ends it.)
    let rounds = BLACKHOLE.as_millis() / IO_TIMEOUT.as_millis() + 2;
    let ceiling = pools * MAX_CONNECTING * rounds as usize;
    let blackhole = || proxy.blackhole();
    rows.push(outage("blackhole 5 s", &blackhole, BLACKHOLE, ceiling));
    // Healed at the worst moment for recovery: just after the blackhole
    // swallowed a connect's handshake. That connect waits out its timeout
    // even once healed, and connects back off after it, the two intervals
    // `recover` allows. (Healed at a moment chosen by time, as this phase
    // was until 2026-12-04, recovery took 0.5–0.9 s: most heals fell
    // between connects.) Connects are tried at least once per timeout and
    // backoff while workers wait, so one comes within that.
    let within = IO_TIMEOUT + MAINTENANCE_INTERVAL + SLACK;
    assert!(
        proxy.wait_for_a_swallowed_handshake(Instant::now() + within),
        "a connect into the blackhole by {within:?} after the phase"
    );
    rows.push(recover("after the blackhole"));

    // Half-open: nothing is read, then on heal the replies to requests
    // given up on arrive late. A connection whose round trip timed out was
    // discarded, so no late reply is taken for a new request's.
    let rounds = STALL.as_millis() / IO_TIMEOUT.as_millis() + 2;
    let ceiling = pools * MAX_CONNECTING * rounds as usize;
    let stall = || proxy.stall();
    rows.push(outage("half-open 5 s", &stall, STALL, ceiling));
    rows.push(recover("after the stall"));

    // Every pool reconnects everything, and the link goes down meanwhile.
    // Refused connects fail at once: only the backoff (10, 20, 40 … ms)
    // keeps the workers' retries from becoming a storm of them.
    let cut = || {
        clear();
        proxy.cut();
    };
    let ceiling = pools * MAX_CONNECTING * 10;
    rows.push(outage(
        "link cut during connects",
        &cut,
        MAINTENANCE_INTERVAL,
        ceiling,
    ));
    rows.push(recover("after the cut"));

    for row in &rows {
        assert!(
            row.longest_get <= CHECKOUT_TIMEOUT + SLACK,
            "{}: a checkout took {:?}",
            row.phase,
            row.longest_get
        );
        assert!(
            row.longest_trip <= IO_TIMEOUT + SLACK,
            "{}: a round trip took {:?}",
            row.phase,
            row.longest_trip
        );
        assert!(
            row.max_in_flight <= pools * MAX_CONNECTING,
            "{}: {} connects in flight",
            row.phase,
            row.max_in_flight
        );
    }
}

/// The row that says how long the pool took to serve every worker again,
/// and until when (since the heal) the server answered slower than the
/// timeouts, if it did.
fn recovered_row(took: Duration, server_back: Option<Duration>) -> Row {
    let mut errors = format!("recovered in {} ms", took.as_millis());
    if let Some(back) = server_back {
        errors += &format!(" (the server slow until {} ms)", back.as_millis());
    }
    let row = Row {
        phase: "healed: every worker served again",
        ok: 0,
        errors,
        p99_wait: Duration::ZERO,
        longest_get: Duration::ZERO,
        longest_trip: Duration::ZERO,
        connects: 0,
        max_in_flight: 0,
    };
    row.print();
    row
}

/// The table's heading; each phase prints its row as it ends, so a
/// failed run shows how far it got.
fn print_heading(title: &str) {
    println!("\n{title}");
    println!(
        "| phase | ok | failures | p99 wait | longest get | longest trip | connects | max in flight |"
    );
    println!("|---|---|---|---|---|---|---|---|");
}

impl Row {
    fn print(&self) {
        println!(
            "| {} | {} | {} | {:.1} ms | {} ms | {} ms | {} | {} |",
            self.phase,
            self.ok,
            self.errors,
            self.p99_wait.as_secs_f64() * 1e3,
            self.longest_get.as_millis(),
            self.longest_trip.as_millis(),
            self.connects,
            self.max_in_flight
        );
    }
}

impl Tally {
    /// A worker's success, by worker number, for the recovery wait.
    fn succeeded(&self, worker: usize) {
        let mut served = self.served.lock();
        if served.insert(worker) {
            self.served_changed.notify_all();
        }
    }

    /// Waits until every one of `workers` has succeeded once, or until
    /// `deadline`; returns how long that took.
    fn wait_until_all_succeeded(&self, workers: usize, deadline: Instant) -> Duration {
        let start = Instant::now();
        let mut served = self.served.lock();
        while served.len() < workers
            && !self
                .served_changed
                .wait_until(&mut served, deadline)
                .timed_out()
        {}
        start.elapsed()
    }

    /// Whether every one of `workers` has succeeded since the tally began.
    fn all_served(&self, workers: usize) -> bool {
        self.served.lock().len() == workers
    }

    /// The workers not yet served, each with its last failure.
    fn unserved(&self, workers: usize) -> String {
        let served = self.served.lock();
        let last_failure = self.last_failure.lock();
        let unserved: Vec<_> = (0..workers)
            .filter(|worker| !served.contains(worker))
            .map(|worker| {
                let failure = last_failure.get(&worker).map_or("none", String::as_str);
                format!("{worker} (last failure: {failure})")
            })
            .collect();
        unserved.join(", ")
    }
}

// ---------------------------------------------------------------------
// The two pools.

/// How the pool's own accounting and the proxy's must agree once the load
/// has stopped: every socket the pool opened is live in it or closed, and
/// no pin is left.
fn assert_accounted(
    what: &str,
    proxy: &FaultProxy,
    backend: &impl Backend,
    states: &dyn Fn() -> Vec<PoolState>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = states();
        let held: usize = states.iter().map(|s| s.idle + s.in_use + s.resetting).sum();
        // Connects and closes finish outside the pool's lock, and a dead
        // thread's pin goes with its thread-locals, which can outlive the
        // join a moment: wait for them.
        let settled = states
            .iter()
            .all(|s| s.connecting == 0 && s.pending == 0 && s.pinned_owners == 0);
        let links = proxy.links();
        // A backend whose socket closed ends a moment later: the server's
        // count may lag the proxy's.
        let server = (settled && links == held).then(|| backend.server_sockets());
        if server.is_some_and(|server| server <= held) {
            for state in &states {
                assert!(state.total() <= MAX_SIZE, "{what}: {state:?}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {links} proxied sockets, {server:?} on the server, {held} in the \
             pools: {states:?}"
        );
        thread::yield_now();
    }
}

/// Once the pools are gone, so are their sockets.
/// Drops `what` while the proxy closes links slowly: the drop must not wait
/// on the server's end, and afterwards every socket closes.
fn assert_closed_on_drop(
    what: &str,
    proxy: &FaultProxy,
    backend: &impl Backend,
    drop_pools: impl FnOnce(),
) {
    proxy.slow_close(SLOW_CLOSE);
    let dropping = Instant::now();
    drop_pools();
    let took = dropping.elapsed();
    println!("| dropped during a slow close of {SLOW_CLOSE:?} | in {took:.0?} |");
    assert!(
        took < SLOW_CLOSE,
        "dropping {what} took {took:?}: it waited on the server's end"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.links() > 0 || backend.server_sockets() > 0 {
        assert!(
            Instant::now() < deadline,
            "{what}: {} sockets outlive their pool",
            proxy.links()
        );
        thread::yield_now();
    }
}

/// Ends the workers' loops when dropped, a panic's unwinding included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// 32 threads, half on a pinned pool and half on an unpinned one.
fn blocking_faults<B: Backend>(backend: B) {
    let _turn = TURN.lock();
    let Some(upstream) = backend.upstream() else {
        return;
    };
    let proxy = FaultProxy::start(&upstream);
    let address = proxy.addr().to_string();
    let connects = Arc::new(Connects::default());
    let pool = |pinning| {
        let events = Arc::clone(&connects);
        pinpool::blocking::Pool::builder()
            .max_size(MAX_SIZE)
            .max_connecting(MAX_CONNECTING)
            .pinning(pinning)
            .checkout_timeout(CHECKOUT_TIMEOUT)
            .connect_timeout(IO_TIMEOUT)
            .connect_backoff(MAINTENANCE_INTERVAL)
            .maintenance_interval(MAINTENANCE_INTERVAL)
            .event_handler(move |event| events.observe(event))
            .build(backend.blocking(&address))
            .expect("a valid config")
    };
    let pools = [pool(Pinning::Strict), pool(Pinning::Off)];
    let states = || pools.iter().map(|p| p.state()).collect();
    let current: Current = Mutex::new(Arc::new(Tally::default()));
    let stop = AtomicBool::new(false);
    const WORKERS: usize = 32;
    print_heading(&format!(
        "{}, blocking pool: 16 threads pinned + 16 unpinned",
        B::NAME
    ));
    thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (pool, current, stop) = (&pools[worker % 2], &current, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let tally = Arc::clone(&current.lock());
                    let asked = Instant::now();
                    match pool.get() {
                        Ok(mut conn) => {
                            tally.checkout(worker, asked.elapsed(), Ok(()));
                            let sent = Instant::now();
                            let result = B::trip(&mut conn);
                            if !tally.round_trip(worker, sent, result) {
                                pinpool::blocking::PooledConnection::discard(conn);
                            }
                        }
                        Err(error) => {
                            tally.checkout(worker, asked.elapsed(), Err(error.to_string()))
                        }
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop); // a failed phase ends the load too
        let clear = || {
            for pool in &pools {
                pool.clear();
                pool.ready();
            }
        };
        run_phases(
            &proxy,
            &current,
            &connects,
            pools.len(),
            WORKERS,
            &clear,
            &states,
        );
    });
    assert_accounted("after the load", &proxy, &backend, &states);
    assert_closed_on_drop("the pools", &proxy, &backend, || drop(pools));
}

/// 256 tasks on one pool, half of them in pinned scopes.
fn async_faults<B: Backend>(backend: B) {
    let _turn = TURN.lock();
    let Some(upstream) = backend.upstream() else {
        return;
    };
    let proxy = FaultProxy::start(&upstream);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let connects = Arc::new(Connects::default());
    let events = Arc::clone(&connects);
    let pool = {
        let _entered = runtime.enter();
        Arc::new(
            pinpool::tokio::Pool::builder()
                .max_size(MAX_SIZE)
                .max_connecting(MAX_CONNECTING)
                .checkout_timeout(CHECKOUT_TIMEOUT)
                .connect_timeout(IO_TIMEOUT)
                .connect_backoff(MAINTENANCE_INTERVAL)
                .maintenance_interval(MAINTENANCE_INTERVAL)
                .event_handler(move |event| events.observe(event))
                .build(backend.asynchronous(&proxy.addr().to_string()))
                .expect("a valid config"),
        )
    };
    let current = Arc::new(Mutex::new(Arc::new(Tally::default())));
    let stop = Arc::new(AtomicBool::new(false));
    const TASKS: usize = 256;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (pool, current, stop) =
                (Arc::clone(&pool), Arc::clone(&current), Arc::clone(&stop));
            runtime.spawn(async move {
                let work = async {
                    while !stop.load(Ordering::SeqCst) {
                        let tally = Arc::clone(&current.lock());
                        let asked = Instant::now();
                        match pool.get().await {
                            Ok(mut conn) => {
                                tally.checkout(task, asked.elapsed(), Ok(()));
                                let sent = Instant::now();
                                let result = B::trip_async(&mut conn).await;
                                if !tally.round_trip(task, sent, result) {
                                    pinpool::tokio::PooledConnection::discard(conn);
                                }
                            }
                            Err(error) => {
                                tally.checkout(task, asked.elapsed(), Err(error.to_string()))
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                };
                if task % 2 == 0 {
                    pool.pinned(work).await
                } else {
                    work.await
                }
            })
        })
        .collect();
    let clear = || {
        pool.clear();
        pool.ready();
    };
    let states = || vec![pool.state()];
    print_heading(&format!(
        "{}, async pool: 128 tasks pinned + 128 unpinned",
        B::NAME
    ));
    {
        let _stop = StopOnDrop(&stop);
        run_phases(&proxy, &current, &connects, 1, TASKS, &clear, &states);
    }
    for task in tasks {
        runtime.block_on(task).expect("a worker task");
    }
    assert_accounted("after the load", &proxy, &backend, &states);
    assert_closed_on_drop("the pool", &proxy, &backend, || drop(pool));
    runtime.shutdown_background();
}

#[test]
fn mongodb_blocking_pool_under_network_faults() {
    blocking_faults(mongo::Mongo::new());
}

#[test]
fn mongodb_async_pool_under_network_faults() {
    async_faults(mongo::Mongo::new());
}

#[test]
fn postgres_blocking_pool_under_network_faults() {
    blocking_faults(pg::Pg::new());
}

#[test]
fn postgres_async_pool_under_network_faults() {
    async_faults(pg::Pg::new());
}
