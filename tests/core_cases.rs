//! Single cases of the core's rules that the property model
//! (`core_model`) leaves unpinned, found by mutation testing
//! (`tests/mutants.sh`): each test fails for a mutant that survived the
//! rest of the fast suite. The model judges what a driver can see; these
//! pin down the counters it does not compare, the inputs it never makes
//! wrongly, and the answers of `may_stash`.

use std::collections::BTreeSet;
use std::time::Duration;

use pinpool::core::{
    Action, Checkout, CloseReason, Config, ConnId, Core, Event, FailReason, Health, InputError,
    LeaseScope, Overflow, OwnerId, Pinning, Reset, Ticket, WakePolicy,
};

fn core(config: Config) -> Core {
    Core::new(config).expect("a valid config")
}

/// A `Strict` core of `max_size` connections, every other setting the
/// default.
fn strict(max_size: usize) -> Core {
    core(Config {
        max_size,
        pinning: Pinning::Strict,
        ..Config::default()
    })
}

/// Carries out the core's actions, reporting every connect as a success,
/// until it asks for nothing more; returns the other actions, in order.
fn connect_all(core: &mut Core) -> Vec<Action> {
    let mut others = Vec::new();
    while let Some(action) = core.poll_action() {
        match action {
            Action::Open(conn) => core.connected(conn).expect("it was connecting"),
            other => others.push(other),
        }
    }
    others
}

/// The connection the core next asks to open, passing over its other
/// actions.
fn next_open(core: &mut Core) -> Option<ConnId> {
    std::iter::from_fn(|| core.poll_action()).find_map(|action| match action {
        Action::Open(conn) => Some(conn),
        _ => None,
    })
}

/// A checkout that waits for a connect, then is granted the connection.
fn first_checkout(core: &mut Core, owner: OwnerId) -> ConnId {
    let Checkout::Waiting(ticket) = core.checkout(owner) else {
        panic!("nothing is open yet: {owner:?} waits")
    };
    let granted = connect_all(core)
        .into_iter()
        .find_map(|action| match action {
            Action::Grant { ticket: t, conn } if t == ticket => Some(conn),
            _ => None,
        });
    granted.expect("the connection opened for it is granted")
}

/// Every counter the drivers' metrics report moves once per event: waits,
/// cancels, connections established, reclaimed pins and failed resets.
#[test]
fn the_counters_count_each_event_once() {
    let mut core = core(Config {
        max_size: 1,
        pinning: Pinning::Exclusive,
        ..Config::default()
    });
    let (alice, bob, carol) = (OwnerId(1), OwnerId(2), OwnerId(3));
    let conn = first_checkout(&mut core, alice);
    let Checkout::Waiting(_) = core.checkout(bob) else {
        panic!("alice's session is the only connection")
    };
    let Checkout::Waiting(carols) = core.checkout(carol) else {
        panic!("so carol waits too")
    };
    assert!(core.cancel(carols));
    core.checkin(conn, Health::Healthy).unwrap();
    assert!(connect_all(&mut core).is_empty(), "still alice's session");
    core.owner_gone(alice);
    assert_eq!(connect_all(&mut core), vec![Action::Reset(conn)]);
    core.reset_done(conn, Health::Broken).unwrap();
    let actions = connect_all(&mut core);
    assert!(
        matches!(actions.last(), Some(Action::Grant { .. })),
        "bob gets the replacement: {actions:?}"
    );
    let counters = core.state().counters;
    assert_eq!(counters.waits, 3, "alice (for the connect), bob, carol");
    assert_eq!(counters.cancelled, 1);
    assert_eq!(counters.established, 2);
    assert_eq!(counters.reclaimed_pins, 1);
    assert_eq!(counters.reset_failures, 1);
    assert_eq!(counters.resets, 1);
}

/// A strictly pinned owner that asks again while it holds its connection
/// fails at once with `AlreadyHeld`: waiting for its own connection would
/// wait for ever.
#[test]
fn a_second_checkout_by_the_holder_fails_at_once() {
    let mut core = core(Config::default());
    let alice = OwnerId(1);
    first_checkout(&mut core, alice);
    assert_eq!(
        core.checkout(alice),
        Checkout::Failed(FailReason::AlreadyHeld)
    );
    assert_eq!(core.state().waiting, 0);
}

/// `reset_done` is refused for a connection that is not being reset.
#[test]
fn a_reset_reported_for_a_connection_not_resetting_is_refused() {
    let mut core = core(Config {
        pinning: Pinning::Exclusive,
        ..Config::default()
    });
    let conn = first_checkout(&mut core, OwnerId(1));
    assert!(matches!(
        core.reset_done(conn, Health::Healthy),
        Err(InputError::WrongConnState { .. })
    ));
    core.checkin(conn, Health::Healthy).unwrap();
    assert!(matches!(
        core.reset_done(conn, Health::Healthy),
        Err(InputError::WrongConnState { .. })
    ));
}

