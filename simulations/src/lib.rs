//! Simulations that drive pinpool's real core under virtual time.
//!
//! `pool-efficiency` reproduces and extends the experiment of "A Curious
//! Concurrency Case" (2013): S sockets, N threads pinned for life, each using
//! its socket for 1–20 s, sleeping 1 s and asking again; how much socket time
//! goes unused when checkin `signal`s, `broadcast`s, or hands off.

pub mod chart;
pub mod experiment;
pub mod report;
pub mod series;
pub mod sim;
