//! A research's parts: the subtopics (`plan_for`), one researcher a
//! subtopic (`research_one`, each run as a child task by `worker::research`,
//! in parallel on any workers), then the writing (`write`: analyst,
//! writer, critic, and at `deep` one revision).
//!
//! As in a multi-agent run, the planner is repaired once and then falls
//! back (to the topic as its one subtopic), a researcher whose model
//! fails is reported and not fatal, and only a research in which no
//! researcher completed fails as a whole. Every call counts into `spent`.

use serde::Serialize;

use super::prompts::{self, Planned, WriterInput, WriterSubtopic};
use super::sources::{self, Sources};
use super::{
    ANALYST_INSTRUCTION, CRITIC_INSTRUCTION, Depth, ResearchResult, Section, SubtopicResult, WRITER_INSTRUCTION,
};
use crate::agent::{self, Checkpoint, RunError};
use crate::llm::{ModelError, Spend};
use crate::multi::{self, OnEvent, Role, Roles, Spent, SubtaskStatus, SubtaskStep};
use crate::task::Tally;
use crate::tools::Registry;

/// What to research.
#[derive(Debug, Clone)]
pub struct ResearchRun {
    pub topic: String,
    /// The session the researchers' tool context belongs to.
    pub session_key: String,
    pub depth: Depth,
    /// Checked by the caller: 1 to [`super::MAX_SUBTOPICS_CAP`].
    pub max_subtopics: usize,
    /// The subtopics an earlier attempt planned, and how (its `subtopics`
    /// event): kept, not paid for again.
    pub kept: Option<(Vec<Planned>, String)>,
}

/// What a research reports as it goes (events named by `type`; a
/// researcher's steps are `step` events with their `subtask`, the
/// subtopic's title).
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResearchEvent {
    /// The subtopics the research covers (title and query), and whether
    /// the planner's first answer gave them (`planned`), its repair
    /// (`repaired`), or neither (`fallback`: the topic itself).
    Subtopics {
        subtopics: Vec<Planned>,
        origin: String,
    },
    SubtopicStarted {
        title: String,
    },
    SubtopicFinished(Box<SubtopicResult>),
    /// A stage of the writing: `analysis`, `draft`, `critique`, `revision`.
    Stage {
        stage: String,
    },
}

/// The event names of [`ResearchEvent`]s.
pub const EVENT_NAMES: [&str; 4] = ["subtopics", "subtopic_started", "subtopic_finished", "stage"];

fn emit(on_event: OnEvent<'_>, event: &ResearchEvent) {
    on_event(serde_json::to_value(event).unwrap_or_default());
}

/// The subtopics a research covers: those an earlier attempt planned, else
/// the planner's; reported as a `subtopics` event either way.
pub(crate) async fn plan_for(
    roles: &dyn Roles,
    run: &ResearchRun,
    spent: &Spent,
    checkpoint: Option<&dyn Checkpoint>,
    on_event: OnEvent<'_>,
) -> Result<Vec<Planned>, RunError> {
    let (subtopics, origin) = match run.kept.clone() {
        Some(kept) => kept,
        None => plan(roles, run, spent, checkpoint).await?,
    };
    emit(
        on_event,
        &ResearchEvent::Subtopics {
            subtopics: subtopics.clone(),
            origin,
        },
    );
    Ok(subtopics)
}

/// Every subtopic researched, for the writing.
pub(crate) struct Researched {
    /// In plan order, with the error of each that failed.
    pub results: Vec<(SubtopicResult, Option<ModelError>)>,
    /// What calls counted elsewhere spent (the researchers, the planner in
    /// an earlier claim): added to the result's `usage`.
    pub kept_usage: Spend,
}

/// The writing, once every subtopic was researched: sources numbered
/// across the subtopics, analyst, writer, critic and the revisions.
pub(crate) async fn write(
    roles: &dyn Roles,
    run: &ResearchRun,
    spent: &Spent,
    researched: Researched,
    checkpoint: Option<&dyn Checkpoint>,
    on_event: OnEvent<'_>,
) -> Result<ResearchResult, RunError> {
    let Researched { results, kept_usage } = researched;
    let mut subtopics = Vec::new();
    let mut failures = Vec::new();
    let mut sources = Sources::default();
    for (mut result, failure) in results {
        result.sources = sources.add(&result.steps);
        failures.extend(failure);
        subtopics.push(result);
    }
    if !subtopics.iter().any(|s| s.status == SubtaskStatus::Completed) {
        return Err(RunError::Model(failures.into_iter().next().unwrap_or_else(|| {
            ModelError::Upstream {
                status: None,
                message: "no subtopic could be researched".to_string(),
            }
        })));
    }

    let mut input = WriterInput {
        topic: run.topic.clone(),
        subtopics: subtopics
            .iter()
            .map(|s| WriterSubtopic {
                title: s.title.clone(),
                findings: s.findings.clone(),
                sources: s.sources.clone(),
            })
            .collect(),
        sources: sources.into_vec(),
        analysis: None,
        report: None,
        critique: None,
    };
    let known = input.sources.len();

    agent::pass(checkpoint).await?;
    emit(on_event, &stage("analysis"));
    let (analysis, _) = ask(roles, Role::Analyst, spent, ANALYST_INSTRUCTION, &input).await?;
    input.analysis = Some(analysis);

    agent::pass(checkpoint).await?;
    emit(on_event, &stage("draft"));
    let (draft, mut model) = ask(roles, Role::Writer, spent, WRITER_INSTRUCTION, &input).await?;
    let mut report = sources::keep_known(&draft, known);
    input.report = Some(report.clone());

    agent::pass(checkpoint).await?;
    emit(on_event, &stage("critique"));
    let (critique, _) = ask(roles, Role::Critic, spent, CRITIC_INSTRUCTION, &input).await?;

    let mut revised = false;
    for _ in 0..run.depth.revisions() {
        agent::pass(checkpoint).await?;
        emit(on_event, &stage("revision"));
        input.critique = Some(critique.clone());
        let (text, by) = ask(roles, Role::Writer, spent, WRITER_INSTRUCTION, &input).await?;
        report = sources::keep_known(&text, known);
        input.report = Some(report.clone());
        model = by;
        revised = true;
    }

    Ok(ResearchResult {
        sections: sections(&report),
        report,
        sources: input.sources,
        subtopics,
        critique,
        revised,
        usage: {
            let mut usage = spent.total();
            usage += kept_usage;
            usage
        },
        model,
    })
}

