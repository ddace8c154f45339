//! Any body, sent as a Pub/Sub push or as a CloudEvent in binary or
//! structured mode, through the worker's decoder: it never panics, and
//! either yields a delivery with a valid task id or a short, one-line error
//! (see `common/inputs.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/inputs.rs"]
mod inputs;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = inputs::check_delivery(data) {
        panic!("{why}");
    }
});
