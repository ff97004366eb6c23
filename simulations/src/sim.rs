//! A discrete-event simulation of threads sharing a pool, under virtual time.
//!
//! Simulated threads are owners of the **real** pinpool core; this module only
//! schedules their events (ask, use, return, sleep, retry when woken) and
//! measures. Connections open instantly. Events at the same instant run in
//! the order they were scheduled, so a thread woken by a checkin runs after
//! everything already due at that instant — like a thread woken from a
//! condition variable, which runs after the waker releases the lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use pinpool::core::{
    Action, Checkout, Config, ConnId, Core, Health, Overflow, OwnerId, Pinning, Ticket, WakePolicy,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Virtual time in microseconds.
pub type Micros = u64;

/// One second of virtual time.
pub const SECOND: Micros = 1_000_000;

/// `seconds` of virtual time.
fn micros(seconds: f64) -> Micros {
    (seconds * SECOND as f64).round() as Micros
}

/// How long something takes: uniform over `[min, max]` seconds, both
/// positive (the simulator relies on nothing but wake-ups being due at the
/// instant they happen).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Duration {
    /// Shortest, in seconds.
    pub min: f64,
    /// Longest, in seconds.
    pub max: f64,
}

/// Whether durations are whole seconds (the 2013 script's ticks) or real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// Whole seconds, uniform over the integers in `[min, max]` (which the
    /// CLI requires to be whole).
    Discrete,
    /// Real-valued seconds, uniform over `[min, max]`.
    Continuous,
}

impl Duration {
    fn sample(&self, clock: Clock, rng: &mut StdRng) -> Micros {
        let seconds = match clock {
            Clock::Discrete => rng.random_range(self.min as u64..=self.max as u64) as f64,
            Clock::Continuous if self.min == self.max => self.min,
            Clock::Continuous => rng.random_range(self.min..=self.max),
        };
        micros(seconds)
    }
}

/// A pool configuration the simulation compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    /// What a checkin does for waiters.
    pub wake: WakePolicy,
    /// How threads are bound to sockets.
    pub pinning: Pinning,
    /// New-thread assignment at `max_size` (meaningful under Strict only).
    pub overflow: Overflow,
}

/// The experiment's fixed parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// Sockets (the pool's `max_size`).
    pub sockets: usize,
    /// How long a thread uses its socket.
    pub use_time: Duration,
    /// How long a thread sleeps between uses.
    pub sleep_time: Duration,
    /// Whole seconds or real-valued durations.
    pub clock: Clock,
    /// Virtual time simulated per run, in seconds.
    pub horizon: f64,
    /// Initial seconds left out of the measurement.
    pub warmup: f64,
    /// Uses after which a thread ends its session (its owner is gone and
    /// it asks again as a new owner, as a worker thread does per unit of
    /// work); 0: sessions never end (the 2013 model).
    pub session_uses: u32,
}

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// Socket-seconds nobody used, as a share of sockets × measured time, in %.
    pub unused_pct: f64,
    /// Every checkout's wait (request to grant), in seconds, of the checkouts
    /// asked for in the measured window, and of those still waiting at the
    /// horizon with the wait so far (a thread that never got a socket must
    /// not vanish from the figures).
    pub waits: Vec<f64>,
    /// Checkins in the whole run.
    pub checkins: u64,
    /// Threads unparked (wake-ups plus direct hand-offs).
    pub wakeups: u64,
    /// Wake-ups after which the thread still could not proceed.
    pub futile_wakeups: u64,
    /// The most times one waiter was passed over by a later request.
    pub max_bypass: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The thread asks for its socket.
    Ask,
    /// The thread has finished using its socket.
    Return,
    /// The thread was woken and retries.
    Retry(Ticket),
}

/// Simulates `threads` threads over `workload` with one pool configuration.
/// Deterministic for a given `seed`.
pub fn run(workload: &Workload, series: Series, threads: usize, seed: u64) -> Measurement {
    Simulation::new(workload, series, threads, seed).run()
}

