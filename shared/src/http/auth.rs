//! The authentication layer: every request to a function's routes gets its
//! [`crate::auth::Principal`] as a request extension, or a 401 in the error
//! envelope.
//!
//! Who a request is, and which credentials count, is decided by
//! [`crate::auth::Authenticator`]; this layer only applies it.
//!
//! Credentials never reach a log line: the request span names the method,
//! path, request id and trace only, and refusals say what was wrong, never
//! what was presented.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::middleware::{Middleware, ResponseFuture, respond};
use crate::auth::Authenticator;

/// The header remote tool calls send their key in.
pub(crate) use crate::auth::API_KEY_HEADER as HEADER;

/// Puts the request's [`Principal`] in its extensions, or refuses it.
#[derive(Clone)]
pub(crate) struct Authenticate(pub(crate) Arc<Authenticator>);

impl Middleware for Authenticate {
    fn call<S>(&self, mut request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        match self.0.identify(request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(respond(inner.call(request)))
            }
            Err(refusal) => Box::pin(std::future::ready(refusal.into_response())),
        }
    }
}
