//! MCP over real HTTP on loopback: `POST /mcp` on the tool functions and
//! the agent, and the agent as a client of MCP servers (`MCP_SERVERS`).
//!
//! The protocol's faults are checked with raw JSON-RPC here; the official
//! Python SDK (`mcp` from PyPI, in the virtualenv `./scripts/test.sh`
//! makes, through `PYTHON`) is the client of our functions and, as a
//! server written with it (`tests/peers/mcp_server.py`), the agent's
//! peer, driven through the offline model.

mod common;

use std::time::Duration;

use agent_core::testing::{TestApp, TestServer, free_port};
use common::{OnGoogleCloud, Peer, peers, python, run_agent, step};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "mcp-test-key-0123456789abcdef";

/// A JSON-RPC POST to `/mcp` as an MCP client sends it.
async fn rpc(url: &str, headers: &[(&str, &str)], body: String) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /mcp");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.as_u16() < 500, "{status}: {text}");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
    };
    (status, value)
}

fn call(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

const V: (&str, &str) = ("mcp-protocol-version", "2025-06-18");

#[tokio::test]
async fn the_calculator_serves_its_tool_over_mcp_without_a_session() {
    let app = TestApp::start("calculator_function", &[]).await;
    let server = TestServer::start(calculator_function::router(&app)).await;

    let initialize = call(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", server.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("mcp-session-id").is_none(),
        "stateless: no session"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("application/json"),
        "a plain JSON answer"
    );
    let answer: Value = response.json().await.expect("json");
    assert_eq!(
        answer["result"]["serverInfo"]["name"], "calculator_function",
        "{answer}"
    );
    assert!(answer["result"]["capabilities"]["tools"].is_object(), "{answer}");

    // No handshake before: any instance can answer any request.
    let (status, listed) = rpc(&server.url, &[V], call(2, "tools/list", json!({}))).await;
    assert_eq!(status, 200);
    let tools = listed["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 1, "{listed}");
    assert_eq!(tools[0]["name"], "calculate");
    assert_eq!(tools[0]["inputSchema"]["required"], json!(["expression"]));

    let (status, product) = rpc(
        &server.url,
        &[V],
        call(
            3,
            "tools/call",
            json!({"name": "calculate", "arguments": {"expression": "15 * 23"}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(product["result"]["isError"], false, "{product}");
    assert_eq!(product["result"]["structuredContent"]["result"], 345);
    assert!(
        product["result"]["content"][0]["text"]
            .as_str()
            .expect("a string")
            .contains("345")
    );

    // A tool's failure is a result the caller reads, not a protocol error.
    let (status, failed) = rpc(
        &server.url,
        &[V],
        call(
            4,
            "tools/call",
            json!({"name": "calculate", "arguments": {"expression": "1 / 0"}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    assert!(
        failed["result"]["content"][0]["text"]
            .as_str()
            .expect("a string")
            .contains("division by zero")
    );

    // A client that accepts only JSON is answered all the same.
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", server.url))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header(V.0, V.1)
        .body(call(5, "tools/list", json!({})))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
}

/// Every fault gets the protocol's error object (or an empty 202 for a
/// notification), never a 5xx or the REST envelope.
#[tokio::test]
async fn protocol_faults_are_json_rpc_errors() {
    let app = TestApp::start("calculator_function", &[("MAX_BODY_BYTES", "2048")]).await;
    let server = TestServer::start(calculator_function::router(&app)).await;
    let url = &server.url;
    let error_code = |value: &Value| value["error"]["code"].as_i64().unwrap_or_else(|| panic!("{value}"));

    let (status, parse) = rpc(url, &[V], "{not json".to_string()).await;
    assert_eq!((status.as_u16(), error_code(&parse)), (400, -32700), "{parse}");
    assert_eq!(parse["jsonrpc"], "2.0");

    let (status, unknown) = rpc(url, &[V], call(1, "tools/destroy", json!({}))).await;
    assert!(status.is_client_error() || status == 200, "{status}");
    assert_eq!(error_code(&unknown), -32601, "{unknown}");

    let (_, no_tool) = rpc(url, &[V], call(2, "tools/call", json!({"name": "rm", "arguments": {}}))).await;
    assert_eq!(error_code(&no_tool), -32602, "{no_tool}");
    assert!(
        no_tool["error"]["message"]
            .as_str()
            .expect("a string")
            .contains("calculate"),
        "{no_tool}"
    );

    let (status, wrong) = rpc(url, &[V], call(3, "tools/call", json!({"arguments": 5}))).await;
    assert!(status.is_client_error() || status == 200, "{status}");
    assert!(matches!(error_code(&wrong), -32602 | -32600), "{wrong}");

    let (status, not_rpc) = rpc(url, &[V], json!({"hello": "world"}).to_string()).await;
    assert!(status.is_client_error(), "{status}");
    assert!(matches!(error_code(&not_rpc), -32600 | -32700), "{not_rpc}");

    let big = call(
        4,
        "tools/call",
        json!({"name": "calculate", "arguments": {"expression": "1+".repeat(2000) + "1"}}),
    );
    let (status, too_big) = rpc(url, &[V], big).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&too_big), -32600, "{too_big}");

    let (status, notified) = rpc(
        url,
        &[V],
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    )
    .await;
    assert_eq!((status.as_u16(), notified), (202, Value::Null));

    let response = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .header("content-type", "text/plain")
        .body(call(5, "tools/list", json!({})))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.expect("a JSON-RPC error");
    assert_eq!(error_code(&body), -32600, "{body}");

    // An open server on loopback answers only loopback names (DNS rebinding).
    let (status, rebound) = rpc(
        url,
        &[("host", "attacker.example"), V],
        call(6, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&rebound), -32600, "{rebound}");

    let response = reqwest::get(format!("{url}/mcp")).await.expect("GET");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn mcp_takes_the_same_keys_and_rate_limits_as_the_json_route() {
    let keys = format!("client:{KEY}");
    let app = TestApp::start(
        "calculator_function",
        &[("API_KEYS", &keys), ("RATE_LIMIT_TOOLS", "3/60s")],
    )
    .await;
    let server = TestServer::start(calculator_function::router(&app)).await;
    let list = || call(1, "tools/list", json!({}));

    let (status, refused) = rpc(&server.url, &[V], list()).await;
    assert_eq!(status, 401, "{refused}");

    // With credentials required, any Host is answered: a page in a
    // browser has no key to rebind with.
    let with_key = [("x-api-key", KEY), ("host", "calc.example.run.app"), V];
    let (status, _) = rpc(&server.url, &with_key, list()).await;
    assert_eq!(status, 200);
    // One budget with the JSON route.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/tools/calculate", server.url))
        .header("x-api-key", KEY)
        .json(&json!({"expression": "1+1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let (status, _) = rpc(&server.url, &with_key, list()).await;
    assert_eq!(status, 200);
    let (status, _) = rpc(&server.url, &with_key, list()).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn the_document_describes_mcp() {
    let app = TestApp::start("search_function", &[]).await;
    let server = TestServer::start(search_function::router(&app).expect("router")).await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", server.url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let operation = &doc["paths"]["/mcp"]["post"];
    assert_eq!(operation["operationId"], "mcp", "{operation}");
    for status in ["200", "202", "400", "413", "415"] {
        assert!(operation["responses"][status].is_object(), "{status} in {operation}");
    }
}

/// The official Python SDK, both ways of connecting, against each function
/// that serves `/mcp`.
#[tokio::test]
#[ignore = "needs the MCP SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn the_python_sdk_lists_and_calls_our_tools() {
    let python = python();
    let keys = format!("client:{KEY}");
    let vars = [("API_KEYS", keys.as_str())];
    let calculator = TestApp::start("calculator_function", &vars).await;
    let search = TestApp::start("search_function", &vars).await;
    let agent = TestApp::start("agent_function", &vars).await;
    let servers = [
        (
            "calculator",
            TestServer::start(calculator_function::router(&calculator)).await,
        ),
        (
            "search",
            TestServer::start(search_function::router(&search).expect("router")).await,
        ),
        (
            "agent",
            TestServer::start(agent_function::router(&agent).await.expect("router")).await,
        ),
    ];
    for (kind, server) in &servers {
        for mode in ["legacy", "auto"] {
            let output = tokio::process::Command::new(&python)
                .arg(peers().join("mcp_client.py"))
                .args([&format!("{}/mcp", server.url), mode, kind, KEY])
                .output()
                .await
                .expect("python runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{kind} {mode}: {stdout}\n{stderr}");
            let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
            if *kind != "search" {
                assert_eq!(seen["product"], 345, "{seen}");
                assert!(
                    seen["division_by_zero"]
                        .as_str()
                        .expect("a string")
                        .contains("division by zero")
                );
            }
            assert!(
                seen["unknown_tool"]
                    .as_str()
                    .expect("a string")
                    .contains("no_such_tool"),
                "{seen}"
            );
        }
    }
}

/// `tests/peers/mcp_server.py`, the SDK's server, stateful or stateless,
/// behind a bearer key when given; its endpoint is `/mcp`.
async fn mcp_server(mode: &str, key: Option<&str>) -> (Peer, String) {
    let mut args = vec![mode];
    args.extend(key);
    let peer = Peer::start("mcp_server.py", &args, &[]).await;
    let url = format!("{}/mcp", peer.base);
    (peer, url)
}

/// The agent lists a Python MCP server's tools and the model calls them;
/// a tool's failure and a server that went away are results it reads.
#[tokio::test]
#[ignore = "needs the MCP SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn the_agent_calls_the_tools_of_python_mcp_servers() {
    let (stateful, stateful_url) = mcp_server("stateful", None).await;
    let (stateless, stateless_url) = mcp_server("stateless", Some("peer-secret")).await;
    let servers = format!("peer={stateful_url},keyed={stateless_url}");
    let app = TestApp::start(
        "agent_function",
        &[
            ("MCP_SERVERS", &servers),
            ("MCP_HEADER_KEYED", "Authorization: Bearer peer-secret"),
            ("TOOL_TIMEOUT_SECONDS", "5"),
        ],
    )
    .await;
    let server = TestServer::start(agent_function::router(&app).await.expect("router")).await;

    let run = run_agent(&server.url, None, "Use peer__shout with hello from rust").await;
    // The SDK's server wraps a text result as structured content.
    assert_eq!(
        step(&run, "peer__shout")["result"],
        json!({"result": "HELLO FROM RUST!"}),
        "{run}"
    );
    assert!(
        run["response"].as_str().expect("a string").contains("HELLO FROM RUST!"),
        "{run}"
    );
    assert_eq!(stateful.calls().await["shout"], 1);

    let run = run_agent(&server.url, None, "use keyed__shout with quiet please").await;
    assert_eq!(step(&run, "keyed__shout")["result"]["result"], "QUIET PLEASE!", "{run}");
    stateless.assert_authorized("Bearer peer-secret").await;

    let run = run_agent(&server.url, None, "use peer__fail with testing").await;
    let failed = step(&run, "peer__fail");
    assert!(
        failed["error"]
            .as_str()
            .expect("a string")
            .contains("failed on purpose: testing"),
        "{failed}"
    );

    // The built-in tools are still there.
    let run = run_agent(&server.url, None, "Calcula 15 * 23").await;
    assert_eq!(step(&run, "calculate")["result"]["result"], 345);

    // A server that went away: an error result, and the run still answers.
    drop(stateful);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = run_agent(&server.url, None, "Use peer__shout with anyone there").await;
    let lost = step(&run, "peer__shout");
    assert!(
        lost["error"].as_str().expect("a string").contains("MCP server peer"),
        "{lost}"
    );
}

/// A server that is down at start-up is a warning, not a failed start.
#[tokio::test]
async fn a_server_that_is_down_does_not_stop_the_agent() {
    let down = format!("gone=http://127.0.0.1:{}/mcp", free_port());
    let app = TestApp::start("agent_function", &[("MCP_SERVERS", &down)]).await;
    let server = TestServer::start(agent_function::router(&app).await.expect("router")).await;
    let run = run_agent(&server.url, None, "Calcula 15 * 23").await;
    assert_eq!(step(&run, "calculate")["result"]["result"], 345);
}

/// On Cloud Run every request to an MCP server carries a Google ID token
/// whose audience is the server's URL (its origin), from the metadata
/// server: `local` as a process, as it would run there.
#[tokio::test]
#[ignore = "needs the MCP SDK's virtualenv (PYTHON): run ./scripts/test.sh"]
async fn calls_to_mcp_servers_carry_an_id_token_for_the_server() {
    let (peer, url) = mcp_server("stateful", None).await;
    let servers = format!("peer={url}");
    let cloud = OnGoogleCloud::start(&[("MCP_SERVERS", &servers)]).await;
    let run = run_agent(&cloud.local.url, None, "use peer__shout with signed").await;
    assert_eq!(step(&run, "peer__shout")["result"]["result"], "SIGNED!", "{run}");
    peer.assert_authorized(&format!("Bearer token-for:{}", peer.base)).await;
}
