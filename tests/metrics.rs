//! The pool's metrics against a scripted workload on a paused clock, read
//! through a recorder that behaves as exporters do: every name, unit,
//! attribute and value (the durations are exact: the paused clock moves
//! only when every task waits).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use pinpool::Error;
use pinpool::core::Pinning;
use pinpool::metrics::*;
use pinpool::tokio::Pool;

/// A recorder that keeps each gauge's last value, as exporters do (the
/// pool sets a gauge only when it changes; metrics-util's debugging
/// recorder zeroes every gauge it reads), and hands out counters and
/// histograms as they grew since the last read.
struct Recorder {
    registry: Registry<Key, AtomicStorage>,
    units: Mutex<HashMap<String, Unit>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            registry: Registry::atomic(),
            units: Mutex::default(),
        }
    }

    fn describe(&self, name: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            let mut units = self.units.lock().unwrap();
            units.insert(name.as_str().to_owned(), unit);
        }
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(name, unit);
    }

    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(name, unit);
    }

    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(name, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        (self.registry).get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        (self.registry).get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        (self.registry).get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// One metric's reading.
#[derive(Debug)]
enum Value {
    /// What it counted since the last read.
    Counter(u64),
    /// Its last value.
    Gauge(f64),
    /// What it recorded since the last read.
    Histogram(Vec<f64>),
}

/// What a read held for one metric: (name, state attribute) → value,
/// unit; every metric must carry the pool's name.
type Readings = BTreeMap<(String, Option<String>), (Value, Option<Unit>)>;

/// Reads every metric (draining the counters and histograms).
fn read(recorder: &Recorder, pool_name: &str) -> Readings {
    let registry = &recorder.registry;
    let counters = registry.get_counter_handles().into_iter();
    let counters = counters.map(|(key, c)| (key, Value::Counter(c.swap(0, Ordering::SeqCst))));
    let gauges = registry.get_gauge_handles().into_iter();
    let gauges =
        gauges.map(|(key, g)| (key, Value::Gauge(f64::from_bits(g.load(Ordering::SeqCst)))));
    let histograms = registry
        .get_histogram_handles()
        .into_iter()
        .map(|(key, h)| {
            let mut values = Vec::new();
            h.clear_with(|xs| values.extend_from_slice(xs));
            (key, Value::Histogram(values))
        });
    let units = recorder.units.lock().unwrap();
    let mut readings = Readings::new();
    for (key, value) in counters.chain(gauges).chain(histograms) {
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
        };
        assert_eq!(label(POOL_NAME).as_deref(), Some(pool_name), "{key:?}");
        let extra = key
            .labels()
            .filter(|l| l.key() != POOL_NAME && l.key() != STATE)
            .count();
        assert_eq!(extra, 0, "no other attribute: {key:?}");
        let unit = units.get(key.name()).copied();
        readings.insert((key.name().to_owned(), label(STATE)), (value, unit));
    }
    readings
}

fn value<'r>(readings: &'r Readings, name: &str, state: Option<&str>) -> &'r Value {
    let key = (name.to_owned(), state.map(str::to_owned));
    &readings
        .get(&key)
        .unwrap_or_else(|| panic!("{key:?} missing: {readings:?}"))
        .0
}