fn stage(stage: &str) -> ResearchEvent {
    ResearchEvent::Stage {
        stage: stage.to_string(),
    }
}

/// The subtopics: the planner's, repaired once, else the topic itself;
/// with where they came from (`planned`, `repaired`, `fallback`).
async fn plan(
    roles: &dyn Roles,
    run: &ResearchRun,
    spent: &Spent,
    checkpoint: Option<&dyn Checkpoint>,
) -> Result<(Vec<Planned>, String), RunError> {
    let request = prompts::planner_request(&run.topic, run.max_subtopics);
    let first = multi::ask(roles, Role::Planner, spent, &request).await?;
    let (planned, origin) = match prompts::parse_subtopics(&first.text(), run.max_subtopics) {
        Ok(planned) => (planned, "planned"),
        Err(why) => {
            agent::pass(checkpoint).await?;
            let mut repair = request;
            repair.contents.push(first.content);
            repair.contents.push(crate::llm::Content::user_text(format!(
                "That answer cannot be used: {why}. Answer again with only the JSON, following the schema."
            )));
            let second = multi::ask(roles, Role::Planner, spent, &repair).await?;
            match prompts::parse_subtopics(&second.text(), run.max_subtopics) {
                Ok(planned) => (planned, "repaired"),
                Err(_) => (
                    vec![Planned {
                        title: run.topic.trim().to_string(),
                        query: run.topic.trim().to_string(),
                    }],
                    "fallback",
                ),
            }
        }
    };
    Ok((planned, origin.to_string()))
}

/// One researcher: an agent run with only the search tool, its searches
/// bounded by the depth. A model failure is a failed subtopic (and the
/// error), an interruption ends the research.
pub(crate) async fn research_one(
    roles: &dyn Roles,
    tools: &Registry,
    run: &ResearchRun,
    spent: &Spent,
    planned: &Planned,
    checkpoint: Option<&dyn Checkpoint>,
    on_event: OnEvent<'_>,
) -> Result<(SubtopicResult, Option<ModelError>), RunError> {
    emit(
        on_event,
        &ResearchEvent::SubtopicStarted {
            title: planned.title.clone(),
        },
    );
    let model = roles.model(Role::Researcher);
    let own = Spent::default();
    let counted = Tally::new(model.as_ref(), spent).also(&own);
    let agent_run = agent::Run {
        task: prompts::researcher_task(planned),
        session_key: run.session_key.clone(),
        max_steps: run.depth.max_steps(),
        system_instruction: Some(prompts::researcher_instruction(&run.topic, run.depth)),
    };
    let on_step = |step: &agent::Step| {
        let step = SubtaskStep {
            subtask: planned.title.clone(),
            step: step.clone(),
        };
        on_event(serde_json::to_value(&step).unwrap_or_default());
    };
    let outcome = agent::run_checked(&counted, tools, &agent_run, &on_step, checkpoint).await;
    let mut result = SubtopicResult {
        title: planned.title.clone(),
        query: planned.query.clone(),
        status: SubtaskStatus::Completed,
        findings: None,
        error: None,
        sources: Vec::new(),
        steps: Vec::new(),
        usage: Spend::default(),
    };
    let failure = match outcome {
        Ok(outcome) => {
            result.findings = Some(outcome.response);
            result.steps = outcome.steps;
            None
        }
        Err(RunError::Model(err)) => {
            result.status = SubtaskStatus::Failed;
            result.error = Some(err.to_string());
            Some(err)
        }
        Err(interrupted) => return Err(interrupted),
    };
    result.usage = own.total();
    Ok((result, failure))
}

/// One call of a writing role: (its text, its model).
async fn ask(
    roles: &dyn Roles,
    role: Role,
    spent: &Spent,
    instruction: &str,
    input: &WriterInput,
) -> Result<(String, String), RunError> {
    let answer = multi::ask(roles, role, spent, &prompts::request(instruction, input)).await?;
    Ok((answer.text(), answer.model))
}

/// The report's `## ` sections, each with what follows its heading.
pub fn sections(report: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in report.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            out.push(Section {
                title: title.trim().to_string(),
                content: String::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.content.push_str(line);
            section.content.push('\n');
        }
    }
    for section in &mut out {
        section.content = section.content.trim().to_string();
    }
    out
}
