//! Property-based state-machine tests of the core.
//!
//! proptest-state-machine generates random sequences of every input the core
//! takes, for every pinning mode and overflow rule, once per wake policy. The
//! transitions are abstract ("check in the k-th held connection") and are
//! resolved against the system when applied, so generating them needs no
//! copy of the pool's logic. What judges the core is [`Model`]: plain
//! bookkeeping of what a driver can see (connections opened, idle, held,
//! closed; tickets waiting, asleep; pins from the core's events). Every
//! action the core emits is checked against it, and after every step the
//! invariants are checked:
//!
//! * each connection is exactly one of connecting / idle / held / closed,
//!   the model's counts equal the core's, and opened = live + closed + failed;
//! * never more than `max_size` connections nor `max_connecting` opening;
//! * pinned-owner counts per connection match;
//! * under Handoff and Broadcast no waiter sleeps while a connection it can
//!   use is idle (no lost wake-up);
//! * grants follow arrival order among waiters that could use the connection
//!   (FIFO) — under Handoff, and under Broadcast when woken threads run in the
//!   order they were woken;
//! * a departed owner leaves no pin and no ticket behind;
//! * an unpinned checkout never pins its owner, and never waits unserved
//!   while the pool has room: some connection is on its way.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pinpool::core::{
    Action, Checkout, Config, ConnId, Core, Event, FailReason, Health, Overflow, OwnerId, Pinning,
    Ticket, WakePolicy,
};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// Owner identities in play at once (threads or tasks).
const OWNERS: usize = 5;

/// Bounded's bound in the model: small, so sequences reach it.
const BYPASS_BOUND: u32 = 2;

const WAKE_POLICIES: [WakePolicy; 4] = [
    WakePolicy::Handoff,
    WakePolicy::Broadcast,
    WakePolicy::Signal,
    WakePolicy::Bounded(BYPASS_BOUND),
];

#[derive(Clone, Debug)]
struct Setup {
    config: Config,
    /// Whether woken waiters retry at once, in wake order (a condition
    /// variable whose woken threads run in turn), or only when a `Retry`
    /// transition picks them.
    eager_retry: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Checkout(usize),
    /// An unpinned checkout by a fresh owner (an async task outside a
    /// pinned scope).
    CheckoutUnpinned,
    Checkin {
        pick: usize,
        broken: bool,
    },
    Establish(usize),
    FailConnect(usize),
    Cancel(usize),
    Retry(usize),
    Unpin(usize),
    OwnerGone(usize),
    Clear,
    Close,
}

/// The generator; `WAKE` indexes [`WAKE_POLICIES`].
struct PoolRef<const WAKE: usize>;

impl<const WAKE: usize> ReferenceStateMachine for PoolRef<WAKE> {
    type State = Setup;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Setup> {
        let pinning = prop_oneof![
            Just(Pinning::Strict),
            Just(Pinning::Affinity),
            Just(Pinning::Off)
        ];
        let overflow = prop_oneof![
            Just(Overflow::LeastLoaded),
            Just(Overflow::Random),
            Just(Overflow::RandomIdle)
        ];
        (1..=4usize, 0..=2usize, 1..=3usize, pinning, overflow)
            .prop_flat_map(|(max_size, min_size, max_connecting, pinning, overflow)| {
                (any::<u64>(), any::<bool>()).prop_map(move |(seed, eager_retry)| Setup {
                    config: Config {
                        max_size,
                        min_size: min_size.min(max_size),
                        max_connecting,
                        pinning,
                        overflow,
                        wake: WAKE_POLICIES[WAKE],
                        seed,
                        record_events: true,
                    },
                    eager_retry,
                })
            })
            .boxed()
    }

