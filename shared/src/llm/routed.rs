//! The models of the tiers, and calls that fall back from one to the next.
//!
//! [`Models`] holds one metered model per distinct tier model (and the
//! allowed names and the second provider), all on one HTTP client. For each
//! request (or agent run) it gives a [`Routed`] model: the route's model
//! first, then, with `MODEL_FALLBACK=on`, the other tier and the second
//! provider. A model that still fails after its own retries with an error
//! another model may not share (429 or 5xx, unreachable, timeout) hands the
//! call to the next; a refusal of the request itself (4xx, a safety block)
//! would be refused again, so it ends the call. Once falling back, a
//! fallback model's own 4xx (a model the key may not use) passes the call
//! on too; a safety block still ends it. When all fail, the error is the
//! first model's.
//!
//! A stream falls back only while it has not started: once the first delta
//! has gone to the client, another model's answer cannot be spliced in.
//!
//! A routed model given the response cache ([`Routed::with_cache`]) asks
//! it first, keyed by the route's model: an answer a fallback model gave
//! is returned but not kept, so the routed model's entries are its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;

use super::routing::{Mode, NotAllowed, Route, RouteInfo, Router, Tier};
use super::{Model, ModelError, ModelRequest, ModelResponse, ModelStream, metered, offline};
use crate::cache::{self, ResponseCache};
use crate::config::{LlmSettings, Provider};
use crate::http::metrics::Metrics;

/// What a routed call reports in its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub route: RouteInfo,
    /// The model that failed first, when another one answered.
    pub fallback_from: Option<String>,
}

/// The tiers' models and the router that picks among them.
pub struct Models {
    router: Router,
    /// By model name: the two tiers and every allowed name.
    models: HashMap<String, Arc<dyn Model>>,
    /// Tried after both tiers (`FALLBACK_PROVIDER`).
    second: Option<Arc<dyn Model>>,
    fallback: bool,
    metrics: Metrics,
    provider: Provider,
    prices: super::prices::PriceTable,
}

