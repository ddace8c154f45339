//! The chat function's binary under the AWS Lambda runtime, driven by a
//! local server speaking the Lambda Runtime API: Function URL events in,
//! answers out, whole (`LAMBDA_INVOKE_MODE=BUFFERED`, the default) or
//! through the streaming protocol (`RESPONSE_STREAM`).

use agent_core::testing::lambda::{LambdaRuntime, function_url_event};
use agent_core::testing::{GatedModel, sse_events};
use chat_function::ChatResponse;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");

/// The chat function on Lambda with `vars`, on a SQLite file of its own in
/// `dir`, given `events` to answer in order.
async fn start(dir: &tempfile::TempDir, events: Vec<(&str, Value)>, vars: &[(&str, &str)]) -> LambdaRuntime {
    let db = dir.path().join("lambda.db");
    let mut all = vec![("SQLITE_PATH", db.to_str().expect("utf-8"))];
    all.extend_from_slice(vars);
    let lambda = LambdaRuntime::start(BIN, &all).await;
    for (id, event) in events {
        lambda.invoke(id, event);
    }
    lambda
}

/// The chat function's routes that answer whole, each one's full status,
/// content type and JSON body, in either mode.
fn buffered_events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "inv-1",
            function_url_event(
                "POST",
                "/api/v1/chat",
                Some(json!({"message": "hello from lambda", "session_id": "lambda-s"})),
            ),
        ),
        ("inv-2", function_url_event("GET", "/api/v1/sessions/lambda-s", None)),
        (
            "inv-3",
            function_url_event("POST", "/api/v1/chat", Some(json!({"message": ""}))),
        ),
        ("inv-4", function_url_event("GET", "/api/v1/no-such-route", None)),
        ("inv-5", function_url_event("GET", "/health", None)),
    ]
}

/// Checks the answers to [`buffered_events`], given as (status, headers,
/// body) in order.
fn check_buffered_answers(answers: Vec<(u16, Value, String)>) {
    let [chat, session, bad, missing, health] = <[_; 5]>::try_from(answers).expect("five answers");
    for (status, headers, body) in [&chat, &session, &bad, &missing, &health] {
        let content_type = headers["content-type"].as_str().unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{status}: {headers} {body}"
        );
    }
    assert_eq!(chat.0, 200, "{chat:?}");
    let answer: ChatResponse = serde_json::from_str(&chat.2).expect("a chat response");
    assert_eq!(answer.session_id, "lambda-s");
    assert!(answer.response.contains("hello from lambda"), "{answer:?}");

    assert_eq!(session.0, 200, "{session:?}");
    let body: Value = serde_json::from_str(&session.2).expect("json");
    assert_eq!(body["messages"].as_array().expect("messages").len(), 2, "{body}");

    for ((status, _, body), want, code) in [(&bad, 400, "invalid_argument"), (&missing, 404, "not_found")] {
        assert_eq!(*status, want, "{body}");
        let body: Value = serde_json::from_str(body).expect("json");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }

    // Ready or still starting, the status and the body agree.
    let body: Value = serde_json::from_str(&health.2).expect("json");
    assert_eq!(body["function"], "chat_function", "{body}");
    assert_eq!(health.0 == 200, body["status"] == "ok", "{health:?}");
}

#[tokio::test]
async fn buffered_mode_answers_function_url_events_whole() {
    let mut events = buffered_events();
    events.push((
        "inv-6",
        function_url_event(
            "POST",
            "/api/v1/chat",
            Some(json!({"message": "stream me", "stream": true})),
        ),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lambda = start(&dir, events, &[]).await;
    let mut answers = Vec::new();
    for id in ["inv-1", "inv-2", "inv-3", "inv-4", "inv-5"] {
        let answer = lambda.whole(id).await;
        let status = answer["statusCode"].as_u64().expect("a status") as u16;
        let body = answer["body"].as_str().expect("a body").to_string();
        answers.push((status, answer["headers"].clone(), body));
    }
    check_buffered_answers(answers);

    // A chat stream is held until it ends, then sent whole.
    let stream = lambda.whole("inv-6").await;
    assert_eq!(stream["statusCode"], 200, "{stream}");
    let events = sse_events(stream["body"].as_str().expect("a body"));
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("done"), "{events:?}");
}

#[tokio::test]
async fn response_stream_mode_answers_whole_routes_with_their_full_bodies() {
    let mut events = buffered_events();
    // A CORS preflight: a 204 with no body at all is still a whole answer.
    let mut preflight = function_url_event("OPTIONS", "/api/v1/chat", None);
    preflight["headers"]["origin"] = json!("https://app.example.com");
    preflight["headers"]["access-control-request-method"] = json!("POST");
    events.push(("inv-6", preflight));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lambda = start(&dir, events, &[("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM")]).await;
    let mut answers = Vec::new();
    for id in ["inv-1", "inv-2", "inv-3", "inv-4", "inv-5"] {
        let prelude = lambda.prelude(id).await;
        let status = prelude["statusCode"].as_u64().expect("a status") as u16;
        let body = lambda.rest(id).await;
        answers.push((status, prelude["headers"].clone(), body));
    }
    check_buffered_answers(answers);

    let prelude = lambda.prelude("inv-6").await;
    assert_eq!(prelude["statusCode"], 204, "{prelude}");
    assert!(
        prelude["headers"]["access-control-allow-origin"].is_string(),
        "{prelude}"
    );
    assert_eq!(lambda.rest("inv-6").await, "");
}

/// The done-when of streaming on Lambda: the model double holds the rest of
/// its answer until the test has seen the first `delta` reach the Runtime
/// API, so a function that held its stream back would never be released.
#[tokio::test]
async fn response_stream_mode_sends_each_delta_as_the_model_writes_it() {
    let model = GatedModel::start().await;
    let events = vec![(
        "inv-1",
        function_url_event(
            "POST",
            "/api/v1/chat",
            Some(json!({"message": "stream me", "session_id": "streamed", "stream": true})),
        ),
    )];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lambda = start(
        &dir,
        events,
        &[
            ("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM"),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "test-key"),
            ("OPENAI_BASE_URL", &model.base_url),
            ("OPENAI_MODEL", "gpt-4o-mini"),
            ("LLM_MAX_RETRIES", "0"),
        ],
    )
    .await;
    let prelude = lambda.prelude("inv-1").await;
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream", "{prelude}");

    let mut before = String::new();
    while !sse_events(&before).iter().any(|(name, _)| name == "delta") {
        let piece = lambda
            .chunk("inv-1")
            .await
            .expect("the stream's first delta, not its end");
        before.push_str(&String::from_utf8_lossy(&piece));
    }
    let first = sse_events(&before);
    assert!(
        first.iter().all(|(name, _)| name == "delta"),
        "nothing but deltas before the model finished: {first:?}"
    );
    model.release();

    let after = lambda.rest("inv-1").await;
    let events = sse_events(&format!("{before}{after}"));
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().expect("a delta's text"))
        .collect();
    assert_eq!(text, GatedModel::ANSWER, "{events:?}");
    let (name, done) = events.last().expect("events");
    assert_eq!(name, "done", "{events:?}");
    assert_eq!(done["response"], GatedModel::ANSWER, "{done}");
    assert_eq!(done["session_id"], "streamed", "{done}");
}
