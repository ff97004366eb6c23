//! Thread pinning: each thread's identity and its leases, in a
//! thread-local whose destructor tells every pool the thread used that the
//! owner is gone — when the thread returns, panics, or simply never touches
//! the pool again.
//!
//! The thread-local holds pools only weakly, so it never keeps a pool
//! alive, and a pool dropped before the thread is skipped at exit.

use std::cell::RefCell;
use std::sync::Weak;
use std::time::Duration;

use crate::core::OwnerId;
use crate::driver::erased::{LeaseKey, LeaseSlot};
use crate::driver::fresh_owner;
use crate::driver::lease::{Found, Lease};

use crate::sync::{Arc, thread_local};

/// What a pool does when an owner thread exits.
pub(crate) trait Reclaim: Send + Sync {
    /// Releases `owner`'s pin and lease (the thread is gone).
    fn owner_gone(self: Arc<Self>, owner: OwnerId);
}

struct Registration {
    /// The thread's lease on this pool: its connection is parked there
    /// while no checkout holds it.
    slot: LeaseSlot,
    pool: Weak<dyn Reclaim>,
}

struct ThreadPins {
    owner: OwnerId,
    pools: Vec<Registration>,
}

impl Drop for ThreadPins {
    fn drop(&mut self) {
        for mut registration in self.pools.drain(..) {
            registration.slot.clear();
            if let Some(pool) = registration.pool.upgrade() {
                let owner = self.owner;
                // A loom model that failed runs its threads' thread-locals
                // only after tearing the model down, when loom's primitives
                // panic on use; that model has failed already, so let it.
                #[cfg(pinpool_loom)]
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.owner_gone(owner)
                }));
                #[cfg(not(pinpool_loom))]
                pool.owner_gone(owner);
            }
        }
    }
}

impl ThreadPins {
    /// The thread's registration with the pool of `key`. The first is
    /// tried before the search: a thread that uses one pool (or first
    /// used this one) finds it without a loop (`benches/instructions.sh`).
    #[inline(always)]
    fn registration<C>(&self, key: &LeaseKey<C>) -> Option<&Registration> {
        match self.pools.first() {
            Some(first) if first.slot.is_for(key) => Some(first),
            _ => self.pools.iter().find(|r| r.slot.is_for(key)),
        }
    }
}

thread_local! {
    static PINS: RefCell<ThreadPins> = RefCell::new(ThreadPins {
        owner: fresh_owner(),
        pools: Vec::new(),
    });
}

/// The current thread's owner id for the pool of `key`, registering the
/// thread with it on first use. `None` while the thread is being torn down
/// (its thread-locals are gone): the caller then uses a one-off owner.
pub(crate) fn register<C: Send + 'static>(
    key: &LeaseKey<C>,
    pool: impl FnOnce() -> Weak<dyn Reclaim>,
) -> Option<OwnerId> {
    PINS.try_with(|pins| {
        let mut pins = pins.try_borrow_mut().ok()?;
        if !pins.pools.iter().any(|r| r.slot.is_for(key)) {
            // Forget pools that were dropped, so a thread that outlives
            // many pools does not accumulate registrations.
            pins.pools.retain(|r| r.pool.strong_count() > 0);
            pins.pools.push(Registration {
                slot: LeaseSlot::new(key, None),
                pool: pool(),
            });
        }
        Some(pins.owner)
    })
    .ok()
    .flatten()
}

/// The current thread's owner id and lease on the pool of `key`, if it
/// has one: a reference for the checkout to take its parked connection
/// from and park it back in. The thread keeps its own reference until the
/// pool grants it another lease ([`keep_lease`]) or the thread exits, so a
/// checkin never touches the thread-local.
///
/// The closure is `move`: it carries the key's reference itself instead
/// of a reference into the caller's frame, which the compiler otherwise
/// spills and reloads (`benches/instructions.sh`).
#[inline(always)]
pub(crate) fn lease<C: Send + 'static>(key: &LeaseKey<C>) -> Option<(OwnerId, Arc<Lease<C>>)> {
    PINS.try_with(move |pins| {
        let pins = pins.try_borrow().ok()?;
        Some((pins.owner, pins.registration(key)?.slot.get(key)?))
    })
    .ok()
    .flatten()
}

/// The current thread's owner id, and what it found in its lease on the
/// pool of `key` ([`Lease::take_back`]), if it has one: taken through the
/// thread's own reference, without counting another. The thread-local is
/// read in a closure of its own, as small as [`lease`]'s: with the take
/// inside it, the compiler stops inlining the thread-local access
/// (`benches/instructions.sh`: 98 → 138 instructions).
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn take_back<C: Send + 'static>(
    key: &LeaseKey<C>,
    now: impl Fn() -> Duration,
) -> Option<(OwnerId, Found<C>)> {
    let (owner, lease) = PINS
        .try_with(move |pins| {
            let pins = pins.try_borrow().ok()?;
            let lease = pins.registration(key)?.slot.pointer(key)?;
            Some((pins.owner, lease))
        })
        .ok()
        .flatten()?;
    // SAFETY: the thread's registry keeps its reference to the lease until
    // this thread replaces it (`keep_lease`) or exits, and nothing between
    // here and the end of the take does either: the take touches only the
    // lease and the pool's clock.
    let lease = unsafe { lease.as_ref() };
    Some((owner, lease.take_back(owner, now)))
}

/// Keeps the lease the pool of `key` just granted the current thread
/// with a connection, or none if it granted it without one, in place of
/// any earlier lease (which the pool has ended).
pub(crate) fn keep_lease<C: Send + 'static>(key: &LeaseKey<C>, lease: Option<Arc<Lease<C>>>) {
    let _ = PINS.try_with(move |pins| {
        let Ok(mut pins) = pins.try_borrow_mut() else {
            return;
        };
        if let Some(registration) = pins.pools.iter_mut().find(|r| r.slot.is_for(key)) {
            registration.slot.set(key, lease);
        }
    });
}

/// The current thread's owner id, unless its thread-locals are gone.
pub(crate) fn current_owner() -> Option<OwnerId> {
    PINS.try_with(|pins| pins.try_borrow().ok().map(|pins| pins.owner))
        .ok()
        .flatten()
}
