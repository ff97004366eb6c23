//! What a synchronous driver implements to plug its connections into a pool.

/// Opens, validates and inspects connections for a [`Pool`](super::Pool).
///
/// ```
/// use std::net::TcpStream;
///
/// struct Tcp(&'static str);
///
/// impl pinpool::blocking::Manager for Tcp {
///     type Connection = TcpStream;
///     type Error = std::io::Error;
///
///     fn connect(&self) -> Result<TcpStream, std::io::Error> {
///         TcpStream::connect(self.0)
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The connection type (a socket, a client session…).
    type Connection: Send + 'static;
    /// The manager's error, carried inside [`Error::Connect`](crate::Error::Connect).
    ///
    /// A real `std::error::Error`, not merely `Debug` (as bb8 allows), so
    /// that every `pinpool::Error<Self::Error>` is one too: its `source()`
    /// chain reaches the driver's error, and `?` turns it into an
    /// `anyhow::Error` or a `Box<dyn Error>`. A manager built on `anyhow`
    /// (whose error is not a `std::error::Error`) wraps it:
    /// `std::io::Error::other(error)`.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Called on a pool-owned thread, outside any
    /// pool lock; it should bound its own time (a connect timeout), or
    /// say in [`connect_timeout`](Self::connect_timeout) how long the pool
    /// should give it.
    fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// How long a connect may run before the pool gives it up, where the
    /// builder sets no [`connect_timeout`](crate::Builder::connect_timeout):
    /// for a manager whose driver cannot bound its whole connect. The
    /// PostgreSQL managers return their config's connect timeout, which
    /// the driver applies to the TCP connect alone: a server that takes
    /// the connection and never answers would hold the startup handshake,
    /// and the pool's connect slot, for ever. Given up, the checkout that
    /// asked fails with [`Error::ConnectTimeout`](crate::Error::ConnectTimeout)
    /// and the slot is free again (a blocking connect's thread runs on
    /// until the driver returns; its connection is then closed). Default:
    /// `None`, the connect bounds itself.
    fn connect_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// Checks that a connection still works (e.g. a `ping`). Called before
    /// each checkout when [`Builder::validate_on_checkout`](super::Builder::validate_on_checkout)
    /// is on; a connection that fails is closed and replaced.
    fn validate(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// Whether [`validate`](Self::validate) must run before every checkout
    /// whatever [`Builder::validate_on_checkout`](super::Builder::validate_on_checkout)
    /// says: a manager whose validation is a check the user asked for
    /// (a [`before_acquire`](crate::Hooks::before_acquire) hook). Default:
    /// `false`, the builder decides.
    fn validates_every_checkout(&self) -> bool {
        false
    }

    /// Resets the session state an owner may have left on `conn` —
    /// `DISCARD ALL`, a rollback, dropping temporary tables — before the
    /// connection passes to another owner: when the core asks (see
    /// [`Reset`](crate::core::Reset)), outside any pool lock, on the thread
    /// that let the connection go (its checkin, `unpin`, a session's
    /// drop) or, when that thread is exiting, on a `pinpool-reset` thread. An error or a panic closes the connection instead
    /// of handing its state on. Default: nothing to reset.
    ///
    /// ```
    /// struct Sessions;
    /// impl pinpool::blocking::Manager for Sessions {
    ///     type Connection = Vec<String>; // stands for a session's `SET`s
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> std::io::Result<Vec<String>> {
    ///         Ok(Vec::new())
    ///     }
    ///     fn reset(&self, session: &mut Vec<String>) -> std::io::Result<()> {
    ///         session.clear();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn reset(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// A cheap, local check made on every checkin (including one caused by
    /// a panic in the holder): `true` closes the connection and moves its
    /// pins to a replacement. Must not block. A broken connection (this
    /// check's, or one whose [`reset`](Self::reset) failed) is dropped on
    /// a `pinpool-close` thread of its own, since a driver's `Drop` may
    /// wait on a peer that no longer answers.
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// A way to break off `conn`'s operation from another thread, asked
    /// for once as it opens; `clear_interrupting()` uses it on checked-out
    /// connections. `None` (the default): they close only when returned.
    fn interrupt_handle(&self, conn: &Self::Connection) -> Option<crate::InterruptHandle> {
        let _ = conn;
        None
    }

    /// What the pool is called when the builder gives it no
    /// [`name`](crate::Builder::name): the server it connects to, say
    /// `host:port/database` (its metrics carry it). `None`, the default:
    /// `pinpool-<n>`.
    fn pool_name(&self) -> Option<String> {
        None
    }
}

/// A closure that opens a connection is a manager (no validation, never
/// broken): handy for tests, benchmarks and connections with no health
/// to check.
///
/// ```
/// use pinpool::blocking::Pool;
///
/// let pool = Pool::new(|| Ok::<_, std::io::Error>(Vec::<u8>::new()))?;
/// pool.get()?.push(1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<F, C, E> Manager for F
where
    F: Fn() -> Result<C, E> + Send + Sync + 'static,
    C: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    type Connection = C;
    type Error = E;

    fn connect(&self) -> Result<C, E> {
        self()
    }
}
