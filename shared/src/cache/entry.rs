//! A model answer as the cache keeps it, and reads it back.
//!
//! An entry is JSON carrying its own key: a store row that does not decode,
//! or that decodes to another key's answer (a copy gone wrong, a hand
//! edit), is corrupt, and a corrupt entry is a miss, never an answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::Key;
use crate::llm::prices::Usd;
use crate::llm::{CacheHit, Content, ModelResponse, Part, Role, Usage};

/// The answer of one model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub model: String,
    pub parts: Vec<Part>,
    /// The provider's own encoding of the turn, sent back as it came when
    /// the conversation goes on (see `Content::raw`).
    pub raw: Option<Value>,
    /// What the call spent: a hit saves it.
    pub usage: Usage,
    pub cost: Option<Usd>,
    /// When the model gave it.
    pub created_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    model: String,
    parts: Vec<Part>,
    #[serde(default)]
    raw: Option<Value>,
    usage: Usage,
    cost_pico: Option<u64>,
    created_at_ms: u64,
}

impl Entry {
    /// What `answer` keeps. Only a model's own answer is kept: a hit
    /// passed on would repeat itself with no cost to save.
    pub fn of(answer: &ModelResponse) -> Entry {
        Entry {
            model: answer.model.clone(),
            parts: answer.content.parts.clone(),
            raw: answer.content.raw.clone(),
            usage: answer.usage,
            cost: answer.cost,
            created_at: SystemTime::now(),
        }
    }

    /// The answer as a hit gives it: the same turn, nothing spent, and
    /// what was saved.
    pub fn hit(&self) -> ModelResponse {
        ModelResponse {
            content: Content {
                role: Some(Role::Model),
                parts: self.parts.clone(),
                raw: self.raw.clone(),
            },
            usage: Usage::default(),
            model: self.model.clone(),
            cost: Some(Usd::ZERO),
            cache_hit: Some(CacheHit {
                usage: self.usage,
                cost: self.cost,
            }),
        }
    }

    pub fn encode(&self, key: &Key) -> Vec<u8> {
        let stored = Stored {
            key: key.as_str().to_string(),
            model: self.model.clone(),
            parts: self.parts.clone(),
            raw: self.raw.clone(),
            usage: self.usage,
            cost_pico: self.cost.map(Usd::pico),
            created_at_ms: self
                .created_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        // Parts and raw are JSON already; this cannot fail.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// The entry in `bytes`, if it is whole and is `key`'s.
    pub fn decode(key: &Key, bytes: &[u8]) -> Result<Entry, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| format!("it does not decode: {e}"))?;
        if stored.key != key.as_str() {
            return Err("it holds another key's answer".to_string());
        }
        if stored.parts.is_empty() {
            return Err("it holds no answer".to_string());
        }
        Ok(Entry {
            model: stored.model,
            parts: stored.parts,
            raw: stored.raw,
            usage: stored.usage,
            cost: stored.cost_pico.map(Usd::from_pico),
            created_at: UNIX_EPOCH + Duration::from_millis(stored.created_at_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ModelRequest;

    fn answer() -> ModelResponse {
        ModelResponse {
            content: Content {
                role: Some(Role::Model),
                parts: vec![Part::Text("four".into())],
                raw: Some(serde_json::json!({"parts": [{"text": "four"}]})),
            },
            usage: Usage {
                input_tokens: 12,
                output_tokens: 3,
                cached_tokens: 2,
                thinking_tokens: 1,
            },
            model: "gemini-2.5-flash".into(),
            cost: Some(Usd::from_pico(1_234_567)),
            cache_hit: None,
        }
    }

    #[test]
    fn an_entry_reads_back_as_a_free_hit_that_says_what_it_saved() {
        let key = super::super::key::key("alice", "gemini", "gemini-2.5-flash", &ModelRequest::default());
        let entry = Entry::of(&answer());
        let back = Entry::decode(&key, &entry.encode(&key)).expect("decodes");
        let hit = back.hit();
        assert_eq!(hit.content, answer().content);
        assert_eq!((hit.usage, hit.cost), (Usage::default(), Some(Usd::ZERO)));
        let saved = hit.cache_hit.expect("a hit");
        assert_eq!((saved.usage, saved.cost), (answer().usage, answer().cost));
    }

    #[test]
    fn a_damaged_or_misplaced_entry_is_refused() {
        let key = super::super::key::key("alice", "gemini", "m", &ModelRequest::default());
        let other = super::super::key::key("bob", "gemini", "m", &ModelRequest::default());
        let bytes = Entry::of(&answer()).encode(&key);
        assert!(Entry::decode(&other, &bytes).is_err(), "another key's answer");
        assert!(Entry::decode(&key, &bytes[..bytes.len() / 2]).is_err(), "a cut entry");
        assert!(Entry::decode(&key, b"not json").is_err());
    }
}