struct Simulation<'a> {
    workload: &'a Workload,
    core: Core,
    rng: StdRng,
    /// (time, order, thread, step), earliest first, FIFO among equals.
    queue: BinaryHeap<Reverse<(Micros, u64, usize, Step)>>,
    /// Threads woken at `now`, in wake order. They run after every event
    /// already due at `now` (nothing else is ever scheduled at `now`, as
    /// use and sleep times are positive), so a FIFO is the heap's order
    /// at a fraction of the cost of a Broadcast herd.
    woken: VecDeque<(usize, Ticket)>,
    scheduled: u64,
    now: Micros,
    /// The measured window, `[warmup, horizon)`.
    warmup: Micros,
    horizon: Micros,
    /// When each thread last asked, and the socket it holds.
    asked_at: Vec<Micros>,
    /// Each thread's owner id and uses in its current session.
    owners: Vec<(OwnerId, u32)>,
    next_owner: u64,
    holding: Vec<Option<ConnId>>,
    waiting: HashMap<Ticket, usize>,
    used: Micros,
    waits: Vec<f64>,
    /// Threads a checkin unparked: Broadcast/Signal wakes, Handoff grants.
    unparked_by_checkins: u64,
}

impl<'a> Simulation<'a> {
    fn new(workload: &'a Workload, series: Series, threads: usize, seed: u64) -> Self {
        let config = Config {
            max_size: workload.sockets,
            max_connecting: workload.sockets,
            pinning: series.pinning,
            overflow: series.overflow,
            wake: series.wake,
            seed,
            ..Config::default()
        };
        let mut sim = Simulation {
            workload,
            core: Core::new(config).expect("the CLI validates the pool size"),
            rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            queue: BinaryHeap::new(),
            woken: VecDeque::new(),
            scheduled: 0,
            now: 0,
            warmup: micros(workload.warmup),
            horizon: micros(workload.horizon),
            asked_at: vec![0; threads],
            owners: (0..threads).map(|t| (OwnerId(t as u64), 0)).collect(),
            next_owner: threads as u64,

            holding: vec![None; threads],
            waiting: HashMap::new(),
            used: 0,
            waits: Vec::new(),
            unparked_by_checkins: 0,
        };
        for thread in 0..threads {
            sim.schedule(0, thread, Step::Ask);
        }
        sim
    }

    fn next_event(&mut self) -> Option<(Micros, usize, Step)> {
        let due_now = matches!(self.queue.peek(), Some(Reverse((at, ..))) if *at == self.now);
        if !due_now && let Some((thread, ticket)) = self.woken.pop_front() {
            return Some((self.now, thread, Step::Retry(ticket)));
        }
        let Reverse((at, _, thread, step)) = self.queue.pop()?;
        Some((at, thread, step))
    }

    fn schedule(&mut self, at: Micros, thread: usize, step: Step) {
        self.scheduled += 1;
        self.queue.push(Reverse((at, self.scheduled, thread, step)));
    }

    fn run(mut self) -> Measurement {
        while let Some((at, thread, step)) = self.next_event() {
            if at > self.horizon {
                break;
            }
            self.now = at;
            let owner = self.owners[thread].0;
            match step {
                Step::Ask => {
                    self.asked_at[thread] = at;
                    match self.core.checkout(owner) {
                        Checkout::Granted(conn) => self.start_using(thread, conn),
                        Checkout::Waiting(ticket) => {
                            self.waiting.insert(ticket, thread);
                        }
                        Checkout::Failed(reason) => unreachable!("never fails: {reason}"),
                    }
                }
                Step::Retry(ticket) => {
                    // Err: not waiting any more, a grant already reached it.
                    if let Ok(Checkout::Granted(conn)) = self.core.retry(ticket) {
                        self.waiting.remove(&ticket);
                        self.start_using(thread, conn);
                    }
                }
                Step::Return => {
                    let conn = self.holding[thread].take().expect("returns follow grants");
                    self.core.checkin(conn, Health::Healthy).expect("held");
                    self.end_session_if_done(thread);
                    let sleep = self
                        .workload
                        .sleep_time
                        .sample(self.workload.clock, &mut self.rng);
                    self.schedule(at + sleep, thread, Step::Ask);
                }
            }
            self.carry_out_actions(step == Step::Return);
        }
        self.measure()
    }

