//! The synchronisation primitives the pools are built on, in one place so
//! the model checks can swap them (tokio's `src/loom` is the pattern).

pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub(crate) use parking_lot::Mutex;

/// A cell holding at most one boxed value, moved in and out with a single
/// atomic swap each. Because every access is a read-modify-write on one
/// word, the cell's modification order orders all puts and takes, which is
/// what the lease protocol in `blocking::lease` relies on.
pub(crate) struct TakeCell<T>(crossbeam_utils::atomic::AtomicCell<Option<Box<T>>>);

impl<T> TakeCell<T> {
    pub(crate) fn empty() -> Self {
        TakeCell(crossbeam_utils::atomic::AtomicCell::new(None))
    }

    /// Moves the value out, leaving the cell empty.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        self.0.swap(None)
    }

    /// Moves `value` in. The protocol never puts into a full cell.
    #[inline]
    pub(crate) fn put(&self, value: Box<T>) {
        let previous = self.0.swap(Some(value));
        debug_assert!(previous.is_none(), "a TakeCell holds one value");
    }
}
