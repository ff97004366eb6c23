//! The core's configuration and its validation (the policies it
//! names are in `policy`).

use std::time::Duration;

use thiserror::Error;

use super::policy::{Overflow, Pinning, Reset, WakePolicy};

/// Everything the core needs to make its decisions.
///
/// ```
/// use pinpool::core::{Config, Pinning, WakePolicy};
/// use std::time::Duration;
/// let config = Config { max_size: 4, pinning: Pinning::Strict, ..Config::default() };
/// assert!(config.validate().is_ok());
/// let eventual = WakePolicy::Eventual {
///     bypasses: 16,
///     period: Duration::from_micros(500),
///     min_hold: Duration::from_micros(10),
/// };
/// assert_eq!(config.wake, eventual);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most connections that may exist at once (pending, connecting, idle and
    /// checked out together). Default 10; at most [`Config::SIZE_LIMIT`].
    /// Memory follows the connections that exist, not this bound, so a
    /// large value for "no practical limit" costs nothing up front.
    pub max_size: usize,
    /// Connections the core keeps open even when nobody asks. Default 0.
    pub min_size: usize,
    /// Most connections being established at once. Default 2.
    pub max_connecting: usize,
    /// How owners are bound to connections. Default [`Pinning::Strict`].
    pub pinning: Pinning,
    /// New-owner assignment at `max_size` under [`Pinning::Strict`].
    /// Default [`Overflow::LeastLoaded`].
    pub overflow: Overflow,
    /// What a checkin does for waiters. Default
    /// [`WakePolicy::Eventual`], 16 bypasses (counted after holds of 10 µs
    /// or more) or 500 µs (see [`WakePolicy::default`]).
    pub wake: WakePolicy,
    /// When a connection's session state is reset (default
    /// [`Reset::OwnerChange`]).
    pub reset: Reset,
    /// Seed of the core's only source of randomness ([`Overflow::Random`]),
    /// and where the shares of [`max_lifetime_jitter`](Self::max_lifetime_jitter)
    /// start.
    pub seed: u64,
    /// Whether the core records [`Event`](super::Event)s for
    /// [`Core::poll_event`](super::Core::poll_event). Off by default so a
    /// driver that does not drain them pays nothing.
    pub record_events: bool,
    /// A connection older than this (since it was established) is closed
    /// when it is next idle: at checkin, at a checkout that finds it idle,
    /// or by [`Core::maintain`](super::Core::maintain). Default `None`.
    /// Each connection's own lifetime is this less its share of
    /// [`max_lifetime_jitter`](Self::max_lifetime_jitter).
    pub max_lifetime: Option<Duration>,
    /// How far below `max_lifetime` a connection's own lifetime may fall,
    /// so that connections opened together do not all expire together
    /// (HikariCP's variance, pgx's `MaxConnLifetimeJitter`): a pool that
    /// filled `min_size` at start would otherwise close every connection
    /// at once a lifetime later, and its checkouts would wait for
    /// `max_connecting` reconnects at a time. Connection `n`'s share of
    /// it is the fractional part of `(n + seed)` times the golden ratio,
    /// a sequence whose consecutive members divide the interval into
    /// gaps of at most three lengths, within a factor of about 2.6 of
    /// each other: `k` connections opened together expire over the whole
    /// jitter, about `jitter / k` apart (and pools with
    /// different seeds out of step: the pools' builder draws one for
    /// each). Must be shorter than
    /// `max_lifetime`; default zero (each lives exactly `max_lifetime`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Config, ConnId, Core};
    ///
    /// let config = Config {
    ///     min_size: 4,
    ///     max_connecting: 4,
    ///     max_lifetime: Some(Duration::from_secs(60)),
    ///     max_lifetime_jitter: Duration::from_secs(8),
    ///     ..Config::default()
    /// };
    /// let mut core = Core::new(config)?;
    /// while core.poll_action().is_some() {} // four Opens
    /// let mut expiries = Vec::new();
    /// for n in 1..=4 {
    ///     core.connected(ConnId(n))?;
    ///     expiries.extend(core.expires_at(ConnId(n)));
    /// }
    /// expiries.sort();
    /// // Opened together, they expire between 52 and 60 s, over a second apart.
    /// assert!(expiries[0] > Duration::from_secs(52) && expiries[3] <= Duration::from_secs(60));
    /// assert!(expiries.windows(2).all(|pair| pair[1] - pair[0] > Duration::from_secs(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub max_lifetime_jitter: Duration,
    /// An idle connection unused for this long is closed by
    /// [`Core::maintain`](super::Core::maintain) or a checkout that finds
    /// it, unless that would leave fewer than `min_size`. Default `None`.
    pub idle_timeout: Option<Duration>,
    /// A connect still running this long after it started is given up:
    /// the checkout that asked for it fails with
    /// [`FailReason::ConnectTimeout`](super::FailReason::ConnectTimeout),
    /// its `max_connecting` permit is free again, and the connection, if
    /// it arrives later, is closed at once. Checked by
    /// [`Core::maintain`](super::Core::maintain), which
    /// [`Core::poll_timeout`](super::Core::poll_timeout) schedules for the
    /// deadline. Default `None` (a manager bounds its own connects).
    pub connect_timeout: Option<Duration>,
    /// Backs connects off while they fail: after a failed (or given-up)
    /// connect the next one starts no sooner than
    /// [`Config::FIRST_BACKOFF`] later, doubling with each failure in a
    /// row up to this, until one succeeds. Checkouts that need a new
    /// connection meanwhile wait for it (up to their timeout) instead of
    /// each trying the server: a refused or unreachable server then sees
    /// `max_connecting` attempts per backoff, not one per checkout — no
    /// reconnect storm. The driver runs [`Core::maintain`](super::Core::maintain)
    /// when it ends ([`Core::connects_resume_at`](super::Core::connects_resume_at)),
    /// which starts them. Default `None`: every failure is retried at the
    /// next checkout that asks.
    pub connect_backoff: Option<Duration>,
    /// A connection checked out for longer than this is reported once as
    /// [`Event::ConnectionLeaked`](super::Event::ConnectionLeaked) by
    /// [`Core::maintain`](super::Core::maintain). Default `None`.
    pub leak_threshold: Option<Duration>,
    /// Whether the pool starts paused (CMAP's initial state): checkouts
    /// fail with [`FailReason::Paused`](super::FailReason::Paused) and no
    /// connection opens until [`Core::ready`](super::Core::ready). Default
    /// `false`.
    pub start_paused: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 10,
            min_size: 0,
            max_connecting: 2,
            pinning: Pinning::Strict,
            overflow: Overflow::LeastLoaded,
            wake: WakePolicy::default(),
            reset: Reset::default(),
            seed: 0,
            record_events: false,
            max_lifetime: None,
            max_lifetime_jitter: Duration::ZERO,
            idle_timeout: None,
            leak_threshold: None,
            connect_timeout: None,
            connect_backoff: None,
            start_paused: false,
        }
    }
}

