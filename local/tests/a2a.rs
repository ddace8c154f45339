//! A2A on the agent function over real HTTP on loopback: the card, both
//! revisions of the JSON-RPC endpoint driven by the official Python SDK
//! (`a2a-sdk` from PyPI, in the virtualenv `./scripts/test.sh` makes,
//! through `PYTHON`), the protocol's faults with raw JSON-RPC, one task per
//! message id, and two principals who cannot see each other's tasks.

mod common;

use agent_core::testing::{TestApp, TestServer};
use common::{OnGoogleCloud, Peer, peers, python, run_agent, step};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ALICE: &str = "a2a-alice-key-0123456789abcdef";
const BOB: &str = "a2a-bob-key-0123456789abcdef01";

async fn agent(vars: &[(&str, &str)]) -> (TestApp, TestServer) {
    let keys = format!("alice:{ALICE},bob:{BOB}");
    let mut all = vec![("API_KEYS", keys.as_str())];
    all.extend_from_slice(vars);
    let app = TestApp::start("agent_function", &all).await;
    let server = TestServer::start(agent_function::router(&app).await.expect("router")).await;
    (app, server)
}

/// A JSON-RPC POST to `/a2a` in `version` (`None`: no header, 0.3).
async fn rpc(url: &str, key: &str, version: Option<&str>, body: String) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/a2a"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(version) = version {
        request = request.header("a2a-version", version);
    }
    let response = request.send().await.expect("POST /a2a");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.as_u16() < 500, "{status}: {text}");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}")),
    )
}

/// The card, fetched with Alice's key and `headers`.
async fn fetch_card(url: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = reqwest::Client::new()
        .get(format!("{url}/.well-known/agent-card.json"))
        .header("x-api-key", ALICE);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("card").json().await.expect("json")
}

fn call(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}).to_string()
}

fn send_v1(message_id: &str, text: &str, context: Option<&str>) -> String {
    let mut message = json!({"messageId": message_id, "role": "ROLE_USER", "parts": [{"text": text}]});
    if let Some(context) = context {
        message["contextId"] = json!(context);
    }
    call("SendMessage", json!({"message": message}))
}

fn code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {answer}"))
}

