//! JSON request bodies with errors a client can act on.
//!
//! axum's `Json` answers 415 to a body without `Content-Type:
//! application/json` and plain-text messages for the rest. `curl -d` sends
//! `application/x-www-form-urlencoded`, so a strict content type would turn
//! the README's first example into an error: the body is parsed as JSON
//! whatever its declared type, and every failure becomes the envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::{ApiError, BodyLimit, payload_too_large};

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = request.extensions().get::<BodyLimit>().copied();
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large(limit)
            } else if timed_out(&rejection) {
                ApiError::request_timeout()
            } else {
                ApiError::invalid_argument(format!("the request body could not be read: {}", rejection.body_text()))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Whether reading the body failed because the client stopped sending it
/// (the body timeout of [`super::wrap`]).
fn timed_out(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    crate::retry::causes(rejection).any(|err| err.is::<super::BodyDeadline>())
}

/// Parses a JSON body, explaining a failure in the client's terms.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_argument(
            "the request body is empty; send a JSON object (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::invalid_argument(format!("the request body is not valid JSON: {err}"))
            }
            Category::Data => ApiError::invalid_argument(format!("the request body has a wrong field: {err}")),
        }
    })
}

/// A required text field: present, not blank, at most `max_chars` long.
/// A text that is not blank: at least one character that Rust's
/// `char::is_whitespace` (which [`require_text`] trims) does not count as
/// space. The class is spelled out because `\s` differs between regex
/// dialects (U+0085, U+FEFF).
pub fn text_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        "description": "not blank; at most MAX_MESSAGE_CHARS characters",
    })
}

pub fn require_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid_argument(format!(
            "{field} is empty; send the text in {field}"
        )));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ApiError::invalid_argument(format!(
            "{field} is {chars} characters long, over the limit of {max_chars}; shorten it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        message: String,
        stream: Option<bool>,
    }

    fn message(bytes: &str) -> String {
        parse::<Body>(bytes.as_bytes()).expect_err("must fail").message
    }

    #[test]
    fn failures_say_what_was_wrong() {
        assert!(message("").contains("empty"));
        assert!(message("{").contains("not valid JSON"));
        assert!(message("{}").contains("missing field `message`"));
        assert!(message(r#"{"message":1}"#).contains("invalid type: integer `1`, expected a string"));
        assert!(message(r#"{"message":"x","stream":"yes"}"#).contains("expected a boolean"));
        assert!(message(r#"{"mesage":"x"}"#).contains("unknown field `mesage`"));
        assert!(message("[1]").contains("wrong field"));
    }
}
