//! The agent's client of the A2A agents in `A2A_AGENTS`: each is offered to
//! the model as the tool `ask_<name>`, described by its card, so the agent
//! can hand a piece of work to a specialised agent running as a service of
//! its own (the bot of the documents that calls other Cloud Run agents).
//!
//! Cards are fetched at start-up (all at once, within a bound; an agent
//! that is down is a warning, and its card is fetched on first use), then
//! kept. A call sends one message in the newest revision the card offers
//! (1.0, else 0.3) and follows the task to its end: by its stream when the
//! card offers streaming, else by waiting on the send and then reading the
//! task, all within `A2A_TIMEOUT_SECONDS`. The answer is the task's
//! artifacts as text. A failed, rejected or cancelled task, a refusal, or
//! no answer in time is an error result the model reads. On Cloud Run
//! each request carries a Google ID token for the agent's URL, unless the
//! agent has a header of its own (`A2A_HEADER_<NAME>`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::outcome::Outcome;
use super::{VERSION_HEADER, Version};
use crate::config::{Peer, ToolSettings};
use crate::gcp::MetadataClient;
use crate::llm::ToolSpec;
use crate::llm::sse::SseDecoder;
use crate::tools::{Tool, ToolContext, ToolError, ToolSource};

/// The longest the start waits for the cards.
const START_WAIT: Duration = Duration::from_secs(5);
/// A card's description, as the model reads it, is cut to this.
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// The agents of `A2A_AGENTS`, as a source of tools.
pub struct A2aAgents {
    agents: Vec<Arc<RemoteAgent>>,
}

impl A2aAgents {
    /// Fetches every card at once, waiting at most 5 s.
    pub async fn start(settings: &ToolSettings, http: reqwest::Client) -> A2aAgents {
        let id_tokens = settings.id_tokens.then(|| MetadataClient::from_env(http.clone()));
        let agents: Vec<Arc<RemoteAgent>> = settings
            .a2a_agents
            .iter()
            .map(|peer| Arc::new(RemoteAgent::new(peer, http.clone(), id_tokens.clone(), settings)))
            .collect();
        let cards = futures_util::future::join_all(agents.iter().map(|agent| agent.card()));
        let _ = tokio::time::timeout(START_WAIT.min(settings.timeout), cards).await;
        A2aAgents { agents }
    }
}

impl ToolSource for A2aAgents {
    /// Every agent, its card read or not: one not read yet is described
    /// by its name alone, and its card is read when the model asks it.
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.agents
            .iter()
            .map(|agent| {
                let tool: Arc<dyn Tool> = Arc::new(AskAgent {
                    spec: agent.spec(),
                    agent: agent.clone(),
                });
                tool
            })
            .collect()
    }
}

/// What a card says of how to call its agent.
#[derive(Debug, Clone, PartialEq)]
struct Card {
    endpoint: String,
    version: Version,
    streaming: bool,
    description: String,
}

/// Reads a card: its JSON-RPC interface in the newest revision spoken here
/// (1.0's `supportedInterfaces`, else 0.3's `url`), whether it streams,
/// and what it says it does.
fn read_card(card: &Value) -> Result<Card, String> {
    let interfaces = card["supportedInterfaces"].as_array().cloned().unwrap_or_default();
    let jsonrpc = |iface: &&Value| {
        iface["protocolBinding"]
            .as_str()
            .is_none_or(|b| b.eq_ignore_ascii_case("JSONRPC"))
    };
    let pick = |major: &str| {
        interfaces
            .iter()
            .filter(jsonrpc)
            .find(|iface| iface["protocolVersion"].as_str().is_some_and(|v| v.starts_with(major)))
            .and_then(|iface| iface["url"].as_str())
    };
    let (endpoint, version) = match (pick("1."), pick("0.3")) {
        (Some(url), _) => (url, Version::V1),
        (None, Some(url)) => (url, Version::V03),
        (None, None) => {
            let transport = card["preferredTransport"].as_str().unwrap_or("JSONRPC");
            match card["url"].as_str() {
                Some(url) if transport.eq_ignore_ascii_case("JSONRPC") => (url, Version::V03),
                _ => return Err("the card offers no JSON-RPC interface of A2A 1.0 or 0.3".to_string()),
            }
        }
    };
    if !reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return Err(format!("the card's endpoint {endpoint:?} is not an http(s) URL"));
    }
    let mut description = card["description"].as_str().unwrap_or("").trim().to_string();
    let skills: Vec<String> = card["skills"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s["name"].as_str().or_else(|| s["id"].as_str())?;
            Some(match s["description"].as_str() {
                Some(d) => format!("{name} ({d})"),
                None => name.to_string(),
            })
        })
        .collect();
    if !skills.is_empty() {
        description.push_str(&format!(" Skills: {}.", skills.join("; ")));
    }
    Ok(Card {
        endpoint: endpoint.to_string(),
        version,
        streaming: card["capabilities"]["streaming"].as_bool() == Some(true),
        description: description.chars().take(MAX_DESCRIPTION_CHARS).collect(),
    })
}

