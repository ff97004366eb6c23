//! The async pool's PostgreSQL manager, over `tokio-postgres`, keeping the
//! notifications a session `LISTEN`s for.

use std::fmt;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification, Statement};

use super::cache::{CacheSettings, StatementCache};
use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_RESET, MakeTls, statements};
use crate::InterruptHandle;

/// A session of the async pool: a `tokio_postgres::Client` (it derefs to
/// one), the notifications its connection received and the statements it
/// prepared through [`PgClient::prepare_cached`]. Unlike a pool that
/// spawns `connection.await` and so drops them, a session that `LISTEN`s
/// gets its `NOTIFY`s through [`PgClient::notifications`].
pub struct PgClient {
    client: Client,
    notifications: mpsc::UnboundedReceiver<Notification>,
    /// What [`PgClient::prepare_cached`] prepared, by query; emptied by
    /// the reset between owners, which deallocates them on the server.
    statements: StatementCache<Statement, Type>,
    /// Set when the connection task ended (the socket closed or failed),
    /// or was aborted.
    ended: Arc<AtomicBool>,
    /// Ends the connection task, and with it the socket.
    connection: AbortHandle,
}

impl PgClient {
    /// The notifications received on this session, in order. They stay
    /// with the session across its owner's checkouts; the reset between
    /// owners ends its `LISTEN`s and drops what is left.
    pub fn notifications(&mut self) -> &mut mpsc::UnboundedReceiver<Notification> {
        &mut self.notifications
    }

    /// `query` prepared on this session: the first time, a round trip to
    /// prepare it; later, whoever holds the session, the same statement
    /// again, as deadpool-postgres' `prepare_cached` does. The cache
    /// belongs to the session, so in a pool without pins every task that
    /// checks the connection out finds what earlier ones prepared, where
    /// a statement a task keeps itself is prepared again on each
    /// connection it gets. The reset between owners empties it and closes
    /// its statements, since `DISCARD ALL` (the default) deallocates them
    /// on the server, unless the manager was told its
    /// [custom reset](AsyncPgManager::reset_with) keeps them
    /// ([`keep_cached_statements_on_reset`](AsyncPgManager::keep_cached_statements_on_reset)).
    ///
    /// ```no_run
    /// # async fn run(pool: pinpool::tokio::Pool<pinpool::postgres::AsyncPgManager>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let mut conn = pool.get().await?;
    /// let statement = conn.prepare_cached("SELECT $1::int").await?;
    /// let row = conn.query_one(&statement, &[&7]).await?;
    /// assert_eq!(row.get::<_, i32>(0), 7);
    /// # Ok(()) }
    /// ```
    pub async fn prepare_cached(
        &mut self,
        query: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        self.prepare_typed_cached(query, &[]).await
    }

    /// [`prepare_cached`](Self::prepare_cached) with the parameters'
    /// types given, as `tokio_postgres::Client::prepare_typed`: kept by
    /// query and types together.
    pub async fn prepare_typed_cached(
        &mut self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(query, types) {
            return Ok(statement);
        }
        let statement = self.client.prepare_typed(query, types).await?;
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

    /// Closes the session's socket now: every query in flight or to come
    /// fails at once with the client's "connection closed" error, and the
    /// pool closes the session instead of handing it on. For a round trip
    /// given up on (a timeout): its reply may never come, and on a link
    /// that lost it, no later reply would either.
    pub fn abort(&self) {
        // Marked first: the task ends, and the client sees its socket
        // closed, only when the runtime next gets to it, and a session let
        // go before then must not go back to the pool as healthy.
        self.ended.store(true, Ordering::Release);
        self.connection.abort();
    }
}

impl Deref for PgClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl fmt::Debug for PgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClient")
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

/// Opens [`PgClient`]s for an [async pool](crate::tokio::Pool): see the
/// [module documentation](super). Each connection's I/O runs in a task of
/// its own on the pool's runtime; its end marks the client broken.
#[derive(Clone)]
pub struct AsyncPgManager<T = NoTls> {
    config: Config,
    tls: T,
    reset: Vec<String>,
    io_timeout: Duration,
    cache: CacheSettings,
}

impl AsyncPgManager {
    /// A manager connecting with `config`, without TLS
    /// ([`with_tls`](Self::with_tls) otherwise).
    pub fn new(config: Config) -> Self {
        AsyncPgManager::with_tls(config, NoTls)
    }

    /// A manager for a connection string (see
    /// [`PgManager::from_url`](super::PgManager::from_url)).
    pub fn from_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(AsyncPgManager::new(url.parse()?))
    }
}

