//! The offline model's parts in a multi-agent run: the planner and the
//! synthesis (an executor is an agent run, which the model already
//! plays); and which of a research's roles a call is (see `research`).
//!
//! It recognises a planner call by its response schema's name and a
//! synthesis by its system instruction, both the orchestrator's own
//! (`multi`), and answers them as deterministically as it plans tool calls:
//!
//! - **plan**: every clause of the task that asks for a tool call (see
//!   `plan::plan_clause`) becomes a subtask with the tools of its calls; a
//!   clause that only asks to combine the results ("and summarise both",
//!   "y resume ambos") is left to the synthesis; a clause opened by "then"
//!   ("luego", "después") depends on the subtask before it. Past the
//!   schema's `maxItems`, the rest joins the last subtask. A task with no
//!   tool request is one subtask with no tools.
//! - **synthesis**: each subtask's result on a line of its own, and what
//!   could not be done, with why.

use serde_json::{Value, json};

use super::plan::{CONJUNCTIONS, clauses, clean, plan_clause, sentences, words};
use crate::llm::{ModelRequest, Role};
use crate::multi::{SYNTHESIS_INSTRUCTION, SynthesisInput, plan::SCHEMA_NAME};

/// Verbs that ask to combine results: the synthesis's job, not a subtask.
const COMBINE_VERBS: &[&str] = &[
    "summarize",
    "summarise",
    "combine",
    "compare",
    "conclude",
    "resume",
    "resumir",
    "resúmelo",
    "resúmelos",
    "combina",
    "compara",
    "concluye",
    "sintetiza",
];

/// Words that make a clause wait for the one before it.
const THEN_WORDS: &[&str] = &["then", "luego", "después", "despues"];

/// The answer's text when `request` is a planner's or a synthesis's.
pub(super) fn role_answer(request: &ModelRequest) -> Option<String> {
    if let Some(output) = &request.response_schema
        && output.name == SCHEMA_NAME
    {
        return Some(plan(&first_user_text(request), &output.schema).to_string());
    }
    if let Some(output) = &request.response_schema
        && output.name == crate::research::SUBTOPICS_SCHEMA_NAME
    {
        return Some(super::research::subtopics(&first_user_text(request), &output.schema).to_string());
    }
    let writing = |input: &str| serde_json::from_str::<crate::research::WriterInput>(input);
    let last = || request.contents.last().map(|c| c.text()).unwrap_or_default();
    let unreadable = |err: serde_json::Error| format!("[offline model] The material could not be read: {err}.");
    match request.system_instruction.as_deref() {
        Some(crate::research::ANALYST_INSTRUCTION) => {
            return Some(writing(&last()).map_or_else(unreadable, |i| super::research::analysis(&i)));
        }
        Some(crate::research::WRITER_INSTRUCTION) => {
            return Some(writing(&last()).map_or_else(unreadable, |i| super::research::report(&i)));
        }
        Some(crate::research::CRITIC_INSTRUCTION) => {
            return Some(writing(&last()).map_or_else(unreadable, |i| super::research::critique(&i)));
        }
        _ => {}
    }
    if request.system_instruction.as_deref() == Some(SYNTHESIS_INSTRUCTION) {
        let input = request.contents.last().map(|c| c.text()).unwrap_or_default();
        return Some(match serde_json::from_str::<SynthesisInput>(&input) {
            Ok(input) => synthesis(&input),
            Err(err) => format!("[offline model] The results could not be read: {err}."),
        });
    }
    None
}

/// The first user turn: what a planner is asked to plan (a repair request
/// follows it).
fn first_user_text(request: &ModelRequest) -> String {
    request
        .contents
        .iter()
        .find(|c| c.role() == Role::User)
        .map(|c| c.text())
        .unwrap_or_default()
}

