//! `POST /api/v1/multi-agent` over real HTTP on loopback, on SQLite on
//! disk: with the offline model (the README's example), and in front of a
//! local server speaking Gemini's `generateContent` wire format that plays
//! each role by what the request carries (a response schema: the planner;
//! the synthesis's instruction: the synthesis; else an executor), so the
//! tests can make one subtask fail, the planner answer nonsense, and see
//! that subtasks are in flight together.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::multi::{MultiAgentResponse, SYNTHESIS_INSTRUCTION};
use agent_core::testing::{TestServer, error_envelope};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use common::Agent;
use serde_json::{Value, json};

impl Agent {
    async fn multi(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/multi-agent", self.server.url))
            .json(&body)
            .send()
            .await
            .expect("the agent function answers")
    }

    async fn multi_ok(&self, body: Value) -> MultiAgentResponse {
        let response = self.multi(body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, reqwest::StatusCode::OK, "{text}");
        serde_json::from_str(&text).expect("a multi-agent answer")
    }
}

#[tokio::test]
async fn the_offline_model_plans_runs_and_synthesises_the_readme_example() {
    let agent = Agent::start(&[]).await;
    let task = "Calcula 25*4, busca información sobre cold start y resume ambos";
    let run = agent.multi_ok(json!({ "task": task })).await;
    let outcome = &run.outcome;
    assert!(outcome.subtasks.len() >= 2, "{:?}", outcome.plan);
    let tools: Vec<&str> = outcome
        .subtasks
        .iter()
        .flat_map(|s| s.steps.iter().map(|step| step.tool.as_str()))
        .collect();
    assert!(
        tools.contains(&"calculate") && tools.contains(&"search_web"),
        "{tools:?}"
    );
    let calc = outcome
        .subtasks
        .iter()
        .flat_map(|s| &s.steps)
        .find(|s| s.tool == "calculate")
        .expect("a calculate step");
    assert_eq!(calc.result["result"], 100);
    let search = outcome
        .subtasks
        .iter()
        .flat_map(|s| &s.steps)
        .find(|s| s.tool == "search_web")
        .expect("a search step");
    let first = search.result["results"][0]["title"].as_str().expect("a search result");
    // The answer carries both results.
    assert!(outcome.response.contains("100"), "{}", outcome.response);
    assert!(outcome.response.contains(first), "{first} in {}", outcome.response);
    assert_eq!(outcome.finish_reason, agent_core::multi::MultiFinish::Answered);
    // Plan, two executors of two calls each (the tools, then the answer), synthesis.
    assert_eq!(outcome.usage.model_calls, 6);
    assert_eq!(
        outcome.tokens_used,
        outcome.usage.input_tokens + outcome.usage.output_tokens
    );

    // The run is stored as a task of its own kind, with the same answer.
    let stored = agent.get(&format!("/api/v1/tasks/{}", run.task_id)).await;
    assert_eq!(stored["kind"], "multi_agent");
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["task"], task);
    let result: MultiAgentResponse = serde_json::from_value(stored["result"].clone()).expect("the stored result");
    assert_eq!(result, run);
}