impl<T: MakeTls> AsyncPgManager<T> {
    /// A manager connecting with `config` over TLS made by `tls` (see
    /// [`PgManager::with_tls`](super::PgManager::with_tls)).
    pub fn with_tls(mut config: Config, tls: T) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        AsyncPgManager {
            config,
            tls,
            reset: statements(DEFAULT_RESET),
            io_timeout: DEFAULT_IO_TIMEOUT,
            cache: CacheSettings::default(),
        }
    }

    /// Resets sessions between owners with `reset` (one round trip each)
    /// instead of [`DEFAULT_RESET`] (see
    /// [`PgManager::reset_with`](super::PgManager::reset_with)).
    pub fn reset_with<S: Into<String>>(mut self, reset: impl IntoIterator<Item = S>) -> Self {
        self.reset = statements(reset);
        self
    }

    /// Bounds each of the manager's own round trips — a validation, each
    /// statement of a reset — by `timeout` (default [`DEFAULT_IO_TIMEOUT`]):
    /// past it the session is [aborted](PgClient::abort) and closed, so a
    /// half-open socket (a partition, a dead host) cannot hold a checkout
    /// or a reset for ever.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Keeps at most `capacity` statements in each session's
    /// [`prepare_cached`](PgClient::prepare_cached) cache (see
    /// [`PgManager::statement_cache_capacity`](super::PgManager::statement_cache_capacity)).
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache.capacity = capacity;
        self
    }

    /// Keeps each session's [`prepare_cached`](PgClient::prepare_cached)
    /// statements across the reset between owners (see
    /// [`PgManager::keep_cached_statements_on_reset`](super::PgManager::keep_cached_statements_on_reset)).
    pub fn keep_cached_statements_on_reset(mut self, keep: bool) -> Self {
        self.cache.kept_on_reset = keep;
        self
    }

    /// The connection config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Has every session this manager (or a clone of it) opened forget
    /// the statements [`PgClient::prepare_cached`] kept (see
    /// [`PgManager::forget_cached_statements`](super::PgManager::forget_cached_statements)).
    pub fn forget_cached_statements(&self) {
        self.cache.forgets.all();
    }

    /// `round_trip` on `conn`, bounded by the I/O timeout: past it the
    /// session is aborted and the error is the client's own "connection
    /// closed" (so it stays a `tokio_postgres::Error`).
    async fn bounded<R>(
        &self,
        conn: &mut PgClient,
        round_trip: impl AsyncFnOnce(&Client) -> Result<R, tokio_postgres::Error>,
    ) -> Result<(), tokio_postgres::Error> {
        match tokio::time::timeout(self.io_timeout, round_trip(&conn.client)).await {
            Ok(result) => result.map(drop),
            Err(_elapsed) => {
                tracing::debug!(timeout = ?self.io_timeout, "a PostgreSQL round trip timed out: aborting the session");
                conn.abort();
                // Answered at once, with an error, now that its
                // connection is gone.
                conn.client.simple_query("").await.map(drop)
            }
        }
    }
}

impl<T> fmt::Debug for AsyncPgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPgManager")
            .field("config", &self.config)
            .field("tls", &std::any::type_name::<T>())
            .field("reset", &self.reset)
            .field("io_timeout", &self.io_timeout)
            .field("statement_cache_capacity", &self.cache.capacity)
            .field("keep_cached_statements_on_reset", &self.cache.kept_on_reset)
            .finish()
    }
}

impl<T: MakeTls> crate::tokio::Manager for AsyncPgManager<T> {
    type Connection = PgClient;
    type Error = tokio_postgres::Error;

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

    async fn connect(&self) -> Result<PgClient, tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
        let (sender, notifications) = mpsc::unbounded_channel();
        let ended = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&ended);
        let task = tokio::spawn(async move {
            // Drives the connection, keeping what `connection.await` would
            // drop: the notifications.
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let _ = sender.send(notification);
                    }
                    Ok(AsyncMessage::Notice(notice)) => {
                        tracing::debug!(%notice, "PostgreSQL notice");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "PostgreSQL connection ended");
                        break;
                    }
                }
            }
            done.store(true, Ordering::Release);
        });
        Ok(PgClient {
            client,
            notifications,
            statements: self.cache.cache(),
            ended,
            connection: task.abort_handle(),
        })
    }

    async fn validate(&self, conn: &mut PgClient) -> Result<(), tokio_postgres::Error> {
        self.bounded(conn, async |client| client.simple_query("").await)
            .await
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.is_closed() || conn.ended.load(Ordering::Acquire)
    }

    fn interrupt_handle(&self, conn: &PgClient) -> Option<InterruptHandle> {
        let (token, tls) = (conn.client.cancel_token(), self.tls.clone());
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(InterruptHandle::new(move || {
            let (token, tls) = (token.clone(), tls.clone());
            runtime.spawn(async move {
                if let Err(error) = token.cancel_query(tls).await {
                    tracing::debug!(%error, "cancelling a session's query failed");
                }
            });
        }))
    }

    async fn reset(&self, conn: &mut PgClient) -> Result<(), tokio_postgres::Error> {
        self.cache.before_reset(&mut conn.statements);
        for statement in &self.reset {
            self.bounded(conn, async |client| client.batch_execute(statement).await)
                .await?;
        }
        // Its `LISTEN`s are gone; what already arrived was its owner's.
        while conn.notifications.try_recv().is_ok() {}
        Ok(())
    }
}
