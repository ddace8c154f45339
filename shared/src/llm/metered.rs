//! Counts model calls, their outcome and their tokens for `/metrics`, and
//! prices each answer ([`ModelResponse::cost`]), around any [`Model`], so no
//! provider has to remember to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures_util::StreamExt;
use tracing::Instrument;

use super::prices::PriceTable;
use super::{Model, ModelError, ModelRequest, ModelResponse, ModelStream, StreamEvent, Usage};
use crate::http::metrics::{Counter, Metrics, Summary};

pub(crate) struct Metered {
    inner: Arc<dyn Model>,
    series: Arc<Series>,
    prices: Arc<PriceTable>,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn Model>, metrics: Metrics, prices: PriceTable) -> Metered {
        let series = Arc::new(Series::new(&metrics, inner.provider(), inner.name()));
        Metered {
            inner,
            series,
            prices: Arc::new(prices),
        }
    }
}

/// `response` with its cost at `prices`, by the model that answered.
fn priced(prices: &PriceTable, mut response: ModelResponse) -> ModelResponse {
    response.cost = prices.cost(&response.model, &response.usage);
    response
}

/// How a model call ended, as the `outcome` label says it.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Unavailable,
    UpstreamError,
    Timeout,
    Blocked,
    /// A stream dropped before its end (its reader stopped).
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Unavailable,
        Outcome::UpstreamError,
        Outcome::Timeout,
        Outcome::Blocked,
        Outcome::Cancelled,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unavailable => "unavailable",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::Blocked => "blocked",
            Outcome::Cancelled => "cancelled",
        }
    }
}

fn outcome(result: &Result<ModelResponse, ModelError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(err) => error_outcome(err),
    }
}

fn error_outcome(err: &ModelError) -> Outcome {
    match err {
        ModelError::Unavailable { .. } => Outcome::Unavailable,
        ModelError::Upstream { .. } => Outcome::UpstreamError,
        ModelError::Timeout(_) => Outcome::Timeout,
        ModelError::Blocked(_) => Outcome::Blocked,
    }
}

/// The series one model's calls are counted in, registered once: a call
/// is counted with atomic adds, with no lock and no allocation.
struct Series {
    /// By [`Outcome`], in the order of [`Outcome::ALL`].
    calls: [Counter; Outcome::ALL.len()],
    input_tokens: Counter,
    output_tokens: Counter,
    cached_tokens: Counter,
    thinking_tokens: Counter,
    /// OpenTelemetry's `gen_ai.client.token.usage`: tokens per call, by
    /// `gen_ai.token.type`.
    input_per_call: Summary,
    output_per_call: Summary,
    cost: Counter,
}

impl Series {
    fn new(metrics: &Metrics, provider: &str, model: &str) -> Series {
        let tokens = |kind| {
            metrics.register_counter(
                "model_tokens_total",
                "Tokens reported by the model, by kind: input and output; cached (part of input) and \
                 thinking (part of output).",
                &[("provider", provider), ("model", model), ("kind", kind)],
            )
        };
        let per_call = |kind| {
            metrics.register_summary(
                "gen_ai_client_token_usage",
                "Tokens per model call (OpenTelemetry gen_ai.client.token.usage).",
                &[
                    ("gen_ai_provider_name", provider),
                    ("gen_ai_request_model", model),
                    ("gen_ai_token_type", kind),
                ],
            )
        };
        Series {
            calls: Outcome::ALL.map(|outcome| {
                metrics.register_counter(
                    "model_calls_total",
                    "Model calls by provider, model and outcome.",
                    &[("provider", provider), ("model", model), ("outcome", outcome.label())],
                )
            }),
            input_tokens: tokens("input"),
            output_tokens: tokens("output"),
            cached_tokens: tokens("cached"),
            thinking_tokens: tokens("thinking"),
            input_per_call: per_call("input"),
            output_per_call: per_call("output"),
            cost: metrics.register_dollars(
                "model_cost_usd_total",
                "What the model calls cost in US dollars at the configured prices (unpriced calls \
                 not included).",
                &[("provider", provider), ("model", model)],
            ),
        }
    }

