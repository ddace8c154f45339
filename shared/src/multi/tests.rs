//! The orchestration against a scripted model: what the planner answers
//! is set per test, executors answer (or fail) by their subtask's text,
//! and every call is recorded, so each test can say exactly which calls a
//! run made.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::agent::RunError;
use crate::llm::{Content, Model, ModelError, ModelRequest, ModelResponse, ModelStream, Usage};
use crate::tools::Registry;

/// Plays every role: the planner answers `plans` in turn; an executor
/// answers `done: TASK`, or fails when its task says FAIL; the synthesis
/// joins what it was given.
#[derive(Clone)]
struct Scripted(Arc<Script>);

struct Script {
    plans: Mutex<Vec<String>>,
    calls: Mutex<Vec<(Role, String)>>,
}

impl Scripted {
    fn calls(&self) -> Vec<(Role, String)> {
        self.0.calls.lock().expect("calls").clone()
    }
}

fn scripted(plans: &[&str]) -> Scripted {
    Scripted(Arc::new(Script {
        plans: Mutex::new(plans.iter().rev().map(|p| p.to_string()).collect()),
        calls: Mutex::new(Vec::new()),
    }))
}

/// The script in one role.
struct Playing(Arc<Script>, Role);

impl Roles for Scripted {
    fn model(&self, role: Role) -> Box<dyn Model> {
        Box::new(Playing(self.0.clone(), role))
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
        let last = request.contents.last().map(|c| c.text()).unwrap_or_default();
        self.0.calls.lock().expect("calls").push((self.1, last.clone()));
        let text = match self.1 {
            Role::Planner => self.0.plans.lock().expect("plans").pop().unwrap_or_default(),
            Role::Executor if last.contains("FAIL") => {
                return Err(ModelError::Upstream {
                    status: Some(400),
                    message: format!("refused {last}"),
                });
            }
            Role::Executor => format!("done: {last}"),
            Role::Synthesis => {
                let input: SynthesisInput = serde_json::from_str(&last).expect("synthesis input");
                input
                    .subtasks
                    .iter()
                    .map(|s| format!("{}={}", s.id, s.result.as_deref().unwrap_or(&s.status)))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Role::Researcher | Role::Analyst | Role::Writer | Role::Critic => {
                return Err(ModelError::Blocked("not a multi-agent role".into()));
            }
        };
        Ok(ModelResponse {
            content: Content::model_text(text),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
                ..Usage::default()
            },
            model: format!("m-{}", self.1.as_str()),
            cost: None,
            cache_hit: None,
        })
    }

    async fn stream(&self, _request: ModelRequest) -> Result<ModelStream, ModelError> {
        Err(ModelError::Blocked("no streams here".into()))
    }
}

fn plan_of(subtasks: &[(&str, &str, &[&str])]) -> String {
    let subtasks: Vec<_> = subtasks
        .iter()
        .map(|(id, description, depends_on)| {
            json!({"id": id, "description": description, "tools": [], "depends_on": depends_on})
        })
        .collect();
    json!({ "subtasks": subtasks }).to_string()
}

fn a_run(task: &str) -> MultiRun {
    MultiRun {
        task: task.to_string(),
        session_key: "key:a|s".into(),
        max_subtasks: 5,
        max_steps: 3,
        concurrency: 4,
        kept_plan: None,
    }
}

fn roles_of(calls: &[(Role, String)]) -> Vec<Role> {
    calls.iter().map(|(role, _)| *role).collect()
}

#[tokio::test]
async fn subtasks_run_in_waves_and_the_synthesis_gets_every_result() {
    let model = scripted(&[&plan_of(&[
        ("a", "first part", &[]),
        ("b", "second part", &[]),
        ("c", "uses a", &["a"]),
    ])]);
    let spent = Spent::default();
    let events = Mutex::new(Vec::new());
    let on_event = |event: serde_json::Value| {
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        let id = event["id"].as_str().unwrap_or_default().to_string();
        events
            .lock()
            .expect("events")
            .push(format!("{kind} {id}").trim().to_string());
    };
    let outcome = run(&model, &Registry::default(), &a_run("all"), &spent, None, &on_event)
        .await
        .expect("answered");
    // a and b run together (either may start or end first), c after a.
    let events = events.into_inner().expect("events");
    assert_eq!(events.first().map(String::as_str), Some("plan"));
    assert_eq!(events.last().map(String::as_str), Some("synthesis"));
    let at = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} in {events:?}"))
    };
    assert!(at("subtask_finished a") < at("subtask_started c"), "{events:?}");
    assert!(at("subtask_started b") < at("subtask_started c"), "{events:?}");
    assert_eq!(events.len(), 8, "{events:?}");
    assert_eq!(outcome.plan.origin, PlanOrigin::Planned);
    assert_eq!(outcome.finish_reason, MultiFinish::Answered);
    assert_eq!(
        outcome.response,
        "a=done: first part b=done: second part c=done: uses a"
    );
    let calls = model.calls();
    assert_eq!(
        roles_of(&calls),
        [
            Role::Planner,
            Role::Executor,
            Role::Executor,
            Role::Executor,
            Role::Synthesis
        ]
    );
    // The planner is given the task alone; c runs after a, in a later wave.
    assert_eq!(calls[0].1, "all");
    assert_eq!(calls[3].1, "uses a");
    // Five calls of 10 + 2 tokens, each counted once.
    assert_eq!((outcome.usage.model_calls, outcome.tokens_used), (5, 60));
    assert_eq!(spent.total(), outcome.usage);
    assert_eq!(outcome.model, "m-synthesis");
    assert_eq!(outcome.subtasks[2].usage.model_calls, 1);
}

