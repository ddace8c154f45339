//! What every function builds at start-up, built once, the same way.
//!
//! Settings, logs, metrics, the model and the stores: a function's `main`
//! is `App::start(NAME)` then `serve(router(&app))`, where `router` is
//! `app.standalone(api(&app), NAME)`; the `local` runner builds one `App`
//! for all of them and merges their `api`s.

use std::sync::Arc;

use axum::Router;

use crate::auth::Authenticator;
use crate::cache::ResponseCache;
use crate::config::{RateLimit, Settings};
use crate::http::middleware::MiddlewareLayer;
use crate::http::rate_limit::{self, RateLimiter};
use crate::http::{Api, Metrics, Readiness};
use crate::llm::Model;
use crate::llm::routed::Models;
use crate::store::{self, StartupCheck, Stores};

fn exit_on_start_error(function: &str, err: anyhow::Error) -> ! {
    tracing::error!("cannot start {function}: {err:#}");
    eprintln!("error: cannot start {function}: {err:#}");
    std::process::exit(1);
}

#[derive(Clone)]
pub struct App {
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    /// The fast tier's model, unrouted: for a call with no request to
    /// route (and the start-up banner's name).
    pub model: Arc<dyn Model>,
    /// The tiers, the router and fallback: a request's model comes from
    /// here (`models.route`, then `models.routed`).
    pub models: Arc<Models>,
    pub stores: Stores,
    /// The response cache; `None` with `CACHE=off`. A request's model
    /// answers through it with `models.routed(..).with_cache(..)`.
    pub cache: Option<Arc<ResponseCache>>,
    /// Who each request is (API keys, ID tokens): one per process, so the
    /// issuers' key sets are fetched once for every function it serves.
    pub authenticator: Arc<Authenticator>,
    /// Whether the store has been shown to answer: `/health` is 503 until then.
    pub readiness: Readiness,
    /// The task queue, opened once by the first function that needs it
    /// (`queue::open`): in `local`, the agent and the chat function share
    /// one local queue and its dispatcher.
    pub(crate) queue: Arc<tokio::sync::OnceCell<Arc<dyn crate::queue::Queue>>>,
}

impl App {
    /// Reads the environment (exit 2 on a bad setting), starts logging and
    /// opens the model and the stores (exit 1 if they cannot be used).
    ///
    /// The store's start-up check (a Firestore read) runs beside the first
    /// requests rather than before them: `/health` answers 503 until it
    /// passes, and the process stops with exit 1 if it fails.
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
        let project =
            crate::config::dotenv::var("GOOGLE_CLOUD_PROJECT").or_else(|| settings.store.firestore_project.clone());
        let traces_of = settings.traces.as_ref().map(|export| (function, export));
        if let Err(err) = crate::logging::init(settings.log_format, project, traces_of) {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
        let dotenv = crate::config::dotenv::process_or_exit();
        if dotenv.path().is_some() {
            tracing::info!("settings: {dotenv}");
        }
        for warning in settings.startup_warnings() {
            tracing::warn!("{warning}");
        }
        match App::open(settings, function).await {
            Ok((app, check)) => {
                let readiness = app.readiness.clone();
                tokio::spawn(async move {
                    match check.await {
                        Ok(()) => readiness.set_ready(),
                        Err(err) => exit_on_start_error(function, err),
                    }
                });
                app
            }
            Err(err) => exit_on_start_error(function, err),
        }
    }

    /// Stops a function that cannot start (a router whose dependencies
    /// failed): one clear line, exit code 1.
    pub fn exit_on_start_error(&self, err: anyhow::Error) -> ! {
        exit_on_start_error(self.metrics.function(), err)
    }

    /// Builds from given settings, for tests and embedders: the store is
    /// checked before this returns.
    pub async fn build(settings: Settings, function: &'static str) -> anyhow::Result<App> {
        let (app, check) = App::open(settings, function).await?;
        check.await?;
        app.readiness.set_ready();
        Ok(app)
    }

    /// The app, not yet ready, and the store check that makes it so.
    async fn open(settings: Settings, function: &'static str) -> anyhow::Result<(App, StartupCheck)> {
        let metrics = Metrics::new(function);
        // The store's connection opens while the model is built.
        let store_settings = settings.store.clone();
        let store_metrics = metrics.clone();
        let stores = tokio::spawn(async move { store::open_unchecked(&store_settings, &store_metrics).await });
        let models = Arc::new(Models::build(&settings.llm, metrics.clone())?);
        let model = models.fast();
        let authenticator = Arc::new(Authenticator::new(&settings.http.auth, &metrics)?);
        for url in authenticator.key_set_urls() {
            tracing::info!("ID tokens are checked with the keys published at {url}");
        }
        let (stores, check) = stores.await??;
        let cache = ResponseCache::new(&settings.cache, stores.cache.clone(), metrics.clone());
        let app = App {
            settings: Arc::new(settings),
            metrics,
            model,
            models,
            stores,
            cache,
            authenticator,
            readiness: Readiness::pending(),
            queue: Arc::default(),
        };
        Ok((app, check))
    }

    /// Puts `routes` behind the rate limit `limit` of each principal and the
    /// narrower `per_client` limit of each `X-Client-ID` within it (either
    /// may be off), counted under `bucket`. Applied to matched routes only,
    /// so a 404 costs nothing.
    pub fn rate_limited(
        &self,
        routes: Api,
        bucket: &'static str,
        limit: Option<RateLimit>,
        per_client: Option<RateLimit>,
    ) -> Api {
        if limit.is_none() && per_client.is_none() {
            return routes;
        }
        let trust = rate_limit::Trust {
            proxy: self.settings.http.trust_proxy,
            client_id: self.settings.http.trust_client_id,
        };
        let limiter = rate_limit::Limit(Arc::new(RateLimiter::new(
            bucket,
            limit,
            per_client,
            self.stores.rate_limits.clone(),
            &self.metrics,
            trust,
        )));
        routes.layered(
            |routes| routes.route_layer(MiddlewareLayer(limiter.clone())),
            &[
                (
                    429,
                    "over the rate limit of this caller or client; retry after Retry-After",
                ),
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
            self.readiness.clone(),
        )
    }

    /// A function of its own out of its API: the main route at `POST /` too
    /// (a Cloud Function URL is called that way; see
    /// [`Routes::main_route`](crate::http::Routes::main_route)), and the
    /// shared HTTP layer.
    /// `POST /mcp` serving `tools` ([`crate::mcp::server`]), behind the
    /// tools rate limit: one budget with the tool functions' JSON routes.
    pub fn mcp(&self, tools: crate::tools::Registry, function: &'static str) -> Api {
        let http = &self.settings.http;
        // DNS rebinding needs an open server: one that asks for a key or a
        // token cannot be used by a page that has neither.
        let open = !(self.authenticator.api_keys() || self.authenticator.tokens());
        let served = crate::mcp::server::Served {
            function,
            max_body_bytes: http.max_body_bytes,
            allowed_hosts: http.mcp_allowed_hosts.as_deref().filter(|_| open),
        };
        self.rate_limited(
            crate::mcp::api(tools, served),
            "tools",
            self.settings.rate_limit_tools,
            self.settings.rate_limit_tools_per_client,
        )
    }

    pub fn standalone(&self, api: Api, function: &'static str) -> Router {
        self.wrap(api.with_root(), function)
    }
}
