//! `store_memory` and `recall_memory`: what the agent remembers of a session.
//!
//! Memory lives in the store, not in the process, so a fact told to one
//! instance is known to every other one and survives a restart.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolError, arguments};
use crate::llm::ToolSpec;
use crate::store::{MemoryStore, StoreError};

/// The tools' names, as the model calls them.
pub(crate) const STORE_TOOL_NAME: &str = "store_memory";
pub(crate) const RECALL_TOOL_NAME: &str = "recall_memory";

/// Bounds what one session can make the store hold through the model.
pub(crate) const MAX_KEY_CHARS: usize = 200;
pub(crate) const MAX_VALUE_CHARS: usize = 4000;
/// Entries `recall_memory` returns at most.
pub(crate) const MAX_RECALL: usize = 50;

fn store_error(err: StoreError) -> ToolError {
    tracing::warn!(%err, "memory store failed");
    ToolError::Failed("the memory store is unavailable right now; try again later".to_string())
}

pub(crate) struct StoreMemory {
    spec: ToolSpec,
    store: Arc<dyn MemoryStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreArgs {
    key: String,
    value: String,
}

impl StoreMemory {
    pub(crate) fn new(store: Arc<dyn MemoryStore>) -> StoreMemory {
        StoreMemory {
            spec: ToolSpec {
                name: STORE_TOOL_NAME.to_string(),
                description: "Remembers a fact for the rest of this session, as a key and a value \
                              (e.g. key \"favourite colour\", value \"teal\"). Storing a key again replaces its value."
                    .to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "key": {"type": "string", "description": "What the fact is about, e.g. \"favourite colour\"."},
                        "value": {"type": "string", "description": "The fact, e.g. \"teal\"."}
                    },
                    "required": ["key", "value"]
                }),
            },
            store,
        }
    }
}

#[async_trait]
impl Tool for StoreMemory {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, context: &ToolContext) -> Result<Value, ToolError> {
        let StoreArgs { key, value } = arguments(args)?;
        if key.trim().is_empty() {
            return Err(ToolError::InvalidArguments(
                "key is empty; name what the fact is about".into(),
            ));
        }
        if key.chars().count() > MAX_KEY_CHARS || value.chars().count() > MAX_VALUE_CHARS {
            return Err(ToolError::InvalidArguments(format!(
                "a key is at most {MAX_KEY_CHARS} characters and a value at most {MAX_VALUE_CHARS}"
            )));
        }
        let entry = self
            .store
            .remember(&context.session_key, &key, &value)
            .await
            .map_err(store_error)?;
        Ok(json!({"stored": {"key": entry.key, "value": entry.value}}))
    }
}

pub(crate) struct RecallMemory {
    spec: ToolSpec,
    store: Arc<dyn MemoryStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecallArgs {
    #[serde(default)]
    key: Option<String>,
}

impl RecallMemory {
    pub(crate) fn new(store: Arc<dyn MemoryStore>) -> RecallMemory {
        RecallMemory {
            spec: ToolSpec {
                name: RECALL_TOOL_NAME.to_string(),
                description: "Recalls what was remembered in this session: the value of one key, \
                              or every remembered fact when no key is given."
                    .to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "key": {"type": "string", "description": "The fact to recall; omit to recall everything."}
                    }
                }),
            },
            store,
        }
    }
}

#[async_trait]
impl Tool for RecallMemory {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, context: &ToolContext) -> Result<Value, ToolError> {
        let RecallArgs { key } = arguments(args)?;
        let key = key.filter(|k| !k.trim().is_empty());
        let entries = self
            .store
            .recall(&context.session_key, key.as_deref(), MAX_RECALL)
            .await
            .map_err(store_error)?;
        let memories: Vec<Value> = entries
            .into_iter()
            .map(|e| json!({"key": e.key, "value": e.value}))
            .collect();
        Ok(json!({"memories": memories}))
    }
}
