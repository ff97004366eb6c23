//! The builder with arbitrary options, as a new user might set them: `build`
//! returns a pool or a [`ConfigError`], never panics, and every pool it
//! builds serves a checkout. Sizes and durations are drawn from the edges
//! (zero, tiny, huge, `MAX`) as much as from the middle.

use std::time::Duration;

use pinpool::Error;
use pinpool::core::{Config, ConfigError, Overflow, Pinning, WakePolicy};
use proptest::prelude::*;

/// Every option the builder has, as drawn.
#[derive(Clone, Debug)]
struct Options {
    max_size: usize,
    min_size: usize,
    max_connecting: usize,
    pinning: Pinning,
    overflow: Overflow,
    wake: WakePolicy,
    seed: u64,
    checkout_timeout: Duration,
    validate_on_checkout: bool,
    /// Set after `validate_on_checkout`, which it then overrides.
    validate_after_idle: Option<Duration>,
    max_lifetime: Option<Duration>,
    /// `None`: not set, the builder's default for the lifetime.
    max_lifetime_jitter: Option<Duration>,
    idle_timeout: Option<Duration>,
    leak_threshold: Option<Duration>,
    connect_timeout: Option<Duration>,
    maintenance_interval: Duration,
    start_paused: bool,
}

impl Options {
    fn apply<P>(&self, builder: pinpool::Builder<P>) -> pinpool::Builder<P> {
        let mut builder = builder
            .max_size(self.max_size)
            .min_size(self.min_size)
            .max_connecting(self.max_connecting)
            .pinning(self.pinning)
            .overflow(self.overflow)
            .wake(self.wake)
            .seed(self.seed)
            .checkout_timeout(self.checkout_timeout)
            .validate_on_checkout(self.validate_on_checkout)
            .maintenance_interval(self.maintenance_interval)
            .start_paused(self.start_paused);
        if let Some(idle) = self.validate_after_idle {
            builder = builder.validate_after_idle(idle);
        }
        if let Some(lifetime) = self.max_lifetime {
            builder = builder.max_lifetime(lifetime);
        }
        if let Some(jitter) = self.max_lifetime_jitter {
            builder = builder.max_lifetime_jitter(jitter);
        }
        if let Some(timeout) = self.idle_timeout {
            builder = builder.idle_timeout(timeout);
        }
        if let Some(threshold) = self.leak_threshold {
            builder = builder.leak_detection_threshold(threshold);
        }
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        builder
    }

    /// Whether a cold checkout (nothing open yet) may run out of time: a
    /// timeout this short means "only if one is available now".
    fn may_time_out(&self) -> bool {
        self.checkout_timeout < Duration::from_secs(60)
    }

    /// Whether the connect a checkout asks for may be given up before it
    /// finishes (the tests' connects are instant, but not instantaneous).
    fn may_give_up_connects(&self) -> bool {
        self.connect_timeout
            .is_some_and(|timeout| timeout < Duration::from_secs(60))
    }
}

/// How a case's lifetime jitter is drawn.
#[derive(Clone, Debug)]
enum Jitter {
    None,
    HalfLifetime,
    Any(Duration),
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => (1..1_000_000u64).prop_map(Duration::from_nanos),
        6 => (1..5_000u64).prop_map(Duration::from_millis),
        2 => Just(Duration::from_secs(3600)),
        1 => Just(Duration::from_secs(u64::MAX)),
        1 => Just(Duration::MAX),
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0..=8usize,
        1 => Just(Config::SIZE_LIMIT),
        1 => Just(Config::SIZE_LIMIT + 1),
        1 => Just(usize::MAX),
    ]
}

