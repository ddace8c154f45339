//! The worker's `POST /` over real HTTP, on SQLite on disk: each encoding
//! it accepts, and what it answers in each case (2xx acknowledges, 503 asks
//! for a redelivery). The model is a local server speaking Gemini's wire
//! format.

use agent_core::store::{Finished, TaskRecord, TaskStatus};
use agent_core::testing::{Scripted, TestApp, TestServer};
use base64::Engine as _;
use serde_json::{Value, json};

const GEMINI_PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn answer(text: &str) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}
    })
}

fn gemini_error(code: u16, status: &str) -> Value {
    json!({"error": {"code": code, "message": format!("scripted {status}"), "status": status}})
}

struct Worker {
    server: TestServer,
    app: TestApp,
    http: reqwest::Client,
    /// The scripted model, when the test uses one.
    model: Option<Scripted>,
}

impl Worker {
    async fn start(replies: Vec<(u16, Value)>, vars: &[(&str, &str)]) -> Worker {
        let model = Scripted::start(GEMINI_PATH, replies).await;
        let mut worker = Worker::on(&model.server.url, vars).await;
        worker.model = Some(model);
        worker
    }

    /// A worker whose model is the Gemini server at `model_url`.
    async fn on(model_url: &str, vars: &[(&str, &str)]) -> Worker {
        let mut all = vec![
            ("LLM_PROVIDER", "gemini"),
            ("GEMINI_API_KEY", "k"),
            ("GEMINI_BASE_URL", model_url),
            ("LLM_MAX_RETRIES", "0"),
        ];
        all.extend_from_slice(vars);
        let app = TestApp::start(agent_worker::FUNCTION, &all).await;
        let server = TestServer::start(agent_worker::router(&app).await.expect("router")).await;
        Worker {
            server,
            app,
            http: reqwest::Client::new(),
            model: None,
        }
    }

    /// How many times the scripted model was called.
    fn model_calls(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.requests().len())
    }

    async fn queue(&self, id: &str) {
        let task = TaskRecord::queued(id, "anonymous", format!("task {id}"), "s", 10);
        self.app.stores.tasks.create(&task).await.expect("create");
    }

    async fn task(&self, id: &str) -> TaskRecord {
        self.app.stores.tasks.get(id).await.expect("get").expect("exists")
    }

    async fn post(&self, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}/", self.server.url)).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("post");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn push(&self, task_id: &str, message_id: &str) -> (u16, Value) {
        self.post(&[("content-type", "application/json")], push_body(task_id, message_id))
            .await
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.server.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

fn data(task_id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(agent_core::queue::message(task_id))
}

fn message(task_id: &str, message_id: &str) -> Value {
    json!({"data": data(task_id), "messageId": message_id, "publishTime": "2026-11-23T00:00:00Z", "attributes": {}})
}

fn push_body(task_id: &str, message_id: &str) -> Vec<u8> {
    json!({"message": message(task_id, message_id), "subscription": "projects/p/subscriptions/s", "deliveryAttempt": 1})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_push_runs_the_task_and_a_duplicate_is_acknowledged_without_running() {
    let worker = Worker::start(vec![(200, answer("forty-two"))], &[]).await;
    worker.queue("t-push").await;
    let (status, body) = worker.push("t-push", "m1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged"], true);
    let task = worker.task("t-push").await;
    assert_eq!((task.status(), task.attempts), (TaskStatus::Completed, 1));
    assert_eq!(
        task.state.finished().and_then(Finished::result).expect("result")["response"],
        "forty-two"
    );

    // The same message again, and another message for the same task.
    for message_id in ["m1", "m2"] {
        let (status, body) = worker.push("t-push", message_id).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["outcome"].as_str().expect("outcome").contains("already completed"),
            "{body}"
        );
    }
    assert_eq!(worker.model_calls(), 1, "the model was called once");
    assert_eq!(worker.task("t-push").await.attempts, 1);
}

