//! What a run spends, counted as its model answers.
//!
//! A failed outcome carries no `usage` of its own, so a run that fails
//! after paid calls must still know what they spent (to charge it with the
//! failure, or with the release of a retried attempt); and a run that calls
//! several models (a fallback, a multi-agent run's tiers) charges each
//! model's calls to that model.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::llm::{Model, ModelError, ModelRequest, ModelResponse, ModelStream, Spend};
use crate::store::Charge;

/// What a run spent so far, every call of it by model, and the model of
/// the latest answer.
#[derive(Debug, Default)]
pub struct Spent(Mutex<ByModel>);

#[derive(Debug, Default)]
struct ByModel {
    spends: Vec<(String, Spend)>,
    last: Option<String>,
}

impl Spent {
    fn add(&self, answer: &ModelResponse) {
        let mut spent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match spent.spends.iter_mut().find(|(model, _)| *model == answer.model) {
            Some((_, spend)) => spend.add(answer),
            None => spent.spends.push((answer.model.clone(), Spend::of(answer))),
        }
        spent.last = Some(answer.model.clone());
    }

    pub fn total(&self) -> Spend {
        let spent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        spent.spends.iter().fold(Spend::default(), |mut sum, (_, spend)| {
            sum += *spend;
            sum
        })
    }

    /// The spend as one charge, today: every model's calls on its own
    /// day record, the request under the latest answer's model; `None`
    /// when no call answered.
    pub fn charge(&self) -> Option<Charge> {
        let spent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Charge::by_models(&spent.spends, spent.last.as_deref()?)
    }
}

/// A model whose answers count into a [`Spent`] (a run's), and into a
/// second one when given (one subtask's within the run).
pub struct Tally<'a> {
    model: &'a dyn Model,
    spent: &'a Spent,
    also: Option<&'a Spent>,
}

impl<'a> Tally<'a> {
    pub fn new(model: &'a dyn Model, spent: &'a Spent) -> Tally<'a> {
        Tally {
            model,
            spent,
            also: None,
        }
    }

    /// Counts into `other` too.
    pub fn also(self, other: &'a Spent) -> Tally<'a> {
        Tally {
            also: Some(other),
            ..self
        }
    }
}

#[async_trait]
impl Model for Tally<'_> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn provider(&self) -> &'static str {
        self.model.provider()
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let answer = self.model.generate(request).await?;
        self.spent.add(&answer);
        if let Some(also) = self.also {
            also.add(&answer);
        }
        Ok(answer)
    }

    /// Not counted: a run never streams (the chat function, which does,
    /// counts its own turns).
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        self.model.stream(request).await
    }

    /// The route of the model it counts for: the answer reports it.
    fn routing(&self) -> Option<crate::llm::routed::Routing> {
        self.model.routing()
    }
}
