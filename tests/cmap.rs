//! The MongoDB CMAP conformance runner: every `cmap-format` JSON test in
//! `../shared/cmap-spec/tests/` (and each directory in `PINPOOL_CMAP_TESTS`,
//! colon-separated), run against the blocking pool with `Pinning::Off`, as
//! the format's README says: named threads, `waitForEvent`, labels, event
//! matching with the `42` wildcard, `ignore` lists and error types.
//!
//! The test data is read here at test time, never copied into this
//! repository (its licence is CC BY-NC-SA). A missing directory is said
//! loudly, and fails the run under `CI=true`.
//!
//! Integration-style files configure a fail point on the server's
//! handshake. With the `mongodb` feature and a MongoDB-wire server (see
//! `tests/server/`) they run against it: the fail point is configured on
//! the server, and connections are real sockets whose `hello` it blocks or
//! fails. Without one they run against a manager that plays the fail point
//! on connection setup: it blocks for `blockTimeMS`, or fails with
//! `errorCode`. Either way a failed handshake clears the pool first, as a
//! driver's monitoring does. Error messages are pinpool's own; errors are
//! matched by type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

#[cfg(feature = "mongodb")]
mod server;

use pinpool::Error;
use pinpool::blocking::{Manager, Pool, PooledConnection};
use pinpool::core::{CloseReason, Event, FailReason, Pinning, WakePolicy};
use serde_json::{Value, json};

const ADDRESS: &str = "127.0.0.1:27017";
/// `waitForEvent` without its own timeout, and a checkout without
/// `waitQueueTimeoutMS`, give up after this long rather than hang.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

