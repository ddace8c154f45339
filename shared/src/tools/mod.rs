//! Tools the agent can call, behind one trait.
//!
//! A tool declares its name, a description and a JSON Schema for its
//! arguments (the model's function declarations are built from these), and
//! validates the arguments it is given: a model can send anything, and a
//! tool's complaint goes back to the model as a result it can correct,
//! never as a failed run.
//!
//! - [`calculator`]: safe arithmetic (`calculate`), a parser, never `eval`.
//! - [`search`]: BM25 full-text search over a folder of documents
//!   (`search_web`), with the project's own documentation as the default.
//! - `memory`: per-session key/value memory in the store
//!   (`store_memory`, `recall_memory`).
//! - [`endpoint`]: a tool served over HTTP as a function of its own.
//! - [`registry`](mod@registry): the agent's tools, from the settings.
//! - [`remote`]: a tool function called over HTTP(S), with a Google ID token
//!   on Google Cloud.
//! - [`ToolSource`]: tools that change while the process runs (those of
//!   MCP servers, [`crate::mcp::client`]).

pub mod calculator;
pub mod endpoint;
pub(crate) mod memory;
pub mod registry;
pub mod remote;
pub mod search;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::llm::ToolSpec;

/// What a tool call knows about the run it belongs to.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    /// The store key of the agent run's session (its owner's:
    /// `owned::session_key`): memory is kept per session.
    pub session_key: String,
}

/// Why a tool call did not produce a result. The message is for the model
/// (and the step trace): what was wrong and how to call the tool instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool. `args` is whatever the model sent.
    async fn call(&self, args: Value, context: &ToolContext) -> Result<Value, ToolError>;

    /// How long a call may take before the agent gives up on it; `None`:
    /// the agent's own limit ([`crate::agent::TOOL_TIMEOUT`]). A remote
    /// agent, which runs a task of its own, takes longer.
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Decodes a model's arguments into a tool's typed arguments.
pub fn arguments<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    let args = match args {
        // Some models send no arguments at all for a tool without any.
        Value::Null => Value::Object(Default::default()),
        Value::String(s) => {
            return Err(ToolError::InvalidArguments(format!(
                "the arguments must be a JSON object, not the string {s:?}"
            )));
        }
        other => other,
    };
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// Tools that come and go while the process runs: the tools of the MCP
/// servers in `MCP_SERVERS`, as last listed.
pub trait ToolSource: Send + Sync {
    /// The tools as now known; cheap, never waits on the network.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
}

/// The tools of a run, by name: the built-in ones, and those of any
/// [`ToolSource`] as they are when asked.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn with(mut self, tool: Arc<dyn Tool>) -> Registry {
        self.tools.insert(tool.spec().name.clone(), tool);
        self
    }

    pub fn with_source(mut self, source: Arc<dyn ToolSource>) -> Registry {
        self.sources.push(source);
        self
    }

    /// Every tool now, by name; a built-in tool wins over a source's of
    /// the same name.
    fn current(&self) -> BTreeMap<String, Arc<dyn Tool>> {
        let mut tools = BTreeMap::new();
        for tool in self.sources.iter().flat_map(|source| source.tools()) {
            tools.insert(tool.spec().name.clone(), tool);
        }
        tools.extend(self.tools.iter().map(|(name, tool)| (name.clone(), tool.clone())));
        tools
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        if let Some(tool) = self.tools.get(name) {
            return Some(tool.clone());
        }
        self.sources
            .iter()
            .flat_map(|source| source.tools())
            .find(|tool| tool.spec().name == name)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        if self.sources.is_empty() {
            return self.tools.values().map(|t| t.spec().clone()).collect();
        }
        self.current().values().map(|t| t.spec().clone()).collect()
    }

    /// The tools named in `names` that this registry has now: what one
    /// subtask of a multi-agent run may use.
    pub fn only(&self, names: &[String]) -> Registry {
        Registry {
            tools: self
                .current()
                .into_iter()
                .filter(|(name, _)| names.contains(name))
                .collect(),
            sources: Vec::new(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        if self.sources.is_empty() {
            return self.tools.keys().cloned().collect();
        }
        self.current().into_keys().collect()
    }
}

pub use registry::{registry, search_index};
