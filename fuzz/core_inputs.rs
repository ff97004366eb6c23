//! The core driven by arbitrary sequences of every input it takes, with
//! any configuration it accepts: a typed error for an input it cannot
//! take, never a panic, and after every input every connection it opened
//! is connecting, idle, checked out, being reset, closed or failed, and
//! every pin is on a connection that exists.
//! (The property tests in tests/core_model.rs check the decisions against
//! a model; this looks for the inputs they never draw.)
//!
//! Shared by the fuzz target `core_inputs` and `tests/fuzz_regressions.rs`,
//! which replays every input in `fuzz/regressions/core_inputs/`.

use std::collections::BTreeSet;
use std::time::Duration;

use arbitrary::Arbitrary;
use pinpool::core::{
    Action, Checkout, Config, ConnId, Core, Health, Overflow, OwnerId, Pinning, Reset, Ticket,
    WakePolicy,
};

#[derive(Arbitrary, Debug)]
pub struct Input {
    max_size: u8,
    min_size: u8,
    max_connecting: u8,
    pinning: u8,
    wake: u8,
    reset: u8,
    overflow: u8,
    lifetimes: bool,
    ops: Vec<Op>,
}

/// An input; `u8`s pick an owner, or one of the connections or tickets
/// the driver knows (modulo their number), or, past that, any id at all.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Op {
    Checkout(u8),
    CheckoutUnpinned(u8),
    TryCheckout(u8, bool),
    Checkin(u8, bool),
    Connected(u8),
    ConnectFailed(u8),
    ResetDone(u8, bool),
    Cancel(u8),
    TimeOut(u8),
    Retry(u8),
    Unpin(u8),
    OwnerGone(u8),
    Advance(u16),
    Maintain,
    Clear(bool),
    Ready,
    Close,
    Resize(u8),
}

fn config(input: &Input) -> Config {
    let max_size = usize::from(input.max_size % 8);
    Config {
        max_size,
        min_size: usize::from(input.min_size % 4).min(max_size),
        max_connecting: usize::from(input.max_connecting % 4),
        pinning: [
            Pinning::Strict,
            Pinning::Exclusive,
            Pinning::Affinity,
            Pinning::Off,
        ][usize::from(input.pinning % 4)],
        wake: [
            WakePolicy::Handoff,
            WakePolicy::Signal,
            WakePolicy::Broadcast,
            WakePolicy::Bounded(2),
            WakePolicy::Eventual {
                bypasses: 2,
                period: Duration::from_millis(3),
                min_hold: Duration::from_millis(1),
            },
        ][usize::from(input.wake % 5)],
        reset: [
            Reset::OwnerChange,
            Reset::Never,
            Reset::EveryUnpinnedCheckin,
        ][usize::from(input.reset % 3)],
        overflow: [
            Overflow::LeastLoaded,
            Overflow::Random,
            Overflow::RandomIdle,
        ][usize::from(input.overflow % 3)],
        max_lifetime: input.lifetimes.then(|| Duration::from_millis(20)),
        // Jittered for half the inputs with lifetimes: those whose
        // `max_size` has its top bit set, which the size (mod 8) leaves
        // unused, so that the stored regressions still read as they did.
        max_lifetime_jitter: if input.lifetimes && input.max_size >= 128 {
            Duration::from_millis(8)
        } else {
            Duration::ZERO
        },
        idle_timeout: input.lifetimes.then(|| Duration::from_millis(10)),
        leak_threshold: input.lifetimes.then(|| Duration::from_millis(15)),
        connect_timeout: input.lifetimes.then(|| Duration::from_millis(5)),
        connect_backoff: input.lifetimes.then(|| Duration::from_millis(40)),
        ..Config::default()
    }
}

/// What a driver knows: the connections it opens, holds and resets, the
/// tickets it waits on and those that left the line.
#[derive(Default)]
struct Driver {
    connecting: BTreeSet<ConnId>,
    held: BTreeSet<ConnId>,
    resetting: BTreeSet<ConnId>,
    waiting: BTreeSet<Ticket>,
    left: BTreeSet<Ticket>,
}

/// The `i`th of `set` (counting round), if it has any.
fn nth_of<T: Copy>(set: &BTreeSet<T>, i: usize) -> Option<T> {
    set.iter().nth(i.checked_rem(set.len())?).copied()
}

/// The `pick`th of `known`, or past them, an id nobody was given.
fn pick<T: Copy>(known: &BTreeSet<T>, pick: u8, any: impl Fn(u64) -> T) -> T {
    let i = usize::from(pick);
    (i < 200)
        .then(|| nth_of(known, i))
        .flatten()
        .unwrap_or_else(|| any(i as u64))
}

impl Driver {
    /// The `pick`th ticket waiting, or past them one that has left (its
    /// slot reused, maybe): only the core makes tickets, so a stale one
    /// is the wrong ticket a driver can pass. `None` if there is neither.
    fn pick_ticket(&self, pick: u8) -> Option<Ticket> {
        let i = usize::from(pick);
        (i < 200)
            .then(|| nth_of(&self.waiting, i))
            .flatten()
            .or_else(|| nth_of(&self.left, i))
    }

