//! `/health`: whether this instance should be sent requests.
//!
//! A function starts serving as soon as its store's connection is open, and
//! shows that the store answers (on Firestore: the project, the database
//! and the credentials are good) beside its first requests, which reach the
//! store themselves: the check must not cost the first request a round trip.
//! Until it has passed, `/health` answers 503 `starting`, so that a probe
//! never calls an instance healthy before it has reached its store; if it
//! fails, the process stops with the error (see `App::start`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::VERSION;

/// Whether the start-up check has passed; shared by the task that runs it
/// and `/health`.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Nothing left to check: a store opened and checked before serving.
    pub fn ready() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(true)))
    }

    /// A check still running; [`Readiness::set_ready`] when it passes.
    pub fn pending() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(false)))
    }

    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Health {
    /// `ok`, or `starting` while the store is not yet shown to answer.
    status: &'static str,
    function: &'static str,
    version: &'static str,
}

pub(super) async fn health(
    State((function, readiness)): State<(&'static str, Readiness)>,
) -> (StatusCode, Json<Health>) {
    let (code, status) = if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    };
    let body = Health {
        status,
        function,
        version: VERSION,
    };
    (code, Json(body))
}