fn wake() -> impl Strategy<Value = WakePolicy> {
    let count = prop_oneof![4 => 0..=3u32, 1 => Just(u32::MAX)];
    prop_oneof![
        Just(WakePolicy::Handoff),
        Just(WakePolicy::Broadcast),
        Just(WakePolicy::Signal),
        count.clone().prop_map(WakePolicy::Bounded),
        (count, duration(), duration()).prop_map(|(bypasses, period, min_hold)| {
            WakePolicy::Eventual {
                bypasses,
                period,
                min_hold,
            }
        }),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    let shape = (
        size(),
        // A min_size the pool would have to open at build is kept small;
        // the huge ones are rejected (above max_size or the limit).
        prop_oneof![4 => 0..=3usize, 1 => Just(usize::MAX)],
        prop_oneof![1 => Just(0usize), 4 => 1..=3usize, 1 => Just(usize::MAX)],
        prop_oneof![
            Just(Pinning::Strict),
            Just(Pinning::Affinity),
            Just(Pinning::Off)
        ],
        prop_oneof![
            Just(Overflow::LeastLoaded),
            Just(Overflow::Random),
            Just(Overflow::RandomIdle)
        ],
        wake(),
        any::<u64>(),
    );
    let time = (
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_millis(1)),
            Just(Duration::from_secs(3600)),
            Just(Duration::from_secs(u64::MAX)),
            Just(Duration::MAX),
        ],
        any::<bool>(),
        proptest::option::weighted(0.3, duration()),
        proptest::option::weighted(0.3, duration()),
        // Mostly not set (the builder's default: 2.5 % of a lifetime of 10
        // s or more, valid); else half the lifetime (valid), or, rarely (a pool
        // must build in a fifth of the cases), any duration at all.
        prop_oneof![12 => Just(Jitter::None), 4 => Just(Jitter::HalfLifetime), 1 => duration().prop_map(Jitter::Any)],
        proptest::option::weighted(0.3, duration()),
        proptest::option::weighted(0.3, duration()),
        proptest::option::weighted(0.3, duration()),
        duration(),
        any::<bool>(),
    );
    (shape, time).prop_map(
        |(
            (max_size, min_size, max_connecting, pinning, overflow, wake, seed),
            (
                checkout_timeout,
                validate_on_checkout,
                validate_after_idle,
                max_lifetime,
                max_lifetime_jitter,
                idle_timeout,
                leak_threshold,
                connect_timeout,
                maintenance_interval,
                start_paused,
            ),
        )| Options {
            max_size,
            min_size,
            max_connecting,
            pinning,
            overflow,
            wake,
            seed,
            checkout_timeout,
            validate_on_checkout,
            validate_after_idle,
            max_lifetime,
            max_lifetime_jitter: match max_lifetime_jitter {
                Jitter::None => None,
                Jitter::HalfLifetime => {
                    Some(max_lifetime.map_or(Duration::ZERO, |lifetime| lifetime / 2))
                }
                Jitter::Any(jitter) => Some(jitter),
            },
            idle_timeout,
            leak_threshold,
            connect_timeout,
            maintenance_interval,
            start_paused,
        },
    )
}

/// What `build` must answer for `options`, by the documented rules alone
/// (not by calling the validation it checks).
fn expected_rejection(options: &Options) -> Option<ConfigError> {
    let zero = |d: Option<Duration>| d == Some(Duration::ZERO);
    if options.max_size == 0 {
        Some(ConfigError::ZeroMaxSize)
    } else if options.max_size > Config::SIZE_LIMIT {
        Some(ConfigError::SizeAboveLimit(options.max_size))
    } else if options.min_size > options.max_size {
        Some(ConfigError::MinAboveMax {
            min_size: options.min_size,
            max_size: options.max_size,
        })
    } else if options.max_connecting == 0 {
        Some(ConfigError::ZeroMaxConnecting)
    } else if matches!(options.wake, WakePolicy::Bounded(0))
        || matches!(options.wake, WakePolicy::Eventual { bypasses, period, .. }
            if bypasses == 0 || period.is_zero())
    {
        Some(ConfigError::ZeroBypassBound)
    } else if zero(options.max_lifetime) {
        Some(ConfigError::ZeroDuration("max_lifetime"))
    } else if zero(options.idle_timeout) {
        Some(ConfigError::ZeroDuration("idle_timeout"))
    } else if zero(options.leak_threshold) {
        Some(ConfigError::ZeroDuration("leak_threshold"))
    } else if zero(options.connect_timeout) {
        Some(ConfigError::ZeroDuration("connect_timeout"))
    } else if let Some(jitter) = options.max_lifetime_jitter
        && !jitter.is_zero()
        && options
            .max_lifetime
            .is_none_or(|lifetime| jitter >= lifetime)
    {
        // (The builder's default jitter is always shorter than its lifetime.)
        Some(ConfigError::JitterNotBelowLifetime {
            jitter,
            max_lifetime: options.max_lifetime,
        })
    } else {
        None
    }
}

