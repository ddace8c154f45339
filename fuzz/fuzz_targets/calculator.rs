//! Any text as an expression for the `calculate` tool: it never panics, a
//! result is finite, and a refusal says why (see `common/inputs.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/inputs.rs"]
mod inputs;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = inputs::check_calculator(data) {
        panic!("{why}");
    }
});