    /// `ticket` has its outcome.
    fn leave(&mut self, ticket: Ticket) {
        self.waiting.remove(&ticket);
        self.left.insert(ticket);
    }

    fn answer(&mut self, checkout: Checkout) {
        match checkout {
            Checkout::Granted(conn) => {
                self.held.insert(conn);
            }
            Checkout::Waiting(ticket) => {
                self.waiting.insert(ticket);
            }
            Checkout::Failed(_) => {}
        }
    }

    fn drain(&mut self, core: &mut Core) {
        while let Some(action) = core.poll_action() {
            match action {
                Action::Open(conn) => {
                    self.connecting.insert(conn);
                }
                Action::Close { conn, .. } => {
                    self.held.remove(&conn);
                    self.resetting.remove(&conn);
                    self.connecting.remove(&conn);
                }
                Action::Reset(conn) => {
                    self.resetting.insert(conn);
                }
                Action::Grant { ticket, conn } => {
                    self.leave(ticket);
                    self.held.insert(conn);
                }
                Action::Fail { ticket, .. } => self.leave(ticket),
                Action::Wake(_) | Action::Interrupt(_) | Action::ShutDown => {}
            }
        }
        while core.poll_event().is_some() {}
    }
}

/// Drives a core with `input`; panics on what must never happen.
pub fn run(input: Input) {
    let Ok(mut core) = Core::new(config(&input)) else {
        return; // refused with a typed error: fine
    };
    let mut driver = Driver::default();
    let mut now = Duration::ZERO;
    driver.drain(&mut core);
    for op in input.ops {
        let owner = |i: u8| OwnerId(u64::from(i % 6));
        match op {
            Op::Checkout(i) => {
                let checkout = core.checkout(owner(i));
                driver.answer(checkout);
            }
            Op::CheckoutUnpinned(i) => {
                let checkout = core.checkout_unpinned(OwnerId(100 + u64::from(i)));
                driver.answer(checkout);
            }
            Op::TryCheckout(i, pins) => {
                let checkout = core.try_checkout(owner(i), pins);
                assert!(
                    !matches!(checkout, Checkout::Waiting(_)),
                    "a try never waits"
                );
                driver.answer(checkout);
            }
            Op::Checkin(p, broken) => {
                let conn = pick(&driver.held, p, ConnId);
                let health = if broken {
                    Health::Broken
                } else {
                    Health::Healthy
                };
                if core.checkin(conn, health).is_ok() {
                    driver.held.remove(&conn);
                }
            }
            Op::Connected(p) => {
                let conn = pick(&driver.connecting, p, ConnId);
                if core.connected(conn).is_ok() {
                    driver.connecting.remove(&conn);
                }
            }
            Op::ConnectFailed(p) => {
                let conn = pick(&driver.connecting, p, ConnId);
                if core.connect_failed(conn).is_ok() {
                    driver.connecting.remove(&conn);
                }
            }
            Op::ResetDone(p, ok) => {
                let conn = pick(&driver.resetting, p, ConnId);
                let health = if ok { Health::Healthy } else { Health::Broken };
                if core.reset_done(conn, health).is_ok() {
                    driver.resetting.remove(&conn);
                }
            }
            Op::Cancel(p) => {
                if let Some(ticket) = driver.pick_ticket(p)
                    && core.cancel(ticket)
                {
                    driver.leave(ticket);
                }
            }
            Op::TimeOut(p) => {
                if let Some(ticket) = driver.pick_ticket(p)
                    && core.time_out(ticket)
                {
                    driver.leave(ticket);
                }
            }
            Op::Retry(p) => {
                if let Some(ticket) = driver.pick_ticket(p)
                    && let Ok(Checkout::Granted(conn)) = core.retry(ticket)
                {
                    driver.leave(ticket);
                    driver.held.insert(conn);
                }
            }
            Op::Unpin(i) => core.unpin(owner(i)),
            Op::OwnerGone(i) => core.owner_gone(owner(i)),
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms % 50));
                core.advance(now);
            }
            Op::Maintain => while core.maintain() {},
            Op::Clear(interrupt) => core.clear(interrupt),
            Op::Ready => core.ready(),
            Op::Close => core.close(),
            Op::Resize(n) => {
                let _ = core.resize(usize::from(n % 8));
            }
        }
        driver.drain(&mut core);
        let state = core.state();
        let c = state.counters;
        let live = (state.connecting + state.idle + state.in_use + state.resetting) as u64;
        assert_eq!(
            c.opened,
            live + c.closed + c.connect_failures,
            "a connection lost: {state:?}"
        );
        let pinned: usize = state.pins.iter().map(|&(_, owners)| owners).sum();
        assert_eq!(
            state.pinned_owners, pinned,
            "a pin on a connection that is gone, after {op:?}: {state:?}"
        );
    }
}
