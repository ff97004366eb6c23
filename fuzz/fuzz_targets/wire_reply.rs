//! The MongoDB wire decoder against arbitrary bytes: a typed error or a
//! document, never a panic, and what it decodes round-trips
//! (`pinpool::mongodb::fuzz_reply`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pinpool::mongodb::fuzz_reply(bytes));