/// One agent: where its card is, how to authenticate to it, its card once
/// read, and the tool that asks it.
struct RemoteAgent {
    name: String,
    card_url: String,
    http: reqwest::Client,
    id_tokens: Option<MetadataClient>,
    header: Option<(HeaderName, HeaderValue)>,
    /// For the whole call: sending, and following the task to its end.
    timeout: Duration,
    /// For the card and each read of the task.
    request_timeout: Duration,
    card: RwLock<Option<Card>>,
}

impl RemoteAgent {
    fn new(peer: &Peer, http: reqwest::Client, id_tokens: Option<MetadataClient>, settings: &ToolSettings) -> Self {
        let header = peer.header.clone();
        let card_url = if peer.url.ends_with(".json") {
            peer.url.clone()
        } else {
            format!("{}/.well-known/agent-card.json", peer.url.trim_end_matches('/'))
        };
        RemoteAgent {
            name: peer.name.clone(),
            card_url,
            http,
            id_tokens: id_tokens.filter(|_| header.is_none()),
            header,
            timeout: settings.a2a_timeout,
            request_timeout: settings.timeout,
            card: RwLock::new(None),
        }
    }

    /// The tool's declaration: described by the card once read.
    fn spec(&self) -> ToolSpec {
        let name = &self.name;
        let description = match &*self.card.read().unwrap_or_else(|e| e.into_inner()) {
            Some(card) => format!(
                "Hands a task to the remote agent {name} (A2A) and returns its answer. {}",
                card.description
            ),
            None => format!("Sends a message to the remote agent {name} (A2A) and returns its answer."),
        };
        ToolSpec {
            name: format!("ask_{name}"),
            description: description.trim().to_string(),
            parameters: json!({
                "type": "object",
                "properties": {"message": {"type": "string",
                    "description": "What to ask the agent, in full: it sees nothing else of this conversation."}},
                "required": ["message"],
            }),
        }
    }

