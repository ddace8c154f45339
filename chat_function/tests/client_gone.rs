//! A paid chat turn is never lost: a client that disconnects while its turn
//! is with the model (hyper then drops the request's future, or its event
//! stream) does not stop the turn, which is stored once the model answers
//! and counted in `chat_turns_abandoned_total`. Real HTTP over loopback,
//! SQLite on disk (and Firestore, on the emulator), and a model double
//! speaking OpenAI's wire format that holds its answer until the test
//! releases it.

use std::time::Duration;

use agent_core::store::StoredMessage;
use agent_core::testing::{GatedModel, TestApp, TestServer, raw_post, read_until, watch_drops};
use chat_function::{ChatResponse, FUNCTION, router};
use serde_json::json;
use tokio::sync::mpsc;

struct Chat {
    server: TestServer,
    model: GatedModel,
    /// The `x-test-watch` names of requests the server let go of.
    dropped: mpsc::UnboundedReceiver<String>,
    app: TestApp,
}

impl Chat {
    async fn start(store: &[(&str, &str)]) -> Chat {
        let model = GatedModel::start().await;
        let mut vars = vec![("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", model.base_url.as_str())];
        vars.extend_from_slice(store);
        let app = TestApp::start(FUNCTION, &vars).await;
        let (watched, dropped) = watch_drops(router(&app));
        Chat {
            server: TestServer::start(watched).await,
            model,
            dropped,
            app,
        }
    }

    /// Waits (10 s at most) until the server has let go of the request
    /// watched as `name`: what a disconnect does to it, made sure of.
    async fn let_go(&mut self, name: &str) {
        let wait = async {
            while let Some(dropped) = self.dropped.recv().await {
                if dropped == name {
                    return;
                }
            }
            panic!("the watch stopped");
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("the server did not let go of {name} within 10 s"));
    }