#[test]
fn cmap_spec_tests_pass() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cmap-spec/tests")];
    if let Ok(extra) = std::env::var("PINPOOL_CMAP_TESTS") {
        dirs.extend(
            extra
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut files = Vec::new();
    for dir in &dirs {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(error) => {
                eprintln!(
                    "\n!!! CMAP TESTS NOT RUN: cannot read {}: {error}\n",
                    dir.display()
                );
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "the CMAP test directory {} is missing under CI",
                    dir.display()
                );
            }
        }
    }
    let server = integration_server();
    let mut failures = Vec::new();
    let mut real = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let spec: Value = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(spec) => spec,
            Err(error) => {
                failures.push(format!("{name}: unreadable: {error}"));
                continue;
            }
        };
        let integration = spec["style"] == "integration";
        real += usize::from(integration && server.is_some());
        match run_file(&spec, server.as_ref()) {
            Ok(()) => eprintln!("CMAP pass: {name}"),
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    eprintln!(
        "CMAP: {} of {} files passed ({real} integration-style against the server)",
        files.len() - failures.len(),
        files.len()
    );
    assert!(
        failures.is_empty(),
        "CMAP failures:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ manager

/// A connection's setup as a server fail point on the handshake shapes it.
#[derive(Debug, Default)]
struct FailPoint {
    /// Setups it still applies to (`None`: always).
    times: Option<u64>,
    block: Option<Duration>,
    error_code: Option<i64>,
}

impl FailPoint {
    fn from_spec(spec: &Value) -> Self {
        let data = &spec["data"];
        FailPoint {
            times: spec["mode"]["times"].as_u64(),
            block: (data["blockConnection"] == json!(true))
                .then(|| Duration::from_millis(data["blockTimeMS"].as_u64().unwrap_or(0))),
            error_code: data["errorCode"].as_i64(),
        }
    }

    /// Whether it applies to this setup (counting it down).
    fn fires(&mut self) -> bool {
        match &mut self.times {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }
}

/// A connection's setup failed (as the fail point said).
#[derive(Debug, thiserror::Error)]
#[error("connection setup failed: {0}")]
struct SetupError(String);

/// How connections are set up: played here, or real sockets to a server
/// whose handshake the fail point shapes.
enum Setup {
    Played(Mutex<FailPoint>),
    #[cfg(feature = "mongodb")]
    Real(pinpool::mongodb::MongoManager),
}

/// A connection: nothing when played, a socket when real.
struct CmapConn(#[allow(dead_code)] Option<Box<dyn std::any::Any + Send>>);

/// Opens the file's connections.
struct CmapManager {
    setup: Setup,
    /// The pool, to clear when a handshake fails; emptied after the test
    /// so the pool is not kept alive by its own manager.
    pool: Arc<Mutex<Option<Pool<CmapManager>>>>,
}

impl CmapManager {
    fn open(&self) -> Result<CmapConn, SetupError> {
        match &self.setup {
            Setup::Played(fail_point) => {
                let (block, error_code) = {
                    let mut fail_point = fail_point.lock().unwrap();
                    if !fail_point.fires() {
                        return Ok(CmapConn(None));
                    }
                    (fail_point.block, fail_point.error_code)
                };
                if let Some(block) = block {
                    thread::sleep(block); // the server holds the handshake
                }
                match error_code {
                    Some(code) => Err(SetupError(format!("server error code {code}"))),
                    None => Ok(CmapConn(None)),
                }
            }
            #[cfg(feature = "mongodb")]
            Setup::Real(manager) => match pinpool::blocking::Manager::connect(manager) {
                Ok(conn) => Ok(CmapConn(Some(Box::new(conn)))),
                Err(error) => Err(SetupError(error.to_string())),
            },
        }
    }
}

impl Manager for CmapManager {
    type Connection = CmapConn;
    type Error = SetupError;

    /// Opens a connection; a failed handshake clears the pool first, as a
    /// driver's server monitoring would.
    fn connect(&self) -> Result<CmapConn, SetupError> {
        let opened = self.open();
        if opened.is_err() {
            let pool = self.pool.lock().unwrap().clone();
            if let Some(pool) = pool {
                pool.clear();
            }
        }
        opened
    }
}

// ------------------------------------------------------------------ events

/// Every event the pool emitted, as CMAP JSON, and a way to wait for more.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Value>>,
    grew: Condvar,
}

impl Recorder {
    fn record(&self, event: &Event) {
        if let Some(value) = cmap_event(event) {
            self.events.lock().unwrap().push(value);
            self.grew.notify_all();
        }
    }

    fn count(events: &[Value], kind: &str) -> usize {
        events.iter().filter(|e| e["type"] == kind).count()
    }

    fn wait_for(&self, kind: &str, count: usize, timeout: Duration) -> Result<(), String> {
        let events = self.events.lock().unwrap();
        let (events, waited) = self
            .grew
            .wait_timeout_while(events, timeout, |events| Self::count(events, kind) < count)
            .unwrap();
        if waited.timed_out() && Self::count(&events, kind) < count {
            return Err(format!("timed out waiting for {count} {kind}"));
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> Value {
    json!(duration.as_secs_f64() * 1000.0)
}

/// The CMAP form of a pool event; `None` for pinpool's own (pins, leaks,
/// resets, resizes).
fn cmap_event(event: &Event) -> Option<Value> {
    let (kind, fields) = match *event {
        Event::PoolCreated(config) => {
            let mut options = json!({
                "maxPoolSize": config.max_size,
                "minPoolSize": config.min_size,
                "maxConnecting": config.max_connecting,
            });
            if let Some(idle) = config.idle_timeout {
                options["maxIdleTimeMS"] = json!(idle.as_millis() as u64);
            }
            ("ConnectionPoolCreated", json!({ "options": options }))
        }
        Event::PoolReady => ("ConnectionPoolReady", json!({})),
        Event::PoolCleared {
            interrupt_in_use, ..
        } => (
            "ConnectionPoolCleared",
            json!({ "interruptInUseConnections": interrupt_in_use }),
        ),
        Event::PoolClosed => ("ConnectionPoolClosed", json!({})),
        Event::ConnectionCreated(conn) => ("ConnectionCreated", json!({ "connectionId": conn.0 })),
        Event::ConnectionReady { conn, took } => (
            "ConnectionReady",
            json!({ "connectionId": conn.0, "duration": millis(took) }),
        ),
        Event::ConnectionClosed { conn, reason } => {
            let reason = match reason {
                CloseReason::Stale | CloseReason::Lifetime => "stale",
                // Closed while idle, for a smaller pool (CMAP has no resize).
                CloseReason::Idle | CloseReason::Shrunk => "idle",
                CloseReason::Error | CloseReason::ResetFailed => "error",
                CloseReason::PoolClosed => "poolClosed",
                // `CloseReason` may grow: a new reason needs its mapping.
                other => panic!("no CMAP reason for {other:?}"),
            };
            (
                "ConnectionClosed",
                json!({ "connectionId": conn.0, "reason": reason }),
            )
        }
        Event::ConnectionFailed(conn) => (
            "ConnectionClosed",
            json!({ "connectionId": conn.0, "reason": "error" }),
        ),
        Event::CheckoutStarted { .. } => ("ConnectionCheckOutStarted", json!({})),
        Event::CheckedOut { conn, waited, .. } => (
            "ConnectionCheckedOut",
            json!({ "connectionId": conn.0, "duration": millis(waited) }),
        ),
        Event::CheckedIn { conn, .. } => ("ConnectionCheckedIn", json!({ "connectionId": conn.0 })),
        Event::CheckoutFailed { reason, waited, .. } => {
            let reason = match reason {
                FailReason::PoolClosed => "poolClosed",
                // A checkout whose wait queue timeout is zero.
                FailReason::Timeout | FailReason::WouldWait => "timeout",
                FailReason::ConnectionError
                | FailReason::Paused
                | FailReason::AlreadyHeld
                | FailReason::OwnerGone
                | FailReason::ConnectTimeout => "connectionError",
                other => panic!("no CMAP reason for {other:?}"),
            };
            (
                "ConnectionCheckOutFailed",
                json!({ "reason": reason, "duration": millis(waited) }),
            )
        }
        Event::Waiting { .. }
        | Event::Pinned { .. }
        | Event::Unpinned { .. }
        | Event::PinReclaimed { .. }
        | Event::ConnectionReset { .. }
        | Event::PoolResized { .. }
        | Event::ConnectionLeaked { .. } => return None,
        // `Event` may grow: a new event needs its mapping (or a `None`).
        other => panic!("no CMAP form decided for {other:?}"),
    };
    let mut value = fields;
    value["type"] = json!(kind);
    value["address"] = json!(ADDRESS);
    Some(value)
}

/// The CMAP error type of a checkout error.
fn cmap_error(error: &Error<SetupError>) -> Value {
    let kind = match error {
        Error::Timeout { .. } => "WaitQueueTimeoutError",
        Error::Closed => "PoolClosedError",
        Error::Paused => "PoolClearedError",
        _ => "ConnectionError",
    };
    json!({ "type": kind, "message": error.to_string(), "address": ADDRESS })
}

/// The format's MATCH: `expected` is a subset of `actual`, `42` and `"42"`
/// matching any present value. Errors are matched by type only: the
/// messages are pinpool's own.
fn matches(expected: &Value, actual: &Value) -> bool {
    match expected {
        Value::Number(n) if n.as_i64() == Some(42) => !actual.is_null(),
        Value::String(s) if s == "42" => !actual.is_null(),
        Value::Object(fields) => fields
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|actual| matches(value, actual))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .all(|(i, value)| actual.get(i).is_some_and(|actual| matches(value, actual))),
        _ => expected == actual,
    }
}

// ------------------------------------------------------------------ runner

type Conn<'p> = PooledConnection<'p, CmapManager>;

/// What the operations share: the pool, the labelled and unlabelled
/// connections they hold, and the events.
struct World<'p> {
    pool: &'p Pool<CmapManager>,
    labels: Mutex<HashMap<String, Conn<'p>>>,
    unlabelled: Mutex<Vec<Conn<'p>>>,
    recorder: &'p Recorder,
}

impl World<'_> {
    /// Runs one operation (not `start`/`waitForThread`, which need the
    /// thread table).
    fn run(&self, op: &Value) -> Result<(), Value> {
        let ms = |key: &str| Duration::from_millis(op[key].as_u64().unwrap_or(0));
        match op["name"].as_str().unwrap_or_default() {
            "checkOut" => {
                let conn = self.pool.get().map_err(|e| cmap_error(&e))?;
                match op["label"].as_str() {
                    Some(label) => {
                        self.labels.lock().unwrap().insert(label.into(), conn);
                    }
                    None => self.unlabelled.lock().unwrap().push(conn),
                }
            }
            "checkIn" => {
                let label = op["connection"].as_str().unwrap_or_default();
                let conn = self.labels.lock().unwrap().remove(label);
                drop(conn.ok_or_else(|| json!({ "type": "NoSuchLabel", "message": label }))?);
            }
            "clear" if op["interruptInUseConnections"] == json!(true) => {
                self.pool.clear_interrupting()
            }
            "clear" => self.pool.clear(),
            "ready" => self.pool.ready(),
            "close" => self.pool.close(),
            "wait" => thread::sleep(ms("ms")),
            "waitForEvent" => {
                let timeout = match op["timeout"].as_u64() {
                    Some(ms) => Duration::from_millis(ms),
                    None => DEFAULT_WAIT,
                };
                let count = op["count"].as_u64().unwrap_or(1) as usize;
                let event = op["event"].as_str().unwrap_or_default();
                self.recorder
                    .wait_for(event, count, timeout)
                    .map_err(|message| json!({ "type": "Timeout", "message": message }))?;
            }
            other => {
                return Err(json!({ "type": "UnknownOperation", "message": other }));
            }
        }
        Ok(())
    }
}

/// Builds the pool a file's `poolOptions` describe: `Pinning::Off`, paused
/// (CMAP pools start paused).
fn build_pool(
    spec: &Value,
    setup: Setup,
    recorder: &Arc<Recorder>,
    hook: &Arc<Mutex<Option<Pool<CmapManager>>>>,
) -> Result<Pool<CmapManager>, String> {
    let options = &spec["poolOptions"];
    let ms = |key: &str| options[key].as_i64();
    let mut builder = Pool::builder()
        .pinning(Pinning::Off)
        // The spec's WaitQueue is "ordered/fair": no barging, as a driver
        // following it would configure its pool.
        .wake(WakePolicy::Handoff)
        .start_paused(true)
        .max_size(options["maxPoolSize"].as_u64().unwrap_or(100) as usize)
        .min_size(options["minPoolSize"].as_u64().unwrap_or(0) as usize)
        .max_connecting(options["maxConnecting"].as_u64().unwrap_or(2) as usize)
        .checkout_timeout(
            ms("waitQueueTimeoutMS").map_or(DEFAULT_WAIT, |ms| Duration::from_millis(ms as u64)),
        );
    if let Some(idle) = ms("maxIdleTimeMS") {
        builder = builder.idle_timeout(Duration::from_millis(idle as u64));
    }
    if let Some(interval) = ms("backgroundThreadIntervalMS") {
        builder = builder.maintenance_interval(if interval < 0 {
            Duration::MAX
        } else {
            Duration::from_millis(interval as u64)
        });
    }
    let events = Arc::clone(recorder);
    let manager = CmapManager {
        setup,
        pool: Arc::clone(hook),
    };
    builder
        .event_handler(move |event| events.record(event))
        .build(manager)
        .map_err(|e| e.to_string())
}

/// Runs one file, against `server` when it is given and the file is
/// integration-style; `Err` says what did not match.
fn run_file(spec: &Value, server: Option<&Server>) -> Result<(), String> {
    let recorder = Arc::new(Recorder::default());
    let hook = Arc::new(Mutex::new(None));
    let (setup, fail_point) = setup_for(spec, server)?;
    let pool = build_pool(spec, setup, &recorder, &hook)?;
    *hook.lock().unwrap() = Some(pool.clone());
    let outcome = run_operations(spec, &pool, &recorder);
    *hook.lock().unwrap() = None; // the manager no longer keeps the pool
    drop(pool);
    drop(fail_point); // turned off on the server
    let main_error = outcome?;
    check_outcome(spec, main_error, &recorder)
}

#[cfg(feature = "mongodb")]
type Server = server::Server;
/// Without the adapter there is no server to run against.
#[cfg(not(feature = "mongodb"))]
type Server = std::convert::Infallible;

/// The server integration-style files run against, if there is one.
fn integration_server() -> Option<Server> {
    #[cfg(feature = "mongodb")]
    return server::shared();
    #[cfg(not(feature = "mongodb"))]
    None
}

/// How the file's connections are set up, and the fail point configured
/// on the server for it (turned off when dropped).
fn setup_for(spec: &Value, server: Option<&Server>) -> Result<(Setup, FailPointGuard), String> {
    #[cfg(feature = "mongodb")]
    if let (Some(server), Some("integration")) = (server, spec["style"].as_str()) {
        return real_setup(spec, server);
    }
    let _ = server;
    let played = spec
        .get("failPoint")
        .map(FailPoint::from_spec)
        .unwrap_or(FailPoint {
            times: Some(0),
            ..FailPoint::default()
        });
    Ok((Setup::Played(Mutex::new(played)), FailPointGuard::default()))
}

/// A fail point configured on the server, turned off on drop.
#[derive(Default)]
struct FailPointGuard {
    #[cfg(feature = "mongodb")]
    on: Option<(pinpool::mongodb::MongoConnection, String)>,
}

impl Drop for FailPointGuard {
    fn drop(&mut self) {
        #[cfg(feature = "mongodb")]
        if let Some((mut admin, name)) = self.on.take() {
            let off = bson::doc! { "configureFailPoint": name, "mode": "off" };
            if let Err(error) = admin.command("admin", off) {
                eprintln!("could not turn the fail point off: {error}");
            }
        }
    }
}

/// Real sockets to `server`, named by the file's `appName`, with its fail
/// point configured.
#[cfg(feature = "mongodb")]
fn real_setup(spec: &Value, server: &Server) -> Result<(Setup, FailPointGuard), String> {
    use pinpool::mongodb::MongoManager;
    let connect = || MongoManager::new(&server.uri).map_err(|e| e.to_string());
    let mut manager = connect()?;
    if let Some(name) = spec["poolOptions"]["appName"].as_str() {
        manager = manager.app_name(name);
    }
    let mut guard = FailPointGuard::default();
    if let Some(fail_point) = spec.get("failPoint") {
        let command = bson::to_document(fail_point).map_err(|e| e.to_string())?;
        let name = command
            .get_str("configureFailPoint")
            .unwrap_or("failCommand")
            .to_owned();
        let mut admin =
            pinpool::blocking::Manager::connect(&connect()?).map_err(|e| e.to_string())?;
        admin
            .command("admin", command)
            .map_err(|e| format!("configureFailPoint: {e}"))?;
        guard.on = Some((admin, name));
    }
    Ok((Setup::Real(manager), guard))
}

/// Runs the operations; the main thread's error, if any.
fn run_operations(
    spec: &Value,
    pool: &Pool<CmapManager>,
    recorder: &Recorder,
) -> Result<Option<Value>, String> {
    let world = World {
        pool,
        labels: Mutex::new(HashMap::new()),
        unlabelled: Mutex::new(Vec::new()),
        recorder,
    };
    let ops = spec["operations"].as_array().ok_or("no operations")?;
    thread::scope(|scope| {
        let world = &world;
        let mut threads = HashMap::new();
        for op in ops {
            let result = match (op["name"].as_str(), op["thread"].as_str()) {
                (Some("start"), _) => {
                    let target = op["target"].as_str().unwrap_or_default().to_owned();
                    let (send, ops) = mpsc::channel::<Value>();
                    let thread = thread::Builder::new()
                        .name(target.clone())
                        .spawn_scoped(scope, move || {
                            // The thread's first error; later ops still run.
                            let mut first = None;
                            for op in ops {
                                if let Err(error) = world.run(&op) {
                                    first.get_or_insert(error);
                                }
                            }
                            first
                        })
                        .map_err(|e| e.to_string())?;
                    threads.insert(target, (send, thread));
                    Ok(())
                }
                (Some("waitForThread"), _) => {
                    let target = op["target"].as_str().unwrap_or_default();
                    let (send, thread) = threads
                        .remove(target)
                        .ok_or_else(|| format!("no thread {target}"))?;
                    drop(send);
                    match thread.join() {
                        Ok(Some(error)) => Err(error),
                        Ok(None) => Ok(()),
                        Err(_) => return Err(format!("thread {target} panicked")),
                    }
                }
                (_, Some(target)) => {
                    let (send, _) = threads
                        .get(target)
                        .ok_or_else(|| format!("no thread {target}"))?;
                    send.send(op.clone()).map_err(|e| e.to_string())?;
                    Ok(())
                }
                (_, None) => world.run(op),
            };
            if let Err(error) = result {
                return Ok(Some(error));
            }
        }
        Ok(None)
    })
}

/// Compares the main thread's error and the events with the file's.
fn check_outcome(
    spec: &Value,
    main_error: Option<Value>,
    recorder: &Recorder,
) -> Result<(), String> {
    match (&spec["error"], main_error) {
        (Value::Null, None) => {}
        (Value::Null, Some(actual)) => return Err(format!("unexpected error {actual}")),
        (expected, None) => return Err(format!("expected error {expected}, got none")),
        (expected, Some(actual)) => {
            let by_type = json!({ "type": expected["type"] });
            if !matches(&by_type, &actual) {
                return Err(format!("expected error {expected}, got {actual}"));
            }
        }
    }
    let ignore: Vec<&str> = spec["ignore"]
        .as_array()
        .map(|kinds| kinds.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let events = recorder.events.lock().unwrap();
    let actual: Vec<&Value> = events
        .iter()
        .filter(|e| !ignore.iter().any(|kind| e["type"] == *kind))
        .collect();
    let expected = spec["events"].as_array().ok_or("no events")?;
    for (i, want) in expected.iter().enumerate() {
        match actual.get(i) {
            Some(got) if matches(want, got) => {}
            got => {
                return Err(format!(
                    "event {i}: expected {want}, got {got:?}\nall: {actual:#?}"
                ));
            }
        }
    }
    Ok(())
}
