//! What a session is, whichever pool it belongs to: an owner that is a
//! value. Each pool's `Session` wraps one with its pool handle and its own
//! way to check out.

use std::fmt;

use super::Driven;
use super::Mailbox;
use super::fresh_owner;
use super::lease::Lease;
use crate::core::OwnerId;
use crate::sync::Arc;

/// A session's owner, its lease while its connection is parked (the fast
/// path; kept here as a thread keeps its own in a thread-local, a scope in
/// its entry), and whether it ever asked the pool.
pub(crate) struct SessionOwner<C> {
    pub(crate) owner: OwnerId,
    pub(crate) lease: Option<Arc<Lease<C>>>,
    pub(crate) used: bool,
}

impl<C: Send + 'static> SessionOwner<C> {
    pub(crate) fn new() -> Self {
        SessionOwner {
            owner: fresh_owner(),
            lease: None,
            used: false,
        }
    }

    /// Ends the session on the pool `shared`: its lease, pin and waiting
    /// checkouts are released (only if it ever asked: otherwise it has
    /// nothing to release).
    pub(crate) fn end<E, S, P>(&mut self, shared: &Arc<P>)
    where
        E: fmt::Display,
        S: Mailbox<C, E>,
        P: Driven<C, E, S>,
    {
        self.lease = None;
        if self.used {
            let owner = self.owner;
            shared.with_core(|inner| inner.owner_gone(owner));
        }
    }
}

impl<C> fmt::Debug for SessionOwner<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}
