//! Summarising: a turn of tool results read as a final answer.
//!
//! After one round of calls the offline model answers in text, so the agent
//! loop ends. The answer is one plain sentence per result, deterministic, so
//! tests can predict it, and it recovers what was asked from the call when a
//! tool does not echo it.

use serde_json::Value;

use super::super::{FunctionCall, FunctionResponse};
use crate::tools::calculator::TOOL_NAME as CALCULATE;
use crate::tools::memory::{RECALL_TOOL_NAME as RECALL_MEMORY, STORE_TOOL_NAME as STORE_MEMORY};
use crate::tools::search::TOOL_NAME as SEARCH_WEB;

/// Composes the answer to a turn of tool results: one sentence per result,
/// in the order the results came. `calls` are the function calls of the
/// model turn that asked for them; a result is matched to its call by id,
/// else by position, to recover what was asked when the result does not
/// echo it.
pub(super) fn summarise_results(results: &[&FunctionResponse], calls: &[&FunctionCall]) -> String {
    results
        .iter()
        .enumerate()
        .map(|(i, result)| summarise_result(result, matching_call(result, i, calls)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The call a result answers: the one with its id, else the one at its
/// position if it names the same tool.
fn matching_call<'c>(result: &FunctionResponse, index: usize, calls: &[&'c FunctionCall]) -> Option<&'c FunctionCall> {
    if let Some(id) = &result.id
        && let Some(call) = calls.iter().find(|c| c.id.as_ref() == Some(id))
    {
        return Some(call);
    }
    calls.get(index).copied().filter(|c| c.name == result.name)
}

/// One result as a sentence.
fn summarise_result(result: &FunctionResponse, call: Option<&FunctionCall>) -> String {
    let response = &result.response;
    // What was asked: echoed by the tool, else taken from the call.
    let asked = |field: &str| -> Option<String> {
        let echoed = response.get(field).and_then(Value::as_str);
        let from_call = || call.and_then(|c| c.args.get(field)).and_then(Value::as_str);
        echoed.or_else(from_call).map(str::to_string)
    };
    let name = result.name.as_str();

    if let Some(error) = response.get("error") {
        let message = plain(error);
        let message = message.trim_end_matches('.');
        return match asked("expression") {
            Some(expression) if name == CALCULATE => format!("I could not calculate {expression}: {message}."),
            _ => format!("The tool {name} failed: {message}."),
        };
    }

    match name {
        CALCULATE if response.get("result").is_some() => {
            let value = response.get("result").map(plain).unwrap_or_default();
            match asked("expression") {
                Some(expression) => format!("{expression} = {value}."),
                None => format!("The result is {value}."),
            }
        }
        SEARCH_WEB => summarise_search(asked("query"), response),
        STORE_MEMORY => {
            let stored = response.get("stored");
            let field = |f: &str| stored.and_then(|s| s.get(f)).map(plain).or_else(|| asked(f));
            match (field("key"), field("value")) {
                (Some(key), Some(value)) => format!("I will remember that {key} is {value}."),
                _ => "I stored it.".to_string(),
            }
        }
        RECALL_MEMORY => summarise_memories(asked("key"), response),
        _ => format!("The tool {name} returned {}.", shorten(&response.to_string(), 200)),
    }
}

/// At most three search results as "1. title — snippet; 2. ...".
fn summarise_search(query: Option<String>, response: &Value) -> String {
    let results = response
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let listed: Vec<String> = results
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, r)| {
            let title = r.get("title").map(plain).unwrap_or_default();
            let snippet = shorten(&r.get("snippet").map(plain).unwrap_or_default(), 160);
            let snippet = snippet.trim_end_matches('.');
            if snippet.is_empty() {
                format!("{}. {title}", i + 1)
            } else {
                format!("{}. {title} — {snippet}", i + 1)
            }
        })
        .collect();
    match (query, listed.is_empty()) {
        (Some(q), true) => format!("I found nothing about \"{q}\"."),
        (None, true) => "I found nothing.".to_string(),
        (Some(q), false) => format!("Search results for \"{q}\": {}.", listed.join("; ")),
        (None, false) => format!("Search results: {}.", listed.join("; ")),
    }
}

