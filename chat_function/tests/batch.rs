//! `POST /api/v1/chat/batch` over real HTTP on SQLite on disk, with the
//! offline model: per-item results in order, bad items answered alone,
//! turns of one session stored in order, every item counted against the
//! rate limit, and a batch that cannot be read refused whole.

use agent_core::testing::{TestApp, TestServer};
use chat_function::{FUNCTION, router};
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

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.server.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_hundred_items_answer_in_order_bad_ones_alone_and_one_sessions_turns_in_order() {
    let chat = Chat::start(&[("RATE_LIMIT_CHAT", "off")]).await;
    let shared = [30, 31, 60];
    let requests: Vec<Value> = (0..100)
        .map(|i| match i {
            5 => json!({"message": "   "}),
            10 => json!({"message": "stream me", "stream": true}),
            20 => json!({"message": "bad id", "session_id": "../etc"}),
            40 => json!({"message": "hi", "mood": "cheerful"}),
            i if shared.contains(&i) => json!({"message": format!("turn {i}"), "session_id": "shared"}),
            i => json!({"message": format!("hello {i}")}),
        })
        .collect();
    let (status, body) = chat
        .post("/api/v1/chat/batch", json!({"requests": requests, "concurrency": 8}))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 100);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "in the items' order");
        match i {
            5 | 10 | 20 | 40 => {
                assert_eq!(result["error"]["code"], "invalid_argument", "{i}: {result}");
                assert!(result.get("response").is_none(), "{i}: {result}");
            }
            _ => {
                assert!(result.get("error").is_none(), "{i}: {result}");
                assert!(
                    result["response"].as_str().is_some_and(|r| !r.is_empty()),
                    "{i}: {result}"
                );
            }
        }
    }
    assert!(
        results[10]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stream"))
    );
    assert!(
        results[40]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mood"))
    );
    assert_eq!(body["usage"]["model_calls"], 96, "the bad items spent nothing");
    assert_eq!(
        body["usage"]["input_tokens"].as_u64(),
        Some(
            results
                .iter()
                .filter_map(|r| r["usage"]["input_tokens"].as_u64())
                .sum::<u64>()
        )
    );

    // The shared session holds its three turns in the batch's order, each
    // question followed by its answer.
    let session = chat
        .http
        .get(format!("{}/api/v1/sessions/shared", chat.server.url))
        .send()
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json");
    let messages = session["messages"].as_array().expect("messages");
    let questions: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(questions, ["turn 30", "turn 31", "turn 60"]);
    assert_eq!(messages.len(), 6);
    assert!(messages.iter().step_by(2).all(|m| m["role"] == "user"), "{session}");
    for i in shared {
        assert_eq!(results[i]["session_id"], "shared");
    }
}

#[tokio::test]
async fn every_item_counts_against_the_rate_limit() {
    let chat = Chat::start(&[("RATE_LIMIT_CHAT", "5/1h")]).await;
    let requests: Vec<Value> = (0..8).map(|i| json!({"message": format!("hi {i}")})).collect();
    let (status, body) = chat
        .post("/api/v1/chat/batch", json!({"requests": requests, "concurrency": 1}))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    let refused: Vec<usize> = results
        .iter()
        .filter(|r| r["error"]["code"] == "rate_limited")
        .filter_map(|r| r["index"].as_u64().map(|i| i as usize))
        .collect();
    assert_eq!(refused, [5, 6, 7], "5 admitted, then refused: {body}");
    // The budget is spent: the next request is refused whole.
    let (status, _) = chat.post("/api/v1/chat", json!({"message": "one more"})).await;
    assert_eq!(status, 429);
    let (status, _) = chat
        .post("/api/v1/chat/batch", json!({"requests": [{"message": "x"}]}))
        .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_batch_that_cannot_be_read_is_refused_whole() {
    let chat = Chat::start(&[]).await;
    let hundred_and_one: Vec<Value> = (0..101).map(|_| json!({"message": "x"})).collect();
    for (body, expected) in [
        (json!({"requests": []}), "1 to 100"),
        (json!({"requests": hundred_and_one}), "1 to 100"),
        (json!({"requests": [{"message": "x"}], "concurrency": 0}), "concurrency"),
        (
            json!({"requests": [{"message": "x"}], "concurrency": 17}),
            "concurrency",
        ),
        (json!({"requests": [{"message": "x"}], "extra": true}), "extra"),
        (json!({"requests": "hello"}), "expected a sequence"),
        (json!({"requests": [5]}), "expected a map"),
        (json!({}), "requests"),
    ] {
        let (status, answer) = chat.post("/api/v1/chat/batch", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
}

/// A batch queued on the chat function alone is followed on the chat
/// function: its `status_url` and `events_url` are answered where they
/// were given, not only by the agent function.
#[tokio::test]
async fn a_queued_batch_is_followed_on_the_chat_function_itself() {
    let chat = Chat::start(&[]).await;
    let (status, accepted) = chat
        .post(
            "/api/v1/chat/batch",
            json!({"requests": [{"message": "one"}, {"message": "two"}], "async": true}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let status_url = accepted["status_url"].as_str().expect("status_url").to_string();
    let events_url = accepted["events_url"].as_str().expect("events_url").to_string();
    let mut task = Value::Null;
    for _ in 0..200 {
        task = chat
            .http
            .get(format!("{}{status_url}", chat.server.url))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if task["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["results"].as_array().map(Vec::len), Some(2), "{task}");
    let events = chat
        .http
        .get(format!("{}{events_url}", chat.server.url))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("the stream ends");
    assert!(
        events.contains("event: item") && events.contains("event: done"),
        "{events}"
    );
    let listed: Value = chat
        .http
        .get(format!("{}/api/v1/tasks", chat.server.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["tasks"][0]["task_id"], task["task_id"], "{listed}");
}