/// What `may_stash` answers for a held connection nobody waits for: by
/// pinning mode, by whether the checkout pins, by reset policy, and no
/// wherever the core must see every checkin.
#[test]
fn may_stash_follows_pinning_resets_and_what_the_core_must_see() {
    let held = |config: Config, pins: bool| {
        let mut core = core(Config {
            max_size: 1,
            ..config
        });
        let owner = OwnerId(1);
        let checkout = if pins {
            core.checkout(owner)
        } else {
            core.checkout_unpinned(owner)
        };
        assert!(
            matches!(checkout, Checkout::Waiting(_)),
            "nothing is open yet"
        );
        let actions = connect_all(&mut core);
        let Some(&Action::Grant { conn, .. }) = actions.first() else {
            panic!("granted: {actions:?}")
        };
        (core, conn)
    };
    let off = Config {
        pinning: Pinning::Off,
        ..Config::default()
    };
    // Under Off nobody pins: a checkout that asked to may still stash.
    let (core, conn) = held(off, true);
    assert!(core.may_stash(conn, true));
    // Strict: an unpinned checkout of a connection nobody is pinned to
    // may; a pinning one may not (its pin must be taken under the lock).
    let (core, conn) = held(Config::default(), false);
    assert!(core.may_stash(conn, false));
    assert!(!core.may_stash(conn, true));
    // Nor an unpinned checkout of someone's connection: its owners' pins
    // must see it come back.
    let (mut core, conn) = held(Config::default(), true);
    core.checkin(conn, Health::Healthy).unwrap();
    assert_eq!(core.checkout_unpinned(OwnerId(2)), Checkout::Granted(conn));
    assert!(!core.may_stash(conn, false), "pinned to its first owner");
    // A reset after every unpinned checkin must run: never stashed.
    let reset = Config {
        reset: Reset::EveryUnpinnedCheckin,
        ..off
    };
    // Checkins that wake sleepers, events to record and leaks to watch
    // all need the core to see each checkin.
    let seen = [
        reset,
        Config {
            wake: WakePolicy::Broadcast,
            ..off
        },
        Config {
            wake: WakePolicy::Signal,
            ..off
        },
        Config {
            record_events: true,
            ..off
        },
        Config {
            leak_threshold: Some(Duration::from_secs(1)),
            ..off
        },
    ];
    for config in seen {
        let (core, conn) = held(config, false);
        assert!(!core.may_stash(conn, false), "{config:?}");
    }
}

/// Under `RandomIdle` overflow, an owner that found nothing idle waits
/// unbound; woken, it binds to a random idle connection, as a new owner
/// would, not to whichever was returned last.
#[test]
fn a_woken_unbound_owner_binds_to_a_random_idle_connection() {
    let picks: BTreeSet<usize> = (0..16)
        .map(|seed| {
            let mut core = core(Config {
                max_size: 3,
                pinning: Pinning::Strict,
                overflow: Overflow::RandomIdle,
                wake: WakePolicy::Broadcast,
                seed,
                ..Config::default()
            });
            let held: Vec<ConnId> = (1..=3)
                .map(|owner| first_checkout(&mut core, OwnerId(owner)))
                .collect();
            let late = OwnerId(4);
            let Checkout::Waiting(ticket) = core.checkout(late) else {
                panic!("all three are held: it waits")
            };
            assert_eq!(core.pinned_conn(late), None, "nothing idle to bind to");
            for &conn in &held {
                core.checkin(conn, Health::Healthy).unwrap();
            }
            assert!(connect_all(&mut core).contains(&Action::Wake(ticket)));
            let Ok(Checkout::Granted(conn)) = core.retry(ticket) else {
                panic!("three are idle")
            };
            assert_eq!(core.pinned_conn(late), Some(conn), "bound to it");
            held.iter().position(|&c| c == conn).expect("one of them")
        })
        .collect();
    assert!(picks.len() > 1, "always the same pick: {picks:?}");
}

/// Only sleepers count as sleeping: under `Broadcast` every waiter sleeps
/// until a checkin wakes it, under `Handoff` none ever does.
#[test]
fn sleeping_counts_the_waiters_asleep() {
    for (wake, asleep) in [(WakePolicy::Broadcast, 2), (WakePolicy::Handoff, 0)] {
        let mut core = core(Config {
            max_size: 1,
            pinning: Pinning::Off,
            wake,
            ..Config::default()
        });
        let conn = first_checkout(&mut core, OwnerId(1));
        for owner in [2, 3] {
            assert!(matches!(
                core.checkout(OwnerId(owner)),
                Checkout::Waiting(_)
            ));
        }
        assert_eq!(core.sleeping(), asleep, "{wake:?}");
        core.checkin(conn, Health::Healthy).unwrap();
        connect_all(&mut core);
        assert_eq!(core.sleeping(), 0, "{wake:?}: woken or served");
    }
}

/// A paused or closed pool fails every checkout whatever is leased, so a
/// checkout there depends on no lease.
#[test]
fn a_paused_or_closed_pool_scopes_no_lease() {
    let config = Config {
        max_size: 1,
        ..Config::default()
    };
    let mut paused = core(Config {
        start_paused: true,
        ..config
    });
    let mut closed = core(config);
    closed.close();
    let mut open = core(config);
    for core in [&mut paused, &mut closed, &mut open] {
        connect_all(core);
    }
    let owner = OwnerId(1);
    assert_eq!(
        open.checkout_scope(owner, true),
        LeaseScope::All,
        "it would wait"
    );
    assert_eq!(paused.checkout_scope(owner, true), LeaseScope::None);
    assert_eq!(closed.checkout_scope(owner, true), LeaseScope::None);
}

/// What a checkout's answer depends on when a connection it can use is
/// idle: no lease at all (under `Affinity`, its own connection; under
/// `Off`, any).
#[test]
fn an_idle_connection_it_can_use_scopes_no_lease() {
    for pinning in [Pinning::Affinity, Pinning::Off] {
        let mut core = core(Config {
            max_size: 2,
            pinning,
            ..Config::default()
        });
        let alice = OwnerId(1);
        let conn = first_checkout(&mut core, alice);
        assert_eq!(
            core.checkout_scope(alice, true),
            LeaseScope::All,
            "{pinning:?}"
        );
        core.checkin(conn, Health::Healthy).unwrap();
        assert_eq!(
            core.checkout_scope(alice, true),
            LeaseScope::None,
            "{pinning:?}"
        );
    }
}

