//! The agent function over real HTTP on loopback, on SQLite on disk: with
//! the offline model, with local servers speaking Gemini's and OpenAI's wire
//! formats, and with the calculator as a remote function.

mod common;

use agent_core::agent::Step;
use agent_core::testing::{Scripted, TestApp, TestServer, free_port};
use agent_function::{AgentResponse, TaskView};
use common::Agent;
use reqwest::StatusCode;
use serde_json::{Value, json};

impl Agent {
    async fn run(&self, body: Value) -> AgentResponse {
        let response = self.post(body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).expect("agent response")
    }

    async fn task(&self, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/v1/tasks/{id}", self.server.url))
            .send()
            .await
            .expect("request")
    }
}

/// The run's first step with `tool`.
fn find_step<'a>(run: &'a AgentResponse, tool: &str) -> &'a Step {
    run.outcome
        .steps
        .iter()
        .find(|s| s.tool == tool)
        .unwrap_or_else(|| panic!("no {tool} step in {:?}", run.outcome.steps))
}

async fn error_code(response: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("json");
    (
        body["error"]["code"].as_str().expect("code").to_string(),
        body["error"]["message"].as_str().expect("message").to_string(),
    )
}

#[tokio::test]
async fn calculates_and_searches_in_one_run() {
    let agent = Agent::start(&[]).await;
    let run = agent
        .run(json!({"task": "Calcula 15 * 23 y busca información sobre matemáticas"}))
        .await;
    assert!(run.outcome.response.contains("345"), "{}", run.outcome.response);
    assert_eq!(run.outcome.total_steps, run.outcome.steps.len());
    let calc = find_step(&run, "calculate");
    assert_eq!(calc.kind, "tool_call");
    assert_eq!(calc.result["result"], 345);
    assert!(calc.error.is_none());
    let search = find_step(&run, "search_web");
    let results = search.result["results"].as_array().expect("results");
    assert!(!results.is_empty(), "{}", search.result);
    assert!(run.outcome.tokens_used > 0);
    assert_eq!(run.outcome.model, "offline");

    // The run is stored as a task.
    let task: TaskView = agent.task(&run.task_id).await.json().await.expect("task");
    assert_eq!(task.status, agent_core::store::TaskStatus::Completed);
    assert_eq!(task.task, "Calcula 15 * 23 y busca información sobre matemáticas");
    let stored: AgentResponse = serde_json::from_value(task.result.expect("a result")).expect("stored run");
    assert_eq!(stored, run);
}

#[tokio::test]
async fn remembers_within_a_session() {
    let agent = Agent::start(&[]).await;
    let told = agent
        .run(json!({"task": "remember that my favourite colour is teal", "session_id": "mem-1"}))
        .await;
    let store = find_step(&told, "store_memory");
    assert_eq!(store.args, json!({"key": "my favourite colour", "value": "teal"}));

    let asked = agent
        .run(json!({"task": "what do you remember?", "session_id": "mem-1"}))
        .await;
    assert!(
        asked.outcome.steps.iter().any(|s| s.tool == "recall_memory"),
        "{:?}",
        asked.outcome.steps
    );
    assert!(asked.outcome.response.contains("teal"), "{}", asked.outcome.response);

    // Memory is per session.
    let other = agent
        .run(json!({"task": "what do you remember?", "session_id": "mem-2"}))
        .await;
    assert!(!other.outcome.response.contains("teal"), "{}", other.outcome.response);
}

/// An OpenAI chat completion that asks for `calls` (id, tool, arguments as
/// the JSON string OpenAI sends).
fn tool_calls(model: &str, calls: &[(&str, &str, &str)], prompt: u64, completion: u64) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, arguments)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
        .collect();
    completion_json(
        model,
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
        "tool_calls",
        prompt,
        completion,
    )
}

/// An OpenAI chat completion that answers in text.
fn text_answer(model: &str, text: &str, prompt: u64, completion: u64) -> Value {
    completion_json(
        model,
        json!({"role": "assistant", "content": text}),
        "stop",
        prompt,
        completion,
    )
}