#[tokio::test]
async fn the_card_names_the_endpoint_skills_and_credentials() {
    let (_app, server) = agent(&[]).await;
    let card = fetch_card(&server.url, &[("host", "agent.example.com")]).await;
    assert_eq!(
        card["url"], "http://agent.example.com/a2a",
        "0.3's field, from the Host: {card}"
    );
    assert_eq!(card["supportedInterfaces"][0]["url"], "http://agent.example.com/a2a");
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert_eq!(card["supportedInterfaces"][1]["protocolVersion"], "0.3");
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["securitySchemes"]["apiKey"]["in"], "header");
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .expect("skills")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        skills.contains(&"calculate") && skills.contains(&"search_web"),
        "{skills:?}"
    );

    let v1 = fetch_card(&server.url, &[("a2a-version", "1.0")]).await;
    assert!(v1.get("url").is_none(), "1.0's card alone: {v1}");
    assert_eq!(
        v1["securitySchemes"]["apiKey"]["apiKeySecurityScheme"]["name"],
        "X-API-Key"
    );

    // PUBLIC_URL wins; behind Cloud Run's proxy the scheme is its.
    let (_app, public) = agent(&[("PUBLIC_URL", "https://agent-abc-uc.a.run.app/")]).await;
    let card = fetch_card(&public.url, &[]).await;
    assert_eq!(card["url"], "https://agent-abc-uc.a.run.app/a2a");
    let (_app, proxied) = agent(&[("TRUST_PROXY", "true")]).await;
    let card = fetch_card(
        &proxied.url,
        &[("host", "agent-xyz.a.run.app"), ("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(card["url"], "https://agent-xyz.a.run.app/a2a");
}

#[tokio::test]
async fn a_message_is_a_task_of_its_sender_and_sent_twice_is_one_task() {
    let (_app, server) = agent(&[]).await;
    let url = &server.url;
    let (_, first) = rpc(
        url,
        ALICE,
        Some("1.0"),
        send_v1("m-1", "Calcula 15 * 23", Some("ctx-alice")),
    )
    .await;
    let task = &first["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{first}");
    assert_eq!(task["contextId"], "ctx-alice");
    let answer = task["artifacts"][0]["parts"][0]["text"].as_str().expect("the answer");
    assert!(answer.contains("345"), "{answer}");
    let timestamp = task["status"]["timestamp"].as_str().expect("a timestamp");
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "RFC 3339 in UTC: {timestamp}"
    );

    // The same message again (a retry): the same task, not a second run.
    let (_, again) = rpc(
        url,
        ALICE,
        Some("1.0"),
        send_v1("m-1", "Calcula 15 * 23", Some("ctx-alice")),
    )
    .await;
    assert_eq!(again["result"]["task"]["id"], task["id"]);
    let (_, listed) = rpc(url, ALICE, Some("1.0"), call("ListTasks", json!({}))).await;
    assert_eq!(
        listed["result"]["tasks"].as_array().expect("tasks").len(),
        1,
        "{listed}"
    );

    // It is the stored task the REST routes show, in the contextId's session.
    let view: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/tasks/{}", task["id"].as_str().expect("id")))
        .header("x-api-key", ALICE)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (view["status"].as_str(), view["session_id"].as_str()),
        (Some("completed"), Some("ctx-alice"))
    );

    // 0.3 reads the same task in its own words.
    let id = task["id"].as_str().expect("id");
    let (_, old) = rpc(url, ALICE, None, call("tasks/get", json!({"id": id}))).await;
    assert_eq!(old["result"]["kind"], "task", "{old}");
    assert_eq!(old["result"]["status"]["state"], "completed");
    assert_eq!(old["result"]["artifacts"][0]["parts"][0]["kind"], "text");

    // Another principal: no such task, no listing, no cancel, no context.
    let (_, hidden) = rpc(url, BOB, Some("1.0"), call("GetTask", json!({"id": id}))).await;
    assert_eq!(code(&hidden), -32001, "{hidden}");
    let (_, cancel) = rpc(url, BOB, Some("1.0"), call("CancelTask", json!({"id": id}))).await;
    assert_eq!(code(&cancel), -32001, "{cancel}");
    let (_, theirs) = rpc(
        url,
        BOB,
        Some("1.0"),
        call("ListTasks", json!({"contextId": "ctx-alice"})),
    )
    .await;
    assert_eq!(theirs["result"]["tasks"], json!([]), "{theirs}");
    let (_, subscribe) = rpc(url, BOB, Some("1.0"), call("SubscribeToTask", json!({"id": id}))).await;
    assert_eq!(code(&subscribe), -32001, "{subscribe}");
    // Bob's message with Alice's id makes Bob's own task.
    let (_, bobs) = rpc(
        url,
        BOB,
        Some("1.0"),
        send_v1("m-1", "Calcula 2 + 2", Some("ctx-alice")),
    )
    .await;
    assert_ne!(bobs["result"]["task"]["id"], task["id"]);
    let (_, alices) = rpc(url, ALICE, Some("1.0"), call("ListTasks", json!({}))).await;
    assert_eq!(alices["result"]["tasks"].as_array().expect("tasks").len(), 1);
}