/// The builder's own checks come before the core's.
fn expected(options: &Options) -> Option<ConfigError> {
    let minimum = pinpool::Builder::<()>::MIN_MAINTENANCE_INTERVAL;
    match options.maintenance_interval {
        Duration::ZERO => Some(ConfigError::ZeroDuration("maintenance_interval")),
        interval if interval < minimum => {
            Some(ConfigError::MaintenanceTooFrequent { interval, minimum })
        }
        _ => expected_rejection(options),
    }
}

/// A checkout's result is acceptable: a connection, or a timeout when the
/// timeout allows one.
fn check_served<C, E: std::fmt::Debug>(
    options: &Options,
    result: Result<C, Error<E>>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(Error::Timeout { .. }) if options.may_time_out() => Ok(()),
        Err(Error::ConnectTimeout) if options.may_give_up_connects() => Ok(()),
        Err(error) => Err(TestCaseError::fail(format!(
            "{options:?}: checkout failed with {error:?}"
        ))),
    }
}

fn noop() -> std::io::Result<()> {
    Ok(())
}

/// The pool `build` returned, if the documented rules say it builds; a
/// failure if `build` answered otherwise than they say.
fn as_expected<P>(
    options: &Options,
    built: Result<P, ConfigError>,
) -> Result<Option<P>, TestCaseError> {
    match (built, expected(options)) {
        (Ok(pool), None) => Ok(Some(pool)),
        (Err(error), Some(rejection)) => {
            prop_assert_eq!(error, rejection);
            Ok(None)
        }
        (built, expected) => Err(TestCaseError::fail(format!(
            "{options:?}: built {:?}, expected {expected:?}",
            built.err()
        ))),
    }
}

/// Runs `case` on 400 drawn options; at least a fifth of them must get
/// as far as a built pool (`case` returns whether it did), so the edges
/// are not all the run ever tries.
fn run_cases(case: impl Fn(&Options) -> Result<bool, TestCaseError>) {
    let built = std::sync::atomic::AtomicUsize::new(0);
    let cases = 400;
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&options(), |options| {
            if case(&options)? {
                built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let built = built.into_inner();
    assert!(
        built >= cases as usize / 5,
        "only {built} of {cases} cases built a pool"
    );
}

#[test]
fn the_blocking_builder_answers_every_input_and_its_pools_serve() {
    run_cases(|options| {
        let built = options
            .apply(pinpool::blocking::Pool::builder())
            .build(noop);
        let Some(pool) = as_expected(options, built)? else {
            return Ok(false);
        };
        if options.start_paused {
            prop_assert!(matches!(pool.get(), Err(Error::Paused)));
            pool.ready();
        }
        check_served(options, pool.get())?;
        Ok(true)
    });
}

#[test]
fn the_async_builder_answers_every_input_and_its_pools_serve() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    run_cases(|options| {
        runtime.block_on(async {
            let built = options
                .apply(pinpool::tokio::Pool::builder())
                .build(|| async { Ok::<_, std::io::Error>(()) });
            let Some(pool) = as_expected(options, built)? else {
                return Ok(false);
            };
            if options.start_paused {
                prop_assert!(matches!(pool.get().await, Err(Error::Paused)));
                pool.ready();
            }
            check_served(options, pool.get().await)?;
            // A pinned scope's checkout too.
            let pinned = pool.pinned(async { pool.get().await.map(drop) }).await;
            check_served(options, pinned)?;
            Ok(true)
        })
    });
}

/// The two inputs the issue found, named.
#[test]
fn a_huge_max_size_is_a_config_error_and_a_zero_interval_is_rejected() {
    let huge = pinpool::blocking::Pool::builder()
        .max_size(usize::MAX)
        .pinning(Pinning::Off)
        .build(noop);
    assert_eq!(huge.unwrap_err(), ConfigError::SizeAboveLimit(usize::MAX));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let huge = pinpool::tokio::Pool::builder()
        .max_size(usize::MAX)
        .build(|| async { Ok::<_, std::io::Error>(()) });
    assert_eq!(huge.unwrap_err(), ConfigError::SizeAboveLimit(usize::MAX));
    let spinning = pinpool::tokio::Pool::builder()
        .maintenance_interval(Duration::ZERO)
        .idle_timeout(Duration::from_secs(1))
        .build(|| async { Ok::<_, std::io::Error>(()) });
    assert_eq!(
        spinning.unwrap_err(),
        ConfigError::ZeroDuration("maintenance_interval")
    );
}
