//! The core's vocabulary: identities, its answers, the actions it asks a
//! driver to carry out and the events it reports.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use super::Config;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A connection, numbered 1, 2, 3… in the order the core creates slots.
    ConnId,
    "conn#"
);
id_type!(
    /// A thread or task identity, chosen by the driver. The core never reuses
    /// or interprets it; a driver must not reuse an id after
    /// [`Core::owner_gone`](super::Core::owner_gone). `OwnerId(u64::MAX)`
    /// is reserved (see [`Core::note_lease_holder`](super::Core::note_lease_holder)).
    OwnerId,
    "owner#"
);
/// A checkout request, numbered in arrival order. A ticket that waits is
/// a *waiter*; comparing tickets compares arrival times.
///
/// Only the core issues tickets. Each carries the [slot](Ticket::slot)
/// where the core keeps it while it waits, so that neither the core nor
/// a driver needs a map to find a waiter's record.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    number: u64,
    slot: usize,
}

impl Ticket {
    /// The ticket numbered `number` (1, 2, 3… in arrival order), kept at
    /// `slot`.
    pub(super) fn new(number: u64, slot: usize) -> Self {
        Ticket { number, slot }
    }

    /// Its number: 1, 2, 3… in arrival order, never reused.
    pub fn number(self) -> u64 {
        self.number
    }

    /// Where the core keeps this ticket while it waits: no two tickets
    /// waiting at once share a slot, a slot is reused once its ticket
    /// has left, and no slot is more than the most tickets that ever
    /// waited at once. A driver can keep its own record of each waiter
    /// in a `Vec` indexed by it (checking the ticket it finds there)
    /// rather than in a map.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, OwnerId};
    ///
    /// let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// core.checkout(OwnerId(1));
    /// while core.poll_action().is_some() {}
    /// core.connected(ConnId(1))?; // granted to owner 1, who keeps it
    /// let Checkout::Waiting(second) = core.checkout(OwnerId(2)) else { unreachable!() };
    /// assert!(core.cancel(second));
    /// let Checkout::Waiting(third) = core.checkout(OwnerId(3)) else { unreachable!() };
    /// assert_eq!(third.slot(), second.slot(), "the slot second left");
    /// assert!(third > second, "a later arrival");
    /// assert!(!core.cancel(second), "second finds third's slot, not itself");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slot(self) -> usize {
        self.slot
    }
}

// A ticket is its number: the number is never reused, and the slot
// follows from it. (Derived, these also compared the slot: 32 more
// instructions a contended turn unpinned, 47 pinned.)
impl PartialEq for Ticket {
    fn eq(&self, other: &Self) -> bool {
        self.number == other.number
    }
}

impl Eq for Ticket {}

impl PartialOrd for Ticket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ticket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.number.cmp(&other.number)
    }
}

impl std::hash::Hash for Ticket {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.number.hash(state);
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ticket#{}", self.number)
    }
}

/// The immediate answer to [`Core::checkout`](super::Core::checkout) and
/// [`Core::retry`](super::Core::retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkout {
    /// The connection is now checked out to the owner.
    Granted(ConnId),
    /// The owner must wait for an [`Action::Grant`] or [`Action::Fail`]
    /// naming this ticket, or, under every [`WakePolicy`](super::WakePolicy)
    /// but `Handoff`, an [`Action::Wake`] telling it to call
    /// [`Core::retry`](super::Core::retry). (A newly opened connection is
    /// granted directly under every policy.)
    Waiting(Ticket),
    /// The checkout cannot succeed.
    Failed(FailReason),
}

/// Why a checkout failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum FailReason {
    /// The pool was closed before or while the owner waited.
    #[error("the pool is closed")]
    PoolClosed,
    /// Opening the connection this owner asked for failed.
    #[error("the connection could not be established")]
    ConnectionError,
    /// A [`Pinning::Strict`](super::Pinning) owner asked for a second
    /// connection while holding its pinned one: waiting would deadlock.
    #[error("this owner already holds its pinned connection")]
    AlreadyHeld,
    /// The waiter's deadline passed: reported in [`Event::CheckoutFailed`]
    /// (after [`Core::time_out`](super::Core::time_out)), and in
    /// [`Action::Fail`] for a deadline the core kept
    /// ([`Core::time_out_at`](super::Core::time_out_at)).
    #[error("timed out waiting for a connection")]
    Timeout,
    /// The pool is paused: it was cleared ([`Core::clear`](super::Core::clear))
    /// or built paused, and [`Core::ready`](super::Core::ready) has not been
    /// called since. Retryable (CMAP's `PoolClearedError`).
    #[error("the pool is paused after a clear")]
    Paused,
    /// The connect this checkout asked for outlasted
    /// [`Config::connect_timeout`](super::Config::connect_timeout).
    #[error("the connection was not established within the connect timeout")]
    ConnectTimeout,
    /// The owner the checkout waited for went away while it waited
    /// ([`Core::owner_gone`](super::Core::owner_gone)): an async `get()`
    /// that outlived the pinned scope it was made in.
    #[error("the owner of this checkout is gone")]
    OwnerGone,
    /// A checkout that may not wait ([`Core::try_checkout`](super::Core::try_checkout))
    /// found no connection it could take at once.
    #[error("no connection is free for this owner now")]
    WouldWait,
}

