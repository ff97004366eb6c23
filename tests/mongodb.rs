//! The MongoDB adapter against a real MongoDB-wire server (secantusdb,
//! started by `tests/run.sh`; see `tests/server/`), cross-checked with the
//! official `mongodb` driver.
//!
//! The tests take turns (`TURN`): two of them count the server's
//! connections, which the others would disturb.

mod server;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use pinpool::blocking::Pool;
use pinpool::core::Pinning;
use pinpool::mongodb::{MongoConnection, MongoManager};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A number from a reply, whatever its BSON width.
fn number(reply: &Document, key: &str) -> i64 {
    match reply.get(key) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        other => panic!("no number {key} in {reply}: {other:?}"),
    }
}

/// The server's own count of its open connections.
fn server_connections(monitor: &mut MongoConnection) -> i64 {
    let status = monitor
        .command("admin", doc! { "serverStatus": 1 })
        .expect("serverStatus");
    number(
        status.get_document("connections").expect("connections"),
        "current",
    )
}

fn manager(server: &server::Server) -> MongoManager {
    MongoManager::new(&server.uri)
        .expect("a valid URI")
        .app_name("pinpool-tests")
        .connect_timeout(Duration::from_secs(5))
        .io_timeout(Duration::from_secs(10))
}

/// A connection outside any pool, for watching the server.
fn monitor(server: &server::Server) -> MongoConnection {
    pinpool::blocking::Manager::connect(&manager(server)).expect("a monitoring connection")
}

/// 32 threads each write without acknowledgement and read straight back:
/// `pinning` decides whether the read goes down the write's socket.
/// Returns the reads that missed their write.
fn write_then_read(server: &server::Server, pinning: Pinning, collection: &str) -> u64 {
    const THREADS: usize = 32;
    const PAIRS: usize = 157; // 32 × 157 × 2 = 10,048 operations
    let pool = Pool::builder()
        .max_size(8)
        .pinning(pinning)
        .build(manager(server))
        .unwrap();
    let mut setup = monitor(server);
    // A fresh collection each run (a missing one is an error, ignored).
    let _ = setup.command("pinpool", doc! { "drop": collection });
    let misses = AtomicU64::new(0);
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        for thread in 0..THREADS {
            let (pool, misses, start) = (&pool, &misses, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..PAIRS {
                    // Looked up by _id: an index read, however large
                    // the collection grows.
                    let id = format!("{thread}-{i}");
                    let insert = doc! { "insert": collection, "documents": [{ "_id": &id }] };
                    pool.get()
                        .unwrap()
                        .send_unacknowledged("pinpool", insert)
                        .unwrap();
                    let find = doc! { "find": collection, "filter": { "_id": &id } };
                    let reply = pool.get().unwrap().command("pinpool", find).unwrap();
                    let found = reply
                        .get_document("cursor")
                        .and_then(|cursor| cursor.get_array("firstBatch"))
                        .map_or(0, Vec::len);
                    if found == 0 {
                        misses.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    });
    misses.load(SeqCst)
}

#[test]
fn pinned_threads_read_their_unacknowledged_writes() {
    let _turn = turn();
    let Some(server) = server::shared() else {
        return;
    };
    let pinned = write_then_read(&server, Pinning::Strict, "ryw_pinned");
    let unpinned = write_then_read(&server, Pinning::Off, "ryw_unpinned");
    eprintln!(
        "read-your-writes over 10,048 operations: {pinned} misses pinned, {unpinned} with pinning off"
    );
    assert_eq!(pinned, 0, "a pinned thread missed its own write");
}

#[test]
fn the_official_driver_reads_what_pinpool_wrote() {
    let _turn = turn();
    let Some(server) = server::shared() else {
        return;
    };
    let pool = Pool::new(manager(&server)).unwrap();
    let _ = pool
        .get()
        .unwrap()
        .command("crosscheck", doc! { "drop": "items" });
    let written: Vec<Document> = (0..50)
        .map(|i| doc! { "_id": i, "name": format!("item {i}"), "tags": ["a", "b"], "price": f64::from(i) / 4.0 })
        .collect();
    let reply = pool
        .get()
        .unwrap()
        .command(
            "crosscheck",
            doc! { "insert": "items", "documents": written.clone() },
        )
        .unwrap();
    assert_eq!(number(&reply, "n"), 50);

    let client = mongodb::sync::Client::with_uri_str(&server.uri).unwrap();
    let items = client
        .database("crosscheck")
        .collection::<Document>("items");
    let read: Vec<Document> = items
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .run()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        read, written,
        "the official driver reads the same documents"
    );

    // And the other way: what the official driver writes, pinpool reads.
    items
        .insert_one(doc! { "_id": 100, "from": "official" })
        .run()
        .unwrap();
    let reply = pool
        .get()
        .unwrap()
        .command(
            "crosscheck",
            doc! { "find": "items", "filter": { "_id": 100 } },
        )
        .unwrap();
    let batch = reply
        .get_document("cursor")
        .and_then(|cursor| cursor.get_array("firstBatch"))
        .unwrap();
    assert_eq!(
        batch,
        &vec![Bson::Document(doc! { "_id": 100, "from": "official" })]
    );
    // Its sockets closed before the next test's turn, not in the
    // background after it (the storm test counts the server's).
    client.shutdown().run();
}

#[test]
fn a_thousand_short_lived_threads_open_at_most_max_size_sockets_and_leak_none() {
    let _turn = turn();
    let Some(server) = server::shared() else {
        return;
    };
    let mut watch = monitor(&server);
    let baseline = server_connections(&mut watch);
    let pool = Pool::builder().max_size(8).build(manager(&server)).unwrap();
    let done = AtomicBool::new(false);
    let most = thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(SeqCst) {
                most = most.max(server_connections(&mut watch));
            }
            most
        });
        for batch in 0..20 {
            thread::scope(|s| {
                for thread in 0..50 {
                    let pool = &pool;
                    s.spawn(move || {
                        let mut conn = pool.get().unwrap();
                        let id = batch * 50 + thread;
                        conn.command("storm", doc! { "insert": "t", "documents": [{ "id": id }] })
                            .unwrap();
                    });
                }
            });
        }
        done.store(true, SeqCst);
        watcher.join().unwrap()
    });
    assert!(
        most <= baseline + 8,
        "the server saw {most} connections (baseline {baseline}, max_size 8)"
    );
    // `thread::scope` returns before its threads' thread-locals are
    // dropped, which is when their pins are reclaimed.
    let state = support::wait_for_state(&pool, "every thread's pin reclaimed", |state| {
        state.pinned_owners == 0
    });
    assert!(state.counters.opened <= 8, "{state:?}");
    drop(pool);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now = server_connections(&mut watch);
    // Back to the baseline once the server has seen the sockets close.
    while now > baseline && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20)); // polling the server
        now = server_connections(&mut watch);
    }
    eprintln!("server connections: baseline {baseline}, most {most}, after drop {now}");
    assert!(
        now <= baseline,
        "the pool left {now} connections (baseline {baseline})"
    );
}