    fn record(&self, outcome: Outcome, answered: Option<&ModelResponse>) {
        self.calls[outcome as usize].inc();
        if let Some(response) = answered {
            let usage: &Usage = &response.usage;
            self.input_tokens.inc_by(usage.input_tokens);
            self.output_tokens.inc_by(usage.output_tokens);
            self.cached_tokens.inc_by(usage.cached_tokens);
            self.thinking_tokens.inc_by(usage.thinking_tokens);
            self.input_per_call.observe(usage.input_tokens);
            self.output_per_call.observe(usage.output_tokens);
            if let Some(cost) = response.cost {
                self.cost.inc_by(cost.pico());
            }
        }
    }
}

#[async_trait]
impl Model for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let span = self.span();
        let result = self
            .inner
            .generate(request)
            .instrument(span.clone())
            .await
            .map(|response| priced(&self.prices, response));
        let outcome = outcome(&result);
        self.series.record(outcome, result.as_ref().ok());
        traced(&span, outcome, result.as_ref().ok());
        result
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let span = self.span();
        let stream = match self.inner.stream(request).instrument(span.clone()).await {
            Ok(s) => s,
            Err(err) => {
                let outcome = error_outcome(&err);
                self.series.record(outcome, None);
                traced(&span, outcome, None);
                return Err(err);
            }
        };
        // Record once, when the stream ends (or fails); a stream dropped
        // before its end (its reader stopped) counts as "cancelled".
        let guard = StreamRecord {
            series: self.series.clone(),
            done: AtomicBool::new(false),
            span,
        };
        let prices = self.prices.clone();
        Ok(stream
            .map(move |item| match item {
                Ok(StreamEvent::Done(r)) => {
                    let r = priced(&prices, r);
                    guard.finish(Outcome::Ok, Some(&r));
                    Ok(StreamEvent::Done(r))
                }
                Err(e) => {
                    guard.finish(error_outcome(&e), None);
                    Err(e)
                }
                delta @ Ok(StreamEvent::Delta(_)) => delta,
            })
            .boxed())
    }
}

struct StreamRecord {
    series: Arc<Series>,
    done: AtomicBool,
    /// The call's span, open until the stream ends.
    span: tracing::Span,
}

impl StreamRecord {
    fn finish(&self, outcome: Outcome, answered: Option<&ModelResponse>) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.series.record(outcome, answered);
            traced(&self.span, outcome, answered);
        }
    }
}

impl Metered {
    /// A model call's span, named and described as OpenTelemetry's GenAI
    /// conventions say (`chat MODEL`, `gen_ai.*`); `DEBUG`, so it costs
    /// nothing unless traces are exported.
    fn span(&self) -> tracing::Span {
        let model = self.inner.name();
        tracing::debug_span!(
            "chat",
            otel.name = %format_args!("chat {model}"),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = provider_name(self.inner.provider()),
            gen_ai.request.model = model,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        )
    }
}

/// The conventions' names of the providers.
fn provider_name(provider: &'static str) -> &'static str {
    match provider {
        "gemini" => "gcp.gemini",
        "vertex" => "gcp.vertex_ai",
        other => other,
    }
}

/// What a model call's span records at its end: the answering model and
/// the tokens, or why it failed.
fn traced(span: &tracing::Span, outcome: Outcome, answered: Option<&ModelResponse>) {
    if span.is_disabled() {
        return;
    }
    if let Some(response) = answered {
        span.record("gen_ai.response.model", response.model.as_str());
        span.record("gen_ai.usage.input_tokens", response.usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", response.usage.output_tokens);
    } else {
        crate::telemetry::failed(span, outcome.label());
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, None);
    }
}
