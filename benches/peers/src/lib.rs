//! What this crate's binaries share: the no-op connection of every pool.

pub mod noop;
