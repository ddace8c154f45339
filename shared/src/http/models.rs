//! `GET /api/v1/models`: the provider, the tiers and their models, their
//! prices, and how a request's model is chosen (the routing mode and its
//! rules), so a client can see what `"model"` may be before it asks.
//!
//! Mounted once per process: by each function that calls a model in its
//! standalone router, and once by `local` (merging it twice would collide).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::get;

use super::{Api, Operation, Routes};
use crate::App;
use crate::llm::routed::{Models, ModelsView};

/// The route, documented.
pub fn api(app: &App) -> Api {
    Routes::new()
        .route(
            "/api/v1/models",
            get(list_models),
            [Operation::get(
                "list_models",
                "the model tiers, their prices, and how a request's model is chosen",
            )
            .tag("models")
            .json::<ModelsView>(200, "the provider, tiers, allowed names, prices and routing rules")],
        )
        .with_state(app.models.clone())
}

pub async fn list_models(State(models): State<Arc<Models>>) -> Json<ModelsView> {
    Json(models.describe())
}