/// Every recalled memory as "key is value", or that there are none.
fn summarise_memories(key: Option<String>, response: &Value) -> String {
    let memories = response
        .get("memories")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let entries: Vec<String> = memories
        .iter()
        .map(|m| match (m.get("key"), m.get("value")) {
            (Some(k), Some(v)) => format!("{} is {}", plain(k), plain(v)),
            _ => plain(m),
        })
        .collect();
    match (entries.is_empty(), key) {
        (false, _) => format!("I remember: {}.", entries.join("; ")),
        (true, Some(key)) => format!("I do not remember anything about \"{key}\"."),
        (true, None) => "I do not remember anything yet.".to_string(),
    }
}

/// A JSON value as a person reads it: strings without quotes, the rest as
/// JSON (so a result keeps the form the tool wrote it in: 345, 2.5).
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

/// Cuts text to `max` characters on a character boundary.
fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{}...", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::offline::wire_names::{CALCULATE, RECALL_MEMORY, SEARCH_WEB, STORE_MEMORY};
    use serde_json::json;

    fn response(id: Option<&str>, name: &str, body: Value) -> FunctionResponse {
        FunctionResponse {
            id: id.map(str::to_string),
            name: name.to_string(),
            response: body,
        }
    }

    #[test]
    fn results_read_as_sentences() {
        let results = [
            response(None, CALCULATE, json!({"expression": "15 * 23", "result": 345})),
            response(
                None,
                CALCULATE,
                json!({"expression": "1/0", "error": "division by zero"}),
            ),
            response(
                None,
                SEARCH_WEB,
                json!({"query": "x", "results": [
                    {"title": "A", "snippet": "first.", "source": "a.md", "score": 2.0},
                    {"title": "B", "snippet": "", "source": "b.md", "score": 1.0},
                    {"title": "C", "snippet": "third", "source": "c.md", "score": 0.5},
                    {"title": "D", "snippet": "fourth", "source": "d.md", "score": 0.1},
                ]}),
            ),
            response(None, SEARCH_WEB, json!({"query": "y", "results": []})),
            response(None, STORE_MEMORY, json!({"stored": {"key": "k", "value": "v"}})),
            response(
                None,
                RECALL_MEMORY,
                json!({"memories": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]}),
            ),
            response(None, RECALL_MEMORY, json!({"memories": []})),
            response(None, "weather", json!({"error": "no such tool."})),
            response(None, "weather", json!({"sunny": true})),
        ];
        let refs: Vec<&FunctionResponse> = results.iter().collect();
        assert_eq!(
            summarise_results(&refs, &[]),
            "15 * 23 = 345. I could not calculate 1/0: division by zero. \
             Search results for \"x\": 1. A — first; 2. B; 3. C — third. I found nothing about \"y\". \
             I will remember that k is v. I remember: a is 1; b is 2. I do not remember anything yet. \
             The tool weather failed: no such tool. The tool weather returned {\"sunny\":true}."
        );
    }

    #[test]
    fn results_that_do_not_echo_are_matched_to_their_calls() {
        let calls = [
            FunctionCall {
                id: Some("a".into()),
                name: CALCULATE.into(),
                args: json!({"expression": "2+2"}),
            },
            FunctionCall {
                id: Some("b".into()),
                name: SEARCH_WEB.into(),
                args: json!({"query": "cats"}),
            },
            FunctionCall {
                id: None,
                name: RECALL_MEMORY.into(),
                args: json!({"key": "colour"}),
            },
        ];
        let calls: Vec<&FunctionCall> = calls.iter().collect();
        // Answered out of order: ids match them up; the last matches by position.
        let results = [
            response(Some("b"), SEARCH_WEB, json!({"results": []})),
            response(Some("a"), CALCULATE, json!({"result": 4})),
            response(None, RECALL_MEMORY, json!({"memories": []})),
        ];
        let refs: Vec<&FunctionResponse> = results.iter().collect();
        assert_eq!(
            summarise_results(&refs, &calls),
            "I found nothing about \"cats\". 2+2 = 4. I do not remember anything about \"colour\"."
        );
    }

    #[test]
    fn long_snippets_are_cut_on_a_character_boundary() {
        let s = shorten(&"ñ".repeat(300), 160);
        assert_eq!(s.chars().count(), 163);
    }
}
