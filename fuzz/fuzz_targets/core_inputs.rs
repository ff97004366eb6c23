//! The core driven by arbitrary inputs (see `fuzz/core_inputs.rs`).
#![no_main]

#[path = "../core_inputs.rs"]
mod core_inputs;

libfuzzer_sys::fuzz_target!(|input: core_inputs::Input| core_inputs::run(input));
