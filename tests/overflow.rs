//! How a new owner is bound once `max_size` connections exist (Strict
//! pinning), rule by rule: the difference between the 2013 post's prose
//! ("a random existing socket") and its code ("a random available one") is
//! what decides whether the simulation reproduces its chart.

use pinpool::core::{Action, Checkout, Config, ConnId, Core, Health, Overflow, OwnerId};

/// A full pool of two connections, both checked out by owners 1 and 2.
fn full_pool(overflow: Overflow) -> Core {
    let mut core = Core::new(Config {
        max_size: 2,
        overflow,
        ..Config::default()
    })
    .unwrap();
    for owner in [1, 2] {
        let Checkout::Waiting(_) = core.checkout(OwnerId(owner)) else {
            panic!("the first two owners open connections");
        };
    }
    while let Some(action) = core.poll_action() {
        if let Action::Open(conn) = action {
            core.connected(conn).unwrap();
        }
    }
    assert_eq!(core.state().in_use, 2);
    core
}

#[test]
fn random_binds_a_latecomer_to_a_busy_connection_at_once() {
    let mut core = full_pool(Overflow::Random);
    let Checkout::Waiting(_) = core.checkout(OwnerId(3)) else {
        panic!("both connections are busy");
    };
    let pinned = core
        .pinned_conn(OwnerId(3))
        .expect("bound while everything is busy");
    assert!([ConnId(1), ConnId(2)].contains(&pinned));
}

#[test]
fn random_idle_leaves_a_latecomer_unbound_until_a_connection_frees() {
    let mut core = full_pool(Overflow::RandomIdle);
    let Checkout::Waiting(ticket) = core.checkout(OwnerId(3)) else {
        panic!("both connections are busy");
    };
    assert_eq!(
        core.pinned_conn(OwnerId(3)),
        None,
        "nothing idle to bind to"
    );
    core.checkin(ConnId(2), Health::Healthy).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Grant {
            ticket,
            conn: ConnId(2)
        })
    );
    assert_eq!(
        core.pinned_conn(OwnerId(3)),
        Some(ConnId(2)),
        "bound to what freed"
    );
}

#[test]
fn least_loaded_spreads_latecomers_over_connections() {
    let mut core = full_pool(Overflow::LeastLoaded);
    for owner in [3, 4] {
        let Checkout::Waiting(_) = core.checkout(OwnerId(owner)) else {
            panic!("both connections are busy");
        };
    }
    assert_eq!(
        core.pinned_conn(OwnerId(3)),
        Some(ConnId(1)),
        "tie: lowest id"
    );
    assert_eq!(
        core.pinned_conn(OwnerId(4)),
        Some(ConnId(2)),
        "then the other"
    );
    assert_eq!(core.state().pins, vec![(ConnId(1), 2), (ConnId(2), 2)]);
}

/// A pool filling to `min_size` counts its connects in flight as existing,
/// so a new owner is bound by the overflow rule while some are still
/// connecting. A pin is for life: the newcomer is bound to a connection
/// nobody owns yet and waits for its connect, rather than to an idle one
/// that already has an owner, which it would share for good while the
/// other connection had nobody (four threads on four connections ended
/// up two, one, one and none, and took turns on the shared one).
#[test]
fn least_loaded_binds_a_newcomer_to_an_unowned_connection_still_connecting() {
    let mut core = Core::new(Config {
        max_size: 2,
        min_size: 2,
        overflow: Overflow::LeastLoaded,
        ..Config::default()
    })
    .unwrap();
    let opens: Vec<ConnId> = std::iter::from_fn(|| core.poll_action())
        .filter_map(|action| match action {
            Action::Open(conn) => Some(conn),
            _ => None,
        })
        .collect();
    let [first, second] = opens[..] else {
        panic!("min_size opens two: {opens:?}")
    };
    core.connected(first).unwrap();
    assert_eq!(core.checkout(OwnerId(1)), Checkout::Granted(first));
    core.checkin(first, Health::Healthy).unwrap();

    let Checkout::Waiting(ticket) = core.checkout(OwnerId(2)) else {
        panic!("its own connection is still connecting")
    };
    assert_eq!(core.pinned_conn(OwnerId(2)), Some(second));
    core.connected(second).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Grant {
            ticket,
            conn: second
        })
    );
    assert_eq!(core.state().pins, vec![(first, 1), (second, 1)]);
}