impl Models {
    /// Builds every model the settings name, each wrapped in the metered
    /// decorator, over one HTTP client (built only for HTTP providers).
    pub fn build(settings: &LlmSettings, metrics: Metrics) -> anyhow::Result<Models> {
        let routing = &settings.routing;
        let needs_http = settings.provider != Provider::Offline || routing.fallback_provider.is_some();
        let client = if needs_http {
            Some(super::http_client(settings.timeout)?)
        } else {
            None
        };
        // One metadata client for every Vertex model: clones share the
        // access-token cache, so the tiers fetch one token, not one each.
        let metadata = client
            .as_ref()
            .map(|client| crate::gcp::MetadataClient::from_env(client.clone()));
        let build_one = |provider: Provider, name: &str| -> anyhow::Result<Arc<dyn Model>> {
            let settings = settings.for_model(provider, name);
            let inner: Arc<dyn Model> = match (provider, &client) {
                (Provider::Offline, _) | (_, None) => Arc::new(offline::OfflineModel::new()),
                (Provider::Gemini, Some(client)) => {
                    Arc::new(super::gemini::GeminiModel::ai_studio(&settings, client.clone())?)
                }
                (Provider::Vertex, Some(client)) => Arc::new(super::gemini::GeminiModel::vertex_with_metadata(
                    &settings,
                    client.clone(),
                    metadata
                        .clone()
                        .unwrap_or_else(|| crate::gcp::MetadataClient::from_env(client.clone())),
                )?),
                (Provider::OpenAi, Some(client)) => {
                    Arc::new(super::openai::OpenAiModel::new(&settings, client.clone())?)
                }
            };
            Ok(Arc::new(metered::Metered::new(
                inner,
                metrics.clone(),
                settings.prices.clone(),
            )))
        };
        let mut models = HashMap::new();
        for name in [&routing.fast, &routing.strong].into_iter().chain(&routing.allowed) {
            if !models.contains_key(name) {
                models.insert(name.clone(), build_one(settings.provider, name)?);
            }
        }
        let second = match routing.fallback_provider {
            Some(provider) => {
                let mut second = settings.clone();
                second.provider = provider;
                Some(build_one(provider, second.model_name())?)
            }
            None => None,
        };
        Ok(Models {
            router: Router {
                mode: routing.mode,
                rules: routing.rules.clone(),
                fast: routing.fast.clone(),
                strong: routing.strong.clone(),
                allowed: routing.allowed.clone(),
            },
            models,
            second,
            fallback: routing.fallback,
            metrics,
            provider: settings.provider,
            prices: settings.prices.clone(),
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Where a request goes (see [`Router::route`]), counted in
    /// `model_routes_total`.
    pub fn route(&self, text: &str, tools: usize, requested: Option<&str>) -> Result<Route, NotAllowed> {
        let route = self.router.route(text, tools, requested)?;
        self.count(&route);
        Ok(route)
    }

    /// A model for a request that names none (a queued task): routed by
    /// the rules, counted, ready to call.
    pub fn by_rules(&self, text: &str, tools: usize) -> Routed {
        let route = self.router.by_rules(text, tools);
        self.count(&route);
        self.routed(&route)
    }

    /// A model for one role of a multi-agent run (see
    /// [`Router::for_role`]), counted like any route.
    pub fn for_role(&self, tier: Tier, role: &'static str) -> Routed {
        let route = self.router.for_role(tier, role);
        self.count(&route);
        self.routed(&route)
    }

    fn count(&self, route: &Route) {
        self.metrics.inc(
            "model_routes_total",
            "Requests routed to a model tier, by tier and the kind of reason.",
            &[("tier", route.tier.as_str()), ("reason_kind", route.reason.kind())],
        );
    }

    /// The model of the fast tier, unrouted: for what needs a name (the
    /// start-up banner) or a call with no request behind it.
    pub fn fast(&self) -> Arc<dyn Model> {
        self.model(&self.router.fast)
    }

    fn model(&self, name: &str) -> Arc<dyn Model> {
        match self.models.get(name).or_else(|| self.models.get(&self.router.fast)) {
            Some(model) => model.clone(),
            // `build` always holds the fast tier; this is only reached by a
            // `Models` built some other way, and the offline model is safe.
            None => Arc::new(offline::OfflineModel::new()),
        }
    }

    /// A model for one request or run on `route`: its model, then the
    /// models it falls back to, in order.
    pub fn routed(&self, route: &Route) -> Routed {
        let first = self.model(&route.model);
        let mut chain = vec![first];
        if self.fallback {
            let other = match route.tier {
                Tier::Fast => &self.router.strong,
                Tier::Strong | Tier::Named => &self.router.fast,
            };
            let other = self.model(other);
            if chain.iter().all(|m| m.name() != other.name()) {
                chain.push(other);
            }
            if let Some(second) = &self.second {
                chain.push(second.clone());
            }
        }
        Routed {
            chain,
            route: route.info(),
            fallback_from: Mutex::new(None),
            metrics: self.metrics.clone(),
            cache: None,
        }
    }

    /// `GET /api/v1/models`.
    pub fn describe(&self) -> ModelsView {
        let price = |name: &str| {
            // Pico-dollars a token are dollars a million tokens times 10^6.
            let per_million = |pico: u64| pico as f64 / 1e6;
            self.prices.price(name).map(|p| PriceView {
                input_per_million: per_million(p.rates.input),
                output_per_million: per_million(p.rates.output),
                cached_input_per_million: per_million(p.rates.cached_input),
            })
        };
        let view = |tier: Option<Tier>, name: &str, provider: &str| ModelView {
            name: name.to_string(),
            provider: provider.to_string(),
            tier,
            price: price(name),
        };
        let provider = self.provider.as_str();
        let mut models = vec![
            view(Some(Tier::Fast), &self.router.fast, provider),
            view(Some(Tier::Strong), &self.router.strong, provider),
        ];
        for name in &self.router.allowed {
            if name != &self.router.fast && name != &self.router.strong {
                models.push(view(Some(Tier::Named), name, provider));
            }
        }
        let rules = &self.router.rules;
        ModelsView {
            provider: provider.to_string(),
            routing: self.router.mode,
            fast: self.router.fast.clone(),
            strong: self.router.strong.clone(),
            allowed: self.router.choices(),
            fallback: self.fallback,
            fallback_provider: self.second.as_ref().map(|m| m.provider().to_string()),
            fallback_model: self.second.as_ref().map(|m| m.name().to_string()),
            models,
            rules: RulesView {
                applies: self.router.mode == Mode::Auto,
                keywords: rules.keywords().map(str::to_string).collect(),
                min_chars: rules.min_chars,
                min_tools: rules.min_tools,
            },
        }
    }
}

/// `GET /api/v1/models`: what answers, at what price, and how it is chosen.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelsView {
    /// `LLM_PROVIDER`.
    pub provider: String,
    /// `off`: the fast tier unless a request asks; `auto`: the rules choose.
    pub routing: Mode,
    pub fast: String,
    pub strong: String,
    /// What a request's `model` may be.
    pub allowed: Vec<String>,
    /// Whether a call that fails after its retries goes to the other tier.
    pub fallback: bool,
    /// The second provider tried last, if any.
    pub fallback_provider: Option<String>,
    pub fallback_model: Option<String>,
    pub models: Vec<ModelView>,
    pub rules: RulesView,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelView {
    pub name: String,
    pub provider: String,
    /// `fast`, `strong`, or `named` (an allowed name of neither tier).
    pub tier: Option<Tier>,
    /// US dollars per million tokens (the base rates; see README for long
    /// prompts); null when the model has no price.
    pub price: Option<PriceView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PriceView {
    pub input_per_million: f64,
    pub output_per_million: f64,
    pub cached_input_per_million: f64,
}

/// The rules of `MODEL_ROUTING=auto`: a request matching any goes to the
/// strong tier.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RulesView {
    /// Whether they apply (`MODEL_ROUTING=auto`).
    pub applies: bool,
    /// `ROUTING_KEYWORDS`: a trailing `*` matches a word's start; CJK
    /// keywords match anywhere.
    pub keywords: Vec<String>,
    /// `ROUTING_MIN_CHARS` (0: off).
    pub min_chars: usize,
    /// `ROUTING_MIN_TOOLS` (0: off).
    pub min_tools: usize,
}

/// One request's model: the route's model, falling back along the chain.
/// Made per request, so what it records is that request's.
pub struct Routed {
    chain: Vec<Arc<dyn Model>>,
    route: RouteInfo,
    fallback_from: Mutex<Option<String>>,
    metrics: Metrics,
    /// The response cache and the scope of this request's entries.
    cache: Option<(Arc<ResponseCache>, Arc<str>)>,
}

/// Errors another model may not share: the provider or the model was busy,
/// down or slow. A refusal of the request would be refused again.
fn falls_back(err: &ModelError) -> bool {
    matches!(err, ModelError::Unavailable { .. } | ModelError::Timeout(_))
}

impl Routed {
    /// Answers through `cache` (when there is one) in `principal`'s scope.
    pub fn with_cache(mut self, cache: Option<&Arc<ResponseCache>>, principal: &str) -> Routed {
        self.cache = cache.map(|cache| (cache.clone(), cache.scope(principal)));
        self
    }

    /// Whether the call so far has gone to a fallback model.
    fn fell(&self) -> bool {
        self.fallback_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn fell_back(&self, from: &dyn Model, to: &dyn Model) {
        tracing::warn!(
            from = from.name(),
            to = to.name(),
            "the model failed after its retries; the call goes to the next model"
        );
        self.metrics.inc(
            "model_fallbacks_total",
            "Model calls handed to another model after the first failed its retries, by model.",
            &[("from", from.name()), ("to", to.name())],
        );
        let mut first = self.fallback_from.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(from.name().to_string());
        }
    }

    /// Calls `call` on each model of the chain until one answers or fails
    /// with an error the next would share. When every model tried failed,
    /// the error is the first model's: the one the request was routed to,
    /// and the one a client can act on (a fallback that is misconfigured,
    /// say a strong model the key may not use, would otherwise hide it).
    async fn along<T, F, Fut>(&self, call: F) -> Result<T, ModelError>
    where
        F: Fn(Arc<dyn Model>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ModelError>>,
    {
        let mut first_error = None;
        let mut models = self.chain.iter().peekable();
        while let Some(model) = models.next() {
            let err = match call(model.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(err) => err,
            };
            // A fallback model's own refusal (a model the key may not use, a
            // name the provider does not know) says nothing of the request:
            // the next model may still answer. A safety block would recur.
            let passes_on = falls_back(&err) || (first_error.is_some() && !matches!(err, ModelError::Blocked(_)));
            match models.peek() {
                Some(next) if passes_on => {
                    self.fell_back(model.as_ref(), next.as_ref());
                    first_error.get_or_insert(err);
                }
                _ => {
                    if first_error.is_some() {
                        tracing::warn!(model = model.name(), %err, "the fallback model failed too");
                    }
                    return Err(first_error.unwrap_or(err));
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ModelError::Unavailable {
            message: "no model is configured".to_string(),
            retry_after: None,
        }))
    }
}

#[async_trait]
impl Model for Routed {
    fn name(&self) -> &str {
        self.chain.first().map_or(offline::MODEL_NAME, |m| m.name())
    }

    fn provider(&self) -> &'static str {
        self.chain.first().map_or("offline", |m| m.provider())
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let call = || async move {
            let answer = self.along(|model| async move { model.generate(request).await }).await?;
            Ok((answer, !self.fell()))
        };
        match &self.cache {
            None => call().await.map(|(answer, _)| answer),
            Some((cache, scope)) => {
                let key = cache::key(scope, self.provider(), self.name(), request);
                cache.generate(scope, key, call).await
            }
        }
    }

    /// Falls back only when a model fails before its stream opens.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let key = self
            .cache
            .as_ref()
            .map(|(_, scope)| cache::key(scope, self.provider(), self.name(), &request));
        let request = &request;
        let open = || async move {
            let stream = self
                .along(|model| async move { model.stream(request.clone()).await })
                .await?;
            Ok((stream, !self.fell()))
        };
        match (&self.cache, key) {
            (Some((cache, scope)), Some(key)) => cache.stream(scope, key, open).await,
            _ => open().await.map(|(stream, _)| stream),
        }
    }

    fn routing(&self) -> Option<Routing> {
        Some(Routing {
            route: self.route.clone(),
            fallback_from: self
                .fallback_from
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        })
    }
}
