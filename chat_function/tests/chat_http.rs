//! The chat function over real HTTP on loopback, on SQLite on disk, with the
//! offline model (or a local server speaking a provider's wire format where
//! a test needs a model that fails).

use std::collections::HashSet;

use agent_core::testing::{TestApp, TestServer};
use chat_function::{ChatResponse, FUNCTION, router};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Chat {
    server: TestServer,
    http: reqwest::Client,
    _app: TestApp,
}

impl Chat {
    async fn start(vars: &[(&str, &str)]) -> Chat {
        let app = TestApp::start(FUNCTION, vars).await;
        Chat {
            server: TestServer::start(router(&app)).await,
            http: reqwest::Client::new(),
            _app: app,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn chat(&self, body: Value) -> ChatResponse {
        let response = self.post("/api/v1/chat", body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("chat response")
    }

    /// The session's messages, up to the largest page (1000).
    async fn session(&self, id: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/api/v1/sessions/{id}?limit=1000")))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("session json")
    }
}

/// Asserts the error envelope with this status and code, and returns the message.
async fn envelope(response: reqwest::Response, status: u16, code: &str) -> String {
    agent_core::testing::error_envelope(response, status, code).await.0
}

#[tokio::test]
async fn a_conversation_keeps_its_history() {
    let chat = Chat::start(&[]).await;
    let health: Value = chat
        .http
        .get(chat.url("/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health,
        json!({"status": "ok", "function": "chat_function", "version": env!("CARGO_PKG_VERSION")})
    );

    let first = chat.chat(json!({"message": "hello"})).await;
    assert!(!first.session_id.is_empty());
    assert!(first.tokens_used > 0);
    assert_eq!(first.model, "offline");
    assert!(first.response.contains("\"hello\""), "{}", first.response);

    let second = chat
        .chat(json!({"message": "how are you?", "session_id": first.session_id}))
        .await;
    assert_eq!(second.session_id, first.session_id);
    // The offline model quotes the earlier messages it was given.
    assert!(second.response.contains("you said: \"hello\""), "{}", second.response);

    let session = chat.session(&first.session_id).await;
    let messages = session["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["user", "model", "user", "model"]);
    assert_eq!(messages[0]["content"], "hello");
    assert_eq!(messages[1]["content"], first.response.as_str());
    assert_eq!(messages[2]["content"], "how are you?");
    assert!(messages[0]["created_at"].as_str().expect("created_at").ends_with('Z'));

    // The Cloud Function style alias answers the same way.
    let alias: ChatResponse = chat
        .post("/", json!({"message": "via root"}))
        .await
        .json()
        .await
        .expect("alias");
    assert!(alias.response.contains("via root"));
}

#[tokio::test]
async fn system_instruction_and_history_limit_reach_the_model() {
    let chat = Chat::start(&[("HISTORY_LIMIT", "2")]).await;
    let sid = "limit-test";
    for m in ["one", "two", "three"] {
        chat.chat(json!({"message": m, "session_id": sid})).await;
    }
    let answer = chat
        .chat(json!({"message": "four", "session_id": sid, "system_instruction": "answer in French"}))
        .await;
    // Only the last 2 messages (the user's "three" and its answer) were sent.
    assert!(
        answer.response.contains("(2 messages) you said: \"three\"."),
        "{}",
        answer.response
    );
    assert!(answer.response.contains("answer in French"), "{}", answer.response);
}

#[tokio::test]
async fn concurrent_messages_on_one_session_lose_nothing() {
    let chat = std::sync::Arc::new(Chat::start(&[("RATE_LIMIT_CHAT", "off")]).await);
    let sid = "busy-session";
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let chat = chat.clone();
            tokio::spawn(async move {
                chat.chat(json!({"message": format!("msg-{i}"), "session_id": sid}))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let session = chat.session(sid).await;
    let messages = session["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 200);
    let mut seen = HashSet::new();
    for pair in messages.chunks(2) {
        assert_eq!(pair[0]["role"], "user");
        assert_eq!(pair[1]["role"], "model");
        let asked = pair[0]["content"].as_str().expect("content");
        let answered = pair[1]["content"].as_str().expect("content");
        assert!(
            answered.contains(&format!("You said: \"{asked}\"")),
            "{asked} answered by {answered}"
        );
        assert!(seen.insert(asked.to_string()), "{asked} stored twice");
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test]
async fn an_identical_message_twice_is_stored_twice() {
    let chat = Chat::start(&[]).await;
    for _ in 0..2 {
        chat.chat(json!({"message": "same", "session_id": "dup"})).await;
    }
    let session = chat.session("dup").await;
    let contents: Vec<&str> = session["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("c"))
        .collect();
    assert_eq!(contents.iter().filter(|c| **c == "same").count(), 2);
}

#[tokio::test]
async fn bad_requests_get_the_envelope() {
    let chat = Chat::start(&[("MAX_BODY_BYTES", "2048"), ("MAX_MESSAGE_CHARS", "100")]).await;
    let raw = |body: &'static str| chat.http.post(chat.url("/api/v1/chat")).body(body).send();

    let m = envelope(raw("{not json").await.expect("send"), 400, "invalid_argument").await;
    assert!(m.contains("not valid JSON"), "{m}");
    let m = envelope(raw("").await.expect("send"), 400, "invalid_argument").await;
    assert!(m.contains("empty"), "{m}");
    let m = envelope(chat.post("/api/v1/chat", json!({})).await, 400, "invalid_argument").await;
    assert!(m.contains("missing field `message`"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": "  "})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("message is empty"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": 42})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("invalid type"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": "hi", "stream": "yes"}))
            .await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("boolean"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": "x".repeat(101)})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("over the limit of 100"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": "hi", "session_id": "a/b"}))
            .await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("session_id must be"), "{m}");
    let m = envelope(
        chat.post("/api/v1/chat", json!({"mesage": "hi"})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(m.contains("unknown field `mesage`"), "{m}");

    let big = json!({"message": "y".repeat(4096)});
    let m = envelope(chat.post("/api/v1/chat", big).await, 413, "payload_too_large").await;
    assert!(m.contains("2048 bytes"), "{m}");

    let unknown = chat
        .http
        .get(chat.url("/api/v1/sessions/nobody"))
        .send()
        .await
        .expect("get");
    envelope(unknown, 404, "not_found").await;
    let unknown = chat
        .http
        .delete(chat.url("/api/v1/sessions/nobody"))
        .send()
        .await
        .expect("delete");
    envelope(unknown, 404, "not_found").await;
    let no_route = chat.http.get(chat.url("/api/v2/nothing")).send().await.expect("get");
    envelope(no_route, 404, "not_found").await;

    let wrong_method = chat.http.get(chat.url("/api/v1/chat")).send().await.expect("get");
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let m = envelope(wrong_method, 405, "method_not_allowed").await;
    assert!(m.contains("GET is not allowed on /api/v1/chat"), "{m}");
    // Nothing above stored a message.
    let missing = chat.http.get(chat.url("/api/v1/sessions/a")).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_forgets_a_session() {
    let chat = Chat::start(&[]).await;
    let first = chat.chat(json!({"message": "forget me"})).await;
    let url = chat.url(&format!("/api/v1/sessions/{}", first.session_id));
    assert_eq!(
        chat.http.delete(&url).send().await.expect("delete").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        chat.http.get(&url).send().await.expect("get").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn api_keys_are_required_when_set() {
    let chat = Chat::start(&[("API_KEYS", "k1,k2")]).await;
    let send = |key: Option<&'static str>| {
        let mut r = chat.http.post(chat.url("/api/v1/chat")).json(&json!({"message": "hi"}));
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    let refused = send(None).await.expect("send");
    assert_eq!(
        refused.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&br#"ApiKey header="X-API-Key""#[..]),
        "a 401 names the credential to send"
    );
    envelope(refused, 401, "unauthenticated").await;
    envelope(send(Some("k3")).await.expect("send"), 401, "unauthenticated").await;
    envelope(send(Some("k1,k2")).await.expect("send"), 401, "unauthenticated").await;
    assert_eq!(send(Some("k2")).await.expect("send").status(), StatusCode::OK);
    assert_eq!(
        chat.http
            .get(chat.url("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        StatusCode::OK
    );
    let metrics = chat.http.get(chat.url("/metrics")).send().await.expect("metrics");
    envelope(metrics, 401, "unauthenticated").await;
}

#[tokio::test]
async fn an_open_function_limits_by_address_whatever_client_id_is_sent() {
    let chat = Chat::start(&[("RATE_LIMIT_CHAT", "3/60s")]).await;
    let send = |client: String| {
        chat.http
            .post(chat.url("/api/v1/chat"))
            .header("x-client-id", client)
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({"message": "hi"}))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(send(format!("client-{i}")).await.expect("send").status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "one address, one budget");
}

#[tokio::test]
async fn rate_limit_admits_the_limit_per_client_behind_a_trusted_gateway() {
    let chat = Chat::start(&[("RATE_LIMIT_CHAT", "3/60s"), ("TRUST_CLIENT_ID", "true")]).await;
    let send = |client: &'static str| {
        chat.http
            .post(chat.url("/api/v1/chat"))
            .header("x-client-id", client)
            .json(&json!({"message": "hi"}))
            .send()
    };
    for i in 0..3 {
        let r = send("alice").await.expect("send");
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert_eq!(r.headers()["ratelimit-remaining"], (2 - i).to_string().as_str());
    }
    let fourth = send("alice").await.expect("send");
    let retry_after: u64 = fourth.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (59..=60).contains(&retry_after),
        "when the first request leaves the window: {retry_after}"
    );
    envelope(fourth, 429, "rate_limited").await;
    assert_eq!(send("bob").await.expect("send").status(), StatusCode::OK);

    let metrics = chat
        .http
        .get(chat.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("rate_limited_requests_total{function=\"chat_function\",bucket=\"chat\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/v1/chat\",method=\"POST\",status=\"429\"} 1"),
        "{metrics}"
    );
    // The store's calls reach /metrics: at least a write per hit counted.
    let writes: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("store_operations_total{function=\"chat_function\",store=\"sqlite\",op=\"write\"} ")
        })
        .unwrap_or_else(|| panic!("no store writes in\n{metrics}"))
        .parse()
        .expect("a count");
    assert!(writes >= 5, "{writes} store writes for 5 rate-limit hits");
    assert!(
        metrics.contains(
            "model_calls_total{function=\"chat_function\",provider=\"offline\",model=\"offline\",outcome=\"ok\"} 4"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn cors_preflight_and_allowed_origins() {
    let any = Chat::start(&[]).await;
    let preflight = |chat: &Chat, origin: &'static str| {
        chat.http
            .request(reqwest::Method::OPTIONS, chat.url("/api/v1/chat"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .send()
    };
    let r = preflight(&any, "https://b.example").await.expect("preflight");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("x-api-key")
    );

    let only_a = Chat::start(&[("CORS_ALLOWED_ORIGINS", "https://a.example"), ("API_KEYS", "k")]).await;
    let r = preflight(&only_a, "https://a.example").await.expect("preflight");
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "a preflight needs no key");
    assert_eq!(r.headers()["access-control-allow-origin"], "https://a.example");
    let r = preflight(&only_a, "https://b.example").await.expect("preflight");
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let r = only_a
        .http
        .post(only_a.url("/api/v1/chat"))
        .header("origin", "https://a.example")
        .header("x-api-key", "k")
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://a.example");
    // Errors carry CORS headers too, or the browser hides them from the app.
    let r = only_a
        .http
        .post(only_a.url("/api/v1/chat"))
        .header("origin", "https://a.example")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://a.example");
}

#[tokio::test]
async fn streaming_sends_deltas_then_done_and_stores_the_turn() {
    let chat = Chat::start(&[]).await;
    let response = chat
        .post(
            "/api/v1/chat",
            json!({"message": "stream to me", "stream": true, "session_id": "s1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let body = response.text().await.expect("body");

    let mut deltas = String::new();
    let mut delta_count = 0;
    let mut done: Option<ChatResponse> = None;
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let name = event
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .expect("event name");
        let data = event.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
        match name {
            "delta" => {
                assert!(done.is_none(), "delta after done");
                let d: Value = serde_json::from_str(data).expect("delta json");
                deltas.push_str(d["text"].as_str().expect("text"));
                delta_count += 1;
            }
            "done" => done = Some(serde_json::from_str(data).expect("done json")),
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    let done = done.expect("a done event");
    assert!(delta_count >= 1);
    assert_eq!(done.response, deltas);
    assert_eq!(done.session_id, "s1");
    assert!(done.tokens_used > 0);
    let session = chat.session("s1").await;
    assert_eq!(session["messages"][0]["content"], "stream to me");
    assert_eq!(session["messages"][1]["content"], done.response.as_str());
}

/// A model provider that always refuses: the OpenAI wire format's 400.
async fn refusing_provider() -> TestServer {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": "This model's maximum context length is 8 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}})),
            )
        }),
    );
    TestServer::start(router).await
}

#[tokio::test]
async fn a_failed_model_call_stores_no_half_turn() {
    let provider = refusing_provider().await;
    let base = format!("{}/v1", provider.url);
    let chat = Chat::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &base),
        ("OPENAI_MODEL", "m"),
    ])
    .await;
    let m = envelope(
        chat.post("/api/v1/chat", json!({"message": "hi", "session_id": "half"}))
            .await,
        502,
        "upstream_error",
    )
    .await;
    assert!(m.contains("maximum context length"), "{m}");
    let r = chat
        .post(
            "/api/v1/chat",
            json!({"message": "hi", "session_id": "half", "stream": true}),
        )
        .await;
    envelope(r, 502, "upstream_error").await;
    let missing = chat
        .http
        .get(chat.url("/api/v1/sessions/half"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND, "no message was stored");
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let chat = Chat::start(&[]).await;
    let r = chat
        .http
        .get(chat.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = chat.http.get(chat.url("/health")).send().await.expect("get");
    assert_eq!(r.headers()["x-request-id"].len(), 36);
}