fn completion_json(model: &str, message: Value, finish: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

/// An OpenAI-compatible model that never stops calling the calculator.
async fn endless_tool_caller() -> Scripted {
    let call = tool_calls(
        "loop-model",
        &[("call_1", "calculate", r#"{"expression":"1+1"}"#)],
        10,
        5,
    );
    Scripted::start("/v1/chat/completions", vec![(200, call)]).await
}

#[tokio::test]
async fn max_steps_is_capped_at_twenty_and_says_so() {
    let model = endless_tool_caller().await;
    let base = format!("{}/v1", model.server.url);
    let agent = Agent::start(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)]).await;

    let run = agent.run(json!({"task": "count forever", "max_steps": 50})).await;
    assert_eq!(run.outcome.total_steps, 20);
    assert_eq!(run.outcome.finish_reason, agent_core::agent::FinishReason::MaxSteps);
    assert!(
        run.warnings.iter().any(|w| w.contains("cap of 20")),
        "{:?}",
        run.warnings
    );
    assert!(
        run.outcome.response.contains("max_steps 20"),
        "{}",
        run.outcome.response
    );
    assert_eq!(run.outcome.tokens_used, 20 * 15);
    assert_eq!(
        model.requests().len(),
        20,
        "one model call per step, none after the cap"
    );

    let run = agent.run(json!({"task": "count a bit", "max_steps": 3})).await;
    assert_eq!(run.outcome.total_steps, 3);
    assert!(run.warnings.is_empty());
}

#[tokio::test]
async fn bad_tool_calls_from_the_model_become_error_results() {
    let first = tool_calls(
        "m",
        &[
            ("a", "launch_rockets", "{}"),
            ("b", "calculate", r#"{"expression": "2*"#),
            ("c", "calculate", r#"{"expr": "2"}"#),
            ("d", "calculate", r#"{"expression": "1/0"}"#),
        ],
        10,
        5,
    );
    let last = text_answer("m", "Those tools failed.", 30, 4);
    let model = Scripted::start("/v1/chat/completions", vec![(200, first), (200, last)]).await;
    let base = format!("{}/v1", model.server.url);
    let agent = Agent::start(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)]).await;

    let run = agent.run(json!({"task": "break things"})).await;
    assert_eq!(run.outcome.response, "Those tools failed.");
    assert_eq!(run.outcome.total_steps, 4);
    for step in &run.outcome.steps {
        let error = step.error.as_deref().expect("every call failed");
        assert_eq!(step.result["error"], error);
    }
    assert!(
        run.outcome.steps[0]
            .error
            .as_deref()
            .expect("error")
            .contains("no tool named \"launch_rockets\"")
    );
    assert!(
        run.outcome.steps[3]
            .error
            .as_deref()
            .expect("error")
            .contains("division by zero")
    );
    // The model saw every error, paired with its call.
    let second = &model.requests()[1];
    let tool_messages: Vec<&Value> = second["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_messages.len(), 4);
    assert_eq!(tool_messages[0]["tool_call_id"], "a");
    assert!(
        tool_messages[0]["content"]
            .as_str()
            .expect("content")
            .contains("launch_rockets")
    );
}

#[tokio::test]
async fn two_rounds_with_parallel_calls_on_openai() {
    let calls = tool_calls(
        "gpt-test",
        &[
            ("call_calc", "calculate", r#"{"expression":"15 * 23"}"#),
            ("call_search", "search_web", r#"{"query":"matemáticas"}"#),
        ],
        100,
        20,
    );
    let answer = text_answer("gpt-test", "15 * 23 = 345, and here is what I found.", 300, 15);
    let model = Scripted::start("/v1/chat/completions", vec![(200, calls), (200, answer)]).await;
    let base = format!("{}/v1", model.server.url);
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &base),
        ("MODEL_PRICES", "gpt-test=1/2"),
    ])
    .await;

    let run = agent
        .run(json!({"task": "Calcula 15 * 23 y busca información sobre matemáticas"}))
        .await;
    assert_eq!(run.outcome.response, "15 * 23 = 345, and here is what I found.");
    assert_eq!(run.outcome.tokens_used, 435);
    // Both calls, summed: 400 in at $1 and 35 out at $2 per million.
    let usage = run.outcome.usage;
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.model_calls),
        (400, 35, 2)
    );
    assert_eq!(usage.cost_usd.map(|c| c.pico()), Some(470_000_000));
    assert_eq!(run.outcome.model, "gpt-test");
    let tools: Vec<&str> = run.outcome.steps.iter().map(|s| s.tool.as_str()).collect();
    assert_eq!(tools, ["calculate", "search_web"]);
    assert_eq!(run.outcome.steps[0].result["result"], 345);

    let requests = model.requests();
    let declared: Vec<&str> = requests[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().expect("name"))
        .collect();
    for tool in ["calculate", "search_web", "store_memory", "recall_memory"] {
        assert!(declared.contains(&tool), "{declared:?}");
    }
    let messages = requests[1]["messages"].as_array().expect("messages");
    let tool_results: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_results[0]["tool_call_id"], "call_calc");
    let calc: Value = serde_json::from_str(tool_results[0]["content"].as_str().expect("content")).expect("json");
    assert_eq!(calc["result"], 345);
    assert_eq!(tool_results[1]["tool_call_id"], "call_search");
}