/// Why a [`Config`] was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_size` was 0: such a pool could never hand out a connection.
    #[error("max_size must be at least 1")]
    ZeroMaxSize,
    /// `min_size` exceeded `max_size`.
    #[error("min_size ({min_size}) must not exceed max_size ({max_size})")]
    MinAboveMax {
        /// The configured `min_size`.
        min_size: usize,
        /// The configured `max_size`.
        max_size: usize,
    },
    /// `max_connecting` was 0: no connection could ever be opened.
    #[error("max_connecting must be at least 1")]
    ZeroMaxConnecting,
    /// A bypass bound or fairness period of 0 (`Bounded` or `Eventual`):
    /// that is [`WakePolicy::Handoff`]; use it.
    #[error("a bypass bound or fairness period of 0 is WakePolicy::Handoff; use that")]
    ZeroBypassBound,
    /// A lifetime, idle timeout or leak threshold of zero: every
    /// connection would expire (or leak) the moment it existed; or a
    /// maintenance interval of zero, a busy loop.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// A lifetime jitter without a lifetime, or one not shorter than it:
    /// some connection's own lifetime would be zero or less.
    #[error(
        "max_lifetime_jitter ({jitter:?}) must be shorter than max_lifetime ({max_lifetime:?})"
    )]
    JitterNotBelowLifetime {
        /// The configured jitter.
        jitter: Duration,
        /// The configured lifetime, if any.
        max_lifetime: Option<Duration>,
    },
    /// `max_size` above [`Config::SIZE_LIMIT`] (`min_size`, at most
    /// `max_size`, is bounded with it): no process can hold that many
    /// connections.
    #[error("max_size ({0}) must not exceed {limit}", limit = Config::SIZE_LIMIT)]
    SizeAboveLimit(usize),
    /// A maintenance interval shorter than
    /// [`Builder::MIN_MAINTENANCE_INTERVAL`](crate::Builder::MIN_MAINTENANCE_INTERVAL):
    /// the background worker would run in a busy loop.
    #[error("maintenance_interval ({interval:?}) must be at least {minimum:?}")]
    MaintenanceTooFrequent {
        /// The configured interval.
        interval: Duration,
        /// The shortest one accepted.
        minimum: Duration,
    },
}