    /// The card, fetched when not yet read.
    async fn card(&self) -> Result<Card, String> {
        if let Some(card) = self.card.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(card);
        }
        let fetched = self.fetch_card().await;
        match &fetched {
            Ok(card) => {
                tracing::info!(agent = %self.name, endpoint = %card.endpoint, version = card.version.as_str(), "A2A agent card read");
                *self.card.write().unwrap_or_else(|e| e.into_inner()) = Some(card.clone());
            }
            Err(why) => tracing::warn!(
                agent = %self.name,
                url = %self.card_url,
                "the A2A agent's card could not be read ({why}); it is read again on the agent's first use"
            ),
        }
        fetched
    }

    async fn fetch_card(&self) -> Result<Card, String> {
        let request = self.http.get(&self.card_url).timeout(self.request_timeout);
        let response = self
            .authorized(request, &self.card_url)
            .await?
            .send()
            .await
            .map_err(|e| reach_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the card answered {}", status.as_u16()));
        }
        let card: Value = response.json().await.map_err(|_| "the card is not JSON".to_string())?;
        read_card(&card)
    }

    /// `request` with the agent's header, or an ID token for `url`'s origin.
    async fn authorized(&self, request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::RequestBuilder, String> {
        if let Some((name, value)) = &self.header {
            return Ok(request.header(name, value));
        }
        match &self.id_tokens {
            None => Ok(request),
            Some(tokens) => {
                let token = tokens
                    .id_token(&crate::tools::remote::audience(url))
                    .await
                    .map_err(|e| format!("no ID token for the agent: {e}"))?;
                Ok(request.bearer_auth(token))
            }
        }
    }

    /// POSTs one JSON-RPC request of `method` to the card's endpoint, in
    /// its revision, authorized; `stream` asks for an event stream.
    async fn post(&self, card: &Card, method: &str, params: Value, stream: bool) -> Result<reqwest::Response, String> {
        let body =
            json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(), "method": method, "params": params});
        let mut request = crate::telemetry::propagate(
            self.http
                .post(&card.endpoint)
                .header(VERSION_HEADER, card.version.as_str())
                .json(&body),
        );
        request = match stream {
            // A stream lasts as long as the task: the call's own limit bounds it.
            true => request.header(http::header::ACCEPT, "text/event-stream"),
            false => request.timeout(self.request_timeout.max(self.timeout)),
        };
        self.authorized(request, &card.endpoint)
            .await?
            .send()
            .await
            .map_err(|e| reach_error(&e))
    }

    /// One JSON-RPC request; the answer's `result`, or why there is none.
    async fn rpc(&self, card: &Card, method: &str, params: Value) -> Result<Value, String> {
        let response = self.post(card, method, params, false).await?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|_| format!("it answered {} with no JSON-RPC answer", status.as_u16()))?;
        result_of(&answer)
    }

    /// Sends `text` and follows its task to the end.
    async fn ask(&self, card: &Card, text: &str) -> Result<Outcome, String> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let message = match card.version {
            Version::V1 => json!({"messageId": message_id, "role": "ROLE_USER", "parts": [{"text": text}]}),
            Version::V03 => json!({"kind": "message", "messageId": message_id, "role": "user",
                "parts": [{"kind": "text", "text": text}]}),
        };
        if card.streaming {
            return self.ask_streaming(card, message).await;
        }
        let (send, get) = match card.version {
            Version::V1 => ("SendMessage", "GetTask"),
            Version::V03 => ("message/send", "tasks/get"),
        };
        let configuration = match card.version {
            Version::V1 => json!({"returnImmediately": false}),
            Version::V03 => json!({"blocking": true}),
        };
        let result = self
            .rpc(card, send, json!({"message": message, "configuration": configuration}))
            .await?;
        let mut outcome = Outcome::default();
        outcome.absorb(card.version, &result);
        let mut wait = Duration::from_millis(250);
        while !outcome.is_final() {
            let Some(task_id) = outcome.task_id.clone() else {
                return Err("it answered with neither a task nor a message".to_string());
            };
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let task = self.rpc(card, get, json!({"id": task_id})).await?;
            outcome.absorb(card.version, &task);
        }
        Ok(outcome)
    }

    /// Sends with the streaming method and reads its events to the end.
    async fn ask_streaming(&self, card: &Card, message: Value) -> Result<Outcome, String> {
        let method = match card.version {
            Version::V1 => "SendStreamingMessage",
            Version::V03 => "message/stream",
        };
        let response = self.post(card, method, json!({"message": message}), true).await?;
        let status = response.status();
        let is_stream = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut outcome = Outcome::default();
        if !is_stream {
            // A refusal before the stream started: one JSON-RPC answer.
            let answer: Value = response
                .json()
                .await
                .map_err(|_| format!("it answered {} with no stream and no JSON-RPC answer", status.as_u16()))?;
            outcome.absorb(card.version, &result_of(&answer)?);
            return Ok(outcome);
        }
        let mut decoder = SseDecoder::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| "its stream broke off".to_string())?;
            for event in decoder.push(&chunk) {
                let Ok(answer) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                outcome.absorb(card.version, &result_of(&answer)?);
                if outcome.is_final() {
                    return Ok(outcome);
                }
            }
        }
        if outcome.is_final() {
            Ok(outcome)
        } else {
            Err("its stream ended before the task did".to_string())
        }
    }
}