#[tokio::test]
async fn a_queued_run_streams_its_plan_subtasks_steps_and_synthesis() {
    let agent = Agent::start(&[]).await;
    let task = "Calcula 25*4, busca información sobre cold start y resume ambos";
    let response = agent
        .multi(json!({ "task": task, "async": true, "max_subtasks": 3 }))
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["task_id"].as_str().expect("id").to_string();

    let events = agent.events(&id, None).await;
    let (stored, _) = agent.wait_finished(&id).await;
    assert_eq!(stored["status"], "completed", "{stored}");
    assert_eq!(stored["kind"], "multi_agent");
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "status")
        .collect();
    assert_eq!(names.first(), Some(&"plan"), "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["synthesis", "done"], "{names:?}");
    for name in ["subtask_started", "step", "subtask_finished"] {
        assert_eq!(names.iter().filter(|n| **n == name).count(), 2, "{name} in {names:?}");
    }
    let plan = &events.iter().find(|(n, _)| n == "plan").expect("plan").1;
    assert_eq!(plan["origin"], "planned");
    let ids: Vec<&str> = plan["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    // Each step says which subtask took it.
    for (_, step) in events.iter().filter(|(n, _)| n == "step") {
        assert!(ids.contains(&step["subtask"].as_str().unwrap_or_default()), "{step}");
        assert_eq!(step["type"], "tool_call");
    }
    let finished = events
        .iter()
        .filter(|(n, _)| n == "subtask_finished")
        .map(|(_, d)| d["status"].clone())
        .collect::<Vec<_>>();
    assert_eq!(finished, [json!("completed"), json!("completed")]);
    // The done event carries the task and its result, the synchronous answer.
    let done = &events.last().expect("done").1;
    assert_eq!(done["result"], stored["result"]);
    let result: MultiAgentResponse = serde_json::from_value(stored["result"].clone()).expect("a multi-agent answer");
    assert!(result.outcome.response.contains("100"), "{}", result.outcome.response);
    assert_eq!(result.outcome.usage.model_calls, 6);

    // Resumed after any event (its id says where the stream stood in the
    // run and in each child), the stream sends exactly what came after it.
    let full = raw_events(&agent, &id, None).await;
    for at in 0..full.len() - 1 {
        let (last_id, _) = &full[at];
        let mut resumed: Vec<String> = raw_events(&agent, &id, Some(last_id))
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        let mut rest: Vec<String> = full[at + 1..].iter().map(|e| e.1.clone()).collect();
        resumed.sort();
        rest.sort();
        assert_eq!(resumed, rest, "resumed after event {at} ({last_id})");
    }
}

/// A finished task's whole event stream as (id, event and data), but its
/// `status` events.
async fn raw_events(agent: &Agent, id: &str, last_event_id: Option<&str>) -> Vec<(String, String)> {
    let mut request = agent.http.get(format!("{}/api/v1/tasks/{id}/events", agent.server.url));
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let text = request.send().await.expect("events").text().await.expect("text");
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            let event = field("event:")?;
            (event != "status").then(|| {
                (
                    field("id:").unwrap_or_default(),
                    format!("{event} {}", field("data:").unwrap_or_default()),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn a_bad_request_is_a_400_that_says_what_to_change() {
    let agent = Agent::start(&[]).await;
    for (body, wanted) in [
        (json!({"task": "x", "max_subtasks": 0}), "max_subtasks must be 1 to 10"),
        (json!({"task": "x", "max_subtasks": 11}), "max_subtasks must be 1 to 10"),
        (json!({"task": "  "}), "task"),
        (json!({"task": "x", "model": "gpt-9-ultra"}), "gpt-9-ultra"),
        (
            json!({"task": "x", "callback_url": "https://example.com/hook"}),
            "only used by asynchronous runs",
        ),
        (
            json!({"task": "x", "async": true, "callback_url": "http://example.com/hook"}),
            "https",
        ),
        (json!({"task": "x", "steps": 3}), "steps"),
    ] {
        let (message, _) = error_envelope(agent.multi(body.clone()).await, 400, "invalid_argument").await;
        assert!(message.contains(wanted), "{body}: {message}");
    }
}

/// What the Gemini double saw and how it answers.
#[derive(Default)]
struct Double {
    /// The planner's answers, in order; the last repeats.
    plans: Vec<String>,
    seen: Mutex<Seen>,
    /// Executor calls now in flight.
    in_flight: AtomicUsize,
    /// Whether an executor call waits (up to a bound) for another to be
    /// in flight beside it, so that parallel calls are sure to overlap.
    wait_for_company: bool,
    /// The synthesis answers 503 this many times first.
    synthesis_failures: usize,
}

#[derive(Default, Clone)]
struct Seen {
    /// (model, role, the request's last text)
    calls: Vec<(String, &'static str, String)>,
    planner_requests: Vec<Value>,
    /// The most executor calls in flight at once.
    most_in_flight: usize,
}

fn gemini_text(model: &str, text: &str) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
        "modelVersion": model
    })
}

async fn generate(
    State(double): State<Arc<Double>>,
    Path(method): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let model = method.split(':').next().unwrap_or_default().to_string();
    let system = body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let last = body["contents"]
        .as_array()
        .and_then(|c| c.last())
        .map(|c| c["parts"][0]["text"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let role = if body.get("generationConfig").is_some() {
        "planner"
    } else if system == SYNTHESIS_INSTRUCTION {
        "synthesis"
    } else {
        "executor"
    };
    let count = {
        let mut seen = double.seen.lock().expect("seen");
        seen.calls.push((model.clone(), role, last.clone()));
        if role == "planner" {
            seen.planner_requests.push(body.clone());
        }
        seen.calls.iter().filter(|c| c.1 == role).count()
    };
    match role {
        "planner" => {
            let plan = double.plans[(count - 1).min(double.plans.len() - 1)].clone();
            (StatusCode::OK, Json(gemini_text(&model, &plan)))
        }
        "synthesis" if count <= double.synthesis_failures => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})),
        ),
        "synthesis" => (StatusCode::OK, Json(gemini_text(&model, "the final answer"))),
        _ => {
            let now = double.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            {
                let mut seen = double.seen.lock().expect("seen");
                seen.most_in_flight = seen.most_in_flight.max(now);
            }
            if double.wait_for_company {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while double.seen.lock().expect("seen").most_in_flight < 2 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            double.in_flight.fetch_sub(1, Ordering::SeqCst);
            if last.contains("FAIL") {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(
                        json!({"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}),
                    ),
                );
            }
            (StatusCode::OK, Json(gemini_text(&model, &format!("done: {last}"))))
        }
    }
}

async fn start_double(plans: &[String], wait_for_company: bool) -> (TestServer, Arc<Double>) {
    start_double_with(Double {
        plans: plans.to_vec(),
        wait_for_company,
        ..Double::default()
    })
    .await
}

async fn start_double_with(double: Double) -> (TestServer, Arc<Double>) {
    let double = Arc::new(double);
    let router = axum::Router::new()
        .route("/v1beta/models/{method}", post(generate))
        .with_state(double.clone());
    (TestServer::start(router).await, double)
}

async fn agent_on(double: &TestServer) -> Agent {
    agent_with(double, &[]).await
}

async fn agent_with(double: &TestServer, extra: &[(&str, &str)]) -> Agent {
    let mut vars = vec![
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "multi-test-key"),
        ("GEMINI_BASE_URL", double.url.as_str()),
        ("MODEL_ROUTING", "auto"),
        ("LLM_MAX_RETRIES", "0"),
        ("RATE_LIMIT_AGENT", "off"),
    ];
    vars.extend_from_slice(extra);
    Agent::start(&vars).await
}

fn plan(subtasks: &[(&str, &str, &[&str], &[&str])]) -> String {
    let subtasks: Vec<Value> = subtasks
        .iter()
        .map(|(id, description, tools, depends_on)| {
            json!({"id": id, "description": description, "tools": tools, "depends_on": depends_on})
        })
        .collect();
    json!({ "subtasks": subtasks }).to_string()
}

/// A plan in which `b` fails (the double refuses it) and `c`, which
/// depends on it, is skipped, while `a` completes.
fn partial_plan() -> String {
    plan(&[
        ("a", "look up the weather", &["search_web"], &[]),
        ("b", "FAIL on purpose", &[], &[]),
        ("c", "use what b found", &[], &["b"]),
    ])
}

#[tokio::test]
async fn a_failing_subtask_gives_a_partial_answer_and_subtasks_run_together() {
    let plans = [partial_plan()];
    let (server, double) = start_double(&plans, true).await;
    let agent = agent_on(&server).await;
    let run = agent
        .multi_ok(json!({"task": "weather and more", "max_subtasks": 3}))
        .await;
    let outcome = &run.outcome;
    assert_eq!(outcome.finish_reason, agent_core::multi::MultiFinish::Partial);
    let statuses: Vec<Value> = outcome
        .subtasks
        .iter()
        .map(|s| serde_json::to_value(s.status).expect("status"))
        .collect();
    assert_eq!(statuses, [json!("completed"), json!("failed"), json!("skipped")]);
    assert!(
        outcome.subtasks[1]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("invalid argument"),
        "{:?}",
        outcome.subtasks[1].error
    );
    assert_eq!(outcome.response, "the final answer");

    let seen = double.seen.lock().expect("seen").clone();
    // a and b were in flight together, counted at the double.
    assert_eq!(seen.most_in_flight, 2, "{:?}", seen.calls);
    // The orchestrator's calls went to the strong tier, the subtasks' to the fast one.
    let models: Vec<(&str, &str)> = seen.calls.iter().map(|(m, r, _)| (r.to_owned(), m.as_str())).collect();
    assert!(models.contains(&("planner", "gemini-2.5-pro")), "{models:?}");
    assert!(models.contains(&("synthesis", "gemini-2.5-pro")), "{models:?}");
    assert!(
        models
            .iter()
            .filter(|(r, _)| *r == "executor")
            .all(|(_, m)| *m == "gemini-2.5-flash"),
        "{models:?}"
    );
    // c never reached the model: planner, a, b, synthesis.
    assert_eq!(seen.calls.len(), 4, "{:?}", seen.calls);
    // The planner was held to the schema: JSON, only the tools there are, at most 3.
    let config = &seen.planner_requests[0]["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    let subtasks = &config["responseSchema"]["properties"]["subtasks"];
    assert_eq!(subtasks["maxItems"], 3);
    let tools = subtasks["items"]["properties"]["tools"]["items"]["enum"]
        .as_array()
        .expect("the tools");
    assert!(
        tools.contains(&json!("search_web")) && tools.contains(&json!("calculate")),
        "{tools:?}"
    );
    assert!(config.to_string().find("additionalProperties").is_none(), "{config}");
    // The route of the subtask says why it went where it did.
    let route = outcome.subtasks[0].route.as_ref().expect("a route");
    assert_eq!(route.reason, "role:executor");
    // Each model's calls are on its own day record; the run is one request,
    // under the model of its last answer (the synthesis).
    let usage = agent.get("/api/v1/usage").await;
    let records: Vec<(String, u64, u64)> = usage["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap_or_default().to_string(),
                r["model_calls"].as_u64().unwrap_or_default(),
                r["requests"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            ("gemini-2.5-flash".to_string(), 1, 0),
            ("gemini-2.5-pro".to_string(), 2, 1)
        ],
        "{usage}"
    );
}

/// Queued, the same run fans out: each subtask a child task of its own,
/// the failed one's run `completed` with its subtask `failed`, the one
/// that depends on it never made (skipped by the run), and the answer
/// partial, as in process.
#[tokio::test]
async fn a_queued_run_with_a_failing_child_is_partial_and_shows_its_tree() {
    let plans = [partial_plan()];
    let (server, double) = start_double(&plans, true).await;
    let agent = agent_on(&server).await;
    let response = agent
        .multi(json!({"task": "weather and more", "max_subtasks": 3, "async": true}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("a task id")
        .to_string();
    let events = agent.events(&id, None).await;
    let (task, _) = agent.wait_finished(&id).await;
    let result: MultiAgentResponse = serde_json::from_value(task["result"].clone()).expect("the result");
    assert_eq!(result.outcome.finish_reason, agent_core::multi::MultiFinish::Partial);
    let statuses: Vec<Value> = result
        .outcome
        .subtasks
        .iter()
        .map(|s| serde_json::to_value(s.status).expect("status"))
        .collect();
    assert_eq!(statuses, [json!("completed"), json!("failed"), json!("skipped")]);
    // a and b ran as children at the same time, counted at the double.
    assert_eq!(double.seen.lock().expect("seen").most_in_flight, 2);

    // The tree: a and b were children; c was never made.
    assert_eq!(
        common::children(&task, &["task_id", "status", "outcome"]),
        [
            [format!("{id}-0"), "completed".into(), "completed".into()],
            [format!("{id}-1"), "completed".into(), "failed".into()]
        ],
        "{task}"
    );
    let child = agent.get(&format!("/api/v1/tasks/{id}-1")).await;
    assert_eq!((&child["kind"], &child["parent_id"]), (&json!("subtask"), &json!(id)));
    // A child is cancelled with its run, not on its own.
    let refused = agent
        .http
        .post(format!("{}/api/v1/tasks/{id}-0/cancel", agent.server.url))
        .send()
        .await
        .expect("the agent function answers");
    assert_eq!(refused.status(), 409);

    // One stream for the run: the skipped subtask is reported by the run.
    let finished: Vec<(&str, &str)> = events
        .iter()
        .filter(|(n, _)| n == "subtask_finished")
        .map(|(_, d)| (d["id"].as_str().unwrap_or("?"), d["status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(finished.len(), 3, "{finished:?}");
    for expected in [("a", "completed"), ("b", "failed"), ("c", "skipped")] {
        assert!(finished.contains(&expected), "{expected:?} in {finished:?}");
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[names.len() - 2..], ["synthesis", "done"], "{names:?}");
}

#[tokio::test]
async fn a_planner_that_answers_nonsense_twice_falls_back_to_one_subtask() {
    let plans = ["Sure! Here is my plan: first, ...".to_string()];
    let (server, double) = start_double(&plans, false).await;
    let agent = agent_on(&server).await;
    let run = agent.multi_ok(json!({"task": "do it all"})).await;
    let plan = serde_json::to_value(&run.outcome.plan).expect("plan");
    assert_eq!(plan["origin"], "fallback");
    assert_eq!(plan["rejected"].as_array().map(Vec::len), Some(2));
    assert_eq!(run.outcome.subtasks.len(), 1);
    assert_eq!(run.outcome.subtasks[0].subtask.description, "do it all");
    assert_eq!(run.outcome.response, "done: do it all");
    let seen = double.seen.lock().expect("seen").clone();
    let roles: Vec<&str> = seen.calls.iter().map(|c| c.1).collect();
    // Two planner calls (the second a repair), one executor, no synthesis.
    assert_eq!(roles, ["planner", "planner", "executor"]);
    let repair = &seen.calls[1].2;
    assert!(
        repair.contains("cannot be used") && repair.contains("not JSON"),
        "{repair}"
    );
    assert_eq!(run.outcome.usage.model_calls, 3);

    // The failed attempt's calls are in the caller's usage like any others.
    let usage = agent.get("/api/v1/usage").await;
    assert_eq!(usage["total"]["model_calls"], 3, "{usage}");
}

#[tokio::test]
async fn a_queued_run_retried_after_its_synthesis_failed_keeps_its_plan_and_subtasks() {
    let (server, double) = start_double_with(Double {
        plans: vec![plan(&[("a", "first", &[], &[]), ("b", "second", &[], &[])])],
        synthesis_failures: 1,
        ..Double::default()
    })
    .await;
    // No fallback: the synthesis's 503 is the run's, and the task is retried.
    let agent = agent_with(&server, &[("MODEL_FALLBACK", "off")]).await;
    let response = agent.multi(json!({"task": "two parts", "async": true})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("a task id")
        .to_string();
    let (task, _) = agent.wait_finished(&id).await;
    // Three claims: the plan and fan-out, the resume after the children
    // (whose synthesis failed), and the retry.
    assert_eq!(
        (&task["status"], &task["attempts"]),
        (&json!("completed"), &json!(3)),
        "{task}"
    );
    let roles: Vec<&str> = double.seen.lock().expect("seen").calls.iter().map(|c| c.1).collect();
    // The retry asked only for the synthesis again.
    assert_eq!(
        roles,
        ["planner", "executor", "executor", "synthesis", "synthesis"],
        "{roles:?}"
    );
    let result: MultiAgentResponse = serde_json::from_value(task["result"].clone()).expect("the result");
    assert_eq!(result.outcome.response, "the final answer");
    assert_eq!(result.outcome.subtasks.len(), 2);
    // Every call that answered: the plan, the two subtasks, the synthesis.
    assert_eq!(result.outcome.usage.model_calls, 4);
    // Every call that answered was counted once: 3 at the release, 1 at the end.
    let usage = agent.get("/api/v1/usage").await;
    assert_eq!(usage["total"]["model_calls"], 4, "{usage}");
}
