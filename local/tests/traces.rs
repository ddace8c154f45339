//! The trace goes on to MCP servers and A2A agents: `local` as a process
//! exporting to a local OTLP receiver, with an MCP server and an A2A agent
//! written with the official Python SDKs as its peers. A run that calls a
//! peer's tool sends the peer a `traceparent` in the run's trace, whose
//! parent is the tool call's span.

mod common;

use agent_core::testing::{ExportedSpan, OtlpReceiver, Process};
use common::Peer;
use serde_json::{Value, json};

/// Runs `task` on the agent under the client span `parent` of `trace`.
async fn run_in_trace(url: &str, trace: &str, parent: &str, task: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/agent"))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .json(&json!({"task": task}))
        .send()
        .await
        .expect("the agent answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// The `traceparent` a peer received in `trace`, and the span it names.
async fn received(peer: &Peer, trace: &str) -> String {
    let calls = peer.calls().await;
    let prefix = format!("00-{trace}-");
    let parents: Vec<String> = calls["traceparents"]
        .as_array()
        .expect("traceparents")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|t| t.strip_prefix(&prefix))
        .map(|rest| rest.split('-').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        !parents.is_empty(),
        "no request of trace {trace} reached the peer: {calls}"
    );
    assert!(parents.iter().all(|p| p == &parents[0]), "{parents:?}");
    parents[0].clone()
}

fn tool_span<'a>(spans: &'a [ExportedSpan], name: &str) -> &'a ExportedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("the span {name}: {spans:#?}"))
}

#[tokio::test]
#[ignore = "needs the SDKs' virtualenv (PYTHON): run ./scripts/test.sh"]
async fn mcp_servers_and_a2a_agents_receive_the_runs_trace() {
    let receiver = OtlpReceiver::start().await;
    let mcp = Peer::start("mcp_server.py", &["stateful"], &[]).await;
    let a2a = Peer::start("a2a_server.py", &[], &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("agent.db");
    let servers = format!("peer={}/mcp", mcp.base);
    let agents = format!("shout={}", a2a.base);
    let local = Process::start(
        env!("CARGO_BIN_EXE_local"),
        &[
            ("SQLITE_PATH", db.to_str().expect("utf-8 path")),
            ("MCP_SERVERS", &servers),
            ("A2A_AGENTS", &agents),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;

    let mcp_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    let run = run_in_trace(&local.url, mcp_trace, "051581bf3cb55c13", "use peer__shout with traced").await;
    assert_eq!(
        common::step(&run, "peer__shout")["result"]["result"],
        "TRACED!",
        "{run}"
    );
    let parent = received(&mcp, mcp_trace).await;
    let spans = receiver
        .wait_for(mcp_trace, |s| s.iter().any(|s| s.name == "execute_tool peer__shout"))
        .await;
    assert_eq!(
        parent,
        tool_span(&spans, "execute_tool peer__shout").span_id,
        "the MCP server's request is a child of the tool call"
    );

    let a2a_trace = "4d1e00c0db4ce6e2c5a9d3c4c0b0a1f3";
    let run = run_in_trace(&local.url, a2a_trace, "1e7d1a1c0c0b0a09", "use ask_shout with traced").await;
    assert_eq!(common::step(&run, "ask_shout")["result"]["answer"], "TRACED!", "{run}");
    let parent = received(&a2a, a2a_trace).await;
    let spans = receiver
        .wait_for(a2a_trace, |s| s.iter().any(|s| s.name == "execute_tool ask_shout"))
        .await;
    assert_eq!(
        parent,
        tool_span(&spans, "execute_tool ask_shout").span_id,
        "the A2A agent's requests are children of the tool call"
    );
    drop(local);
}
