//! A small MongoDB "driver" on pinpool: what a driver author would copy.
//!
//! Each thread's first command pins it to one socket; its unacknowledged
//! (`w: 0`) inserts and the reads after them go down that same socket, so
//! every thread reads its own writes. A broken socket is closed by the pool
//! at checkin and the thread's pin moves to a fresh one.
//!
//! ```sh
//! MONGODB_URI=mongodb://127.0.0.1:27017 cargo run --example mongo_driver --features mongodb
//! ```

use std::time::Duration;

use bson::{Document, doc};
use pinpool::blocking::Pool;
use pinpool::mongodb::{MongoError, MongoManager};

/// The driver: a pool, and the operations applications call.
struct Driver {
    pool: Pool<MongoManager>,
    db: String,
}

/// Any error the driver reports: the pool's (checkout) or the server's.
type DriverError = Box<dyn std::error::Error + Send + Sync>;

impl Driver {
    fn connect(uri: &str, db: &str) -> Result<Self, DriverError> {
        let manager = MongoManager::new(uri)?
            .app_name("pinpool-example")
            .io_timeout(Duration::from_secs(5));
        let pool = Pool::builder()
            .max_size(4)
            .checkout_timeout(Duration::from_secs(5))
            .build(manager)?;
        Ok(Driver {
            pool,
            db: db.to_owned(),
        })
    }

    /// A fire-and-forget insert on this thread's socket.
    fn insert_unacknowledged(
        &self,
        collection: &str,
        document: Document,
    ) -> Result<(), DriverError> {
        let command = doc! { "insert": collection, "documents": [document] };
        Ok(self.pool.get()?.send_unacknowledged(&self.db, command)?)
    }

    /// The number of documents matching `filter`, on this thread's socket.
    fn count(&self, collection: &str, filter: Document) -> Result<i64, DriverError> {
        let command = doc! { "count": collection, "query": filter };
        let reply = self.pool.get()?.command(&self.db, command)?;
        reply_count(&reply)
    }
}

fn reply_count(reply: &Document) -> Result<i64, DriverError> {
    match reply.get("n") {
        Some(bson::Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(bson::Bson::Int64(n)) => Ok(*n),
        Some(bson::Bson::Double(n)) => Ok(*n as i64),
        _ => Err(Box::new(MongoError::Protocol(format!(
            "no count in {reply}"
        )))),
    }
}

fn main() -> Result<(), DriverError> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let driver = Driver::connect(&uri, "pinpool_example")?;
    let threads = 8;
    let misses: i64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let driver = &driver;
                s.spawn(move || -> Result<i64, DriverError> {
                    let mut misses = 0;
                    for i in 0..100 {
                        driver
                            .insert_unacknowledged("events", doc! { "thread": thread, "i": i })?;
                        let seen = driver.count("events", doc! { "thread": thread, "i": i })?;
                        misses += i64::from(seen == 0);
                    }
                    Ok(misses)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("worker panicked"))
            .sum::<Result<i64, DriverError>>()
    })?;
    let state = driver.pool.state();
    println!(
        "{} threads x 100 write-then-read: {misses} misses; {} connections opened",
        threads, state.counters.opened
    );
    Ok(())
}
