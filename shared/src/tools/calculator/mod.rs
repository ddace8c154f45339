//! Safe arithmetic for the agent: the `calculate` tool.
//!
//! Language models are unreliable at arithmetic, so they get a tool for it.
//! The expression comes from the model, and the model may be repeating text
//! a user wrote to attack the system, so it is never run as code: a small
//! tokenizer and a recursive-descent parser accept numbers, operators,
//! parentheses and a fixed list of functions, and nothing else.
//!
//! Errors are reported in the order a reader would fix them: a character or
//! name that is not allowed (the leftmost one), then the syntax, then the
//! arithmetic. The first arithmetic problem found while evaluating is held
//! until the whole expression has parsed, so `1/0 + (2` is reported as a
//! missing `)`, not as a division by zero that hides the typo.
//!
//! - `lexer`: characters into tokens; names resolved, nothing else allowed.
//! - `functions`: the functions known, their arguments and their values.
//! - `parser`: tokens into a number, bounded in length and depth, every
//!   intermediate result finite.
//! - `error`: why an expression has no result, and how to fix it.
//!
//! This module is the tool the model calls.

mod error;
mod functions;
mod lexer;
mod parser;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolError};
use crate::llm::ToolSpec;
pub use error::CalcError;
pub use parser::{MAX_DEPTH, MAX_EXPRESSION_CHARS, evaluate};

/// The tool's name, as the model calls it.
pub const TOOL_NAME: &str = "calculate";

/// A JSON number for a result: an integral value is a JSON integer (`14`,
/// not `14.0`) as long as it is exact, that is below 2^53 in magnitude.
/// Non-finite values (which [`evaluate`] never returns) become `null`.
pub fn format_number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() < EXACT {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// The tool's arguments, and the body of `POST /api/v1/tools/calculate`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CalculateRequest")]
pub struct Args {
    /// The expression to evaluate, such as "2*(3+4)" or "sqrt(2) + log(1000)".
    #[schemars(schema_with = "crate::http::json::text_schema")]
    pub expression: String,
}

/// The tool's result.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "CalculateResponse")]
pub struct Answer {
    pub expression: String,
    /// A whole number when the result is one (exactly, below 2^53).
    #[schemars(with = "f64")]
    pub result: Value,
}

/// The `calculate` tool: [`evaluate`] for the model.
#[derive(Debug, Clone)]
pub struct Calculator {
    spec: ToolSpec,
}

impl Calculator {
    pub fn new() -> Calculator {
        Calculator {
            spec: ToolSpec {
                name: TOOL_NAME.to_string(),
                description: format!(
                    "Evaluates an arithmetic expression and returns its numeric result. Use it for any arithmetic \
                     rather than computing in your head. Supported: numbers (12, 3.5, .5, 1e3, 2.5E-3); + - * / and \
                     % (remainder); ^ or ** (power, right-associative, so -2^2 = -4); parentheses; the constants pi \
                     and e; the functions sqrt, abs, ln, log (base 10, or log(x, b) for base b), exp, sin, cos, tan \
                     (radians), floor, ceil, round (half away from zero), min and max (2 or more arguments). Write \
                     every multiplication with * (2*pi, not 2pi). No variables, assignments or units. At most \
                     {MAX_EXPRESSION_CHARS} characters."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "expression": {
                            "type": "string",
                            "description": "The expression to evaluate, such as \"2*(3+4)\" or \"sqrt(2) + log(1000)\"."
                        }
                    },
                    "required": ["expression"]
                }),
            },
        }
    }
}

impl Default for Calculator {
    fn default() -> Self {
        Calculator::new()
    }
}

#[async_trait]
impl Tool for Calculator {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let Args { expression } = super::arguments::<Args>(args)?;
        let result = evaluate(&expression).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        Ok(json!(Answer {
            result: format_number(result),
            expression,
        }))
    }
}

/// Helpers the tests of every part share.
#[cfg(test)]
mod fixtures {
    use super::{CalcError, evaluate};

    pub(super) fn eval(expression: &str) -> f64 {
        evaluate(expression).unwrap_or_else(|e| panic!("{expression:?} should evaluate, got: {e}"))
    }

