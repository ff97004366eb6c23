//! The pool's metrics (feature `metrics`), through the [`metrics`] facade:
//! pinpool only emits, the application installs the recorder that exports
//! them (Prometheus, OpenTelemetry, StatsD, …). Names, units and attributes
//! follow OpenTelemetry's semantic conventions for database-client
//! connection pools; pinpool's own are under `pinpool.`. Every metric
//! carries [`POOL_NAME`], the pool's [`name`](crate::Builder::name)
//! (by default its manager's, e.g. `host:port/db`).
//!
//! | name | kind | unit | what |
//! |---|---|---|---|
//! | [`CONNECTION_COUNT`] | gauge | connections | by [`STATE`]: `idle`, or `used` (checked out or being reset) |
//! | [`IDLE_MIN`] | gauge | connections | `min_size` |
//! | [`MAX`] | gauge | connections | `max_size` (it follows a resize) |
//! | [`PENDING_REQUESTS`] | gauge | requests | checkouts waiting |
//! | [`TIMEOUTS`] | counter | timeouts | checkouts that timed out |
//! | [`CREATE_TIME`] | histogram | seconds | connects that succeeded |
//! | [`WAIT_TIME`] | histogram | seconds | successful checkouts, from asking to holding |
//! | [`USE_TIME`] | histogram | seconds | checkouts the pool saw end, from checkout to return |
//! | [`PINS`] | gauge | owners | owners (threads, tasks, sessions) with a pin |
//! | [`PIN_PENDING_REQUESTS`] | gauge | requests | owners waiting to be pinned (exclusive sessions waiting for a connection) |
//! | [`RESETS`] | counter | resets | resets of session state between owners |
//! | [`FAST_PATH_CHECKOUTS`] | counter | checkouts | checkouts served without the pool lock |
//!
//! **The lock-free paths record nothing as they run.** A pinned owner
//! re-taking its own parked connection, or a checkout taking a stashed one,
//! only bumps the counter of its lease, as without the feature. Those
//! checkouts are folded in under the pool lock — counted in
//! [`FAST_PATH_CHECKOUTS`] and as zero waits in [`WAIT_TIME`] — when the
//! lease ends, at a maintenance run, and at any other locked operation at
//! most once a second. Their use times are not measured (that would take
//! two clock reads on the fast path): [`USE_TIME`] samples the checkouts
//! that were not leased. A gauge is set when an operation under the pool
//! lock changes it, and keeps its value until the next change, as
//! exporters keep it (metrics-util's debugging recorder zeroes each gauge
//! it reads, so there a gauge reads 0 until it changes again); a
//! connection parked in its owner's lease counts as used, as in
//! [`Pool::status`](crate::blocking::Pool::status).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use metrics_util::debugging::DebuggingRecorder;
//! use pinpool::blocking::Pool;
//! # fn noop() -> std::io::Result<()> { Ok(()) }
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshots = recorder.snapshotter();
//! // A pool's metrics go to the recorder installed when it is built.
//! let pool = metrics::with_local_recorder(&recorder, || {
//!     Pool::builder().name("orders").build(noop)
//! })?;
//! drop(pool.get()?);
//! let names: Vec<String> = snapshots
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .map(|(key, ..)| key.key().name().to_owned())
//!     .collect();
//! assert!(names.iter().any(|name| name == pinpool::metrics::WAIT_TIME));
//! # Ok(())
//! # }
//! ```

/// Open connections, by [`STATE`].
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// The fewest idle connections the pool keeps: its `min_size`.
pub const IDLE_MIN: &str = "db.client.connection.idle.min";
/// The most connections the pool opens: its `max_size`.
pub const MAX: &str = "db.client.connection.max";
/// Checkouts waiting for a connection.
pub const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// Checkouts that timed out waiting.
pub const TIMEOUTS: &str = "db.client.connection.timeouts";
/// How long each successful connect took, in seconds.
pub const CREATE_TIME: &str = "db.client.connection.create_time";
/// How long each successful checkout waited, in seconds.
pub const WAIT_TIME: &str = "db.client.connection.wait_time";
/// How long each checkout held its connection, in seconds.
pub const USE_TIME: &str = "db.client.connection.use_time";
/// Owners with a pin.
pub const PINS: &str = "pinpool.pins";
/// Owners waiting to be pinned to a connection.
pub const PIN_PENDING_REQUESTS: &str = "pinpool.pins.pending_requests";
/// Resets of session state between owners.
pub const RESETS: &str = "pinpool.resets";
/// Checkouts served without the pool lock.
pub const FAST_PATH_CHECKOUTS: &str = "pinpool.checkouts.fast_path";

/// The attribute naming the pool, on every metric.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute of [`CONNECTION_COUNT`]: `idle` or `used`.
pub const STATE: &str = "db.client.connection.state";
