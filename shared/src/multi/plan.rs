//! A plan: the subtasks a planner cut a task into, checked before anything
//! runs on it.
//!
//! The planner answers JSON (structured output, so a real model is held to
//! [`schema`]), but a model can still name a tool that does not exist, a
//! dependency that is not there, or a cycle; and a provider without
//! structured output can answer anything. [`parse`] takes nothing on
//! trust: what it accepts can be run in waves to the end.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::ResponseSchema;

/// The name of the plan's schema: what OpenAI's `response_format` calls
/// it, and how the offline model knows it is asked to plan.
pub const SCHEMA_NAME: &str = "plan";

/// The most subtasks any run may have, whatever it asks for.
pub const MAX_SUBTASKS_CAP: usize = 10;

/// The longest subtask id, in characters.
const MAX_ID_CHARS: usize = 64;

/// One subtask of a plan: what to do, with which tools, after which others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subtask {
    /// Unique within the plan (`s1`, `s2`, ... from the offline planner).
    pub id: String,
    /// What to do, as a task an agent can act on alone.
    pub description: String,
    /// The tools it may call (possibly none).
    pub tools: Vec<String>,
    /// The ids of the subtasks whose results it needs.
    pub depends_on: Vec<String>,
}

/// The subtasks, in the order the planner gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    pub subtasks: Vec<Subtask>,
}

/// Why a planner's answer is not a plan that can run; said to the planner
/// in the one repair request, and in the answer when the run fell back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The schema the planner answers in: `tools` limited to the tools there
/// are, at most `max` subtasks.
pub fn schema(tools: &[&str], max: usize) -> ResponseSchema {
    let tool = if tools.is_empty() {
        json!({"type": "string"})
    } else {
        json!({"type": "string", "enum": tools})
    };
    ResponseSchema {
        name: SCHEMA_NAME.to_string(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "subtasks": {
                    "type": "array",
                    "description": format!("1 to {max} subtasks"),
                    "maxItems": max,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "id": {"type": "string", "description": "unique, such as s1"},
                            "description": {"type": "string", "description": "what to do, complete on its own"},
                            "tools": {"type": "array", "items": tool},
                            "depends_on": {"type": "array", "items": {"type": "string"},
                                "description": "ids of subtasks whose results this one needs"},
                        },
                        "required": ["id", "description", "tools", "depends_on"],
                    },
                },
            },
            "required": ["subtasks"],
        }),
    }
}

/// Reads a planner's answer and checks it: JSON of the [`schema`] (inside
/// a Markdown code fence too, as models without structured output write
/// it), 1 to `max` subtasks, unique ids, non-empty descriptions, known
/// tools, dependencies that exist and form no cycle.
pub fn parse(text: &str, tools: &[&str], max: usize) -> Result<Plan, Invalid> {
    let json = unfence(text);
    let value: Value = serde_json::from_str(json).map_err(|e| Invalid(format!("the answer is not JSON ({e})")))?;
    let plan: Plan = serde_json::from_value(value)
        .map_err(|e| Invalid(format!("the JSON is not a plan of the schema given ({e})")))?;
    check(&plan, tools, max)?;
    Ok(plan)
}

/// The JSON inside a ```json fence, or the text as it is.
fn unfence(text: &str) -> &str {
    let text = text.trim();
    let Some(inner) = text.strip_prefix("```") else {
        return text;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

fn check(plan: &Plan, tools: &[&str], max: usize) -> Result<(), Invalid> {
    let n = plan.subtasks.len();
    if n == 0 {
        return Err(Invalid("the plan has no subtasks; give at least one".into()));
    }
    if n > max {
        return Err(Invalid(format!("the plan has {n} subtasks; give at most {max}")));
    }
    let mut ids = HashSet::new();
    for subtask in &plan.subtasks {
        let id = subtask.id.trim();
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
            return Err(Invalid(format!(
                "a subtask id must be 1 to {MAX_ID_CHARS} characters; {:?} is not",
                subtask.id
            )));
        }
        if !ids.insert(subtask.id.as_str()) {
            return Err(Invalid(format!(
                "the id {:?} is used twice; ids must be unique",
                subtask.id
            )));
        }
        if subtask.description.trim().is_empty() {
            return Err(Invalid(format!("subtask {:?} has an empty description", subtask.id)));
        }
        if let Some(unknown) = subtask.tools.iter().find(|t| !tools.contains(&t.as_str())) {
            return Err(Invalid(format!(
                "subtask {:?} names the tool {unknown:?}, which does not exist; the tools are: {}",
                subtask.id,
                tools.join(", ")
            )));
        }
    }
    for subtask in &plan.subtasks {
        if let Some(missing) = subtask.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(Invalid(format!(
                "subtask {:?} depends on {missing:?}, which is not a subtask of the plan",
                subtask.id
            )));
        }
        if subtask.depends_on.contains(&subtask.id) {
            return Err(Invalid(format!("subtask {:?} depends on itself", subtask.id)));
        }
    }
    if waves(plan).is_none() {
        return Err(Invalid(
            "the dependencies form a cycle; a subtask can only depend on subtasks that can finish before it".into(),
        ));
    }
    Ok(())
}

