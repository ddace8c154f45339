//! The search function over real HTTP, on the built-in corpus and on a
//! corpus folder.

use agent_core::testing::{TestApp, TestServer};
use serde_json::{Value, json};

async fn start(vars: &[(&str, &str)]) -> (TestServer, TestApp) {
    let app = TestApp::start(search_function::FUNCTION, vars).await;
    (
        TestServer::start(search_function::router(&app).expect("router")).await,
        app,
    )
}

async fn search(server: &TestServer, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/tools/search", server.url))
        .json(&body)
        .send()
        .await
        .expect("request");
    (response.status().as_u16(), response.json().await.expect("json"))
}

#[tokio::test]
async fn finds_words_of_the_shipped_corpus() {
    let (server, _dir) = start(&[]).await;
    for word in ["matemáticas", "SQLITE_PATH", "thoughtSignature"] {
        let (status, body) = search(&server, json!({ "query": word })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["query"], word);
        let results = body["results"].as_array().expect("results");
        assert!(!results.is_empty(), "{word}: {body}");
        let snippet = results[0]["snippet"].as_str().expect("snippet").to_lowercase();
        assert!(snippet.contains(&word.to_lowercase()), "{word}: {snippet}");
        for field in ["title", "source"] {
            assert!(
                results[0][field].as_str().is_some_and(|s| !s.is_empty()),
                "{}",
                results[0]
            );
        }
        assert!(results[0]["score"].as_f64().expect("score") > 0.0);
    }
    let (_, body) = search(&server, json!({"query": "cold start", "max_results": 2})).await;
    assert!(body["results"].as_array().expect("results").len() <= 2);
}

#[tokio::test]
async fn bad_queries_get_the_envelope() {
    let (server, _dir) = start(&[]).await;
    for body in [
        json!({"query": ""}),
        json!({"query": "   "}),
        json!({"query": "x", "max_results": 0}),
        json!({}),
    ] {
        let (status, answer) = search(&server, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument");
    }
}

#[tokio::test]
async fn searches_a_configured_corpus() {
    let corpus = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        corpus.path().join("animals.md"),
        "# Animals\n\n## Owls\n\nThe barn owl hunts at night.\n",
    )
    .expect("write");
    let (server, _dir) = start(&[("SEARCH_CORPUS", corpus.path().to_str().expect("utf-8"))]).await;
    let (status, body) = search(&server, json!({"query": "owl"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["title"], "Animals > Owls");
    assert!(
        body["results"][0]["source"]
            .as_str()
            .expect("source")
            .starts_with("animals.md")
    );
    let (_, body) = search(&server, json!({"query": "matemáticas"})).await;
    assert_eq!(body["results"], json!([]), "the built-in corpus is not searched");
}

#[tokio::test]
async fn a_missing_corpus_stops_start_up() {
    let app = TestApp::start(search_function::FUNCTION, &[("SEARCH_CORPUS", "/no/such/corpus")]).await;
    let err = search_function::router(&app).expect_err("a missing corpus is an error");
    assert!(err.to_string().contains("/no/such/corpus"), "{err}");
}
