//! The PostgreSQL managers against a real server (`tests/run.sh` starts a
//! throwaway cluster and exports `PINPOOL_PG_URL`): exclusive sessions
//! keep each owner's session state to itself and reset it between owners;
//! the pool stays within `max_size` backends, recovers from a restart,
//! cancels a running query when cleared, and reports a refused login.
//! Under `CI=true` a missing server fails these tests; elsewhere they skip
//! loudly. One needs no server: a connect to one that never answers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, mpsc};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use pinpool::Error;
use pinpool::blocking::Pool;
use pinpool::core::{Pinning, Reset};
use pinpool::postgres::{AsyncPgManager, BlockingPgClient, PgManager};
use postgres::fallible_iterator::FallibleIterator;
use support::wait_for_state;

mod fault_proxy;
mod support;

/// Tests share the server; the restart test must have it to itself.
static SERVER: RwLock<()> = RwLock::new(());

/// The server's URL, or `None` (after saying so) when there is none and
/// this is not CI; with it, a share of the server (see [`SERVER`]).
fn server() -> Option<(String, RwLockReadGuard<'static, ()>)> {
    let url = support::pg_url()?;
    Some((url, SERVER.read().unwrap_or_else(PoisonError::into_inner)))
}

/// A single-threaded runtime with I/O and time, for the async pool's tests.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// A connection outside any pool, to watch the server.
fn observer(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("an observer connection")
}

/// What one owner sets up on its session, and what it must find there
/// again (and nowhere else), as two batches: the session state (which
/// commits, so the `NOTIFY` is delivered), then a transaction left open.
fn set_up(me: i32) -> [String; 2] {
    let session = format!(
        "SET application_name = 'owner-{me}';
         SET search_path = owner_{me}, public;
         CREATE TEMP TABLE mine (owner int);
         INSERT INTO mine VALUES ({me});
         PREPARE owner_stmt AS SELECT {me};
         SELECT pg_advisory_lock({me});
         LISTEN channel_{me};
         NOTIFY channel_{me}, '{me}';"
    );
    [session, format!("BEGIN; INSERT INTO mine VALUES ({me});")]
}

/// Whatever went wrong in a checkout: the pool's error or the server's.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One row describing a session's state: application name, search path,
/// whether the temp table exists, prepared statements, advisory locks
/// held, whether a transaction is open.
const STATE: &str = "SELECT current_setting('application_name'),
        current_setting('search_path'),
        to_regclass('pg_temp.mine') IS NOT NULL,
        (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
        (SELECT string_agg(objid::text, ',') FROM pg_locks
           WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
        pg_current_xact_id_if_assigned() IS NOT NULL";

/// Who wrote into the temp table: a query of its own, run only when the
/// table exists (a query naming a missing table fails to parse).
const OWNERS: &str = "SELECT string_agg(DISTINCT owner::text, ',') FROM pg_temp.mine";

/// A session's state, as [`STATE`] reads it, plus the notifications its
/// client holds.
#[derive(Debug, PartialEq)]
struct Seen {
    application_name: String,
    search_path: String,
    temp_table: Option<String>,
    prepared: i64,
    advisory_locks: Option<String>,
    in_transaction: bool,
    notifications: Vec<String>,
}

impl Seen {
    /// From a [`STATE`] row, the temp table's owners ([`OWNERS`], when it
    /// exists) and the notifications.
    fn from_row(
        row: &tokio_postgres::Row,
        temp_table: Option<String>,
        notifications: Vec<String>,
    ) -> Seen {
        Seen {
            application_name: row.get(0),
            search_path: row.get(1),
            temp_table,
            prepared: row.get(3),
            advisory_locks: row.get(4),
            in_transaction: row.get(5),
            notifications,
        }
    }

    /// A session nobody has used (or that was reset).
    fn clean() -> Seen {
        Seen {
            application_name: String::new(),
            search_path: "\"$user\", public".into(),
            temp_table: None,
            prepared: 0,
            advisory_locks: None,
            in_transaction: false,
            notifications: Vec::new(),
        }
    }

    /// What [`set_up`] leaves for owner `me`.
    fn own(me: i32) -> Seen {
        Seen {
            application_name: format!("owner-{me}"),
            search_path: format!("owner_{me}, public"),
            temp_table: Some(me.to_string()),
            prepared: 1,
            advisory_locks: Some(me.to_string()),
            in_transaction: true,
            notifications: vec![me.to_string()],
        }
    }
}

/// The blocking session's state.
fn seen(conn: &mut postgres::Client) -> Result<Seen, postgres::Error> {
    let row = conn.query_one(STATE, &[])?;
    let temp_table = match row.get(2) {
        true => conn.query_one(OWNERS, &[])?.get(0),
        false => None,
    };
    let mut notifications = Vec::new();
    let mut held = conn.notifications();
    let mut pending = held.iter();
    while let Some(notification) = pending.next()? {
        notifications.push(notification.payload().to_owned());
    }
    Ok(Seen::from_row(&row, temp_table, notifications))
}

/// One owner's life on a blocking pool: its first checkout must find a
/// clean session, which it fills (leaving a transaction open); its second
/// must find exactly that; then it commits. Returns the checkouts that
/// saw anything else (an error counts: it was someone else's state too).
fn blocking_owner(pool: &Pool<PgManager>, me: i32) -> usize {
    let first = (|| -> Result<bool, Failure> {
        let mut conn = pool.get()?;
        let clean = seen(&mut conn)? == Seen::clean();
        for batch in set_up(me) {
            conn.batch_execute(&batch)?;
        }
        Ok(clean)
    })();
    let second = (|| -> Result<bool, Failure> {
        let mut conn = pool.get()?;
        let own = seen(&mut conn)? == Seen::own(me);
        conn.batch_execute("COMMIT")?;
        Ok(own)
    })();
    [first, second]
        .into_iter()
        .filter(|checkout| !matches!(checkout, Ok(true)))
        .count()
}

/// 32 threads, one owner each, over `max_size` 8.
fn thirty_two_threads(url: &str, pinning: Pinning, reset: Reset) -> (usize, Pool<PgManager>) {
    let pool = Pool::builder()
        .max_size(8)
        .pinning(pinning)
        .reset(reset)
        .checkout_timeout(Duration::from_secs(30))
        .build(PgManager::from_url(url).unwrap())
        .unwrap();
    let others = thread::scope(|s| {
        let threads: Vec<_> = (1..=32)
            .map(|me| {
                let pool = &pool;
                s.spawn(move || blocking_owner(pool, me))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    (others, pool)
}

#[test]
fn exclusive_sessions_keep_each_threads_state_to_itself() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (others, pool) = thirty_two_threads(&url, Pinning::Exclusive, Reset::OwnerChange);
    assert_eq!(others, 0, "cross-owner observations");
    let state = pool.state();
    assert!(state.counters.opened <= 8, "{state:?}");
    assert_eq!(state.counters.reset_failures, 0, "{state:?}");
}

/// The control: a plain pool without a reset hands sessions around, so the
/// test above can fail.
#[test]
fn a_plain_pool_without_a_reset_leaks_sessions() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (others, _) = thirty_two_threads(&url, Pinning::Off, Reset::Never);
    eprintln!("Pinning::Off without a reset: {others} of 64 checkouts saw another's session");
    assert!(others > 0, "no leak seen");
}

/// The async form: 256 pinned scopes over 8 connections.
#[test]
fn exclusive_sessions_keep_each_tasks_state_to_itself() {
    let Some((url, _server)) = server() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let others = runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(8)
            .pinning(Pinning::Exclusive)
            .checkout_timeout(Duration::from_secs(30))
            .build(AsyncPgManager::from_url(&url).unwrap())
            .unwrap();
        let tasks: Vec<_> = (1..=256)
            .map(|me| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let owner = pool.pinned(async_owner(&pool, me));
                    owner.await
                })
            })
            .collect();
        let mut others = 0;
        for task in tasks {
            others += task.await.unwrap();
        }
        let state = pool.state();
        assert!(state.counters.opened <= 8, "{state:?}");
        others
    });
    assert_eq!(others, 0, "cross-owner observations");
}

