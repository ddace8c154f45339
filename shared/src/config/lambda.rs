//! AWS Lambda's settings: how answers go back (`LAMBDA_INVOKE_MODE`).

use super::{ConfigError, Env};

/// How answers go back to AWS Lambda (`LAMBDA_INVOKE_MODE`); it must match
/// the Function URL's invoke mode, which is a setting of the URL, not of the
/// request, so the function cannot find it out for itself.
///
/// `Buffered` is the default because it is Lambda's: a Function URL created
/// without `--invoke-mode` is `BUFFERED`, and such a URL cannot take a
/// streamed answer, so a function must not stream unless told its URL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaInvokeMode {
    /// The whole answer at once, as API Gateway, ALB and a `BUFFERED`
    /// Function URL take it; a stream is held until it ends.
    Buffered,
    /// Every answer streamed as it is written (`RESPONSE_STREAM` Function
    /// URLs): server-sent events arrive as they are sent.
    ResponseStream,
}

pub(super) fn lambda_invoke_mode(env: &Env<'_>) -> Result<LambdaInvokeMode, ConfigError> {
    env.parse_or(
        "LAMBDA_INVOKE_MODE",
        LambdaInvokeMode::Buffered,
        "BUFFERED or RESPONSE_STREAM (the Function URL's invoke mode)",
        |v| match v.to_ascii_uppercase().as_str() {
            "BUFFERED" => Some(LambdaInvokeMode::Buffered),
            "RESPONSE_STREAM" => Some(LambdaInvokeMode::ResponseStream),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn buffered_is_the_default_as_it_is_lambdas() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.lambda_invoke_mode, LambdaInvokeMode::Buffered);
    }

    #[test]
    fn the_lambda_invoke_mode_is_the_function_urls() {
        for (value, mode) in [
            ("BUFFERED", LambdaInvokeMode::Buffered),
            ("RESPONSE_STREAM", LambdaInvokeMode::ResponseStream),
            ("response_stream", LambdaInvokeMode::ResponseStream),
        ] {
            let s = settings(&[("LAMBDA_INVOKE_MODE", value)]).expect("a valid mode");
            assert_eq!(s.lambda_invoke_mode, mode, "{value}");
        }
        let err = settings(&[("LAMBDA_INVOKE_MODE", "STREAM")]).expect_err("not a mode");
        assert_eq!(err.var, "LAMBDA_INVOKE_MODE");
        assert!(err.to_string().contains("RESPONSE_STREAM"), "{err}");
    }
}
