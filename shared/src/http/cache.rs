//! `GET /api/v1/cache/stats`: the response cache as the caller sees it on
//! the instance that answers: its entries and bytes in memory, its hits,
//! misses and hit rate per tier, and its entries evicted, since the
//! instance started.
//!
//! Only the caller's own figures: with entries scoped to principals, the
//! size of another's entries, or that there are any, is theirs. The tier
//! bounds (`max_entries`, `max_bytes`) are the deployment's settings, not
//! anyone's data. For figures across instances, over days, see
//! `GET /api/v1/stats` (from the store) and `/metrics`.
//!
//! Mounted once per process, beside `GET /api/v1/models`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::get;

use super::{Api, Operation, Routes};
use crate::App;
use crate::auth::Principal;
use crate::cache::{CacheStats, ResponseCache};
use crate::config::CacheSettings;

#[derive(Clone)]
pub struct CacheState {
    cache: Option<Arc<ResponseCache>>,
    settings: CacheSettings,
}

/// The route, documented.
pub fn api(app: &App) -> Api {
    Routes::new()
        .route(
            "/api/v1/cache/stats",
            get(cache_stats),
            [Operation::get(
                "cache_stats",
                "the response cache's entries, hits, misses and evictions for the caller on this instance",
            )
            .tag("models")
            .json::<CacheStats>(
                200,
                "per tier: the caller's entries, bytes, hits, misses, hit rate and evictions",
            )],
        )
        .with_state(CacheState {
            cache: app.cache.clone(),
            settings: app.settings.cache.clone(),
        })
}

pub async fn cache_stats(State(state): State<CacheState>, principal: Principal) -> Json<CacheStats> {
    Json(match &state.cache {
        Some(cache) => cache.stats(principal.as_str()),
        None => ResponseCache::off(&state.settings),
    })
}
