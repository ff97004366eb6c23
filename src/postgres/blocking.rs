//! The blocking pool's PostgreSQL manager, over the `postgres` crate.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, Config, NoTls, Statement};

use super::cache::{CacheSettings, StatementCache};
use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_RESET, MakeTls, statements};
use crate::InterruptHandle;

/// A session of the blocking pool: a `postgres::Client` (it derefs to
/// one, so `conn.query(…)` and a `fn(&mut postgres::Client)` take it as
/// they are) and the statements it prepared through
/// [`BlockingPgClient::prepare_cached`]. Code generic over
/// `postgres::GenericClient` (a sealed trait) takes the client itself:
///
/// ```no_run
/// use postgres::GenericClient;
///
/// fn answer(client: &mut impl GenericClient) -> Result<i32, postgres::Error> {
///     client.query_one("SELECT 42", &[])?.try_get(0)
/// }
///
/// # fn run(pool: pinpool::blocking::Pool<pinpool::postgres::PgManager>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = pool.get()?;
/// assert_eq!(answer(&mut **conn)?, 42); // guard → session → client
/// # Ok(()) }
/// ```
pub struct BlockingPgClient {
    client: Client,
    /// What [`BlockingPgClient::prepare_cached`] prepared, by query;
    /// emptied by the reset between owners, which deallocates them on the
    /// server.
    statements: StatementCache<Statement, Type>,
}

impl BlockingPgClient {
    /// `query` prepared on this session: the first time, a round trip to
    /// prepare it; later, whoever holds the session, the same statement
    /// again (what [`PgClient::prepare_cached`](super::PgClient::prepare_cached)
    /// does for the async pool, and deadpool-postgres' `prepare_cached`).
    /// The cache belongs to the session, so in a pool without pins every
    /// thread that checks the connection out finds what earlier ones
    /// prepared, where a statement a thread keeps itself is prepared again
    /// on each connection it gets. The reset between owners empties it
    /// and closes its statements, since `DISCARD ALL` (the default)
    /// deallocates them on the server, unless the manager was told its
    /// [custom reset](PgManager::reset_with) keeps them
    /// ([`keep_cached_statements_on_reset`](PgManager::keep_cached_statements_on_reset)).
    ///
    /// ```no_run
    /// # fn run(pool: pinpool::blocking::Pool<pinpool::postgres::PgManager>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let mut conn = pool.get()?;
    /// let statement = conn.prepare_cached("SELECT $1::int")?;
    /// let row = conn.query_one(&statement, &[&7])?;
    /// assert_eq!(row.get::<_, i32>(0), 7);
    /// # Ok(()) }
    /// ```
    pub fn prepare_cached(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        self.prepare_typed_cached(query, &[])
    }

    /// [`prepare_cached`](Self::prepare_cached) with the parameters'
    /// types given, as `postgres::Client::prepare_typed`: kept by query
    /// and types together.
    pub fn prepare_typed_cached(
        &mut self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(query, types) {
            return Ok(statement);
        }
        let statement = self.client.prepare_typed(query, types)?;
        self.statements.keep(query, types, &statement);
        Ok(statement)
    }

    /// Forgets the statements [`prepare_cached`](Self::prepare_cached)
    /// kept on this session (closing them on the server as they go), so
    /// that each is prepared again: after a schema change made one stale
    /// ([`is_stale_statement`](super::is_stale_statement)).
    pub fn forget_cached_statements(&mut self) {
        self.statements.clear();
    }
}

impl Deref for BlockingPgClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for BlockingPgClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl fmt::Debug for BlockingPgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPgClient")
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.statements.len())
            .finish()
    }
}

/// Opens [`BlockingPgClient`]s for a [blocking pool](crate::blocking::Pool),
/// over TLS made by `T` ([`NoTls`] unless built
/// [`with_tls`](PgManager::with_tls)): see the [module documentation](super).
#[derive(Clone)]
pub struct PgManager<T = NoTls> {
    config: Config,
    tls: T,
    reset: Vec<String>,
    io_timeout: Duration,
    cache: CacheSettings,
}

