//! Test helpers for the driver's fast paths.

use super::*;

/// Runs `work` on another thread while this one holds the pool lock: `work`
/// calls its first callback once warmed up (the lock is then taken with
/// `lock`) and its second when the part to prove is done. Says whether
/// that part finished within 20 s: the tests' proof that a fast path never
/// takes the lock.
#[cfg(test)]
pub(crate) fn finishes_while_locked<G>(
    lock: impl FnOnce() -> G,
    work: impl FnOnce(&dyn Fn(), &dyn Fn()) + Send,
) -> bool {
    use std::sync::mpsc;
    let (ready_tx, ready) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let warmed_up = || {
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            };
            work(&warmed_up, &|| done_tx.send(()).unwrap());
        });
        ready.recv().unwrap();
        let held = lock();
        go.send(()).unwrap();
        let finished = done.recv_timeout(Duration::from_secs(20)).is_ok();
        drop(held);
        finished
    })
}