/// A new owner in a full pool is bound to the least loaded connection,
/// and among equally loaded ones to an idle one, which it gets at once.
#[test]
fn a_latecomer_is_bound_to_an_idle_connection_first() {
    let mut core = core(Config {
        max_size: 2,
        pinning: Pinning::Strict,
        overflow: Overflow::LeastLoaded,
        ..Config::default()
    });
    let busy = first_checkout(&mut core, OwnerId(1));
    let idle = first_checkout(&mut core, OwnerId(2));
    core.checkin(idle, Health::Healthy).unwrap();
    assert_eq!(core.checkout(OwnerId(3)), Checkout::Granted(idle));
    assert_ne!(core.pinned_conn(OwnerId(3)), Some(busy));
}

/// Each checkout the core fails at once counts once in `failed`.
#[test]
fn every_checkout_failed_at_once_is_counted() {
    let mut core = core(Config {
        start_paused: true,
        ..Config::default()
    });
    for owner in [OwnerId(1), OwnerId(2)] {
        assert!(matches!(
            core.checkout(owner),
            Checkout::Failed(FailReason::Paused)
        ));
    }
    assert_eq!(core.state().counters.failed, 2);
}

/// Under `Strict` the replacement for a broken connection serves anyone,
/// so it is opened on behalf of the oldest waiter that could use it — an
/// unpinned one, older than the owner bound to the broken connection —
/// and a failed connect fails that waiter, not the younger one.
#[test]
fn a_replacement_is_asked_for_by_the_oldest_waiter_it_could_serve() {
    let mut core = strict(1);
    let (alice, bob) = (OwnerId(1), OwnerId(2));
    let conn = first_checkout(&mut core, alice);
    let Checkout::Waiting(unpinned) = core.checkout_unpinned(OwnerId(3)) else {
        panic!("the only connection is alice's")
    };
    let Checkout::Waiting(_) = core.checkout(bob) else {
        panic!("bob is bound to it and waits")
    };
    core.checkin(conn, Health::Broken).unwrap();
    let replacement = next_open(&mut core).expect("a replacement for the owners pinned to it");
    core.connect_failed(replacement).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Fail {
            ticket: unpinned,
            reason: FailReason::ConnectionError
        }),
        "the oldest waiter it could serve asked for it"
    );
}

/// A `Strict` pool of two whose connections alice and bob (owners 1 and
/// 2) hold, one each: the core and their connections.
fn alice_and_bob_hold_one_each() -> (Core, ConnId, ConnId) {
    let mut core = strict(2);
    let alices = first_checkout(&mut core, OwnerId(1));
    let bobs = first_checkout(&mut core, OwnerId(2));
    (core, alices, bobs)
}

/// A `Strict` pool of two where alice holds her connection, bob's broke,
/// and bob and carol, pinned to it, wait for its replacement, whose
/// connect is in flight. Returns the core, alice's connection, the
/// replacement and the tickets bob and carol wait with.
fn waiting_for_a_replacement() -> (Core, ConnId, ConnId, Ticket, Ticket) {
    let (mut core, alices, bobs) = alice_and_bob_hold_one_each();
    let (bob, carol) = (OwnerId(2), OwnerId(3));
    core.checkin(bobs, Health::Healthy).unwrap();
    assert_eq!(
        core.checkout(carol),
        Checkout::Granted(bobs),
        "the pool is full: carol shares the idle one, bob's"
    );
    let Checkout::Waiting(bob_waits) = core.checkout(bob) else {
        panic!("carol holds bob's connection")
    };
    core.checkin(bobs, Health::Broken).unwrap();
    let replacement = next_open(&mut core).expect("a replacement for bob and carol");
    let Checkout::Waiting(carol_waits) = core.checkout(carol) else {
        panic!("carol's connection is being replaced")
    };
    (core, alices, replacement, bob_waits, carol_waits)
}

/// Under `Strict`, owners whose replacement connection fails to connect
/// share a live connection, as owners bound in a full pool do, instead of
/// waiting through every retry of a server that refuses connects while
/// the live connections serve everyone else.
#[test]
fn owners_whose_replacement_fails_to_connect_share_a_live_connection() {
    let (mut core, alices, replacement, bob_waits, carol_waits) = waiting_for_a_replacement();
    core.checkin(alices, Health::Healthy).unwrap();
    core.connect_failed(replacement).unwrap();
    let actions: Vec<_> = std::iter::from_fn(|| core.poll_action()).collect();
    assert_eq!(
        actions,
        vec![
            Action::Fail {
                ticket: bob_waits,
                reason: FailReason::ConnectionError
            },
            Action::Grant {
                ticket: carol_waits,
                conn: alices
            }
        ],
        "bob asked for it and is told; carol is served by the live one, \
         and nothing is opened again"
    );
    let pins = core.state().pins;
    assert_eq!(pins, vec![(alices, 3)], "all three owners share it");
}