    /// Carries out the core's actions; `after_checkin` counts the threads
    /// they unpark as the checkin's doing.
    fn carry_out_actions(&mut self, after_checkin: bool) {
        while let Some(action) = self.core.poll_action() {
            if after_checkin && matches!(action, Action::Grant { .. } | Action::Wake(_)) {
                self.unparked_by_checkins += 1;
            }
            match action {
                Action::Open(conn) => self.core.connected(conn).expect("just opened"),
                // Resets, like connects, take no virtual time.
                Action::Reset(conn) => self
                    .core
                    .reset_done(conn, Health::Healthy)
                    .expect("just asked for"),
                Action::Grant { ticket, conn } => {
                    let thread = self.waiting.remove(&ticket).expect("granted tickets wait");
                    self.start_using(thread, conn);
                }
                Action::Wake(ticket) => {
                    self.woken.push_back((self.waiting[&ticket], ticket));
                }
                Action::Close { .. } | Action::Interrupt(_) | Action::ShutDown => {}
                Action::Fail { reason, .. } => unreachable!("never fails: {reason}"),
            }
        }
    }

    /// Counts a use of `thread`'s session and ends the session (its owner
    /// is gone, its pin released) once it has had its uses.
    fn end_session_if_done(&mut self, thread: usize) {
        let limit = self.workload.session_uses;
        let (owner, uses) = &mut self.owners[thread];
        *uses += 1;
        if limit == 0 || *uses < limit {
            return;
        }
        self.core.owner_gone(*owner);
        *owner = OwnerId(self.next_owner);
        *uses = 0;
        self.next_owner += 1;
    }

    fn start_using(&mut self, thread: usize, conn: ConnId) {
        let use_time = self
            .workload
            .use_time
            .sample(self.workload.clock, &mut self.rng);
        let (start, end) = (self.now, self.now + use_time);
        self.used += end.min(self.horizon).saturating_sub(start.max(self.warmup));
        if self.asked_at[thread] >= self.warmup {
            self.waits
                .push((self.now - self.asked_at[thread]) as f64 / SECOND as f64);
        }
        self.holding[thread] = Some(conn);
        self.schedule(end, thread, Step::Return);
    }

    fn measure(mut self) -> Measurement {
        // Still waiting, in ticket order (the output is deterministic):
        // however early it asked, a thread that waited through the
        // measured window counts.
        let mut still_waiting: Vec<_> = self.waiting.iter().collect();
        still_waiting.sort_unstable();
        for (_, &thread) in still_waiting {
            let asked = self.asked_at[thread];
            self.waits
                .push((self.horizon - asked) as f64 / SECOND as f64);
        }
        let window = self.horizon - self.warmup;
        let capacity = window as f64 * self.workload.sockets as f64;
        let counters = self.core.state().counters;
        Measurement {
            unused_pct: 100.0 * (1.0 - self.used as f64 / capacity),
            waits: self.waits,
            checkins: counters.checkins,
            wakeups: self.unparked_by_checkins,
            futile_wakeups: counters.futile_wakeups,
            max_bypass: counters.max_bypass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(session_uses: u32) -> Workload {
        Workload {
            sockets: 4,
            use_time: Duration { min: 1.0, max: 5.0 },
            sleep_time: Duration { min: 1.0, max: 1.0 },
            clock: Clock::Continuous,
            horizon: 400.0,
            warmup: 20.0,
            session_uses,
        }
    }

    fn series(pinning: Pinning) -> Series {
        Series {
            wake: WakePolicy::Handoff,
            pinning,
            overflow: Overflow::LeastLoaded,
        }
    }

    /// A session per use gives the pin back at every return: exclusive
    /// pins then serve exactly as a plain FIFO pool does.
    #[test]
    fn a_session_per_use_measures_as_a_plain_pool() {
        let exclusive = run(&workload(1), series(Pinning::Exclusive), 12, 7);
        let off = run(&workload(1), series(Pinning::Off), 12, 7);
        assert_eq!(exclusive, off);
    }

    /// Sessions that never end keep their sockets: the owners beyond the
    /// sockets wait for ever (counted up to the horizon), and the sockets
    /// idle through their owners' sleeps, where shared pins fill them.
    #[test]
    fn sessions_that_never_end_reserve_their_sockets() {
        let exclusive = run(&workload(0), series(Pinning::Exclusive), 12, 7);
        let shared = run(&workload(0), series(Pinning::Strict), 12, 7);
        assert!(exclusive.unused_pct > 10.0, "{}", exclusive.unused_pct);
        assert!(shared.unused_pct < 1.0, "{}", shared.unused_pct);
        let longest = exclusive.waits.iter().copied().fold(0.0, f64::max);
        assert!(longest > 300.0, "the starved owners count: {longest}");
    }
}
