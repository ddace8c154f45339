//! Work a request starts that must end even when its client goes away.
//!
//! A client that disconnects makes hyper drop the request's future wherever
//! it is waiting. Work dropped at one of its awaits is lost: a model call
//! paid for whose answer is never stored, a task left `running` forever.
//! [`run`] puts the work on a task of its own and only waits for it there,
//! so it runs to its end (within its own time limits) and records its
//! outcome whether or not anyone is still waiting; the work is given a
//! [`Client`] to ask, once it has its answer, whether anyone is.
//! [`spawn`] is for work that goes on after the request has answered (the
//! rest of an event stream).
//!
//! Both count as in flight until they end, and a shutdown waits for them
//! ([`drained`], in `runtime::serve_on`) as for open requests: SIGTERM on
//! Cloud Run must not drop a turn whose client already left.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::Instrument;

use super::ApiError;

/// Whether the request that started some detached work still waits for it.
#[derive(Debug, Clone)]
pub struct Client {
    waiting: Weak<()>,
}

impl Client {
    /// The request's future was dropped: its client went away.
    pub fn is_gone(&self) -> bool {
        self.waiting.strong_count() == 0
    }
}

/// Runs `work` on a task of its own and answers with its answer.
///
/// If the request is dropped while waiting, `work` goes on to its end. A
/// panic in `work` stays a panic of the request (answered as a logged 500
/// by the HTTP layer); work stopped by the runtime shutting down is a 503.
pub async fn run<T, F, Fut>(work: F) -> Result<T, ApiError>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let waiting = Arc::new(());
    let client = Client {
        waiting: Arc::downgrade(&waiting),
    };
    let task = tokio::spawn(counted(work(client)).instrument(tracing::Span::current()));
    let outcome = task.await;
    // Held until here: dropped earlier only with this future.
    drop(waiting);
    match outcome {
        Ok(answer) => answer,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(ApiError::unavailable(
            "the function is shutting down; send the request again",
            Duration::from_secs(1),
        )),
    }
}

/// Runs `work` on a task of its own, in the request's span (its logs keep
/// the request id), and does not wait for it.
pub fn spawn<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(counted(work).instrument(tracing::Span::current()));
}

/// Detached work of this process not yet ended.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Told when [`IN_FLIGHT`] comes down to 0.
static IDLE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// `work`, counted in [`IN_FLIGHT`] from now until it ends, panics included.
fn counted<F: Future>(work: F) -> impl Future<Output = F::Output> {
    struct Ends;
    impl Drop for Ends {
        fn drop(&mut self) {
            if IN_FLIGHT.fetch_sub(1, Ordering::AcqRel) == 1 {
                IDLE.notify_waiters();
            }
        }
    }
    IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
    let ends = Ends;
    async move {
        let _ends = ends;
        work.await
    }
}

/// Waits until no detached work is running, at most `within`; whether it
/// all ended.
pub async fn drained(within: Duration) -> bool {
    let waiting = async {
        loop {
            let idle = IDLE.notified();
            if IN_FLIGHT.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    };
    tokio::time::timeout(within, waiting).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_ends_and_sees_its_client_gone_when_the_request_is_dropped() {
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let request = tokio::spawn({
            let release = release.clone();
            run(move |client| async move {
                let _ = started_tx.send(());
                release.notified().await;
                let _ = ended_tx.send(client.is_gone());
                Ok(())
            })
        });
        started.await.expect("the work starts");
        request.abort();
        assert!(request.await.is_err_and(|e| e.is_cancelled()));
        release.notify_one();
        assert!(ended.await.expect("the work ends"), "its client is gone");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_answer_and_its_client_is_there() {
        let answer = run(|client| async move { Ok(client.is_gone()) }).await;
        assert_eq!(answer.ok(), Some(false));
    }
}
