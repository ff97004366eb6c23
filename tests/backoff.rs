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

/// A server whose first connect is never answered, as a handshake lost in
/// a blackhole; every later one succeeds at once. (The blocking pool's
/// unanswered connect holds its thread until `release`.)
#[derive(Clone, Default)]
struct FirstUnanswered {
    attempts: Arc<AtomicUsize>,
    released: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
}

impl FirstUnanswered {
    fn is_first(&self) -> bool {
        self.attempts.fetch_add(1, Ordering::SeqCst) == 0
    }

    fn release(&self) {
        *self.released.0.lock() = true;
        self.released.1.notify_all();
    }
}

impl pinpool::tokio::Manager for FirstUnanswered {
    type Connection = ();
    type Error = io::Error;

    async fn connect(&self) -> io::Result<()> {
        if self.is_first() {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl pinpool::blocking::Manager for FirstUnanswered {
    type Connection = ();
    type Error = io::Error;

    fn connect(&self) -> io::Result<()> {
        if self.is_first() {
            let mut released = self.released.0.lock();
            while !*released {
                self.released.1.wait(&mut released);
            }
        }
        Ok(())
    }
}

/// Options under which only the backoff's end can start the next connect
/// in time: maintenance gives the first connect up after 100 ms, and its
/// interval is an hour.
fn gives_up<P>(builder: pinpool::Builder<P>) -> pinpool::Builder<P> {
    patient(builder)
        .max_connecting(1)
        .connect_timeout(Duration::from_millis(100))
        .maintenance_interval(Duration::from_secs(3600))
}

/// A connect given up by maintenance backs connects off with no connect
/// worker left to wait that out: the maintenance worker runs at the
/// backoff's end (the core's `poll_timeout`), so the checkout that asked
/// meanwhile is served then, not an interval later.
#[tokio::test(start_paused = true)]
async fn the_async_pool_resumes_connects_at_the_end_of_a_backoff_begun_by_a_given_up_connect() {
    let server = FirstUnanswered::default();
    let pool = gives_up(pinpool::tokio::Pool::builder())
        .build(server.clone())
        .expect("a valid config");
    assert!(matches!(pool.get().await, Err(Error::ConnectTimeout)));
    let asked = tokio::time::Instant::now();
    pool.get().await.expect("served at the backoff's end");
    assert!(
        asked.elapsed() <= pinpool::core::Config::FIRST_BACKOFF,
        "served after {:?}",
        asked.elapsed()
    );
    assert_eq!(server.attempts.load(Ordering::SeqCst), 2);
}

/// The same in the blocking pool, whose maintenance thread gives the
/// connect up.
#[test]
fn the_blocking_pool_resumes_connects_at_the_end_of_a_backoff_begun_by_a_given_up_connect() {
    let server = FirstUnanswered::default();
    let pool = gives_up(pinpool::blocking::Pool::builder())
        .build(server.clone())
        .expect("a valid config");
    let first = pool.get().map(drop);
    assert!(matches!(first, Err(Error::ConnectTimeout)), "{first:?}");
    pool.get().expect("served at the backoff's end");
    assert_eq!(server.attempts.load(Ordering::SeqCst), 2);
    server.release();
}
