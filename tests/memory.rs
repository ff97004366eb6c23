//! What a pool costs in memory: at build, whatever its `max_size`, and per
//! connection that exists. Counted by a global allocator that tracks the
//! bytes live, so the figures are exact for this build; run with
//! `--nocapture` to see them (`docs/blocking.md` quotes them).
//!
//! One test function, so no other test in this binary allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use pinpool::core::{Config, Pinning};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The crate denies unsafe code; a global allocator cannot be written
// without it, and this one only forwards to the system's.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// The bytes `build` leaves live in the value it returns.
fn retained<T>(build: impl FnOnce() -> T) -> (T, isize) {
    let before = live();
    let value = build();
    (value, live() - before)
}

/// The bytes a pool that `build` makes leaves live: the fewest of three
/// builds, each dropped before the next. What the pool itself keeps shows
/// in every build; a stray allocation elsewhere in the process while one
/// is counted does not (beside three busy loops one count in about 200
/// runs came out 900 B high).
fn least_retained<T>(build: impl Fn() -> T) -> isize {
    let counts = (0..3).map(|_| {
        let (pool, bytes) = retained(&build);
        drop(pool);
        bytes
    });
    counts.min().expect("three builds")
}

fn blocking(
    max_size: usize,
    pinning: Pinning,
) -> pinpool::blocking::Pool<fn() -> std::io::Result<()>> {
    fn noop() -> std::io::Result<()> {
        Ok(())
    }
    pinpool::blocking::Pool::builder()
        .max_size(max_size)
        .pinning(pinning)
        .build(noop as fn() -> _)
        .unwrap()
}

#[test]
fn memory_follows_the_connections_that_exist_not_max_size() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    // Warm up what is allocated once per process (thread-locals, the
    // tracing dispatcher, id counters) so it is not charged to a pool.
    drop(blocking(4, Pinning::Off));

    for pinning in [Pinning::Strict, Pinning::Off] {
        let small_bytes = least_retained(|| blocking(64, pinning));
        let huge_bytes = least_retained(|| blocking(Config::SIZE_LIMIT, pinning));
        eprintln!(
            "blocking {pinning:?}: {small_bytes} B at max_size 64, {huge_bytes} B at {}",
            Config::SIZE_LIMIT
        );
        assert_eq!(
            huge_bytes, small_bytes,
            "{pinning:?}: a pool's memory at build must not grow with max_size"
        );
    }

    let tokio_pool = |max_size| {
        pinpool::tokio::Pool::builder()
            .max_size(max_size)
            .build(|| async { Ok::<_, std::io::Error>(()) })
            .unwrap()
    };
    let small_bytes = least_retained(|| tokio_pool(64));
    let huge_bytes = least_retained(|| tokio_pool(Config::SIZE_LIMIT));
    eprintln!(
        "tokio: {small_bytes} B at max_size 64, {huge_bytes} B at {}",
        Config::SIZE_LIMIT
    );
    assert_eq!(
        huge_bytes, small_bytes,
        "tokio: memory at build grew with max_size"
    );

    // Per connection: open `n` connections on a pool of the largest size
    // (connects are tasks on this thread, so nothing is still being freed
    // elsewhere when the count is read), then let them all go idle.
    let n = 1_000;
    let pool = tokio_pool(Config::SIZE_LIMIT);
    let before = live();
    runtime.block_on(async {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(pool.get().await.unwrap());
        }
    });
    assert_eq!(pool.state().idle, n);
    let per_connection = (live() - before) / n as isize;
    eprintln!("per idle connection (a zero-sized one): {per_connection} B");
    assert!(
        (1..=1024).contains(&per_connection),
        "the pool's bookkeeping per connection is {per_connection} B"
    );
}
