//! `agent_worker`: runs queued agent tasks delivered by Pub/Sub.
//!
//! `POST /` takes a Pub/Sub push (wrapped envelope) or an Eventarc
//! CloudEvent (binary or structured) naming a task, and hands it to
//! `agent-core`'s worker, which claims it and runs it once in effect. The
//! answer tells Pub/Sub what to do: 2xx acknowledges (the task finished,
//! failed for good, is a duplicate, or the message is malformed and would
//! never get better), 503 asks for a redelivery (a transient failure).

use std::sync::Arc;

use agent_core::App;
use agent_core::delivery;
use agent_core::http::{ApiError, Metrics, Operation, Routes};
use agent_core::worker::{Disposition, Swept, Worker};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub const FUNCTION: &str = "agent_worker";

#[derive(Clone)]
pub struct WorkerState {
    pub worker: Arc<Worker>,
    pub metrics: Metrics,
}

/// The function: `POST /` behind the shared HTTP layer.
pub async fn router(app: &App) -> anyhow::Result<Router> {
    let state = WorkerState {
        worker: Arc::new(Worker::new(
            app,
            agent_core::tools::registry(&app.settings.tools, &app.stores).await?,
        )),
        metrics: app.metrics.clone(),
    };
    let api = Routes::new()
        .route(
            "/",
            post(receive),
            [Operation::post(
                "receive",
                "one Pub/Sub push delivery or Eventarc CloudEvent (binary or structured) naming a task",
            )
            .tag("worker")
            .json::<serde_json::Value>(200, "acknowledged: run, a duplicate, or malformed and dropped")
            .error(413, "the body is larger than MAX_BODY_BYTES")
            .error(503, "not done yet: the message will be redelivered")],
        )
        .route(
            "/sweep",
            post(sweep),
            [Operation::post(
                "sweep",
                "sends the callbacks finished tasks still owe that no redelivery will bring back \
                 (called by Cloud Scheduler on Pub/Sub deployments)",
            )
            .tag("worker")
            .json::<Swept>(200, "what the sweep did: owed, settled, left for later, store errors")
            .error(503, "the store could not be asked: call again later")],
        )
        .with_state(state);
    Ok(app.wrap(api, FUNCTION))
}

/// Owed callbacks one `POST /sweep` looks at.
const SWEEP_LIMIT: usize = 100;

/// `POST /sweep`: sends the callbacks still owed (see
/// [`Worker::sweep_callbacks`]).
pub async fn sweep(State(state): State<WorkerState>) -> Result<axum::Json<Swept>, ApiError> {
    let swept = state.worker.sweep_callbacks(SWEEP_LIMIT).await?;
    if swept.owed > 0 {
        tracing::info!(?swept, "swept the owed callbacks");
    }
    Ok(axum::Json(swept))
}

/// One delivery. A body that cannot be decoded is acknowledged (it would
/// fail the same way on every redelivery), logged and counted.
pub async fn receive(State(state): State<WorkerState>, headers: HeaderMap, body: Bytes) -> Response {
    let delivery = match delivery::decode(&headers, &body) {
        Ok(delivery) => delivery,
        Err(err) => {
            tracing::warn!(%err, bytes = body.len(), "a malformed delivery was acknowledged and dropped");
            state.metrics.inc(
                "worker_malformed_messages_total",
                "Deliveries that could not be decoded; acknowledged so they are not redelivered.",
                &[],
            );
            let answer = serde_json::json!({"acknowledged": true, "error": err.to_string()});
            return (StatusCode::OK, axum::Json(answer)).into_response();
        }
    };
    match state.worker.deliver(&delivery).await {
        Disposition::Done(outcome) => {
            let answer = serde_json::json!({"acknowledged": true, "task_id": delivery.task_id, "outcome": outcome});
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Disposition::Retry { after, reason } => {
            ApiError::unavailable(format!("{reason}; the message will be redelivered"), after).into_response()
        }
    }
}
