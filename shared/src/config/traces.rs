//! Where traces are exported: the standard OpenTelemetry variables, with
//! the meaning their specification gives them. The endpoint and headers are
//! read here, like every setting (so a `.env` file can hold them, and a bad
//! one stops the start); the SDK reads the rest itself from the process
//! environment (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT`).

use super::{ConfigError, Env};

/// Where spans go: OTLP/HTTP with protobuf.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` added.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS`:
    /// `name=value` pairs, values percent-decoded. They may hold a
    /// collector's key: never shown.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for TraceExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("TraceExport")
            .field("endpoint", &self.endpoint)
            .field("headers", &names)
            .finish()
    }
}

/// `name=value,name=value`, as the specification spells headers.
fn headers(var: &str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    const EXPECTED: &str = "comma-separated name=value pairs, values percent-encoded (api-key=abc,x-team=42)";
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, raw) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError::new(var, "(not shown)", EXPECTED))?;
        let decoded = percent_encoding::percent_decode_str(raw.trim())
            .decode_utf8()
            .map(String::from)
            .map_err(|_| ConfigError::new(var, "(not shown)", EXPECTED))?;
        let valid = http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
            && http::HeaderValue::from_str(&decoded).is_ok();
        if !valid {
            return Err(ConfigError::new(var, "(not shown)", EXPECTED));
        }
        out.push((name.trim().to_ascii_lowercase(), decoded));
    }
    Ok(out)
}

/// Where to export, when an OTLP endpoint is set
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`)
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`
/// turns export off.
pub(super) fn trace_export(env: &Env<'_>) -> Result<Option<TraceExport>, ConfigError> {
    let disabled = match env.get("OTEL_SDK_DISABLED") {
        None => false,
        Some(v) => super::parse_bool(&v).ok_or_else(|| ConfigError::new("OTEL_SDK_DISABLED", &v, "true or false"))?,
    };
    let exporter_off = match env.get("OTEL_TRACES_EXPORTER") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("otlp") => false,
        Some(v) if v.eq_ignore_ascii_case("none") => true,
        Some(v) => {
            return Err(ConfigError::new(
                "OTEL_TRACES_EXPORTER",
                &v,
                "otlp or none (traces go out over OTLP; for another backend, a collector translates)",
            ));
        }
    };
    for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(v) = env.get(var)
            && v != "http/protobuf"
        {
            return Err(ConfigError::new(
                var,
                &v,
                "http/protobuf (traces are exported over OTLP/HTTP; Cloud Trace's telemetry.googleapis.com \
                 and every collector take it)",
            ));
        }
    }
    let mut endpoint = None;
    for (var, path) in [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"),
    ] {
        if let Some(v) = env.get(var) {
            let url = reqwest::Url::parse(&v)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if url.is_none() {
                return Err(ConfigError::new(
                    var,
                    &v,
                    "the OTLP/HTTP endpoint's URL, such as http://localhost:4318 (a collector) or \
                     https://telemetry.googleapis.com",
                ));
            }
            endpoint.get_or_insert_with(|| format!("{}{path}", v.trim_end_matches('/')));
        }
    }
    let headers = match ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]
        .into_iter()
        .find_map(|var| env.get(var).map(|v| (var, v)))
    {
        Some((var, v)) => headers(var, &v)?,
        None => Vec::new(),
    };
    Ok(endpoint
        .filter(|_| !disabled && !exporter_off)
        .map(|endpoint| TraceExport { endpoint, headers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(vars: &[(&str, &str)]) -> Result<Option<String>, ConfigError> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        trace_export(&Env(&lookup)).map(|e| e.map(|e| e.endpoint))
    }

    #[test]
    fn traces_are_exported_only_to_a_named_endpoint_over_otlp_http() {
        assert_eq!(exported(&[]), Ok(None));
        assert_eq!(
            exported(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")]),
            Ok(Some("http://localhost:4318/v1/traces".into()))
        );
        assert_eq!(
            exported(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://telemetry.googleapis.com/v1/traces"
                ),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318/"),
            ]),
            Ok(Some("https://telemetry.googleapis.com/v1/traces".into())),
            "the signal's own endpoint wins, as given"
        );
        assert_eq!(
            exported(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ]),
            Ok(None)
        );
        assert_eq!(
            exported(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_TRACES_EXPORTER", "none")
            ]),
            Ok(None)
        );
        let err = exported(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")]).expect_err("no scheme");
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let err = exported(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .expect_err("grpc");
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
        assert!(exported(&[("OTEL_TRACES_EXPORTER", "zipkin")]).is_err());
    }

    #[test]
    fn headers_are_read_decoded_and_never_shown() {
        let lookup = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4318".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("api-key=s%3Dcret, X-Team=42".to_string()),
            _ => None,
        };
        let export = trace_export(&Env(&lookup)).expect("valid").expect("exported");
        assert_eq!(
            export.headers,
            vec![
                ("api-key".to_string(), "s=cret".to_string()),
                ("x-team".to_string(), "42".to_string())
            ]
        );
        assert!(!format!("{export:?}").contains("cret"), "{export:?}");
        let lookup = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("no-equals-sign-secret".to_string()),
            _ => None,
        };
        let err = trace_export(&Env(&lookup)).expect_err("malformed");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
