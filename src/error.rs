//! The error a pool's checkout returns.

use std::time::Duration;

use thiserror::Error;

use crate::core::PoolState;

/// Why a checkout failed. `E` is the connection manager's own error type.
///
/// ```
/// use pinpool::Error;
/// let error: Error<std::io::Error> = Error::Closed;
/// assert_eq!(error.to_string(), "the pool is closed");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// No connection became available before the checkout timeout.
    #[error("timed out after {waited:?} waiting for a connection ({state})")]
    Timeout {
        /// How long the checkout waited.
        waited: Duration,
        /// The pool at the moment the checkout gave up.
        state: Box<PoolState>,
    },
    /// Opening the connection this checkout asked for failed.
    #[error("could not open a connection: {0}")]
    Connect(#[source] E),
    /// The manager panicked while opening the connection this checkout
    /// asked for (the panic was caught; the pool is intact).
    #[error("the connection manager panicked while opening a connection")]
    ConnectPanicked,
    /// The connect this checkout asked for was abandoned before it ended:
    /// the task running it was dropped (its runtime shut down), or no Tokio
    /// runtime was there to run it.
    #[error("the connect was abandoned: its runtime shut down or none was running")]
    ConnectAborted,
    /// The connect this checkout asked for did not finish within the
    /// pool's [`connect_timeout`](crate::Builder::connect_timeout); the
    /// connection, should it still arrive, is closed.
    #[error("the connect did not finish within the connect timeout")]
    ConnectTimeout,
    /// The pool was closed before or while the checkout waited.
    #[error("the pool is closed")]
    Closed,
    /// Under strict pinning this thread (or task) already holds the
    /// connection it is pinned to; waiting for it would deadlock.
    #[error("this owner already holds its pinned connection: drop it before asking again")]
    AlreadyHeld,
    /// The pool is paused: it was cleared (or built paused) and not made
    /// ready since. Retry once the driver calls `ready()` (CMAP's
    /// `PoolClearedError`).
    #[error("the pool was cleared and is paused until ready() is called")]
    Paused,
    /// The owner this checkout was made for went away while it waited: an
    /// async `get()` future made inside [`Pool::pinned`](crate::tokio::Pool::pinned)
    /// outlived that scope (boxed and moved out, or left over from a
    /// `select!`). Its pin is gone with the scope; ask again from a live
    /// scope, or outside any for an unpinned checkout.
    #[error("the pinned scope this checkout was made in has ended")]
    OwnerGone,
    /// `try_get()` found no connection it could take without waiting. The
    /// pool asked for one as a waiting `get()` would (a connection opens
    /// when there is room), so a later try may succeed.
    #[error("no connection is free without waiting ({state})")]
    WouldWait {
        /// The pool at the moment of the refusal.
        state: Box<PoolState>,
    },
}

impl<E> Error<E> {
    /// Whether the same checkout may succeed if tried again later: a
    /// timeout, a refused `try_get()`, a failed or abandoned connect, or a
    /// paused pool. A closed pool and a strict owner asking twice are not.
    ///
    /// ```
    /// use pinpool::Error;
    /// assert!(Error::<std::io::Error>::Paused.is_retryable());
    /// assert!(!Error::<std::io::Error>::Closed.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. }
            | Error::Connect(_)
            | Error::ConnectPanicked
            | Error::ConnectAborted
            | Error::ConnectTimeout
            | Error::Paused
            | Error::WouldWait { .. } => true,
            Error::Closed | Error::AlreadyHeld | Error::OwnerGone => false,
        }
    }
}
