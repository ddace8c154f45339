//! `POST /api/v1/research` and `GET /api/v1/research/{id}` over real HTTP
//! on loopback, on SQLite on disk and the local queue, with the offline
//! model playing every role: the report cites only what the searches
//! returned, the events show each stage, `deep` revises once, and bad
//! requests are 400s.

mod common;

use std::collections::HashSet;

use agent_core::research::sources::citations;
use agent_core::testing::error_envelope;
use agent_function::{ResearchAccepted, ResearchView};
use common::Agent;
use serde_json::{Value, json};

impl Agent {
    async fn research(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/research", self.server.url))
            .json(&body)
            .send()
            .await
            .expect("the agent function answers")
    }

    /// Starts a research and waits for it: its view and its events.
    async fn research_done(&self, body: Value) -> (ResearchView, Vec<(String, Value)>) {
        let response = self.research(body).await;
        assert_eq!(response.status(), 202);
        let location = response.headers()["location"].to_str().expect("location").to_string();
        let accepted: ResearchAccepted = response.json().await.expect("accepted");
        assert_eq!(location, accepted.status_url);
        assert_eq!(
            accepted.status_url,
            format!("/api/v1/research/{}", accepted.research_id)
        );
        let events = self.events(&accepted.research_id, None).await;
        self.wait_finished(&accepted.research_id).await;
        let view: ResearchView = serde_json::from_value(self.get(&accepted.status_url).await).expect("a research view");
        (view, events)
    }
}

#[tokio::test]
async fn a_research_reports_with_citations_of_what_its_searches_returned() {
    let agent = Agent::start(&[]).await;
    let (view, events) = agent
        .research_done(json!({"topic": "serverless cold start", "max_subtopics": 3, "depth": "quick"}))
        .await;
    assert_eq!(view.topic, "serverless cold start");
    assert_eq!(serde_json::to_value(view.status).expect("status"), "completed");
    assert_eq!(serde_json::to_value(view.depth).expect("depth"), "quick");
    let result = view.result.expect("a result");

    // The report, its sections, and citations only of the sources found.
    assert!(
        result.report.starts_with("# serverless cold start"),
        "{}",
        result.report
    );
    let titles: Vec<&str> = result.sections.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        ["serverless cold start", "serverless", "cold start", "Conclusion"]
    );
    assert!(!result.sources.is_empty());
    let cited = citations(&result.report);
    assert!(!cited.is_empty(), "{}", result.report);
    let ids: HashSet<usize> = result.sources.iter().map(|s| s.id).collect();
    assert!(cited.iter().all(|n| ids.contains(n)), "{cited:?} of {ids:?}");
    // Every source is a result one of the searches returned.
    let returned: HashSet<(String, String)> = result
        .subtopics
        .iter()
        .flat_map(|s| &s.steps)
        .filter(|step| step.tool == "search_web")
        .flat_map(|step| step.result["results"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["title"].as_str().unwrap_or_default().to_string(),
                r["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for source in &result.sources {
        assert!(
            returned.contains(&(source.title.clone(), source.source.clone())),
            "{source:?}"
        );
    }
    assert!(
        result
            .sources
            .iter()
            .any(|s| s.title.to_lowercase().contains("cold start")),
        "{:?}",
        result.sources
    );
    assert!(result.critique.contains("cites"), "{}", result.critique);
    assert!(!result.revised);
    // Each researcher searched, then wrote its findings from the results.
    for subtopic in &result.subtopics {
        let findings = subtopic.findings.as_deref().unwrap_or_default();
        assert!(findings.starts_with("Search results for"), "{findings}");
    }
    // Planner, three researchers of two calls each, analyst, writer, critic.
    assert_eq!(result.usage.model_calls, 10);

    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "status")
        .collect();
    assert_eq!(names.first(), Some(&"subtopics"), "{names:?}");
    for (name, count) in [
        ("subtopic_started", 3),
        ("step", 3),
        ("subtopic_finished", 3),
        ("stage", 3),
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == name).count(),
            count,
            "{name} in {names:?}"
        );
    }
    let stages: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "stage")
        .map(|(_, d)| &d["stage"])
        .collect();
    assert_eq!(stages, [&json!("analysis"), &json!("draft"), &json!("critique")]);
    assert_eq!(names.last(), Some(&"done"));

    // Each researcher ran as a child task of the research, which any
    // worker may take; its task shows them.
    let task = agent.get(&format!("/api/v1/tasks/{}", view.research_id)).await;
    let titles: Vec<Vec<String>> = result
        .subtopics
        .iter()
        .map(|s| vec![s.title.clone(), "completed".into(), "completed".into()])
        .collect();
    assert_eq!(
        common::children(&task, &["subtask", "status", "outcome"]),
        titles,
        "{task}"
    );
    let child = agent.get(&format!("/api/v1/tasks/{}-0", view.research_id)).await;
    assert_eq!(
        (&child["kind"], &child["parent_id"]),
        (&json!("subtopic"), &json!(view.research_id))
    );
    // Two claims of the research: the plan, and the writing once the
    // researchers were done.
    assert_eq!(view.attempts, 2);
}