impl PgManager {
    /// A manager connecting with `config`, without TLS (a server on the
    /// same host or network; [`with_tls`](Self::with_tls) otherwise).
    pub fn new(config: Config) -> Self {
        PgManager::with_tls(config, NoTls)
    }

    /// A manager for a connection string, `postgresql://user@host:port/db`
    /// or `host=… user=…`; a malformed one is an error now, not at the
    /// first connect.
    ///
    /// ```
    /// use pinpool::postgres::PgManager;
    /// assert!(PgManager::from_url("postgresql://app@127.0.0.1:5432/app").is_ok());
    /// assert!(PgManager::from_url("postgresql://app@127.0.0.1:port/app").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, postgres::Error> {
        Ok(PgManager::new(url.parse()?))
    }
}

impl<T: MakeTls> PgManager<T> {
    /// A manager connecting with `config` over TLS made by `tls` — any
    /// `MakeTlsConnect` the driver takes: postgres-native-tls's,
    /// postgres-openssl's, tokio-postgres-rustls's. The config's
    /// `sslmode` decides whether TLS is required (`require`), tried
    /// (`prefer`, the default) or not used. Cancels go over it too.
    ///
    /// ```no_run
    /// use pinpool::postgres::{MakeTls, PgManager};
    ///
    /// // `tls`: e.g. postgres_native_tls::MakeTlsConnector::new(connector)
    /// # fn run(tls: impl MakeTls) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = "postgresql://app@db.example/app?sslmode=require".parse()?;
    /// let manager = PgManager::with_tls(config, tls);
    /// let pool = pinpool::blocking::Pool::new(manager)?;
    /// # Ok(()) }
    /// ```
    pub fn with_tls(mut config: Config, tls: T) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        PgManager {
            config,
            tls,
            reset: statements(DEFAULT_RESET),
            io_timeout: DEFAULT_IO_TIMEOUT,
            cache: CacheSettings::default(),
        }
    }

    /// Resets sessions between owners with `reset` (one round trip each)
    /// instead of [`DEFAULT_RESET`] — e.g. to keep prepared statements:
    ///
    /// ```
    /// use pinpool::postgres::PgManager;
    /// let manager = PgManager::from_url("postgresql://app@127.0.0.1/app")?
    ///     .reset_with(["ROLLBACK", "RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()"]);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn reset_with<S: Into<String>>(mut self, reset: impl IntoIterator<Item = S>) -> Self {
        self.reset = statements(reset);
        self
    }

    /// Bounds validation by `timeout` (default [`DEFAULT_IO_TIMEOUT`]):
    /// a half-open socket fails it and is closed instead of holding the
    /// checkout. (`postgres::Client` bounds no other statement, the
    /// reset's included.)
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Keeps at most `capacity` statements in each session's
    /// [`prepare_cached`](BlockingPgClient::prepare_cached) cache (default
    /// [`DEFAULT_STATEMENT_CACHE_CAPACITY`](super::DEFAULT_STATEMENT_CACHE_CAPACITY)),
    /// the one used longest ago closed to make room; 0 keeps none.
    ///
    /// ```
    /// use pinpool::postgres::PgManager;
    /// let manager = PgManager::from_url("postgresql://app@127.0.0.1/app")?
    ///     .statement_cache_capacity(500);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache.capacity = capacity;
        self
    }

    /// Keeps each session's [`prepare_cached`](BlockingPgClient::prepare_cached)
    /// statements across the reset between owners (by default the reset
    /// closes them, as `DISCARD ALL` deallocates them): for a
    /// [`reset_with`](Self::reset_with) that leaves prepared statements
    /// in place, so that the next owner finds them prepared. With a reset
    /// that does deallocate them (`DISCARD ALL`, `DEALLOCATE`), the next
    /// owner's cached statements fail with `prepared statement "s0" does
    /// not exist`. (A statement does not carry its preparer's
    /// `search_path`: since PostgreSQL 9.3 it is parsed again under
    /// another.)
    ///
    /// ```
    /// use pinpool::postgres::PgManager;
    /// let manager = PgManager::from_url("postgresql://app@127.0.0.1/app")?
    ///     .reset_with(["ROLLBACK", "RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()"])
    ///     .keep_cached_statements_on_reset(true);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn keep_cached_statements_on_reset(mut self, keep: bool) -> Self {
        self.cache.kept_on_reset = keep;
        self
    }

    /// The connection config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Has every session this manager (or a clone of it) opened forget
    /// the statements [`BlockingPgClient::prepare_cached`] kept, each at
    /// its next `prepare_cached`, checked out now or later: after a
    /// migration that changed what a cached query returns (see
    /// [`is_stale_statement`](super::is_stale_statement)).
    ///
    /// ```no_run
    /// # fn run(pool: pinpool::blocking::Pool<pinpool::postgres::PgManager>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// pool.get()?.batch_execute("ALTER TABLE items ADD COLUMN price int")?;
    /// pool.manager().forget_cached_statements();
    /// # Ok(()) }
    /// ```
    pub fn forget_cached_statements(&self) {
        self.cache.forgets.all();
    }
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config's Debug leaves the password out.
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .field("tls", &std::any::type_name::<T>())
            .field("reset", &self.reset)
            .field("io_timeout", &self.io_timeout)
            .field("statement_cache_capacity", &self.cache.capacity)
            .field("keep_cached_statements_on_reset", &self.cache.kept_on_reset)
            .finish()
    }
}

