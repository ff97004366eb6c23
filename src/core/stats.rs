//! Counters and the consistent snapshot a driver reports as the pool's state.

use std::fmt;

use super::ConnId;

/// Monotonic counters kept by the core.
///
/// Conservation law (checked by the property tests):
/// `opened == connecting + idle + in_use + resetting + closed + connect_failures`
/// where the middle four come from [`PoolState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// [`Action::Open`](super::Action::Open)s emitted.
    pub opened: u64,
    /// Connections reported established.
    pub established: u64,
    /// Connections that failed to establish.
    pub connect_failures: u64,
    /// [`Action::Close`](super::Action::Close)s emitted.
    pub closed: u64,
    /// Successful checkouts (immediate or after waiting).
    pub checkouts: u64,
    /// Checkouts that had to wait.
    pub waits: u64,
    /// [`Action::Grant`](super::Action::Grant)s emitted (direct hand-offs).
    pub handoffs: u64,
    /// [`Action::Wake`](super::Action::Wake)s emitted.
    pub wakeups: u64,
    /// Wake-ups after which the waiter still could not proceed.
    pub futile_wakeups: u64,
    /// Checkins.
    pub checkins: u64,
    /// Waiters cancelled by their driver (timeouts, dropped futures).
    pub cancelled: u64,
    /// Waiters whose deadline passed (also counted in `cancelled`).
    pub timeouts: u64,
    /// Checkouts failed with a [`FailReason`](super::FailReason).
    pub failed: u64,
    /// Pins released because their owner was gone.
    pub reclaimed_pins: u64,
    /// [`Action::Reset`](super::Action::Reset)s emitted.
    pub resets: u64,
    /// Resets that failed (each closed its connection).
    pub reset_failures: u64,
    /// The most times one waiter was passed over by a later request that
    /// took a connection it could have used (0 means perfectly FIFO).
    pub max_bypass: u64,
}

/// A consistent snapshot of the pool: every count describes the same instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Slots reserved but not yet connecting (waiting for a connect permit).
    pub pending: usize,
    /// Connections being established.
    pub connecting: usize,
    /// Established connections nobody holds.
    pub idle: usize,
    /// Established connections checked out.
    pub in_use: usize,
    /// Established connections whose session state is being reset
    /// between owners.
    pub resetting: usize,
    /// Checkouts waiting.
    pub waiting: usize,
    /// Of those, owners waiting to be bound to a connection: under
    /// [`Pinning::Exclusive`](super::Pinning::Exclusive), for a pin to be
    /// released.
    pub waiting_for_pin: usize,
    /// Owners with a pin (under [`Pinning::Exclusive`](super::Pinning::Exclusive),
    /// each on a connection of its own).
    pub pinned_owners: usize,
    /// Pinned-owner count of every live connection, by id.
    pub pins: Vec<(ConnId, usize)>,
    /// The current generation (bumped by [`Core::clear`](super::Core::clear)).
    pub generation: u64,
    /// Whether [`Core::close`](super::Core::close) was called.
    pub closed: bool,
    /// The counters at this instant.
    pub counters: Counters,
}

/// The counts of a [`PoolState`], less its per-connection pins: what a
/// driver publishes as gauges after every input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Occupancy {
    pub pending: usize,
    pub connecting: usize,
    pub idle: usize,
    pub in_use: usize,
    pub resetting: usize,
    pub waiting: usize,
    pub waiting_for_pin: usize,
    pub pinned_owners: usize,
}

impl PoolState {
    /// Every slot that counts against `max_size`.
    pub fn total(&self) -> usize {
        self.pending + self.connecting + self.idle + self.in_use + self.resetting
    }
}

/// One line for logs and error messages, e.g. `2 idle, 2 in use, 0
/// resetting, 0 connecting, 0 pending, 5 waiting (3 for a pin), 9 pinned
/// owners, generation 0`.
impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} idle, {} in use, {} resetting, {} connecting, {} pending, {} waiting ({} for a pin), {} pinned owners, generation {}",
            self.idle,
            self.in_use,
            self.resetting,
            self.connecting,
            self.pending,
            self.waiting,
            self.waiting_for_pin,
            self.pinned_owners,
            self.generation
        )?;
        if self.closed {
            f.write_str(", closed")?;
        }
        Ok(())
    }
}
