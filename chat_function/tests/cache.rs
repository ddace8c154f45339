//! The response cache (issue 14), against a local server speaking OpenAI's
//! wire format that counts the calls it gets:
//! - two `chat_function` processes sharing a store: the second answers a
//!   repeat from the cache, with no model call; on SQLite here, on the
//!   Firestore emulator in `cache_firestore_*`;
//! - another principal, or `"cache": false`, goes to the model;
//! - 50 identical requests at once on one instance make one model call;
//! - a damaged entry or a failing cache tier still answers from the model;
//! - a streamed request that hits gets the answer as a delta and `done`.

use agent_core::testing::{GatedModel, Process, Scripted, TestApp, TestServer, sse_events};
use chat_function::{FUNCTION, router};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");
const OPENAI_PATH: &str = "/v1/chat/completions";
const KEYS: &str = "alice:alice-key-0123456789,bob:bob-key-0123456789";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";

fn answer() -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Four."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
    })
}

async fn chat(url: &str, key: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/chat"))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|_| json!({ "stream": text }))
}

async fn get(url: &str, key: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn metrics(url: &str) -> String {
    reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .header("X-API-Key", ALICE)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn vars<'a>(base: &'a str, store: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "test-key"),
        ("OPENAI_BASE_URL", base),
        ("OPENAI_MODEL", "gpt-4o-mini"),
        ("LLM_MAX_RETRIES", "0"),
        ("API_KEYS", KEYS),
        ("CACHE", "store"),
        ("RATE_LIMIT_CHAT", "off"),
    ];
    vars.extend_from_slice(store);
    vars
}