impl<T: MakeTls> crate::blocking::Manager for PgManager<T> {
    type Connection = BlockingPgClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<BlockingPgClient, postgres::Error> {
        Ok(BlockingPgClient {
            client: self.config.connect(self.tls.clone())?,
            statements: self.cache.cache(),
        })
    }

    /// The config's connect timeout for each host: the driver bounds the
    /// TCP connect alone by it, not the startup handshake.
    fn connect_timeout(&self) -> Option<Duration> {
        let hosts = self.config.get_hosts().len();
        super::whole_connect_timeout(self.config.get_connect_timeout(), hosts)
    }

    /// `host:port/database`.
    fn pool_name(&self) -> Option<String> {
        let config = &self.config;
        let (hosts, ports) = (config.get_hosts(), config.get_ports());
        super::pool_name(hosts, ports, config.get_dbname(), config.get_user())
    }

    fn validate(&self, conn: &mut BlockingPgClient) -> Result<(), postgres::Error> {
        conn.client.is_valid(self.io_timeout)
    }

    fn has_broken(&self, conn: &mut BlockingPgClient) -> bool {
        conn.client.is_closed()
    }

    /// The cancel runs on a `pinpool-cancel` thread of its own: it opens
    /// a connection to the server, which with the server's host down
    /// takes up to the connect timeout, and `clear_interrupting()` sends
    /// one for each checked-out session (the async manager spawns a task).
    fn interrupt_handle(&self, conn: &BlockingPgClient) -> Option<InterruptHandle> {
        let (token, tls) = (conn.client.cancel_token(), self.tls.clone());
        Some(InterruptHandle::new(move || {
            let (token, tls) = (token.clone(), tls.clone());
            crate::sync::spawn_or_run("pinpool-cancel", move || {
                if let Err(error) = token.cancel_query(tls) {
                    tracing::debug!(%error, "cancelling a session's query failed");
                }
            });
        }))
    }

    /// A bounded round trip first: the statements have no timeout in the
    /// `postgres` crate, and over a link gone silent (a hung server, a
    /// partition that still acknowledges) they would hold the thread that
    /// let the session go for as long as its socket lasts. This fails
    /// the reset within `io_timeout` instead, and the session is closed.
    fn reset(&self, conn: &mut BlockingPgClient) -> Result<(), postgres::Error> {
        let BlockingPgClient { client, statements } = conn;
        client.is_valid(self.io_timeout)?;
        // A reset that fails closes the session anyway.
        self.cache.before_reset(statements);
        for statement in &self.reset {
            client.batch_execute(statement)?;
        }
        // Its `LISTEN`s are gone; what already arrived was its owner's.
        let mut notifications = client.notifications();
        let mut pending = notifications.iter();
        while let Ok(Some(_)) = pending.next() {}
        Ok(())
    }
}
