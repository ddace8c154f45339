//! The shared layers as tower services that call the service they wrap
//! directly.
//!
//! `axum::middleware::from_fn` is convenient, but every layer made with it
//! costs every request a clone of the whole stack below it, a boxed service
//! and two boxed futures; and each `Router::layer` call boxes the stack once
//! more, so the clones grow with the square of the depth (about a hundred
//! allocations a request for the layers of [`super::wrap`]). A
//! [`Middleware`] looks at the request, calls the service it wraps at once
//! (it was polled ready by this layer's own `poll_ready`; axum's routes are
//! always ready), and returns one boxed future that looks at the response.
//! [`super::wrap`] applies its layers in one `Router::layer` call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower_layer::Layer;
use tower_service::Service;

/// What a [`Middleware`] answers with: the response, once it is ready.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// What a layer does around the service it wraps.
pub(crate) trait Middleware: Clone + Send + Sync + 'static {
    /// Serves `request`, calling `inner`, which is ready, at most once.
    fn call<S>(&self, request: Request, inner: &mut S) -> ResponseFuture
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static;
}

/// The response of the inner service, which cannot fail.
pub(crate) async fn respond<F>(future: F) -> Response
where
    F: Future<Output = Result<Response, Infallible>>,
{
    match future.await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A [`Middleware`] as a tower layer.
#[derive(Clone)]
pub(crate) struct MiddlewareLayer<M>(pub(crate) M);

impl<M: Clone, S> Layer<S> for MiddlewareLayer<M> {
    type Service = Wrapped<M, S>;

    fn layer(&self, inner: S) -> Wrapped<M, S> {
        Wrapped {
            middleware: self.0.clone(),
            inner,
        }
    }
}

/// A service wrapped by a [`Middleware`].
#[derive(Clone)]
pub(crate) struct Wrapped<M, S> {
    middleware: M,
    inner: S,
}

impl<M, S> Service<Request> for Wrapped<M, S>
where
    M: Middleware,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Infallibly;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Infallibly {
        Infallibly(self.middleware.call(request, &mut self.inner))
    }
}

/// The future of a [`Wrapped`] service: its middleware's, as a `Result`.
pub(crate) struct Infallibly(ResponseFuture);

impl Future for Infallibly {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}