#[tokio::test]
async fn a_deep_research_revises_its_report_once_after_the_critique() {
    let agent = Agent::start(&[]).await;
    let (view, events) = agent
        .research_done(json!({"topic": "Cloud Run pricing and Lambda pricing", "depth": "deep"}))
        .await;
    let result = view.result.expect("a result");
    assert!(result.revised);
    assert!(
        result.report.contains("Revised to answer the critique"),
        "{}",
        result.report
    );
    assert_eq!(result.subtopics.len(), 2);
    let stages: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "stage")
        .map(|(_, d)| &d["stage"])
        .collect();
    assert_eq!(
        stages,
        [
            &json!("analysis"),
            &json!("draft"),
            &json!("critique"),
            &json!("revision")
        ]
    );
}

#[tokio::test]
async fn bad_research_requests_are_400s_and_other_tasks_are_not_researches() {
    let agent = Agent::start(&[]).await;
    for (body, wanted) in [
        (json!({"topic": "abc"}), "topic must be 5 to 1000 characters"),
        (json!({"topic": "x".repeat(1001)}), "topic must be 5 to 1000 characters"),
        (json!({"topic": "     ok  "}), "topic must be 5 to 1000 characters"),
        (
            json!({"topic": "cold starts", "depth": "extreme"}),
            "`quick`, `standard`, `deep`",
        ),
        (
            json!({"topic": "cold starts", "max_subtopics": 0}),
            "max_subtopics must be 1 to 10",
        ),
        (
            json!({"topic": "cold starts", "max_subtopics": 11}),
            "max_subtopics must be 1 to 10",
        ),
        (json!({"topic": "cold starts", "model": "gpt-9-ultra"}), "gpt-9-ultra"),
        (json!({"topic": "cold starts", "async": false}), "async"),
        (
            json!({"topic": "cold starts", "callback_url": "http://example.com/x"}),
            "callback_url",
        ),
    ] {
        let (message, _) = error_envelope(agent.research(body.clone()).await, 400, "invalid_argument").await;
        assert!(message.contains(wanted), "{body}: {message}");
    }
    let agent_run = agent
        .post(json!({"task": "2+2"}))
        .await
        .json::<Value>()
        .await
        .expect("json");
    let id = agent_run["task_id"].as_str().expect("task id");
    for id in [id, "no-such-research"] {
        let response = agent
            .http
            .get(format!("{}/api/v1/research/{id}", agent.server.url))
            .send()
            .await
            .expect("answers");
        let (message, _) = error_envelope(response, 404, "not_found").await;
        assert!(message.contains("POST /api/v1/research"), "{message}");
    }
}
