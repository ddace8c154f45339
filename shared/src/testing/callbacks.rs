//! A callback receiver over loopback: what the tests of callbacks point
//! `callback_url` at. It answers 204 and keeps every POST it got.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::TestServer;
use crate::webhook::{ATTEMPT_HEADER, SIGNATURE_HEADER, TASK_ID_HEADER};

/// One callback POST as received: the headers a receiver acts on, and
/// the exact bytes (what the signature covers).
#[derive(Clone, Debug)]
pub struct Received {
    pub task_id: String,
    pub attempt: String,
    pub signature: String,
    pub body: Bytes,
}

/// The receiver: POST `{url}` (its `/hook`) to call it back.
pub struct CallbackReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    _server: TestServer,
}

impl CallbackReceiver {
    pub async fn start() -> CallbackReceiver {
        async fn receive(
            State(received): State<Arc<Mutex<Vec<Received>>>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let hook = Received {
                task_id: header(TASK_ID_HEADER),
                attempt: header(ATTEMPT_HEADER),
                signature: header(SIGNATURE_HEADER),
                body,
            };
            received.lock().unwrap_or_else(PoisonError::into_inner).push(hook);
            StatusCode::NO_CONTENT
        }
        let received = Arc::default();
        let server = TestServer::start(
            Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(Arc::clone(&received)),
        )
        .await;
        CallbackReceiver {
            url: format!("{}/hook", server.url),
            received,
            _server: server,
        }
    }

    /// Every POST so far, in the order they arrived.
    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
