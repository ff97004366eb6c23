//! Connection hooks for any manager: what r2d2 and bb8 call
//! `CustomizeConnection` and sqlx `after_connect` / `before_acquire` /
//! `after_release`, as a wrapper around a manager — the adapters', a
//! closure, your own — rather than a second customization point beside it.
//!
//! Each hook runs where the [`Manager`](crate::blocking::Manager) method of
//! the same moment runs, after the wrapped manager's own:
//!
//! | hook | runs | on failure |
//! |---|---|---|
//! | `after_connect` | as a connection opens (in `connect`), and again after each reset between owners (in `reset`) | the connect fails ([`Error::Connect`](crate::Error::Connect)); the reset fails, closing the connection |
//! | `before_acquire` | before every checkout (in `validate`; turns validation on) | closed and replaced |
//! | `after_release` | at every checkin (in `has_broken`) | closed and replaced |
//!
//! The hooks keep to the reset between owners (see
//! [`Reset`](crate::core::Reset)). A reset such as PostgreSQL's `DISCARD
//! ALL` also undoes what `after_connect` set up, so `after_connect` runs
//! again after it: every owner finds the session the hook makes, none the
//! state the last owner left. And session state is not for
//! `after_release`: a pinned owner checks the same connection in and out
//! many times, and cleaning it at each checkin would wipe the state
//! pinning keeps; `after_release` is a cheap, local check that must not
//! block (a flag the connection set, a size it grew to).
//!
//! ```
//! use pinpool::Hooks;
//! use pinpool::blocking::Pool;
//!
//! let hooked = Hooks::new()
//!     .after_connect(|log: &mut Vec<&str>| {
//!         log.push("SET TIME ZONE 'UTC'");
//!         Ok(())
//!     })
//!     .after_release(|log: &mut Vec<&str>| log.len() < 100) // keep it unless it grew
//!     .wrap(|| Ok::<_, std::io::Error>(Vec::new()));
//! let pool = Pool::new(hooked)?;
//! assert_eq!(*pool.get()?, ["SET TIME ZONE 'UTC'"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

/// A hook that may refuse a connection with the manager's error.
type Check<C, E> = Box<dyn Fn(&mut C) -> Result<(), E> + Send + Sync>;

/// A hook that says whether to keep a connection.
type Keep<C> = Box<dyn Fn(&mut C) -> bool + Send + Sync>;

/// Connection hooks, to [`wrap`](Self::wrap) around a manager whose
/// connections are `C` and errors `E`. See the [module docs](self).
pub struct Hooks<C, E> {
    after_connect: Option<Check<C, E>>,
    before_acquire: Option<Check<C, E>>,
    after_release: Option<Keep<C>>,
}

impl<C, E> Hooks<C, E> {
    /// No hooks yet.
    pub fn new() -> Self {
        Hooks {
            after_connect: None,
            before_acquire: None,
            after_release: None,
        }
    }

    /// Runs `hook` on each new connection before the pool counts it open,
    /// and again after each reset between owners: session settings every
    /// owner should find (a time zone, a role, a search path). An error
    /// fails the connect, or the reset (the connection closes).
    pub fn after_connect(
        mut self,
        hook: impl Fn(&mut C) -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        self.after_connect = Some(Box::new(hook));
        self
    }

    /// Runs `hook` before every checkout, pinned ones included, and turns
    /// on validation on checkout for the pool: an error closes the
    /// connection, and the checkout takes a replacement.
    ///
    /// ```
    /// use pinpool::Hooks;
    /// use pinpool::blocking::Pool;
    ///
    /// let hooked = Hooks::new()
    ///     .before_acquire(|uses: &mut u32| {
    ///         *uses += 1;
    ///         if *uses > 2 { Err(std::io::Error::other("worn out")) } else { Ok(()) }
    ///     })
    ///     .wrap(|| Ok::<_, std::io::Error>(0u32));
    /// let pool = Pool::new(hooked)?;
    /// assert_eq!(*pool.get()?, 1);
    /// assert_eq!(*pool.get()?, 2);
    /// assert_eq!(*pool.get()?, 1, "the third checkout got a replacement");
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn before_acquire(
        mut self,
        hook: impl Fn(&mut C) -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        self.before_acquire = Some(Box::new(hook));
        self
    }

    /// Runs `hook` at every checkin: `false` closes the connection (and
    /// moves its pins to a replacement). Called where
    /// [`has_broken`](crate::blocking::Manager::has_broken) is, on the
    /// returning thread: it must not block.
    ///
    /// ```
    /// use pinpool::Hooks;
    /// use pinpool::blocking::Pool;
    ///
    /// let hooked = Hooks::new()
    ///     .after_release(|buffer: &mut Vec<u8>| buffer.capacity() <= 1024)
    ///     .wrap(|| Ok::<_, std::io::Error>(Vec::new()));
    /// let pool = Pool::new(hooked)?;
    /// pool.get()?.reserve(1 << 20); // grew too big to keep
    /// assert_eq!(pool.state().counters.closed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn after_release(mut self, hook: impl Fn(&mut C) -> bool + Send + Sync + 'static) -> Self {
        self.after_release = Some(Box::new(hook));
        self
    }

    /// The manager with these hooks: pass it to a pool's `build` or `new`.
    pub fn wrap<M>(self, manager: M) -> Hooked<M, C, E> {
        Hooked {
            manager,
            hooks: self,
        }
    }

    fn connected(&self, conn: &mut C) -> Result<(), E> {
        self.after_connect
            .as_ref()
            .map_or(Ok(()), |hook| hook(conn))
    }

    fn acquired(&self, conn: &mut C) -> Result<(), E> {
        self.before_acquire
            .as_ref()
            .map_or(Ok(()), |hook| hook(conn))
    }

    fn keeps(&self, conn: &mut C) -> bool {
        self.after_release.as_ref().is_none_or(|hook| hook(conn))
    }
}

