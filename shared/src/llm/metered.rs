//! Counts model calls, their outcome and their tokens for `/metrics`, around
//! any [`Model`], so no provider has to remember to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{Model, ModelError, ModelRequest, ModelResponse, ModelStream, StreamEvent, Usage};
use crate::http::metrics::Metrics;

pub(crate) struct Metered {
    inner: Arc<dyn Model>,
    metrics: Metrics,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn Model>, metrics: Metrics) -> Metered {
        Metered { inner, metrics }
    }
}

fn outcome(result: &Result<ModelResponse, ModelError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ModelError::Unavailable { .. }) => "unavailable",
        Err(ModelError::Upstream { .. }) => "upstream_error",
        Err(ModelError::Timeout(_)) => "timeout",
        Err(ModelError::Blocked(_)) => "blocked",
    }
}

fn record(metrics: &Metrics, provider: &str, model: &str, outcome: &str, usage: Option<Usage>) {
    metrics.inc(
        "model_calls_total",
        "Model calls by provider, model and outcome.",
        &[("provider", provider), ("model", model), ("outcome", outcome)],
    );
    if let Some(usage) = usage {
        let help = "Tokens reported by the model, by direction.";
        metrics.inc_by(
            "model_tokens_total",
            help,
            &[("provider", provider), ("model", model), ("direction", "input")],
            usage.input_tokens,
        );
        metrics.inc_by(
            "model_tokens_total",
            help,
            &[("provider", provider), ("model", model), ("direction", "output")],
            usage.output_tokens,
        );
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
        let result = self.inner.generate(request).await;
        let usage = result.as_ref().ok().map(|r| r.usage);
        record(&self.metrics, self.provider(), self.name(), outcome(&result), usage);
        result
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let provider = self.provider();
        let model = self.name().to_string();
        let stream = match self.inner.stream(request).await {
            Ok(s) => s,
            Err(err) => {
                record(&self.metrics, provider, &model, outcome(&Err(err.clone())), None);
                return Err(err);
            }
        };
        // Record once, when the stream ends (or fails); a stream dropped
        // before its end (its reader stopped) counts as "cancelled".
        let guard = StreamRecord {
            metrics: self.metrics.clone(),
            provider,
            model,
            done: AtomicBool::new(false),
        };
        Ok(stream
            .map(move |item| {
                match &item {
                    Ok(StreamEvent::Done(r)) => guard.finish("ok", Some(r.usage)),
                    Err(e) => guard.finish(outcome(&Err(e.clone())), None),
                    Ok(StreamEvent::Delta(_)) => {}
                }
                item
            })
            .boxed())
    }
}

struct StreamRecord {
    metrics: Metrics,
    provider: &'static str,
    model: String,
    done: AtomicBool,
}

impl StreamRecord {
    fn finish(&self, outcome: &str, usage: Option<Usage>) {
        if !self.done.swap(true, Ordering::Relaxed) {
            record(&self.metrics, self.provider, &self.model, outcome, usage);
        }
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        self.finish("cancelled", None);
    }
}
