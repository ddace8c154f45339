//! The research flow against a scripted model: the planner's answers are
//! set per test, a researcher searches the built-in corpus (or fails when
//! its subtopic says FAIL), and the writer cites a source that exists and
//! one that does not.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::agent::RunError;
use crate::llm::{Content, FunctionCall, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Part, Usage};
use crate::multi::{Role, Roles, Spent, SubtaskStatus};
use crate::tools::Registry;

#[derive(Clone)]
struct Scripted(Arc<Script>);

struct Script {
    plans: Mutex<Vec<String>>,
    calls: Mutex<Vec<Role>>,
}

struct Playing(Arc<Script>, Role);

impl Roles for Scripted {
    fn model(&self, role: Role) -> Box<dyn Model> {
        Box::new(Playing(self.0.clone(), role))
    }
}

fn scripted(plans: &[&str]) -> Scripted {
    Scripted(Arc::new(Script {
        plans: Mutex::new(plans.iter().rev().map(|p| p.to_string()).collect()),
        calls: Mutex::new(Vec::new()),
    }))
}

fn answer(content: Content) -> ModelResponse {
    ModelResponse {
        content,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 2,
            ..Usage::default()
        },
        model: "scripted".into(),
        cost: None,
        cache_hit: None,
    }
}

#[async_trait]
impl Model for Playing {
    fn name(&self) -> &str {
        "scripted"
    }

    fn provider(&self) -> &'static str {
        "test"
    }

    async fn generate(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        self.0.calls.lock().expect("calls").push(self.1);
        let last = request.contents.last().map(|c| c.text()).unwrap_or_default();
        let text = match self.1 {
            Role::Planner => self.0.plans.lock().expect("plans").pop().unwrap_or_default(),
            Role::Researcher if last.contains("FAIL") => {
                return Err(ModelError::Upstream {
                    status: Some(400),
                    message: "refused".into(),
                });
            }
            // First a search for the subtopic, then findings.
            Role::Researcher if request.contents.len() == 1 => {
                let query = last.trim_start_matches("Search for ").to_string();
                return Ok(answer(Content {
                    role: Some(crate::llm::Role::Model),
                    parts: vec![Part::FunctionCall(FunctionCall {
                        id: None,
                        name: "search_web".into(),
                        args: json!({ "query": query }),
                    })],
                    raw: None,
                }));
            }
            Role::Researcher => "found things".into(),
            Role::Writer => "# Report\n\n## Part\n\nTrue [1], invented [99], both [1, 99].\n".into(),
            _ => "ok".into(),
        };
        Ok(answer(Content::model_text(text)))
    }

    async fn stream(&self, _request: ModelRequest) -> Result<ModelStream, ModelError> {
        Err(ModelError::Blocked("no streams here".into()))
    }
}

fn tools() -> Registry {
    let index = Arc::new(crate::tools::search::SearchIndex::builtin());
    Registry::new().with(Arc::new(crate::tools::search::Search::new(index)))
}

fn a_run(depth: Depth) -> ResearchRun {
    ResearchRun {
        topic: "cold starts".into(),
        session_key: "key:a|".into(),
        depth,
        max_subtopics: 3,
        kept: None,
    }
}

/// A research's parts in one process, as a fanned-out research runs them
/// across its claims and children: the subtopics, each researched (with
/// only the search tool), then the writing.
async fn run(
    roles: &dyn Roles,
    tools: &Registry,
    run: &ResearchRun,
    spent: &Spent,
    checkpoint: Option<&dyn crate::agent::Checkpoint>,
    on_event: crate::multi::OnEvent<'_>,
) -> Result<ResearchResult, RunError> {
    let planned = plan_for(roles, run, spent, checkpoint, on_event).await?;
    let search_only = tools.only(&[crate::tools::search::TOOL_NAME.to_string()]);
    let mut results = Vec::new();
    for subtopic in &planned {
        results.push(research_one(roles, &search_only, run, spent, subtopic, checkpoint, on_event).await?);
    }
    let researched = Researched {
        results,
        kept_usage: Default::default(),
    };
    write(roles, run, spent, researched, checkpoint, on_event).await
}

