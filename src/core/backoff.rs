//! Connect backoff ([`Config::connect_backoff`](super::Config::connect_backoff)):
//! while connects fail, the next starts only after a wait that doubles with
//! each failure in a row, so that a server that refuses or never answers
//! sees a few attempts a second, not one per checkout.

use std::time::Duration;

use super::Core;

/// Connects failing in a row, and when the next may start.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
    resume_at: Duration,
}

impl Core {
    /// A connect failed (or was given up): the next waits longer.
    pub(super) fn back_off(&mut self) {
        let failures = self.backoff.failures.saturating_add(1);
        if let Some(wait) = self.config.backoff_after(failures) {
            self.backoff = Backoff {
                failures,
                resume_at: self.now.saturating_add(wait),
            };
        }
    }

    /// A connect succeeded: the server answers again.
    pub(super) fn stop_backing_off(&mut self) {
        self.backoff = Backoff::default();
    }

    /// Whether connects must not start now (`resume_at` is zero whenever
    /// no failure is counted, so it alone decides).
    pub(super) fn backing_off(&self) -> bool {
        self.now < self.backoff.resume_at
    }

    /// When connects may start again, while they are backed off
    /// ([`Config::connect_backoff`](super::Config::connect_backoff)). The
    /// driver contract: a driver that reported a failed connect and finds
    /// an instant here runs [`Core::maintain`] then (or gives any input),
    /// so that checkouts which asked meanwhile get their connect. The
    /// instant is in [`Core::poll_timeout`] too, for the backoff that a
    /// maintenance run begins by giving up a connect.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinpool::core::{Action, Config, ConnId, Core, OwnerId, Pinning};
    ///
    /// let backoff = Some(Duration::from_secs(1));
    /// let config = Config { pinning: Pinning::Off, connect_backoff: backoff, ..Config::default() };
    /// let mut core = Core::new(config)?;
    /// core.checkout(OwnerId(1));
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(1))));
    /// core.connect_failed(ConnId(1))?;
    /// assert_eq!(core.connects_resume_at(), Some(Duration::from_millis(10)));
    /// core.checkout(OwnerId(2));
    /// assert!(!std::iter::from_fn(|| core.poll_action()).any(|a| matches!(a, Action::Open(_))));
    /// core.advance(Duration::from_millis(10));
    /// core.maintain();
    /// assert_eq!(core.poll_action(), Some(Action::Open(ConnId(2))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connects_resume_at(&self) -> Option<Duration> {
        self.backing_off().then_some(self.backoff.resume_at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::core::{Action, Checkout, Config, ConnId, Core, OwnerId, Pinning};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Checks out for `owner`, which must wait, and returns the connect
    /// that started for it, if any.
    fn ask(core: &mut Core, owner: u64) -> Option<ConnId> {
        let checkout = core.checkout_unpinned(OwnerId(owner));
        assert!(matches!(checkout, Checkout::Waiting(_)), "{checkout:?}");
        opened(core)
    }

    /// The connect the last input started, if any (draining the actions).
    fn opened(core: &mut Core) -> Option<ConnId> {
        let mut opened = None;
        while let Some(action) = core.poll_action() {
            if let Action::Open(conn) = action {
                assert!(opened.is_none(), "one connect at a time here");
                opened = Some(conn);
            }
        }
        opened
    }

    fn core(backoff: Option<Duration>) -> Core {
        let config = Config {
            max_connecting: 1,
            pinning: Pinning::Off,
            connect_backoff: backoff,
            ..Config::default()
        };
        Core::new(config).expect("a valid config")
    }

    #[test]
    fn a_zero_backoff_is_refused() {
        let config = Config {
            connect_backoff: Some(Duration::ZERO),
            ..Config::default()
        };
        assert_eq!(
            Core::new(config).unwrap_err(),
            crate::core::ConfigError::ZeroDuration("connect_backoff")
        );
    }

    #[test]
    fn without_backoff_every_checkout_tries_the_server() {
        let mut core = core(None);
        for owner in 1..=5 {
            let conn = ask(&mut core, owner).expect("a connect per checkout");
            core.connect_failed(conn).unwrap();
            opened(&mut core);
            assert_eq!(core.connects_resume_at(), None);
        }
    }

    #[test]
    fn failing_connects_wait_doubling_until_one_succeeds() {
        let mut core = core(Some(ms(50)));
        let mut now = Duration::ZERO;
        let mut conn = ask(&mut core, 1).expect("the first connect at once");
        // Each failure doubles the wait from 10 ms, up to the bound.
        for (owner, wait) in (2..).zip([10, 20, 40, 50, 50]) {
            core.connect_failed(conn).unwrap();
            assert_eq!(opened(&mut core), None);
            assert_eq!(core.connects_resume_at(), Some(now + ms(wait)));
            assert_eq!(
                ask(&mut core, owner),
                None,
                "backing off: the checkout waits"
            );
            now += ms(wait - 1);
            core.advance(now);
            core.maintain();
            assert_eq!(opened(&mut core), None, "not before the wait is over");
            now += ms(1);
            core.advance(now);
            core.maintain();
            conn = opened(&mut core).expect("then the waiting checkout's connect starts");
        }
        // A success ends the backoff: the next connect starts at once, and
        // the next failure waits the first wait again, not a doubled one.
        core.connected(conn).unwrap();
        assert_eq!(core.connects_resume_at(), None);
        opened(&mut core);
        assert_eq!(core.state().in_use, 1, "the waiting checkout got it");
        let next = ask(&mut core, 100).expect("no wait after a success");
        core.connect_failed(next).unwrap();
        assert_eq!(core.connects_resume_at(), Some(now + Config::FIRST_BACKOFF));
    }
}
