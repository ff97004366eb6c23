//! "A Curious Concurrency Case" (../shared/seeds/002): 2 sockets, 4 threads.
//! Thread 1 holds socket A, thread 2 holds B, thread 3 waits for A and thread
//! 4 for B, queued [3, 4]. Thread 2 returns B. Under `Signal` thread 3 is
//! woken, cannot get A and sleeps again, so thread 4 sleeps while B is idle.
//! `Handoff` and `Broadcast` put B in thread 4's hands.

use pinpool::core::{
    Action, Checkout, Config, ConnId, Core, Health, Overflow, OwnerId, Pinning, Ticket, WakePolicy,
};

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);

fn owner(n: u64) -> OwnerId {
    OwnerId(n)
}

/// Threads 1 and 2 hold A and B; threads 3 and 4 wait for A and B, in that
/// order. Returns the core and the waiters' tickets.
fn scenario(wake: WakePolicy) -> (Core, Ticket, Ticket) {
    let config = Config {
        max_size: 2,
        pinning: Pinning::Strict,
        overflow: Overflow::LeastLoaded,
        wake,
        ..Config::default()
    };
    let mut core = Core::new(config).expect("valid config");
    for (thread, conn) in [(1, A), (2, B)] {
        let Checkout::Waiting(ticket) = core.checkout(owner(thread)) else {
            panic!("thread {thread}'s socket must be opened first");
        };
        assert_eq!(core.poll_action(), Some(Action::Open(conn)));
        core.connected(conn).unwrap();
        assert_eq!(core.poll_action(), Some(Action::Grant { ticket, conn }));
    }
    let Checkout::Waiting(t3) = core.checkout(owner(3)) else {
        panic!("A is busy")
    };
    let Checkout::Waiting(t4) = core.checkout(owner(4)) else {
        panic!("B is busy")
    };
    assert_eq!(
        core.pinned_conn(owner(3)),
        Some(A),
        "least-loaded binds 3 to A"
    );
    assert_eq!(core.pinned_conn(owner(4)), Some(B), "then 4 to B");
    assert_eq!(core.poll_action(), None);
    (core, t3, t4)
}

/// (idle connections, waiters, wake-ups, futile wake-ups).
fn tally(core: &Core) -> (usize, usize, u64, u64) {
    let state = core.state();
    let counters = state.counters;
    (
        state.idle,
        state.waiting,
        counters.wakeups,
        counters.futile_wakeups,
    )
}

/// Carries out wake-ups the way condition-variable waiters would: each
/// woken thread retries in the order it was woken.
fn run_wakeups(core: &mut Core) -> Vec<(Ticket, Checkout)> {
    let mut outcomes = Vec::new();
    while let Some(action) = core.poll_action() {
        match action {
            Action::Wake(ticket) => outcomes.push((ticket, core.retry(ticket).unwrap())),
            Action::Grant { ticket, conn } => outcomes.push((ticket, Checkout::Granted(conn))),
            other => panic!("unexpected {other:?}"),
        }
    }
    outcomes
}

#[test]
fn signal_strands_thread_4_while_b_is_idle() {
    let (mut core, t3, t4) = scenario(WakePolicy::Signal);
    core.checkin(B, Health::Healthy).unwrap();

    let outcomes = run_wakeups(&mut core);
    assert_eq!(
        outcomes,
        vec![(t3, Checkout::Waiting(t3))],
        "3 woke, 4 did not"
    );
    assert!(core.is_stranded(t4), "thread 4 sleeps while B is idle");
    assert_eq!(
        tally(&core),
        (1, 2, 1, 1),
        "B idle; 3 and 4 wait; 1 futile wake"
    );
}

#[test]
fn handoff_gives_b_to_thread_4_without_waking_thread_3() {
    let (mut core, t3, t4) = scenario(WakePolicy::Handoff);
    let before = core.state().counters;
    core.checkin(B, Health::Healthy).unwrap();

    assert_eq!(run_wakeups(&mut core), vec![(t4, Checkout::Granted(B))]);
    assert!(!core.is_stranded(t3));
    assert_eq!(
        tally(&core),
        (0, 1, 0, 0),
        "B in use; 3 waits; no wake at all"
    );
    assert_eq!(
        core.state().counters.handoffs - before.handoffs,
        1,
        "one direct grant"
    );
}

#[test]
fn broadcast_wakes_both_and_thread_4_gets_b() {
    let (mut core, t3, t4) = scenario(WakePolicy::Broadcast);
    core.checkin(B, Health::Healthy).unwrap();

    let outcomes = run_wakeups(&mut core);
    assert_eq!(
        outcomes,
        vec![(t3, Checkout::Waiting(t3)), (t4, Checkout::Granted(B))],
        "both woke; 3 went back to sleep, 4 took B"
    );
    assert_eq!(
        tally(&core),
        (0, 1, 2, 1),
        "B in use; 3 waits; 2 wakes, 1 futile"
    );
}

#[test]
fn signal_recovers_only_when_a_returns() {
    // The post's no-deadlock argument: once every socket is back, the woken
    // thread can always proceed.
    let (mut core, t3, t4) = scenario(WakePolicy::Signal);
    core.checkin(B, Health::Healthy).unwrap();
    run_wakeups(&mut core);
    core.checkin(A, Health::Healthy).unwrap();
    // The sleep order is now [4, 3]: 4 wakes first and takes B.
    assert_eq!(run_wakeups(&mut core), vec![(t4, Checkout::Granted(B))]);
    assert!(core.is_stranded(t3), "and now 3 sleeps while A is idle");
}