#[tokio::test]
async fn a_failed_researcher_is_reported_and_invented_citations_are_taken_out() {
    let plan = json!({"subtopics": [
        {"title": "Cold start", "query": "cold start"},
        {"title": "Broken", "query": "FAIL"}
    ]})
    .to_string();
    let model = scripted(&[&plan]);
    let result = run(
        &model,
        &tools(),
        &a_run(Depth::Standard),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("a report");
    let statuses: Vec<SubtaskStatus> = result.subtopics.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [SubtaskStatus::Completed, SubtaskStatus::Failed]);
    assert!(!result.subtopics[0].sources.is_empty());
    assert!(result.subtopics[1].sources.is_empty());
    assert_eq!(result.report, "# Report\n\n## Part\n\nTrue [1], invented , both [1].\n");
    assert_eq!(sources::citations(&result.report), vec![1]);
    assert_eq!(result.sections.len(), 1);
    assert!(!result.revised);
    // Planner, two researcher calls and one failed one, analyst, writer, critic.
    assert_eq!(result.usage.model_calls, 6);
}

#[tokio::test]
async fn a_planner_that_fails_twice_researches_the_topic_and_deep_revises() {
    let model = scripted(&["nonsense", "{\"subtopics\": []}"]);
    let result = run(&model, &tools(), &a_run(Depth::Deep), &Spent::default(), None, &|_| {})
        .await
        .expect("a report");
    assert_eq!(result.subtopics.len(), 1);
    assert_eq!(result.subtopics[0].title, "cold starts");
    assert!(result.revised);
    let calls = model.0.calls.lock().expect("calls").clone();
    assert_eq!(
        calls,
        [
            Role::Planner,
            Role::Planner,
            Role::Researcher,
            Role::Researcher,
            Role::Analyst,
            Role::Writer,
            Role::Critic,
            Role::Writer
        ]
    );
}

#[tokio::test]
async fn a_research_in_which_every_researcher_fails_fails() {
    let plan = json!({"subtopics": [{"title": "Broken", "query": "FAIL"}]}).to_string();
    let spent = Spent::default();
    let err = run(
        &scripted(&[&plan]),
        &tools(),
        &a_run(Depth::Quick),
        &spent,
        None,
        &|_| {},
    )
    .await
    .expect_err("nothing researched");
    assert!(matches!(err, RunError::Model(ModelError::Upstream { .. })), "{err:?}");
    assert_eq!(spent.total().model_calls, 1, "the planner's call is counted");
}

#[tokio::test]
async fn a_rerun_keeps_the_subtopics_an_earlier_attempt_planned() {
    let plan = json!({"subtopics": [
        {"title": "Cold start", "query": "cold start"},
        {"title": "Memory", "query": "idle memory"}
    ]})
    .to_string();
    let first = run(
        &scripted(&[&plan]),
        &tools(),
        &a_run(Depth::Quick),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("a report");
    let planned = vec![
        Planned {
            title: "Cold start".into(),
            query: "cold start".into(),
        },
        Planned {
            title: "Memory".into(),
            query: "idle memory".into(),
        },
    ];
    let model = scripted(&[]);
    let again = run(
        &model,
        &tools(),
        &ResearchRun {
            kept: Some((planned, "planned".into())),
            ..a_run(Depth::Quick)
        },
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("a report");
    // No planner: two researchers (each a search and its findings), then
    // the writing.
    let calls = model.0.calls.lock().expect("calls").clone();
    assert_eq!(
        calls,
        [
            Role::Researcher,
            Role::Researcher,
            Role::Researcher,
            Role::Researcher,
            Role::Analyst,
            Role::Writer,
            Role::Critic
        ]
    );
    assert_eq!(again.sources, first.sources);
    assert_eq!(again.report, first.report);
}