/// [`blocking_owner`] for the async pool, inside a pinned scope.
async fn async_owner(pool: &pinpool::tokio::Pool<AsyncPgManager>, me: i32) -> usize {
    async fn state(conn: &mut pinpool::postgres::PgClient) -> Result<Seen, tokio_postgres::Error> {
        let row = conn.query_one(STATE, &[]).await?;
        let temp_table = match row.get(2) {
            true => conn.query_one(OWNERS, &[]).await?.get(0),
            false => None,
        };
        let mut notifications = Vec::new();
        while let Ok(notification) = conn.notifications().try_recv() {
            notifications.push(notification.payload().to_owned());
        }
        Ok(Seen::from_row(&row, temp_table, notifications))
    }
    let first = async {
        let mut conn = pool.get().await?;
        let clean = state(&mut conn).await? == Seen::clean();
        for batch in set_up(me) {
            conn.batch_execute(&batch).await?;
        }
        Ok::<_, Failure>(clean)
    }
    .await;
    let second = async {
        let mut conn = pool.get().await?;
        // The notification travels on the connection's task: it has
        // arrived once a round trip after it has.
        conn.simple_query("").await?;
        let own = state(&mut conn).await? == Seen::own(me);
        conn.batch_execute("COMMIT").await?;
        Ok::<_, Failure>(own)
    }
    .await;
    [first, second]
        .into_iter()
        .filter(|checkout| !matches!(checkout, Ok(true)))
        .count()
}

/// A thread dies (panics) holding a temp table and an advisory lock: when
/// the next owner gets the connection — the same backend — the lock is
/// gone from `pg_locks` and the table from the catalog.
#[test]
fn a_dead_threads_session_is_reset_before_the_next_owner() {
    let Some((url, _server)) = server() else {
        return;
    };
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(30))
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    let died = thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.get().unwrap();
            conn.batch_execute("CREATE TEMP TABLE held (x int); SELECT pg_advisory_lock(4242)")
                .unwrap();
            let pid: i32 = conn
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0);
            let _conn = conn; // held while the thread dies
            std::panic::panic_any(pid);
        })
        .join()
    });
    let pid = *died
        .expect_err("the thread panicked")
        .downcast::<i32>()
        .unwrap();
    let mut conn = pool.get().expect("the session, reset");
    let next: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, pid, "the same backend, reused");
    let locks: i64 = observer(&url)
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "the dead thread's advisory lock");
    let table: Option<String> = conn
        .query_one("SELECT to_regclass('pg_temp.held')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(table, None, "the dead thread's temp table");
    assert_eq!(pool.state().counters.resets, 1);
}

/// An `after_connect` hook's session setting survives the reset between
/// owners (`DISCARD ALL` undoes it; the hook runs again), and an owner's
/// own setting does not: the next owner finds the hook's, on the same
/// backend.
#[test]
fn a_connect_hook_sets_up_every_owners_session() {
    let Some((url, _server)) = server() else {
        return;
    };
    let hooked = pinpool::Hooks::new()
        .after_connect(|conn: &mut BlockingPgClient| {
            conn.batch_execute("SET TIME ZONE 'Pacific/Chatham'")
        })
        .wrap(PgManager::from_url(&url).unwrap());
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .build(hooked)
        .unwrap();
    let zone = |conn: &mut postgres::Client| -> (String, i32) {
        let row = conn
            .query_one("SELECT current_setting('TimeZone'), pg_backend_pid()", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    let first = thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.get().unwrap();
            let seen = zone(&mut conn);
            conn.batch_execute("SET TIME ZONE 'UTC'").unwrap(); // this owner's own
            seen
        })
        .join()
        .unwrap()
    });
    assert_eq!(first.0, "Pacific/Chatham", "set up as it opened");
    let next = zone(&mut pool.get().unwrap());
    assert_eq!(next.1, first.1, "the same backend, reused");
    assert_eq!(next.0, "Pacific/Chatham", "reset, then set up again");
    let c = pool.state().counters;
    assert_eq!((c.opened, c.resets), (1, 1));
}

