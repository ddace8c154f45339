//! The offline development model: deterministic, no network, no key.
//!
//! It is not a language model. It exists so the whole system (sessions,
//! streaming, metrics, the agent loop) runs on a fresh machine, and so tests
//! have a model whose answers they can predict. Its replies say what it was
//! given, which makes it easy to see that history and system instructions
//! reached the model.
//!
//! When the request offers tools it behaves like a model that calls them, so
//! the agent loop can run without a language model: from the user's task it
//! plans calls (several at once when the task asks for several things, see
//! `plan::plan_calls`), and from a turn of tool results it writes a final
//! answer (see `summary::summarise_results`). It only ever calls tools the
//! request offers, and it always answers results in text, so a loop ends
//! after one round of calls.
//!
//! - `plan`: which tool calls a task asks for.
//! - `named`: a call to a tool the task names (`use TOOL with TEXT`), for
//!   tools that arrive at run time (MCP servers, remote agents).
//! - `expressions`: the arithmetic in a task's text, for `calculate`.
//! - `summary`: a turn of tool results as the final answer.
//! - `roles`: the planner and the synthesis of a multi-agent run.
//! - `research`: the subtopic planner, analyst, writer and critic of a research.

mod expressions;
mod named;
mod plan;
mod research;
mod roles;
mod summary;

/// The tools' wire names spelled out for the planner's and summariser's
/// tests: a renamed tool constant must fail them.
#[cfg(test)]
mod wire_names {
    pub(super) const CALCULATE: &str = "calculate";
    pub(super) const SEARCH_WEB: &str = "search_web";
    pub(super) const STORE_MEMORY: &str = "store_memory";
    pub(super) const RECALL_MEMORY: &str = "recall_memory";
}

use std::borrow::Cow;
use std::fmt::Write as _;

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{
    Content, FunctionCall, FunctionResponse, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Part, Role,
    StreamEvent, Usage, estimate_tokens,
};

pub const MODEL_NAME: &str = "offline";

#[derive(Debug, Default, Clone)]
pub struct OfflineModel;

impl OfflineModel {
    pub fn new() -> Self {
        OfflineModel
    }

    fn answer(&self, request: &ModelRequest) -> ModelResponse {
        let content = if let Some(text) = roles::role_answer(request) {
            Content::model_text(text)
        } else if request.tools.is_empty() {
            Content::model_text(reply(request))
        } else {
            tool_turn(request)
        };
        let input: u64 = request
            .system_instruction
            .iter()
            .map(|s| estimate_tokens(s))
            .chain(request.contents.iter().map(content_tokens))
            .sum();
        ModelResponse {
            usage: Usage {
                input_tokens: input.max(1),
                output_tokens: content_tokens(&content).max(1),
                ..Usage::default()
            },
            content,
            model: MODEL_NAME.to_string(),
            cost: None,
            cache_hit: None,
        }
    }
}

/// The model's turn when tools are offered: a final answer if the last turn
/// carries tool results, calls if the user's task asks for any, and
/// otherwise the usual reply, which then also names the tools it has.
fn tool_turn(request: &ModelRequest) -> Content {
    let Some((last, earlier)) = request.contents.split_last() else {
        return Content::model_text(reply(request));
    };
    let results: Vec<&FunctionResponse> = last
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::FunctionResponse(r) => Some(r),
            _ => None,
        })
        .collect();
    if !results.is_empty() {
        // The calls these results answer are in the latest model turn.
        let calls: Vec<&FunctionCall> = earlier
            .iter()
            .rev()
            .find(|c| c.role() == Role::Model)
            .map(|c| c.function_calls().collect())
            .unwrap_or_default();
        return Content::model_text(summary::summarise_results(&results, &calls));
    }
    if last.role() == Role::User {
        if let Some(call) = named::named_call(&last.text(), &request.tools) {
            return Content {
                role: Some(Role::Model),
                parts: vec![Part::FunctionCall(call)],
                raw: None,
            };
        }
        let offered: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
        let calls = plan::plan_calls(&last.text(), &offered);
        if !calls.is_empty() {
            return Content {
                role: Some(Role::Model),
                parts: calls.into_iter().map(Part::FunctionCall).collect(),
                raw: None,
            };
        }
    }
    let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    Content::model_text(format!(
        "{} Nothing in your message asks for one of my tools ({}).",
        reply(request),
        names.join(", ")
    ))
}

