//! A future built only if it is needed, in place inside the future that
//! may need it: [`Later`].
//!
//! Why not an `Option<F>`: a `get()` served by its fast path never builds
//! the checkout that may wait, yet dropping the `get()` future dropped an
//! `Option` of that checkout, and the `Option`'s drop glue holds the
//! checkout's — large, so never inlined: a call, its register saves and a
//! test, on every pinned get (`benches/instructions.sh`: a scope's pinned
//! get + drop counted 167 instructions with the `Option`, 149 with this).
//! Here the drop is the test alone, inline; the checkout's drop glue is
//! called only for a checkout that was built.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Room for a future `F`, empty until [`start`](Self::start)ed, then
/// pinned where it is until it is dropped. `Unpin` exactly when `F` is.
pub(super) struct Later<F>(ManuallyDrop<Option<F>>);

// The crate's sixth audited `unsafe`: the pin projection from a `Later`
// to its future, and the future's drop in place. Sound because nothing
// here moves a future once it is in: `start` writes only into an empty
// `Later` (so no pinned value is moved or forgotten), no method takes
// the future out, and `drop` drops it where it lies, as a pinned value's
// drop must be.
#[allow(unsafe_code)]
impl<F> Later<F> {
    /// Empty.
    pub(super) const fn empty() -> Self {
        Later(ManuallyDrop::new(None))
    }

    /// Builds the future with `build` and puts it in the `Later`, to be
    /// polled in place; one already started is kept (and `build` is not
    /// called). Built in place, through the closure: a checkout's future
    /// is large, and moving one in as an argument cost a copy of it
    /// (`benches/instructions.sh`: 100 instructions more per contended
    /// checkout).
    #[inline(always)]
    pub(super) fn start(self: Pin<&mut Self>, build: impl FnOnce() -> F) {
        // SAFETY: a future is written only into an empty `Later`, so none
        // that was pinned is moved or overwritten.
        unsafe { self.get_unchecked_mut() }
            .0
            .get_or_insert_with(build);
    }

    /// The future, pinned, if it was started.
    #[inline(always)]
    pub(super) fn as_pin_mut(self: Pin<&mut Self>) -> Option<Pin<&mut F>> {
        // SAFETY: a projection to the future inside, which is never moved
        // out (see above); `ManuallyDrop` is a transparent wrapper.
        unsafe {
            self.get_unchecked_mut()
                .0
                .as_mut()
                .map(|f| Pin::new_unchecked(f))
        }
    }

    /// Polls the future, if it was started.
    #[inline(always)]
    pub(super) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Option<Poll<F::Output>>
    where
        F: Future,
    {
        self.as_pin_mut().map(|future| future.poll(cx))
    }

    /// The out-of-line half of `drop`, for a started future.
    #[cold]
    #[inline(never)]
    fn drop_started(slot: &mut ManuallyDrop<Option<F>>) {
        // SAFETY: called once, from `drop`; the future is dropped where it
        // lies, and nothing touches the slot again.
        unsafe { ManuallyDrop::drop(slot) }
    }
}

impl<F> Drop for Later<F> {
    /// A test inline; the future's drop glue only if one was started.
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.is_some() {
            Self::drop_started(&mut self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::marker::PhantomPinned;
    use std::pin::{Pin, pin};
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    use super::Later;

    /// A `!Unpin` future that counts its drops in `dropped`, and checks on
    /// each poll that it has not moved since the first.
    struct Tracked {
        dropped: Rc<Cell<u32>>,
        at: Cell<usize>,
        _pinned: PhantomPinned,
    }

    impl Tracked {
        fn new(dropped: &Rc<Cell<u32>>) -> Self {
            Tracked {
                dropped: Rc::clone(dropped),
                at: Cell::new(0),
                _pinned: PhantomPinned,
            }
        }
    }

    impl Future for Tracked {
        type Output = usize;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
            let here = std::ptr::from_ref::<Self>(&self).addr();
            match self.at.replace(here) {
                0 => Poll::Pending,
                first => {
                    assert_eq!(first, here, "a pinned future moved");
                    Poll::Ready(here)
                }
            }
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    #[test]
    fn an_empty_later_polls_to_nothing_and_drops_nothing() {
        let mut later = pin!(Later::<Tracked>::empty());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(later.as_mut().poll(&mut cx).is_none());
        assert!(later.as_pin_mut().is_none());
    }

    /// Also: starting it again keeps the first future (the second is never
    /// built).
    #[test]
    fn a_started_future_is_polled_in_place_kept_and_dropped_once() {
        let dropped = Rc::new(Cell::new(0));
        {
            let mut later = pin!(Later::empty());
            later.as_mut().start(|| Tracked::new(&dropped));
            let mut cx = Context::from_waker(Waker::noop());
            assert_eq!(later.as_mut().poll(&mut cx), Some(Poll::Pending));
            later
                .as_mut()
                .start(|| panic!("a started `Later` builds no other future"));
            let Some(Poll::Ready(at)) = later.as_mut().poll(&mut cx) else {
                panic!("the first future, ready on its second poll, unmoved");
            };
            assert_ne!(at, 0);
            assert_eq!(dropped.get(), 0, "not before the `Later` is dropped");
        }
        assert_eq!(dropped.get(), 1, "dropped with the `Later`, once");
    }
}