#[tokio::test]
async fn bad_requests_get_the_protocols_error_objects() {
    let (_app, server) = agent(&[("MAX_BODY_BYTES", "4096")]).await;
    let url = &server.url;
    let cases: Vec<(Option<&str>, String, i64)> = vec![
        (Some("1.0"), "{nope".to_string(), -32700),
        (Some("1.0"), "[1, 2]".to_string(), -32600),
        (Some("1.0"), json!({"jsonrpc": "2.0", "id": 1}).to_string(), -32600),
        (Some("1.0"), call("FlyToTheMoon", json!({})), -32601),
        (Some("1.0"), call("message/send", json!({})), -32009),
        (None, call("SendMessage", json!({})), -32009),
        (Some("2.0"), call("SendMessage", json!({})), -32009),
        (Some("1.0"), call("SendMessage", json!({"message": "hi"})), -32602),
        (
            Some("1.0"),
            call(
                "SendMessage",
                json!({"message": {"messageId": "x", "role": "ROLE_USER", "parts": []}}),
            ),
            -32602,
        ),
        (
            None,
            call(
                "message/send",
                json!({"message": {"kind": "message", "messageId": "x", "role": "user",
                "parts": [{"kind": "file", "file": {"uri": "https://example.com/a.png"}}]}}),
            ),
            -32602,
        ),
        (Some("1.0"), call("GetTask", json!({})), -32602),
        (Some("1.0"), call("GetTask", json!({"id": "no-such-task"})), -32001),
        (Some("1.0"), call("GetTask", json!({"id": "../../etc"})), -32001),
        (Some("1.0"), call("CancelTask", json!({"id": "no-such-task"})), -32001),
        (Some("1.0"), call("ListTasks", json!({"pageSize": 0})), -32602),
        (Some("1.0"), call("ListTasks", json!({"pageToken": "forged"})), -32602),
        (Some("1.0"), call("CreateTaskPushNotificationConfig", json!({})), -32003),
        (None, call("agent/getAuthenticatedExtendedCard", json!({})), -32004),
    ];
    for (version, body, expected) in cases {
        let (status, answer) = rpc(url, ALICE, version, body.clone()).await;
        // No JSON-RPC request at all is a 400; a request refused, a 200.
        let http = if matches!(expected, -32700 | -32600) { 400 } else { 200 };
        assert_eq!(status, http, "{body}: {answer}");
        assert_eq!(code(&answer), expected, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let big = send_v1("big", &"x".repeat(5000), None);
    let (status, too_big) = rpc(url, ALICE, Some("1.0"), big).await;
    assert_eq!((status.as_u16(), code(&too_big)), (413, -32600), "{too_big}");

    // Without a key: the same 401 as every route.
    let response = reqwest::Client::new()
        .post(format!("{url}/a2a"))
        .body(call("GetTask", json!({"id": "x"})))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
}

/// A task followed as it runs: the stream's events in both revisions,
/// and a cancel of a finished task refused.
#[tokio::test]
async fn a_streamed_message_follows_its_task_to_the_end() {
    let (_app, server) = agent(&[]).await;
    for (version, method) in [(Some("1.0"), "SendStreamingMessage"), (None, "message/stream")] {
        let message = match version {
            Some(_) => {
                json!({"messageId": format!("s-{method}"), "role": "ROLE_USER", "parts": [{"text": "Calcula 15 * 23"}]})
            }
            None => json!({"kind": "message", "messageId": format!("s-{method}"), "role": "user",
                "parts": [{"kind": "text", "text": "Calcula 15 * 23"}]}),
        };
        let mut request = reqwest::Client::new()
            .post(format!("{}/a2a", server.url))
            .header("x-api-key", ALICE)
            .header("accept", "text/event-stream")
            .body(call(method, json!({"message": message})));
        if let Some(version) = version {
            request = request.header("a2a-version", version);
        }
        let response = request.send().await.expect("stream");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("text")
                .starts_with("text/event-stream")
        );
        let text = response.text().await.expect("the stream ends");
        let events: Vec<Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| serde_json::from_str(data.trim()).expect("JSON"))
            .collect();
        assert!(
            events.iter().all(|e| e["id"] == "r1" && e["jsonrpc"] == "2.0"),
            "{text}"
        );
        let last = &events.last().expect("events")["result"];
        match version {
            Some(_) => {
                assert!(events[0]["result"]["task"].is_object(), "{text}");
                assert_eq!(
                    last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
                    "{text}"
                );
                assert!(events.iter().any(|e| {
                    e["result"]["artifactUpdate"]["artifact"]["parts"][0]["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("345"))
                }));
            }
            None => {
                assert_eq!(events[0]["result"]["kind"], "task", "{text}");
                assert_eq!(
                    (last["kind"].as_str(), last["final"].as_bool()),
                    (Some("status-update"), Some(true))
                );
                assert_eq!(last["status"]["state"], "completed");
            }
        }
    }
}

/// The official A2A SDK's clients, 1.0 and 0.3, against the agent: card,
/// send, stream, get, list, cancel of a finished task, an unknown task.
#[tokio::test]
#[ignore = "needs the A2A SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn the_python_sdk_talks_to_the_agent_in_both_revisions() {
    let python = python();
    let (_app, server) = agent(&[]).await;
    for version in ["1.0", "0.3"] {
        let output = tokio::process::Command::new(&python)
            .arg(peers().join("a2a_client.py"))
            .args([server.url.as_str(), version, ALICE])
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{version}: {stdout}\n{stderr}");
        let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(seen["state"], "TASK_STATE_COMPLETED", "{seen}");
        assert!(seen["answer"].as_str().expect("answer").contains("345"), "{seen}");
        assert!(
            seen["stream_answer"].as_str().expect("answer").contains("345"),
            "{seen}"
        );
        assert_eq!(seen["got_state"], "TASK_STATE_COMPLETED");
        assert_eq!(seen["cancel_error"]["code"], -32002, "{seen}");
        assert_eq!(seen["unknown_error"]["code"], -32001, "{seen}");
        if version == "1.0" {
            assert!(seen["listed"].as_u64().is_some_and(|n| n >= 2), "{seen}");
        }
    }
}

/// `tests/peers/a2a_server.py`, an agent written with the SDK, with `env`
/// (`A2A_VERSIONS`, `A2A_STREAMING`), behind a bearer key when given.
async fn peer_agent(env: &[(&str, &str)], bearer: Option<&str>) -> Peer {
    let args: Vec<&str> = bearer.into_iter().collect();
    Peer::start("a2a_server.py", &args, env).await
}

