//! pinpool: a connection pool that **pins** each thread or task to one
//! connection, and hands a freed connection to the first waiter that can use
//! it — FIFO, with no lost and no futile wake-ups.
//!
//! Every decision lives in [`core`], a pure deterministic state machine; the
//! [`blocking`] pool, the [`tokio`] pool, the model checks
//! and the simulation all drive it.

pub mod blocking;
mod builder;
pub mod core;
mod driver;
mod error;
mod interrupt;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sync;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use builder::Builder;
pub use driver::maintenance::live_maintenance_workers;
pub use error::Error;
pub use interrupt::InterruptHandle;