impl Config {
    /// The largest `max_size` a pool accepts: 2^20, Linux's default limit
    /// (`fs.nr_open`) on the files one process may hold open, sockets
    /// included. A larger size is a configuration mistake (often
    /// `usize::MAX` meant as "unlimited"), not a pool that could exist;
    /// use this constant to mean "no practical limit".
    ///
    /// ```
    /// use pinpool::core::{Config, ConfigError};
    /// let unlimited = Config { max_size: Config::SIZE_LIMIT, ..Config::default() };
    /// assert!(unlimited.validate().is_ok());
    /// let impossible = Config { max_size: usize::MAX, ..Config::default() };
    /// assert_eq!(impossible.validate(), Err(ConfigError::SizeAboveLimit(usize::MAX)));
    /// ```
    pub const SIZE_LIMIT: usize = 1 << 20;

    /// Checks the configuration, naming the first problem found.
    ///
    /// ```
    /// use pinpool::core::{Config, ConfigError};
    /// let bad = Config { max_size: 2, min_size: 3, ..Config::default() };
    /// assert_eq!(bad.validate(), Err(ConfigError::MinAboveMax { min_size: 3, max_size: 2 }));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::ZeroMaxSize);
        }
        if self.max_size > Self::SIZE_LIMIT {
            return Err(ConfigError::SizeAboveLimit(self.max_size));
        }
        if self.min_size > self.max_size {
            return Err(ConfigError::MinAboveMax {
                min_size: self.min_size,
                max_size: self.max_size,
            });
        }
        if self.max_connecting == 0 {
            return Err(ConfigError::ZeroMaxConnecting);
        }
        if matches!(
            self.wake,
            WakePolicy::Bounded(0)
                | WakePolicy::Eventual { bypasses: 0, .. }
                | WakePolicy::Eventual {
                    period: Duration::ZERO,
                    ..
                }
        ) {
            return Err(ConfigError::ZeroBypassBound);
        }
        for (name, duration) in [
            ("max_lifetime", self.max_lifetime),
            ("idle_timeout", self.idle_timeout),
            ("leak_threshold", self.leak_threshold),
            ("connect_timeout", self.connect_timeout),
            ("connect_backoff", self.connect_backoff),
        ] {
            if duration == Some(Duration::ZERO) {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        let jitter = self.max_lifetime_jitter;
        if !jitter.is_zero() && self.max_lifetime.is_none_or(|lifetime| jitter >= lifetime) {
            return Err(ConfigError::JitterNotBelowLifetime {
                jitter,
                max_lifetime: self.max_lifetime,
            });
        }
        Ok(())
    }

    /// Whether the core has work for a periodic [`Core::maintain`](super::Core::maintain)
    /// run: expiring connections, reporting leaks, or refilling `min_size`
    /// after a failed connect (which it defers to the next run).
    pub fn needs_maintenance(&self) -> bool {
        self.min_size > 0 || self.has_deadlines()
    }

    /// Whether any decision falls due by time alone (see
    /// [`Core::poll_timeout`](super::Core::poll_timeout)).
    fn has_deadlines(&self) -> bool {
        self.max_lifetime.is_some()
            || self.idle_timeout.is_some()
            || self.leak_threshold.is_some()
            || self.connect_timeout.is_some()
    }

    /// The first wait of a [`connect_backoff`](Self::connect_backoff)
    /// (or the backoff itself, if shorter).
    pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);

    /// How long connects wait after `failures` failed in a row (at least
    /// one), under [`connect_backoff`](Self::connect_backoff).
    pub(super) fn backoff_after(&self, failures: u32) -> Option<Duration> {
        let longest = self.connect_backoff?;
        let doublings = failures.saturating_sub(1).min(31);
        Some(
            Self::FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(longest),
        )
    }

    /// Whether the core's decisions depend on time, so a driver must report
    /// its clock with [`Core::advance`](super::Core::advance) before each
    /// input: lifetimes, leak detection, [`WakePolicy::Eventual`], and the
    /// durations events carry, connect backoff.
    pub fn needs_clock(&self) -> bool {
        self.record_events
            || matches!(self.wake, WakePolicy::Eventual { .. })
            || self.connect_backoff.is_some()
            || self.has_deadlines()
    }
}
