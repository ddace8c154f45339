//! A chat batch with `"async": true` on the embedded defaults: stored as a
//! task of its caller, queued on the local queue, run by the same worker as
//! agent tasks, its result the synchronous batch's answer; read, streamed
//! and called back as any task. Real HTTP over loopback, SQLite on disk.

use std::time::{Duration, Instant};

use agent_core::delivery::Delivery;
use agent_core::store::{TaskEvent, TaskKind, TaskRecord, TaskState};
use agent_core::testing::{CallbackReceiver, TestApp, TestServer};
use agent_core::worker::{Disposition, Worker};
use serde_json::{Value, json};

const SECRET: &str = "batch-webhook-secret";
const DEADLINE: Duration = Duration::from_secs(20);

struct Local {
    server: TestServer,
    http: reqwest::Client,
    _app: TestApp,
}

impl Local {
    async fn start(vars: &[(&str, &str)]) -> Local {
        let app = TestApp::start("local", vars).await;
        let api = local::api(&app).await.expect("api");
        Local {
            server: TestServer::start(app.wrap(api, local::FUNCTION)).await,
            http: reqwest::Client::new(),
            _app: app,
        }
    }

    async fn send(&self, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.url);
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let request = if key.is_empty() {
            request
        } else {
            request.header("x-api-key", key)
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn wait_finished(&self, key: &str, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, task) = self.send(key, &format!("/api/v1/tasks/{id}"), None).await;
            assert_eq!(status, 200, "{task}");
            if ["completed", "failed", "cancelled"].contains(&task["status"].as_str().unwrap_or_default()) {
                return task;
            }
            assert!(started.elapsed() < DEADLINE, "the batch did not finish: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn an_async_batch_is_a_task_that_ends_with_the_synchronous_answer() {
    let hooks = CallbackReceiver::start().await;
    let local = Local::start(&[
        ("API_KEYS", "alice:key-a,bob:key-b"),
        ("WEBHOOK_SECRET", SECRET),
        ("ALLOW_LOOPBACK_CALLBACKS", "true"),
        ("RATE_LIMIT_CHAT", "off"),
    ])
    .await;
    let requests = json!([
        {"message": "first", "session_id": "notes"},
        {"message": "   "},
        {"message": "second", "session_id": "notes"},
        {"message": "hola"},
        {"message": "third", "session_id": "notes", "model": "strong"},
    ]);
    let (status, accepted) = local
        .send(
            "key-a",
            "/api/v1/chat/batch",
            Some(json!({"requests": requests, "concurrency": 3, "async": true, "callback_url": hooks.url})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["task_id"].as_str().expect("task_id").to_string();
    assert_eq!(accepted["status_url"], format!("/api/v1/tasks/{id}"));
    assert_eq!(accepted["events_url"], format!("/api/v1/tasks/{id}/events"));
    assert!(accepted.get("session_id").is_none(), "{accepted}");

    let task = local.wait_finished("key-a", &id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["kind"], "chat_batch", "{task}");
    assert_eq!(task["task"], "chat batch of 5 requests", "{task}");
    assert_eq!(task["attempts"], 1, "{task}");
    let results = task["result"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{task}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "in the items' order");
        if i == 1 {
            assert_eq!(result["error"]["code"], "invalid_argument", "{result}");
            assert!(result.get("response").is_none(), "{result}");
        } else {
            assert!(result.get("error").is_none(), "{i}: {result}");
            assert!(result["response"].as_str().is_some_and(|r| !r.is_empty()), "{result}");
        }
    }
    assert_eq!(results[4]["route"], json!({"tier": "strong", "reason": "requested"}));
    assert_eq!(task["result"]["usage"]["model_calls"], 4, "the bad item spent nothing");

    // The session's turns are stored in the batch's order, under the
    // caller's own session.
    let (status, session) = local.send("key-a", "/api/v1/sessions/notes", None).await;
    assert_eq!(status, 200, "{session}");
    let messages = session["messages"].as_array().expect("messages");
    let said: Vec<(&str, &str)> = messages
        .iter()
        .filter_map(|m| Some((m["role"].as_str()?, m["content"].as_str()?)))
        .filter(|(role, _)| *role == "user")
        .collect();
    assert_eq!(said, [("user", "first"), ("user", "second"), ("user", "third")]);
    assert_eq!(messages.len(), 6, "{session}");
    let (status, _) = local.send("key-b", "/api/v1/sessions/notes", None).await;
    assert_eq!(status, 404, "another caller's session is not there");

    // The task is its owner's only.
    let (status, _) = local.send("key-b", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(status, 404);

    // The events end with `done` and the task.
    let text = local
        .http
        .get(format!("{}/api/v1/tasks/{id}/events", local.server.url))
        .header("x-api-key", "key-a")
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("text");
    let events = agent_core::testing::sse_events(&text);
    let (last, done) = events.last().expect("an event");
    assert_eq!(last, "done", "{text}");
    assert_eq!(done["result"], task["result"]);
    // One `item` event per item, with its result as the answer lists it.
    let mut items: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "item")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(items.len(), 5, "{text}");
    items.sort_by_key(|item| item["result"]["index"].as_u64());
    for (i, item) in items.iter().enumerate() {
        assert_eq!((&item["type"], &item["attempt"]), (&json!("item"), &json!(1)), "{item}");
        assert_eq!(item["result"], results[i], "{item}");
    }

    // One signed callback with the finished task.
    let started = Instant::now();
    while hooks.all().is_empty() {
        assert!(started.elapsed() < DEADLINE, "no callback arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = hooks.all();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].task_id, id);
    assert!(agent_core::webhook::verify(
        SECRET.as_bytes(),
        &received[0].body,
        &received[0].signature
    ));
    let posted: Value = serde_json::from_slice(&received[0].body).expect("json");
    assert_eq!(
        (&posted["status"], &posted["kind"]),
        (&json!("completed"), &json!("chat_batch"))
    );
    assert_eq!(posted["result"], task["result"]);
}

#[tokio::test]
async fn an_async_batch_that_cannot_be_read_is_a_400_and_queues_nothing() {
    let local = Local::start(&[("RATE_LIMIT_CHAT", "off")]).await;
    let hundred_and_one: Vec<Value> = (0..101).map(|_| json!({"message": "x"})).collect();
    for (body, expected) in [
        (json!({"requests": [], "async": true}), "1 to 100"),
        (json!({"requests": hundred_and_one, "async": true}), "1 to 100"),
        (
            json!({"requests": [{"message": "x"}], "concurrency": 17, "async": true}),
            "concurrency",
        ),
        (
            json!({"requests": [{"message": "x"}], "async": true, "extra": 1}),
            "extra",
        ),
        (
            json!({"requests": [{"message": "x"}], "async": true, "callback_url": "https://example.com/hook"}),
            "WEBHOOK_SECRET",
        ),
        (
            json!({"requests": [{"message": "x"}], "callback_url": "https://example.com/hook"}),
            "async",
        ),
    ] {
        let (status, answer) = local.send("", "/api/v1/chat/batch", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (status, tasks) = local.send("", "/api/v1/tasks", None).await;
    assert_eq!(status, 200);
    assert_eq!(tasks["tasks"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn an_async_batch_counts_every_item_when_it_is_submitted() {
    let local = Local::start(&[("RATE_LIMIT_CHAT", "5/1h")]).await;
    let three: Vec<Value> = (0..3).map(|i| json!({"message": format!("hi {i}")})).collect();
    let (status, accepted) = local
        .send(
            "",
            "/api/v1/chat/batch",
            Some(json!({"requests": three, "async": true})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    // Three places spent of five: a batch of three more is over the limit
    // and queues nothing.
    let (status, answer) = local
        .send(
            "",
            "/api/v1/chat/batch",
            Some(json!({"requests": three, "async": true})),
        )
        .await;
    assert_eq!(status, 429, "{answer}");
    let (_, tasks) = local.send("", "/api/v1/tasks", None).await;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(1), "{tasks}");
}

/// A batch whose worker died mid-way is run again by the redelivery from
/// what its first attempt recorded: an item with a result (an `item`
/// event) is not run again, so its turn is not stored twice; the others
/// run, and the task ends with every result.
#[tokio::test]
async fn a_redelivered_batch_keeps_what_its_first_attempt_recorded() {
    let app = TestApp::start("local", &[]).await;
    let tasks = app.stores.tasks.clone();
    let batch = TaskRecord {
        kind: TaskKind::ChatBatch,
        state: TaskState::Running,
        attempts: 1,
        delivery_id: Some("first".into()),
        // The first attempt's worker died: its lease has passed.
        lease_until: Some(std::time::SystemTime::now() - Duration::from_secs(60)),
        input: Some(json!({"requests": [
            {"message": "one", "session_id": "resumed"},
            {"message": "two", "session_id": "resumed"},
        ]})),
        ..TaskRecord::queued("resumed-batch", "anonymous", "chat batch of 2 requests", "", 0)
    };
    tasks.create(&batch).await.expect("create");
    let recorded = json!({"index": 0, "error": {"code": "upstream_error", "message": "recorded by attempt 1"}});
    tasks
        .add_event(
            "resumed-batch",
            &TaskEvent {
                attempt: 1,
                index: 0,
                data: json!({"type": "item", "result": recorded}),
                created_at: String::new(),
            },
        )
        .await
        .expect("event");

    let tools = agent_core::tools::registry(&app.settings.tools, &app.stores)
        .await
        .expect("tools");
    let worker = Worker::new(&app, tools);
    let delivery = Delivery {
        task_id: "resumed-batch".into(),
        message_id: "second".into(),
        delivery_attempt: None,
        subscription: None,
        traceparent: None,
    };
    assert!(matches!(worker.deliver(&delivery).await, Disposition::Done(_)));

    let task = tasks.get("resumed-batch").await.expect("get").expect("stored");
    assert_eq!(task.attempts, 2, "{task:?}");
    let view = serde_json::to_value(agent_core::task::TaskView::from(task)).expect("json");
    assert_eq!(view["status"], "completed", "{view}");
    let results = view["result"]["results"].as_array().expect("results");
    assert_eq!(results[0], recorded, "kept, not run again");
    assert_eq!(results[1]["session_id"], "resumed", "{view}");
    assert_eq!(view["result"]["usage"]["model_calls"], 1, "{view}");
    let key = agent_core::owned::session_key("anonymous", "resumed");
    let stored = app.stores.sessions.messages_page(&key, 0, 10).await.expect("page");
    let said: Vec<&str> = stored.items.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(said.len(), 2, "one turn, the second item's: {said:?}");
    assert_eq!(said[0], "two");
    let events = tasks.events("resumed-batch", Some((1, 0)), 10).await.expect("events");
    assert_eq!(events.len(), 1, "the second attempt recorded its one item");
    assert_eq!(events[0].data["result"]["index"], 1);
}
