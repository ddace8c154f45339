//! What every function builds at start-up, built once, the same way.
//!
//! Settings, logs, metrics, the model and the stores: a function's `main`
//! is `App::start(NAME)` then `serve(router(&app))`, where `router` is
//! `app.standalone(api(&app), NAME)`; the `local` runner builds one `App`
//! for all of them and merges their `api`s.

use std::sync::Arc;

use axum::Router;

use crate::auth::Authenticator;
use crate::config::{RateLimit, Settings};
use crate::http::middleware::MiddlewareLayer;
use crate::http::rate_limit::{self, RateLimiter};
use crate::http::{Api, Metrics};
use crate::llm::{self, Model};
use crate::store::{self, Stores};

fn exit_on_start_error(function: &str, err: anyhow::Error) -> ! {
    tracing::error!("cannot start {function}: {err:#}");
    eprintln!("error: cannot start {function}: {err:#}");
    std::process::exit(1);
}

#[derive(Clone)]
pub struct App {
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub model: Arc<dyn Model>,
    pub stores: Stores,
    /// Who each request is (API keys, ID tokens): one per process, so the
    /// issuers' key sets are fetched once for every function it serves.
    pub authenticator: Arc<Authenticator>,
}

impl App {
    /// Reads the environment (exit 2 on a bad setting), starts logging and
    /// opens the model and the stores (exit 1 if they cannot be used).
    pub async fn start(function: &'static str) -> App {
        App::start_with(function, true).await
    }

    /// For a function that calls no model (the tool functions): the model
    /// settings are not used, so they draw no warning.
    pub async fn start_without_model(function: &'static str) -> App {
        App::start_with(function, false).await
    }

    async fn start_with(function: &'static str, uses_model: bool) -> App {
        let settings = Settings::from_env_or_exit(uses_model);
        let project = std::env::var("GOOGLE_CLOUD_PROJECT")
            .ok()
            .or_else(|| settings.store.firestore_project.clone());
        crate::logging::init(settings.log_format, project);
        for warning in settings.startup_warnings() {
            tracing::warn!("{warning}");
        }
        match App::build(settings, function).await {
            Ok(app) => app,
            Err(err) => exit_on_start_error(function, err),
        }
    }

    /// Stops a function that cannot start (a router whose dependencies
    /// failed): one clear line, exit code 1.
    pub fn exit_on_start_error(&self, err: anyhow::Error) -> ! {
        exit_on_start_error(self.metrics.function(), err)
    }

    /// Builds from given settings, for tests and embedders.
    pub async fn build(settings: Settings, function: &'static str) -> anyhow::Result<App> {
        let metrics = Metrics::new(function);
        let model = llm::build(&settings.llm, metrics.clone())?;
        let stores = store::open(&settings.store, &metrics).await?;
        let authenticator = Arc::new(Authenticator::new(&settings.http.auth, &metrics)?);
        for url in authenticator.key_set_urls() {
            tracing::info!("ID tokens are checked with the keys published at {url}");
        }
        Ok(App {
            settings: Arc::new(settings),
            metrics,
            model,
            stores,
            authenticator,
        })
    }

    /// Puts `routes` behind the rate limit `limit` (if any), counted under
    /// `bucket`. Applied to matched routes only, so a 404 costs nothing.
    pub fn rate_limited(&self, routes: Api, bucket: &'static str, limit: Option<RateLimit>) -> Api {
        let Some(limit) = limit else {
            return routes;
        };
        let limiter = rate_limit::Limit(Arc::new(RateLimiter::new(
            bucket,
            limit,
            self.stores.rate_limits.clone(),
            &self.metrics,
            self.settings.http.trust_proxy,
        )));
        routes.layered(
            |routes| routes.route_layer(MiddlewareLayer(limiter.clone())),
            &[
                (429, "over the rate limit for this client; retry after Retry-After"),
                (503, "the rate limit's store is unavailable; retry after Retry-After"),
            ],
        )
    }

    /// Wraps API routes with the shared HTTP layer (see [`crate::http::wrap`]).
    pub fn wrap(&self, api: Api, function: &'static str) -> Router {
        crate::http::wrap(
            api,
            function,
            &self.settings.http,
            self.authenticator.clone(),
            self.metrics.clone(),
        )
    }

    /// A function of its own out of its API: the main route at `POST /`
    /// too, and the shared HTTP layer (see [`crate::http::standalone`]).
    pub fn standalone(&self, api: Api, function: &'static str) -> Router {
        crate::http::standalone(
            api,
            function,
            &self.settings.http,
            self.authenticator.clone(),
            self.metrics.clone(),
        )
    }
}
