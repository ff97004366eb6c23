//! Leases kept where pools of every connection type share one place: a
//! thread's pins (one thread-local for all pools), and the frames of the
//! scopes polled on a thread (`tokio::scope`). Such a place holds a
//! [`LeaseSlot`] per pool, the lease's type erased (a frame is typed by
//! its key's id the same way); only the pool that made the slot takes the
//! lease back out, typed, through its [`LeaseKey`].
//!
//! Why not `Arc<dyn Any>` and `downcast`: the downcast is a virtual call
//! and a 128-bit comparison on every pinned checkout, to check what the
//! key has already proved. Dropping it took a pinned get + drop from 144
//! to 121 instructions blocking, and from 252 to 229 async
//! (`benches/instructions.sh`). The proof: a key is made only by
//! [`LeaseKey::fresh`], with an id no other key has, and is neither
//! `Clone` nor convertible, so each id belongs to one pool and one
//! connection type `C`; a slot is made for a key, keeps that key's id,
//! and stores or yields leases only through a key with the same id — so
//! every lease a slot holds is a `Lease<C>` of that one `C`. The
//! crate's third audited `unsafe` is the cast that relies on it, in
//! [`LeaseSlot::get`]; debug builds also check it with `Any`.

use std::any::Any;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lease::Lease;
use crate::sync::Arc;

/// One pool's key to its slots: see the [module documentation](self).
/// The connection type is part of the key's type, the id names the pool.
pub(crate) struct LeaseKey<C> {
    id: u64,
    /// `fn() -> C`: the key is `Send` and `Sync` whatever `C` is.
    _conn: PhantomData<fn() -> C>,
}

impl<C> LeaseKey<C> {
    /// A key with an id no other key has: the only way to make one.
    pub(crate) fn fresh() -> Self {
        // A std atomic under loom too: it only hands out unique numbers.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LeaseKey {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            _conn: PhantomData,
        }
    }

    /// The id that names this key's pool and, with it, its connection
    /// type (for records typed by a key, as the scopes' frames are).
    #[cfg(feature = "tokio")]
    #[inline(always)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// A pool's place in a shared registry: its key's id, and the lease of
/// the owner the registry stands for, if it has one.
pub(crate) struct LeaseSlot {
    key: u64,
    lease: Option<Arc<dyn Any + Send + Sync>>,
}

impl LeaseSlot {
    /// A slot for the pool of `key`, keeping `lease` if any.
    pub(crate) fn new<C: Send + 'static>(key: &LeaseKey<C>, lease: Option<Arc<Lease<C>>>) -> Self {
        LeaseSlot {
            key: key.id,
            lease: lease.map(|lease| lease as Arc<dyn Any + Send + Sync>),
        }
    }

    /// Whether this is the slot of the pool of `key`.
    #[inline(always)]
    pub(crate) fn is_for<C>(&self, key: &LeaseKey<C>) -> bool {
        self.key == key.id
    }

    /// A reference to the lease kept here, if this is the slot of `key`'s
    /// pool and it holds one.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(crate) fn get<C: Send + 'static>(&self, key: &LeaseKey<C>) -> Option<Arc<Lease<C>>> {
        if !self.is_for(key) {
            return None;
        }
        let erased = Arc::clone(self.lease.as_ref()?);
        debug_assert!(
            erased.is::<Lease<C>>(),
            "a slot holds its own pool's leases"
        );
        // SAFETY: the slot is `key`'s pool's, and holds only leases that
        // pool stored through a key with this id (`set`): `Lease<C>`s, for
        // the one `C` of that id (see the module documentation). The
        // pointer is the data pointer of an `Arc<Lease<C>>` unsized to
        // `Arc<dyn Any>`, as `Arc::from_raw` requires, and the reference
        // count it carries is the clone's, taken just above.
        Some(unsafe { Arc::from_raw(Arc::into_raw(erased).cast::<Lease<C>>()) })
    }

    /// A pointer to the lease kept here, if this is the slot of `key`'s
    /// pool and it holds one: valid while the slot keeps that lease (its
    /// caller's to uphold as it dereferences it).
    #[inline(always)]
    pub(crate) fn pointer<C: Send + 'static>(
        &self,
        key: &LeaseKey<C>,
    ) -> Option<NonNull<Lease<C>>> {
        if !self.is_for(key) {
            return None;
        }
        let erased = self.lease.as_ref()?;
        debug_assert!(
            erased.is::<Lease<C>>(),
            "a slot holds its own pool's leases"
        );
        // The slot's lease is a `Lease<C>` (see `get`): the data pointer of
        // its `Arc` is one.
        NonNull::new(Arc::as_ptr(erased).cast::<Lease<C>>().cast_mut())
    }

    /// Keeps `lease` here in place of any earlier one, if this is the slot
    /// of `key`'s pool (callers find it by [`is_for`](Self::is_for)).
    pub(crate) fn set<C: Send + 'static>(
        &mut self,
        key: &LeaseKey<C>,
        lease: Option<Arc<Lease<C>>>,
    ) {
        debug_assert!(self.is_for(key), "a lease goes in its own pool's slot");
        if self.is_for(key) {
            self.lease = lease.map(|lease| lease as Arc<dyn Any + Send + Sync>);
        }
    }

    /// Drops the lease kept here, if any.
    pub(crate) fn clear(&mut self) {
        self.lease = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ConnId, OwnerId};

    fn lease<C>() -> Arc<Lease<C>> {
        Arc::new(Lease::new(ConnId(1), OwnerId(1), None))
    }

    #[test]
    fn a_slot_yields_its_lease_only_to_its_own_key() {
        let (mine, other) = (LeaseKey::<u8>::fresh(), LeaseKey::<u8>::fresh());
        let mut slot = LeaseSlot::new(&mine, None);
        assert!(slot.is_for(&mine) && !slot.is_for(&other));
        assert!(slot.get(&mine).is_none(), "empty");
        let kept = lease::<u8>();
        slot.set(&mine, Some(Arc::clone(&kept)));
        assert!(slot.get(&other).is_none(), "another pool's key");
        let got = slot.get(&mine).expect("kept");
        assert!(Arc::ptr_eq(&got, &kept));
        assert_eq!(Arc::strong_count(&kept), 3, "kept, the slot's, the one got");
        drop(got);
        slot.set(&mine, None);
        assert!(slot.get(&mine).is_none(), "emptied");
        assert_eq!(
            Arc::strong_count(&kept),
            1,
            "the slot let go of its reference"
        );
    }

    #[test]
    fn keys_are_never_shared_even_across_connection_types() {
        let ids: Vec<u64> = (0..4)
            .flat_map(|_| [LeaseKey::<u8>::fresh().id, LeaseKey::<String>::fresh().id])
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn clearing_drops_the_reference() {
        let key = LeaseKey::<String>::fresh();
        let kept = lease::<String>();
        let mut slot = LeaseSlot::new(&key, Some(Arc::clone(&kept)));
        slot.clear();
        assert_eq!(Arc::strong_count(&kept), 1);
        assert!(slot.get(&key).is_none());
    }
}