/// 1,000 short-lived threads, 20 at a time, over `max_size` 8: the
/// server never sees more than 8 of the pool's backends (tagged by
/// application name), watched from outside the pool throughout.
#[test]
fn a_thousand_threads_never_open_more_than_max_size_backends() {
    let Some((url, _server)) = server() else {
        return;
    };
    let tag = "pinpool-max-size-test";
    let mut config: postgres::Config = url.parse().unwrap();
    config.application_name(tag);
    let pool = Pool::builder()
        .max_size(8)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(30))
        .build(PgManager::new(config))
        .unwrap();
    let done = AtomicBool::new(false);
    let most = thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut observer = observer(&url);
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                let backends: i64 = observer.query_one(TAGGED_BACKENDS, &[&tag]).unwrap().get(0);
                most = most.max(backends);
            }
            most
        });
        for _batch in 0..50 {
            let threads: Vec<_> = (0..20)
                .map(|_| {
                    s.spawn(|| {
                        let mut conn = pool.get().expect("checkout");
                        conn.simple_query("SELECT 1").unwrap();
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        }
        done.store(true, Ordering::SeqCst);
        watcher.join().unwrap()
    });
    assert!(most <= 8, "{most} backends");
    assert!(most > 0, "the watcher saw the pool's backends");
    let state = pool.state();
    assert!(state.counters.opened <= 8, "{state:?}");
    assert_eq!(state.counters.reclaimed_pins, 1000);
}

/// `pg_ctl restart -m fast` while 8 threads run queries: they see errors
/// while the server is down, none hangs (every checkout and query is
/// bounded), the pool replaces its broken sessions by itself, and
/// afterwards every connection it opened is idle or closed.
#[test]
fn the_pool_recovers_from_a_server_restart_under_load() {
    let Some(url) = support::pg_url() else { return };
    let _alone = SERVER.write().unwrap_or_else(PoisonError::into_inner);
    let Ok(restart) = std::env::var("PINPOOL_PG_RESTART") else {
        eprintln!("SKIPPED: no PINPOOL_PG_RESTART command (tests/run.sh sets it)");
        return;
    };
    let pool = Pool::builder()
        .max_size(8)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(5))
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    let (errors, succeeded) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let restarted = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                // Until 20 queries have worked after the restart, bounded in
                // time: a hang fails the test instead of stalling it.
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut after = 0;
                while after < 20 {
                    assert!(Instant::now() < deadline, "no recovery within 60 s");
                    let worked = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                        conn.simple_query("SELECT 1").map_err(|e| e.to_string())
                    });
                    match worked {
                        Ok(_) => {
                            succeeded.fetch_add(1, Ordering::SeqCst);
                            after += usize::from(restarted.load(Ordering::SeqCst));
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            // Pacing while the server is down, not waiting
                            // for anything.
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
        while succeeded.load(Ordering::SeqCst) < 50 {
            thread::yield_now();
        }
        let status = std::process::Command::new("sh")
            .args(["-c", &restart])
            .status()
            .unwrap();
        assert!(status.success(), "{restart}");
        restarted.store(true, Ordering::SeqCst);
    });
    assert!(
        errors.load(Ordering::SeqCst) > 0,
        "the restart went unnoticed"
    );
    // Once the threads' exits were reclaimed and their sessions reset (a
    // scope's implicit join returns before the threads' destructors run).
    let state = wait_for_state(&pool, "the threads' exits", |s| {
        s.pinned_owners == 0 && s.resetting == 0 && s.connecting == 0
    });
    let c = state.counters;
    assert_eq!(
        (state.in_use, state.waiting, state.pinned_owners),
        (0, 0, 0),
        "{state:?}"
    );
    assert_eq!(
        c.opened,
        (state.idle + state.connecting + state.pending + state.resetting) as u64
            + c.closed
            + c.connect_failures,
        "every connection accounted for: {state:?}"
    );
    assert!(c.closed > 0, "broken sessions were closed: {state:?}");
}

/// What a session running `SELECT pg_sleep(60)` reports as its query ends:
/// when, and how.
type Sleep = (Instant, Result<(), postgres::Error>);

/// A `pg_sleep(60)` of its own for each caller: the cancel tests run at
/// once, and one that saw another's sleep cleared its pool too early.
fn own_sleep() -> String {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!("SELECT pg_sleep(60) /* sleep {call} */")
}

/// Waits until the server runs `sleep` (watched from outside the pool),
/// calls `clear` (the pool's `clear_interrupting`), and checks that the
/// sleep then ended cancelled within 1 s.
fn clear_cancels_the_sleep(
    url: &str,
    sleep: &str,
    clear: impl FnOnce(),
    ended: &mpsc::Receiver<Sleep>,
) {
    let mut observer = observer(url);
    let running = "SELECT count(*) FROM pg_stat_activity
                   WHERE query = $1 AND state = 'active'";
    let deadline = Instant::now() + Duration::from_secs(20);
    while observer
        .query_one(running, &[&sleep])
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the query never ran");
    }
    let cleared = Instant::now();
    clear();
    let (at, result) = ended
        .recv_timeout(Duration::from_secs(30))
        .expect("the query ended");
    let error = result.expect_err("the query was cancelled");
    assert_eq!(
        error.code(),
        Some(&postgres::error::SqlState::QUERY_CANCELED),
        "{error}"
    );
    let took = at - cleared;
    assert!(took < Duration::from_secs(1), "cancelled after {took:?}");
}

/// `clear_interrupting()` cancels the query a checked-out session runs
/// (`pg_sleep(60)`) through the manager's cancel token, within 1 s.
#[test]
fn clear_interrupting_cancels_a_running_query() {
    let Some((url, _server)) = server() else {
        return;
    };
    check_clear_interrupting(&url, PgManager::from_url(&url).unwrap());
}

/// A session of an exclusive pool over `manager` runs `pg_sleep(60)`:
/// `clear_interrupting()` cancels it within 1 s, and the session is
/// closed.
fn check_clear_interrupting<T: pinpool::postgres::MakeTls>(url: &str, manager: PgManager<T>) {
    let pool = Pool::builder()
        .pinning(Pinning::Exclusive)
        .build(manager)
        .unwrap();
    let (ended_tx, ended) = mpsc::channel();
    let sleep = own_sleep();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.get().unwrap();
            let result = conn.simple_query(&sleep);
            ended_tx.send((Instant::now(), result.map(drop))).unwrap();
        });
        clear_cancels_the_sleep(url, &sleep, || pool.clear_interrupting(), &ended);
    });
    pool.ready();
    let state = pool.state();
    assert_eq!(
        state.counters.closed, 1,
        "the interrupted session closed: {state:?}"
    );
    drop(pool.get().expect("a fresh session once ready"));
}