/// A plan of `task` in the shape of `schema` (its tools' `enum` and the
/// subtasks' `maxItems`).
fn plan(task: &str, schema: &Value) -> Value {
    let subtasks = &schema["properties"]["subtasks"];
    let max = subtasks["maxItems"].as_u64().unwrap_or(10).max(1) as usize;
    let offered: Vec<&str> = subtasks["items"]["properties"]["tools"]["items"]["enum"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    // (description, tools, depends on the one before)
    let mut planned: Vec<(String, Vec<&str>, bool)> = Vec::new();
    for clause in sentences(task).into_iter().flat_map(clauses) {
        let ws = words(clause);
        let lead = ws
            .iter()
            .take_while(|w| CONJUNCTIONS.contains(&w.key.as_str()))
            .collect::<Vec<_>>();
        let after_then = lead.iter().any(|w| THEN_WORDS.contains(&w.key.as_str()));
        let body = ws.get(lead.len()).map_or("", |w| &clause[w.start..]);
        let body = without_combining_tail(body);
        let mut tools: Vec<&str> = Vec::new();
        for (name, _) in plan_clause(body, &offered) {
            if !tools.contains(&name) {
                tools.push(name);
            }
        }
        let description = clean(body);
        if tools.is_empty() || description.is_empty() {
            continue;
        }
        planned.push((description, tools, after_then && !planned.is_empty()));
    }
    if planned.is_empty() {
        planned.push((clean(task), Vec::new(), false));
    }
    while planned.len() > max {
        let Some((description, tools, _)) = planned.pop() else {
            break;
        };
        if let Some(last) = planned.last_mut() {
            last.0 = format!("{}; {description}", last.0);
            for tool in tools {
                if !last.1.contains(&tool) {
                    last.1.push(tool);
                }
            }
        }
    }
    let subtasks: Vec<Value> = planned
        .into_iter()
        .enumerate()
        .map(|(i, (description, tools, after_then))| {
            let depends_on: Vec<String> = if after_then { vec![format!("s{i}")] } else { Vec::new() };
            json!({"id": format!("s{}", i + 1), "description": description, "tools": tools, "depends_on": depends_on})
        })
        .collect();
    json!({ "subtasks": subtasks })
}

/// A clause less a trailing "and summarise both": cut before the
/// conjunction that opens a combining verb.
fn without_combining_tail(clause: &str) -> &str {
    let ws = words(clause);
    for i in 1..ws.len() {
        if CONJUNCTIONS.contains(&ws[i - 1].key.as_str()) && COMBINE_VERBS.contains(&ws[i].key.as_str()) {
            return &clause[..ws[i - 1].start];
        }
    }
    clause
}

fn synthesis(input: &SynthesisInput) -> String {
    let mut out = format!("[offline model] For \"{}\":", input.task.trim());
    for item in &input.subtasks {
        match (&item.result, item.status.as_str()) {
            (Some(result), "completed") => out.push_str(&format!("\n- {}: {}", item.description, result.trim())),
            _ => out.push_str(&format!(
                "\n- {}: could not be done ({})",
                item.description,
                item.error.as_deref().unwrap_or(&item.status)
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::offline::wire_names::{CALCULATE, SEARCH_WEB};
    use crate::multi::plan;

    fn planned(task: &str, max: usize) -> plan::Plan {
        let schema = plan::schema(&[CALCULATE, SEARCH_WEB], max);
        let text = plan(task, &schema.schema).to_string();
        plan::parse(&text, &[CALCULATE, SEARCH_WEB], max).expect("a valid plan")
    }

    #[test]
    fn a_task_of_two_requests_is_two_subtasks_and_the_summary_is_left_to_synthesis() {
        let plan = planned("Calcula 25*4, busca información sobre cold start y resume ambos", 5);
        let got: Vec<(&str, Vec<&str>, usize)> = plan
            .subtasks
            .iter()
            .map(|s| {
                (
                    s.description.as_str(),
                    s.tools.iter().map(String::as_str).collect(),
                    s.depends_on.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Calcula 25*4", vec![CALCULATE], 0),
                ("busca información sobre cold start", vec![SEARCH_WEB], 0),
            ]
        );
    }

    #[test]
    fn then_makes_a_dependency_and_the_limit_folds_the_rest_into_the_last() {
        let plan = planned("Search for rust, then calculate 2+2 and calculate 3*3", 5);
        assert_eq!(plan.subtasks.len(), 3);
        assert_eq!(plan.subtasks[1].depends_on, vec!["s1".to_string()]);
        assert!(plan.subtasks[2].depends_on.is_empty());
        let folded = planned("Search for rust, then calculate 2+2 and search for go", 2);
        assert_eq!(folded.subtasks.len(), 2);
        assert_eq!(folded.subtasks[1].description, "calculate 2+2; search for go");
        assert_eq!(
            folded.subtasks[1].tools,
            vec![CALCULATE.to_string(), SEARCH_WEB.to_string()]
        );
    }

    #[test]
    fn a_task_without_tool_requests_is_one_subtask_without_tools() {
        let plan = planned("Write a haiku about autumn.", 5);
        assert_eq!(plan.subtasks.len(), 1);
        assert_eq!(plan.subtasks[0].description, "Write a haiku about autumn");
        assert!(plan.subtasks[0].tools.is_empty());
    }

    #[test]
    fn the_synthesis_lists_every_result_and_every_failure() {
        let input = SynthesisInput {
            task: "do both".into(),
            subtasks: vec![
                crate::multi::SynthesisItem {
                    id: "s1".into(),
                    description: "Calcula 25*4".into(),
                    status: "completed".into(),
                    result: Some("25*4 = 100".into()),
                    error: None,
                },
                crate::multi::SynthesisItem {
                    id: "s2".into(),
                    description: "search".into(),
                    status: "failed".into(),
                    result: None,
                    error: Some("the model provider is unavailable".into()),
                },
            ],
        };
        assert_eq!(
            synthesis(&input),
            "[offline model] For \"do both\":\n- Calcula 25*4: 25*4 = 100\n- search: could not be done (the model provider is unavailable)"
        );
    }
}
