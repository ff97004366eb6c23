//! Configuring a pool: one builder for both pools, typed by the pool it
//! builds, so the options and their defaults are written once.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::{Config, ConfigError, Core, Event, Overflow, Pinning, Reset, WakePolicy};
use crate::driver::Options;
use crate::driver::events::Handler;

/// Builds a pool `P` ([`blocking::Pool`](crate::blocking::Pool) or
/// [`tokio::Pool`](crate::tokio::Pool)): every option of the
/// [core](crate::core::Config) plus the checkout timeout and validation on
/// checkout. Each pool's module adds `build`.
///
/// ```
/// use std::time::Duration;
/// use pinpool::blocking::Pool;
/// use pinpool::core::Pinning;
/// # fn noop() -> std::io::Result<()> { Ok(()) }
///
/// let pool = Pool::builder()
///     .max_size(4)
///     .pinning(Pinning::Strict)
///     .checkout_timeout(Duration::from_secs(5))
///     .build(noop)?;
/// assert_eq!(pool.state().total(), 0, "connections open on demand");
///
/// let invalid = Pool::builder().max_size(0).build(noop);
/// assert!(invalid.is_err());
/// # Ok::<(), pinpool::core::ConfigError>(())
/// ```
pub struct Builder<P> {
    config: Config,
    name: Option<String>,
    checkout_timeout: Duration,
    /// A checkout validates a connection idle this long or longer (zero:
    /// every one); `None`: no validation.
    validate_after_idle: Option<Duration>,
    maintenance_interval: Duration,
    event_handler: Option<Handler>,
    /// Whether [`Builder::max_lifetime_jitter`] was called: if not, each
    /// `max_lifetime` brings its default jitter.
    jitter_set: bool,
    /// Model checks only: see [`Builder::connects_on_threads`].
    #[cfg(pinpool_loom)]
    connects_on_threads: bool,
    /// The pool type, fixed by `Pool::builder` or by `build`'s argument.
    pool: PhantomData<fn() -> P>,
}

/// A pool a [`Builder`] builds ([`blocking::Pool`](crate::blocking::Pool)
/// or [`tokio::Pool`](crate::tokio::Pool)): what their builders start
/// with where the two differ. Sealed: only this crate's pools implement it.
///
/// ```
/// use pinpool::BuiltPool;
/// use pinpool::core::WakePolicy;
///
/// type Threads = pinpool::blocking::Pool<fn() -> std::io::Result<()>>;
/// type Tasks = pinpool::tokio::Pool<fn() -> std::future::Ready<std::io::Result<()>>>;
/// assert_eq!(Threads::DEFAULT_WAKE, WakePolicy::DEFAULT_EVENTUAL);
/// assert_eq!(Tasks::DEFAULT_WAKE, WakePolicy::Handoff);
/// ```
pub trait BuiltPool: sealed::Sealed {
    /// The wake policy the pool's builder starts with: threads
    /// [`WakePolicy::Eventual`] (a hand-off to a thread that is not
    /// running costs a context switch), tasks [`WakePolicy::Handoff`]
    /// (waking a task costs the same either way, and under `Eventual` a
    /// woken task often finds its connection re-taken and sleeps again).
    const DEFAULT_WAKE: WakePolicy;
}

pub(crate) mod sealed {
    /// Keeps [`BuiltPool`](super::BuiltPool) to this crate's pools.
    pub trait Sealed {}
}

impl<P: BuiltPool> Default for Builder<P> {
    fn default() -> Self {
        Builder {
            config: Config {
                wake: P::DEFAULT_WAKE,
                seed: random_seed(),
                ..Config::default()
            },
            name: None,
            checkout_timeout: Duration::from_secs(30),
            validate_after_idle: None,
            maintenance_interval: Duration::from_secs(1),
            event_handler: None,
            jitter_set: false,
            #[cfg(pinpool_loom)]
            connects_on_threads: false,
            pool: PhantomData,
        }
    }
}

impl<P> Clone for Builder<P> {
    fn clone(&self) -> Self {
        Builder {
            config: self.config,
            name: self.name.clone(),
            checkout_timeout: self.checkout_timeout,
            validate_after_idle: self.validate_after_idle,
            maintenance_interval: self.maintenance_interval,
            event_handler: self.event_handler.clone(),
            jitter_set: self.jitter_set,
            #[cfg(pinpool_loom)]
            connects_on_threads: self.connects_on_threads,
            pool: PhantomData,
        }
    }
}