/// Whether the session's own backend runs over TLS, as the server sees it.
const ON_TLS: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Accepts the throwaway server's self-signed certificate: what
/// `sslmode=require` promises (encrypted, not verified), and all that
/// the TLS test needs. The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        signed: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let verify = rustls::crypto::verify_tls12_signature;
        verify(
            message,
            cert,
            signed,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        signed: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let verify = rustls::crypto::verify_tls13_signature;
        verify(
            message,
            cert,
            signed,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls connector for the test server (see [`AnyCertificate`]).
fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Both managers built `with_tls`, told to require it (`sslmode=require`),
/// run their sessions over TLS as the server sees them, and cancel over
/// it; the same config without TLS fails the checkout at connect.
#[test]
fn sessions_run_over_tls_with_a_connector() {
    let Some((url, _server)) = server() else {
        return;
    };
    if std::env::var_os("PINPOOL_PG_TLS").is_none() {
        let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
        assert!(!ci, "under CI the test script's server offers TLS");
        eprintln!("skipped: the server offers no TLS (PINPOOL_PG_TLS unset)");
        return;
    }
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.ssl_mode(tokio_postgres::config::SslMode::Require);

    let blocking = || PgManager::with_tls(config.clone().into(), tls_connector());
    let pool = Pool::new(blocking()).unwrap();
    let on_tls: bool = pool.get().unwrap().query_one(ON_TLS, &[]).unwrap().get(0);
    assert!(on_tls, "a blocking session over TLS");
    check_clear_interrupting(&url, blocking());

    let asynchronous = || AsyncPgManager::with_tls(config.clone(), tls_connector());
    let on_tls: bool = current_thread_runtime().block_on(async {
        let pool = pinpool::tokio::Pool::new(asynchronous()).unwrap();
        let conn = pool.get().await.unwrap();
        conn.query_one(ON_TLS, &[]).await.unwrap().get(0)
    });
    assert!(on_tls, "an async session over TLS");
    check_clear_interrupting_async(&url, asynchronous());

    let without = Pool::builder()
        .max_size(1)
        .build(PgManager::new(config.into()))
        .unwrap();
    let refused = without.get().map(drop);
    assert!(matches!(refused, Err(Error::Connect(_))), "{refused:?}");
}

/// A login the server refuses is a typed error at once, not a hang; a pool
/// with the right URL then works.
#[test]
fn a_refused_login_is_a_connect_error() {
    let Some((url, _server)) = server() else {
        return;
    };
    let mut wrong: postgres::Config = url.parse().unwrap();
    wrong.user("nobody_at_all");
    let refusing = Pool::builder()
        .checkout_timeout(Duration::from_secs(30))
        .build(PgManager::new(wrong))
        .unwrap();
    let started = Instant::now();
    match refusing.get() {
        Err(Error::Connect(error)) => {
            let code = error.code().cloned();
            assert_eq!(
                code,
                Some(postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
                "{error}"
            );
        }
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once, not after the timeout"
    );
    let pool = Pool::new(PgManager::from_url(&url).unwrap()).unwrap();
    let one: i32 = pool
        .get()
        .unwrap()
        .query_one("SELECT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

/// Ends backend `pid` from outside the pool, as an administrator's
/// `pg_terminate_backend` or the server's idle timeout would, and waits
/// until the server no longer lists it.
fn terminate_backend(watch: &mut postgres::Client, pid: i32) {
    watch
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    support::wait_until("the backend to end", || {
        let listed = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1";
        watch.query_one(listed, &[&pid]).unwrap().get::<_, i64>(0) == 0
    });
}

const BACKEND_PID: &str = "SELECT pg_backend_pid()";

/// An async pool of one connection to `url` (validating each checkout, or
/// not) on a current-thread runtime of its own, which runs only inside
/// `block_on`: the blocking observer runs between its turns.
fn one_connection_async_pool(
    url: &str,
    validate: bool,
) -> (
    tokio::runtime::Runtime,
    pinpool::tokio::Pool<AsyncPgManager>,
) {
    let runtime = current_thread_runtime();
    let pool = runtime.block_on(async {
        pinpool::tokio::Pool::builder()
            .max_size(1)
            .validate_on_checkout(validate)
            .build(AsyncPgManager::from_url(url).unwrap())
            .unwrap()
    });
    (runtime, pool)
}

/// A session whose backend ended while it sat idle in the pool fails the
/// manager's validation on checkout and is replaced: the caller gets a
/// working session on a new backend, not the dead one.
#[test]
fn a_session_whose_backend_ended_is_replaced_on_checkout() {
    let Some((url, _server)) = server() else {
        return;
    };
    let mut watch = observer(&url);
    let pool = Pool::builder()
        .max_size(1)
        .validate_on_checkout(true)
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    let first: i32 = pool
        .get()
        .unwrap()
        .query_one(BACKEND_PID, &[])
        .unwrap()
        .get(0);
    terminate_backend(&mut watch, first);
    let second: i32 = pool
        .get()
        .unwrap()
        .query_one(BACKEND_PID, &[])
        .unwrap()
        .get(0);
    assert_ne!(first, second, "blocking: a new backend");

    let (runtime, pool) = one_connection_async_pool(&url, true);
    let pid = || {
        runtime.block_on(async {
            let conn = pool.get().await.unwrap();
            let shown = format!("{:?}", &*conn);
            assert!(shown.contains("PgClient { closed: false"), "{shown}");
            conn.query_one(BACKEND_PID, &[])
                .await
                .unwrap()
                .get::<_, i32>(0)
        })
    };
    let first = pid();
    terminate_backend(&mut watch, first);
    assert_ne!(first, pid(), "async: a new backend");
}

/// A blocking session whose connection ended while checked out is closed
/// at checkin, not handed on.
#[test]
fn a_blocking_session_whose_connection_ended_is_closed_at_checkin() {
    let Some((url, _server)) = server() else {
        return;
    };
    let mut watch = observer(&url);
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Off)
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    let mut conn = pool.get().unwrap();
    let pid = conn.query_one(BACKEND_PID, &[]).unwrap();
    terminate_backend(&mut watch, pid.get(0));
    assert!(
        conn.simple_query("SELECT 1").is_err(),
        "its backend is gone"
    );
    assert!(conn.is_closed(), "the client saw its connection end");
    drop(conn);
    assert_eq!(pool.state().counters.closed, 1, "closed at checkin");
    let mut conn = pool.get().unwrap();
    let one: i32 = conn.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1, "a working session next");
}

/// An async session whose connection ended while checked out is closed
/// at checkin, not handed on: whether the server ended it, or its holder
/// closed the socket with `PgClient::abort` and let it go at once.
#[test]
fn an_async_session_whose_connection_ended_is_closed_at_checkin() {
    let Some((url, _server)) = server() else {
        return;
    };
    let mut watch = observer(&url);
    let (runtime, pool) = one_connection_async_pool(&url, false);
    let closed = || pool.state().counters.closed;

    let conn = runtime.block_on(pool.get()).unwrap();
    let pid = runtime.block_on(conn.query_one(BACKEND_PID, &[])).unwrap();
    terminate_backend(&mut watch, pid.get(0));
    let ended = runtime.block_on(async {
        let closes = async {
            while !conn.is_closed() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), closes).await
    });
    assert!(ended.is_ok(), "the client saw its connection end");
    drop(conn);
    assert_eq!(closed(), 1, "ended by the server: closed at checkin");

    let conn = runtime.block_on(pool.get()).unwrap();
    conn.abort();
    drop(conn);
    assert_eq!(closed(), 2, "aborted by its holder: closed at checkin");
    let conn = runtime.block_on(pool.get()).unwrap();
    let one: i32 = runtime
        .block_on(conn.query_one("SELECT 1", &[]))
        .unwrap()
        .get(0);
    assert_eq!(one, 1, "a working session next");
}

/// The query the statement-cache tests prepare.
const CACHED_QUERY: &str = "SELECT $1::int";
/// What lists the statements a session has prepared on the server: a
/// simple query, which prepares nothing itself.
const PREPARED_NAMES: &str = "SELECT name FROM pg_prepared_statements";

/// The names in a simple query's rows.
fn names(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    let names = messages.iter().filter_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    });
    names.map(str::to_owned).collect()
}