/// The subtasks in waves: each wave's dependencies all lie in earlier
/// waves, so a wave's subtasks can run together. Indexes into
/// `plan.subtasks`, in plan order within a wave; `None` for a cycle.
pub fn waves(plan: &Plan) -> Option<Vec<Vec<usize>>> {
    let index: HashMap<&str, usize> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut done = vec![false; plan.subtasks.len()];
    let mut out = Vec::new();
    while done.iter().any(|d| !d) {
        let wave: Vec<usize> = (0..plan.subtasks.len())
            .filter(|&i| !done[i])
            .filter(|&i| {
                plan.subtasks[i]
                    .depends_on
                    .iter()
                    .all(|d| index.get(d.as_str()).is_some_and(|&j| done[j]))
            })
            .collect();
        if wave.is_empty() {
            return None;
        }
        for &i in &wave {
            done[i] = true;
        }
        out.push(wave);
    }
    Some(out)
}

/// The plan of a run whose planner gave nothing usable: the whole task as
/// one subtask, with every tool.
pub fn single(task: &str, tools: &[&str]) -> Plan {
    Plan {
        subtasks: vec![Subtask {
            id: "s1".to_string(),
            description: task.to_string(),
            tools: tools.iter().map(|t| t.to_string()).collect(),
            depends_on: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &[&str] = &["calculate", "search_web"];

    fn subtask(id: &str, tools: &[&str], depends_on: &[&str]) -> Value {
        json!({"id": id, "description": format!("do {id}"), "tools": tools, "depends_on": depends_on})
    }

    fn plan_text(subtasks: &[Value]) -> String {
        json!({ "subtasks": subtasks }).to_string()
    }

    #[test]
    fn a_valid_plan_runs_in_waves_of_its_dependencies() {
        let text = plan_text(&[
            subtask("a", &["calculate"], &[]),
            subtask("b", &["search_web"], &[]),
            subtask("c", &[], &["a", "b"]),
            subtask("d", &["calculate"], &["a"]),
        ]);
        let plan = parse(&text, TOOLS, 10).expect("valid");
        assert_eq!(waves(&plan), Some(vec![vec![0, 1], vec![2, 3]]));
        let fenced = format!("```json\n{text}\n```");
        assert_eq!(parse(&fenced, TOOLS, 10), Ok(plan));
    }

    #[test]
    fn every_kind_of_invalid_plan_is_refused_with_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not JSON"),
            (json!({"steps": []}).to_string(), "not a plan"),
            (plan_text(&[]), "no subtasks"),
            (
                plan_text(&[subtask("a", &[], &[]), subtask("b", &[], &[]), subtask("c", &[], &[])]),
                "at most 2",
            ),
            (
                plan_text(&[subtask("a", &[], &[]), subtask("a", &[], &[])]),
                "used twice",
            ),
            (plan_text(&[subtask(" ", &[], &[])]), "1 to 64 characters"),
            (
                plan_text(&[json!({"id": "a", "description": " ", "tools": [], "depends_on": []})]),
                "empty description",
            ),
            (
                plan_text(&[subtask("a", &["rm_rf"], &[])]),
                "\"rm_rf\", which does not exist",
            ),
            (plan_text(&[subtask("a", &[], &["z"])]), "\"z\", which is not a subtask"),
            (plan_text(&[subtask("a", &[], &["a"])]), "depends on itself"),
            (
                plan_text(&[subtask("a", &[], &["b"]), subtask("b", &[], &["a"])]),
                "cycle",
            ),
        ];
        for (text, wanted) in cases {
            let err = parse(&text, TOOLS, 2).expect_err(&text);
            assert!(err.0.contains(wanted), "{text}: {err} should say {wanted:?}");
        }
    }

    #[test]
    fn the_schema_offers_only_the_tools_there_are_and_the_limit() {
        let schema = schema(TOOLS, 3);
        assert_eq!(schema.name, "plan");
        let subtasks = &schema.schema["properties"]["subtasks"];
        assert_eq!(subtasks["maxItems"], 3);
        assert_eq!(subtasks["items"]["properties"]["tools"]["items"]["enum"], json!(TOOLS));
        assert_eq!(waves(&single("all of it", TOOLS)), Some(vec![vec![0]]));
    }
}
