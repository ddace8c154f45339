//! Counts of what the store asks of Firestore, for `/metrics`: a chat turn,
//! a task claim or a rate-limit hit is cheap or dear by the gets, queries
//! and commits it makes and the documents it reads and writes, which is
//! what Firestore bills. The calls go through [`Counts`] where they are made
//! (`cas::read` for gets, `cas::commit` for commits, [`Counts::query`]
//! around each query), so a call run again is counted again.

use std::future::Future;

use tracing::Instrument;

use firestore::errors::FirestoreError;

use crate::http::Metrics;
use crate::store::{DOCUMENTS, DOCUMENTS_HELP, OPERATIONS, OPERATIONS_HELP};

const FALLBACKS: &str = "store_history_fallbacks_total";
const FALLBACKS_HELP: &str = "Session histories read with a query because the session document's tail could not cover them \
     (very large messages, HISTORY_LIMIT above the tail's, a session written before tails).";

/// Counts the store's calls to Firestore into `/metrics`, as
/// `store_operations_total{store="firestore",op}` and
/// `store_documents_total{store="firestore",kind="read"|"written"}`:
///
/// - `get`: a read of documents by name: one, or a few in one batched
///   request; 1 document read for each that exists.
/// - `query`: a query; the documents it returned are read.
/// - `begin_transaction`: the start of a transaction: only a session's
///   full read, a read-only one (the conditional commits need none, see
///   `cas::commit`).
/// - `commit`: a commit of writes, or the end of that read-only
///   transaction; its writes are written when it succeeds.
/// - `write`: a single-document write outside a commit (a task created, a
///   task event); 1 document written when it succeeds.
///
/// A call is counted when made, whatever its outcome; documents only when it
/// succeeded. Counting takes a short lock on the metrics table, never held
/// across an await, and makes no request.
#[derive(Clone)]
pub(super) struct Counts {
    metrics: Metrics,
}

impl Counts {
    const OPS: [&'static str; 5] = ["get", "query", "begin_transaction", "commit", "write"];

    /// Starts every series at 0, so that `/metrics` shows them all from the
    /// start.
    pub(super) fn new(metrics: &Metrics) -> Counts {
        let counts = Counts {
            metrics: metrics.clone(),
        };
        for op in Counts::OPS {
            counts
                .metrics
                .inc_by(OPERATIONS, OPERATIONS_HELP, &[("store", "firestore"), ("op", op)], 0);
        }
        for kind in ["read", "written"] {
            counts.documents(kind, 0);
        }
        counts
            .metrics
            .inc_by(FALLBACKS, FALLBACKS_HELP, &[("store", "firestore")], 0);
        counts
    }

    /// A session's history was read with a query: the tail of its document
    /// could not cover it.
    pub(super) fn history_fallback(&self) {
        self.metrics.inc(FALLBACKS, FALLBACKS_HELP, &[("store", "firestore")]);
    }

    #[cfg(test)]
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn call(&self, op: &'static str) {
        self.metrics
            .inc(OPERATIONS, OPERATIONS_HELP, &[("store", "firestore"), ("op", op)]);
    }

    fn documents(&self, kind: &'static str, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.metrics
            .inc_by(DOCUMENTS, DOCUMENTS_HELP, &[("store", "firestore"), ("kind", kind)], n);
    }

    /// Runs `query`, counting it and the documents it returns.
    pub(super) async fn query<T>(
        &self,
        query: impl Future<Output = Result<Vec<T>, FirestoreError>>,
    ) -> Result<Vec<T>, FirestoreError> {
        self.call("query");
        let docs = query.instrument(crate::store::span("firestore", "query")).await?;
        self.documents("read", docs.len());
        Ok(docs)
    }

    /// A get is about to be sent.
    pub(super) fn get(&self) {
        self.call("get");
    }

    /// A get found its document.
    pub(super) fn found(&self) {
        self.documents("read", 1);
    }

    pub(super) fn begin_transaction(&self) {
        self.call("begin_transaction");
    }

    pub(super) fn commit(&self) {
        self.call("commit");
    }

    /// A commit (or a single write) succeeded with `n` writes.
    pub(super) fn written(&self, n: usize) {
        self.documents("written", n);
    }

    /// A single-document write is about to be sent.
    pub(super) fn write(&self) {
        self.call("write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_in_the_metrics_text_from_the_start() {
        let metrics = Metrics::new("chat");
        let counts = Counts::new(&metrics);
        counts.get();
        counts.found();
        let text = metrics.render();
        for line in [
            "# TYPE store_operations_total counter",
            "store_operations_total{function=\"chat\",store=\"firestore\",op=\"get\"} 1",
            "store_operations_total{function=\"chat\",store=\"firestore\",op=\"query\"} 0",
            "store_operations_total{function=\"chat\",store=\"firestore\",op=\"begin_transaction\"} 0",
            "store_operations_total{function=\"chat\",store=\"firestore\",op=\"commit\"} 0",
            "store_operations_total{function=\"chat\",store=\"firestore\",op=\"write\"} 0",
            "# TYPE store_documents_total counter",
            "store_documents_total{function=\"chat\",store=\"firestore\",kind=\"read\"} 1",
            "store_documents_total{function=\"chat\",store=\"firestore\",kind=\"written\"} 0",
            "store_history_fallbacks_total{function=\"chat\",store=\"firestore\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
