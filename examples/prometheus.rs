//! Exporting a pool's metrics to Prometheus: install a recorder, build the
//! pool, and render what a scrape would read.
//!
//! `cargo run --example prometheus --features metrics`
//!
//! A real service serves `handle.render()` on its `/metrics` endpoint (or
//! enables the exporter's `http-listener` feature, which does it).

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use pinpool::blocking::Pool;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let pool = Pool::builder()
        .name("orders-db")
        .max_size(1)
        .build(|| Ok::<_, std::io::Error>(Vec::<u8>::new()))?;

    // Some work: this thread's checkouts, and another thread's that times
    // out waiting for the only connection.
    for _ in 0..10 {
        pool.get()?.push(1);
    }
    let held = pool.get()?;
    let waited = std::thread::scope(|s| {
        s.spawn(|| pool.get_timeout(Duration::from_millis(10)).map(drop))
            .join()
            .unwrap()
    });
    assert!(matches!(waited, Err(pinpool::Error::Timeout { .. })));
    drop(held);
    let _ = pool.state(); // ends this thread's lease: its checkouts are counted

    let scrape = handle.render();
    println!("{scrape}");
    for name in [
        "db_client_connection_count",
        "db_client_connection_wait_time",
    ] {
        assert!(scrape.contains(name), "{name} missing from the scrape");
    }
    Ok(())
}
