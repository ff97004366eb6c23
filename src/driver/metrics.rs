//! Recording the pool's metrics (names and semantics: [`crate::metrics`]).
//! Every call here is made under the pool lock, on the slow path; without
//! the `metrics` feature [`Metrics`] is an empty type whose calls compile
//! to nothing.

#[cfg(feature = "metrics")]
pub(crate) use recording::Metrics;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::Metrics;

#[cfg(feature = "metrics")]
mod recording {
    use std::time::Duration;

    use metrics::{
        Counter, Gauge, Histogram, Label, Unit, counter, describe_counter, describe_gauge,
        describe_histogram, gauge, histogram,
    };
    use rustc_hash::FxHashMap as HashMap;

    use crate::core::{ConnId, Core};
    use crate::driver::lease::LeaseCell;
    use crate::metrics::*;

    /// How often a locked operation folds the fast path's counts in.
    const FOLD_EVERY: Duration = Duration::from_secs(1);

    /// One pool's metric handles (registered once, at build), and what
    /// they need to turn the core's state into samples.
    pub(crate) struct Metrics {
        idle: Gauge,
        used: Gauge,
        idle_min: Gauge,
        max: Gauge,
        pending: Gauge,
        pins: Gauge,
        pin_pending: Gauge,
        timeouts: Counter,
        resets: Counter,
        fast_path: Counter,
        create_time: Histogram,
        wait_time: Histogram,
        use_time: Histogram,
        /// What the gauges and counters were last set from.
        published: Published,
        /// When each connect in flight started.
        opening: HashMap<ConnId, Duration>,
        /// When the fast path's counts were last folded in.
        folded_at: Duration,
    }

    /// The gauges' values and the counters' totals as last published.
    struct Published {
        idle: usize,
        used: usize,
        pending: usize,
        pins: usize,
        pin_pending: usize,
        max: usize,
        timeouts: u64,
        resets: u64,
    }

    /// Calls the recorder: user code, run under the pool lock, in the
    /// middle of an input's bookkeeping. A panic there must end there: one
    /// that unwound out of a checkin that had handed its connection to a
    /// waiter would drop that waiter's wake-up, and strand it (`hardening`
    /// tests).
    #[inline]
    fn to_recorder(call: impl FnOnce()) {
        crate::driver::contain("the metrics recorder", call);
    }

    /// Sets `gauge` to `now` unless that is what it was last set to.
    #[inline]
    fn set_changed(gauge: &Gauge, was: &mut usize, now: usize) {
        if *was != now {
            *was = now;
            to_recorder(|| gauge.set(now as f64));
        }
    }

    /// Adds to `counter` what the core's total `now` gained since `was`.
    #[inline]
    fn add_gained(counter: &Counter, was: &mut u64, now: u64) {
        if *was != now {
            to_recorder(|| counter.increment(now - *was));
            *was = now;
        }
    }

    impl Metrics {
        /// The metrics need the pool's clock.
        pub(crate) const NEEDS_CLOCK: bool = true;

        /// Registers the pool's metrics, named `name`, with the recorder
        /// installed now.
        pub(crate) fn new(name: &str, core: &Core) -> Self {
            describe();
            let pool = || Label::new(POOL_NAME, name.to_owned());
            let mut metrics = Metrics {
                idle: gauge!(CONNECTION_COUNT, vec![pool(), Label::new(STATE, "idle")]),
                used: gauge!(CONNECTION_COUNT, vec![pool(), Label::new(STATE, "used")]),
                idle_min: gauge!(IDLE_MIN, vec![pool()]),
                max: gauge!(MAX, vec![pool()]),
                pending: gauge!(PENDING_REQUESTS, vec![pool()]),
                pins: gauge!(PINS, vec![pool()]),
                pin_pending: gauge!(PIN_PENDING_REQUESTS, vec![pool()]),
                timeouts: counter!(TIMEOUTS, vec![pool()]),
                resets: counter!(RESETS, vec![pool()]),
                fast_path: counter!(FAST_PATH_CHECKOUTS, vec![pool()]),
                create_time: histogram!(CREATE_TIME, vec![pool()]),
                wait_time: histogram!(WAIT_TIME, vec![pool()]),
                use_time: histogram!(USE_TIME, vec![pool()]),
                // Nothing published yet: the first `publish` sets every
                // gauge and adds every count.
                published: Published {
                    idle: usize::MAX,
                    used: usize::MAX,
                    pending: usize::MAX,
                    pins: usize::MAX,
                    pin_pending: usize::MAX,
                    max: usize::MAX,
                    timeouts: 0,
                    resets: 0,
                },
                opening: HashMap::default(),
                folded_at: Duration::ZERO,
            };
            let min_size = core.config().min_size as f64;
            to_recorder(|| metrics.idle_min.set(min_size)); // fixed
            metrics.publish(core);
            metrics
        }