#[tokio::test]
async fn two_rounds_with_parallel_calls_on_gemini_keep_thought_signatures() {
    let model_turn = json!({"role": "model", "parts": [
        {"functionCall": {"name": "calculate", "args": {"expression": "15 * 23"}}, "thoughtSignature": "c2lnbmF0dXJlLW9uZQ=="},
        {"functionCall": {"name": "search_web", "args": {"query": "matemáticas"}}}
    ]});
    let calls = json!({
        "candidates": [{"content": model_turn, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        "modelVersion": "gemini-test"
    });
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Son 345."}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 5, "totalTokenCount": 305},
        "modelVersion": "gemini-test"
    });
    let model = Scripted::start(
        "/v1beta/models/gemini-test:generateContent",
        vec![(200, calls), (200, answer)],
    )
    .await;
    let agent = Agent::start(&[
        ("LLM_PROVIDER", "gemini"),
        ("GEMINI_API_KEY", "test-key"),
        ("GEMINI_MODEL", "gemini-test"),
        ("GEMINI_BASE_URL", &model.server.url),
    ])
    .await;

    let run = agent
        .run(json!({"task": "Calcula 15 * 23 y busca información sobre matemáticas"}))
        .await;
    assert_eq!(run.outcome.response, "Son 345.");
    assert_eq!(run.outcome.total_steps, 2);
    assert_eq!(run.outcome.tokens_used, 425);

    let second = &model.requests()[1];
    let contents = second["contents"].as_array().expect("contents");
    assert_eq!(
        contents[1], model_turn,
        "the model's turn goes back verbatim, thoughtSignature included"
    );
    let responses: Vec<&str> = contents[2]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["functionResponse"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(responses, ["calculate", "search_web"]);
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["response"]["result"], 345);
}

#[tokio::test]
async fn a_remote_calculator_is_called_and_its_failure_is_a_step_error() {
    let calc_app = TestApp::start(calculator_function::FUNCTION, &[]).await;
    let metrics = calc_app.metrics.clone();
    let calculator = TestServer::start(calculator_function::router(&calc_app)).await;
    let url = format!("{}/api/v1/tools/calculate", calculator.url);

    let agent = Agent::start(&[("CALCULATOR_URL", &url)]).await;
    let run = agent.run(json!({"task": "Calcula 15 * 23"})).await;
    let step = find_step(&run, "calculate");
    assert_eq!(step.result["result"], 345, "{:?}", step);
    assert!(run.outcome.response.contains("345"));
    let served = metrics.counter(
        "http_requests_total",
        &[
            ("route", "/api/v1/tools/calculate"),
            ("method", "POST"),
            ("status", "200"),
        ],
    );
    assert_eq!(served, 1, "the calculation ran in the calculator function");

    let closed = format!("http://127.0.0.1:{}/api/v1/tools/calculate", free_port());
    let agent = Agent::start(&[("CALCULATOR_URL", &closed), ("TOOL_TIMEOUT_SECONDS", "2")]).await;
    let run = agent.run(json!({"task": "Calcula 15 * 23"})).await;
    let step = find_step(&run, "calculate");
    let error = step.error.as_deref().expect("the call failed");
    assert!(error.contains("could not be reached"), "{error}");
}

