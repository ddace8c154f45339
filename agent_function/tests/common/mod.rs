//! The agent function served on loopback over a [`TestApp`] (SQLite on
//! disk), shared by this crate's integration tests. Each test binary uses a
//! part of it.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use agent_core::testing::{TestApp, TestServer};
use agent_function::{FUNCTION, router};
use serde_json::Value;

/// A bound for failure messages: nothing a test waits for takes this long.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Agent {
    pub server: TestServer,
    pub http: reqwest::Client,
    pub app: TestApp,
}

impl Agent {
    pub async fn start(vars: &[(&str, &str)]) -> Agent {
        Agent::on(TestApp::start(FUNCTION, vars).await).await
    }

    /// Serves `app`, e.g. one whose store a test prepared first.
    pub async fn on(app: TestApp) -> Agent {
        let router = router(&app).await.expect("the router builds");
        Agent {
            server: TestServer::start(router).await,
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("an HTTP client"),
            app,
        }
    }

    pub async fn post(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/agent", self.server.url))
            .json(&body)
            .send()
            .await
            .expect("the agent function answers")
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.server.url))
            .send()
            .await
            .expect("the agent function answers")
            .json()
            .await
            .expect("json")
    }

    /// The tasks a queue would still deliver.
    pub async fn runnable(&self) -> Vec<String> {
        self.app
            .stores
            .tasks
            .runnable(SystemTime::now(), 10)
            .await
            .expect("runnable")
    }

    /// The whole event stream of a task, as (event, data) pairs.
    pub async fn events(&self, id: &str, last_event_id: Option<&str>) -> Vec<(String, Value)> {
        let mut request = self.http.get(format!("{}/api/v1/tasks/{id}/events", self.server.url));
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.expect("events");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("text/event-stream")
        );
        let text = tokio::time::timeout(DEADLINE, response.text())
            .await
            .expect("the stream ends after done")
            .expect("text");
        agent_core::testing::sse_events(&text)
    }

    /// Polls the task until it is finished, keeping every status seen.
    pub async fn wait_finished(&self, id: &str) -> (Value, Vec<String>) {
        let started = std::time::Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let task = self.get(&format!("/api/v1/tasks/{id}")).await;
            let status = task["status"].as_str().unwrap_or_default().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "completed" || status == "failed" || status == "cancelled" {
                return (task, seen);
            }
            assert!(started.elapsed() < DEADLINE, "task {id} did not finish: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `fields` of each child in a task's JSON (`GET /api/v1/tasks/{id}`:
/// its `children`), in order; `?` for one a child lacks. Empty when it has
/// none.
pub fn children(task: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    let children = task["children"].as_array().map(Vec::as_slice).unwrap_or_default();
    children
        .iter()
        .map(|child| {
            fields
                .iter()
                .map(|field| child[*field].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .collect()
}
