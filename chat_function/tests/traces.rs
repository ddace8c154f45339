//! Traces of one function, as a process exporting to a local OTLP
//! receiver: a request continues Cloud Run's `X-Cloud-Trace-Context` or a
//! W3C `traceparent`, or starts a trace; its model call and store calls
//! are spans under it; and its log lines carry the exported ids, so Cloud
//! Logging shows them beside the spans.

use std::process::Stdio;
use std::time::Duration;

use agent_core::testing::{ExportedSpan, OtlpReceiver, free_port};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_chat_function");

fn request_span<'a>(spans: &'a [ExportedSpan], request_id_trace: &str) -> &'a ExportedSpan {
    spans
        .iter()
        .find(|s| s.kind == 2 && s.trace_id == request_id_trace)
        .unwrap_or_else(|| panic!("the server span of {request_id_trace}: {spans:#?}"))
}

#[tokio::test]
async fn a_request_continues_its_callers_trace_and_its_logs_carry_the_exported_ids() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("traces.db");
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("SQLITE_PATH", db.to_str().expect("utf-8"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let logs = tokio::spawn(async move {
        let mut finished = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "request finished"
            {
                finished.push(v);
            }
        }
        finished
    });
    let url = format!("http://127.0.0.1:{port}/api/v1/chat");
    let http = reqwest::Client::new();
    let send = |request_id: &'static str, header: Option<(&'static str, &'static str)>| {
        let mut request = http
            .post(&url)
            .header("x-request-id", request_id)
            .json(&json!({"message": "trace me"}));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    let mut ready = false;
    for _ in 0..200 {
        if http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the function never answered");
    let cloud = ("x-cloud-trace-context", "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1");
    let w3c = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    for (id, header) in [("cloud", Some(cloud)), ("w3c", Some(w3c)), ("none", None)] {
        assert_eq!(send(id, header).await.expect("answer").status(), 200);
    }

    let cloud_spans = receiver
        .wait_for("4bf92f3577b34da6a3ce929d0e0e4736", |s| s.iter().any(|s| s.kind == 2))
        .await;
    let server = request_span(&cloud_spans, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        server.parent_span_id, "0000000000000001",
        "the span id of X-Cloud-Trace-Context, in hex"
    );
    assert_eq!(server.name, "POST /api/v1/chat");
    assert_eq!(server.service, "chat_function");
    assert_eq!(
        server.attributes.get("http.response.status_code").map(String::as_str),
        Some("200")
    );
    let model = cloud_spans
        .iter()
        .find(|s| s.name == "chat offline")
        .unwrap_or_else(|| panic!("the model call: {cloud_spans:#?}"));
    assert_eq!(model.parent_span_id, server.span_id);
    assert_eq!(
        model.attributes.get("gen_ai.provider.name").map(String::as_str),
        Some("offline")
    );
    assert!(
        cloud_spans
            .iter()
            .any(|s| s.name == "sqlite write"
                && s.attributes.get("db.system.name").map(String::as_str) == Some("sqlite")),
        "the turn's store write: {cloud_spans:#?}"
    );

    let w3c_spans = receiver
        .wait_for("0af7651916cd43dd8448eb211c80319c", |s| s.iter().any(|s| s.kind == 2))
        .await;
    assert_eq!(
        request_span(&w3c_spans, "0af7651916cd43dd8448eb211c80319c").parent_span_id,
        "b7ad6b7169203331"
    );

    drop(child);
    let finished = logs.await.expect("the log reader");
    let line = |id: &str| {
        finished
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("the log line of {id}: {finished:#?}"))
            .clone()
    };
    let cloud_line = line("cloud");
    assert_eq!(
        cloud_line["logging.googleapis.com/trace"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        cloud_line["logging.googleapis.com/spanId"], server.span_id,
        "the log line names the exported span"
    );
    // A request that came without a trace started one, which its lines carry.
    let none_line = line("none");
    let started = none_line["logging.googleapis.com/trace"]
        .as_str()
        .expect("a trace id")
        .to_string();
    let spans = receiver.wait_for(&started, |s| s.iter().any(|s| s.kind == 2)).await;
    assert_eq!(
        request_span(&spans, &started).span_id,
        none_line["logging.googleapis.com/spanId"].as_str().expect("a span id")
    );
    assert!(request_span(&spans, &started).parent_span_id.is_empty(), "a root span");
}
