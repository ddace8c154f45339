//! One agent run is one trace across functions: `agent_function`,
//! `agent_worker` and `calculator_function` as processes, each exporting
//! its spans over OTLP to a local receiver, the task queued through the
//! Pub/Sub emulator and stored in the Firestore emulator. The client sends
//! a `traceparent`; the receiver must see the agent's request, the queued
//! hop, the worker's run with its model calls and tool call, and the
//! calculator's request, as one tree under the client's span.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use agent_core::testing::{self, ExportedSpan, OtlpReceiver, Process};
use serde_json::{Value, json};

const WORKER: &str = env!("CARGO_BIN_EXE_agent_worker");

/// Another function's binary, built beside this crate's by the workspace's
/// test build (`cargo test --workspace`).
fn sibling(name: &str) -> String {
    let path = PathBuf::from(WORKER).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p {name}` (the test command builds it)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// A trace id no other run used: the clock's nanoseconds, spread.
fn rand_u128() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) | 1
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

fn one<'a>(spans: &'a [ExportedSpan], what: &str, pick: impl Fn(&ExportedSpan) -> bool) -> &'a ExportedSpan {
    let found: Vec<&ExportedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "one {what}: {found:#?}");
    found[0]
}

/// Whether `span` is under `ancestor` in `spans`.
fn under(spans: &[ExportedSpan], span: &ExportedSpan, ancestor: &ExportedSpan) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..64 {
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// The trace as an indented tree, for the test's output.
fn print_tree(spans: &[ExportedSpan], parent: &str, depth: usize) {
    for span in spans.iter().filter(|s| s.parent_span_id == parent) {
        println!("{}{} [{}]", "  ".repeat(depth), span.name, span.service);
        print_tree(spans, &span.span_id, depth + 1);
    }
}

#[tokio::test]
#[ignore = "needs the Firestore and Pub/Sub emulators: run ./scripts/test.sh"]
async fn an_async_agent_run_with_a_remote_tool_is_one_trace_across_functions() {
    let common::Names {
        suffix,
        project,
        topic,
        admin,
    } = common::names("traces").await;
    let receiver = OtlpReceiver::start().await;
    let firestore = testing::firestore_emulator_host();
    let pubsub = testing::pubsub_emulator_host();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()),
        // Exported at once rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];

    let calculator = Process::start(&sibling("calculator_function"), &otel).await;
    let calculator_url = format!("{}/api/v1/tools/calculate", calculator.url);
    let common: Vec<(&str, &str)> = [
        ("STORE", "firestore"),
        ("FIRESTORE_PROJECT", project.as_str()),
        ("FIRESTORE_EMULATOR_HOST", firestore.as_str()),
        ("LLM_PROVIDER", "offline"),
        ("CALCULATOR_URL", calculator_url.as_str()),
    ]
    .into_iter()
    .chain(otel)
    .collect();
    let worker = Process::start(WORKER, &common).await;
    admin
        .create_push_subscription(&format!("push-traces-{suffix}"), &topic, &format!("{}/", worker.url))
        .await;
    let agent_vars: Vec<(&str, &str)> = common
        .iter()
        .copied()
        .chain([
            ("QUEUE", "pubsub"),
            ("PUBSUB_PROJECT", common::PUBSUB_PROJECT),
            ("PUBSUB_TOPIC", topic.as_str()),
            ("PUBSUB_EMULATOR_HOST", pubsub.as_str()),
        ])
        .collect();
    let agent = Process::start(&sibling("agent_function"), &agent_vars).await;

    // The client's own span: the trace's root.
    let trace_id = format!("{:032x}", rand_u128());
    let client_span = "00f067aa0ba902b7";
    let http = reqwest::Client::new();
    let accepted: Value = http
        .post(format!("{}/api/v1/agent", agent.url))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"task": "Calcula 15 * 23", "async": true}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let task_id = accepted["task_id"].as_str().expect("a task id").to_string();
    let mut task = Value::Null;
    for _ in 0..300 {
        task = http
            .get(format!("{}/api/v1/tasks/{task_id}", agent.url))
            .send()
            .await
            .expect("task")
            .json()
            .await
            .expect("json");
        if task["status"] == "completed" || task["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        task["result"]["response"].as_str().unwrap_or_default().contains("345"),
        "{task}"
    );

    receiver
        .wait_for(&trace_id, |spans| {
            let services = |name: &str| spans.iter().any(|s| s.service == name);
            services("agent_function")
                && services("calculator_function")
                && spans.iter().any(|s| s.kind == CONSUMER)
                && spans.iter().filter(|s| s.name.starts_with("chat ")).count() >= 2
        })
        .await;
    // Each process's last spans (its request span ends after the answer).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let spans = receiver.trace(&trace_id);
    print_tree(&spans, client_span, 0);

    let request = one(&spans, "agent request", |s| {
        s.service == "agent_function" && s.kind == SERVER && s.name == "POST /api/v1/agent"
    });
    assert_eq!(
        request.parent_span_id, client_span,
        "the agent continues the client's trace"
    );
    let send = one(&spans, "queued hop", |s| s.kind == PRODUCER);
    assert_eq!(send.service, "agent_function");
    assert!(under(&spans, send, request), "the message is sent within the request");
    assert_eq!(
        send.attributes.get("messaging.system").map(String::as_str),
        Some("gcp_pubsub")
    );
    let run = one(&spans, "worker run", |s| s.kind == CONSUMER);
    assert_eq!(run.service, "agent_worker");
    assert_eq!(
        run.parent_span_id, send.span_id,
        "the worker continues the message's trace"
    );
    assert_eq!(run.attributes.get("task_id"), Some(&task_id));

    let models: Vec<&ExportedSpan> = spans.iter().filter(|s| s.name == "chat offline").collect();
    assert!(models.len() >= 2, "the model calls: {models:#?}");
    for model in &models {
        assert_eq!(model.service, "agent_worker");
        assert_eq!(model.kind, CLIENT);
        assert!(under(&spans, model, run));
        assert_eq!(
            model.attributes.get("gen_ai.operation.name").map(String::as_str),
            Some("chat")
        );
        assert_eq!(
            model.attributes.get("gen_ai.request.model").map(String::as_str),
            Some("offline")
        );
        assert!(model.attributes.contains_key("gen_ai.usage.input_tokens"), "{model:#?}");
        assert!(
            model.attributes.contains_key("gen_ai.usage.output_tokens"),
            "{model:#?}"
        );
    }
    let tool = one(&spans, "tool call", |s| s.name == "execute_tool calculate");
    assert!(under(&spans, tool, run));
    assert_eq!(
        tool.attributes.get("gen_ai.tool.name").map(String::as_str),
        Some("calculate")
    );
    let remote = one(&spans, "calculator request", |s| {
        s.service == "calculator_function" && s.kind == SERVER
    });
    assert_eq!(
        remote.parent_span_id, tool.span_id,
        "the calculator continues the tool call's span"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.service == "agent_worker" && s.name.starts_with("firestore ") && under(&spans, s, run)),
        "the worker's store calls are spans of the run"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.service == "agent_function" && s.name.starts_with("firestore ") && under(&spans, s, request)),
        "the agent's store calls are spans of its request"
    );
    drop((agent, worker, calculator));
}
