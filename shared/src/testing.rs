//! Helpers for the function crates' tests: settings from a list of
//! variables, and a router served on a real loopback port.
//!
//! Public (not `cfg(test)`) because every function crate's integration tests
//! use them; nothing in production calls them.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// Settings as if the environment held exactly `vars`.
pub fn settings(vars: &[(&str, &str)]) -> Settings {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match Settings::from_lookup(|name| map.get(name).cloned()) {
        Ok(s) => s,
        Err(err) => panic!("test settings are invalid: {err}"),
    }
}

/// A router served on `127.0.0.1:<free port>` until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(router: Router) -> TestServer {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(err) => panic!("cannot bind a loopback port: {err}"),
        };
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("no local address: {err}"));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(err) = crate::runtime::serve_on(listener, router, shutdown).await {
                eprintln!("test server failed: {err:#}");
            }
        });
        TestServer {
            addr,
            url: format!("http://{addr}"),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A port that was free a moment ago, for tests that start processes.
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free port: {err}"),
    }
}

/// A server that answers `POST path` with scripted JSON replies, in order
/// (the last one repeats), and records every request body: a model
/// provider's or a tool function's wire format, for tests that drive a
/// whole run.
pub struct Scripted {
    pub server: TestServer,
    requests: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Scripted {
    pub async fn start(path: &str, replies: Vec<(u16, serde_json::Value)>) -> Scripted {
        use std::sync::{Arc, Mutex};

        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::response::IntoResponse;

        type Shared = (Arc<Mutex<Vec<serde_json::Value>>>, Arc<Vec<(u16, serde_json::Value)>>);
        async fn reply(State((seen, replies)): State<Shared>, body: axum::body::Bytes) -> axum::response::Response {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let n = {
                let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.push(body);
                seen.len()
            };
            match replies.get(n - 1).or(replies.last()) {
                Some((status, json)) => {
                    let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    (status, axum::Json(json.clone())).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }

        let requests = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route(path, axum::routing::post(reply))
            .with_state((requests.clone(), Arc::new(replies)));
        Scripted {
            server: TestServer::start(router).await,
            requests,
        }
    }

    /// The bodies received so far, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