    fn transitions(_: &Setup) -> BoxedStrategy<Op> {
        let pick = any::<usize>;
        prop_oneof![
            12 => (0..OWNERS).prop_map(Op::Checkout),
            4 => Just(Op::CheckoutUnpinned),
            10 => (pick(), prop::bool::weighted(0.15))
                .prop_map(|(pick, broken)| Op::Checkin { pick, broken }),
            8 => pick().prop_map(Op::Establish),
            2 => pick().prop_map(Op::FailConnect),
            3 => pick().prop_map(Op::Cancel),
            6 => pick().prop_map(Op::Retry),
            1 => (0..OWNERS).prop_map(Op::Unpin),
            2 => (0..OWNERS).prop_map(Op::OwnerGone),
            1 => Just(Op::Clear),
            1 => Just(Op::Close),
        ]
        .boxed()
    }

    fn apply(state: Setup, _: &Op) -> Setup {
        state
    }
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    owner: OwnerId,
    asleep: bool,
}

/// What a driver can see, kept independently of the core.
#[derive(Debug, Default)]
struct Model {
    connecting: BTreeSet<ConnId>,
    idle: BTreeSet<ConnId>,
    held: BTreeMap<ConnId, OwnerId>,
    opened: u64,
    closed: u64,
    failed: u64,
    timeouts: u64,
    waiting: BTreeMap<Ticket, Waiting>,
    pins: HashMap<OwnerId, ConnId>,
    /// Owners of unpinned checkouts: none may ever be pinned.
    unpinned: BTreeSet<OwnerId>,
}

struct Sut {
    core: Core,
    model: Model,
    setup: Setup,
    owners: [OwnerId; OWNERS],
    next_owner: u64,
}

impl Sut {
    fn config(&self) -> &Config {
        &self.setup.config
    }

    fn is_waiting(&self, owner: OwnerId) -> bool {
        self.model.waiting.values().any(|w| w.owner == owner)
    }

    /// Whether `owner` may use `conn`, by the model's view of pins.
    fn can_use(&self, owner: OwnerId, conn: ConnId) -> bool {
        match (self.config().pinning, self.model.pins.get(&owner)) {
            (Pinning::Strict, Some(&pinned)) => pinned == conn,
            _ => true,
        }
    }

    /// FIFO: no waiter older than `ticket` could have used `conn`.
    fn check_fifo(&self, ticket: Ticket, conn: ConnId) {
        let fifo = match self.config().wake {
            WakePolicy::Handoff => true,
            WakePolicy::Broadcast => self.setup.eager_retry,
            WakePolicy::Signal | WakePolicy::Bounded(_) => false,
        };
        if !fifo {
            return;
        }
        for (older, waiting) in self.model.waiting.range(..ticket) {
            assert!(
                !self.can_use(waiting.owner, conn),
                "{conn} went to {ticket} ahead of older {older} that could use it"
            );
        }
    }

    fn granted(&mut self, ticket: Ticket, conn: ConnId, owner: OwnerId) {
        self.check_fifo(ticket, conn);
        assert!(self.model.idle.remove(&conn), "{conn} granted but not idle");
        self.model.held.insert(conn, owner);
    }

