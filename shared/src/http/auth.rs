//! The authentication layer: every request to a function's routes gets its
//! [`Principal`] as a request extension, or a 401 (503 when an issuer's keys
//! cannot be fetched) in the error envelope.
//!
//! Who a request is, and which credentials count, is decided by
//! [`crate::auth::Authenticator`]; this layer only applies it. A request
//! with an API key or none costs no await; only a bearer token, whose key
//! set may have to be fetched, is verified in the response future.
//!
//! Credentials never reach a log line: the request span names the method,
//! path, request id and trace only, and refusals say which check failed,
//! never what was presented.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::middleware::{Middleware, ResponseFuture, respond};
use crate::auth::{Authenticator, Identified, Principal};

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
            Identified::Now(Ok(principal)) => {
                request.extensions_mut().insert(principal);
                Box::pin(respond(inner.call(request)))
            }
            Identified::Now(Err(refusal)) => {
                let token_refused = Authenticator::presents_token(request.headers());
                let response = challenged(&self.0, refusal.into_response(), token_refused);
                Box::pin(std::future::ready(response))
            }
            Identified::Token(token) => {
                // The token is verified before the request goes on, so the
                // future takes the ready service and leaves a clone in its
                // place.
                let clone = inner.clone();
                let ready = std::mem::replace(inner, clone);
                Box::pin(verified(self.0.clone(), token, request, ready))
            }
        }
    }
}

async fn verified<S>(authenticator: Arc<Authenticator>, token: String, mut request: Request, mut next: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match authenticator.verify(&token).await {
        Ok(principal) => {
            request.extensions_mut().insert::<Principal>(principal);
            respond(next.call(request)).await
        }
        Err(refusal) => challenged(&authenticator, refusal.into_response(), true),
    }
}

/// `response` with the `WWW-Authenticate` challenge when it is a 401, so a
/// client (or a library such as an OAuth helper) learns which credential
/// to send; a 503 for an unreachable key set carries none.
fn challenged(authenticator: &Authenticator, mut response: Response, token_refused: bool) -> Response {
    if response.status() == axum::http::StatusCode::UNAUTHORIZED
        && let Some(challenge) = authenticator.challenge(token_refused)
    {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
    }
    response
}
