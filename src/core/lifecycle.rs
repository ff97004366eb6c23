//! The core's lifecycle decisions: time, pausing (clear / ready), closing,
//! expiry of old and idle connections, and leak reports. Part of [`Core`];
//! a separate file only to keep `mod.rs` about checkouts and checkins.

use std::time::Duration;

use super::slots::SlotState;
use super::{Action, CloseReason, Core, Event, FailReason, OwnerId};

/// Most connections one [`Core::maintain`] run closes: a pool whose
/// connections all expire at once is drained over several runs instead of
/// holding the pool lock through a long batch of closes.
pub const MAINTENANCE_BATCH: usize = 8;

impl Core {
    /// The driver's clock reads `now` (time since any fixed epoch of the
    /// driver's choosing). Needed before each input only when
    /// [`Config::needs_clock`](super::Config::needs_clock); a clock that
    /// goes backwards is ignored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Config, Core};
    ///
    /// let mut core = Core::new(Config::default())?;
    /// core.advance(Duration::from_secs(5));
    /// core.advance(Duration::from_secs(3)); // a clock that went back
    /// assert_eq!(core.now(), Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
    }

    /// Resumes a paused pool (cleared, or built with
    /// [`Config::start_paused`](super::Config::start_paused)): checkouts
    /// succeed again and `min_size` is refilled. A no-op on a ready or
    /// closed pool.
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, Core, FailReason, OwnerId};
    ///
    /// let mut core = Core::new(Config { start_paused: true, ..Config::default() })?;
    /// let refused = core.checkout(OwnerId(1));
    /// assert!(matches!(refused, Checkout::Failed(FailReason::Paused)));
    /// core.ready();
    /// assert!(!core.is_paused());
    /// assert!(matches!(core.checkout(OwnerId(1)), Checkout::Waiting(_)), "for a connect");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&mut self) {
        if self.closed || !self.paused {
            return;
        }
        self.paused = false;
        self.event(Event::PoolReady);
        self.provision();
    }

    /// Whether the pool is paused (see [`Core::clear`]).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Clears the pool, as a driver does when its server may have lost
    /// every connection: bumps the generation, so idle connections close
    /// now ([`CloseReason::Stale`]) and checked-out and connecting ones
    /// when they come back; pauses the pool until [`Core::ready`]; and
    /// fails every waiter with the retryable [`FailReason::Paused`]. Pins
    /// move to replacements, which open once the pool is ready.
    ///
    /// With `interrupt_in_use`, connections being established are
    /// abandoned too — reported closed now, and closed when their connect
    /// ends — and each checked-out one gets an [`Action::Interrupt`], so
    /// the driver can break off its operation (the pool cannot take a
    /// connection out of its holder's hands: it closes when returned).
    ///
    /// Clearing a paused or closed pool does nothing (CMAP).
    ///
    /// ```
    /// use pinpool::core::{Checkout, Config, ConnId, Core, FailReason, OwnerId};
    ///
    /// let mut core = Core::new(Config { min_size: 1, ..Config::default() })?;
    /// while core.poll_action().is_some() {}
    /// core.connected(ConnId(1))?;
    /// core.clear(false);
    /// assert_eq!(core.checkout(OwnerId(1)), Checkout::Failed(FailReason::Paused));
    /// core.ready();
    /// assert!(matches!(core.checkout(OwnerId(1)), Checkout::Waiting(_)), "conn#1 was stale");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&mut self, interrupt_in_use: bool) {
        if self.closed || self.paused {
            return;
        }
        self.generation += 1;
        self.paused = true;
        let generation = self.generation;
        self.event(Event::PoolCleared {
            generation,
            interrupt_in_use,
        });
        let stale: Vec<_> = self.slots.idle_newest_first().collect();
        for conn in stale {
            self.retire(conn, CloseReason::Stale);
        }
        if interrupt_in_use {
            let in_use: Vec<_> = self.slots.in_use_ids().collect();
            self.actions
                .extend(in_use.into_iter().map(Action::Interrupt));
            let connecting: Vec<_> = self.slots.connecting_ids().collect();
            for conn in connecting {
                let slot = self.slots.remove(conn);
                self.counters.closed += 1;
                self.abandoned.insert(conn);
                self.event(Event::ConnectionClosed {
                    conn,
                    reason: CloseReason::Stale,
                });
                self.rehome(conn, slot.pinned);
            }
        }
        self.fail_all_waiters(FailReason::Paused);
        // Unstarted slots were reserved for the waiters just failed, or for
        // pinned owners, who keep theirs (in the new generation).
        for conn in self.slots.pending_ids().collect::<Vec<_>>() {
            if self.slots.slot(conn).pinned.is_empty() {
                self.slots.remove(conn);
            } else {
                self.slots.slot_mut(conn).generation = generation;
            }
        }
    }

    /// Closes the pool: waiters fail with [`FailReason::PoolClosed`], pins
    /// are dropped, idle connections close now and checked-out ones when
    /// they come back; then [`Event::PoolClosed`] (CMAP: available
    /// connections are destroyed first).
    ///
    /// ```
    /// # use pinpool::core::*;
    /// # let mut core = Core::new(Config { max_size: 1, ..Config::default() })?;
    /// # let (alice, bob, conn) = (OwnerId(1), OwnerId(2), ConnId(1));
    /// # core.checkout(alice); core.poll_action(); core.connected(conn)?; core.poll_action();
    /// let Checkout::Waiting(bobs) = core.checkout(bob) else { unreachable!() };
    /// core.close();
    /// let failed = Action::Fail { ticket: bobs, reason: FailReason::PoolClosed };
    /// assert_eq!(core.poll_action(), Some(failed));
    /// core.checkin(conn, Health::Healthy)?; // closed as it comes back
    /// let closed = Action::Close { conn, reason: CloseReason::PoolClosed };
    /// assert_eq!(core.poll_action(), Some(closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.fail_all_waiters(FailReason::PoolClosed);
        let pinned: Vec<OwnerId> = self.pins.keys().copied().collect();
        for owner in pinned {
            self.unpin(owner);
        }
        let idle: Vec<_> = self.slots.idle_newest_first().collect();
        for conn in idle {
            self.retire(conn, CloseReason::PoolClosed);
        }
        for conn in self.slots.pending_ids().collect::<Vec<_>>() {
            self.slots.remove(conn);
        }
        self.event(Event::PoolClosed);
        self.announce_shut_down();
    }

    /// Once the pool is closed and its last connection gone:
    /// [`Action::ShutDown`], once.
    pub(super) fn announce_shut_down(&mut self) {
        if self.is_shut_down() && !self.shut_down_announced {
            self.shut_down_announced = true;
            self.actions.push_back(Action::ShutDown);
        }
    }

    /// One maintenance run, on the clock last reported by
    /// [`Core::advance`]: times out the waiters whose deadline passed
    /// ([`Core::expire_waiters`]), gives up connects running past
    /// `connect_timeout`, closes idle connections that outlived
    /// `max_lifetime` or sat idle past `idle_timeout` (at most
    /// [`MAINTENANCE_BATCH`]), reports checkouts held past
    /// `leak_threshold`, and refills `min_size` (within `max_connecting`).
    /// Returns whether expired connections are left for another run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Action, CloseReason, Config, ConnId, Core};
    ///
    /// let idle_timeout = Some(Duration::from_secs(60));
    /// let mut core = Core::new(Config { min_size: 1, idle_timeout, ..Config::default() })?;
    /// while core.poll_action().is_some() {}
    /// core.connected(ConnId(1))?;
    /// core.advance(Duration::from_secs(61));
    /// core.maintain();
    /// assert_eq!(core.state().idle, 1, "min_size is kept");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn maintain(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.expire_waiters();
        self.give_up_slow_connects();
        let (_, more) = self.close_perished_idle(MAINTENANCE_BATCH);
        self.report_leaks();
        self.refill_deferred = false;
        self.provision();
        more
    }

    /// Closes up to `limit` idle connections that expired, oldest idle
    /// first (see [`Core::perished_idle`]); returns how many it closed and
    /// whether more are left. Affinity's preferences on a connection closed
    /// for idling are dropped.
    pub(super) fn close_perished_idle(&mut self, limit: usize) -> (usize, bool) {
        let (expired, more) = self.perished_idle(limit);
        let closed = expired.len();
        for (conn, reason) in expired {
            if reason == CloseReason::Idle {
                for owner in std::mem::take(&mut self.slots.slot_mut(conn).pinned) {
                    self.pins.remove(&owner);
                    self.event(Event::Unpinned { owner, conn });
                }
            }
            self.retire(conn, reason);
        }
        (closed, more)
    }

    /// Up to `limit` idle connections that expired, oldest idle first, and
    /// whether more are left. A connection is not closed for idling when a
    /// waiter could use it (it was woken for it), nor when owners are
    /// Strict-pinned to it (its replacement would open at once), nor below
    /// `min_size`.
    pub(super) fn perished_idle(&self, limit: usize) -> (Vec<(super::ConnId, CloseReason)>, bool) {
        let (lifetime, idle_timeout) = (self.config.max_lifetime, self.config.idle_timeout);
        let mut expired = Vec::new();
        // Nothing can expire, or nothing is idle: the common case, early.
        if lifetime.is_none() && idle_timeout.is_none() {
            return (expired, false);
        }
        if self.slots.idle() == 0 {
            return (expired, false);
        }
        let mut spare = self.slots.total().saturating_sub(self.config.min_size);
        for conn in self.slots.idle_oldest_first() {
            let slot = self.slots.slot(conn);
            let reason = if self.outlived(conn) {
                CloseReason::Lifetime
            } else if idle_timeout.is_some_and(|limit| self.now.saturating_sub(slot.since) >= limit)
                && spare > 0
                && (!self.config.pinning.binds_for_life() || slot.pinned.is_empty())
                && self.oldest_waiter_for(conn).is_none()
            {
                spare -= 1;
                CloseReason::Idle
            } else {
                continue;
            };
            if expired.len() == limit {
                return (expired, true);
            }
            expired.push((conn, reason));
        }
        (expired, false)
    }

    /// Closes every expired idle connection a checkout would otherwise
    /// find, and replaces what `min_size` or waiters need.
    /// Inlined with its early exit: every checkout passes here.
    #[inline]
    pub(super) fn reap_before_checkout(&mut self) {
        let config = &self.config;
        if config.max_lifetime.is_none() && config.idle_timeout.is_none() {
            return;
        }
        if self.close_perished_idle(usize::MAX).0 > 0 {
            self.provision();
        }
    }

    /// The driver's clock as last reported by [`Core::advance`].
    pub fn now(&self) -> Duration {
        self.now
    }

    /// When `conn`'s current checkout started, on the driver's clock;
    /// `None` unless it is checked out. A driver times a use from it,
    /// keeping no clock reading of its own per checkout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Checkout, Config, ConnId, Core, Health, OwnerId};
    ///
    /// let mut core = Core::new(Config { min_size: 1, ..Config::default() })?;
    /// core.poll_action(); // Open
    /// core.connected(ConnId(1))?;
    /// core.advance(Duration::from_secs(3));
    /// let Checkout::Granted(conn) = core.checkout(OwnerId(1)) else { unreachable!() };
    /// assert_eq!(core.checked_out_since(conn), Some(Duration::from_secs(3)));
    /// core.checkin(conn, Health::Healthy)?;
    /// assert_eq!(core.checked_out_since(conn), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checked_out_since(&self, conn: super::ConnId) -> Option<Duration> {
        let slot = self.slots.get(conn)?;
        matches!(slot.state, SlotState::InUse { .. }).then_some(slot.since)
    }

    /// When `conn` outlives its lifetime ([`Config::max_lifetime`](super::Config::max_lifetime)
    /// less its share of [`Config::max_lifetime_jitter`](super::Config::max_lifetime_jitter)),
    /// on the driver's clock; `None` without a lifetime (or for a
    /// connection not established). A driver that serves checkouts itself
    /// (a lease, see [`Core::may_lease`]) checks it there: the core sees
    /// an expired connection only when it comes back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Config, ConnId, Core};
    ///
    /// let max_lifetime = Some(Duration::from_secs(60));
    /// let mut core = Core::new(Config { min_size: 1, max_lifetime, ..Config::default() })?;
    /// core.poll_action(); // Open
    /// core.advance(Duration::from_secs(5));
    /// core.connected(ConnId(1))?;
    /// assert_eq!(core.expires_at(ConnId(1)), Some(Duration::from_secs(65)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expires_at(&self, conn: super::ConnId) -> Option<Duration> {
        let slot = self.slots.get(conn)?;
        let established = !matches!(slot.state, SlotState::Pending | SlotState::Connecting);
        let lifetime = self.lifetime(conn).filter(|_| established)?;
        Some(slot.born.saturating_add(lifetime))
    }

    /// `conn`'s own lifetime: `max_lifetime` less its share of
    /// [`Config::max_lifetime_jitter`](super::Config::max_lifetime_jitter).
    /// Inlined up to the share, as [`Core::outlived`] is.
    #[inline]
    fn lifetime(&self, conn: super::ConnId) -> Option<Duration> {
        let lifetime = self.config.max_lifetime?;
        let jitter = self.config.max_lifetime_jitter;
        if jitter.is_zero() {
            return Some(lifetime);
        }
        Some(lifetime - self.jitter_share(conn, jitter))
    }

    /// `conn`'s share of `jitter`: the fractional part of
    /// `(conn + seed) × φ` (Fibonacci hashing's multiplier is 2^64 / φ) of
    /// it, so any run of consecutive connections divides the jitter into
    /// nearly equal gaps: opened together, they expire spread over all of
    /// it. Computed, not drawn, so that it needs no state and takes
    /// nothing from the random sequence
    /// [`Overflow::Random`](super::Overflow::Random) uses.
    fn jitter_share(&self, conn: super::ConnId, jitter: Duration) -> Duration {
        let fraction = conn
            .0
            .wrapping_add(self.config.seed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // jitter × (the fraction's top 32 bits / 2^32), in whole nanoseconds
        // (at most 2^94 × 2^32, within a u128): exact, the same on every
        // platform, and below the jitter, so below the lifetime.
        let nanos = (jitter.as_nanos() * u128::from(fraction >> 32)) >> 32;
        const NANOS_PER_SEC: u128 = 1_000_000_000;
        Duration::new(
            (nanos / NANOS_PER_SEC) as u64,
            (nanos % NANOS_PER_SEC) as u32,
        )
    }

    /// The next instant, strictly after the clock's last reading, at which
    /// a decision of [`Core::maintain`] falls due: a connection outliving
    /// its lifetime (idle, or out — a leased one is checked when the
    /// maintenance run recalls it), an idle one its idle timeout, a
    /// checkout the leak threshold, a connect its connect timeout, a
    /// connect backoff its end ([`Core::connects_resume_at`]: the connects
    /// asked for meanwhile start then — a backoff begun by a connect that
    /// maintenance gave up has no connect worker to wait it out), a
    /// waiter its deadline ([`Core::time_out_at`], with or without
    /// [`Config::needs_maintenance`](super::Config::needs_maintenance)).
    /// quinn-proto's `poll_timeout`: a driver runs maintenance then (or at
    /// its interval, if sooner) instead of finding the work up to an
    /// interval late. What was due earlier and is
    /// still there is exempt (`min_size`, a strict pin, a woken waiter)
    /// and does not count. `None`: nothing is scheduled. O(S).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Config, ConnId, Core};
    ///
    /// let idle_timeout = Some(Duration::from_secs(10));
    /// let mut core = Core::new(Config { min_size: 1, idle_timeout, ..Config::default() })?;
    /// core.poll_action(); // Open
    /// core.advance(Duration::from_secs(1));
    /// core.connected(ConnId(1))?;
    /// assert_eq!(core.poll_timeout(), Some(Duration::from_secs(11)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_timeout(&self) -> Option<Duration> {
        let config = &self.config;
        if self.closed {
            return None;
        }
        let now = self.now;
        let waiters = self.waiters_expire_at().filter(|&due| due > now);
        if !config.needs_maintenance() {
            return waiters;
        }
        let after = |limit: Option<Duration>, from: Duration| limit.map(|l| from.saturating_add(l));
        self.slots
            .iter()
            .flat_map(|(conn, slot)| {
                let (idle, leak) = match slot.state {
                    SlotState::Idle { .. } => (after(config.idle_timeout, slot.since), None),
                    SlotState::InUse { .. } if !slot.leak_reported => {
                        (None, after(config.leak_threshold, slot.since))
                    }
                    SlotState::InUse { .. } | SlotState::Resetting => (None, None),
                    SlotState::Connecting => {
                        return [after(config.connect_timeout, slot.since), None, None];
                    }
                    SlotState::Pending => return [None; 3],
                };
                [after(self.lifetime(conn), slot.born), idle, leak]
            })
            .flatten()
            .chain(self.connects_resume_at())
            .filter(|&due| due > now)
            .chain(waiters)
            .min()
    }

    /// Whether `conn` has lived its lifetime (see [`Core::expires_at`]).
    /// Inlined: every checkin asks, and a pool without a lifetime must
    /// pay no more than a test for it (out of line, with the jitter's
    /// branch, it cost the core's checkout and checkin 28 instructions,
    /// `benches/instructions.sh`).
    #[inline]
    pub(super) fn outlived(&self, conn: super::ConnId) -> bool {
        self.lifetime(conn)
            .is_some_and(|limit| self.now.saturating_sub(self.slots.slot(conn).born) >= limit)
    }

    /// Gives up every connect running for [`Config::connect_timeout`](super::Config::connect_timeout)
    /// or longer: counted failed now (its waiter told, its permit free),
    /// and abandoned, so that its result is closed when it comes.
    fn give_up_slow_connects(&mut self) {
        let Some(timeout) = self.config.connect_timeout else {
            return;
        };
        let now = self.now;
        let slow: Vec<_> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                slot.state == SlotState::Connecting && now.saturating_sub(slot.since) >= timeout
            })
            .map(|(conn, _)| conn)
            .collect();
        for conn in slow {
            self.fail_connect(conn, FailReason::ConnectTimeout);
            self.abandoned.insert(conn);
        }
    }

    /// Reports each checkout held past the leak threshold, once.
    fn report_leaks(&mut self) {
        let Some(threshold) = self.config.leak_threshold else {
            return;
        };
        let now = self.now;
        let leaked: Vec<_> = self
            .slots
            .iter()
            .filter_map(|(conn, slot)| match slot.state {
                SlotState::InUse { holder }
                    if !slot.leak_reported && now - slot.since >= threshold =>
                {
                    Some((conn, holder, now - slot.since))
                }
                _ => None,
            })
            .collect();
        for (conn, owner, held) in leaked {
            self.slots.slot_mut(conn).leak_reported = true;
            self.event(Event::ConnectionLeaked { conn, owner, held });
        }
    }

    /// Fails every waiter with `reason`, oldest first.
    fn fail_all_waiters(&mut self, reason: FailReason) {
        let tickets = self.waiters.tickets();
        self.fail_waiters(tickets, reason);
    }
}