/// Two processes on one store: a repeat on the second is a free hit; bob,
/// and a request that opts out, go to the model; a streamed repeat hits.
async fn shared_by_two_processes(store: &[(&str, &str)]) {
    let double = Scripted::start(OPENAI_PATH, vec![(200, answer())]).await;
    let base = format!("{}/v1", double.server.url);
    let a = Process::start(BIN, &vars(&base, store)).await;
    let b = Process::start(BIN, &vars(&base, store)).await;
    let question = json!({"message": "What is 2 + 2?", "system_instruction": "Answer briefly."});

    let first = chat(&a.url, ALICE, question.clone()).await;
    assert_eq!(
        (first["cached"].as_bool(), first["usage"]["model_calls"].as_u64()),
        (Some(false), Some(1)),
        "{first}"
    );
    assert_eq!(double.requests().len(), 1);

    let repeat = chat(&b.url, ALICE, question.clone()).await;
    assert_eq!(
        double.requests().len(),
        1,
        "the second process answered from the store: {repeat}"
    );
    assert_eq!(repeat["cached"], true, "{repeat}");
    assert_eq!(repeat["response"], "Four.");
    let usage = &repeat["usage"];
    assert_eq!(
        (
            &usage["model_calls"],
            &usage["cache_hits"],
            &usage["input_tokens"],
            &usage["output_tokens"]
        ),
        (&json!(0), &json!(1), &json!(0), &json!(0)),
        "{repeat}"
    );
    assert_eq!(usage["cost_usd"], json!(0.0), "{repeat}");
    assert_eq!(
        usage["saved_usd"], first["usage"]["cost_usd"],
        "it saved what the first cost: {repeat}"
    );
    assert_ne!(
        repeat["session_id"], first["session_id"],
        "a new session, stored as any turn"
    );
    let stored = get(
        &b.url,
        ALICE,
        &format!("/api/v1/sessions/{}", repeat["session_id"].as_str().unwrap_or_default()),
    )
    .await;
    assert_eq!(stored["messages"][1]["content"], "Four.", "{stored}");

    // Bob's identical question is his own: the model answers it.
    let bobs = chat(&b.url, BOB, question.clone()).await;
    assert_eq!(
        (bobs["cached"].as_bool(), double.requests().len()),
        (Some(false), 2),
        "{bobs}"
    );
    // "cache": false goes to the model even though the answer is kept.
    let mut fresh = question.clone();
    fresh["cache"] = json!(false);
    let fresh = chat(&a.url, ALICE, fresh).await;
    assert_eq!(
        (fresh["cached"].as_bool(), double.requests().len()),
        (Some(false), 3),
        "{fresh}"
    );

    // A streamed repeat: the answer as one delta, then done, cached.
    let mut streamed = question.clone();
    streamed["stream"] = json!(true);
    let streamed = chat(&a.url, ALICE, streamed).await;
    let events = sse_events(streamed["stream"].as_str().expect("an event stream"));
    assert_eq!(double.requests().len(), 3, "the stream hit: {events:?}");
    assert_eq!(events[0], ("delta".to_string(), json!({"text": "Four."})));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].0, "done");
    assert_eq!(
        (&events[1].1["cached"], &events[1].1["usage"]["cache_hits"]),
        (&json!(true), &json!(1))
    );

    // The stats each instance keeps for alice, and the day's from the store.
    let stats = get(&b.url, ALICE, "/api/v1/cache/stats").await;
    assert_eq!(
        (&stats["mode"], &stats["hits"], &stats["misses"]),
        (&json!("store"), &json!(1), &json!(0)),
        "{stats}"
    );
    assert_eq!(
        (&stats["store"]["hits"], &stats["memory"]["entries"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    let bob_stats = get(&b.url, BOB, "/api/v1/cache/stats").await;
    assert_eq!(
        (&bob_stats["hits"], &bob_stats["misses"]),
        (&json!(0), &json!(1)),
        "{bob_stats}"
    );
    let day = get(&a.url, ALICE, "/api/v1/stats").await;
    assert_eq!(
        (
            &day["today"]["requests"],
            &day["today"]["model_calls"],
            &day["today"]["cache_hits"]
        ),
        (&json!(4), &json!(2), &json!(2)),
        "{day}"
    );
    assert_eq!(day["today"]["cache_hit_rate"], json!(0.5), "{day}");
}

#[tokio::test]
async fn two_processes_on_one_sqlite_file_share_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let path = path.to_string_lossy();
    shared_by_two_processes(&[("SQLITE_PATH", &path)]).await;
}

#[tokio::test]
#[ignore = "needs the Firestore emulator (FIRESTORE_EMULATOR_HOST); ./scripts/test.sh starts one"]
async fn cache_firestore_two_processes_share_answers() {
    let host = agent_core::testing::firestore_emulator_host();
    let project = format!("cache-{}", uuid::Uuid::new_v4().simple());
    shared_by_two_processes(&[
        ("STORE", "firestore"),
        ("FIRESTORE_PROJECT", &project),
        ("FIRESTORE_EMULATOR_HOST", &host),
    ])
    .await;
}

#[tokio::test]
async fn fifty_identical_misses_make_one_model_call() {
    let mut model = GatedModel::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let path = path.to_string_lossy();
    let mut all = vars(&model.base_url, &[("SQLITE_PATH", &path)]);
    all.retain(|(k, _)| *k != "CACHE");
    all.push(("CACHE", "memory"));
    let app = TestApp::start(FUNCTION, &all).await;
    let server = TestServer::start(router(&app)).await;
    let asked: Vec<_> = (0..50)
        .map(|_| {
            let url = server.url.clone();
            tokio::spawn(async move { chat(&url, ALICE, json!({"message": "the same question"})).await })
        })
        .collect();
    model.called().await;
    // Every request is in before the one call answers: each either waits
    // on it or has not yet looked up, and then finds its answer kept.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    model.release();
    let mut cached = 0;
    for answer in asked {
        // Without single flight the other 49 would each wait on a model
        // call of their own, never released.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(20), answer)
            .await
            .expect("every request answered by the one model call")
            .expect("a request");
        assert_eq!(answer["response"], GatedModel::ANSWER, "{answer}");
        cached += usize::from(answer["cached"] == true);
    }
    assert_eq!(cached, 49, "one call answered, the others were free");
    let seen = metrics(&server.url).await;
    let called = seen
        .lines()
        .find(|l| l.starts_with("response_cache_lookups_total") && l.contains(r#"tier="model""#))
        .unwrap_or_else(|| panic!("the model calls are counted: {seen}"));
    assert!(called.ends_with(" 1"), "{called}");
    // Nothing else reached the model: a second call would wait for a release forever.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), model.called())
            .await
            .is_err(),
        "one model call"
    );
}

/// A damaged entry, then a cache tier that fails (its table gone): each
/// turn still gets the model's answer, and the fault is counted.
#[tokio::test]
async fn a_damaged_or_failing_cache_still_answers_from_the_model() {
    let double = Scripted::start(OPENAI_PATH, vec![(200, answer())]).await;
    let base = format!("{}/v1", double.server.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let path_text = path.to_string_lossy().to_string();
    let all = vars(&base, &[("SQLITE_PATH", &path_text)]);
    let question = json!({"message": "What is 2 + 2?"});
    {
        let app = TestApp::start(FUNCTION, &all).await;
        let server = TestServer::start(router(&app)).await;
        chat(&server.url, ALICE, question.clone()).await;
    }
    let db = rusqlite::Connection::open(&path).expect("open the file");
    let damaged = db
        .execute("UPDATE response_cache SET value = X'7b226b6579223a31'", [])
        .expect("damage the entry");
    assert_eq!(damaged, 1, "one entry was kept");

    // A new instance (nothing in memory) reads the damaged entry: a miss.
    let app = TestApp::start(FUNCTION, &all).await;
    let server = TestServer::start(router(&app)).await;
    let answered = chat(&server.url, ALICE, question.clone()).await;
    assert_eq!(
        (answered["cached"].as_bool(), double.requests().len()),
        (Some(false), 2),
        "{answered}"
    );
    let seen = metrics(&server.url).await;
    assert!(
        seen.contains(r#"tier="store",result="corrupt"} 1"#),
        "the damaged entry is counted: {seen}"
    );

    // The tier fails outright: reads and writes error, turns go on.
    db.execute("DROP TABLE response_cache", []).expect("drop the table");
    let other = chat(&server.url, ALICE, json!({"message": "And 3 + 3?"})).await;
    assert_eq!(
        (other["cached"].as_bool(), double.requests().len()),
        (Some(false), 3),
        "{other}"
    );
    let seen = metrics(&server.url).await;
    for fault in [r#"result="read"} 1"#, r#"result="write"} 1"#] {
        assert!(seen.contains(fault), "{fault} is counted: {seen}");
    }
    // The answer kept in memory before the table went still serves.
    let again = chat(&server.url, ALICE, json!({"message": "And 3 + 3?"})).await;
    assert_eq!(
        (again["cached"].as_bool(), double.requests().len()),
        (Some(true), 3),
        "{again}"
    );
}

/// A streamed miss is kept once it completes; with `CACHE=off` nothing is.
#[tokio::test]
async fn a_streamed_answer_is_kept_and_off_keeps_nothing() {
    let double = Scripted::start(OPENAI_PATH, vec![(200, answer())]).await;
    let base = format!("{}/v1", double.server.url);
    let off = TestApp::start(
        FUNCTION,
        &[
            ("API_KEYS", KEYS),
            ("OPENAI_BASE_URL", &base),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "k"),
        ],
    )
    .await;
    let off = TestServer::start(router(&off)).await;
    for _ in 0..2 {
        let answer = chat(&off.url, ALICE, json!({"message": "What is 2 + 2?"})).await;
        assert_eq!(answer["cached"], false, "{answer}");
    }
    assert_eq!(double.requests().len(), 2, "CACHE is off by default");
    let stats = get(&off.url, ALICE, "/api/v1/cache/stats").await;
    assert_eq!((&stats["mode"], &stats["hits"]), (&json!("off"), &json!(0)), "{stats}");

    let app = TestApp::start(FUNCTION, &[("API_KEYS", KEYS), ("CACHE", "memory")]).await;
    let server = TestServer::start(router(&app)).await;
    let streamed = chat(&server.url, ALICE, json!({"message": "hola", "stream": true})).await;
    let events = sse_events(streamed["stream"].as_str().expect("an event stream"));
    let done = &events.last().expect("events").1;
    assert_eq!(done["cached"], false, "{events:?}");
    let repeat = chat(&server.url, ALICE, json!({"message": "hola"})).await;
    assert_eq!(repeat["cached"], true, "{repeat}");
    assert_eq!(repeat["response"], done["response"]);
}