/// They share it for good (their pins have served them), but an owner
/// that unpins is a new owner again: its next checkout opens a
/// connection of its own while the pool has room, which is how a
/// long-lived thread leaves a shared connection after an outage.
#[test]
fn an_owner_rebound_after_a_failed_connect_that_unpins_gets_its_own_again() {
    let (mut core, alices, replacement, _, _) = waiting_for_a_replacement();
    core.checkin(alices, Health::Healthy).unwrap();
    core.connect_failed(replacement).unwrap();
    while core.poll_action().is_some() {}
    core.checkin(alices, Health::Healthy).unwrap(); // carol's turn ends
    let bob = OwnerId(2);
    core.unpin(bob);
    let Checkout::Waiting(_) = core.checkout(bob) else {
        panic!("bob's own connection is opening")
    };
    let own = next_open(&mut core).expect("a connection for bob");
    assert_eq!(core.state().pins, vec![(alices, 2), (own, 1)]);
}

/// ... but not onto a connection checked out with nobody waiting for it:
/// a driver may have leased that one to its owner (`Core::may_lease`),
/// whose checkins it then keeps from the core, and a waiter moved there
/// would wait until something else ended the lease. They wait for a
/// replacement instead.
#[test]
fn owners_whose_replacement_fails_to_connect_skip_a_connection_nobody_awaits() {
    let (mut core, alices, replacement, bob_waits, _) = waiting_for_a_replacement();
    core.connect_failed(replacement).unwrap();
    let actions: Vec<_> = std::iter::from_fn(|| core.poll_action()).collect();
    let [Action::Fail { ticket, .. }, Action::Open(another)] = actions[..] else {
        panic!("bob is told and another replacement opens: {actions:?}")
    };
    assert_eq!(ticket, bob_waits);
    let pins = core.state().pins;
    assert_eq!(
        pins,
        vec![(alices, 1), (another, 2)],
        "bob and carol's pins moved"
    );
}

/// ... nor onto a connection of an earlier generation (before a
/// `clear`): it closes as it comes back, and the owners moved there would
/// move again. Here only such a connection is awaited, so bob waits for
/// another replacement of the current generation.
#[test]
fn owners_whose_replacement_fails_to_connect_skip_a_stale_connection() {
    let (mut core, alices, bobs) = alice_and_bob_hold_one_each();
    let (bob, carol) = (OwnerId(2), OwnerId(3));
    core.clear(false);
    core.ready();
    let Checkout::Waiting(_) = core.checkout(carol) else {
        panic!("the pool is full and both are held")
    };
    assert_eq!(
        core.state().pins,
        vec![(alices, 2), (bobs, 1)],
        "carol waits for alice's"
    );
    core.checkin(bobs, Health::Healthy).unwrap();
    let replacement = next_open(&mut core).expect("bob's stale connection is replaced");
    let Checkout::Waiting(_) = core.checkout(bob) else {
        panic!("bob's replacement is connecting")
    };
    core.connect_failed(replacement).unwrap();
    let another = next_open(&mut core).expect("another replacement, not alice's stale one");
    assert_eq!(core.state().pins, vec![(alices, 2), (another, 1)]);
}

/// A driver runs maintenance and reports its clock only when the config
/// says it must: each option that needs them says so on its own.
#[test]
fn maintenance_and_the_clock_are_needed_exactly_when_an_option_needs_them() {
    let timeless = Config {
        min_size: 0,
        wake: WakePolicy::Handoff,
        record_events: false,
        connect_backoff: None,
        max_lifetime: None,
        idle_timeout: None,
        leak_threshold: None,
        connect_timeout: None,
        ..Config::default()
    };
    assert!(!timeless.needs_maintenance() && !timeless.needs_clock());
    let second = Some(Duration::from_secs(1));
    let deadlines = [
        Config {
            max_lifetime: second,
            ..timeless
        },
        Config {
            idle_timeout: second,
            ..timeless
        },
        Config {
            leak_threshold: second,
            ..timeless
        },
        Config {
            connect_timeout: second,
            ..timeless
        },
    ];
    for config in deadlines {
        assert!(config.needs_maintenance(), "{config:?}");
        assert!(config.needs_clock(), "{config:?}");
    }
    let refills = Config {
        min_size: 1,
        ..timeless
    };
    assert!(refills.needs_maintenance() && !refills.needs_clock());
    let timed = [
        Config {
            record_events: true,
            ..timeless
        },
        Config {
            wake: WakePolicy::default(),
            ..timeless
        },
        Config {
            connect_backoff: second,
            ..timeless
        },
    ];
    for config in timed {
        assert!(config.needs_clock(), "{config:?}");
        assert!(!config.needs_maintenance(), "{config:?}");
    }
}

/// A cleared pool refuses checkouts until `ready`, which resumes it; a
/// closed pool stays closed whatever `ready` says.
#[test]
fn ready_resumes_a_cleared_pool_but_never_a_closed_one() {
    let mut core = core(Config {
        record_events: true,
        ..Config::default()
    });
    let conn = first_checkout(&mut core, OwnerId(1));
    core.checkin(conn, Health::Healthy).unwrap();
    core.clear(false);
    assert_eq!(core.state().generation, 1, "older connections are stale");
    assert_eq!(
        connect_all(&mut core),
        vec![Action::Close {
            conn,
            reason: CloseReason::Stale
        }]
    );
    assert_eq!(
        core.checkout(OwnerId(2)),
        Checkout::Failed(FailReason::Paused)
    );
    core.ready();
    assert!(matches!(core.checkout(OwnerId(2)), Checkout::Waiting(_)));
    core.clear(false);
    core.close();
    while core.poll_event().is_some() {}
    core.ready();
    assert_eq!(core.poll_event(), None, "no PoolReady for a closed pool");
    assert!(core.is_paused() && core.is_closed());
}

