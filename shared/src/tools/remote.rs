//! A tool served by another function, called over HTTP(S).
//!
//! With `SEARCH_URL` or `CALCULATOR_URL` set, the agent sends the tool's
//! arguments as the body of a `POST` to that function (its request body is
//! the tool's arguments, by design) and hands its JSON answer to the model.
//! On Google Cloud the tool functions are private: each call carries a
//! Google ID token whose audience is the function's URL, from the metadata
//! server, cached until shortly before it expires. Whatever goes wrong, the
//! model gets an error result and the run goes on.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::{Tool, ToolContext, ToolError};
use crate::config::Secret;
use crate::gcp::MetadataClient;
use crate::llm::ToolSpec;

pub struct RemoteTool {
    spec: ToolSpec,
    url: String,
    audience: String,
    http: reqwest::Client,
    id_tokens: Option<MetadataClient>,
    api_key: Option<Secret>,
    timeout: Duration,
}

impl RemoteTool {
    /// `spec` is the local tool's: the remote function takes the same
    /// arguments. `id_tokens` is set on Google Cloud.
    pub fn new(
        spec: ToolSpec,
        url: &str,
        http: reqwest::Client,
        id_tokens: Option<MetadataClient>,
        api_key: Option<Secret>,
        timeout: Duration,
    ) -> RemoteTool {
        RemoteTool {
            spec,
            url: url.to_string(),
            audience: audience(url),
            http,
            id_tokens,
            api_key,
            timeout,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Cloud Run checks the token's audience against the service URL: its
/// scheme and host, without the route.
pub(crate) fn audience(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_string(),
    }
}

/// The error message of a JSON error envelope, or the start of the body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[async_trait]
impl Tool for RemoteTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, _context: &ToolContext) -> Result<Value, ToolError> {
        let name = &self.spec.name;
        let mut request = crate::telemetry::propagate(
            self.http
                .post(&self.url)
                .timeout(self.timeout)
                .header(CONTENT_TYPE, "application/json")
                .json(&args),
        );
        if let Some(tokens) = &self.id_tokens {
            let token = tokens
                .id_token(&self.audience)
                .await
                .map_err(|e| ToolError::Failed(format!("could not authenticate to the {name} function: {e}")))?;
            request = request.header(AUTHORIZATION, format!("Bearer {}", token));
        }
        if let Some(key) = &self.api_key {
            request = request.header(crate::http::auth::HEADER, key.expose());
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "did not answer in time"
            } else {
                "could not be reached"
            };
            ToolError::Failed(format!("the {name} function at {} {what}", self.url))
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|_| ToolError::Failed(format!("the {name} function's answer could not be read")))?;
        if status.is_client_error() {
            // The function judged the arguments: say why, so the model can fix them.
            return Err(ToolError::InvalidArguments(error_message(&body)));
        }
        if !status.is_success() {
            return Err(ToolError::Failed(format!(
                "the {name} function answered {}: {}",
                status.as_u16(),
                error_message(&body)
            )));
        }
        serde_json::from_str(&body)
            .map_err(|_| ToolError::Failed(format!("the {name} function did not answer with JSON")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audience_is_the_service_origin() {
        assert_eq!(
            audience("https://calc-abc-uc.a.run.app/api/v1/tools/calculate"),
            "https://calc-abc-uc.a.run.app"
        );
        assert_eq!(audience("http://127.0.0.1:9000/x"), "http://127.0.0.1:9000");
    }

    #[test]
    fn envelope_messages_are_extracted() {
        assert_eq!(
            error_message(r#"{"error":{"code":"invalid_argument","message":"division by zero"}}"#),
            "division by zero"
        );
        assert_eq!(error_message("<html>oops</html>"), "<html>oops</html>");
    }
}
