//! What this crate's binaries share: the no-op connection of every pool,
//! and the instruction-count binaries' command line.

pub mod noop;
pub mod scenario;