    /// The session's messages once it holds `count` of them (polled, 10 s at
    /// most).
    async fn stored(&self, session: &str, count: usize) -> Vec<StoredMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self
                .app
                .stores
                .sessions
                .messages(session)
                .await
                .expect("the store answers")
                .unwrap_or_default();
            if messages.len() >= count || tokio::time::Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn abandoned(&self) -> String {
        let metrics = reqwest::get(format!("{}/metrics", self.server.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics
            .lines()
            .find(|line| line.starts_with("chat_turns_abandoned_total{"))
            .unwrap_or("chat_turns_abandoned_total: none")
            .to_string()
    }
}

const COUNTED_ONCE: &str = "chat_turns_abandoned_total{function=\"chat_function\"} 1";

fn contents(messages: &[StoredMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

/// On a Firestore project of the test's own, on the emulator the test
/// command started: the store finds it by `FIRESTORE_EMULATOR_HOST`, and
/// without it this fails clearly.
async fn on_firestore() -> Chat {
    let _host = agent_core::testing::firestore_emulator_host();
    let project = format!("chat-{}", uuid::Uuid::new_v4().simple());
    Chat::start(&[("STORE", "firestore"), ("FIRESTORE_PROJECT", &project)]).await
}

#[tokio::test]
async fn a_plain_turn_whose_client_goes_away_is_stored_once_the_model_answers() {
    plain_turn_outlives_its_client(Chat::start(&[]).await).await;
}

#[tokio::test]
async fn a_streamed_turn_whose_client_goes_away_is_stored_once_the_stream_ends() {
    streamed_turn_outlives_its_client(Chat::start(&[]).await).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn on_firestore_a_plain_turn_whose_client_goes_away_is_stored() {
    plain_turn_outlives_its_client(on_firestore().await).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn on_firestore_a_streamed_turn_whose_client_goes_away_is_stored() {
    streamed_turn_outlives_its_client(on_firestore().await).await;
}

/// The client disconnects while the model holds its answer; the turn is
/// stored once the model answers, and counted. A client that stays after it
/// gets its answer as before, and is not counted.
async fn plain_turn_outlives_its_client(mut chat: Chat) {
    let body = json!({"message": "are you still there?", "session_id": "gone-plain"});
    let connection = raw_post(chat.server.addr, "/api/v1/chat", &[("x-test-watch", "plain")], &body).await;
    chat.model.called().await;
    drop(connection);
    chat.let_go("plain").await;
    chat.model.release();

    let stored = chat.stored("gone-plain", 2).await;
    assert_eq!(contents(&stored), ["are you still there?", GatedModel::ANSWER]);
    assert_eq!(chat.abandoned().await, COUNTED_ONCE);

    chat.model.release();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/chat", chat.server.url))
        .json(&json!({"message": "and now?", "session_id": "gone-plain"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let answer: ChatResponse = response.json().await.expect("json");
    assert_eq!(answer.response, GatedModel::ANSWER);
    let stored = chat.stored("gone-plain", 4).await;
    assert_eq!(
        contents(&stored),
        [
            "are you still there?",
            GatedModel::ANSWER,
            "and now?",
            GatedModel::ANSWER
        ],
        "each turn stored once"
    );
    assert_eq!(chat.abandoned().await, COUNTED_ONCE);
}

/// The client reads the first delta and disconnects while the model holds
/// the rest; the turn is stored once the stream ends, and counted. A client
/// that stays after it gets every event as before, and is not counted.
async fn streamed_turn_outlives_its_client(mut chat: Chat) {
    let body = json!({"message": "stream, please", "session_id": "gone-stream", "stream": true});
    let mut connection = raw_post(chat.server.addr, "/api/v1/chat", &[("x-test-watch", "stream")], &body).await;
    chat.model.called().await;
    // The first delta arrives while the model holds the rest.
    let received = read_until(&mut connection, "event: delta").await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    drop(connection);
    chat.let_go("stream").await;
    chat.model.release();

    let stored = chat.stored("gone-stream", 2).await;
    assert_eq!(contents(&stored), ["stream, please", GatedModel::ANSWER]);
    assert_eq!(chat.abandoned().await, COUNTED_ONCE);

    chat.model.release();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/chat", chat.server.url))
        .json(&json!({"message": "again", "session_id": "gone-stream", "stream": true}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let events = agent_core::testing::sse_events(&response.text().await.expect("the stream ends"));
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "done"], "{events:?}");
    let done: ChatResponse = serde_json::from_value(events[2].1.clone()).expect("done");
    assert_eq!(done.response, GatedModel::ANSWER);
    let stored = chat.stored("gone-stream", 4).await;
    assert_eq!(
        contents(&stored),
        ["stream, please", GatedModel::ANSWER, "again", GatedModel::ANSWER],
        "each turn stored once"
    );
    assert_eq!(chat.abandoned().await, COUNTED_ONCE);
}

/// SIGTERM (Cloud Run scaling in) while a turn whose client left is with
/// the model: the process has no open request, yet it waits for the turn
/// and stores it before it exits. The real binary, on SQLite on disk.
#[tokio::test]
async fn sigterm_waits_for_a_turn_whose_client_went_away() {
    let mut model = GatedModel::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("drain.db");
    let vars = [
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", model.base_url.as_str()),
        ("SQLITE_PATH", db.to_str().expect("utf-8")),
    ];
    let mut process = agent_core::testing::Process::start(env!("CARGO_BIN_EXE_chat_function"), &vars).await;
    let addr: std::net::SocketAddr = process.url.trim_start_matches("http://").parse().expect("an address");
    let body = json!({"message": "still there?", "session_id": "drained"});
    let connection = raw_post(addr, "/api/v1/chat", &[], &body).await;
    model.called().await;
    drop(connection);
    process.terminate();
    // The drain has nothing open to wait for but the turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        process.child.try_wait().expect("status").is_none(),
        "the process exited with a turn still with the model"
    );
    model.release();
    let status = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .expect("it exits once the turn is stored")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    let store = agent_core::store::sqlite::SqliteStore::open(&db).await.expect("open");
    let stored = agent_core::store::SessionStore::messages(&store, "drained")
        .await
        .expect("messages")
        .expect("the turn was stored");
    assert_eq!(contents(&stored), ["still there?", GatedModel::ANSWER]);
}