/// What a session's statement cache must do, whichever pool: the
/// statement names the server lists after `unpinned(arg)` (the cached
/// query on a checkout of an unpinned pool of one connection) and after
/// `owner(owner)` (on two checkouts of one exclusive owner's session,
/// owners taking turns on one connection).
fn check_statement_cache(
    mut unpinned: impl FnMut(i32) -> Vec<String>,
    mut owner: impl FnMut(i32) -> [Vec<String>; 2],
) {
    let first = unpinned(0);
    assert_eq!(first.len(), 1, "{first:?}");
    for arg in 1..3 {
        assert_eq!(unpinned(arg), first, "unpinned checkouts share it");
    }
    for me in 0..2 {
        let [first, again] = owner(me);
        assert_eq!(first.len(), 1, "owner {me}: {first:?}");
        assert_eq!(again, first, "owner {me}");
    }
}

/// `BlockingPgClient::prepare_cached` prepares a query once per session,
/// for whoever holds it, and the reset between owners empties the cache
/// with the statements `DISCARD ALL` deallocated: the next owner prepares
/// afresh instead of naming a statement the server no longer has.
#[test]
fn a_blocking_sessions_cached_statements_outlive_checkouts_not_owners() {
    let Some((url, _server)) = server() else {
        return;
    };
    fn cached(conn: &mut BlockingPgClient, arg: i32) -> Vec<String> {
        let statement = conn.prepare_cached(CACHED_QUERY).unwrap();
        let row = conn.query_one(&statement, &[&arg]).unwrap();
        assert_eq!(row.get::<_, i32>(0), arg);
        names(&conn.simple_query(PREPARED_NAMES).unwrap())
    }
    let pool = |pinning| {
        Pool::builder()
            .max_size(1)
            .pinning(pinning)
            .build(PgManager::from_url(&url).unwrap())
            .unwrap()
    };
    let unpinned = pool(Pinning::Off);
    let exclusive = pool(Pinning::Exclusive);
    check_statement_cache(
        |arg| cached(&mut unpinned.get().unwrap(), arg),
        |me| {
            let mut session = exclusive.session();
            [0, 1].map(|_| cached(&mut session.get().unwrap(), me))
        },
    );
    assert_eq!(
        exclusive.state().counters.resets,
        2,
        "a reset after each owner"
    );
}

/// A session keeps at most its manager's `statement_cache_capacity`
/// statements: past it, the server is told to close one before the next
/// is prepared, so queries built at run time cannot pile up there.
#[test]
fn a_sessions_cache_keeps_at_most_its_capacity_on_the_server() {
    let Some((url, _server)) = server() else {
        return;
    };
    let manager = PgManager::from_url(&url)
        .unwrap()
        .statement_cache_capacity(2);
    let pool = Pool::builder().max_size(1).build(manager).unwrap();
    let mut conn = pool.get().unwrap();
    for k in 0..5 {
        let statement = conn
            .prepare_cached(&format!("SELECT $1::int + {k}"))
            .unwrap();
        let row = conn.query_one(&statement, &[&1]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 1 + k);
    }
    let prepared = names(&conn.simple_query(PREPARED_NAMES).unwrap());
    assert_eq!(prepared.len(), 2, "{prepared:?}");
    let shown = format!("{:?}", &*conn);
    assert!(shown.contains("cached_statements: 2"), "{shown}");
}

/// A reset that leaves prepared statements in place, with the manager
/// told so, hands the next owner the session's cached statements; told
/// nothing, the reset closes them and the next owner prepares afresh.
#[test]
fn cached_statements_outlive_a_reset_that_keeps_them_when_told() {
    let Some((url, _server)) = server() else {
        return;
    };
    for kept in [false, true] {
        let manager = PgManager::from_url(&url)
            .unwrap()
            .reset_with(["ROLLBACK", "RESET ALL"])
            .keep_cached_statements_on_reset(kept);
        let pool = Pool::builder()
            .max_size(1)
            .pinning(Pinning::Exclusive)
            .build(manager)
            .unwrap();
        let [first, second] = [0, 1].map(|owner| {
            let mut session = pool.session();
            let mut conn = session.get().unwrap();
            let statement = conn.prepare_cached(CACHED_QUERY).unwrap();
            let row = conn.query_one(&statement, &[&owner]).unwrap();
            assert_eq!(row.get::<_, i32>(0), owner);
            names(&conn.simple_query(PREPARED_NAMES).unwrap())
        });
        assert_eq!(pool.state().counters.resets, 2);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            second == first,
            kept,
            "kept {kept}: {first:?}, then {second:?}"
        );
    }
}

/// `prepare_typed_cached` prepares with the types given and keeps the
/// statement apart from the same query's untyped one.
#[test]
fn a_sessions_cache_keeps_typed_statements_apart() {
    let Some((url, _server)) = server() else {
        return;
    };
    use postgres::types::Type;
    let pool = Pool::new(PgManager::from_url(&url).unwrap()).unwrap();
    let mut conn = pool.get().unwrap();
    for _ in 0..2 {
        let typed = conn
            .prepare_typed_cached("SELECT $1", &[Type::INT8])
            .unwrap();
        assert_eq!(typed.params(), [Type::INT8]);
        let untyped = conn.prepare_cached("SELECT $1").unwrap();
        assert_eq!(untyped.params(), [Type::TEXT], "the server's guess");
    }
    let prepared = names(&conn.simple_query(PREPARED_NAMES).unwrap());
    assert_eq!(prepared.len(), 2, "{prepared:?}");
}

/// `PgClient::prepare_cached`: as the blocking session's above.
#[test]
fn a_sessions_cached_statements_outlive_checkouts_not_owners() {
    let Some((url, _server)) = server() else {
        return;
    };
    async fn cached(conn: &mut pinpool::postgres::PgClient, arg: i32) -> Vec<String> {
        let statement = conn.prepare_cached(CACHED_QUERY).await.unwrap();
        let row = conn.query_one(&statement, &[&arg]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), arg);
        names(&conn.simple_query(PREPARED_NAMES).await.unwrap())
    }
    let runtime = current_thread_runtime();
    let pool = |pinning| {
        pinpool::tokio::Pool::builder()
            .max_size(1)
            .pinning(pinning)
            .build(AsyncPgManager::from_url(&url).unwrap())
            .unwrap()
    };
    let (unpinned, exclusive) =
        runtime.block_on(async { (pool(Pinning::Off), pool(Pinning::Exclusive)) });
    check_statement_cache(
        |arg| runtime.block_on(async { cached(&mut unpinned.get().await.unwrap(), arg).await }),
        |me| {
            runtime.block_on(async {
                let mut session = exclusive.session();
                let first = cached(&mut session.get().await.unwrap(), me).await;
                [first, cached(&mut session.get().await.unwrap(), me).await]
            })
        },
    );
    assert_eq!(
        exclusive.state().counters.resets,
        2,
        "a reset after each owner"
    );
}