fn gauge(readings: &Readings, name: &str, state: Option<&str>) -> f64 {
    match value(readings, name, state) {
        Value::Gauge(v) => *v,
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

fn counter(readings: &Readings, name: &str) -> u64 {
    match value(readings, name, None) {
        Value::Counter(v) => *v,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn samples(readings: &Readings, name: &str) -> Vec<f64> {
    match value(readings, name, None) {
        Value::Histogram(v) => {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            v
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_metric_reads_as_the_script_drove_it() {
    let recorder = Recorder::new();
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder()
            .name("orders")
            .max_size(1)
            .min_size(1)
            .checkout_timeout(Duration::from_secs(60))
            .build(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await; // a 1 s connect
                Ok::<_, std::io::Error>(())
            })
    })
    .unwrap();

    // t = 0..1: a checkout waits for the connect (min_size's).
    let held = pool.get().await.unwrap();
    // t = 1..3: another waits in line, and times out.
    let pool2 = pool.clone();
    let waiter =
        tokio::spawn(async move { pool2.get_timeout(Duration::from_secs(2)).await.map(drop) });
    while pool.status().waiting == 0 {
        tokio::task::yield_now().await;
    }
    // (A read drains counters and histograms.)
    let mid = read(&recorder, "orders");
    assert_eq!(gauge(&mid, PENDING_REQUESTS, None), 1.0);
    assert_eq!(gauge(&mid, CONNECTION_COUNT, Some("used")), 1.0);
    assert_eq!(gauge(&mid, CONNECTION_COUNT, Some("idle")), 0.0);
    assert_eq!(counter(&mid, TIMEOUTS), 0, "not yet timed out");
    assert_eq!(samples(&mid, CREATE_TIME), [1.0]);
    assert_eq!(samples(&mid, WAIT_TIME), [1.0], "waited for its connect");
    assert!(matches!(waiter.await.unwrap(), Err(Error::Timeout { .. })));
    // t = 3..4: held a second more: a use of 3 s, the first of its lease.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(held);
    let _ = pool.state(); // ends the lease: its counts are reported
    // A checkout through the core (waits 0), then 4 on the fast path.
    for _ in 0..5 {
        drop(pool.get().await.unwrap());
    }
    // A pinned scope: a pin while it runs, a reset when it ends.
    pool.pinned(async { drop(pool.get().await.unwrap()) }).await;
    while pool.state().resetting > 0 {
        tokio::task::yield_now().await; // the reset task runs
    }

    let end = read(&recorder, "orders");
    assert_eq!(gauge(&end, CONNECTION_COUNT, Some("idle")), 1.0);
    assert_eq!(gauge(&end, CONNECTION_COUNT, Some("used")), 0.0);
    assert_eq!(gauge(&end, MAX, None), 1.0);
    assert_eq!(gauge(&end, IDLE_MIN, None), 1.0);
    assert_eq!(gauge(&end, PENDING_REQUESTS, None), 0.0);
    assert_eq!(counter(&end, TIMEOUTS), 1);
    assert_eq!(counter(&end, FAST_PATH_CHECKOUTS), 4);
    assert_eq!(counter(&end, RESETS), 1);
    assert_eq!(gauge(&end, PINS, None), 0.0);
    assert_eq!(gauge(&end, PIN_PENDING_REQUESTS, None), 0.0);
    assert_eq!(samples(&end, CREATE_TIME), [0.0; 0], "no connect since");
    // One through the core, four fast, the scope's: none waited.
    assert_eq!(samples(&end, WAIT_TIME), [0.0; 6]);
    // Timed: the first lease's first use (3 s), the second's, the scope's.
    assert_eq!(samples(&end, USE_TIME), [0.0, 0.0, 3.0]);
    for (name, unit) in [
        (CREATE_TIME, Unit::Seconds),
        (WAIT_TIME, Unit::Seconds),
        (USE_TIME, Unit::Seconds),
        (FAST_PATH_CHECKOUTS, Unit::Count),
        (RESETS, Unit::Count),
    ] {
        let key = (name.to_owned(), None);
        assert_eq!(end[&key].1, Some(unit), "{name}");
    }
    assert_eq!(
        end[&(CONNECTION_COUNT.to_owned(), Some("idle".to_owned()))].1,
        Some(Unit::Count)
    );

    // A resize moves `max` alone; the other gauges keep their values.
    pool.resize(3).unwrap();
    let resized = read(&recorder, "orders");
    assert_eq!(gauge(&resized, MAX, None), 3.0);
    assert_eq!(gauge(&resized, CONNECTION_COUNT, Some("idle")), 1.0);
    assert_eq!(gauge(&resized, IDLE_MIN, None), 1.0);
    assert_eq!(counter(&resized, TIMEOUTS), 0, "none since the last read");

    // A second timeout, with all three held: the counter gains one.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.get().await.unwrap());
    }
    let late = pool.get_timeout(Duration::from_secs(1)).await;
    assert!(matches!(late, Err(Error::Timeout { .. })));
    let again = read(&recorder, "orders");
    assert_eq!(counter(&again, TIMEOUTS), 1);
    assert_eq!(gauge(&again, CONNECTION_COUNT, Some("used")), 3.0);
    assert_eq!(gauge(&again, CONNECTION_COUNT, Some("idle")), 0.0);
    assert_eq!(gauge(&again, PENDING_REQUESTS, None), 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_fast_paths_counts_are_folded_in_while_its_lease_runs() {
    // A pinned scope's lease, and the stash's (checkouts outside a scope).
    for scoped in [true, false] {
        let recorder = Recorder::new();
        let pool = metrics::with_local_recorder(&recorder, || {
            Pool::builder().build(|| async { Ok::<_, std::io::Error>(()) })
        })
        .unwrap();
        assert!(
            pool.name().starts_with("pinpool-"),
            "a manager without a name"
        );
        let checks = async {
            for _ in 0..10 {
                drop(pool.get().await.unwrap()); // one through the core, nine fast
            }
            let early = read(&recorder, pool.name());
            assert_eq!(counter(&early, FAST_PATH_CHECKOUTS), 0, "not folded yet");
            // A second later, any operation under the lock folds them in;
            // this one (a resize to the same size) ends no lease.
            tokio::time::sleep(Duration::from_secs(1)).await;
            pool.resize(10).unwrap();
            let folded = read(&recorder, pool.name());
            assert_eq!(counter(&folded, FAST_PATH_CHECKOUTS), 9, "scoped: {scoped}");
            assert_eq!(samples(&folded, WAIT_TIME), [0.0; 9]);
            assert_eq!(
                pool.status().counters.checkouts,
                1,
                "the core counts them at the lease's end"
            );
        };
        if scoped {
            pool.pinned(checks).await;
        } else {
            checks.await;
        }
    }
}

/// Every 64th fast-path use of a lease is timed for `use_time` (the others
/// cost a branch), and the pool lock's next holder reports it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_64th_fast_use_is_timed() {
    let recorder = Recorder::new();
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder().build(|| async { Ok::<_, std::io::Error>(()) })
    })
    .unwrap();
    pool.pinned(async {
        // Through the core, at the clock's very start: the lease starts,
        // timing this first use.
        let first = pool.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(1)).await;
        pool.resize(10).unwrap(); // folds the fast path in
        let first_use = samples(&read(&recorder, pool.name()), USE_TIME);
        assert_eq!(first_use, [0.002], "the first use, held 2 ms from 0");
        for round in 1..=2 {
            for _ in 0..64 {
                let conn = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(conn);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            pool.resize(10).unwrap(); // folds the fast path in
            let after = samples(&read(&recorder, pool.name()), USE_TIME);
            // One slot per lease, the last timed use: the 64th, the 128th.
            assert_eq!(after, [0.003], "round {round}: its last use, held 3 ms");
        }
    })
    .await;
}

/// A checkout the fast path will not serve again (no lease: under
/// `Broadcast`, every checkin must reach the core to wake the sleepers) is
/// timed from its grant to its checkin.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_checkout_without_a_lease_is_timed_to_its_checkin() {
    let recorder = Recorder::new();
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder()
            .wake(pinpool::core::WakePolicy::Broadcast)
            .build(|| async { Ok::<_, std::io::Error>(()) })
    })
    .unwrap();
    for held in [2, 5] {
        let conn = pool.get().await.unwrap();
        tokio::time::sleep(Duration::from_secs(held)).await;
        drop(conn);
    }
    let readings = read(&recorder, pool.name());
    assert_eq!(samples(&readings, USE_TIME), [2.0, 5.0]);
    assert_eq!(counter(&readings, FAST_PATH_CHECKOUTS), 0, "no lease");
}