/// The agent hands work to agents written with the SDK: by the stream in
/// 1.0, by a waiting send in 0.3 (a card without streaming), behind a
/// bearer key; one that is down is an error result, not a failed run.
#[tokio::test]
#[ignore = "needs the A2A SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn the_agent_asks_python_a2a_agents() {
    let streaming = peer_agent(&[], None).await;
    let old = peer_agent(
        &[("A2A_VERSIONS", "0.3"), ("A2A_STREAMING", "false")],
        Some("agent-secret"),
    )
    .await;
    let gone = format!("http://127.0.0.1:{}", agent_core::testing::free_port());
    let agents = format!("shout={},old={},gone={gone}", streaming.base, old.base);
    let (_app, server) = agent(&[
        ("A2A_AGENTS", &agents),
        ("A2A_HEADER_OLD", "Authorization: Bearer agent-secret"),
        ("A2A_TIMEOUT_SECONDS", "20"),
    ])
    .await;

    let answered = run_agent(&server.url, Some(ALICE), "use ask_shout with hello from rust").await;
    let asked = step(&answered, "ask_shout");
    assert_eq!(asked["result"]["answer"], "HELLO FROM RUST!", "{answered}");
    assert_eq!(asked["result"]["state"], "TASK_STATE_COMPLETED");
    assert!(
        answered["response"]
            .as_str()
            .expect("response")
            .contains("HELLO FROM RUST!")
    );

    let answered = run_agent(&server.url, Some(ALICE), "use ask_old with quietly").await;
    let asked = step(&answered, "ask_old");
    assert_eq!(asked["result"]["answer"], "QUIETLY!", "{answered}");
    assert_eq!(asked["result"]["state"], "completed", "0.3's state: {answered}");
    let seen = old.calls().await;
    let authorizations = seen["authorizations"].as_array().expect("an array");
    assert!(
        !authorizations.is_empty() && authorizations.iter().all(|a| a == "Bearer agent-secret"),
        "{seen}"
    );
    assert_eq!(streaming.calls().await["messages"], 1);

    let answered = run_agent(&server.url, Some(ALICE), "use ask_gone with anyone").await;
    let lost = step(&answered, "ask_gone");
    assert!(lost["error"].as_str().expect("an error").contains("gone"), "{lost}");

    // Each agent is a tool described by its card (our own card lists the
    // tools as skills, as the model is offered them).
    let card = fetch_card(&server.url, &[]).await;
    let skills = card["skills"].as_array().expect("skills");
    let shout = skills.iter().find(|s| s["id"] == "ask_shout").expect("ask_shout");
    assert!(
        shout["description"].as_str().expect("text").contains("capitals"),
        "the peer's card's description: {shout}"
    );
    assert!(
        skills.iter().any(|s| s["id"] == "ask_gone"),
        "offered while its card is unread"
    );
}

/// One of ours asks another of ours: the agent function as the remote
/// agent of an agent function, over 1.0 and its stream.
#[tokio::test]
async fn an_agent_asks_another_of_ours() {
    let (_remote_app, remote) = agent(&[]).await;
    let agents = format!("calc={}", remote.url);
    let key = format!("X-API-Key: {ALICE}");
    let (_app, server) = agent(&[("A2A_AGENTS", &agents), ("A2A_HEADER_CALC", &key)]).await;
    let answered = run_agent(&server.url, Some(ALICE), "use ask_calc with Calcula 15 * 23").await;
    let asked = step(&answered, "ask_calc");
    assert_eq!(asked["result"]["state"], "TASK_STATE_COMPLETED", "{answered}");
    assert!(
        asked["result"]["answer"].as_str().expect("answer").contains("345"),
        "{answered}"
    );
    // The remote task is Alice's there, listed with her key.
    let (_, listed) = rpc(&remote.url, ALICE, Some("1.0"), call("ListTasks", json!({}))).await;
    assert_eq!(
        listed["result"]["tasks"].as_array().expect("tasks").len(),
        1,
        "{listed}"
    );
}

/// On Cloud Run every request to a remote agent carries a Google ID token
/// whose audience is the agent's URL: `local` as a process, as it would
/// run there.
#[tokio::test]
#[ignore = "needs the A2A SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn calls_to_remote_agents_carry_an_id_token_for_the_agent() {
    let peer = peer_agent(&[], None).await;
    let agents = format!("shout={}", peer.base);
    let cloud = OnGoogleCloud::start(&[("A2A_AGENTS", &agents)]).await;
    let answered = run_agent(&cloud.local.url, None, "use ask_shout with signed").await;
    assert_eq!(
        step(&answered, "ask_shout")["result"]["answer"],
        "SIGNED!",
        "{answered}"
    );
    peer.assert_authorized(&format!("Bearer token-for:{}", peer.base)).await;
}
