//! A queued research (`TaskKind::Research`, always queued), fanned out as
//! a multi-agent run is (`worker::fan`): its first claim plans the
//! subtopics and makes each one's researcher a child task
//! (`TaskKind::Subtopic`), which any worker may take; the child that ends
//! last queues the research again, whose next claim numbers the sources
//! and writes (analyst, writer, critic, revisions).

use serde::{Deserialize, Serialize};

use super::child::Ran;
use super::fan::{Parent, Step};
use super::{Disposition, StillHeld, Worker};
use crate::agent::{Checkpoint, RunError};
use crate::llm::{ModelError, Spend};
use crate::multi::{Spent, SubtaskStatus};
use crate::research::{
    self, FannedResearch, Planned, ResearchEvent, ResearchInput, ResearchRun, Researched, SubtopicResult,
};
use crate::store::{Finished, TaskKind, TaskRecord, child_id};
use crate::tools::search::TOOL_NAME as SEARCH;

/// What a research's child keeps in its `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtopicInput {
    /// The research's topic, which the researcher is told it serves.
    pub topic: String,
    pub depth: research::Depth,
    pub subtopic: Planned,
}

impl Worker {
    pub(super) async fn run_research(&self, task: TaskRecord) -> Disposition {
        let input = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<ResearchInput>(input).ok());
        let Some(input) = input.filter(|i| (1..=research::MAX_SUBTOPICS_CAP).contains(&i.max_subtopics)) else {
            return self
                .fail(&task, "the stored research cannot be read; submit it again", None)
                .await;
        };
        self.run_parent(task, Parent::Research(input)).await
    }

    /// One claim of a research: plan (the first time) and make the
    /// researchers, or write once they have all ended.
    pub(super) async fn research_step(
        &self,
        task: &TaskRecord,
        input: ResearchInput,
        roles: &crate::multi::RoutedRoles<'_>,
        spent: &Spent,
        on_event: &(dyn Fn(serde_json::Value) + Send + Sync),
    ) -> Result<Step, RunError> {
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task.task_id,
            attempt: task.attempts,
        };
        let run = ResearchRun {
            topic: task.task.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            depth: input.depth,
            max_subtopics: input.max_subtopics,
            kept: None,
        };
        let fanned = match input.fanned.clone() {
            Some(fanned) => fanned,
            None => {
                let run = ResearchRun {
                    kept: self.kept_subtopics(task).await,
                    ..run.clone()
                };
                let subtopics = research::plan_for(roles, &run, spent, Some(&held), on_event).await?;
                FannedResearch {
                    subtopics,
                    spent: Spend::default(),
                }
            }
        };
        loop {
            let records = match self.child_records(task, fanned.subtopics.len()).await {
                Ok(records) => records,
                Err(err) => return Ok(Step::Store(err)),
            };
            let ready: Vec<usize> = (0..records.len()).filter(|&i| records[i].is_none()).collect();
            let in_flight = records.iter().flatten().any(|child| child.state.finished().is_none());
            if !ready.is_empty() || in_flight {
                crate::agent::pass(Some(&held)).await?;
                let children = ready
                    .into_iter()
                    .map(|i| subtopic_child(task, input.depth, &fanned.subtopics[i], i))
                    .collect();
                let mut next = fanned.clone();
                next.spent += spent.total();
                let stored = ResearchInput {
                    fanned: Some(next),
                    ..input.clone()
                };
                let stored = serde_json::to_value(&stored).unwrap_or_default();
                match self.wave(task, &stored, children, spent).await {
                    Some(step) => return step,
                    None => continue,
                }
            }
            let mut kept_usage = fanned.spent;
            let results: Vec<(SubtopicResult, Option<ModelError>)> = fanned
                .subtopics
                .iter()
                .zip(&records)
                .map(|(planned, child)| {
                    let result = researched(planned, child.as_ref());
                    kept_usage += result.usage;
                    let failure = result
                        .error
                        .clone()
                        .map(|message| ModelError::Upstream { status: None, message });
                    (result, failure)
                })
                .collect();
            let researched = Researched { results, kept_usage };
            let result = research::write(roles, &run, spent, researched, Some(&held), on_event).await?;
            let model = result.model.clone();
            let result = serde_json::to_value(&result).unwrap_or_default();
            return Ok(Step::Answered { result, model });
        }
    }

    /// Runs a research's child: one subtopic's researcher.
    pub(super) async fn run_subtopic(&self, task: TaskRecord) -> Disposition {
        let input = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<SubtopicInput>(input).ok());
        let Some(input) = input else {
            return self.cannot_run(&task, "the stored subtopic cannot be read").await;
        };
        let roles = match self.roles_for(&task) {
            Ok(roles) => roles,
            Err(refused) => return self.cannot_run(&task, &refused).await,
        };
        let run = ResearchRun {
            topic: input.topic.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            depth: input.depth,
            max_subtopics: 1,
            kept: None,
        };
        let search_only = self.tools.only(&[SEARCH.to_string()]);
        let spent = Spent::default();
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task.task_id,
            attempt: task.attempts,
        };
        let (roles, run, spent_ref, held, input, tools) = (&roles, &run, &spent, &held, &input, &search_only);
        self.run_child(&task, &spent, |events| async move {
            let on_event = move |event: serde_json::Value| {
                let _ = events.send(event);
            };
            let checkpoint: &dyn Checkpoint = held;
            let (result, failure) = research::research_one(
                roles,
                tools,
                run,
                spent_ref,
                &input.subtopic,
                Some(checkpoint),
                &on_event,
            )
            .await?;
            let finished = ResearchEvent::SubtopicFinished(Box::new(result.clone()));
            Ok(Ran {
                finished: serde_json::to_value(&finished).unwrap_or_default(),
                result: serde_json::to_value(&result).unwrap_or_default(),
                failure,
            })
        })
        .await
    }

    /// The subtopics an earlier claim of `task` planned (its last
    /// `subtopics` event), kept when it stopped before fanning out (its
    /// worker died, the store failed): not paid for again.
    async fn kept_subtopics(&self, task: &TaskRecord) -> Option<(Vec<Planned>, String)> {
        let events = self.earlier_as::<ResearchEvent>(task).await?;
        events.into_iter().rev().find_map(|event| match event {
            ResearchEvent::Subtopics { subtopics, origin } => Some((subtopics, origin)),
            _ => None,
        })
    }
}