impl<C, E> Default for Hooks<C, E> {
    fn default() -> Self {
        Hooks::new()
    }
}

impl<C, E> fmt::Debug for Hooks<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("after_connect", &self.after_connect.is_some())
            .field("before_acquire", &self.before_acquire.is_some())
            .field("after_release", &self.after_release.is_some())
            .finish()
    }
}

/// A manager `M` with [`Hooks`]: a manager for the pool `M` is one for
/// (blocking or async), running each hook after `M`'s method of the same
/// moment.
pub struct Hooked<M, C, E> {
    manager: M,
    hooks: Hooks<C, E>,
}

impl<M, C, E> Hooked<M, C, E> {
    /// The manager the hooks wrap (a pool's `manager()` returns the
    /// `Hooked`): for what the manager offers beside the pool's calls,
    /// such as `PgManager::forget_cached_statements`.
    pub fn manager(&self) -> &M {
        &self.manager
    }
}

impl<M: fmt::Debug, C, E> fmt::Debug for Hooked<M, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked")
            .field("manager", &self.manager)
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl<M: crate::blocking::Manager> crate::blocking::Manager for Hooked<M, M::Connection, M::Error> {
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = self.manager.connect()?;
        self.hooks.connected(&mut conn)?;
        Ok(conn)
    }

    fn validate(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.validate(conn)?;
        self.hooks.acquired(conn)
    }

    fn validates_every_checkout(&self) -> bool {
        self.hooks.before_acquire.is_some() || self.manager.validates_every_checkout()
    }

    fn reset(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.reset(conn)?;
        self.hooks.connected(conn)
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.manager.has_broken(conn) || !self.hooks.keeps(conn)
    }

    fn interrupt_handle(&self, conn: &M::Connection) -> Option<crate::InterruptHandle> {
        self.manager.interrupt_handle(conn)
    }

    fn pool_name(&self) -> Option<String> {
        self.manager.pool_name()
    }

    fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.manager.connect_timeout()
    }
}

#[cfg(feature = "tokio")]
impl<M: crate::tokio::Manager> crate::tokio::Manager for Hooked<M, M::Connection, M::Error> {
    type Connection = M::Connection;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = self.manager.connect().await?;
        self.hooks.connected(&mut conn)?;
        Ok(conn)
    }

    async fn validate(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.validate(conn).await?;
        self.hooks.acquired(conn)
    }

    fn validates_every_checkout(&self) -> bool {
        self.hooks.before_acquire.is_some() || self.manager.validates_every_checkout()
    }

    async fn reset(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.reset(conn).await?;
        self.hooks.connected(conn)
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.manager.has_broken(conn) || !self.hooks.keeps(conn)
    }

    fn interrupt_handle(&self, conn: &M::Connection) -> Option<crate::InterruptHandle> {
        self.manager.interrupt_handle(conn)
    }

    fn pool_name(&self) -> Option<String> {
        self.manager.pool_name()
    }

    fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.manager.connect_timeout()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::Hooks;
    use crate::InterruptHandle;

    /// A manager with an interrupt handle (counting its calls) and a
    /// connect timeout of its own, for both pools.
    struct Interruptible(Arc<AtomicUsize>);

    impl crate::blocking::Manager for Interruptible {
        type Connection = ();
        type Error = std::io::Error;
        fn connect(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn interrupt_handle(&self, (): &()) -> Option<InterruptHandle> {
            let calls = Arc::clone(&self.0);
            Some(InterruptHandle::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
            }))
        }
        fn connect_timeout(&self) -> Option<Duration> {
            Some(Duration::from_secs(3))
        }
    }

    #[cfg(feature = "tokio")]
    impl crate::tokio::Manager for Interruptible {
        type Connection = ();
        type Error = std::io::Error;
        async fn connect(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn interrupt_handle(&self, conn: &()) -> Option<InterruptHandle> {
            crate::blocking::Manager::interrupt_handle(self, conn)
        }
        fn connect_timeout(&self) -> Option<Duration> {
            crate::blocking::Manager::connect_timeout(self)
        }
    }

    /// Hooks keep what the manager they wrap says about interrupting a
    /// connection and bounding a connect, for both pools: a hooked
    /// PostgreSQL manager still cancels and still gives up a connect to a
    /// server that never answers.
    #[test]
    fn hooks_keep_the_managers_interrupt_handle_and_connect_timeout() {
        let calls = Arc::new(AtomicUsize::new(0));
        let hooked = Hooks::new().wrap(Interruptible(Arc::clone(&calls)));
        let blocking = <_ as crate::blocking::Manager>::interrupt_handle(&hooked, &());
        blocking.expect("the manager's handle").interrupt();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let timeout = <_ as crate::blocking::Manager>::connect_timeout(&hooked);
        assert_eq!(timeout, Some(Duration::from_secs(3)));
        #[cfg(feature = "tokio")]
        {
            let handle = <_ as crate::tokio::Manager>::interrupt_handle(&hooked, &());
            handle.expect("the manager's handle").interrupt();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
            let timeout = <_ as crate::tokio::Manager>::connect_timeout(&hooked);
            assert_eq!(timeout, Some(Duration::from_secs(3)));
        }
    }
}