/// Under eventual fairness a checkin leaves the connection idle beside
/// a waiter that can use any connection, and wakes that waiter.
#[test]
fn an_idle_connection_wakes_a_waiter_that_could_use_any() {
    let mut core = core(Config {
        max_size: 1,
        pinning: Pinning::Off,
        wake: WakePolicy::Bounded(4),
        ..Config::default()
    });
    let conn = first_checkout(&mut core, OwnerId(1));
    let Checkout::Waiting(ticket) = core.checkout(OwnerId(2)) else {
        panic!("the only connection is taken")
    };
    core.checkin(conn, Health::Healthy).unwrap();
    assert_eq!(connect_all(&mut core), vec![Action::Wake(ticket)]);
}

/// `max_size` may be as large as the limit, and no larger.
#[test]
fn the_size_limit_is_inclusive() {
    let at = Config {
        max_size: Config::SIZE_LIMIT,
        ..Config::default()
    };
    assert!(at.validate().is_ok());
    let above = Config {
        max_size: Config::SIZE_LIMIT + 1,
        ..Config::default()
    };
    assert!(above.validate().is_err());
}

/// Idle connections past `idle_timeout` close down to `min_size`, never
/// below it.
#[test]
fn idle_connections_close_down_to_min_size() {
    let mut core = core(Config {
        max_size: 3,
        min_size: 1,
        pinning: Pinning::Off,
        idle_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    });
    connect_all(&mut core); // min_size
    let conns: Vec<ConnId> = (1..=3)
        .map(|owner| match core.checkout(OwnerId(owner)) {
            Checkout::Granted(conn) => conn,
            Checkout::Waiting(_) => first_granted(&mut core),
            failed => panic!("{failed:?}"),
        })
        .collect();
    for conn in conns {
        core.checkin(conn, Health::Healthy).unwrap();
    }
    core.advance(Duration::from_secs(20));
    core.maintain();
    let closed: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(
        closed.iter().all(|a| matches!(
            a,
            Action::Close {
                reason: CloseReason::Idle,
                ..
            }
        )),
        "{closed:?}"
    );
    assert_eq!(core.state().idle, 1);
}

/// A checkout any connection can serve takes the one idle most recently
/// (its socket warmest, and the others left to idle out), whatever the
/// connections' ids.
#[test]
fn a_checkout_takes_the_connection_idle_most_recently() {
    let mut core = core(Config {
        max_size: 3,
        pinning: Pinning::Off,
        ..Config::default()
    });
    let conns: Vec<ConnId> = (1..=3)
        .map(|owner| first_checkout(&mut core, OwnerId(owner)))
        .collect();
    // Checked in out of id order: 2, 3, then 1.
    for &conn in [&conns[1], &conns[2], &conns[0]] {
        core.checkin(conn, Health::Healthy).unwrap();
    }
    let taken: Vec<ConnId> = (4..=6)
        .map(|owner| match core.checkout(OwnerId(owner)) {
            Checkout::Granted(conn) => conn,
            other => panic!("three are idle: {other:?}"),
        })
        .collect();
    assert_eq!(taken, [conns[0], conns[2], conns[1]], "newest idle first");
}

/// Connects what the core asks for; the connection it then grants.
fn first_granted(core: &mut Core) -> ConnId {
    connect_all(core)
        .into_iter()
        .find_map(|action| match action {
            Action::Grant { conn, .. } => Some(conn),
            _ => None,
        })
        .expect("a grant")
}

/// A connection's expiry is its birth plus `max_lifetime`, once it is
/// established; it lives up to the instant, and closes at it.
#[test]
fn a_connection_expires_at_birth_plus_lifetime() {
    let mut core = core(Config {
        max_lifetime: Some(Duration::from_secs(60)),
        ..Config::default()
    });
    let Checkout::Waiting(_) = core.checkout(OwnerId(1)) else {
        panic!("nothing open yet")
    };
    let Some(Action::Open(conn)) = core.poll_action() else {
        panic!("it opens one")
    };
    assert_eq!(core.expires_at(conn), None, "not established yet");
    core.advance(Duration::from_secs(5));
    core.connected(conn).unwrap();
    assert_eq!(core.expires_at(conn), Some(Duration::from_secs(65)));
    connect_all(&mut core);
    core.advance(Duration::from_secs(64));
    core.checkin(conn, Health::Healthy).unwrap();
    assert_eq!(connect_all(&mut core), vec![], "still young");
    core.advance(Duration::from_secs(65));
    core.maintain();
    assert_eq!(
        connect_all(&mut core).first(),
        Some(&Action::Close {
            conn,
            reason: CloseReason::Lifetime
        })
    );
    let timeless = self::core(Config::default());
    assert_eq!(timeless.expires_at(conn), None, "no such connection");
}

/// A core with `n` connections opened and established at second 0,
/// living `lifetime` less their share of `jitter`; returns the core and
/// the connections' expiries, earliest first.
fn opened_together(
    n: usize,
    seed: u64,
    lifetime: u64,
    jitter: Duration,
) -> (Core, Vec<(Duration, ConnId)>) {
    let mut core = core(Config {
        max_size: n,
        min_size: n,
        max_connecting: n,
        seed,
        max_lifetime: Some(Duration::from_secs(lifetime)),
        max_lifetime_jitter: jitter,
        ..Config::default()
    });
    assert_eq!(connect_all(&mut core), vec![]);
    assert_eq!(core.state().idle, n);
    let mut expiries: Vec<_> = (1..=n as u64)
        .map(ConnId)
        .map(|conn| (core.expires_at(conn).expect("established"), conn))
        .collect();
    expiries.sort();
    (core, expiries)
}

