//! Thread pinning: each thread's identity and its leases, in a
//! thread-local whose destructor tells every pool the thread used that the
//! owner is gone — when the thread returns, panics, or simply never touches
//! the pool again.
//!
//! The thread-local holds pools only weakly, so it never keeps a pool
//! alive, and a pool dropped before the thread is skipped at exit.

use std::cell::RefCell;
use std::sync::Weak;

use crate::core::OwnerId;
use crate::driver::fresh_owner;
use crate::driver::lease::AnyLease;

use crate::sync::{Arc, thread_local};

/// What a pool does when an owner thread exits.
pub(crate) trait Reclaim: Send + Sync {
    /// Releases `owner`'s pin and lease (the thread is gone).
    fn owner_gone(self: Arc<Self>, owner: OwnerId);
}

struct Registration {
    pool_id: u64,
    pool: Weak<dyn Reclaim>,
    /// The thread's lease on this pool while its connection is parked.
    lease: Option<AnyLease>,
}

struct ThreadPins {
    owner: OwnerId,
    pools: Vec<Registration>,
}

impl Drop for ThreadPins {
    fn drop(&mut self) {
        for registration in self.pools.drain(..) {
            drop(registration.lease);
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

thread_local! {
    static PINS: RefCell<ThreadPins> = RefCell::new(ThreadPins {
        owner: fresh_owner(),
        pools: Vec::new(),
    });
}

/// The current thread's owner id for the pool `pool_id`, registering the
/// thread with it on first use. `None` while the thread is being torn down
/// (its thread-locals are gone): the caller then uses a one-off owner.
pub(crate) fn register(pool_id: u64, pool: impl FnOnce() -> Weak<dyn Reclaim>) -> Option<OwnerId> {
    PINS.try_with(|pins| {
        let mut pins = pins.try_borrow_mut().ok()?;
        if !pins.pools.iter().any(|r| r.pool_id == pool_id) {
            // Forget pools that were dropped, so a thread that outlives
            // many pools does not accumulate registrations.
            pins.pools.retain(|r| r.pool.strong_count() > 0);
            pins.pools.push(Registration {
                pool_id,
                pool: pool(),
                lease: None,
            });
        }
        Some(pins.owner)
    })
    .ok()
    .flatten()
}

/// Takes the current thread's lease on `pool_id`, if it has one parked.
///
/// This and [`restore_lease`] are the pinned fast path's thread-local
/// reads. Their closures are `move`: they carry `pool_id`, `owner` and the
/// lease themselves instead of references into the caller's frame, which
/// the compiler otherwise spills and reloads (6 of a pinned get + drop's
/// instructions, `benches/instructions.sh`).
#[inline]
pub(crate) fn take_lease(pool_id: u64) -> Option<AnyLease> {
    PINS.try_with(move |pins| {
        let mut pins = pins.try_borrow_mut().ok()?;
        pins.pools
            .iter_mut()
            .find(|r| r.pool_id == pool_id)?
            .lease
            .take()
    })
    .ok()
    .flatten()
}

/// Gives the lease back to the current thread if it is the lease's owner
/// (a guard may be dropped on another thread; the lease is then simply
/// dropped, and its owner's next checkout recalls it through the pool).
#[inline]
pub(crate) fn restore_lease(pool_id: u64, owner: OwnerId, lease: AnyLease) {
    let _ = PINS.try_with(move |pins| {
        let Ok(mut pins) = pins.try_borrow_mut() else {
            return;
        };
        if pins.owner != owner {
            return;
        }
        if let Some(registration) = pins.pools.iter_mut().find(|r| r.pool_id == pool_id) {
            registration.lease = Some(lease);
        }
    });
}

/// The current thread's owner id, unless its thread-locals are gone.
pub(crate) fn current_owner() -> Option<OwnerId> {
    PINS.try_with(|pins| pins.try_borrow().ok().map(|pins| pins.owner))
        .ok()
        .flatten()
}
