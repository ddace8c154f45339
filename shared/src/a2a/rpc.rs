//! JSON-RPC 2.0 as A2A uses it ([`crate::jsonrpc`]), with the protocol's
//! own error codes.

pub use crate::jsonrpc::*;

pub const TASK_NOT_FOUND: i32 = -32001;
pub const TASK_NOT_CANCELABLE: i32 = -32002;
pub const PUSH_NOTIFICATION_NOT_SUPPORTED: i32 = -32003;
pub const UNSUPPORTED_OPERATION: i32 = -32004;
pub const VERSION_NOT_SUPPORTED: i32 = -32009;

impl Fault {
    pub fn task_not_found(id: &str) -> Fault {
        Fault::new(TASK_NOT_FOUND, format!("there is no task {id:?}"))
    }
}