/// With a lifetime jitter, connections opened together expire spread
/// over the whole jitter below `max_lifetime`, never two close together:
/// the gaps between consecutive expiries are within a factor of three of
/// an even spread's (`jitter / n`), for any number of connections and
/// any seed; and the seed moves them.
#[test]
fn connections_opened_together_expire_spread_over_the_jitter() {
    let (lifetime, jitter) = (600, Duration::from_secs(60));
    let latest = Duration::from_secs(lifetime);
    for seed in [0, 1, 7, u64::MAX] {
        for n in [1, 2, 3, 8, 20, 64] {
            let (_, expiries) = opened_together(n, seed, lifetime, jitter);
            let times: Vec<Duration> = expiries.iter().map(|&(at, _)| at).collect();
            assert!(
                times.iter().all(|&at| at > latest - jitter && at <= latest),
                "seed {seed}, {n}: outside the jitter: {times:?}"
            );
            let even = jitter / n as u32;
            for pair in times.windows(2) {
                assert!(
                    pair[1] - pair[0] >= even / 3,
                    "seed {seed}, {n}: bunched: {times:?}"
                );
            }
            if n >= 8 {
                assert!(
                    times[n - 1] - times[0] >= jitter - 3 * even,
                    "seed {seed}, {n}: not over the whole jitter: {times:?}"
                );
            }
        }
    }
    let (_, zero) = opened_together(8, 0, lifetime, jitter);
    let (_, one) = opened_together(8, 1, lifetime, jitter);
    assert_ne!(zero, one, "the seed moves the shares");
    let (_, exact) = opened_together(8, 0, lifetime, Duration::ZERO);
    assert!(
        exact.iter().all(|&(at, _)| at == latest),
        "no jitter, no spread"
    );
}

/// A connection with a share of the jitter lives up to its own expiry,
/// not `max_lifetime`: maintenance is scheduled for it and closes it
/// then, one at a time, and its replacement lives a lifetime from its
/// own birth. (That no checkout is granted one past it, the property
/// model checks.)
#[test]
fn each_connection_closes_at_its_own_expiry() {
    let (mut core, expiries) = opened_together(4, 0, 60, Duration::from_secs(20));
    for (index, &(at, conn)) in expiries.iter().enumerate() {
        assert_eq!(
            core.poll_timeout(),
            Some(at),
            "maintenance is due at the next expiry"
        );
        core.advance(at - Duration::from_nanos(1));
        core.maintain();
        assert_eq!(connect_all(&mut core), vec![], "{conn} lives until {at:?}");
        core.advance(at);
        core.maintain();
        let actions = connect_all(&mut core);
        assert_eq!(
            actions,
            vec![Action::Close {
                conn,
                reason: CloseReason::Lifetime
            }],
            "expiry {index}"
        );
    }
    // Their replacements, opened at the last expiry, live from then.
    let last = expiries[3].0;
    let Checkout::Granted(young) = core.checkout(OwnerId(1)) else {
        panic!("min_size refilled")
    };
    assert!(core.expires_at(young).expect("established") > last + Duration::from_secs(40));
}

/// The leak threshold schedules maintenance for a checkout not yet
/// reported, reports it once with how long it was held, and then
/// schedules nothing more; a closed pool schedules nothing.
#[test]
fn a_leak_is_scheduled_reported_once_and_then_forgotten() {
    let mut core = core(Config {
        leak_threshold: Some(Duration::from_secs(5)),
        record_events: true,
        ..Config::default()
    });
    core.advance(Duration::from_secs(1));
    let conn = first_checkout(&mut core, OwnerId(1));
    assert_eq!(core.poll_timeout(), Some(Duration::from_secs(6)));
    core.advance(Duration::from_secs(6));
    assert_eq!(core.poll_timeout(), None, "due now is not after now");
    core.advance(Duration::from_secs(8));
    while core.poll_event().is_some() {}
    core.maintain();
    let leaks: Vec<Event> = std::iter::from_fn(|| core.poll_event())
        .filter(|e| matches!(e, Event::ConnectionLeaked { .. }))
        .collect();
    assert_eq!(
        leaks,
        vec![Event::ConnectionLeaked {
            conn,
            owner: OwnerId(1),
            held: Duration::from_secs(7)
        }]
    );
    assert_eq!(core.poll_timeout(), None, "reported once");
    core.checkin(conn, Health::Healthy).unwrap();
    let mut closing = self::core(Config {
        leak_threshold: Some(Duration::from_secs(5)),
        ..Config::default()
    });
    let _held = first_checkout(&mut closing, OwnerId(1));
    assert!(closing.poll_timeout().is_some());
    closing.close(); // the held connection stays until it comes back
    assert_eq!(
        closing.poll_timeout(),
        None,
        "a closed pool schedules nothing"
    );
}

/// Room appearing (a connection closed broken) opens a connection for a
/// waiter that could use any, under every mode that has such waiters.
#[test]
fn room_opens_a_connection_for_a_waiter_that_could_use_any() {
    for pinning in [Pinning::Off, Pinning::Affinity, Pinning::Exclusive] {
        let mut core = core(Config {
            max_size: 2,
            pinning,
            ..Config::default()
        });
        let first = first_checkout(&mut core, OwnerId(1));
        first_checkout(&mut core, OwnerId(2));
        let Checkout::Waiting(third) = core.checkout(OwnerId(3)) else {
            panic!("{pinning:?}: both connections are taken")
        };
        core.checkin(first, Health::Broken).unwrap();
        if pinning == Pinning::Exclusive {
            core.owner_gone(OwnerId(1)); // its session ends with it
        }
        let granted = connect_all(&mut core)
            .into_iter()
            .any(|action| matches!(action, Action::Grant { ticket, .. } if ticket == third));
        assert!(
            granted,
            "{pinning:?}: the waiter was served by a new connection"
        );
    }
}