    pub(super) fn error(expression: &str) -> CalcError {
        match evaluate(expression) {
            Ok(value) => panic!("{expression:?} should be refused, got {value}"),
            Err(e) => e,
        }
    }

    #[track_caller]
    pub(super) fn assert_value(expression: &str, expected: f64) {
        let value = eval(expression);
        assert!(
            (value - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "{expression} = {value}, expected {expected}"
        );
    }

    /// Exactly equal, for results that must not carry rounding error.
    #[track_caller]
    pub(super) fn assert_exact(expression: &str, expected: f64) {
        let value = eval(expression);
        assert!(
            value.to_bits() == expected.to_bits(),
            "{expression} = {value}, expected exactly {expected}"
        );
    }

    #[track_caller]
    pub(super) fn assert_message(expression: &str, parts: &[&str]) {
        let message = error(expression).to_string();
        for part in parts {
            assert!(
                message.contains(part),
                "message for {expression:?} should contain {part:?}: {message}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::calculator::fixtures::{assert_exact, eval};

    #[test]
    fn the_basic_example_is_an_integer() {
        assert_exact("2*(3+4)", 14.0);
        assert_eq!(format_number(eval("2*(3+4)")), json!(14));
        assert_eq!(format_number(eval("2*(3+4)")).to_string(), "14");
    }

    #[test]
    fn numbers_in_json() {
        assert_eq!(format_number(14.0), json!(14));
        assert!(format_number(14.0).is_i64());
        assert_eq!(format_number(-3.0), json!(-3));
        assert_eq!(format_number(-0.0).to_string(), "0");
        assert_eq!(format_number(0.5), json!(0.5));
        assert!(format_number(0.5).is_f64());
        assert_eq!(format_number(9_007_199_254_740_991.0), json!(9_007_199_254_740_991_i64));
        assert!(format_number(9_007_199_254_740_992.0).is_f64());
        assert!(format_number(1e300).is_f64());
        assert_eq!(format_number(f64::NAN), Value::Null);
        assert_eq!(format_number(f64::INFINITY), Value::Null);
    }

    #[test]
    fn the_tool_spec() {
        let calculator = Calculator::default();
        let spec = calculator.spec();
        assert_eq!(spec.name, "calculate");
        assert!(spec.description.contains("sqrt") && spec.description.contains("2*pi"));
        assert!(
            spec.description.contains("At most 1000 characters"),
            "{}",
            spec.description
        );
        assert_eq!(spec.parameters["type"], "object");
        assert_eq!(spec.parameters["properties"]["expression"]["type"], "string");
        assert_eq!(spec.parameters["required"], json!(["expression"]));
    }

    #[tokio::test]
    async fn the_tool_returns_the_expression_and_its_result() {
        let result = Calculator::new()
            .call(json!({"expression": "15 * 23"}), &ToolContext::default())
            .await
            .expect("a valid expression");
        assert_eq!(result, json!({"expression": "15 * 23", "result": 345}));

        let result = Calculator::new()
            .call(json!({"expression": "1/4"}), &ToolContext::default())
            .await
            .expect("a valid expression");
        assert_eq!(result, json!({"expression": "1/4", "result": 0.25}));
    }

    async fn refused(args: Value) -> String {
        match Calculator::new().call(args.clone(), &ToolContext::default()).await {
            Err(ToolError::InvalidArguments(message)) => message,
            other => panic!("{args} should be invalid arguments, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_tool_refuses_bad_arguments_with_a_reason() {
        assert!(refused(json!({})).await.contains("missing field `expression`"));
        assert!(refused(Value::Null).await.contains("missing field `expression`"));
        assert!(
            refused(json!({"expression": 5}))
                .await
                .contains("invalid type: integer `5`, expected a string")
        );
        assert!(
            refused(json!({"expression": "1", "x": 1}))
                .await
                .contains("unknown field `x`")
        );
        assert!(refused(json!("2+2")).await.contains("must be a JSON object"));
        assert!(refused(json!({"expression": "1/0"})).await.contains("division by zero"));
        assert!(
            refused(json!({"expression": "__import__('os')"}))
                .await
                .contains("'_' at position 1")
        );
    }
}