#[test]
fn a_server_restart_mid_run_is_survived() {
    let _turn = turn();
    let Some(mut server) = server::own() else {
        return;
    };
    let pool = Pool::builder()
        .max_size(4)
        .checkout_timeout(Duration::from_secs(5))
        .build(manager(&server))
        .unwrap();
    let (ok, failed, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5)); // polling counters
        }
    };
    thread::scope(|s| {
        for thread in 0..8 {
            let (pool, ok, failed, stop) = (&pool, &ok, &failed, &stop);
            s.spawn(move || {
                while !stop.load(SeqCst) {
                    let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
                        conn.command(
                            "restart",
                            doc! { "insert": "t", "documents": [{ "t": thread }] },
                        )
                        .map_err(|e| e.to_string())
                    });
                    match result {
                        Ok(_) => ok.fetch_add(1, SeqCst),
                        Err(_) => {
                            thread::sleep(Duration::from_millis(1)); // the app's backoff
                            failed.fetch_add(1, SeqCst)
                        }
                    };
                }
            });
        }
        wait_until("traffic", &|| ok.load(SeqCst) > 200);
        server.kill();
        wait_until("errors", &|| failed.load(SeqCst) > 8);
        server.restart();
        let before = ok.load(SeqCst);
        wait_until("recovery", &|| ok.load(SeqCst) > before + 200);
        stop.store(true, SeqCst);
    });
    let state = pool.state();
    eprintln!(
        "restart: {} ok, {} failed; pool: {state}",
        ok.load(SeqCst),
        failed.load(SeqCst)
    );
    assert!(
        state.counters.closed >= 1,
        "broken sockets were closed: {state:?}"
    );
    assert_eq!(state.waiting, 0);
    let c = state.counters;
    assert_eq!(
        c.opened,
        (state.idle + state.in_use + state.connecting + state.resetting) as u64
            + c.closed
            + c.connect_failures,
        "every socket accounted for: {state:?}"
    );
}

#[test]
fn clear_interrupting_breaks_off_a_checked_out_socket() {
    let _turn = turn();
    let Some(server) = server::shared() else {
        return;
    };
    let pool = Pool::new(manager(&server)).unwrap();
    let mut conn = pool.get().unwrap();
    let first = conn.server().connection_id;
    conn.command("admin", doc! { "ping": 1 }).unwrap();
    pool.clear_interrupting();
    let error = conn.command("admin", doc! { "ping": 1 }).unwrap_err();
    assert!(error.breaks_connection(), "{error}");
    assert!(conn.is_broken());
    drop(conn);
    pool.ready();
    let conn = pool.get().unwrap();
    assert_ne!(conn.server().connection_id, first, "a fresh socket");
    assert_eq!(pool.state().counters.closed, 1);
}

#[cfg(feature = "tokio")]
#[test]
fn the_async_pool_runs_commands_on_pinned_sockets() {
    // Its turn too: its sockets would count in the storm test's.
    let _turn = turn();
    let Some(server) = server::shared() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(pinned_sockets_on_the_async_pool(&server));
}

async fn pinned_sockets_on_the_async_pool(server: &server::Server) {
    let pool = pinpool::tokio::Pool::builder()
        .max_size(2)
        .validate_on_checkout(true)
        .build(manager(server))
        .unwrap();
    // A fresh collection each run, as the counts below assume (a missing
    // one is an error, ignored): a server given by MONGODB_URI outlives
    // the run.
    let _ = (pool.get().await.unwrap())
        .command("async", doc! { "drop": "t" })
        .await;
    let ids = pool
        .pinned(async {
            let mut ids = Vec::new();
            for i in 0..5 {
                let mut conn = pool.get().await?;
                conn.send_unacknowledged(
                    "async",
                    doc! { "insert": "t", "documents": [{ "i": i }] },
                )
                .await
                .unwrap();
                let reply = conn
                    .command("async", doc! { "count": "t", "query": { "i": i } })
                    .await
                    .unwrap();
                assert_eq!(number(&reply, "n"), 1, "read its own write");
                ids.push(conn.server().connection_id);
            }
            Ok::<_, pinpool::Error<pinpool::mongodb::MongoError>>(ids)
        })
        .await
        .unwrap();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one socket: {ids:?}");
    assert!(
        ids[0].is_some(),
        "the handshake recorded the server's connection id"
    );
}
