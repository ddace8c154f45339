//! CORS, so a browser app on another origin can call the functions.
//!
//! Written here rather than taken from tower-http because its preflight
//! answers 200 and this contract answers 204, and because the allowed
//! origins come from one setting with two shapes (`*` or a list).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::middleware::{Middleware, ResponseFuture, respond};
use crate::config::CorsOrigins;

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "content-type, x-api-key, x-client-id, x-request-id, authorization, traceparent";
const EXPOSE_HEADERS: &str = "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset";
const MAX_AGE_SECONDS: &str = "600";

/// The `Access-Control-Allow-Origin` value for this origin, if allowed.
fn allow_origin(origins: &CorsOrigins, origin: &HeaderValue) -> Option<HeaderValue> {
    match origins {
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::List(list) => {
            let origin_str = origin.to_str().ok()?;
            list.iter()
                .any(|o| o.eq_ignore_ascii_case(origin_str))
                .then(|| origin.clone())
        }
    }
}

fn add_vary(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// The allowed origins.
#[derive(Clone)]
pub(crate) struct Cors(pub(crate) Arc<CorsOrigins>);

impl Middleware for Cors {
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let origins = &self.0;
        let origin = request.headers().get(header::ORIGIN).cloned();
        let is_preflight = request.method() == Method::OPTIONS
            && origin.is_some()
            && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

        if is_preflight {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            add_vary(headers);
            // A disallowed origin gets no CORS headers: the browser then refuses
            // the call, which is the point.
            if let Some(allowed) = origin.as_ref().and_then(|o| allow_origin(origins, o)) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOW_METHODS),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOW_HEADERS),
                );
                headers.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static(MAX_AGE_SECONDS),
                );
            }
            return Box::pin(std::future::ready(response));
        }

        let response = inner.call(request);
        let origins = origins.clone();
        Box::pin(async move {
            let mut response = respond(response).await;
            if let Some(origin) = origin {
                let headers = response.headers_mut();
                add_vary(headers);
                if let Some(allowed) = allow_origin(&origins, &origin) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
                    headers.insert(
                        header::ACCESS_CONTROL_EXPOSE_HEADERS,
                        HeaderValue::from_static(EXPOSE_HEADERS),
                    );
                }
            }
            response
        })
    }
}