/// A JSON-RPC answer's result, or its error as text.
fn result_of(answer: &Value) -> Result<Value, String> {
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        return Err(format!(
            "it refused ({}): {}",
            error["code"].as_i64().unwrap_or(0),
            error["message"].as_str().unwrap_or("no reason given")
        ));
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| "its answer has neither a result nor an error".to_string())
}

fn reach_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "it did not answer in time".to_string()
    } else {
        "it could not be reached".to_string()
    }
}

/// The tool `ask_<name>`.
struct AskAgent {
    agent: Arc<RemoteAgent>,
    spec: ToolSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    message: String,
}

#[async_trait]
impl Tool for AskAgent {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn timeout(&self) -> Option<Duration> {
        // Its own limit inside, plus a moment to say so.
        Some(self.agent.timeout + Duration::from_secs(1))
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let args: AskArgs = crate::tools::arguments(args)?;
        if args.message.trim().is_empty() {
            return Err(ToolError::InvalidArguments("message is empty: say what to ask".into()));
        }
        let agent = &self.agent;
        let name = &agent.name;
        let card = agent
            .card()
            .await
            .map_err(|why| ToolError::Failed(format!("the agent {name}'s card: {why}")))?;
        let outcome = match tokio::time::timeout(agent.timeout, agent.ask(&card, &args.message)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => return Err(ToolError::Failed(format!("the agent {name}: {why}"))),
            Err(_) => {
                return Err(ToolError::Failed(format!(
                    "the agent {name} did not finish within {} s (A2A_TIMEOUT_SECONDS)",
                    agent.timeout.as_secs()
                )));
            }
        };
        let state = outcome.state.clone().unwrap_or_else(|| "message".to_string());
        let text = outcome.text();
        if matches!(
            state.as_str(),
            "TASK_STATE_FAILED" | "TASK_STATE_REJECTED" | "TASK_STATE_CANCELED" | "failed" | "rejected" | "canceled"
        ) {
            return Err(ToolError::Failed(format!(
                "the agent {name}'s task ended {state}: {}",
                if text.is_empty() { "no reason given" } else { &text }
            )));
        }
        Ok(json!({"agent": name, "task_id": outcome.task_id, "state": state, "answer": text}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_of_either_revision_name_their_endpoint() {
        let v1 = json!({"name": "a", "description": "Books trips.",
            "supportedInterfaces": [
                {"url": "https://a.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "https://a.example/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {"streaming": true}, "skills": [{"id": "book", "name": "book", "description": "a trip"}]});
        let card = read_card(&v1).expect("a 1.0 card");
        assert_eq!(
            (card.endpoint.as_str(), card.version, card.streaming),
            ("https://a.example/v1", Version::V1, true)
        );
        assert_eq!(card.description, "Books trips. Skills: book (a trip).");
        let legacy = json!({"name": "b", "url": "http://127.0.0.1:9/", "protocolVersion": "0.3.0"});
        let card = read_card(&legacy).expect("a 0.3 card");
        assert_eq!((card.version, card.streaming), (Version::V03, false));
        assert!(read_card(&json!({"name": "c", "url": "file:///etc/passwd"})).is_err());
        assert!(read_card(&json!({"name": "d", "preferredTransport": "GRPC", "url": "https://d"})).is_err());
    }

    #[test]
    fn an_unread_card_is_still_offered() {
        let settings = crate::testing::settings(&[("A2A_AGENTS", "trips=http://127.0.0.1:9")]).tools;
        let agents = A2aAgents {
            agents: vec![Arc::new(RemoteAgent::new(
                &settings.a2a_agents[0],
                reqwest::Client::new(),
                None,
                &settings,
            ))],
        };
        let tools = agents.tools();
        assert_eq!(tools[0].spec().name, "ask_trips");
        assert!(tools[0].spec().description.contains("trips"));
        assert_eq!(
            agents.agents[0].card_url,
            "http://127.0.0.1:9/.well-known/agent-card.json"
        );
    }
}