    fn pick_ticket(&self, pick: usize, asleep: Option<bool>) -> Option<(Ticket, Waiting)> {
        let tickets: Vec<_> = (self.model.waiting.iter())
            .filter(|(_, w)| asleep.is_none_or(|a| w.asleep == a))
            .map(|(t, w)| (*t, *w))
            .collect();
        (!tickets.is_empty()).then(|| tickets[pick % tickets.len()])
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Checkout(i) => {
                let owner = self.owners[i];
                if self.is_waiting(owner) {
                    return; // a blocked thread cannot ask again
                }
                let holds_pinned = self
                    .core
                    .pinned_conn(owner)
                    .is_some_and(|c| self.model.held.get(&c) == Some(&owner));
                match self.core.checkout(owner) {
                    Checkout::Granted(conn) => self.granted(Ticket(u64::MAX), conn, owner),
                    Checkout::Waiting(ticket) => {
                        let asleep = self.config().wake != WakePolicy::Handoff;
                        self.model.waiting.insert(ticket, Waiting { owner, asleep });
                    }
                    Checkout::Failed(FailReason::PoolClosed) => assert!(self.core.is_closed()),
                    Checkout::Failed(FailReason::AlreadyHeld) => {
                        assert!(self.config().pinning == Pinning::Strict && holds_pinned)
                    }
                    Checkout::Failed(other) => panic!("checkout failed with {other:?}"),
                }
            }
            Op::CheckoutUnpinned => {
                self.next_owner += 1;
                let owner = OwnerId(self.next_owner);
                self.model.unpinned.insert(owner);
                match self.core.checkout_unpinned(owner) {
                    Checkout::Granted(conn) => self.granted(Ticket(u64::MAX), conn, owner),
                    Checkout::Waiting(ticket) => {
                        let asleep = self.config().wake != WakePolicy::Handoff;
                        self.model.waiting.insert(ticket, Waiting { owner, asleep });
                    }
                    Checkout::Failed(FailReason::PoolClosed) => assert!(self.core.is_closed()),
                    Checkout::Failed(other) => panic!("unpinned checkout failed with {other:?}"),
                }
            }
            Op::Checkin { pick, broken } => {
                let held: Vec<ConnId> = self.model.held.keys().copied().collect();
                if held.is_empty() {
                    return;
                }
                let conn = held[pick % held.len()];
                self.model.held.remove(&conn);
                self.model.idle.insert(conn); // until an action says otherwise
                let health = if broken {
                    Health::Broken
                } else {
                    Health::Healthy
                };
                self.core.checkin(conn, health).unwrap();
            }
            Op::Establish(pick) | Op::FailConnect(pick) => {
                let connecting: Vec<ConnId> = self.model.connecting.iter().copied().collect();
                if connecting.is_empty() {
                    return;
                }
                let conn = connecting[pick % connecting.len()];
                self.model.connecting.remove(&conn);
                if let Op::Establish(_) = op {
                    self.model.idle.insert(conn);
                    self.core.connected(conn).unwrap();
                } else {
                    self.model.failed += 1;
                    self.core.connect_failed(conn).unwrap();
                }
            }
            Op::Cancel(pick) => {
                if let Some((ticket, _)) = self.pick_ticket(pick, None) {
                    // Half the cancellations are deadlines passing.
                    if pick % 2 == 0 {
                        assert!(self.core.time_out(ticket), "{ticket} was waiting");
                        self.model.timeouts += 1;
                    } else {
                        assert!(self.core.cancel(ticket), "{ticket} was waiting");
                    }
                    self.model.waiting.remove(&ticket);
                }
            }
            Op::Retry(pick) => {
                if let Some((ticket, _)) = self.pick_ticket(pick, Some(false)) {
                    self.retry(ticket);
                }
            }
            Op::Unpin(i) => {
                if !self.is_waiting(self.owners[i]) {
                    self.core.unpin(self.owners[i]);
                }
            }
            Op::OwnerGone(i) => {
                let owner = self.owners[i];
                self.core.owner_gone(owner);
                self.model.waiting.retain(|_, w| w.owner != owner);
                self.next_owner += 1;
                self.owners[i] = OwnerId(self.next_owner);
                self.drain();
                assert_eq!(self.core.pinned_conn(owner), None, "{owner} left a pin");
                assert!(!self.model.pins.contains_key(&owner), "no PinReclaimed");
            }
            Op::Clear => self.core.clear(),
            Op::Close => self.core.close(),
        }
        self.drain();
    }

    fn retry(&mut self, ticket: Ticket) {
        let owner = self.model.waiting[&ticket].owner;
        match self.core.retry(ticket).unwrap() {
            Checkout::Granted(conn) => {
                self.model.waiting.remove(&ticket);
                self.granted(ticket, conn, owner);
            }
            Checkout::Waiting(_) => {
                let asleep = self.config().wake != WakePolicy::Handoff;
                self.model.waiting.get_mut(&ticket).unwrap().asleep = asleep;
            }
            Checkout::Failed(reason) => panic!("retry failed with {reason:?}"),
        }
    }

    /// Carries out the core's actions, validating each against the model.
    /// Events come first: they carry the pins the FIFO check needs. With
    /// `eager_retry`, woken waiters retry once the waker's actions are all
    /// carried out, in wake order, as threads woken by a condition variable
    /// run after the waker releases the lock.
    fn drain(&mut self) {
        let mut woken = Vec::new();
        loop {
            while let Some(event) = self.core.poll_event() {
                self.observe(event);
            }
            let Some(action) = self.core.poll_action() else {
                // A woken waiter may have been granted or failed meanwhile.
                woken.retain(|t| self.model.waiting.get(t).is_some_and(|w| !w.asleep));
                if woken.is_empty() {
                    return;
                }
                let ticket = woken.remove(0);
                self.retry(ticket);
                continue;
            };
            match action {
                Action::Open(conn) => {
                    assert!(
                        !self.model.connecting.contains(&conn) && !self.model.idle.contains(&conn)
                    );
                    self.model.connecting.insert(conn);
                    self.model.opened += 1;
                }
                Action::Close { conn, .. } => {
                    assert!(
                        self.model.idle.remove(&conn),
                        "{conn} closed while not idle"
                    );
                    self.model.closed += 1;
                }
                Action::Grant { ticket, conn } => {
                    let waiting = self
                        .model
                        .waiting
                        .remove(&ticket)
                        .expect("granted a non-waiter");
                    self.granted(ticket, conn, waiting.owner);
                }
                Action::Wake(ticket) => {
                    let waiting = self
                        .model
                        .waiting
                        .get_mut(&ticket)
                        .expect("woke a non-waiter");
                    assert!(waiting.asleep, "{ticket} woken twice");
                    waiting.asleep = false;
                    if self.setup.eager_retry {
                        woken.push(ticket);
                    }
                }
                Action::Fail { ticket, reason } => {
                    assert!(
                        self.model.waiting.remove(&ticket).is_some(),
                        "failed a non-waiter"
                    );
                    assert!(matches!(
                        reason,
                        FailReason::PoolClosed | FailReason::ConnectionError
                    ));
                }
            }
        }
    }

    fn observe(&mut self, event: Event) {
        match event {
            Event::Pinned { owner, conn } => {
                assert!(
                    !self.model.unpinned.contains(&owner),
                    "an unpinned checkout pinned {owner}"
                );
                self.model.pins.insert(owner, conn);
            }
            Event::Unpinned { owner, conn } | Event::PinReclaimed { owner, conn } => {
                assert_eq!(self.model.pins.remove(&owner), Some(conn));
            }
            _ => {}
        }
    }

    fn check_invariants(&self) {
        let state = self.core.state();
        let model = &self.model;
        let config = self.config();
        assert_eq!(state.connecting, model.connecting.len(), "connecting");
        assert_eq!(state.idle, model.idle.len(), "idle");
        assert_eq!(state.in_use, model.held.len(), "in use");
        assert_eq!(state.waiting, model.waiting.len(), "waiting");
        let counters = state.counters;
        assert_eq!(counters.opened, model.opened);
        assert_eq!(counters.closed, model.closed);
        assert_eq!(counters.connect_failures, model.failed);
        assert_eq!(counters.timeouts, model.timeouts);
        let live = (model.connecting.len() + model.idle.len() + model.held.len()) as u64;
        assert_eq!(
            model.opened,
            live + model.closed + model.failed,
            "conservation"
        );

        assert!(state.total() <= config.max_size, "{state:?} over max_size");
        assert!(
            state.connecting <= config.max_connecting,
            "over max_connecting"
        );
        if !state.closed {
            assert!(state.total() >= config.min_size, "below min_size");
            let unpinned_waits = model
                .waiting
                .values()
                .any(|w| model.unpinned.contains(&w.owner));
            if unpinned_waits && state.total() < config.max_size {
                assert!(
                    state.pending + state.connecting > 0,
                    "an unpinned checkout waits with room and nothing on its way: {state:?}"
                );
            }
        }

        assert_eq!(state.pinned_owners, model.pins.len(), "pinned owners");
        let mut per_conn: BTreeMap<ConnId, usize> = BTreeMap::new();
        for conn in model.pins.values() {
            *per_conn.entry(*conn).or_default() += 1;
        }
        let core_pins: BTreeMap<ConnId, usize> =
            state.pins.iter().filter(|(_, n)| *n > 0).copied().collect();
        assert_eq!(core_pins, per_conn, "pins per connection");

        // Handoff and Broadcast: no waiter sleeps beside an idle connection
        // it can use. Bounded: beside every idle connection, some waiter that
        // can use it is awake (the oldest was woken).
        let every_waiter_awake = matches!(config.wake, WakePolicy::Handoff | WakePolicy::Broadcast);
        for (ticket, waiting) in &model.waiting {
            let sleeping = waiting.asleep || config.wake == WakePolicy::Handoff;
            let usable = model.idle.iter().any(|&c| self.can_use(waiting.owner, c));
            assert!(
                !(every_waiter_awake && sleeping && usable),
                "lost wake-up: {ticket} sleeps while a connection it can use is idle"
            );
            assert_eq!(self.core.is_stranded(*ticket), waiting.asleep && usable);
        }
        let stranded = model
            .idle
            .iter()
            .filter(|&&conn| {
                let mut eligible = model
                    .waiting
                    .values()
                    .filter(|w| self.can_use(w.owner, conn))
                    .peekable();
                eligible.peek().is_some() && eligible.all(|w| w.asleep)
            })
            .count();
        assert_eq!(self.core.stranded(), stranded, "stranded connections");
        if config.wake != WakePolicy::Signal {
            assert_eq!(stranded, 0, "lost wake-up beside an idle connection");
        }
        if let WakePolicy::Bounded(bound) = config.wake {
            let most = u64::from(bound) + config.max_size as u64;
            assert!(
                counters.max_bypass <= most,
                "bypass {} > {most}",
                counters.max_bypass
            );
        }
        if config.wake == WakePolicy::Handoff {
            assert_eq!(counters.wakeups, 0);
            assert_eq!(counters.max_bypass, 0, "Handoff never lets a request barge");
        }
    }
}

