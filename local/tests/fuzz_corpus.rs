//! The fuzzers' findings as ordinary tests: every input kept under
//! `fuzz/corpus/<target>/` (the minimized corpus of the last runs) and
//! `fuzz/regressions/<target>/` (each input that once crashed a target),
//! replayed through the same public functions and held to the same
//! invariants as in `fuzz/fuzz_targets/` (both use `fuzz/common/inputs.rs`).
//! Bodies go to the real `local` router over loopback HTTP. See
//! RELIABILITY.md#fuzzing for how the corpus was made.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use agent_core::testing::TestServer;

#[path = "../../fuzz/common/inputs.rs"]
mod inputs;

/// Fewer files than this means the corpus was lost, not that it is small.
const MIN_CORPUS_FILES: usize = 20;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file in `dir`, sorted by name; none when it does not exist.
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// The corpus (which must be there) and the regressions of `target`.
fn inputs_of(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        corpus.len() >= MIN_CORPUS_FILES,
        "fuzz/corpus/{target} has {} files, fewer than {MIN_CORPUS_FILES}: the corpus is missing",
        corpus.len()
    );
    let mut all = corpus;
    all.extend(files_in(&fuzz_dir().join("regressions").join(target)));
    all
}

/// Runs `check` on every input, naming the file of any failure or panic.
fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let inputs = inputs_of(target);
    let mut failures = Vec::new();
    for (path, bytes) in &inputs {
        match std::panic::catch_unwind(AssertUnwindSafe(|| check(bytes))) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{}: {why}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn calculator_corpus_and_regressions() {
    replay("calculator", inputs::check_calculator);
    let evaluated = inputs_of("calculator")
        .iter()
        .filter(|(_, bytes)| agent_core::tools::calculator::evaluate(&String::from_utf8_lossy(bytes)).is_ok())
        .count();
    assert!(evaluated > 0, "no input in fuzz/corpus/calculator evaluates");
}

#[test]
fn delivery_corpus_and_regressions() {
    replay("delivery", inputs::check_delivery);
    // The corpus reaches past the refusals: some of it decodes, in each mode.
    let decoded: Vec<u8> = inputs_of("delivery")
        .iter()
        .filter_map(|(_, bytes)| {
            let (headers, body) = inputs::delivery_parts(bytes);
            agent_core::delivery::decode(&headers, body).ok()?;
            Some(bytes.first().map_or(0, |b| b & 7))
        })
        .collect();
    for (mode, name) in [(0, "push"), (2, "structured"), (4, "binary")] {
        assert!(
            decoded.contains(&mode),
            "no input in fuzz/corpus/delivery decodes as a {name} delivery"
        );
    }
}

#[test]
fn a2a_corpus_and_regressions() {
    replay("a2a", inputs::check_a2a);
    // The corpus reaches past the refusals: some of it reads as a send, in
    // each revision.
    let sends: Vec<bool> = inputs_of("a2a")
        .iter()
        .filter_map(|(_, bytes)| {
            let (version, body) = inputs::a2a_parts(bytes);
            let request = agent_core::a2a::rpc::parse(body).ok()?;
            agent_core::a2a::wire::send(version, &request.params).ok()?;
            Some(version == agent_core::a2a::Version::V1)
        })
        .collect();
    assert!(
        sends.contains(&true) && sends.contains(&false),
        "fuzz/corpus/a2a should hold sends of both revisions that read"
    );
}

/// The `local` router the body targets fuzz (`fuzz/common/harness.rs`), on
/// a loopback port, with the folder of its SQLite file and its app.
async fn fuzzed_router() -> (tempfile::TempDir, agent_core::App, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("agent.db").to_string_lossy().into_owned();
    let mut vars = vec![("SQLITE_PATH", db.as_str())];
    vars.extend_from_slice(&inputs::SETTINGS);
    let app = agent_core::App::build(agent_core::testing::settings(&vars), local::FUNCTION)
        .await
        .expect("the app starts");
    let server = TestServer::start(local::router(&app).await.expect("the router builds")).await;
    (dir, app, server)
}

#[tokio::test]
async fn request_body_corpus_and_regressions_through_the_local_router() {
    let (_dir, _app, server) = fuzzed_router().await;
    let http = reqwest::Client::new();

    let mut failures = Vec::new();
    // Per route: whether some input was accepted (2xx) and some refused (4xx).
    let mut seen = [(false, false); inputs::ROUTES.len()];
    for (path, bytes) in &inputs_of("request_body") {
        let (route, content_type, body) = inputs::request_parts(bytes);
        let mut request = http.post(format!("{}{route}", server.url)).body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("the local router answers");
        let status = response.status().as_u16();
        let answer_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = response.bytes().await.expect("the answer reads");
        if let Some(at) = inputs::ROUTES.iter().position(|r| *r == route) {
            seen[at].0 |= (200..300).contains(&status);
            seen[at].1 |= (400..500).contains(&status);
        }
        if let Err(why) = inputs::check_response(status, answer_type.as_deref(), &answer) {
            failures.push(format!("{} (POST {route}): {why}", path.display()));
        }
    }
    server.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (route, (accepted, refused)) in inputs::ROUTES.iter().zip(seen) {
        assert!(
            accepted && refused,
            "fuzz/corpus/request_body should hold bodies that POST {route} accepts and refuses \
             (accepted: {accepted}, refused: {refused})"
        );
    }
}

#[tokio::test]
async fn mcp_corpus_and_regressions_through_the_local_router() {
    let (_dir, _app, server) = fuzzed_router().await;
    let http = reqwest::Client::new();

    let mut failures = Vec::new();
    let (mut results, mut errors) = (0, 0);
    for (path, bytes) in &inputs_of("mcp") {
        let (content_type, versioned, body) = inputs::mcp_parts(bytes);
        let mut request = http
            .post(format!("{}/mcp", server.url))
            .header("accept", "application/json, text/event-stream")
            .body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if versioned {
            request = request.header("mcp-protocol-version", "2025-06-18");
        }
        let response = request.send().await.expect("the local router answers");
        let status = response.status().as_u16();
        let answer = response.bytes().await.expect("the answer reads");
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        results += usize::from(json["result"].is_object());
        errors += usize::from(json["error"].is_object());
        if let Err(why) = inputs::check_mcp_response(status, &answer) {
            failures.push(format!("{} (POST /mcp): {why}", path.display()));
        }
    }
    server.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        results > 0 && errors > 0,
        "fuzz/corpus/mcp should hold messages /mcp answers and refuses (results: {results}, errors: {errors})"
    );
}
