//! pinpool: a connection pool for database drivers, blocking and Tokio,
//! that **pins** each thread or task to one connection — shared, or
//! exclusive as a SQL session — and hands a freed connection to the first
//! waiter that can use it: FIFO, with no lost and no futile wake-ups.
//!
//! # A tour
//!
//! The [blocking] pool: a thread's first `get()` pins it to a
//! connection, and later ones reuse it (lock-free while nobody else waits
//! for it). A manager opens connections; a closure will do:
//!
//! ```
//! use pinpool::blocking::{Pool, PooledConnection};
//!
//! let pool = Pool::builder()
//!     .max_size(4)
//!     .build(|| Ok::<_, std::io::Error>(Vec::<String>::new()))?;
//! let first = PooledConnection::id(&pool.get()?);
//! assert_eq!(PooledConnection::id(&pool.get()?), first, "this thread's own");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The [async](tokio) pool (feature `tokio`, on by default) pins a
//! *scope*: every `get()` inside [`tokio::Pool::pinned`] is one owner's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = pinpool::tokio::Pool::builder()
//!     .max_size(4)
//!     .build(|| async { Ok::<_, std::io::Error>(Vec::<String>::new()) })?;
//! pool.pinned(async {
//!     pool.get().await.unwrap().push("BEGIN".into());
//!     assert_eq!(pool.get().await.unwrap().len(), 1, "the scope's own");
//! })
//! .await;
//! # Ok(())
//! # }
//! ```
//!
//! Which mode ([`core::Pinning`]): `Strict` (the default) when owners may
//! share a connection but need ordering on it (MongoDB's read-your-writes);
//! `Exclusive` when it carries session state that is one owner's alone
//! (SQL), reset ([`core::Reset`]) before the next owner gets it — owners
//! can also be values, `pool.session()`; `Affinity` or `Off` when nothing
//! is per-session. Who gets a freed connection is the
//! [`core::WakePolicy`]: eventually fair by default, `Handoff` for strict
//! FIFO.
//!
//! Operating a pool: `try_get()` never waits and `get_timeout(d)` waits
//! its own time; `resize(n)` changes `max_size` while the pool runs; the
//! feature `metrics` exports OpenTelemetry-named metrics (listed in the
//! module `pinpool::metrics`, which the feature adds).
//!
//! Adapters: [`mongodb`] (feature `mongodb`, one wire-protocol socket)
//! and [`postgres`] (feature `postgres`, over `postgres` and
//! `tokio-postgres`). Every decision is made in [`core`], a pure,
//! deterministic state machine that both pools, the loom model checks and
//! the simulation drive; a driver author can drive it too.
//!
//! The repository's `docs/` pages go deeper: design, sessions, each pool,
//! lifecycle, the adapters, benchmarks, the simulation, model checking,
//! tests.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
mod builder;
pub mod core;
mod driver;
mod error;
pub mod hooks;
mod interrupt;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "mongodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongodb")))]
pub mod mongodb;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod sync;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

pub use builder::{Builder, BuiltPool};
pub use driver::maintenance::live_maintenance_workers;
pub use error::Error;
pub use hooks::{Hooked, Hooks};
pub use interrupt::InterruptHandle;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