/// The tokens of all the text in a turn, tool traffic included (its parts
/// joined by spaces, a call or result as `NAME JSON`), counted without
/// writing the text out.
fn content_tokens(content: &Content) -> u64 {
    let mut chars = CharCount(content.parts.len().saturating_sub(1));
    for part in &content.parts {
        let _ = match part {
            Part::Text(t) => chars.write_str(t),
            Part::FunctionCall(c) => write!(chars, "{} {}", c.name, c.args),
            Part::FunctionResponse(r) => write!(chars, "{} {}", r.name, r.response),
        };
    }
    (chars.0 as u64).div_ceil(4)
}

/// Counts the characters written to it.
struct CharCount(usize);

impl std::fmt::Write for CharCount {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.chars().count();
        Ok(())
    }
}

/// A turn's text, borrowed when it is one text part (a stored message).
fn text_of(content: &Content) -> Cow<'_, str> {
    match content.parts.as_slice() {
        [Part::Text(text)] => Cow::Borrowed(text),
        _ => Cow::Owned(content.text()),
    }
}

/// The longest quote, in characters.
const QUOTE_MAX: usize = 80;

/// Shortens a quote for a reply, on a character boundary.
#[cfg(test)]
fn quote(text: &str) -> String {
    let mut out = String::new();
    push_quote(&mut out, text);
    out
}

/// Writes a quote for a reply, shortened on a character boundary.
fn push_quote(out: &mut String, text: &str) {
    let text = text.trim();
    out.push('"');
    match text.char_indices().nth(QUOTE_MAX) {
        None => out.push_str(text),
        Some((cut, _)) => {
            out.push_str(&text[..cut]);
            out.push_str("...");
        }
    }
    out.push('"');
}

fn reply(request: &ModelRequest) -> String {
    let (last, earlier) = match request.contents.split_last() {
        Some((last, earlier)) if last.role() == Role::User => (text_of(last), earlier),
        _ => (Cow::Borrowed(""), request.contents.as_slice()),
    };
    let mut earlier_user = earlier
        .iter()
        .filter(|c| c.role() == Role::User)
        .map(text_of)
        .filter(|t| !t.trim().is_empty())
        .peekable();

    let mut out = String::with_capacity(256);
    out.push_str("[offline model] You said: ");
    push_quote(&mut out, &last);
    out.push('.');
    if earlier_user.peek().is_none() {
        out.push_str(" This is the first message of the conversation.");
    } else {
        let _ = write!(
            out,
            " Earlier in this conversation ({} messages) you said: ",
            earlier.len()
        );
        for (i, text) in earlier_user.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_quote(&mut out, &text);
        }
        out.push('.');
    }
    if let Some(system) = request.system_instruction.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push_str(" My instructions: ");
        push_quote(&mut out, system);
        out.push('.');
    }
    out
}

/// Splits text into stream chunks of a few words, keeping every character,
/// so the joined deltas equal the full reply.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            words += 1;
            if words == 3 {
                out.push(std::mem::take(&mut current));
                words = 0;
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait]
impl Model for OfflineModel {
    fn name(&self) -> &str {
        MODEL_NAME
    }