impl<P> fmt::Debug for Builder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("validate_after_idle", &self.validate_after_idle)
            .field("maintenance_interval", &self.maintenance_interval)
            .field("event_handler", &self.event_handler.is_some())
            .finish()
    }
}

/// A seed of its own for each builder: std's hash keys, drawn from the
/// operating system once per thread and stepped for each `RandomState`,
/// so no two builders share one, in this process or another.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u64)
}

/// The lifetime jitter a `max_lifetime` brings unless one is set:
/// HikariCP's, 2.5 % of a lifetime of 10 s or more. A maximum lifetime is
/// kept either way (the jitter only shortens), and a shorter one is most
/// likely a test's, which expects the lifetime it wrote.
fn default_jitter(lifetime: Duration) -> Duration {
    if lifetime >= Duration::from_secs(10) {
        lifetime / 40
    } else {
        Duration::ZERO
    }
}

/// Pools get distinct ids for pin registrations.
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

impl<P> Builder<P> {
    /// The pool's name, which labels its [metrics](crate::metrics)
    /// (`db.client.connection.pool.name`). By default the manager's (the
    /// adapters': `host:port/database`), else `pinpool-<n>`.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().name("orders-db").build(noop)?;
    /// assert_eq!(pool.name(), "orders-db");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Most connections at once (default 10).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().max_size(1).build(noop)?;
    /// let held = pool.get()?;
    /// let refused = std::thread::scope(|s| s.spawn(|| pool.try_get().map(drop)).join().unwrap());
    /// assert!(refused.is_err(), "the only connection is taken");
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// Connections kept open even when idle (default 0).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().min_size(2).build(noop)?;
    /// assert_eq!(pool.state().total(), 2, "on their way before anyone asks");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn min_size(mut self, min_size: usize) -> Self {
        self.config.min_size = min_size;
        self
    }

    /// Most connections being opened at once (default 2).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().min_size(4).max_connecting(1).build(noop)?;
    /// assert!(pool.state().connecting <= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_connecting(mut self, max_connecting: usize) -> Self {
        self.config.max_connecting = max_connecting;
        self
    }

    /// How threads or tasks are bound to connections (default [`Pinning::Strict`]).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use pinpool::core::Pinning;
    /// let pool = Pool::builder().pinning(Pinning::Off).build(noop)?;
    /// drop(pool.get()?);
    /// assert_eq!(pool.state().pinned_owners, 0, "nobody is pinned");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pinning(mut self, pinning: Pinning) -> Self {
        self.config.pinning = pinning;
        self
    }

    /// How a new owner is bound once the pool is full (default
    /// [`Overflow::LeastLoaded`]).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use pinpool::core::Overflow;
    /// let builder = Pool::builder().max_size(2).overflow(Overflow::LeastLoaded);
    /// assert!(format!("{builder:?}").contains("overflow: LeastLoaded"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }

    /// What a checkin does for waiters. The blocking pool's default is
    /// [`WakePolicy::Eventual`] (16 bypasses, counted after holds of 10 µs
    /// or more, or 500 µs;
    /// [`WakePolicy::Handoff`] gives strict FIFO at the cost of a context
    /// switch per contended checkout); the async pool's is `Handoff` (see
    /// [`BuiltPool::DEFAULT_WAKE`]). `Broadcast` and `Signal` are for
    /// study and tests.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use pinpool::core::WakePolicy;
    /// let builder = Pool::builder().wake(WakePolicy::Handoff);
    /// assert!(format!("{builder:?}").contains("wake: Handoff"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake(mut self, wake: WakePolicy) -> Self {
        self.config.wake = wake;
        self
    }

    /// When the manager's `reset` runs (default [`Reset::OwnerChange`]:
    /// before a connection whose owners all let go serves anyone else).
    /// [`Reset::Never`] saves the trip through the pool lock a manager
    /// with nothing to reset would pay when a pin is released;
    /// [`Reset::EveryUnpinnedCheckin`] also resets after every checkout
    /// that pinned nobody.
    ///
    /// ```
    /// use pinpool::blocking::Pool;
    /// use pinpool::core::{Pinning, Reset};
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder()
    ///     .pinning(Pinning::Off)
    ///     .reset(Reset::EveryUnpinnedCheckin)
    ///     .build(noop)?;
    /// drop(pool.get()?);
    /// assert_eq!(pool.state().counters.resets, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(mut self, reset: Reset) -> Self {
        self.config.reset = reset;
        self
    }

    /// Seed of the core's randomness ([`Overflow::Random`]) and of where
    /// each connection's share of the
    /// [lifetime jitter](Self::max_lifetime_jitter) falls. By default each
    /// builder draws its own, so that pools in different processes differ:
    /// a fleet started together, its pools' connections opened together,
    /// would otherwise expire them in step, the same connection of each
    /// pool at the same moment. Set one to reproduce a run.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use pinpool::core::Overflow;
    /// let builder = Pool::builder().overflow(Overflow::Random).seed(42);
    /// assert!(format!("{builder:?}").contains("seed: 42"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// How long `get()` waits before [`Error::Timeout`](crate::Error::Timeout)
    /// (default 30 s). Zero means "only if one is available now";
    /// `Duration::MAX` waits for ever.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let pool = Pool::builder().max_size(1).checkout_timeout(Duration::from_millis(10)).build(noop)?;
    /// let held = pool.get()?;
    /// let waited = std::thread::scope(|s| s.spawn(|| pool.get().map(drop)).join().unwrap());
    /// assert!(matches!(waited, Err(pinpool::Error::Timeout { .. })));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// Whether every checkout first runs the manager's `validate` (default
    /// off); a connection that fails is closed and replaced.
    /// [`validate_after_idle`](Self::validate_after_idle) validates only
    /// the connections that sat unused a while.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().validate_on_checkout(true).build(noop)?;
    /// pool.get()?; // validated (a closure's `validate` always passes)
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate_on_checkout(mut self, validate: bool) -> Self {
        self.validate_after_idle = validate.then_some(Duration::ZERO);
        self
    }

    /// Validates a connection on checkout only if it went unused for
    /// `idle`: not opened, handed out or validated in that long. One used
    /// more recently is handed out as it is, and its window starts again.
    /// HikariCP skips validating a connection used in the last 500 ms for
    /// the same reason: one that just answered is as good as a `ping`
    /// would show, and the `ping` is a round trip on every checkout.
    /// Zero is [`validate_on_checkout(true)`](Self::validate_on_checkout);
    /// a manager that validates every checkout
    /// ([`Manager::validates_every_checkout`](crate::blocking::Manager::validates_every_checkout))
    /// still does.
    ///
    /// The window runs from a checkout's start, not its end: a connection
    /// idle for the window is always validated, and one held longer than
    /// the window once more than it needed. Each checkout reads the clock
    /// (a pinned async checkout also leaves the lock-free path for the
    /// async one, `benches/instructions.sh`); pools without the option
    /// pay nothing measurable.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let pool = Pool::builder()
    ///     .validate_after_idle(Duration::from_millis(500))
    ///     .build(noop)?;
    /// pool.get()?; // just opened: not validated
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate_after_idle(mut self, idle: Duration) -> Self {
        self.validate_after_idle = Some(idle);
        self
    }

    /// Closes connections older than this (since established) when they
    /// are next idle (default: none). A pinned owner's connection is
    /// replaced, and its pin moves to the replacement. Unless
    /// [`max_lifetime_jitter`](Self::max_lifetime_jitter) says otherwise,
    /// a lifetime of 10 s or more comes with a jitter of 2.5 % of it
    /// (HikariCP's): each connection lives at most this long, a little
    /// less for most.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let builder = Pool::builder().max_lifetime(Duration::from_secs(1800));
    /// assert!(format!("{builder:?}").contains("max_lifetime: Some(1800s)"));
    /// assert!(format!("{builder:?}").contains("max_lifetime_jitter: 45s"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        if !self.jitter_set {
            self.config.max_lifetime_jitter = default_jitter(lifetime);
        }
        self
    }

    /// Lets each connection's lifetime fall up to this far below
    /// [`max_lifetime`](Self::max_lifetime) (default: 2.5 % of a lifetime
    /// of 10 s or more, none for a shorter one; zero turns it off), so that
    /// connections opened together do not expire together. Without it
    /// the connections a pool opened at once (at start, or after a
    /// [`clear`](crate::blocking::Pool::clear)) all close one lifetime
    /// later, and its checkouts wait while they reconnect; a fleet of
    /// processes started together reconnects to the server all at once.
    /// The shares spread evenly over the pool's connections, from a point
    /// its [seed](Self::seed) sets (each pool's own unless set). HikariCP
    /// takes off up to 2.5 % of the lifetime for the same reason; a few
    /// percent is enough. It must be shorter than `max_lifetime` (else
    /// [`ConfigError::JitterNotBelowLifetime`]);
    /// the details: [`Config::max_lifetime_jitter`](crate::core::Config::max_lifetime_jitter).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let pool = Pool::builder()
    ///     .min_size(8)
    ///     .max_lifetime(Duration::from_secs(1800))
    ///     .max_lifetime_jitter(Duration::from_secs(60))
    ///     .build(noop)?;
    /// # drop(pool);
    /// let too_much = Pool::builder()
    ///     .max_lifetime(Duration::from_secs(60))
    ///     .max_lifetime_jitter(Duration::from_secs(60))
    ///     .build(noop);
    /// assert!(too_much.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_lifetime_jitter(mut self, jitter: Duration) -> Self {
        self.config.max_lifetime_jitter = jitter;
        self.jitter_set = true;
        self
    }

    /// Closes connections idle for this long, down to `min_size` (default:
    /// none). Connections owners are strictly pinned to are kept.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let builder = Pool::builder().min_size(1).idle_timeout(Duration::from_secs(600));
    /// assert!(format!("{builder:?}").contains("idle_timeout: Some(600s)"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Reports a connection checked out for longer than this, once, with
    /// the holder's thread name and a backtrace captured at checkout
    /// (HikariCP's `leakDetectionThreshold`); default off. The report is an
    /// [`Event::ConnectionLeaked`] and a `tracing` warning. Costs: a
    /// backtrace per checkout, and no lock-free fast path.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// use pinpool::core::Event;
    /// let pool = Pool::builder()
    ///     .leak_detection_threshold(Duration::from_secs(60))
    ///     .event_handler(|event: &Event| {
    ///         if let Event::ConnectionLeaked { .. } = event {
    ///             eprintln!("{event:?}");
    ///         }
    ///     })
    ///     .build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn leak_detection_threshold(mut self, threshold: Duration) -> Self {
        self.config.leak_threshold = Some(threshold);
        self
    }

    /// Gives up a connect still running this long after it started
    /// (default: the manager's
    /// [`connect_timeout`](crate::blocking::Manager::connect_timeout),
    /// none unless the manager's driver cannot bound its own connects, as
    /// the PostgreSQL managers' cannot): the checkout
    /// that asked for it fails with
    /// [`Error::ConnectTimeout`](crate::Error::ConnectTimeout), the
    /// `max_connecting` permit it held is free again, and the connection,
    /// if it arrives after all, is closed. Needs maintenance (see
    /// [`maintenance_interval`](Self::maintenance_interval)): a connect
    /// that starts wakes the maintenance worker by its deadline, so it is
    /// given up at its timeout, not up to an interval later. Connects then
    /// back off ([`connect_backoff`](Self::connect_backoff)), and
    /// maintenance starts the next at the backoff's end.
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// use std::time::Duration;
    /// let builder = Pool::builder().connect_timeout(Duration::from_secs(5));
    /// assert!(format!("{builder:?}").contains("connect_timeout: Some(5s)"));
    /// let pool = builder.build(noop)?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// Backs connects off while they fail (default: off): after a failed
    /// or timed-out connect, the next starts 10 ms later, then 20, 40, …
    /// up to `longest`, until one succeeds. Meanwhile checkouts that need
    /// a new connection wait for it (up to their timeout) rather than each
    /// trying the server, so an unreachable or refusing server sees a few
    /// attempts a second, not one per checkout (see
    /// [`Config::connect_backoff`](crate::core::Config::connect_backoff)).
    /// A zero `longest` is rejected by `build`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::blocking::Pool;
    /// # fn refused() -> std::io::Result<()> { Err(std::io::ErrorKind::ConnectionRefused.into()) }
    /// let pool = Pool::builder()
    ///     .connect_backoff(Duration::from_secs(1))
    ///     .checkout_timeout(Duration::from_millis(100))
    ///     .build(refused)?;
    /// assert!(pool.get().is_err()); // the first connect fails at once
    /// assert!(pool.get().is_err()); // this one waited for the next attempt
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn connect_backoff(mut self, longest: Duration) -> Self {
        self.config.connect_backoff = Some(longest);
        self
    }

    /// Time between maintenance runs (default 1 s), which close expired
    /// connections and report leaks; `Duration::MAX` never runs them, and
    /// more than a year runs them yearly. A pool without lifetimes or leak
    /// detection runs no maintenance. A run comes sooner when a deadline
    /// the core knows of falls first (a lifetime, a connect's timeout, the
    /// end of a connect backoff); a deadline that arises after a run (a
    /// new checkout's leak threshold, an idle timeout) is found at most
    /// one interval late, but a new connect wakes the worker by its own.
    /// Shorter than [`MIN_MAINTENANCE_INTERVAL`](Self::MIN_MAINTENANCE_INTERVAL)
    /// (zero included) is rejected by `build`: the worker would spin.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::blocking::Pool;
    /// use pinpool::core::ConfigError;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let spinning = Pool::builder().maintenance_interval(Duration::ZERO).build(noop);
    /// assert_eq!(spinning.unwrap_err(), ConfigError::ZeroDuration("maintenance_interval"));
    /// ```
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Builds the pool paused, as CMAP pools start: `get()` fails with
    /// [`Error::Paused`](crate::Error::Paused) and nothing opens until
    /// `ready()` (default: ready).
    ///
    /// ```
    /// # use pinpool::blocking::Pool;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    /// let pool = Pool::builder().start_paused(true).build(noop)?;
    /// assert!(matches!(pool.get().map(drop), Err(pinpool::Error::Paused)));
    /// pool.ready();
    /// pool.get()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.config.start_paused = paused;
        self
    }

    /// Model checks only: the blocking pool runs each connect on a loom
    /// thread of its own, racing the rest of the model, instead of inline.
    #[cfg(pinpool_loom)]
    #[doc(hidden)]
    pub fn connects_on_threads(mut self, on: bool) -> Self {
        self.connects_on_threads = on;
        self
    }

    /// Calls `handler` with every [`Event`] — the CMAP set plus pins and
    /// leak reports — in the order the pool decided them, outside the pool
    /// lock (it may use the pool). Costs: the lock-free fast path is off,
    /// so every checkout can be reported, which makes a pinned thread's
    /// get + drop an order of magnitude slower. Events also go to
    /// `tracing` (target `pinpool::events`) when a subscriber wants them
    /// at DEBUG as the pool is built, at the same price plus the
    /// subscriber's formatting: filter `pinpool::events` out of DEBUG in
    /// production. A metrics poller pays neither: see `Pool::status`. (The
    /// figures, benchmark `observed`: `docs/lifecycle.md`.)
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use pinpool::blocking::Pool;
    /// use pinpool::core::Event;
    /// # fn noop() -> std::io::Result<()> { Ok(()) }
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let pool = Pool::builder()
    ///     .event_handler(move |event: &Event| log.lock().unwrap().push(*event))
    ///     .build(noop)?;
    /// drop(pool.get());
    /// let seen = seen.lock().unwrap();
    /// assert!(matches!(seen[0], Event::PoolCreated(_)));
    /// assert!(seen.iter().any(|e| matches!(e, Event::CheckedIn { .. })));
    /// # Ok::<(), pinpool::core::ConfigError>(())
    /// ```
    pub fn event_handler(mut self, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.event_handler = Some(std::sync::Arc::new(handler));
        self
    }
}