#[tokio::test]
async fn an_invalid_plan_is_repaired_once_then_the_task_runs_whole() {
    let model = scripted(&["not json", &plan_of(&[("a", "x", &[]), ("a", "y", &[])])]);
    let outcome = run(
        &model,
        &Registry::default(),
        &a_run("the whole task"),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("answered");
    assert_eq!(outcome.plan.origin, PlanOrigin::Fallback);
    assert_eq!(outcome.plan.rejected.len(), 2);
    assert!(
        outcome.plan.rejected[0].contains("not JSON"),
        "{:?}",
        outcome.plan.rejected
    );
    assert!(
        outcome.plan.rejected[1].contains("used twice"),
        "{:?}",
        outcome.plan.rejected
    );
    assert_eq!(outcome.subtasks.len(), 1);
    assert_eq!(outcome.subtasks[0].subtask.description, "the whole task");
    // One subtask's answer is the answer: no synthesis call.
    assert_eq!(outcome.response, "done: the whole task");
    let calls = model.calls();
    assert_eq!(roles_of(&calls), [Role::Planner, Role::Planner, Role::Executor]);
    assert!(
        calls[1].1.contains("cannot be used: the answer is not JSON"),
        "{}",
        calls[1].1
    );

    let model = scripted(&[
        "```json\n{\"subtasks\": []}\n```",
        &plan_of(&[("a", "x", &[]), ("b", "y", &[])]),
    ]);
    let outcome = run(
        &model,
        &Registry::default(),
        &a_run("t"),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("answered");
    assert_eq!(outcome.plan.origin, PlanOrigin::Repaired);
    assert_eq!(outcome.subtasks.len(), 2);
}

#[tokio::test]
async fn a_failed_subtask_makes_a_partial_answer_and_skips_what_depends_on_it() {
    let model = scripted(&[&plan_of(&[
        ("a", "fine", &[]),
        ("b", "FAIL here", &[]),
        ("c", "needs b", &["b"]),
    ])]);
    let outcome = run(
        &model,
        &Registry::default(),
        &a_run("t"),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("partial");
    assert_eq!(outcome.finish_reason, MultiFinish::Partial);
    let statuses: Vec<SubtaskStatus> = outcome.subtasks.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [SubtaskStatus::Completed, SubtaskStatus::Failed, SubtaskStatus::Skipped]
    );
    assert!(
        outcome.subtasks[1]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("refused FAIL here"),
        "{:?}",
        outcome.subtasks[1].error
    );
    assert!(
        outcome.subtasks[2].error.as_deref().unwrap_or("").contains("\"b\""),
        "{:?}",
        outcome.subtasks[2].error
    );
    assert_eq!(outcome.response, "a=done: fine b=failed c=skipped");
    // c never reached a model.
    assert_eq!(
        roles_of(&model.calls()),
        [Role::Planner, Role::Executor, Role::Executor, Role::Synthesis]
    );
}

#[tokio::test]
async fn a_run_in_which_nothing_completes_fails_with_the_model_error_and_its_spend() {
    let model = scripted(&[&plan_of(&[("a", "FAIL 1", &[]), ("b", "FAIL 2", &[])])]);
    let spent = Spent::default();
    let err = run(&model, &Registry::default(), &a_run("t"), &spent, None, &|_| {})
        .await
        .expect_err("nothing completed");
    assert!(
        matches!(&err, RunError::Model(ModelError::Upstream { message, .. }) if message.starts_with("refused FAIL")),
        "{err:?}"
    );
    // The planner's call was paid for and is counted.
    assert_eq!(spent.total().model_calls, 1);
    assert_eq!(spent.charge().map(|c| c.model), Some("m-planner".to_string()));
}

#[tokio::test]
async fn a_checkpoint_that_refuses_stops_the_run_before_the_next_wave() {
    struct Cancelled;
    #[async_trait]
    impl crate::agent::Checkpoint for Cancelled {
        async fn pass(&self) -> Result<(), crate::agent::Interrupted> {
            Err(crate::agent::Interrupted("cancelled".into()))
        }
    }
    let model = scripted(&[&plan_of(&[("a", "x", &[])])]);
    let err = run(
        &model,
        &Registry::default(),
        &a_run("t"),
        &Spent::default(),
        Some(&Cancelled),
        &|_| {},
    )
    .await
    .expect_err("stopped");
    assert!(matches!(err, RunError::Interrupted(_)), "{err:?}");
    assert_eq!(roles_of(&model.calls()), [Role::Planner]);
}

#[tokio::test]
async fn a_rerun_keeps_the_plan_an_earlier_attempt_made() {
    let first = scripted(&[&plan_of(&[("a", "first part", &[]), ("b", "second part", &[])])]);
    let done = run(
        &first,
        &Registry::default(),
        &a_run("all"),
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("answered");
    // The second attempt knows the plan: no planner call, and the same
    // subtasks.
    let model = scripted(&[]);
    let again = run(
        &model,
        &Registry::default(),
        &MultiRun {
            kept_plan: Some(done.plan.clone()),
            ..a_run("all")
        },
        &Spent::default(),
        None,
        &|_| {},
    )
    .await
    .expect("answered");
    assert_eq!(
        roles_of(&model.calls()),
        [Role::Executor, Role::Executor, Role::Synthesis]
    );
    assert_eq!(again.plan, done.plan);
    assert_eq!(again.response, done.response);
}