#[tokio::test]
async fn eventarc_cloudevents_in_binary_and_structured_mode_run_tasks() {
    let worker = Worker::start(vec![(200, answer("done"))], &[]).await;
    worker.queue("t-binary").await;
    worker.queue("t-structured").await;

    let body = json!({"message": message("t-binary", "m-b"), "subscription": "projects/p/subscriptions/s"});
    let (status, answer) = worker
        .post(
            &[
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
                ("ce-source", "//pubsub.googleapis.com/projects/p/topics/agent-tasks"),
                ("ce-id", "m-b"),
            ],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let event = json!({
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/agent-tasks",
        "id": "m-s",
        "datacontenttype": "application/json",
        "data": {"message": message("t-structured", "m-s"), "subscription": "projects/p/subscriptions/s"}
    });
    let (status, answer) = worker
        .post(
            &[("content-type", "application/cloudevents+json")],
            event.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for id in ["t-binary", "t-structured"] {
        assert_eq!(worker.task(id).await.status(), TaskStatus::Completed, "{id}");
    }
}

#[tokio::test]
async fn malformed_deliveries_are_acknowledged_and_counted() {
    let worker = Worker::start(vec![(200, answer("x"))], &[]).await;
    type Case = (Vec<(&'static str, &'static str)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (vec![], b"not json".to_vec()),
        (vec![], b"{}".to_vec()),
        (vec![], br#"{"message":{"data":"%%%","messageId":"1"}}"#.to_vec()),
        (vec![], push_body("bad id!", "1")),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-type", "google.cloud.storage.object.v1.finalized"),
                ("ce-id", "1"),
            ],
            b"{}".to_vec(),
        ),
    ];
    let n = cases.len();
    for (headers, body) in cases {
        let (status, answer) = worker.post(&headers, body).await;
        assert_eq!(status, 200, "a malformed body is acknowledged: {answer}");
        assert_eq!(answer["acknowledged"], true);
        assert!(!answer["error"].as_str().expect("error").is_empty());
    }
    let metrics = worker.metrics().await;
    assert!(
        metrics.contains(&format!(
            "worker_malformed_messages_total{{function=\"agent_worker\"}} {n}"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_task_is_acknowledged() {
    let worker = Worker::start(vec![(200, answer("x"))], &[]).await;
    let (status, body) = worker.push("no-such-task", "m1").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["outcome"].as_str().expect("outcome").contains("no task"), "{body}");
    assert_eq!(worker.model_calls(), 0);
}

#[tokio::test]
async fn a_transient_model_failure_asks_for_redelivery_until_attempts_run_out() {
    let worker = Worker::start(
        vec![(503, gemini_error(503, "UNAVAILABLE"))],
        &[("TASK_MAX_ATTEMPTS", "2")],
    )
    .await;
    worker.queue("t-flaky").await;
    let (status, body) = worker.push("t-flaky", "m1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let task = worker.task("t-flaky").await;
    assert_eq!(
        (task.status(), task.attempts, task.lease_until),
        (TaskStatus::Queued, 1, None),
        "released"
    );

    // The redelivery is the last attempt: the task fails and the message is
    // acknowledged, so it does not loop.
    let (status, body) = worker.push("t-flaky", "m1").await;
    assert_eq!(status, 200, "{body}");
    let task = worker.task("t-flaky").await;
    assert_eq!((task.status(), task.attempts), (TaskStatus::Failed, 2));
    assert!(
        task.state
            .finished()
            .and_then(Finished::error)
            .expect("error")
            .contains("gave up after 2 attempts")
    );
    let (status, _) = worker.push("t-flaky", "m1").await;
    assert_eq!(status, 200);
    assert_eq!(worker.model_calls(), 2);
}

#[tokio::test]
async fn a_model_refusal_fails_the_task_and_is_acknowledged() {
    let worker = Worker::start(vec![(400, gemini_error(400, "INVALID_ARGUMENT"))], &[]).await;
    worker.queue("t-refused").await;
    let (status, body) = worker.push("t-refused", "m1").await;
    assert_eq!(status, 200, "{body}");
    let task = worker.task("t-refused").await;
    assert_eq!((task.status(), task.attempts), (TaskStatus::Failed, 1));
    assert!(
        task.state
            .finished()
            .and_then(Finished::error)
            .expect("error")
            .contains("400")
    );
}

#[tokio::test]
async fn a_redelivery_while_the_first_delivery_holds_the_lease_is_retried_later() {
    // A stuck model: the first delivery holds the task, and this message's
    // redelivery (the same message id) must neither run it nor drop it.
    let model = TestServer::start(axum::Router::new().route(
        GEMINI_PATH,
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
            ""
        }),
    ))
    .await;
    let worker = Worker::on(&model.url, &[("TASK_LEASE_SECONDS", "30")]).await;
    worker.queue("t-held").await;
    let first = {
        let http = worker.http.clone();
        let url = format!("{}/", worker.server.url);
        tokio::spawn(async move { http.post(url).body(push_body("t-held", "m1")).send().await })
    };
    while worker.task("t-held").await.status() != TaskStatus::Running {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = worker.push("t-held", "m1").await;
    assert_eq!(status, 503, "the same message while its lease holds: {body}");
    let (status, body) = worker.push("t-held", "m2").await;
    assert_eq!(status, 200, "another message for a running task is a duplicate: {body}");
    assert_eq!(worker.task("t-held").await.attempts, 1);
    first.abort();
}

/// A callback a finished task still owes, with no message left to bring
/// it back (the cancel that finished it died before sending it): the
/// sweep sends it, signed, exactly once, and the next sweep finds nothing.
#[tokio::test]
async fn the_sweep_sends_the_callbacks_no_delivery_will_bring_back() {
    let receiver = agent_core::testing::CallbackReceiver::start().await;
    let worker = Worker::start(
        vec![(200, answer("unused"))],
        &[("WEBHOOK_SECRET", "whsec-sweep"), ("ALLOW_LOOPBACK_CALLBACKS", "true")],
    )
    .await;
    let tasks = worker.app.stores.tasks.clone();
    for id in ["owed-1", "owed-2"] {
        let task = TaskRecord {
            callback_url: Some(receiver.url.clone()),
            ..TaskRecord::queued(id, "anonymous", "2+2?", "s", 10)
        };
        tasks.create(&task).await.expect("create");
        let finished = tasks
            .finish(id, 0, &Finished::Failed("cancelled by the test".into()))
            .await
            .expect("finish");
        assert!(finished);
        assert!(worker.task(id).await.callback_pending(), "{id} owes its callback");
    }
    worker.queue("not-finished").await;

    let sweep = || async {
        let response = worker
            .http
            .post(format!("{}/sweep", worker.server.url))
            .send()
            .await
            .expect("sweep");
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")
    };
    assert_eq!(
        sweep().await,
        json!({"owed": 2, "settled": 2, "later": 0, "store_errors": 0})
    );
    let got = receiver.all();
    let mut ids: Vec<&str> = got.iter().map(|hook| hook.task_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["owed-1", "owed-2"], "one callback per task");
    assert!(
        got.iter()
            .all(|hook| agent_core::webhook::verify(b"whsec-sweep", &hook.body, &hook.signature)),
        "each is signed: {got:?}"
    );
    for id in ["owed-1", "owed-2"] {
        assert!(!worker.task(id).await.callback_pending(), "{id} is settled");
    }
    assert_eq!(worker.task("not-finished").await.status(), TaskStatus::Queued);
    assert_eq!(
        sweep().await,
        json!({"owed": 0, "settled": 0, "later": 0, "store_errors": 0}),
        "nothing is sent twice"
    );
    assert_eq!(worker.model_calls(), 0, "a sweep runs no task");
}
