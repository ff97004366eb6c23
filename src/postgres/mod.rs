//! PostgreSQL managers (feature `postgres`): [`PgManager`] for the
//! [blocking](crate::blocking) pool over the `postgres` crate, and (with
//! `tokio`) [`AsyncPgManager`] for the [async](crate::tokio) pool over
//! `tokio-postgres`.
//!
//! Both pair with [`Pinning::Exclusive`](crate::core::Pinning::Exclusive):
//! each thread, scope or [`Session`](crate::blocking::Session) gets a
//! database session of its own — its transaction, `SET`s, temporary
//! tables, prepared statements, advisory locks and `LISTEN` channels —
//! and when it lets go the session is reset (`DISCARD ALL` by default)
//! before anyone else gets the connection.
//!
//! ```no_run
//! use pinpool::blocking::Pool;
//! use pinpool::core::Pinning;
//! use pinpool::postgres::PgManager;
//!
//! let manager = PgManager::from_url("postgresql://app@127.0.0.1:5432/app")?;
//! let pool = Pool::builder().max_size(8).pinning(Pinning::Exclusive).build(manager)?;
//! let mut conn = pool.get()?;                     // this thread's session
//! conn.batch_execute("CREATE TEMP TABLE seen (id int)")?;
//! drop(conn);
//! let mut conn = pool.get()?;                     // the same session:
//! conn.execute("INSERT INTO seen VALUES (1)", &[])?; // its temp table is there
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What each manager does:
//! - `connect` from a connection string or a `Config`, without TLS, or
//!   over it with `with_tls` and any connector the drivers take
//!   ([`MakeTls`]). A refused login or an unreachable server is an
//!   [`Error::Connect`](crate::Error::Connect) at once; a config without
//!   a connect timeout gets [`DEFAULT_CONNECT_TIMEOUT`]. The driver
//!   bounds only the TCP connect by it, so the manager's
//!   `connect_timeout` has the pool give up the whole connect, startup
//!   handshake included, after that long (for each host), unless the
//!   builder sets a `connect_timeout` of its own: a server that takes
//!   the connection and never answers is an
//!   [`Error::ConnectTimeout`](crate::Error::ConnectTimeout), not a
//!   connect slot held for ever;
//! - `validate`: an empty simple query (a round trip), bounded by the
//!   manager's `io_timeout` ([`DEFAULT_IO_TIMEOUT`]): a half-open socket
//!   fails validation instead of holding the checkout;
//! - `has_broken`: the client is closed (its socket or its connection
//!   task ended);
//! - `interrupt_handle`: the client's cancel token, so
//!   `clear_interrupting()` cancels the query a checked-out session is
//!   running;
//! - `reset`: [`DEFAULT_RESET`] (a `ROLLBACK` of any transaction left
//!   open, then `DISCARD ALL`), or the statements given to `reset_with`,
//!   each its own round trip; then the notifications the client still
//!   holds are dropped (and the statements the session's
//!   `prepare_cached` kept are closed first, the reset deallocating them:
//!   [`BlockingPgClient::prepare_cached`], [`PgClient::prepare_cached`];
//!   unless the manager was told with `keep_cached_statements_on_reset`
//!   that its reset leaves them in place).
//!   An error closes the session rather than hand it on. The async
//!   manager bounds each statement by its `io_timeout`; the blocking
//!   `postgres::Client` has no timeout for a statement, so the blocking
//!   manager's reset begins with a round trip bounded by `io_timeout`
//!   (an empty query, accepted even in a failed transaction): over a
//!   link gone silent the reset fails by then and the session is closed,
//!   rather than hold the thread that let it go for as long as the
//!   socket lasts (a link that goes silent during the statements
//!   themselves still does).
//! - `prepare_cached` and `prepare_typed_cached` on each session keep
//!   its statements by query (at most `statement_cache_capacity`, least
//!   recently used out first); after a schema change, see
//!   [`is_stale_statement`].

mod blocking;
mod cache;
#[cfg(feature = "tokio")]
mod tokio;

use std::time::Duration;

use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

pub use blocking::{BlockingPgClient, PgManager};
pub use cache::{DEFAULT_STATEMENT_CACHE_CAPACITY, is_stale_statement};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio::{AsyncPgManager, PgClient};

/// What the managers take to make TLS connections
/// ([`PgManager::with_tls`]): a `MakeTlsConnect` that its connections,
/// their handshakes and their cancels may use from any thread — `NoTls`,
/// and the connectors of postgres-native-tls, postgres-openssl and
/// tokio-postgres-rustls. Implemented for every such type.
pub trait MakeTls:
    MakeTlsConnect<Socket, Stream: Send, TlsConnect: Send + TlsConnect<Socket, Future: Send>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> MakeTls for T where
    T: MakeTlsConnect<Socket, Stream: Send, TlsConnect: Send + TlsConnect<Socket, Future: Send>>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What a session is reset with between owners, one round trip each: a
/// transaction its owner left open is rolled back (outside one, `ROLLBACK`
/// only warns), then every session setting, prepared statement, temporary
/// table, advisory lock and `LISTEN` is dropped, as a new session has
/// none. (`DISCARD ALL` cannot share a round trip with another statement:
/// that would make them one transaction block, where it cannot run.)
pub const DEFAULT_RESET: [&str; 2] = ["ROLLBACK", "DISCARD ALL"];

