//! The offline development model: deterministic, no network, no key.
//!
//! It is not a language model. It exists so the whole system (sessions,
//! streaming, metrics, the agent loop) runs on a fresh machine, and so tests
//! have a model whose answers they can predict. Its replies say what it was
//! given, which makes it easy to see that history and system instructions
//! reached the model.

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{
    Content, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Part, Role, StreamEvent, Usage,
    estimate_tokens,
};

pub const MODEL_NAME: &str = "offline";

#[derive(Debug, Default, Clone)]
pub struct OfflineModel;

impl OfflineModel {
    pub fn new() -> Self {
        OfflineModel
    }

    fn answer(&self, request: &ModelRequest) -> ModelResponse {
        let text = reply(request);
        let input: u64 = request
            .system_instruction
            .iter()
            .map(|s| estimate_tokens(s))
            .chain(request.contents.iter().map(|c| estimate_tokens(&content_text(c))))
            .sum();
        ModelResponse {
            usage: Usage {
                input_tokens: input.max(1),
                output_tokens: estimate_tokens(&text).max(1),
            },
            content: Content::model_text(text),
            model: MODEL_NAME.to_string(),
        }
    }
}

/// All the text in a turn, tool traffic included, for token estimates.
fn content_text(content: &Content) -> String {
    content
        .parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::FunctionCall(c) => format!("{} {}", c.name, c.args),
            Part::FunctionResponse(r) => format!("{} {}", r.name, r.response),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shortens a quote for a reply, on a character boundary.
fn quote(text: &str) -> String {
    const MAX: usize = 80;
    let text = text.trim();
    if text.chars().count() <= MAX {
        format!("\"{text}\"")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("\"{cut}...\"")
    }
}

fn reply(request: &ModelRequest) -> String {
    let (last, earlier) = match request.contents.split_last() {
        Some((last, earlier)) if last.role() == Role::User => (last.text(), earlier),
        _ => (String::new(), request.contents.as_slice()),
    };
    let earlier_user: Vec<String> = earlier
        .iter()
        .filter(|c| c.role() == Role::User)
        .map(|c| c.text())
        .filter(|t| !t.trim().is_empty())
        .map(|t| quote(&t))
        .collect();

    let mut out = format!("[offline model] You said: {}.", quote(&last));
    if earlier_user.is_empty() {
        out.push_str(" This is the first message of the conversation.");
    } else {
        out.push_str(&format!(
            " Earlier in this conversation ({} messages) you said: {}.",
            earlier.len(),
            earlier_user.join(", ")
        ));
    }
    if let Some(system) = request.system_instruction.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push_str(&format!(" My instructions: {}.", quote(system)));
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

    fn request(turns: &[(&str, Role)]) -> ModelRequest {
        ModelRequest {
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
        let (done, deltas) = events.split_last().expect("at least one event");
        let joined: String = deltas
            .iter()
            .map(|e| match e {
                StreamEvent::Delta(d) => d.clone(),
                StreamEvent::Done(_) => panic!("done before the end"),
            })
            .collect();
        assert!(deltas.len() > 1);
        match done {
            StreamEvent::Done(r) => assert_eq!(r.text(), joined),
            StreamEvent::Delta(_) => panic!("the last event is not done"),
        }
    }

    #[test]
    fn long_quotes_are_cut_on_a_character_boundary() {
        let q = quote(&"é".repeat(200));
        assert!(q.ends_with("...\""));
        assert_eq!(q.chars().count(), 80 + 5);
    }
}
