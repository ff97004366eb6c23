//! What the fuzzers found, replayed on every test run: each input in
//! `fuzz/regressions/core_inputs/` drives the core as the `core_inputs`
//! fuzz target does (the same code, `fuzz/core_inputs.rs`) and must run
//! clean. An input goes there with the fix for what it found.

use arbitrary::{Arbitrary, Unstructured};

#[path = "../fuzz/core_inputs.rs"]
mod core_inputs;

#[test]
fn every_core_input_the_fuzzer_found_runs_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/core_inputs");
    let mut replayed = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the regressions folder") {
        let path = entry.expect("a readable entry").path();
        let bytes = std::fs::read(&path).expect("a readable input");
        // As libfuzzer-sys builds a typed input from the fuzzer's bytes.
        let input = core_inputs::Input::arbitrary_take_rest(Unstructured::new(&bytes))
            .expect("an input the fuzzer made decodes");
        core_inputs::run(input);
        replayed.push(path);
    }
    assert!(!replayed.is_empty(), "no inputs in {dir}");
}
