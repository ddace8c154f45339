//! `serve(router)`: one binary for Cloud Run, a laptop and AWS Lambda.
//!
//! On Lambda (`AWS_LAMBDA_RUNTIME_API` set by the Lambda environment) the
//! router answers Function URL, API Gateway and ALB events through
//! `lambda_http`; elsewhere it listens on `0.0.0.0:$PORT`, as Cloud Run's
//! container contract wants, and drains in-flight requests on SIGTERM.
//!
//! Lambda takes an answer whole or streamed, and which one is the Function
//! URL's invoke mode, repeated in `LAMBDA_INVOKE_MODE`
//! ([`LambdaInvokeMode`]). Streamed, every answer goes back through the
//! Runtime API's streaming protocol (`lambda_http`'s streaming runner: a
//! chunked POST whose body is a JSON prelude with the status, headers and
//! cookies, eight NUL bytes, then the body as it is written), so a chat
//! stream's `delta` events reach the client as the model writes them. The
//! routes that answer whole go the same way, as one chunk: their bodies are
//! axum bodies, which the runner reads frame by frame, not `lambda_http`'s
//! own `Body`, whose buffered variants are what came out empty in
//! lambda_http's issue 805 (`chat_function/tests/lambda.rs` checks status,
//! headers and whole bodies of such routes under the streaming runner).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::{LambdaInvokeMode, Settings};
use crate::http::detached;

/// Cloud Run sends SIGKILL 10 s after SIGTERM; finish within that.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// Serves `router` until SIGTERM or Ctrl-C (or forever, on Lambda), on
/// `settings.port` or through the Lambda Runtime API in
/// `settings.lambda_invoke_mode`.
pub async fn serve(router: Router, settings: &Settings) -> anyhow::Result<()> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Lambda freezes the process once an answer is given: the spans of
        // the invocation go out before it is, not in the next one's batch.
        let router = if crate::telemetry::enabled() {
            router.layer(axum::middleware::map_response(flush_traces))
        } else {
            router
        };
        let ran = match settings.lambda_invoke_mode {
            LambdaInvokeMode::Buffered => {
                tracing::info!("running on AWS Lambda, answers buffered (LAMBDA_INVOKE_MODE=BUFFERED)");
                lambda_http::run(router).await
            }
            LambdaInvokeMode::ResponseStream => {
                tracing::info!("running on AWS Lambda, answers streamed (LAMBDA_INVOKE_MODE=RESPONSE_STREAM)");
                lambda_http::run_with_streaming_response(router).await
            }
        };
        return ran.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let listener = bind(settings.port).await?;
    serve_on(listener, router, shutdown_signal()).await
}

async fn flush_traces(response: axum::response::Response) -> axum::response::Response {
    let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
    response
}

pub async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("cannot listen on port {port} (PORT): is another process using it?"))
}

/// Serves on a bound listener until `shutdown` completes, then gives open
/// requests, and the work they left running, `DRAIN_TIMEOUT` to finish.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // When the drain must end: set once `shutdown` completes.
    let (tx, rx) = tokio::sync::watch::channel(None::<Instant>);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing open requests");
        let _ = tx.send(Some(Instant::now() + DRAIN_TIMEOUT));
    };
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(signal);
    let mut stopping = rx.clone();
    let deadline = async move {
        let at = stopping.wait_for(Option::is_some).await.ok().and_then(|at| *at);
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result.context("server failed")?,
        _ = deadline => {
            tracing::warn!("open requests did not finish within {DRAIN_TIMEOUT:?}; stopping anyway");
            return Ok(());
        }
    }
    // The requests are answered; what they left running (a chat turn whose
    // client went away) has what is left of the drain time.
    let at = (*rx.borrow()).unwrap_or_else(|| Instant::now() + DRAIN_TIMEOUT);
    if !detached::drained(at.saturating_duration_since(Instant::now())).await {
        tracing::warn!("work left by requests did not finish within {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    // The last requests' spans go out before the process does (a blocking
    // flush, off the runtime's threads).
    if crate::telemetry::enabled() {
        let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    }
    Ok(())
}

/// SIGTERM (Cloud Run, Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
