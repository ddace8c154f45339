//! Any body of a `POST /a2a`, read as the endpoint reads it: the JSON-RPC
//! request (`agent_core::a2a::rpc::parse`), then a send's params in either
//! revision (`wire::send`) and a task reference (`wire::task_ref`). No
//! panic; every refusal one of the protocol's codes with a short message;
//! a send read has its message id and text (see `common/inputs.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/inputs.rs"]
mod inputs;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = inputs::check_a2a(data) {
        panic!("{:?}: {why}", String::from_utf8_lossy(data));
    }
});
