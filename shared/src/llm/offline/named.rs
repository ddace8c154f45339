//! A call to a tool named in the task: `use TOOL with TEXT` (also `on`,
//! `for`, `:`; Spanish `usa TOOL con TEXT`).
//!
//! The other phrasings know the built-in tools by their verbs; a tool that
//! arrives at run time (an MCP server's `name__tool`, a remote agent's
//! `ask_<name>`) has no verb, so the task names it. TEXT becomes the
//! arguments: itself when it is a JSON object, else the value of the
//! tool's first required string parameter, which is how the tests drive
//! any such tool through the offline model.

use serde_json::{Map, Value};

use super::super::{FunctionCall, ToolSpec};

const USE_VERBS: &[&str] = &["use", "call", "ask", "usa", "llama"];
const JOINERS: &[&str] = &["with", "on", "for", "to", "con", "para", ":"];

/// The call the task asks for by naming an offered tool, if it does.
pub(super) fn named_call(task: &str, tools: &[ToolSpec]) -> Option<FunctionCall> {
    let task = task.trim();
    let (verb, rest) = task.split_once(char::is_whitespace)?;
    let verb = verb.trim_start_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    if !USE_VERBS.contains(&verb.as_str()) {
        return None;
    }
    let rest = rest.trim_start();
    let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))?;
    let (name, text) = rest.split_at(name_end);
    let tool = tools.iter().find(|t| t.name == name)?;
    let mut text = text.trim_start();
    for joiner in JOINERS {
        let lower = text.to_lowercase();
        if lower.starts_with(joiner) && lower[joiner.len()..].starts_with(|c: char| c.is_whitespace() || c == '{') {
            text = text[joiner.len()..].trim_start();
            break;
        }
        if *joiner == ":" && text.starts_with(':') {
            text = text[1..].trim_start();
            break;
        }
    }
    let text = text.trim_end_matches(['.', '!', '?']).trim();
    if text.is_empty() {
        return None;
    }
    let args = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            let param = first_string_param(&tool.parameters)?;
            Value::Object(Map::from_iter([(param, Value::String(text.to_string()))]))
        }
    };
    Some(FunctionCall {
        id: Some("call_1".to_string()),
        name: tool.name.clone(),
        args,
    })
}

/// The first required string property of a JSON Schema, else its first
/// string property.
fn first_string_param(schema: &Value) -> Option<String> {
    let properties = schema["properties"].as_object()?;
    let is_string = |name: &str| properties.get(name).is_some_and(|p| p["type"] == "string");
    let required = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    required
        .clone()
        .find(|name| is_string(name))
        .or_else(|| properties.keys().map(String::as_str).find(|name| is_string(name)))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shout() -> ToolSpec {
        ToolSpec {
            name: "peer__shout".into(),
            description: "shouts".into(),
            parameters: json!({"type": "object", "properties": {"times": {"type": "integer"}, "text": {"type": "string"}}, "required": ["text"]}),
        }
    }

    #[test]
    fn a_named_tool_gets_the_text_as_its_string_parameter() {
        let call = named_call("Use peer__shout with hello there.", &[shout()]).expect("a call");
        assert_eq!(call.name, "peer__shout");
        assert_eq!(call.args, json!({"text": "hello there"}));
        let call = named_call("usa peer__shout con hola", &[shout()]).expect("a call");
        assert_eq!(call.args, json!({"text": "hola"}));
    }

    #[test]
    fn json_text_is_the_arguments() {
        let call = named_call(r#"call peer__shout {"text": "a", "times": 2}"#, &[shout()]).expect("a call");
        assert_eq!(call.args, json!({"text": "a", "times": 2}));
    }

    #[test]
    fn only_offered_tools_are_named() {
        assert!(named_call("use peer__whisper with hi", &[shout()]).is_none());
        assert!(named_call("please calculate 2+2", &[shout()]).is_none());
        assert!(named_call("use peer__shout", &[shout()]).is_none());
    }
}
