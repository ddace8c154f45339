//! A long session is read a page at a time, and sessions are listed newest
//! first, over real HTTP to the chat function on SQLite: the default page,
//! cursors followed to the end, and every message once, in order.

use agent_core::testing::{TestApp, TestServer};
use chat_function::{FUNCTION, router};
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.expect("get");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_long_session_pages_to_its_end_and_sessions_list_newest_first() {
    let app = TestApp::start(FUNCTION, &[("RATE_LIMIT_CHAT", "off")]).await;
    let server = TestServer::start(router(&app)).await;
    let http = reqwest::Client::new();
    let chat = |session: &'static str, message: String| {
        let http = &http;
        let url = format!("{}/api/v1/chat", server.url);
        async move {
            let response = http
                .post(url)
                .json(&json!({"message": message, "session_id": session}))
                .send()
                .await
                .expect("chat");
            assert_eq!(response.status(), 200);
        }
    };
    // 55 turns: 110 messages, past the default page of 100.
    for i in 0..55 {
        chat("long", format!("q{i}")).await;
    }
    chat("short", "hello".to_string()).await;

    let base = format!("{}/api/v1/sessions/long", server.url);
    let first = get(&http, &base).await;
    assert_eq!(
        first["messages"].as_array().map(Vec::len),
        Some(100),
        "the default page"
    );
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get(&http, &format!("{base}?cursor={cursor}")).await;
    assert_eq!(second["messages"].as_array().map(Vec::len), Some(10));
    assert_eq!(second["next_cursor"], Value::Null, "the last page");

    // Small pages: every message once, in order.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}?limit=7&cursor={c}"),
            None => format!("{base}?limit=7"),
        };
        let page = get(&http, &url).await;
        let messages = page["messages"].as_array().expect("messages");
        assert!(messages.len() <= 7);
        seen.extend(
            messages
                .iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 110);
    let questions: Vec<String> = seen.iter().step_by(2).cloned().collect();
    let expected: Vec<String> = (0..55).map(|i| format!("q{i}")).collect();
    assert_eq!(questions, expected, "every question once, in order");

    let list = get(&http, &format!("{}/api/v1/sessions?limit=1", server.url)).await;
    assert_eq!(
        list["sessions"][0]["session_id"], "short",
        "the last written first: {list}"
    );
    let cursor = list["next_cursor"].as_str().expect("a next page");
    let rest = get(
        &http,
        &format!("{}/api/v1/sessions?limit=1&cursor={cursor}", server.url),
    )
    .await;
    assert_eq!(rest["sessions"][0]["session_id"], "long", "{rest}");
    assert_eq!(rest["sessions"][0]["message_count"], 110, "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null, "{rest}");

    // A cursor of another listing is refused, as an envelope.
    let response = http.get(format!("{base}?cursor={cursor}")).send().await.expect("get");
    let (message, _) = agent_core::testing::error_envelope(response, 400, "invalid_argument").await;
    assert!(message.starts_with("cursor is not"), "{message}");
}