struct PoolTest<const WAKE: usize>;

impl<const WAKE: usize> StateMachineTest for PoolTest<WAKE> {
    type SystemUnderTest = Sut;
    type Reference = PoolRef<WAKE>;

    fn init_test(setup: &Setup) -> Sut {
        let mut sut = Sut {
            core: Core::new(setup.config.clone()).expect("generated configs are valid"),
            model: Model::default(),
            setup: setup.clone(),
            owners: std::array::from_fn(|i| OwnerId(i as u64)),
            next_owner: OWNERS as u64,
        };
        sut.drain();
        sut
    }

    fn apply(mut sut: Sut, _: &Setup, op: Op) -> Sut {
        sut.apply(op);
        sut
    }

    fn check_invariants(sut: &Sut, _: &Setup) {
        sut.check_invariants();
    }
}

// 4 × 3,400 = 13,600 generated sequences of up to 60 inputs per CI run.
prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 3_400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn handoff_core_matches_model(sequential 1..60 => PoolTest<0>);

    #[test]
    fn broadcast_core_matches_model(sequential 1..60 => PoolTest<1>);

    #[test]
    fn signal_core_matches_model(sequential 1..60 => PoolTest<2>);

    #[test]
    fn bounded_core_matches_model(sequential 1..60 => PoolTest<3>);
}

#[test]
fn invalid_configs_are_rejected_with_typed_errors() {
    use pinpool::core::ConfigError;
    let base = Config::default();
    let zero = Config {
        max_size: 0,
        min_size: 0,
        ..base.clone()
    };
    assert_eq!(Core::new(zero).unwrap_err(), ConfigError::ZeroMaxSize);
    let min_above = Config {
        max_size: 1,
        min_size: 2,
        ..base.clone()
    };
    assert!(matches!(
        Core::new(min_above),
        Err(ConfigError::MinAboveMax { .. })
    ));
    let no_connects = Config {
        max_connecting: 0,
        ..base.clone()
    };
    assert_eq!(
        Core::new(no_connects).unwrap_err(),
        ConfigError::ZeroMaxConnecting
    );
    let zero_bound = Config {
        wake: WakePolicy::Bounded(0),
        ..base
    };
    assert_eq!(
        Core::new(zero_bound).unwrap_err(),
        ConfigError::ZeroBypassBound
    );
}
