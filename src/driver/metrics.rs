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

    use crate::core::{ConnId, Core, Occupancy};
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
        published: Option<Published>,
        /// When each connect in flight started.
        opening: HashMap<ConnId, Duration>,
        /// When each unleased checkout started.
        checked_out: HashMap<ConnId, Duration>,
        /// When the fast path's counts were last folded in.
        folded_at: Duration,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    struct Published {
        occupancy: Occupancy,
        max_size: usize,
        timeouts: u64,
        resets: u64,
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
                published: None,
                opening: HashMap::default(),
                checked_out: HashMap::default(),
                folded_at: Duration::ZERO,
            };
            metrics.publish(core);
            metrics
        }

        /// Sets the gauges from the core's counts and adds to the
        /// counters what the core's gained, when anything changed since
        /// the last call (every gauge then, so that a reader that resets
        /// them, as test recorders do, reads them all again).
        pub(crate) fn publish(&mut self, core: &Core) {
            let counters = core.counters();
            let now = Published {
                occupancy: core.occupancy(),
                max_size: core.config().max_size,
                timeouts: counters.timeouts,
                resets: counters.resets,
            };
            let before = self.published.replace(now);
            if before == Some(now) {
                return;
            }
            let o = now.occupancy;
            self.idle.set(o.idle as f64);
            self.used.set((o.in_use + o.resetting) as f64);
            self.pending.set(o.waiting as f64);
            self.pins.set(o.pinned_owners as f64);
            self.pin_pending.set(o.waiting_for_pin as f64);
            self.max.set(now.max_size as f64);
            self.idle_min.set(core.config().min_size as f64);
            let (timeouts, resets) = before.map_or((0, 0), |was| (was.timeouts, was.resets));
            self.timeouts.increment(now.timeouts - timeouts);
            self.resets.increment(now.resets - resets);
        }

        /// Whether the fast path's counts are due to be folded in at `now`
        /// (then they are taken as folded).
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
                self.fast_path.increment(reuses);
                let count = usize::try_from(reuses).unwrap_or(usize::MAX);
                self.wait_time.record_many(0.0, count);
            }
            if let Some(took) = cell.timed_use() {
                self.use_time.record(took.as_secs_f64());
            }
        }

        pub(crate) fn connect_started(&mut self, conn: ConnId, now: Duration) {
            self.opening.insert(conn, now);
        }

        pub(crate) fn connect_ended(&mut self, conn: ConnId, now: Duration, ok: bool) {
            if let Some(started) = self.opening.remove(&conn)
                && ok
            {
                self.create_time.record(seconds(now, started));
            }
        }

        /// A checkout that started at `since` holds its connection at `now`
        /// (`leased`: its later uses are the fast path's).
        pub(crate) fn checked_out(
            &mut self,
            conn: ConnId,
            since: Duration,
            now: Duration,
            leased: bool,
        ) {
            self.wait_time.record(seconds(now, since));
            if !leased {
                self.checked_out.insert(conn, now);
            }
        }

        pub(crate) fn checked_in(&mut self, conn: ConnId, now: Duration) {
            if let Some(since) = self.checked_out.remove(&conn) {
                self.use_time.record(seconds(now, since));
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
        pub(crate) fn checked_out(
            &mut self,
            _conn: ConnId,
            _since: Duration,
            _now: Duration,
            _leased: bool,
        ) {
        }
        #[inline(always)]
        pub(crate) fn checked_in(&mut self, _conn: ConnId, _now: Duration) {}
    }
}
