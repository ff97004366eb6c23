//! Sessions on PostgreSQL: each worker thread keeps a transaction and a
//! temporary table across its checkouts, because under
//! `Pinning::Exclusive` its session is its own; when a worker ends, its
//! session is reset (`ROLLBACK`, `DISCARD ALL`) before the next worker
//! gets the connection. Eight workers share four connections: the last
//! four wait for a session to be released.
//!
//! ```sh
//! PINPOOL_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres \
//!     cargo run --example pg_session --features postgres
//! ```

use std::time::Duration;

use pinpool::blocking::Pool;
use pinpool::core::Pinning;
use pinpool::postgres::PgManager;

/// Any error the example reports: the pool's (checkout) or the server's.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One worker: a temp table, then a transaction left open between two
/// checkouts, committed in a third; returns what its table holds. Its
/// insert is prepared once, by the session's statement cache.
fn worker(pool: &Pool<PgManager>, id: i32) -> Result<Vec<i32>, Failure> {
    const INSERT: &str = "INSERT INTO work VALUES ($1)";
    pool.get()?
        .batch_execute("CREATE TEMP TABLE work (step int); INSERT INTO work VALUES (1)")?;
    let mut conn = pool.get()?;
    conn.batch_execute("BEGIN")?;
    let insert = conn.prepare_cached(INSERT)?;
    conn.execute(&insert, &[&2])?;
    drop(conn);
    // Another checkout, the same session: the transaction is still open,
    // and the statement still prepared.
    let mut conn = pool.get()?;
    let insert = conn.prepare_cached(INSERT)?;
    conn.execute(&insert, &[&(100 + id)])?;
    conn.batch_execute("COMMIT")?;
    let steps = conn.query("SELECT step FROM work ORDER BY step", &[])?;
    Ok(steps.iter().map(|row| row.get(0)).collect())
}

fn main() -> Result<(), Failure> {
    let url = std::env::var("PINPOOL_PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let pool = Pool::builder()
        .max_size(4)
        .pinning(Pinning::Exclusive)
        .checkout_timeout(Duration::from_secs(30))
        .build(PgManager::from_url(&url)?)?;
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (1..=8)
            .map(|id| {
                let pool = &pool;
                s.spawn(move || worker(pool, id).map_err(|e| e.to_string()))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .collect::<Vec<_>>()
    });
    for (id, steps) in (1..=8).zip(results) {
        let steps = steps?;
        println!("worker {id}: its own table holds {steps:?}");
        assert_eq!(steps, [1, 2, 100 + id], "another worker's state");
    }
    let state = pool.state();
    println!(
        "{} connections opened for 8 workers, {} sessions reset",
        state.counters.opened, state.counters.resets
    );
    // A graceful shutdown: every session closed before the process ends
    // (here at once: the workers have given theirs back).
    assert!(
        pool.close_and_wait(Duration::from_secs(10)),
        "a session still out"
    );
    println!(
        "shut down: {} connections closed",
        pool.state().counters.closed
    );
    Ok(())
}