impl<P> Builder<P> {
    /// The shortest [`maintenance_interval`](Self::maintenance_interval)
    /// accepted, 1 ms. Maintenance closes expired connections and refills
    /// `min_size`; no lifetime is kept to better than a millisecond, and
    /// anything shorter keeps a core busy for nothing.
    pub const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(1);

    /// The validated core and the driver's options, for a pool's `build`;
    /// `manager_connect_timeout` is the manager's
    /// [`connect_timeout`](crate::blocking::Manager::connect_timeout), for
    /// a builder that sets none.
    pub(crate) fn into_parts(
        self,
        manager_connect_timeout: Option<Duration>,
    ) -> Result<(Core, Options), ConfigError> {
        match self.maintenance_interval {
            Duration::ZERO => return Err(ConfigError::ZeroDuration("maintenance_interval")),
            interval if interval < Self::MIN_MAINTENANCE_INTERVAL => {
                return Err(ConfigError::MaintenanceTooFrequent {
                    interval,
                    minimum: Self::MIN_MAINTENANCE_INTERVAL,
                });
            }
            _ => {}
        }
        let mut config = self.config;
        config.connect_timeout = config.connect_timeout.or(manager_connect_timeout);
        config.record_events = self.event_handler.is_some()
            || config.leak_threshold.is_some()
            || tracing::enabled!(target: "pinpool::events", tracing::Level::DEBUG);
        let core = Core::new(config)?;
        let options = Options {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            name: self.name,
            checkout_timeout: self.checkout_timeout,
            validation: crate::driver::Validation::new(self.validate_after_idle),
            maintenance_interval: crate::driver::maintenance::interval(
                &config,
                self.maintenance_interval,
            ),
            connect_timeout: config.connect_timeout,
            event_handler: self.event_handler,
            stash: true,
            #[cfg(pinpool_loom)]
            connects_on_threads: self.connects_on_threads,
        };
        Ok((core, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Threads = crate::blocking::Pool<fn() -> std::io::Result<()>>;

    /// Pools in different processes, or in one, start from different
    /// seeds unless told one: their lifetime jitters do not fall in step.
    #[test]
    fn each_builder_draws_a_seed_of_its_own_unless_one_is_set() {
        let seeds: std::collections::HashSet<u64> = (0..100)
            .map(|_| Builder::<Threads>::default().config.seed)
            .collect();
        assert_eq!(seeds.len(), 100, "no two alike");
        assert_eq!(Builder::<Threads>::default().seed(7).config.seed, 7);
    }

    /// A lifetime of 10 s or more brings 2.5 % of it as its jitter, a
    /// shorter one none; a jitter set, before or after, is kept.
    #[test]
    fn a_lifetime_brings_a_default_jitter_unless_one_is_set() {
        let jitter = |builder: Builder<Threads>| builder.config.max_lifetime_jitter;
        let builder = Builder::<Threads>::default;
        let secs = Duration::from_secs;
        assert_eq!(jitter(builder()), Duration::ZERO, "no lifetime, no jitter");
        assert_eq!(jitter(builder().max_lifetime(secs(1800))), secs(45));
        assert_eq!(
            jitter(builder().max_lifetime(secs(10))),
            Duration::from_millis(250)
        );
        assert_eq!(
            jitter(builder().max_lifetime(Duration::from_millis(9_999))),
            Duration::ZERO
        );
        let set = secs(3);
        assert_eq!(
            jitter(builder().max_lifetime_jitter(set).max_lifetime(secs(1800))),
            set
        );
        assert_eq!(
            jitter(builder().max_lifetime(secs(1800)).max_lifetime_jitter(set)),
            set
        );
        let off = builder()
            .max_lifetime_jitter(Duration::ZERO)
            .max_lifetime(secs(1800));
        assert_eq!(jitter(off), Duration::ZERO, "zero turns it off");
    }

    /// The builder's `Debug` shows which checkouts validate; the last of
    /// `validate_on_checkout` and `validate_after_idle` called decides.
    #[test]
    fn debug_shows_which_checkouts_validate() {
        let shown = |builder: Builder<Threads>| format!("{builder:?}");
        let builder = Builder::<Threads>::default;
        assert!(shown(builder()).contains("validate_after_idle: None"));
        let every = builder().validate_on_checkout(true);
        assert!(shown(every).contains("validate_after_idle: Some(0ns)"));
        let window = builder().validate_after_idle(Duration::from_millis(500));
        assert!(shown(window.clone()).contains("validate_after_idle: Some(500ms)"));
        let off = window.validate_on_checkout(false);
        assert!(shown(off).contains("validate_after_idle: None"));
    }
}