/// The child that researches subtopic `index` of `research`: its owner,
/// session, model and cache choice.
fn subtopic_child(research: &TaskRecord, depth: research::Depth, subtopic: &Planned, index: usize) -> TaskRecord {
    let input = SubtopicInput {
        topic: research.task.clone(),
        depth,
        subtopic: subtopic.clone(),
    };
    TaskRecord {
        kind: TaskKind::Subtopic,
        model: research.model.clone(),
        input: Some(serde_json::to_value(&input).unwrap_or_default()),
        cache: research.cache,
        parent: Some(research.task_id.clone()),
        ..TaskRecord::queued(
            child_id(&research.task_id, index),
            research.owner.clone(),
            subtopic.title.clone(),
            research.session_id.clone(),
            depth.max_steps(),
        )
    }
}

/// A child's subtopic result once it has ended: its own (it completed, or
/// its model failed), else one that says why it did not finish.
fn researched(planned: &Planned, child: Option<&TaskRecord>) -> SubtopicResult {
    let ended = child.and_then(|child| child.state.finished());
    let own = ended
        .and_then(Finished::result)
        .and_then(|result| serde_json::from_value::<SubtopicResult>(result.clone()).ok());
    own.unwrap_or_else(|| SubtopicResult {
        title: planned.title.clone(),
        query: planned.query.clone(),
        status: SubtaskStatus::Failed,
        findings: None,
        error: Some(match ended {
            Some(Finished::Failed(error)) => error.clone(),
            Some(Finished::Cancelled) => "cancelled".to_string(),
            _ => "its result cannot be read".to_string(),
        }),
        sources: Vec::new(),
        steps: Vec::new(),
        usage: Spend::default(),
    })
}