/// A connect result for a connection that is not connecting is the
/// driver contradicting the core: refused, changing nothing.
#[test]
fn a_connect_result_for_no_connect_in_flight_is_refused() {
    let mut core = core(Config::default());
    let before = core.state();
    assert!(core.connected(ConnId(7)).is_err());
    assert!(core.connect_failed(ConnId(7)).is_err());
    assert_eq!(core.state(), before);
}

/// A state prints as one line an operator can read, closed or not.
#[test]
fn a_state_prints_its_counts() {
    let mut core = core(Config::default());
    first_checkout(&mut core, OwnerId(1));
    let open = core.state().to_string();
    assert!(open.starts_with("0 idle, 1 in use, "), "{open}");
    assert!(open.contains("1 pinned owners") && !open.ends_with("closed"));
    core.close();
    assert!(core.state().to_string().ends_with(", closed"));
}

/// Owners share a connection's lease only under `Strict`, which pins
/// several to one connection for life; the holder the core then records
/// refuses nobody, the one the driver notes is refused, and the shared
/// connection checks in and goes to its waiter as any other.
#[test]
fn only_strict_co_owners_share_a_lease_and_its_holder_refuses_nobody() {
    for pinning in [Pinning::Exclusive, Pinning::Affinity, Pinning::Off] {
        let mut core = core(Config {
            max_size: 1,
            pinning,
            ..Config::default()
        });
        let conn = first_checkout(&mut core, OwnerId(1));
        assert!(!core.may_share_lease(OwnerId(1), conn), "{pinning:?}");
    }
    let mut core = core(Config {
        max_size: 1,
        ..Config::default()
    });
    let (alice, bob) = (OwnerId(1), OwnerId(2));
    let conn = first_checkout(&mut core, alice);
    let Checkout::Waiting(ticket) = core.checkout(bob) else {
        panic!("alice holds the only connection")
    };
    assert!(core.cancel(ticket), "bob is pinned to it now");
    assert!(core.may_share_lease(bob, conn) && core.may_share_lease(alice, conn));
    // Alice parked it in her lease and bob took it: the core cannot tell.
    core.note_lease_holder(conn, None).unwrap();
    let Checkout::Waiting(ticket) = core.checkout(alice) else {
        panic!("alice, not holding it, waits for it")
    };
    assert!(!core.may_share_lease(bob, conn), "alice waits for it");
    core.checkin(conn, Health::Healthy).unwrap();
    let granted = Action::Grant { ticket, conn };
    assert_eq!(core.poll_action(), Some(granted));
    core.note_lease_holder(conn, Some(alice)).unwrap();
    let held = Checkout::Failed(FailReason::AlreadyHeld);
    assert_eq!(core.checkout(alice), held);
    core.checkin(conn, Health::Healthy).unwrap();
    let refused = core.note_lease_holder(conn, Some(alice));
    assert!(matches!(refused, Err(InputError::WrongConnState { .. })));
}

/// A Strict owner bound to a busy connection by the overflow rule, whose
/// pin has not served it yet, takes a connection nobody is pinned to as
/// soon as one is free (here: when its last owner goes, once reset), and
/// its pin moves there; once served, it is bound for life. Before this,
/// a thread bound just before another's exit freed a connection waited
/// beside it for as long as the busy one was held.
#[test]
fn an_owner_its_pin_has_not_served_takes_a_connection_nobody_is_pinned_to() {
    let (mut core, first, second) = alice_and_bob_hold_one_each();
    let (alice, bob, carol) = (OwnerId(1), OwnerId(2), OwnerId(3));
    // Both busy: carol is bound to one of them, and waits.
    let Checkout::Waiting(carols) = core.checkout(carol) else {
        panic!("both connections are held")
    };
    let bound = core.pinned_conn(carol).expect("bound by the overflow rule");
    let (other, others_owner) = if bound == first {
        (second, bob)
    } else {
        (first, alice)
    };
    assert_eq!(
        core.checkout_scope(carol, true),
        LeaseScope::All,
        "any connection nobody is pinned to could serve her"
    );
    core.checkin(other, Health::Healthy).unwrap();
    assert_eq!(core.poll_action(), None, "still its owner's");
    core.owner_gone(others_owner);
    assert_eq!(core.poll_action(), Some(Action::Reset(other)));
    core.reset_done(other, Health::Healthy).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Grant {
            ticket: carols,
            conn: other
        }),
        "free now, and carol's pin has not served her"
    );
    assert_eq!(core.pinned_conn(carol), Some(other), "her pin moved");
    assert_eq!(core.state().pins, vec![(first, 1), (second, 1)]);
    // Served now: bound for life, as any Strict owner.
    core.checkin(other, Health::Healthy).unwrap();
    assert_eq!(core.checkout_scope(carol, true), LeaseScope::Conn(other));
}

/// Under `Strict`, a connection on its way that nobody is pinned to will
/// serve an unpinned waiter: while it connects, provisioning again (here,
/// maintenance) opens no second one for the same waiter.
#[test]
fn an_unpinned_waiter_has_one_connection_opened_for_it() {
    let mut core = strict(3);
    let Checkout::Waiting(_) = core.checkout_unpinned(OwnerId(1)) else {
        panic!("nothing is open yet")
    };
    let first = next_open(&mut core).expect("a connection for it");
    core.maintain();
    assert_eq!(core.poll_action(), None, "{first} is on its way for it");
    assert_eq!(core.state().total(), 1);
}

