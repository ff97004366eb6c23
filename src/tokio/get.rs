//! The future a `get()` returns (the pool's, inside a scope or outside
//! any, and a [`Session`](super::Session)'s): the fast paths in its first
//! poll, and only when they fail, the checkout that may wait.
//!
//! Why not an `async fn`: a fast checkout (a pinned scope's parked
//! connection, a stashed one) ends in the first poll, yet an `async fn`
//! lays out the state of the checkout that waits all the same, and moves
//! its output, the guard, through that state on its way to the caller.
//! Here the first poll returns the guard directly, and the waiting
//! checkout's future exists only once a checkout needs it
//! (`benches/instructions.sh`: a pinned get + drop counted 212
//! instructions as an `async fn`, 184 with this future; a session's 185
//! and 173).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::later::Later;
use super::shared::Shared;
use super::{Caller, Conn, Manager, Pool, PooledConnection};
use crate::Error;
use crate::driver::{Handed, PoolRef};

pin_project! {
    /// A checkout whose first poll asks `fast` who the caller is and what
    /// the fast paths found for it and, only if that does not serve it,
    /// builds with `wait` the checkout that may wait, and polls that from
    /// then on. Dropping it drops that checkout, which withdraws from the
    /// line. The three are handed the pool rather than capturing it, so
    /// that what each `get()` builds is the pool's reference and little
    /// else (`benches/instructions.sh`: 149 instructions for a scope's
    /// pinned get + drop with each capturing it, 145 without).
    pub(super) struct FastFirst<'p, M: Manager, G, S, W, F> {
        pool: &'p Pool<M>,
        // Until the first poll: how the guard reaches the pool, the fast
        // paths, and what builds the waiting checkout.
        start: Option<(G, S, W)>,
        #[pin]
        waiting: Later<F>,
    }
}

// Only the bounds that give the callers' closures their signatures: the
// rest are the `Future` impl's, below.
impl<'p, 'c, M, G, S, W, F> FastFirst<'p, M, G, S, W, F>
where
    M: Manager,
    S: FnOnce(&'p Pool<M>) -> (Caller<'c, Conn<M>>, Option<Handed<Conn<M>>>),
    W: FnOnce(&'p Pool<M>, G, Caller<'c, Conn<M>>, Option<Handed<Conn<M>>>) -> F,
{
    /// A checkout on `pool` whose guards reach the pool through
    /// `guard_pool`; `fast` says who the caller is and takes what the fast
    /// paths have for it; `wait` builds the checkout that may wait, from
    /// that.
    pub(super) fn new(pool: &'p Pool<M>, guard_pool: G, fast: S, wait: W) -> Self {
        FastFirst {
            pool,
            start: Some((guard_pool, fast, wait)),
            waiting: Later::empty(),
        }
    }
}

impl<'p, 'g, 'c, M, G, S, W, F> Future for FastFirst<'p, M, G, S, W, F>
where
    M: Manager,
    G: Fn(&'p Pool<M>) -> PoolRef<'g, Shared<M>>,
    S: FnOnce(&'p Pool<M>) -> (Caller<'c, Conn<M>>, Option<Handed<Conn<M>>>),
    W: FnOnce(&'p Pool<M>, G, Caller<'c, Conn<M>>, Option<Handed<Conn<M>>>) -> F,
    F: Future<Output = Result<PooledConnection<'g, M>, Error<M::Error>>>,
{
    type Output = F::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Some((guard_pool, fast, wait)) = this.start.take() {
            let pool = *this.pool;
            let (caller, found) = fast(pool);
            match pool.checkout_now(|| guard_pool(pool), found) {
                Ok(conn) => return Poll::Ready(Ok(conn)),
                Err(found) => {
                    let waiting = || wait(pool, guard_pool, caller, found);
                    this.waiting.as_mut().start(waiting);
                }
            }
        }
        match this.waiting.poll(cx) {
            Some(polled) => polled,
            None => panic!("a `get()` future polled after it completed"),
        }
    }
}