/// Why a connection is closed (the CMAP names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Its generation is older than the pool's (after [`Core::clear`](super::Core::clear)).
    Stale,
    /// It was idle for longer than [`Config::idle_timeout`].
    Idle,
    /// It outlived [`Config::max_lifetime`].
    Lifetime,
    /// It was reported broken at checkin.
    Error,
    /// The pool was closed.
    PoolClosed,
    /// Resetting its session state between owners failed (or panicked):
    /// it is closed rather than handed to the next owner dirty.
    ResetFailed,
    /// The pool was resized below its connection count
    /// ([`Core::resize`](super::Core::resize)).
    Shrunk,
    /// Its holder took it out of the pool
    /// ([`Core::detach`](super::Core::detach)): closed as far as the pool
    /// is concerned, the connection itself lives on in the holder's hands.
    Detached,
}

/// Whether a returned connection may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Reusable.
    Healthy,
    /// Broken: close it (and open a replacement if owners are pinned to it).
    Broken,
}

/// Work the core asks its driver to carry out, in order, outside any lock
/// where it involves I/O. Drain with [`Core::poll_action`](super::Core::poll_action).
///
/// Deliberately not `#[non_exhaustive]` (unlike [`Event`] and the
/// reasons): every action is work a driver must do, so a driver that
/// matches them all should stop compiling when one is added, not skip it
/// at run time in a wildcard arm. Adding one is a breaking change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Establish connection `conn`, then report
    /// [`Core::connected`](super::Core::connected) or
    /// [`Core::connect_failed`](super::Core::connect_failed).
    Open(ConnId),
    /// Close the physical connection `conn`; the core has forgotten it.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Waiter `ticket` now holds `conn`: deliver it and wake the waiter.
    Grant {
        /// The waiter.
        ticket: Ticket,
        /// The connection it now holds.
        conn: ConnId,
    },
    /// Wake waiter `ticket` so it calls [`Core::retry`](super::Core::retry)
    /// (under every [`WakePolicy`](super::WakePolicy) but `Handoff`: all the
    /// sleepers under `Broadcast`, the oldest under `Signal`, the oldest
    /// that can use an idle connection under `Bounded` and `Eventual`).
    Wake(Ticket),
    /// Interrupt the operation running on the checked-out connection
    /// `conn` (an interrupting [`Core::clear`](super::Core::clear)): its
    /// holder should see it fail and return it; it is stale and closes
    /// then.
    Interrupt(ConnId),
    /// Reset the session state of connection `conn` (its owners changed;
    /// see [`Reset`](super::Reset)), outside any lock, then report
    /// [`Core::reset_done`](super::Core::reset_done). The core neither
    /// grants it nor counts it idle meanwhile.
    Reset(ConnId),
    /// The pool is closed and holds no connection any more: every one it
    /// counted has been closed, by the [`Action::Close`]s before this one
    /// (see [`Core::is_shut_down`](super::Core::is_shut_down)). Emitted
    /// once. A driver whose callers wait for the pool's end (a graceful
    /// shutdown) ends their wait once it has carried out the actions
    /// before it.
    ShutDown,
    /// Waiter `ticket` failed: wake it with the reason.
    Fail {
        /// The waiter.
        ticket: Ticket,
        /// Why it failed.
        reason: FailReason,
    },
}