/// A `Strict` owner waiting with two checkouts (two futures of one scope)
/// whose first is granted another connection than its pin, before the pin
/// served it: its other checkout follows the pin to that connection, and
/// waits for it, rather than take its old one as a second connection.
#[test]
fn an_owners_other_checkout_follows_its_pin_to_the_connection_it_was_granted() {
    let mut core = core(Config {
        max_size: 2,
        min_size: 1,
        pinning: Pinning::Strict,
        ..Config::default()
    });
    let alice = OwnerId(1);
    let free = next_open(&mut core).expect("min_size's connection, nobody's");
    let Checkout::Waiting(first) = core.checkout(alice) else {
        panic!("nothing is connected yet")
    };
    let pinned = next_open(&mut core).expect("a connection of her own");
    let Checkout::Waiting(second) = core.checkout(alice) else {
        panic!("her connection is not connected yet")
    };
    core.connected(free).unwrap();
    assert_eq!(
        connect_all(&mut core),
        [Action::Grant {
            ticket: first,
            conn: free
        }],
        "her pin has not served her: the free connection does"
    );
    core.connected(pinned).unwrap();
    let granted = connect_all(&mut core);
    assert!(
        !granted
            .iter()
            .any(|action| matches!(action, Action::Grant { ticket, .. } if *ticket == second)),
        "her second checkout waits for {free}, which she holds: {granted:?}"
    );
    assert_eq!(core.state().idle, 1, "{pinned} is nobody's now");
}

/// Deadlines the core keeps (`time_out_at`) expire earliest first, in
/// whatever order they were given, each failing its waiter once; a waiter
/// that leaves the line takes its deadline along; and the next deadline
/// is what the driver's timer waits for, in a pool that needs no other
/// maintenance.
#[test]
fn deadlines_the_core_keeps_expire_earliest_first_and_leave_with_their_waiters() {
    let secs = Duration::from_secs;
    let mut core = strict(1);
    assert!(!core.config().needs_maintenance());
    let conn = first_checkout(&mut core, OwnerId(1));
    let wait = |core: &mut Core, owner, deadline| {
        let Checkout::Waiting(ticket) = core.checkout(OwnerId(owner)) else {
            panic!("the only connection is out")
        };
        core.time_out_at(ticket, deadline).expect("it waits");
        ticket
    };
    let bob = wait(&mut core, 2, secs(30));
    let carol = wait(&mut core, 3, secs(10));
    let dave = wait(&mut core, 4, secs(20));
    assert_eq!(
        core.waiters_expire_at(),
        Some(secs(10)),
        "carol's, given later"
    );
    assert_eq!(core.poll_timeout(), Some(secs(10)));

    core.advance(secs(9));
    assert_eq!(core.expire_waiters(), 0, "nothing due yet");
    core.checkin(conn, Health::Healthy).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Grant { ticket: bob, conn })
    );
    assert_eq!(
        core.waiters_expire_at(),
        Some(secs(10)),
        "bob's left with him"
    );

    core.advance(secs(15));
    assert_eq!(core.expire_waiters(), 1);
    let timed_out = |ticket| Action::Fail {
        ticket,
        reason: FailReason::Timeout,
    };
    assert_eq!(core.poll_action(), Some(timed_out(carol)));
    assert_eq!(core.poll_timeout(), Some(secs(20)), "dave's is next");
    assert_eq!(
        core.time_out_at(carol, secs(99)),
        Err(InputError::NotWaiting(carol))
    );

    // A maintenance run expires them too.
    core.advance(secs(20));
    core.maintain();
    assert_eq!(core.poll_action(), Some(timed_out(dave)));
    assert_eq!(core.poll_action(), None);
    assert_eq!(core.waiters_expire_at(), None);
    let state = core.state();
    assert_eq!((state.waiting, state.counters.timeouts), (0, 2));
}

/// A ticket that has left the line names nobody, even once a later
/// ticket waits at its slot: every input with it is refused, and the
/// waiter now at that slot is untouched.
#[test]
fn a_stale_ticket_cannot_reach_the_waiter_at_its_slot() {
    let mut core = strict(1);
    first_checkout(&mut core, OwnerId(1));
    let Checkout::Waiting(bob) = core.checkout(OwnerId(2)) else {
        panic!("the connection is held: bob waits")
    };
    assert!(core.cancel(bob));
    let Checkout::Waiting(carol) = core.checkout(OwnerId(3)) else {
        panic!("carol waits")
    };
    assert_eq!(carol.slot(), bob.slot(), "bob's slot, reused");

    let secs = Duration::from_secs;
    assert_eq!(
        core.time_out_at(bob, secs(5)),
        Err(InputError::NotWaiting(bob))
    );
    assert_eq!(
        core.waiters_expire_at(),
        None,
        "carol was given no deadline"
    );
    assert_eq!(core.retry(bob), Err(InputError::NotWaiting(bob)));
    assert!(!core.time_out(bob));
    assert!(!core.cancel(bob));
    assert!(!core.is_stranded(bob));
    assert_eq!(core.state().waiting, 1, "carol still waits");
    assert_eq!(core.time_out_at(carol, secs(5)), Ok(()));
    assert_eq!(core.waiters_expire_at(), Some(secs(5)));
}
