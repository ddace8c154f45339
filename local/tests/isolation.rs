//! Two principals on one deployment never meet (issue 13): every route that
//! takes an id answers the other principal's ids exactly as ids nobody has,
//! and no data of one shows up in the other's answers. The same matrix runs
//! on SQLite and on the Firestore emulator, over real HTTP to every function
//! in one `local` process.

use std::time::Duration;

use agent_core::testing::{TestApp, TestServer, firestore_emulator_host};
use serde_json::{Value, json};

const KEYS: &str = "alice:alice-key-0123456789,bob:bob-key-0123456789";

/// One principal's client: its key on every request.
struct Client {
    http: reqwest::Client,
    url: String,
    key: &'static str,
}

impl Client {
    fn new(url: &str, key: &'static str) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: url.to_string(),
            key,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("x-api-key", self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Runs the agent synchronously in `session`; its answer.
    async fn agent(&self, session: &str, task: &str) -> String {
        let (status, body) = self
            .post("/api/v1/agent", json!({"task": task, "session_id": session}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["response"].as_str().expect("a response").to_string()
    }
}

/// What a client can tell of an error: its status, code and message.
fn refusal(answer: &(u16, Value)) -> (u16, Value, Value) {
    (
        answer.0,
        answer.1["error"]["code"].clone(),
        answer.1["error"]["message"].clone(),
    )
}

/// A 404 for `id` reads the same as a 404 for `nobody` once the ids are
/// swapped: nothing in it tells that `id` exists.
fn same_as_missing(answer: &(u16, Value), missing: &(u16, Value), id: &str, nobody: &str) {
    let (status, code, message) = refusal(answer);
    let (missing_status, missing_code, missing_message) = refusal(missing);
    assert_eq!((status, &code), (404, &json!("not_found")), "{}", answer.1);
    assert_eq!((missing_status, missing_code), (status, code));
    let missing_message = missing_message.as_str().unwrap_or_default().replace(nobody, id);
    assert_eq!(message.as_str(), Some(missing_message.as_str()));
}

async fn two_principals_never_meet(url: &str) {
    let alice = Client::new(url, "alice-key-0123456789");
    let bob = Client::new(url, "bob-key-0123456789");

    // Sessions: both may name one `default`.
    let before = bob.get("/api/v1/sessions/default").await;
    let bob_spent = bob.get("/api/v1/usage").await;
    assert_eq!(bob_spent.0, 200, "{}", bob_spent.1);
    let bob_stats = bob.get("/api/v1/stats").await;
    assert_eq!(bob_stats.0, 200, "{}", bob_stats.1);
    let (status, body) = alice
        .post(
            "/api/v1/chat",
            json!({"message": "alice's secret is 4242", "session_id": "default"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after = bob.get("/api/v1/sessions/default").await;
    assert_eq!(refusal(&after), refusal(&before), "alice's session is not bob's to see");
    // What alice spent is hers: bob's usage is as it was, hers counts it.
    assert_eq!(bob.get("/api/v1/usage").await, bob_spent, "alice's spend is not bob's");
    assert_eq!(bob.get("/api/v1/stats").await, bob_stats, "nor are her requests");
    let (status, alice_spent) = alice.get("/api/v1/usage").await;
    assert_eq!(
        (status, &alice_spent["total"]["model_calls"]),
        (200, &json!(1)),
        "{alice_spent}"
    );
    let deleted = bob.delete("/api/v1/sessions/default").await;
    assert_eq!(deleted.0, 404, "{}", deleted.1);
    let (status, body) = bob
        .post(
            "/api/v1/chat",
            json!({"message": "bob was here", "session_id": "default"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, own) = alice.get("/api/v1/sessions/default").await;
    assert_eq!(status, 200, "{own}");
    let contents: Vec<&str> = own["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        contents.len(),
        2,
        "alice's session is whole and only hers: {contents:?}"
    );
    assert_eq!(contents[0], "alice's secret is 4242");
    let (status, theirs) = bob.get("/api/v1/sessions/default").await;
    assert_eq!(status, 200, "{theirs}");
    assert!(!theirs.to_string().contains("4242"), "{theirs}");
    assert_eq!(theirs["messages"].as_array().map(Vec::len), Some(2), "{theirs}");

    // Memory, through the agent: kept per principal's session.
    alice.agent("me", "remember that my pin is 1234").await;
    let recalled = bob.agent("me", "what do you remember?").await;
    assert!(!recalled.contains("1234"), "bob recalled alice's memory: {recalled}");
    let recalled = alice.agent("me", "what do you remember?").await;
    assert!(recalled.contains("1234"), "alice recalls her own: {recalled}");

    // Tasks and their events.
    let (status, accepted) = alice
        .post("/api/v1/agent", json!({"task": "Calcula 6 * 7", "async": true}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["task_id"].as_str().expect("a task id").to_string();
    let nobody = uuid::Uuid::new_v4().to_string();
    let mut done = Value::Null;
    for _ in 0..200 {
        let (status, task) = alice.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(status, 200, "{task}");
        if task["status"] == "completed" {
            done = task;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "completed", "alice's task ends");
    for path in ["/api/v1/tasks/{}", "/api/v1/tasks/{}/events"] {
        let theirs = bob.get(&path.replace("{}", &id)).await;
        let missing = bob.get(&path.replace("{}", &nobody)).await;
        same_as_missing(&theirs, &missing, &id, &nobody);
    }
    let (status, events) = alice.get(&format!("/api/v1/tasks/{id}/events")).await;
    assert_eq!(status, 200, "alice follows her own task: {events}");

    listings_are_each_principals_own(&alice, &bob, &id).await;

    // A multi-agent run and a research are tasks like any other: hers.
    let (status, run) = alice
        .post(
            "/api/v1/multi-agent",
            json!({"task": "Calcula 6 * 7 y busca cold start"}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["task_id"].as_str().expect("a task id").to_string();
    let theirs = bob.get(&format!("/api/v1/tasks/{run_id}")).await;
    let missing = bob.get(&format!("/api/v1/tasks/{nobody}")).await;
    same_as_missing(&theirs, &missing, &run_id, &nobody);
    let (status, accepted) = alice
        .post(
            "/api/v1/research",
            json!({"topic": "serverless cold start", "depth": "quick", "max_subtopics": 1}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let research = accepted["research_id"].as_str().expect("a research id").to_string();
    let mut report = Value::Null;
    for _ in 0..200 {
        let (status, view) = alice.get(&format!("/api/v1/research/{research}")).await;
        assert_eq!(status, 200, "{view}");
        if view["status"] == "completed" {
            report = view;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        report["result"]["report"].as_str().is_some_and(|r| r.contains("[1]")),
        "alice's research ends with a report: {report}"
    );
    for path in ["/api/v1/research/{}", "/api/v1/tasks/{}", "/api/v1/tasks/{}/events"] {
        let theirs = bob.get(&path.replace("{}", &research)).await;
        let missing = bob.get(&path.replace("{}", &nobody)).await;
        same_as_missing(&theirs, &missing, &research, &nobody);
    }
}

/// The ids of a listing's `key` items (`session_id` or `task_id`).
fn listed(body: &Value, items: &str, key: &str) -> Vec<String> {
    body[items]
        .as_array()
        .unwrap_or_else(|| panic!("{items} in {body}"))
        .iter()
        .filter_map(|item| item[key].as_str().map(str::to_string))
        .collect()
}

/// Lists and pages hold the caller's own records only, whatever cursor it
/// sends (another principal's included), and a bad parameter is a 400.
async fn listings_are_each_principals_own(alice: &Client, bob: &Client, task_id: &str) {
    let (status, body) = alice
        .post(
            "/api/v1/chat",
            json!({"message": "alice only", "session_id": "alice-only"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Sessions, newest first: alice's two, bob's one.
    let (status, mine) = alice.get("/api/v1/sessions").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(listed(&mine, "sessions", "session_id"), ["alice-only", "default"]);
    assert_eq!(mine["sessions"][0]["message_count"], 2, "{mine}");
    assert_eq!(mine["next_cursor"], Value::Null, "{mine}");
    let (status, theirs) = bob.get("/api/v1/sessions").await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(listed(&theirs, "sessions", "session_id"), ["default"]);
    let (status, first) = alice.get("/api/v1/sessions?limit=1").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(listed(&first, "sessions", "session_id"), ["alice-only"]);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let (status, second) = alice.get(&format!("/api/v1/sessions?limit=1&cursor={cursor}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(listed(&second, "sessions", "session_id"), ["default"]);
    let (status, with_hers) = bob.get(&format!("/api/v1/sessions?cursor={cursor}")).await;
    assert_eq!(status, 200, "{with_hers}");
    assert!(
        !with_hers.to_string().contains("alice-only"),
        "alice's cursor shows bob only his own: {with_hers}"
    );

    // A session a page at a time.
    let (status, page) = alice.get("/api/v1/sessions/default?limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["content"], "alice's secret is 4242");
    let cursor = page["next_cursor"].as_str().expect("a next page").to_string();
    let (status, last) = alice
        .get(&format!("/api/v1/sessions/default?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["messages"].as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(last["next_cursor"], Value::Null, "{last}");
    let theirs = bob.get(&format!("/api/v1/sessions/alice-only?cursor={cursor}")).await;
    assert_eq!(
        theirs.0, 200,
        "an empty later page of a session bob never had: {}",
        theirs.1
    );
    assert!(!theirs.1.to_string().contains("alice only"), "{}", theirs.1);

    // Tasks, by status too.
    let (status, mine) = alice.get("/api/v1/tasks?status=completed").await;
    assert_eq!(status, 200, "{mine}");
    // Newest first: the asynchronous task, then her two synchronous runs.
    let ids = listed(&mine, "tasks", "task_id");
    assert_eq!((ids.len(), ids[0].as_str()), (3, task_id), "{mine}");
    let (status, queued) = alice.get("/api/v1/tasks?status=queued").await;
    assert_eq!(
        (status, listed(&queued, "tasks", "task_id").len()),
        (200, 0),
        "{queued}"
    );
    for path in ["/api/v1/tasks", "/api/v1/tasks?status=completed"] {
        let (status, theirs) = bob.get(path).await;
        assert_eq!(status, 200, "{theirs}");
        assert!(
            !theirs.to_string().contains(task_id),
            "bob lists alice's task: {theirs}"
        );
    }

    // Mistakes are 400s in the envelope.
    for path in [
        "/api/v1/sessions?limit=0",
        "/api/v1/sessions?limit=1001",
        "/api/v1/sessions?cursor=not-a-cursor",
        "/api/v1/sessions/default?cursor=%25%25",
        "/api/v1/tasks?status=done",
        "/api/v1/tasks?limit=x",
        "/api/v1/usage?from=x",
        "/api/v1/usage?to=2026-02-30",
        "/api/v1/stats?from=x",
        "/api/v1/stats?from=2026-12-02&to=2026-12-01",
    ] {
        let (status, body) = alice.get(path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_argument")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn two_principals_never_meet_on_sqlite() {
    let app = TestApp::start("local", &[("API_KEYS", KEYS)]).await;
    let api = local::api(&app).await.expect("api");
    let server = TestServer::start(app.wrap(api, local::FUNCTION)).await;
    two_principals_never_meet(&server.url).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn two_principals_never_meet_on_firestore() {
    let _emulator = firestore_emulator_host();
    let project = format!("isolation-{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::start(
        "local",
        &[
            ("API_KEYS", KEYS),
            ("STORE", "firestore"),
            ("FIRESTORE_PROJECT", &project),
        ],
    )
    .await;
    let api = local::api(&app).await.expect("api");
    let server = TestServer::start(app.wrap(api, local::FUNCTION)).await;
    two_principals_never_meet(&server.url).await;
}