/// What happened, for monitoring (recorded only when
/// [`Config::record_events`](super::Config::record_events) is set): the
/// CMAP event set, plus pinpool's pins and leak reports. Durations come
/// from the clock the driver reports with [`Core::advance`](super::Core::advance).
/// Drain with [`Core::poll_event`](super::Core::poll_event); the pools
/// pass each to their [`event_handler`](crate::Builder::event_handler).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pinpool::blocking::Pool;
/// use pinpool::core::Event;
/// # fn noop() -> std::io::Result<()> { Ok(()) }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let pool = Pool::builder()
///     .event_handler(move |event: &Event| log.lock().unwrap().push(*event))
///     .build(noop)?;
/// drop(pool.get()?);
/// pool.close();
/// let seen = seen.lock().unwrap();
/// assert!(seen.iter().any(|e| matches!(e, Event::ConnectionCreated(_))));
/// assert!(matches!(seen.last(), Some(Event::PoolClosed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The pool was created with these options (CMAP `ConnectionPoolCreated`).
    PoolCreated(Config),
    /// The pool became ready after being paused (CMAP `ConnectionPoolReady`).
    PoolReady,
    /// The pool's generation was bumped and it paused (CMAP
    /// `ConnectionPoolCleared`).
    PoolCleared {
        /// The new generation.
        generation: u64,
        /// Whether connections being established were abandoned too.
        interrupt_in_use: bool,
    },
    /// The pool was closed (after its idle connections).
    PoolClosed,
    /// The pool's `max_size` was changed ([`Core::resize`](super::Core::resize)).
    PoolResized {
        /// The new `max_size`.
        max_size: usize,
    },
    /// A connection started being established (CMAP `ConnectionCreated`).
    ConnectionCreated(ConnId),
    /// A connection was established (CMAP `ConnectionReady`).
    ConnectionReady {
        /// The connection.
        conn: ConnId,
        /// How long establishing it took.
        took: Duration,
    },
    /// A connection was closed.
    ConnectionClosed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Establishing a connection failed (CMAP reports it as
    /// `ConnectionClosed` with reason `error`).
    ConnectionFailed(ConnId),
    /// A checkout began (CMAP `ConnectionCheckOutStarted`).
    CheckoutStarted {
        /// Who asks.
        owner: OwnerId,
        /// Its request.
        ticket: Ticket,
    },
    /// An owner checked a connection out.
    CheckedOut {
        /// Who.
        owner: OwnerId,
        /// Which connection.
        conn: ConnId,
        /// How long the checkout took in the core.
        waited: Duration,
    },
    /// A connection was checked in.
    CheckedIn {
        /// Who returned it.
        owner: OwnerId,
        /// Which connection.
        conn: ConnId,
    },
    /// A checkout failed.
    CheckoutFailed {
        /// Who asked.
        owner: OwnerId,
        /// Why it failed.
        reason: FailReason,
        /// How long the checkout took in the core.
        waited: Duration,
    },
    /// An owner started waiting.
    Waiting {
        /// Who waits.
        owner: OwnerId,
        /// Its ticket.
        ticket: Ticket,
    },
    /// An owner was bound to a connection (also when its pin moved to the
    /// replacement of a closed connection).
    Pinned {
        /// Who.
        owner: OwnerId,
        /// To which connection.
        conn: ConnId,
    },
    /// An owner's pin was released: on request, because the connection
    /// never opened, or because the pool closed.
    Unpinned {
        /// Who.
        owner: OwnerId,
        /// From which connection.
        conn: ConnId,
    },
    /// A departed owner's pin was released.
    PinReclaimed {
        /// Who departed.
        owner: OwnerId,
        /// The connection it was pinned to.
        conn: ConnId,
    },
    /// A connection's session state was reset between owners (see
    /// [`Action::Reset`]).
    ConnectionReset {
        /// The connection.
        conn: ConnId,
        /// How long the reset took.
        took: Duration,
        /// Whether it succeeded (a failed one is closed next, with
        /// [`CloseReason::ResetFailed`]).
        ok: bool,
    },
    /// A connection has been checked out for longer than
    /// [`Config::leak_threshold`]; reported once per checkout.
    ConnectionLeaked {
        /// The connection.
        conn: ConnId,
        /// Who holds it.
        owner: OwnerId,
        /// How long it has been held.
        held: Duration,
    },
}

/// Which leased connections the answer to a checkout could depend on
/// ([`Core::checkout_scope`](super::Core::checkout_scope)): the driver
/// ends those leases first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseScope {
    /// None: a connection the core holds idle serves it, or it fails.
    None,
    /// Only this connection (the owner's Strict or Exclusive pin).
    Conn(ConnId),
    /// Only connections nobody is pinned to (the stash's): under
    /// [`Pinning::Exclusive`](super::Pinning::Exclusive) a new owner, or a
    /// checkout that pins nobody, can use no other, so the owners' own
    /// leases keep their fast path.
    Free,
    /// Any: it would wait, or bind to or move to another connection.
    All,
}

/// A driver called the core with something that contradicts the core's
/// state (a bug in the driver, never in user code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InputError {
    /// The connection is unknown or not in the state the call requires.
    #[error("{conn} is not {expected}")]
    WrongConnState {
        /// The connection named.
        conn: ConnId,
        /// The state the call requires.
        expected: &'static str,
    },
    /// The ticket is not waiting (already granted, failed or cancelled).
    #[error("{0} is not waiting")]
    NotWaiting(Ticket),
}