/// What a schema change does to statements kept by `prepare_cached`,
/// whichever pool: `run(conn, query)` prepares `query` through the
/// session's cache and runs it, answering how many columns its row has;
/// `forget` forgets one session's cached statements, `forget_all` has the
/// manager's sessions forget theirs. `conns` are two sessions on two
/// connections.
fn check_stale_statements<C>(
    url: &str,
    table: &str,
    mut conns: [C; 2],
    mut run: impl FnMut(&mut C, &str) -> Result<usize, postgres::Error>,
    forget: impl Fn(&mut C),
    forget_all: impl FnOnce(),
) {
    let mut watch = observer(url);
    let setup = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} AS SELECT 1 AS a");
    watch.batch_execute(&setup).unwrap();
    let query = format!("SELECT * FROM {table}");
    for conn in &mut conns {
        assert_eq!(run(conn, &query).unwrap(), 1);
    }
    let alter = format!("ALTER TABLE {table} ADD COLUMN b int DEFAULT 2");
    watch.batch_execute(&alter).unwrap();
    let [a, b] = &mut conns;
    for conn in [&mut *a, &mut *b] {
        let error = run(conn, &query).unwrap_err();
        assert!(pinpool::postgres::is_stale_statement(&error), "{error:?}");
    }
    // Another error, and another of the same SQLSTATE (0A000).
    for other in [
        "SELECT * FROM no_such_table",
        "SELECT count(*) FROM pg_class FOR UPDATE",
    ] {
        let other = run(a, other).unwrap_err();
        assert!(!pinpool::postgres::is_stale_statement(&other), "{other:?}");
    }

    forget(a);
    assert_eq!(
        run(a, &query).unwrap(),
        2,
        "prepared again after the change"
    );
    let error = run(b, &query).unwrap_err();
    assert!(
        pinpool::postgres::is_stale_statement(&error),
        "one session forgot, not the other"
    );
    forget_all();
    for conn in [a, b] {
        assert_eq!(run(conn, &query).unwrap(), 2, "every session forgot");
    }
    watch.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

/// A cached statement a schema change left stale is told apart by
/// `is_stale_statement`, and forgotten by its session or by every
/// session of the manager (blocking pool; `Off`, so no reset empties the
/// caches).
#[test]
fn a_stale_cached_statement_is_told_and_forgotten() {
    let Some((url, _server)) = server() else {
        return;
    };
    let pool = Pool::builder()
        .max_size(2)
        .pinning(Pinning::Off)
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    check_stale_statements(
        &url,
        "stale_blocking",
        [pool.get().unwrap(), pool.get().unwrap()],
        |conn, query| {
            let statement = conn.prepare_cached(query)?;
            Ok(conn.query_one(&statement, &[])?.len())
        },
        |conn| conn.forget_cached_statements(),
        || pool.manager().forget_cached_statements(),
    );
}

/// As the blocking pool's above, on the async pool, through hooks (whose
/// `manager()` reaches the `AsyncPgManager`).
#[test]
fn an_async_stale_cached_statement_is_told_and_forgotten() {
    let Some((url, _server)) = server() else {
        return;
    };
    let runtime = current_thread_runtime();
    let hooked = pinpool::Hooks::new().wrap(AsyncPgManager::from_url(&url).unwrap());
    let pool = runtime.block_on(async {
        pinpool::tokio::Pool::builder()
            .max_size(2)
            .pinning(Pinning::Off)
            .build(hooked)
            .unwrap()
    });
    let conns = runtime.block_on(async { [pool.get().await.unwrap(), pool.get().await.unwrap()] });
    check_stale_statements(
        &url,
        "stale_async",
        conns,
        |conn, query| {
            runtime.block_on(async {
                let statement = conn.prepare_cached(query).await?;
                Ok(conn.query_one(&statement, &[]).await?.len())
            })
        },
        |conn| conn.forget_cached_statements(),
        || pool.manager().manager().forget_cached_statements(),
    );
}

/// A statement whose prepare was under way when the manager asked its
/// sessions to forget is used, not kept: it may have been parsed against
/// the schema before the change.
#[test]
fn a_statement_prepared_across_a_forget_is_not_kept() {
    let Some((url, _server)) = server() else {
        return;
    };
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(1)
            .pinning(Pinning::Off)
            .build(AsyncPgManager::from_url(&url).unwrap())
            .unwrap();
        let mut conn = pool.get().await.unwrap();
        let prepared = async |conn: &mut pinpool::postgres::PgClient| {
            names(&conn.simple_query(PREPARED_NAMES).await.unwrap())
        };
        {
            let mut preparing = std::pin::pin!(conn.prepare_cached(CACHED_QUERY));
            let first_poll =
                std::future::poll_fn(|cx| Poll::Ready(preparing.as_mut().poll(cx))).await;
            assert!(first_poll.is_pending(), "a prepare is a round trip");
            pool.manager().forget_cached_statements();
            drop(preparing.await.unwrap());
        }
        let across = prepared(&mut conn).await;
        conn.prepare_cached(CACHED_QUERY).await.unwrap();
        let after = prepared(&mut conn).await;
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(
            after, across,
            "prepared again, not the one prepared across the forget"
        );
    });
}

/// A `LISTEN` on an async session gets its `NOTIFY`s, also across
/// checkouts (bb8 and deadpool spawn `connection.await`, which drops them).
#[test]
fn an_async_session_receives_its_notifications() {
    let Some((url, _server)) = server() else {
        return;
    };
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .pinning(Pinning::Exclusive)
            .build(AsyncPgManager::from_url(&url).unwrap())
            .unwrap();
        let mut session = pool.session();
        session
            .get()
            .await
            .unwrap()
            .batch_execute("LISTEN news")
            .await
            .unwrap();
        // Another connection, outside the pool, notifies.
        let (other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        other.batch_execute("NOTIFY news, 'hello'").await.unwrap();
        let mut conn = session.get().await.unwrap();
        let notification =
            tokio::time::timeout(Duration::from_secs(20), conn.notifications().recv())
                .await
                .expect("the notification arrives")
                .expect("the connection is alive");
        assert_eq!(
            (notification.channel(), notification.payload()),
            ("news", "hello")
        );
    });
}

