//! Connect backoff (`Builder::connect_backoff`) in both pools, against a
//! manager that refuses every connect until told otherwise: workers that
//! retry at once cost the server one attempt per checkout without it, and
//! a few per backoff with it; once the server accepts again, the pool
//! serves within the longest backoff.
//!
//! The async tests run on tokio's paused clock, so their counts do not
//! depend on how fast the machine is.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pinpool::Error;

/// A server that refuses while `down`, counting every attempt.
#[derive(Clone, Default)]
struct Flaky {
    attempts: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn down() -> Flaky {
        let flaky = Flaky::default();
        flaky.down.store(true, Ordering::SeqCst);
        flaky
    }

    fn connect(&self) -> io::Result<()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(io::ErrorKind::ConnectionRefused.into())
        } else {
            Ok(())
        }
    }
}

impl pinpool::tokio::Manager for Flaky {
    type Connection = ();
    type Error = io::Error;

    async fn connect(&self) -> io::Result<()> {
        Flaky::connect(self)
    }
}

impl pinpool::blocking::Manager for Flaky {
    type Connection = ();
    type Error = io::Error;

    fn connect(&self) -> io::Result<()> {
        Flaky::connect(self)
    }
}

const TASKS: usize = 16;
const CHECKOUTS_EACH: usize = 10;
const LONGEST_BACKOFF: Duration = Duration::from_millis(200);

/// 16 tasks each retry a failing checkout 10 times at once; returns the
/// connect attempts they caused.
async fn hammer(backoff: Option<Duration>) -> usize {
    let server = Flaky::down();
    let mut builder = pinpool::tokio::Pool::builder()
        .max_size(4)
        .checkout_timeout(Duration::from_millis(50));
    if let Some(longest) = backoff {
        builder = builder.connect_backoff(longest);
    }
    let pool = Arc::new(builder.build(server.clone()).expect("a valid config"));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                for _ in 0..CHECKOUTS_EACH {
                    match pool.get().await {
                        Err(Error::Connect(_) | Error::Timeout { .. }) => {}
                        other => panic!("the server is down: {:?}", other.map(drop)),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a worker");
    }
    server.attempts.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn without_backoff_every_checkout_tries_the_server() {
    let attempts = hammer(None).await;
    assert_eq!(attempts, TASKS * CHECKOUTS_EACH, "one attempt per checkout");
}

#[tokio::test(start_paused = true)]
async fn backoff_spares_a_refusing_server() {
    let attempts = hammer(Some(LONGEST_BACKOFF)).await;
    // 160 checkouts of up to 50 ms each span under 1 s of waiting: with
    // waits of 10, 20, 40, 80, 160, 200, 200 … ms that is a handful of
    // rounds, each of at most `max_connecting` (2) attempts.
    assert!(
        attempts <= TASKS * CHECKOUTS_EACH / 8,
        "{attempts} attempts for {} checkouts",
        TASKS * CHECKOUTS_EACH
    );
    assert!(attempts >= 2, "it kept trying: {attempts}");
}

/// Options for a pool whose checkouts outwait any backoff.
fn patient<P>(builder: pinpool::Builder<P>) -> pinpool::Builder<P> {
    builder
        .checkout_timeout(Duration::from_secs(10))
        .connect_backoff(LONGEST_BACKOFF)
}

#[tokio::test(start_paused = true)]
async fn the_async_pool_serves_again_within_the_longest_backoff_once_the_server_is_back() {
    let server = Flaky::down();
    let pool = patient(pinpool::tokio::Pool::builder())
        .build(server.clone())
        .expect("a valid config");
    // Fail enough connects in a row to reach the longest wait.
    for _ in 0..8 {
        assert!(matches!(pool.get().await, Err(Error::Connect(_))));
    }
    server.down.store(false, Ordering::SeqCst);
    let asked = tokio::time::Instant::now();
    pool.get().await.expect("the server is back");
    assert!(
        asked.elapsed() <= LONGEST_BACKOFF,
        "served after {:?}",
        asked.elapsed()
    );
}

/// The blocking pool: its connect threads wait the backoff out and resume
/// the connects that checkouts asked for meanwhile.
#[test]
fn the_blocking_pool_backs_off_and_serves_again_once_the_server_is_back() {
    let server = Flaky::down();
    let pool = patient(pinpool::blocking::Pool::builder())
        .build(server.clone())
        .expect("a valid config");
    // Every failed checkout but the first waited for its backed-off
    // connect, which failed it: one attempt each, never a burst.
    for failed in 1..=6 {
        assert!(matches!(pool.get(), Err(Error::Connect(_))));
        assert_eq!(server.attempts.load(Ordering::SeqCst), failed);
    }
    server.down.store(false, Ordering::SeqCst);
    pool.get().expect("the server is back");
}