/// What a test asks of the pool, in [`the_gauges_follow_the_pool`].
#[derive(Clone, Debug)]
enum Op {
    /// A task checks out (inside a pinned scope or not), waiting if it
    /// must, and holds its connection until released.
    Hold { pinned: bool },
    /// The `n`th holder (modulo their number) lets go.
    Release(usize),
    /// The pool is resized.
    Resize(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => any::<bool>().prop_map(|pinned| Op::Hold { pinned }),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (1usize..5).prop_map(Op::Resize),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// A gauge is set only when its value changes: after any sequence of
    /// checkouts (waiting or not, pinned or not, under `Strict` or
    /// `Exclusive` pins), releases and resizes, each gauge reads what the
    /// pool's status says, read under the same lock.
    #[test]
    fn the_gauges_follow_the_pool(
        exclusive in proptest::bool::ANY,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        // Exclusive pins make pinned scopes wait for a pin of their own.
        let pinning = if exclusive { Pinning::Exclusive } else { Pinning::Strict };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let recorder = Recorder::new();
            let pool = metrics::with_local_recorder(&recorder, || {
                Pool::builder()
                    .name("walk")
                    .max_size(2)
                    .pinning(pinning)
                    .checkout_timeout(Duration::MAX)
                    .build(|| async { Ok::<_, std::io::Error>(()) })
            })
            .unwrap();
            let mut holders = Vec::new();
            for op in ops {
                match op {
                    Op::Hold { pinned } => {
                        let (release, released) = tokio::sync::oneshot::channel::<()>();
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            let hold = async {
                                let conn = pool.get().await;
                                let _ = released.await;
                                drop(conn);
                            };
                            if pinned {
                                pool.pinned(hold).await;
                            } else {
                                hold.await;
                            }
                        });
                        holders.push(release);
                    }
                    Op::Release(n) if !holders.is_empty() => {
                        let _ = holders.swap_remove(n % holders.len()).send(());
                    }
                    Op::Release(_) => {}
                    Op::Resize(size) => pool.resize(size).unwrap(),
                }
                tokio::task::yield_now().await; // let the tasks move on
                let status = pool.status();
                let readings = read(&recorder, "walk");
                let at = format!("{status}");
                assert_eq!(gauge(&readings, CONNECTION_COUNT, Some("idle")), status.idle as f64, "{at}");
                assert_eq!(
                    gauge(&readings, CONNECTION_COUNT, Some("used")),
                    (status.in_use + status.resetting) as f64,
                    "{at}"
                );
                assert_eq!(gauge(&readings, PENDING_REQUESTS, None), status.waiting as f64, "{at}");
                assert_eq!(gauge(&readings, PINS, None), status.pinned_owners as f64, "{at}");
                assert_eq!(
                    gauge(&readings, PIN_PENDING_REQUESTS, None),
                    status.waiting_for_pin as f64,
                    "{at}"
                );
            }
            drop(holders);
        });
    }
}
