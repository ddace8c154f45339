//! Issue 14's totals, exact: 100 chat turns at once on one session, sent
//! half to each of two `local` services on one store (two processes on
//! one SQLite file, or two instances on one Firestore database), and a few
//! agent runs. The session's `usage` and the caller's `GET /api/v1/usage`
//! (and `GET /api/v1/stats`) equal the sums of the answers' own `usage`, to
//! the pico-dollar. The
//! offline model is priced through `MODEL_PRICES` so that costs are not 0.

use agent_core::llm::prices::Usd;
use agent_core::testing::{TestApp, TestServer, firestore_emulator_host};
use serde_json::{Value, json};

const KEYS: &str = "alice:alice-key-0123456789,bob:bob-key-0123456789";
const ALICE: &str = "alice-key-0123456789";
const TURNS: usize = 100;

/// Summed usage: tokens by kind, calls, and the cost in pico-dollars.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sum {
    input: u64,
    output: u64,
    cached: u64,
    thinking: u64,
    calls: u64,
    pico: u64,
}

impl Sum {
    fn add(&mut self, usage: &Value) {
        let n = |field: &str| usage[field].as_u64().unwrap_or_else(|| panic!("{field} in {usage}"));
        self.input += n("input_tokens");
        self.output += n("output_tokens");
        self.cached += n("cached_tokens");
        self.thinking += n("thinking_tokens");
        self.calls += n("model_calls");
        let dollars = usage["cost_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("a cost in {usage}"));
        self.pico += Usd::from_dollars(dollars).expect("a cost").pico();
    }

    fn of(usage: &Value) -> Sum {
        let mut sum = Sum::default();
        sum.add(usage);
        sum
    }
}

async fn send(http: &reqwest::Client, url: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = match body {
        Some(body) => http.post(format!("{url}{path}")).json(&body),
        None => http.get(format!("{url}{path}")),
    };
    let response = request.header("X-API-Key", ALICE).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn totals_are_exact(a: &str, b: &str) {
    let http = reqwest::Client::new();
    let sent: Vec<_> = (0..TURNS)
        .map(|i| {
            let (http, url) = (http.clone(), if i % 2 == 0 { a } else { b }.to_string());
            tokio::spawn(async move {
                let body = json!({"message": format!("question {i}: what is {i} plus {i}?"), "session_id": "busy"});
                let (status, answer) = send(&http, &url, "/api/v1/chat", Some(body)).await;
                assert_eq!(status, 200, "{answer}");
                answer
            })
        })
        .collect();
    let mut turns = Sum::default();
    for answer in sent {
        turns.add(&answer.await.expect("a turn")["usage"]);
    }
    assert!(turns.pico > 0, "priced: {turns:?}");

    let mut runs = Sum::default();
    for (i, url) in [a, b].into_iter().enumerate() {
        let body = json!({"task": format!("Calcula {i} * 7"), "session_id": "runs"});
        let (status, run) = send(&http, url, "/api/v1/agent", Some(body)).await;
        assert_eq!(status, 200, "{run}");
        runs.add(&run["usage"]);
    }

    for url in [a, b] {
        let (status, session) = send(&http, url, "/api/v1/sessions/busy?limit=1", None).await;
        assert_eq!(status, 200, "{session}");
        assert_eq!(Sum::of(&session["usage"]), turns, "the session's totals");
        let (status, listed) = send(&http, url, "/api/v1/sessions", None).await;
        assert_eq!(status, 200, "{listed}");
        let busy = listed["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["session_id"] == "busy"))
            .unwrap_or_else(|| panic!("busy is listed: {listed}"));
        assert_eq!(Sum::of(&busy["usage"]), turns, "the listing's totals");

        let (status, report) = send(&http, url, "/api/v1/usage", None).await;
        assert_eq!(status, 200, "{report}");
        let records = report["records"].as_array().expect("records");
        assert_eq!(records.len(), 1, "one day, one model: {report}");
        assert_eq!(records[0]["model"], "offline", "{report}");
        let mut all = turns;
        all.input += runs.input;
        all.output += runs.output;
        all.cached += runs.cached;
        all.thinking += runs.thinking;
        all.calls += runs.calls;
        all.pico += runs.pico;
        assert_eq!(Sum::of(&records[0]), all, "the day's record: turns and runs");
        assert_eq!(Sum::of(&report["total"]), all, "the total");

        // The stats count the same, and each turn and run as one request.
        let (status, stats) = send(&http, url, "/api/v1/stats", None).await;
        assert_eq!(status, 200, "{stats}");
        for figures in [&stats["today"], &stats["range"]] {
            assert_eq!(Sum::of(figures), all, "{stats}");
            assert_eq!(figures["requests"], TURNS + 2, "{stats}");
            assert_eq!(figures["cache_hits"], 0, "{stats}");
        }
    }
    // Bob spent nothing.
    let bob = http
        .get(format!("{a}/api/v1/usage"))
        .header("X-API-Key", "bob-key-0123456789")
        .send()
        .await
        .expect("request");
    let report: Value = bob.json().await.expect("json");
    assert_eq!(report["records"], json!([]), "{report}");
    assert_eq!(report["total"]["model_calls"], 0, "{report}");

    for bad in [
        "/api/v1/usage?from=yesterday",
        "/api/v1/usage?from=2026-02-30",
        "/api/v1/usage?from=2026-12-02&to=2026-12-01",
        "/api/v1/usage?from=2020-01-01&to=2026-12-01",
    ] {
        let (status, body) = send(&http, a, bad, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_argument")),
            "{bad}: {body}"
        );
    }
}

const PRICED: [(&str, &str); 3] = [
    ("API_KEYS", KEYS),
    ("MODEL_PRICES", "offline=1.25/2.5"),
    ("RATE_LIMIT_CHAT", "off"),
];

async fn serve(vars: &[(&str, &str)]) -> (TestApp, TestServer) {
    let mut all = PRICED.to_vec();
    all.extend_from_slice(vars);
    let app = TestApp::start("local", &all).await;
    let api = local::api(&app).await.expect("api");
    let server = TestServer::start(app.wrap(api, local::FUNCTION)).await;
    (app, server)
}

#[tokio::test]
async fn totals_are_exact_across_two_services_on_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let path = path.to_string_lossy();
    let (_a, a) = serve(&[("SQLITE_PATH", &path)]).await;
    let (_b, b) = serve(&[("SQLITE_PATH", &path)]).await;
    totals_are_exact(&a.url, &b.url).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn totals_are_exact_across_two_services_on_one_firestore_database() {
    let _emulator = firestore_emulator_host();
    let project = format!("usage-{}", uuid::Uuid::new_v4().simple());
    let vars = [("STORE", "firestore"), ("FIRESTORE_PROJECT", project.as_str())];
    let (_a, a) = serve(&vars).await;
    let (_b, b) = serve(&vars).await;
    totals_are_exact(&a.url, &b.url).await;
}
