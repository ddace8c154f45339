//! The `search_web` tool: full-text search over a corpus of documents,
//! ranked with BM25.
//!
//! The tool is named for the agent's design, although it searches a local
//! corpus rather than the web. Matching ignores case and accents, because
//! users write "matematicas" as often as "matemáticas", and the corpus mixes
//! English and Spanish. This module is the tool the model calls; the search
//! itself is in its submodules:
//!
//! - `analysis`: words, folded (case, accents, plural) and stopwords dropped.
//! - `sections`: Markdown cut at headings, plain text into passages.
//! - `index`: the in-memory BM25 index and its snippets.
//! - `corpus`: the documents, from `SEARCH_CORPUS` or compiled in.

mod analysis;
mod corpus;
mod index;
mod sections;

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolError, arguments};
use crate::llm::ToolSpec;
use analysis::query_terms;
pub use corpus::SearchError;
pub use index::{Document, SearchIndex, SearchResult};

/// The name the agent's design gives the tool, although it searches the
/// configured corpus, not the web.
pub const TOOL_NAME: &str = "search_web";

pub const DEFAULT_MAX_RESULTS: usize = 5;

/// More results than this would fill the model's context with snippets it
/// does not need: a few good sections answer a question.
pub const MAX_RESULTS_LIMIT: usize = 20;

#[derive(Debug, Clone)]
pub struct Search {
    spec: ToolSpec,
    index: Arc<SearchIndex>,
}

/// The declaration of `search_web`: what the model is told. The remote
/// search function takes the same arguments, so a remote tool uses it too.
pub fn spec() -> ToolSpec {
    ToolSpec {
        name: TOOL_NAME.to_string(),
        description: "Searches the document corpus (the project's documentation unless configured \
                      otherwise) for sections matching a few keywords, ranked by relevance (BM25). It \
                      does not reach the live web. Returns the best sections, each with its title, a \
                      snippet of its text around the matching words, its source and a score. Case and \
                      accents are ignored; the corpus may be in English and Spanish."
            .to_string(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "A few keywords to look for, e.g. \"cold start\" or \"matemáticas\"."
                },
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_RESULTS_LIMIT,
                    "description": "How many results to return at most, best first (default 5)."
                }
            },
            "required": ["query"]
        }),
    }
}

impl Search {
    pub fn new(index: Arc<SearchIndex>) -> Search {
        Search { spec: spec(), index }
    }
}

/// The tool's arguments, and the body of `POST /api/v1/tools/search`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SearchRequest")]
pub struct Args {
    /// A few keywords to look for, e.g. "cold start" or "matemáticas".
    #[schemars(schema_with = "crate::http::json::text_schema")]
    pub query: String,
    /// How many results to return at most, best first (default 5).
    #[serde(default, deserialize_with = "whole_number")]
    #[schemars(range(min = 1, max = MAX_RESULTS_LIMIT))]
    pub max_results: Option<u32>,
}

/// The tool's result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "SearchResponse")]
pub struct Answer {
    pub query: String,
    pub results: Vec<SearchResult>,
}

/// Accepts `5` and also `5.0`: some providers carry every JSON number of a
/// function call as a double, and refusing those would be pedantry.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(D::Error::custom(format!(
            "max_results must be a whole number from 1 to {MAX_RESULTS_LIMIT}, not {n}"
        ))),
    }
}

#[async_trait]
impl Tool for Search {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let args: Args = arguments(args)?;
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments(
                "query is empty; pass a few keywords to look for, e.g. {\"query\": \"cold start\"}".to_string(),
            ));
        }
        let max_results = match args.max_results {
            None => DEFAULT_MAX_RESULTS,
            Some(n) if (1..=MAX_RESULTS_LIMIT).contains(&(n as usize)) => n as usize,
            Some(n) => {
                return Err(ToolError::InvalidArguments(format!(
                    "max_results must be from 1 to {MAX_RESULTS_LIMIT}, not {n}"
                )));
            }
        };
        if query_terms(query).is_empty() {
            return Err(ToolError::InvalidArguments(format!(
                "query {query:?} has no word to search for (only common words such as \"the\" or \"de\", or \
                 punctuation); pass a few keywords"
            )));
        }
        let results = self.index.search(query, max_results);
        Ok(json!(Answer {
            query: query.to_string(),
            results,
        }))
    }
}

/// Documents the tests of every part index.
#[cfg(test)]
mod fixtures {
    use super::{Document, SearchIndex, SearchResult};

    pub(super) fn doc(source: &str, text: &str) -> Document {
        Document {
            source: source.to_string(),
            text: text.to_string(),
        }
    }

    pub(super) fn three_docs() -> SearchIndex {
        SearchIndex::from_documents(vec![
            doc(
                "ownership.md",
                "# Ownership\n\nEvery value has a single owner, and the value is dropped when the owner goes away.",
            ),
            doc(
                "borrowing.md",
                "# Borrowing\n\nReferences borrow a value without taking ownership; the borrow checker keeps them valid.",
            ),
            doc(
                "ciencia.md",
                "# Ciencias\n\nLas matemáticas estudian los números, y la física estudia el movimiento de los cuerpos.",
            ),
        ])
    }

    pub(super) fn sources(results: &[SearchResult]) -> Vec<&str> {
        results.iter().map(|r| r.source.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Search {
        Search::new(Arc::new(SearchIndex::builtin()))
    }

    async fn call(args: Value) -> Result<Value, ToolError> {
        tool().call(args, &ToolContext::default()).await
    }

    #[tokio::test]
    async fn the_tool_returns_results() {
        let answer = call(json!({"query": "matemáticas"})).await.expect("a result");
        assert_eq!(answer["query"], "matemáticas");
        let results: Vec<SearchResult> =
            serde_json::from_value(answer["results"].clone()).expect("results in the documented shape");
        assert!(!results.is_empty() && results.len() <= DEFAULT_MAX_RESULTS);

        let answer = call(json!({"query": "cold start", "max_results": 1}))
            .await
            .expect("a result");
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(1));
        let answer = call(json!({"query": "cold start", "max_results": 2.0}))
            .await
            .expect("a whole double");
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(2));

        let answer = call(json!({"query": "zeppelin"})).await.expect("no match is an answer");
        assert_eq!(answer["results"], json!([]));
    }

    #[tokio::test]
    async fn the_tool_refuses_bad_arguments() {
        for args in [
            json!({"query": ""}),
            json!({"query": "   "}),
            json!({"query": "the of"}),
            json!({}),
            json!({"query": "rust", "max_results": 0}),
            json!({"query": "rust", "max_results": 50}),
            json!({"query": "rust", "max_results": -1}),
            json!({"query": "rust", "max_results": 2.5}),
            json!({"query": "rust", "limit": 3}),
            json!("rust"),
        ] {
            let result = call(args.clone()).await;
            assert!(
                matches!(result, Err(ToolError::InvalidArguments(_))),
                "{args}: {result:?}"
            );
        }
        let Err(ToolError::InvalidArguments(message)) = call(json!({"query": " "})).await else {
            panic!("a blank query is refused");
        };
        assert!(message.starts_with("query is empty"), "{message}");
    }

    #[test]
    fn the_spec_describes_the_tool() {
        let search = tool();
        let spec = search.spec();
        assert_eq!(spec.name, "search_web");
        assert!(spec.description.starts_with("Searches the document corpus"));
        assert_eq!(spec.parameters["required"], json!(["query"]));
        assert_eq!(spec.parameters["properties"]["max_results"]["maximum"], json!(20));
    }
}
