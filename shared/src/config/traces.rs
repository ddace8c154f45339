//! Whether traces are exported: the standard OpenTelemetry variables, read
//! here only to decide and to refuse what this build cannot do. The
//! exporter reads them again itself (endpoint, headers, timeout), as every
//! OpenTelemetry SDK does, so they mean what their documentation says.

use super::{ConfigError, Env};

/// True when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_ENDPOINT`) and neither `OTEL_SDK_DISABLED=true`
/// nor `OTEL_TRACES_EXPORTER=none` turns export off.
pub(super) fn traces_exported(env: &Env<'_>) -> Result<bool, ConfigError> {
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
    for var in ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
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
            endpoint.get_or_insert(v);
        }
    }
    Ok(endpoint.is_some() && !disabled && !exporter_off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(vars: &[(&str, &str)]) -> Result<bool, ConfigError> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        traces_exported(&Env(&lookup))
    }

    #[test]
    fn traces_are_exported_only_to_a_named_endpoint_over_otlp_http() {
        assert_eq!(exported(&[]), Ok(false));
        assert_eq!(
            exported(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")]),
            Ok(true)
        );
        assert_eq!(
            exported(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://telemetry.googleapis.com/v1/traces"
            )]),
            Ok(true)
        );
        assert_eq!(
            exported(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ]),
            Ok(false)
        );
        assert_eq!(
            exported(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_TRACES_EXPORTER", "none")
            ]),
            Ok(false)
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
}