#[tokio::test]
async fn bad_requests_get_the_envelope() {
    let agent = Agent::start(&[]).await;
    let (code, message) = error_code(agent.post(json!({"task": ""})).await, 400).await;
    assert_eq!(code, "invalid_argument");
    assert!(message.contains("task is empty"), "{message}");
    let (_, message) = error_code(agent.post(json!({"task": "x", "max_steps": 0})).await, 400).await;
    assert!(message.contains("at least 1"), "{message}");
    let (_, message) = error_code(agent.post(json!({"task": "x", "max_steps": -1})).await, 400).await;
    assert!(message.contains("invalid value"), "{message}");
    let (_, message) = error_code(
        agent
            .post(json!({"task": "x", "callback_url": "https://example.com/"}))
            .await,
        400,
    )
    .await;
    assert!(message.contains("\"async\": true"), "{message}");
    let (_, message) = error_code(
        agent
            .post(json!({"task": "x", "async": true, "callback_url": "https://example.com/"}))
            .await,
        400,
    )
    .await;
    assert!(message.contains("WEBHOOK_SECRET"), "{message}");
    // A callback into the metadata server is refused for what it is, whatever
    // else is configured.
    let (_, message) = error_code(
        agent
            .post(json!({"task": "x", "async": true, "callback_url": "http://169.254.169.254/"}))
            .await,
        400,
    )
    .await;
    assert!(message.contains("link-local"), "{message}");
    let (_, message) = error_code(agent.post(json!({"tsk": "x"})).await, 400).await;
    assert!(message.contains("unknown field `tsk`"), "{message}");
    let (code, _) = error_code(agent.task("no-such-task").await, 404).await;
    assert_eq!(code, "not_found");
    let (_, message) = error_code(agent.task("bad id!").await, 400).await;
    assert!(message.contains("task id"), "{message}");
}

/// With the response cache on, a repeated run's model calls are free hits,
/// but its tools run again: the calculator function serves both runs.
#[tokio::test]
async fn a_repeated_run_hits_the_cache_for_model_calls_and_still_runs_its_tools() {
    let calc_app = TestApp::start(calculator_function::FUNCTION, &[]).await;
    let metrics = calc_app.metrics.clone();
    let calculator = TestServer::start(calculator_function::router(&calc_app)).await;
    let url = format!("{}/api/v1/tools/calculate", calculator.url);
    let agent = Agent::start(&[("CALCULATOR_URL", &url), ("CACHE", "memory")]).await;

    let mut usages = Vec::new();
    for session in ["first", "second"] {
        let response = agent
            .post(json!({"task": "Calcula 15 * 23", "session_id": session}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let run: Value = response.json().await.expect("json");
        assert!(run["response"].as_str().expect("a response").contains("345"), "{run}");
        usages.push(run["usage"].clone());
    }
    let calls = usages[0]["model_calls"].as_u64().expect("model calls");
    assert!(calls >= 2, "a tool call and the answer: {}", usages[0]);
    assert_eq!(usages[0]["cache_hits"], 0, "{}", usages[0]);
    assert_eq!(
        (&usages[1]["model_calls"], &usages[1]["cache_hits"]),
        (&json!(0), &json!(calls)),
        "every model call of the repeat was a hit: {}",
        usages[1]
    );
    let served = metrics.counter(
        "http_requests_total",
        &[
            ("route", "/api/v1/tools/calculate"),
            ("method", "POST"),
            ("status", "200"),
        ],
    );
    assert_eq!(served, 2, "the tool ran for each run; only model calls are cached");
}
