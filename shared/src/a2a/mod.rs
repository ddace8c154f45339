//! A2A (the Agent2Agent protocol): the wire of both revisions this project
//! speaks, 1.0 and 0.3, kept apart from what serves or calls it.
//!
//! The two revisions carry the same things under different names: methods
//! (`SendMessage` / `message/send`), task states (`TASK_STATE_COMPLETED` /
//! `completed`), roles (`ROLE_USER` / `user`), parts (`{"text"}` /
//! `{"kind":"text","text"}`) and answers (`{"task":{…}}` / the task with
//! `"kind":"task"`). A request says which it speaks with the `A2A-Version`
//! header; none means 0.3, as the specification requires.
//!
//! - [`Version`]: which revision a request speaks, from its header.
//! - [`rpc`]: JSON-RPC envelopes and the protocol's error codes.
//! - [`wire`]: a task as each revision shows it, and the messages and
//!   params a client sends, read the same way from either.
//! - [`client`]: the agent's client of the agents in `A2A_AGENTS`, and
//!   `outcome`, where a remote task stands as the client follows it.

pub mod client;
mod outcome;
pub mod rpc;
pub mod wire;

/// The revision of the protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 1.0: PascalCase methods, proto-JSON enums, wrapped answers.
    V1,
    /// 0.3: slash methods, lower-case states, `kind` discriminators.
    V03,
}

/// The header a request names its revision in.
pub const VERSION_HEADER: &str = "a2a-version";

impl Version {
    /// From the `A2A-Version` header: absent (or empty) is 0.3; `1.0`,
    /// `1`, and `0.3` (or `0.3.0`) are known; anything else is refused with
    /// the version it asked for.
    pub fn from_header(value: Option<&str>) -> Result<Version, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(Version::V03),
            Some("1.0" | "1" | "1.0.0") => Ok(Version::V1),
            Some("0.3" | "0.3.0") => Ok(Version::V03),
            Some(other) => Err(other.chars().take(40).collect()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1.0",
            Version::V03 => "0.3",
        }
    }
}