/// A config for a server at `address` that takes connections and never
/// answers: a hung server, or a proxy in front of a dead one. Its connect
/// timeout is short: the driver's, which bounds the TCP connect alone.
fn silent_server_config(address: std::net::SocketAddr) -> tokio_postgres::Config {
    let url = "postgresql://postgres@127.0.0.1/postgres";
    let mut config = support::pg_through(url, &address.to_string());
    config.connect_timeout(Duration::from_millis(200));
    config
}

/// Against a server that never answers, a checkout fails with the pool's
/// connect timeout, not its checkout timeout, and frees the connect slot:
/// the managers have the pool bound the whole connect by the config's
/// connect timeout, since the driver bounds only the TCP connect and the
/// startup handshake would wait for ever. Needs no server: the kernel
/// completes the TCP handshake on a listener nobody accepts from.
#[test]
fn a_server_that_never_answers_is_a_connect_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let config = silent_server_config(silent.local_addr().expect("its address"));
    let pool = Pool::builder()
        .checkout_timeout(Duration::from_secs(5))
        .build(PgManager::new(config.clone().into()))
        .unwrap();
    match pool.get() {
        Err(Error::ConnectTimeout) => {}
        other => panic!("expected a connect timeout, got {:?}", other.map(|_| ())),
    }
    assert_eq!(pool.state().connecting, 0, "the connect slot is free again");

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .checkout_timeout(Duration::from_secs(5))
            .build(AsyncPgManager::new(config))
            .unwrap();
        match pool.get().await {
            Err(Error::ConnectTimeout) => {}
            other => panic!("expected a connect timeout, got {:?}", other.map(|_| ())),
        }
        assert_eq!(pool.state().connecting, 0, "the connect slot is free again");
    });
}

/// A fault proxy in front of the server at `url`, and a config that
/// connects through it.
fn behind_a_fault_proxy(url: &str) -> (fault_proxy::FaultProxy, tokio_postgres::Config) {
    let upstream = support::pg_upstream(url).expect("a TCP server");
    let proxy = fault_proxy::FaultProxy::start(&upstream);
    let config = support::pg_through(url, &proxy.addr().to_string());
    (proxy, config)
}

/// A blocking session reset over a link that went silent (a hung server,
/// a partition that still acknowledges) fails within the manager's
/// `io_timeout` and closes the session, rather than hold the thread that
/// let it go: the reset's statements have no timeout of their own in the
/// `postgres` crate.
#[test]
fn a_blocking_reset_over_a_silent_link_ends_by_the_io_timeout() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (proxy, config) = behind_a_fault_proxy(&url);
    let io_timeout = Duration::from_millis(300);
    let manager = PgManager::new(config.into()).io_timeout(io_timeout);
    let pool = Pool::builder()
        .pinning(Pinning::Exclusive)
        .build(manager)
        .unwrap();
    let (ready, set_up) = mpsc::channel();
    let (go, silenced) = mpsc::channel();
    let (done, ended) = mpsc::channel();
    let owner = pool.clone();
    // Not scoped: without the bound its reset never ends, and the test
    // must fail rather than wait to join it.
    thread::spawn(move || {
        let mut conn = owner.get().unwrap();
        conn.batch_execute("SET application_name = 'mine'").unwrap();
        drop(conn); // back in the pool, still this thread's session
        ready.send(()).unwrap();
        silenced.recv().unwrap();
        owner.unpin(); // resets the session on this thread
        let _ = done.send(());
    });
    set_up.recv().expect("the owner set its session up");
    proxy.blackhole();
    go.send(()).unwrap();
    let owner = ended.recv_timeout(io_timeout + Duration::from_secs(10));
    assert!(owner.is_ok(), "the unpin's reset ended");
    let counters = pool.state().counters;
    assert_eq!(counters.reset_failures, 1, "the reset failed");
    assert_eq!(counters.closed, 1, "and closed the session");
}

/// The same for the async manager, whose round trips the pool bounds by
/// `io_timeout` itself: past it the session's socket is closed (its
/// `abort`), so the reset's last word, an empty query, fails at once
/// instead of waiting on the silent link in its turn.
#[test]
fn an_async_reset_over_a_silent_link_ends_by_the_io_timeout() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (proxy, config) = behind_a_fault_proxy(&url);
    let manager = AsyncPgManager::new(config).io_timeout(Duration::from_millis(300));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime.block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .pinning(Pinning::Exclusive)
            .build(manager)
            .unwrap();
        let mut session = pool.session();
        let conn = session.get().await.unwrap();
        conn.batch_execute("SET application_name = 'mine'")
            .await
            .unwrap();
        drop(conn);
        proxy.blackhole();
        drop(session); // the reset starts, on the runtime
        pool
    });
    let state = wait_for_state(&pool, "the reset to fail and close the session", |state| {
        state.counters.reset_failures == 1 && state.counters.closed == 1
    });
    assert_eq!(state.idle + state.in_use + state.resetting, 0, "{state:?}");
}

/// A session its owner left in a failed transaction (where every
/// statement but a rollback is refused) is reset for the next owner, not
/// closed: the reset's first round trip, an empty query, is accepted
/// there too.
#[test]
fn a_session_left_in_a_failed_transaction_is_reset() {
    let Some((url, _server)) = server() else {
        return;
    };
    let pool = Pool::builder()
        .max_size(1)
        .pinning(Pinning::Exclusive)
        .build(PgManager::from_url(&url).unwrap())
        .unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.get().unwrap();
            conn.batch_execute("BEGIN").unwrap();
            assert!(conn.batch_execute("SELECT 1 / 0").is_err());
        });
    });
    let one: i32 = pool
        .get()
        .expect("the session, reset")
        .query_one("SELECT 1", &[])
        .expect("outside the failed transaction")
        .get(0);
    assert_eq!(one, 1);
    let counters = pool.state().counters;
    assert_eq!((counters.resets, counters.reset_failures), (1, 0));
    assert_eq!(counters.opened, 1, "the same session, not a new one");
}

/// `clear_interrupting()` does not wait on the cancels it sends: each
/// opens a connection to the server, which, with the server's host down,
/// takes up to the connect timeout (10 s by default), and the pool sends
/// one for every checked-out session. A listener whose backlog is full
/// stands for the host that is down: Linux drops further connects' SYNs
/// and the client waits out its timeout.
#[test]
fn clear_interrupting_does_not_wait_on_an_unreachable_server() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (proxy, config) = behind_a_fault_proxy(&url);
    let address = proxy.addr();
    let pool = Pool::builder()
        .pinning(Pinning::Exclusive)
        .build(PgManager::new(config.into()))
        .unwrap();
    let (held, holding) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            let conn = pool.get().unwrap();
            held.send(()).unwrap();
            let _ = released.recv();
            drop(conn);
        });
        holding.recv().expect("a session checked out");
        // The server's address stops answering connects.
        proxy.cut();
        let unreachable = std::net::TcpListener::bind(address).expect("the proxy's port");
        let mut backlog = Vec::new();
        while let Ok(queued) =
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100))
        {
            backlog.push(queued);
            assert!(backlog.len() < 10_000, "the backlog never filled");
        }
        let started = Instant::now();
        pool.clear_interrupting();
        let took = started.elapsed();
        release.send(()).unwrap();
        assert!(
            took < Duration::from_secs(5),
            "clear_interrupting() waited {took:?} on a cancel"
        );
        drop((unreachable, backlog));
    });
}