    fn provider(&self) -> &'static str {
        "offline"
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        Ok(self.answer(request))
    }

    /// The answer's text in chunks of a few words, then the whole turn. A
    /// turn of function calls has no text, so it is a lone `Done`.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let response = self.answer(&request);
        let mut events: Vec<Result<StreamEvent, ModelError>> = chunks(&response.text())
            .into_iter()
            .map(|c| Ok(StreamEvent::Delta(c)))
            .collect();
        events.push(Ok(StreamEvent::Done(response)));
        Ok(futures_util::stream::iter(events).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use serde_json::{Value, json};

    fn request(turns: &[(&str, Role)]) -> ModelRequest {
        ModelRequest {
            response_schema: None,
            system_instruction: None,
            contents: turns
                .iter()
                .map(|(t, r)| match r {
                    Role::User => Content::user_text(*t),
                    Role::Model => Content::model_text(*t),
                })
                .collect(),
            tools: vec![],
        }
    }

    #[tokio::test]
    async fn reply_shows_the_history_it_was_given() {
        let model = OfflineModel::new();
        let first = model
            .generate(&request(&[("hello", Role::User)]))
            .await
            .expect("offline never fails");
        assert!(first.text().contains("You said: \"hello\""), "{}", first.text());
        assert!(first.text().contains("first message"), "{}", first.text());
        assert!(first.usage.total() > 0);

        let second = model
            .generate(&request(&[
                ("hello", Role::User),
                (&first.text(), Role::Model),
                ("again", Role::User),
            ]))
            .await
            .expect("offline never fails");
        assert!(second.text().contains("You said: \"again\""), "{}", second.text());
        assert!(
            second.text().contains("(2 messages) you said: \"hello\""),
            "{}",
            second.text()
        );
    }

    /// A stream's deltas joined, and its final answer: more than one delta,
    /// then exactly one `Done`, last.
    fn deltas_then_done(events: &[StreamEvent]) -> (String, &ModelResponse) {
        let (done, deltas) = events.split_last().expect("at least one event");
        let joined: String = deltas
            .iter()
            .map(|e| match e {
                StreamEvent::Delta(d) => d.clone(),
                StreamEvent::Done(_) => panic!("done before the end"),
            })
            .collect();
        assert!(deltas.len() > 1, "the answer arrives in several deltas");
        match done {
            StreamEvent::Done(answer) => (joined, answer),
            StreamEvent::Delta(_) => panic!("the last event is not done"),
        }
    }

    #[tokio::test]
    async fn stream_deltas_join_to_the_reply() {
        let model = OfflineModel::new();
        let req = request(&[("tell me something about streams", Role::User)]);
        let events: Vec<StreamEvent> = model
            .stream(req)
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("events");
        let (joined, done) = deltas_then_done(&events);
        assert_eq!(done.text(), joined);
    }

    const ALL_TOOLS: &[&str] = &["calculate", "search_web", "store_memory", "recall_memory"];

    fn tool_request(contents: Vec<Content>, tools: &[&str]) -> ModelRequest {
        ModelRequest {
            response_schema: None,
            system_instruction: Some("You are an agent.".into()),
            contents,
            tools: tools
                .iter()
                .map(|name| super::super::ToolSpec {
                    name: name.to_string(),
                    description: format!("the {name} tool"),
                    parameters: json!({"type": "object"}),
                })
                .collect(),
        }
    }

    async fn generate(contents: Vec<Content>, tools: &[&str]) -> ModelResponse {
        OfflineModel::new()
            .generate(&tool_request(contents, tools))
            .await
            .expect("offline never fails")
    }

    /// The calls of a model turn as (id, name, args).
    fn calls(response: &ModelResponse) -> Vec<(Option<String>, String, Value)> {
        response
            .content
            .function_calls()
            .map(|c| (c.id.clone(), c.name.clone(), c.args.clone()))
            .collect()
    }

    fn results(pairs: &[(&FunctionCall, Value)]) -> Content {
        Content {
            role: Some(Role::User),
            parts: pairs
                .iter()
                .map(|(call, response)| {
                    Part::FunctionResponse(FunctionResponse {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        response: response.clone(),
                    })
                })
                .collect(),
            raw: None,
        }
    }

    async fn events(request: ModelRequest) -> Vec<StreamEvent> {
        OfflineModel::new()
            .stream(request)
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("events")
    }

    const TASK: &str = "Calcula 15 * 23 y busca información sobre matemáticas";

    #[tokio::test]
    async fn a_task_asking_for_two_things_gets_two_calls_in_one_turn() {
        let response = generate(vec![Content::user_text(TASK)], ALL_TOOLS).await;
        assert_eq!(response.content.role, Some(Role::Model));
        assert_eq!(response.text(), "");
        assert_eq!(
            calls(&response),
            vec![
                (
                    Some("call_1".into()),
                    "calculate".into(),
                    json!({"expression": "15 * 23"})
                ),
                (
                    Some("call_2".into()),
                    "search_web".into(),
                    json!({"query": "matemáticas"})
                ),
            ]
        );
        assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    }

    #[tokio::test]
    async fn the_results_become_one_text_answer() {
        let task = Content::user_text(TASK);
        let planned = generate(vec![task.clone()], ALL_TOOLS).await;
        let asked: Vec<FunctionCall> = planned.content.function_calls().cloned().collect();
        let [calc, search] = asked.as_slice() else {
            panic!("two calls expected: {asked:?}");
        };
        let answered = results(&[
            (calc, json!({"expression": "15 * 23", "result": 345})),
            (
                search,
                json!({"query": "matemáticas", "results": [
                    {"title": "Álgebra básica", "snippet": "Operaciones con números.", "source": "docs/math.md", "score": 1.5}
                ]}),
            ),
        ]);
        let answer = generate(vec![task, planned.content, answered], ALL_TOOLS).await;
        assert_eq!(answer.content.function_calls().count(), 0);
        assert_eq!(
            answer.text(),
            "15 * 23 = 345. Search results for \"matemáticas\": 1. Álgebra básica — Operaciones con números."
        );
    }

    #[tokio::test]
    async fn what_is_remembered_is_recalled() {
        let task = Content::user_text("remember that my favourite colour is teal");
        let store = generate(vec![task.clone()], ALL_TOOLS).await;
        assert_eq!(
            calls(&store),
            vec![(
                Some("call_1".into()),
                "store_memory".into(),
                json!({"key": "my favourite colour", "value": "teal"})
            )]
        );
        let call = store.content.function_calls().next().expect("one call").clone();
        let stored = results(&[(
            &call,
            json!({"stored": {"key": "my favourite colour", "value": "teal"}}),
        )]);
        let answer = generate(vec![task.clone(), store.content.clone(), stored.clone()], ALL_TOOLS).await;
        assert_eq!(answer.text(), "I will remember that my favourite colour is teal.");

        let question = Content::user_text("what do you remember?");
        let mut history = vec![task, store.content, stored, answer.content, question];
        let recall = generate(history.clone(), ALL_TOOLS).await;
        assert_eq!(
            calls(&recall),
            vec![(Some("call_1".into()), "recall_memory".into(), json!({}))]
        );
        let call = recall.content.function_calls().next().expect("one call").clone();
        history.push(recall.content);
        history.push(results(&[(
            &call,
            json!({"memories": [{"key": "my favourite colour", "value": "teal"}]}),
        )]));
        let answer = generate(history, ALL_TOOLS).await;
        assert_eq!(answer.text(), "I remember: my favourite colour is teal.");
    }

    #[tokio::test]
    async fn which_tool_a_task_gets() {
        let cases: [(&str, Vec<(&str, Value)>); 4] = [
            (
                "what is (2+3)*4?",
                vec![("calculate", json!({"expression": "(2+3)*4"}))],
            ),
            (
                "what is the capital of France?",
                vec![("search_web", json!({"query": "what is the capital of France"}))],
            ),
            ("hello there", vec![]),
            ("in 2024 I was 30", vec![]),
        ];
        for (task, expected) in cases {
            let response = generate(vec![Content::user_text(task)], ALL_TOOLS).await;
            let got: Vec<(String, Value)> = calls(&response).into_iter().map(|(_, n, a)| (n, a)).collect();
            let expected: Vec<(String, Value)> = expected.into_iter().map(|(n, a)| (n.to_string(), a)).collect();
            assert_eq!(got, expected, "{task}");
            if expected.is_empty() {
                assert!(
                    response.text().contains(&format!("You said: \"{task}\"")),
                    "{}",
                    response.text()
                );
                assert!(response.text().contains("calculate, search_web"), "{}", response.text());
            }
        }
    }

    #[tokio::test]
    async fn a_tool_that_is_not_offered_is_never_called() {
        let response = generate(vec![Content::user_text("search for salt and pepper")], &["calculate"]).await;
        assert_eq!(response.content.function_calls().count(), 0);
        assert!(response.text().contains("(calculate)"), "{}", response.text());

        let response = generate(vec![Content::user_text(TASK)], &["calculate"]).await;
        assert_eq!(
            calls(&response),
            vec![(
                Some("call_1".into()),
                "calculate".into(),
                json!({"expression": "15 * 23"})
            )]
        );
    }

    #[tokio::test]
    async fn a_failed_call_is_reported_with_its_message() {
        let task = Content::user_text("search for cats");
        let planned = generate(vec![task.clone()], ALL_TOOLS).await;
        let call = planned.content.function_calls().next().expect("one call").clone();
        let failed = results(&[(&call, json!({"error": "the index is empty"}))]);
        let answer = generate(vec![task, planned.content, failed], ALL_TOOLS).await;
        assert_eq!(answer.text(), "The tool search_web failed: the index is empty.");

        let call = FunctionCall {
            id: Some("call_1".into()),
            name: "calculate".into(),
            args: json!({"expression": "1/0"}),
        };
        let asked = Content {
            role: Some(Role::Model),
            parts: vec![Part::FunctionCall(call.clone())],
            raw: None,
        };
        let failed = results(&[(&call, json!({"error": "division by zero"}))]);
        // The error does not echo the expression: it comes from the call.
        let answer = generate(vec![Content::user_text("1/0"), asked, failed.clone()], ALL_TOOLS).await;
        assert_eq!(answer.text(), "I could not calculate 1/0: division by zero.");
        let answer = generate(vec![failed], ALL_TOOLS).await;
        assert_eq!(answer.text(), "The tool calculate failed: division by zero.");
    }

    #[tokio::test]
    async fn a_streamed_turn_of_calls_is_a_lone_done() {
        let events = events(tool_request(vec![Content::user_text(TASK)], ALL_TOOLS)).await;
        match events.as_slice() {
            [StreamEvent::Done(response)] => {
                assert_eq!(response.content.function_calls().count(), 2);
                assert_eq!(response.text(), "");
            }
            other => panic!("expected only Done: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_streamed_final_answer_arrives_in_deltas() {
        let task = Content::user_text(TASK);
        let planned = generate(vec![task.clone()], ALL_TOOLS).await;
        let asked: Vec<FunctionCall> = planned.content.function_calls().cloned().collect();
        let answered = results(&[
            (&asked[0], json!({"expression": "15 * 23", "result": 345})),
            (&asked[1], json!({"query": "matemáticas", "results": []})),
        ]);
        let request = tool_request(vec![task, planned.content, answered], ALL_TOOLS);
        let expected = generate(request.contents.clone(), ALL_TOOLS).await;
        let events = events(request).await;
        let (joined, done) = deltas_then_done(&events);
        assert_eq!(joined, "15 * 23 = 345. I found nothing about \"matemáticas\".");
        assert_eq!(done, &expected);
    }

    #[test]
    fn long_quotes_are_cut_on_a_character_boundary() {
        let q = quote(&"é".repeat(200));
        assert!(q.ends_with("...\""));
        assert_eq!(q.chars().count(), 80 + 5);
    }
}
