//! What an async driver implements to plug its connections into a pool.

use std::future::Future;

/// Opens, validates and inspects connections for a [`Pool`](super::Pool).
///
/// ```
/// use tokio::net::TcpStream;
///
/// struct Tcp(&'static str);
///
/// impl pinpool::tokio::Manager for Tcp {
///     type Connection = TcpStream;
///     type Error = std::io::Error;
///
///     async fn connect(&self) -> Result<TcpStream, std::io::Error> {
///         TcpStream::connect(self.0).await
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The connection type (a socket, a client session…).
    type Connection: Send + 'static;
    /// The manager's error, carried inside [`Error::Connect`](crate::Error::Connect).
    /// (Why a `std::error::Error`: see the
    /// [blocking manager](crate::blocking::Manager::Error).)
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Runs in a task of its own, outside any pool
    /// lock; it should bound its own time (a connect timeout), or say in
    /// [`connect_timeout`](Self::connect_timeout) how long the pool should
    /// give it.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// As the blocking manager's
    /// [`connect_timeout`](crate::blocking::Manager::connect_timeout): how
    /// long a connect may run before the pool gives it up (dropping its
    /// future), where the builder sets none.
    fn connect_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// Checks that a connection still works (e.g. a `ping`). Awaited before
    /// each checkout when [`Builder::validate_on_checkout`](crate::Builder::validate_on_checkout)
    /// is on, within the checkout timeout; a connection that fails, panics
    /// or runs out of time is closed and replaced.
    fn validate(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// As the blocking manager's
    /// [`validates_every_checkout`](crate::blocking::Manager::validates_every_checkout).
    fn validates_every_checkout(&self) -> bool {
        false
    }

    /// As the blocking manager's
    /// [`reset`](crate::blocking::Manager::reset): resets the session state
    /// an owner may have left on `conn` before another owner gets it, in a
    /// task of its own outside any pool lock; an error, a panic or the
    /// task's cancellation closes the connection. Default: nothing.
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// A cheap, local check made on every checkin (including one caused by
    /// a panic or a cancelled task in the holder): `true` closes the
    /// connection and moves its pins to a replacement. Must not block.
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// As the blocking manager's
    /// [`interrupt_handle`](crate::blocking::Manager::interrupt_handle).
    fn interrupt_handle(&self, conn: &Self::Connection) -> Option<crate::InterruptHandle> {
        let _ = conn;
        None
    }

    /// As the blocking manager's
    /// [`pool_name`](crate::blocking::Manager::pool_name).
    fn pool_name(&self) -> Option<String> {
        None
    }
}

/// A closure returning a future that opens a connection is a manager (no
/// validation, never broken): handy for tests, benchmarks and connections
/// with no health to check.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pinpool::tokio::Pool;
///
/// let pool = Pool::new(|| async { Ok::<_, std::io::Error>(Vec::<u8>::new()) })?;
/// pool.get().await?.push(1);
/// # Ok(())
/// # }
/// ```
impl<F, Fut, C, E> Manager for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, E>> + Send,
    C: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    type Connection = C;
    type Error = E;

    fn connect(&self) -> impl Future<Output = Result<C, E>> + Send {
        self()
    }
}