/// The async manager's `clear_interrupting()` cancels a running query too
/// (its cancel is sent from a task on the pool's runtime), within 1 s.
#[test]
fn clear_interrupting_cancels_a_running_async_query() {
    let Some((url, _server)) = server() else {
        return;
    };
    check_clear_interrupting_async(&url, AsyncPgManager::from_url(&url).unwrap());
}

/// [`check_clear_interrupting`] for the async pool.
fn check_clear_interrupting_async<T: pinpool::postgres::MakeTls>(
    url: &str,
    manager: AsyncPgManager<T>,
) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let pool = {
        let _entered = runtime.enter();
        pinpool::tokio::Pool::builder()
            .pinning(Pinning::Exclusive)
            .build(manager)
            .unwrap()
    };
    let (ended_tx, ended) = mpsc::channel();
    let running_pool = pool.clone();
    let sleep = own_sleep();
    let query = sleep.clone();
    runtime.spawn(async move {
        let conn = running_pool.get().await.unwrap();
        let result = conn.simple_query(&query).await;
        ended_tx.send((Instant::now(), result.map(drop))).unwrap();
    });
    clear_cancels_the_sleep(url, &sleep, || pool.clear_interrupting(), &ended);
}

/// How many of the server's backends carry a tag as their application
/// name (the blocking observer's view).
const TAGGED_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";

/// A fresh table `name` for the rows the owners of a shutdown test
/// commit.
fn fresh_table(observer: &mut postgres::Client, name: &str) {
    observer
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (owner int)"
        ))
        .unwrap();
}

/// A graceful shutdown of the blocking pool: four threads are each in a
/// transaction on a session of their own as the pool closes; it waits
/// for them to commit and give their sessions back, and when it returns
/// the server lists none of the pool's backends and has every row.
#[test]
fn a_graceful_shutdown_lets_blocking_work_finish_and_leaves_no_backend() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (tag, table) = ("pinpool-shutdown-blocking", "shutdown_blocking");
    let mut observer = observer(&url);
    fresh_table(&mut observer, table);
    let mut config: postgres::Config = url.parse().unwrap();
    config.application_name(tag);
    let pool = Pool::builder()
        .max_size(4)
        .pinning(Pinning::Exclusive)
        .build(PgManager::new(config))
        .unwrap();
    let (holding, held) = mpsc::channel();
    let (finish, finishes): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel::<()>()).unzip();
    thread::scope(|s| {
        for (me, finished) in (0..4).zip(finishes) {
            let (pool, holding) = (&pool, holding.clone());
            s.spawn(move || {
                let mut conn = pool.get().unwrap();
                let insert = format!("BEGIN; INSERT INTO {table} VALUES ({me})");
                conn.batch_execute(&insert).unwrap();
                holding.send(()).unwrap();
                let _ = finished.recv(); // (or the test failed)
                conn.batch_execute("COMMIT").unwrap();
            });
        }
        held.iter().take(4).for_each(drop);
        let finish = finish; // dropped, so the owners go on, should this fail
        assert!(!pool.close_and_wait(Duration::ZERO), "four sessions out");
        assert!(matches!(pool.get(), Err(Error::Closed)));
        drop(finish);
        assert!(pool.close_and_wait(Duration::from_secs(30)));
    });
    let rows: i64 = (observer.query_one(&format!("SELECT count(*) FROM {table}"), &[]))
        .unwrap()
        .get(0);
    assert_eq!(rows, 4, "every owner's work committed");
    // The sessions' sockets are closed; the server's backends end with
    // them, a moment later.
    support::wait_until("the pool's backends to end", || {
        let backends: i64 = observer.query_one(TAGGED_BACKENDS, &[&tag]).unwrap().get(0);
        backends == 0
    });
}

/// The same for the async pool, whose sessions' I/O runs in tasks of
/// their own: once `close_and_wait()` resolves, those tasks end and close
/// their sockets (the runtime still running), so the server lists none of
/// the pool's backends.
#[test]
fn a_graceful_shutdown_lets_async_work_finish_and_leaves_no_backend() {
    let Some((url, _server)) = server() else {
        return;
    };
    let (tag, table) = ("pinpool-shutdown-async", "shutdown_async");
    fresh_table(&mut observer(&url), table);
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.application_name(tag);
    current_thread_runtime().block_on(async {
        let pool = pinpool::tokio::Pool::builder()
            .max_size(4)
            .pinning(Pinning::Exclusive)
            .build(AsyncPgManager::new(config))
            .unwrap();
        let (holding, mut held) = tokio::sync::mpsc::unbounded_channel();
        let finish = tokio::sync::watch::Sender::new(false);
        let owners: Vec<_> = (0..4)
            .map(|me| {
                let (pool, holding) = (pool.clone(), holding.clone());
                let mut finished = finish.subscribe();
                tokio::spawn(async move {
                    let mut session = pool.session();
                    let conn = session.get().await.unwrap();
                    let insert = format!("BEGIN; INSERT INTO {table} VALUES ({me})");
                    conn.batch_execute(&insert).await.unwrap();
                    holding.send(()).unwrap();
                    let _ = finished.wait_for(|&go| go).await; // (or the test failed)
                    conn.batch_execute("COMMIT").await.unwrap();
                })
            })
            .collect();
        for _ in 0..4 {
            held.recv().await.unwrap();
        }
        let waited = tokio::time::timeout(Duration::from_millis(50), pool.close_and_wait()).await;
        assert!(waited.is_err(), "four sessions out: {}", pool.state());
        finish.send_replace(true);
        tokio::time::timeout(Duration::from_secs(30), pool.close_and_wait())
            .await
            .expect("every session back and closed");
        for owner in owners {
            owner.await.unwrap();
        }
        let (watch, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let rows: i64 = (watch.query_one(&format!("SELECT count(*) FROM {table}"), &[]))
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 4, "every owner's work committed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let backends: i64 = watch
                .query_one(TAGGED_BACKENDS, &[&tag])
                .await
                .unwrap()
                .get(0);
            if backends == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backends} of the pool's backends left"
            );
            tokio::task::yield_now().await;
        }
    });
}