/// The statements of a reset, from what `reset_with` was given.
fn statements<S: Into<String>>(statements: impl IntoIterator<Item = S>) -> Vec<String> {
    statements.into_iter().map(Into::into).collect()
}

/// The connect timeout a manager uses when its config sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a manager's own round trip (a validation; with the async
/// manager, each statement of a reset too) may take unless `io_timeout`
/// says otherwise: the MongoDB adapter's default.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the pool gives a whole connect (see
/// [`Manager::connect_timeout`](crate::blocking::Manager::connect_timeout)):
/// the config's connect timeout for each of its `hosts`. The driver
/// applies that timeout to each host's TCP connect alone, not to the
/// startup handshake after it, where a server that took the connection
/// and never answers would hold the connect for ever.
fn whole_connect_timeout(timeout: Option<&Duration>, hosts: usize) -> Option<Duration> {
    let hosts = u32::try_from(hosts.max(1)).unwrap_or(u32::MAX);
    timeout
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout.saturating_mul(hosts))
}

/// A pool's default name from its connection config: `host:port/database`
/// (the first host; a Unix socket's path stands for the host).
fn pool_name(
    hosts: &[tokio_postgres::config::Host],
    ports: &[u16],
    dbname: Option<&str>,
    user: Option<&str>,
) -> Option<String> {
    use tokio_postgres::config::Host;
    let host = match hosts.first()? {
        Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        Host::Unix(path) => path.display().to_string(),
    };
    let port = ports.first().copied().unwrap_or(5432);
    // PostgreSQL's own default: the database named after the user.
    let database = dbname.or(user).unwrap_or("postgres");
    Some(format!("{host}:{port}/{database}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[cfg(feature = "tokio")]
    use super::AsyncPgManager;
    use super::{DEFAULT_CONNECT_TIMEOUT, PgManager};
    use crate::blocking::Manager;

    /// The pool gives a whole connect the config's timeout for each host,
    /// the default one where the config has none.
    #[test]
    fn the_pool_bounds_a_whole_connect_by_the_configs_timeout_per_host() {
        let timeout = |url| PgManager::from_url(url).unwrap().connect_timeout();
        assert_eq!(
            timeout("postgresql://app@db/app"),
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            timeout("postgresql://app@db/app?connect_timeout=3"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            timeout("postgresql://app@db1,db2/app?connect_timeout=3"),
            Some(Duration::from_secs(6))
        );
        let mut zero = postgres::Config::new();
        zero.host("db").connect_timeout(Duration::ZERO);
        assert_eq!(PgManager::new(zero).connect_timeout(), None);
    }

    /// Both managers name a pool `host:port/database` from their config
    /// (the name metrics and logs carry): the first host, PostgreSQL's
    /// default port, and the user's name for a database left out.
    // Both managers: the async one needs the `tokio` feature.
    #[cfg(feature = "tokio")]
    #[test]
    fn a_pools_default_name_is_the_first_host_its_port_and_the_database() {
        let names = |url: &str| {
            let blocking = PgManager::from_url(url).unwrap().pool_name();
            let tokio = AsyncPgManager::from_url(url).unwrap();
            (blocking, crate::tokio::Manager::pool_name(&tokio))
        };
        let both = |name: &str| (Some(name.to_string()), Some(name.to_string()));
        assert_eq!(
            names("postgresql://app@db.internal:5433/shop"),
            both("db.internal:5433/shop")
        );
        assert_eq!(
            names("postgresql://app@db1,db2/shop"),
            both("db1:5432/shop")
        );
        assert_eq!(names("postgresql://app@db"), both("db:5432/app"));
        assert_eq!(
            names("host=/var/run/postgresql port=5433"),
            both("/var/run/postgresql:5433/postgres")
        );
        assert_eq!(names("user=app"), (None, None), "no host to name it by");
    }

    /// A manager keeps the config it was given, and its `Debug` shows how
    /// it resets and times out sessions, never the config's password.
    // Both managers: the async one needs the `tokio` feature.
    #[cfg(feature = "tokio")]
    #[test]
    fn a_managers_debug_shows_its_settings_but_not_the_password() {
        let url = "postgresql://app:s3cret@db/shop";
        let blocking = PgManager::from_url(url)
            .unwrap()
            .reset_with(["DISCARD PLANS"])
            .io_timeout(Duration::from_millis(1500));
        let tokio = AsyncPgManager::from_url(url)
            .unwrap()
            .reset_with(["DISCARD PLANS"])
            .io_timeout(Duration::from_millis(1500));
        assert_eq!(blocking.config().get_dbname(), Some("shop"));
        assert_eq!(tokio.config().get_dbname(), Some("shop"));
        for shown in [format!("{blocking:?}"), format!("{tokio:?}")] {
            for part in ["Manager", "\"db\"", "\"shop\"", "DISCARD PLANS", "1.5s"] {
                assert!(shown.contains(part), "{part} is not in {shown}");
            }
            assert!(!shown.contains("s3cret"), "the password shows in {shown}");
        }
    }
}