        /// Sets each gauge whose value changed since the last call, and
        /// adds to the counters what the core's gained. It runs after every
        /// input, and one input changes one or two of them
        /// (`benches/instructions.sh`, "with `metrics`"). A gauge keeps its
        /// value until it is set again, as exporters keep it (a recorder
        /// that zeroes the gauges it reads, as metrics-util's debugging one
        /// does, reads 0 for a gauge that has not changed since).
        pub(crate) fn publish(&mut self, core: &Core) {
            let (o, counters) = (core.occupancy(), core.counters());
            let was = &mut self.published;
            set_changed(&self.idle, &mut was.idle, o.idle);
            set_changed(&self.used, &mut was.used, o.in_use + o.resetting);
            set_changed(&self.pending, &mut was.pending, o.waiting);
            set_changed(&self.pins, &mut was.pins, o.pinned_owners);
            set_changed(&self.pin_pending, &mut was.pin_pending, o.waiting_for_pin);
            set_changed(&self.max, &mut was.max, core.config().max_size);
            add_gained(&self.timeouts, &mut was.timeouts, counters.timeouts);
            add_gained(&self.resets, &mut was.resets, counters.resets);
        }

        /// Whether the fast path's counts are due to be folded in at `now`
        /// (then they are taken as folded).
        #[inline]
        pub(crate) fn fold_due(&mut self, now: Duration) -> bool {
            let due = now.saturating_sub(self.folded_at) >= FOLD_EVERY;
            if due {
                self.folded_at = now;
            }
            due
        }

        /// Counts what the fast path served under a lease since the last
        /// report (none of it waited), and the use it timed, if any.
        pub(crate) fn lease_report<C>(&mut self, cell: &LeaseCell<C>) {
            let reuses = cell.unreported();
            if reuses > 0 {
                to_recorder(|| self.fast_path.increment(reuses));
                let count = usize::try_from(reuses).unwrap_or(usize::MAX);
                to_recorder(|| self.wait_time.record_many(0.0, count));
            }
            if let Some(took) = cell.timed_use() {
                to_recorder(|| self.use_time.record(took.as_secs_f64()));
            }
        }

        pub(crate) fn connect_started(&mut self, conn: ConnId, now: Duration) {
            self.opening.insert(conn, now);
        }

        pub(crate) fn connect_ended(&mut self, conn: ConnId, now: Duration, ok: bool) {
            if let Some(started) = self.opening.remove(&conn)
                && ok
            {
                to_recorder(|| self.create_time.record(seconds(now, started)));
            }
        }

        /// A checkout that started at `since` holds its connection at `now`.
        pub(crate) fn checked_out(&mut self, since: Duration, now: Duration) {
            to_recorder(|| self.wait_time.record(seconds(now, since)));
        }

        /// `conn` comes back from a checkout that no lease timed (a leased
        /// one's uses are its lease's): its use, from when the core saw it
        /// go out.
        pub(crate) fn checked_in_unleased(&mut self, core: &Core, conn: ConnId) {
            if let Some(since) = core.checked_out_since(conn) {
                to_recorder(|| self.use_time.record(seconds(core.now(), since)));
            }
        }
    }

    fn seconds(now: Duration, since: Duration) -> f64 {
        now.saturating_sub(since).as_secs_f64()
    }

    /// Units and descriptions, for the recorder (idempotent).
    fn describe() {
        let connections = Unit::Count;
        describe_gauge!(
            CONNECTION_COUNT,
            connections,
            "Open connections, by state (idle, used)"
        );
        describe_gauge!(
            IDLE_MIN,
            connections,
            "The fewest idle connections kept (min_size)"
        );
        describe_gauge!(MAX, connections, "The most connections opened (max_size)");
        describe_gauge!(
            PENDING_REQUESTS,
            Unit::Count,
            "Checkouts waiting for a connection"
        );
        describe_gauge!(PINS, Unit::Count, "Owners pinned to a connection");
        describe_gauge!(
            PIN_PENDING_REQUESTS,
            Unit::Count,
            "Owners waiting to be pinned"
        );
        describe_counter!(TIMEOUTS, Unit::Count, "Checkouts that timed out waiting");
        describe_counter!(
            RESETS,
            Unit::Count,
            "Resets of session state between owners"
        );
        describe_counter!(
            FAST_PATH_CHECKOUTS,
            Unit::Count,
            "Checkouts served without the pool lock"
        );
        describe_histogram!(CREATE_TIME, Unit::Seconds, "Time to open a connection");
        describe_histogram!(
            WAIT_TIME,
            Unit::Seconds,
            "Time a checkout waited for its connection"
        );
        describe_histogram!(
            USE_TIME,
            Unit::Seconds,
            "Time a connection was held per checkout"
        );
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use std::time::Duration;

    use crate::core::{ConnId, Core};
    use crate::driver::lease::LeaseCell;

    /// Without the `metrics` feature: nothing recorded, nothing stored.
    pub(crate) struct Metrics;

    impl Metrics {
        pub(crate) const NEEDS_CLOCK: bool = false;

        pub(crate) fn new(_name: &str, _core: &Core) -> Self {
            Metrics
        }
        #[inline(always)]
        pub(crate) fn publish(&mut self, _core: &Core) {}
        #[inline(always)]
        pub(crate) fn fold_due(&mut self, _now: Duration) -> bool {
            false
        }
        #[inline(always)]
        pub(crate) fn lease_report<C>(&mut self, _cell: &LeaseCell<C>) {}
        #[inline(always)]
        pub(crate) fn connect_started(&mut self, _conn: ConnId, _now: Duration) {}
        #[inline(always)]
        pub(crate) fn connect_ended(&mut self, _conn: ConnId, _now: Duration, _ok: bool) {}
        #[inline(always)]
        pub(crate) fn checked_out(&mut self, _since: Duration, _now: Duration) {}
        #[inline(always)]
        pub(crate) fn checked_in_unleased(&mut self, _core: &Core, _conn: ConnId) {}
    }
}
