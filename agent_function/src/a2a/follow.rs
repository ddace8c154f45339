//! A task's life as an A2A stream: the task first, then a status event at
//! each change of its state, and at its end the answer as an artifact and
//! the last status (0.3: `final: true`), after which the stream ends.
//!
//! The task is read from the store, whichever instance runs it: a read
//! every 100 ms at first, backing off to one a second, so a long run costs
//! a read a second while someone follows it. A client that leaves stops
//! the reads; the task runs on.

use std::time::Duration;

use agent_core::a2a::rpc;
use agent_core::a2a::{Version, wire};
use agent_core::store::TaskStatus;
use agent_core::task::TaskView;
use axum::response::Response;
use axum::response::sse::Event;
use serde_json::Value;

use super::A2a;

const FIRST_POLL: Duration = Duration::from_millis(100);
const LAST_POLL: Duration = Duration::from_secs(1);
/// The longest a stream follows a task that does not end (a queue that
/// never delivers it): the stream then ends on the last status it saw,
/// and `tasks/resubscribe` picks it up again.
const FOLLOW_FOR: Duration = Duration::from_secs(15 * 60);

struct Following {
    a2a: A2a,
    version: Version,
    id: Value,
    task: TaskView,
    /// The status last sent; `None` before the first event.
    sent: Option<TaskStatus>,
    poll: Duration,
    started: tokio::time::Instant,
    ended: bool,
}

pub(super) fn stream(a2a: &A2a, version: Version, id: Value, task: TaskView) -> Response {
    let start = Following {
        a2a: a2a.clone(),
        version,
        id,
        task,
        sent: None,
        poll: FIRST_POLL,
        started: tokio::time::Instant::now(),
        ended: false,
    };
    let events = futures_util::stream::unfold(start, |mut state| async move {
        let events = state.next().await?;
        Some((futures_util::stream::iter(events.into_iter().map(Ok)), state))
    });
    agent_core::http::sse::response(futures_util::StreamExt::flatten(events))
}

impl Following {
    /// The next events, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Vec<Event>> {
        if self.ended {
            return None;
        }
        let version = self.version;
        if self.sent.is_none() {
            self.sent = Some(self.task.status);
            let first = wire::send_result(version, wire::task(version, &self.task, None));
            let mut events = vec![self.event(first)];
            events.extend(self.ending());
            return Some(events);
        }
        loop {
            if self.started.elapsed() >= FOLLOW_FOR {
                self.ended = true;
                return None;
            }
            tokio::time::sleep(self.poll).await;
            self.poll = (self.poll * 3 / 2).min(LAST_POLL);
            let read = self.a2a.agent.tasks.get(&self.task.task_id).await;
            let Ok(Some(record)) = read else {
                // A store that did not answer: try again; a task removed
                // meanwhile (a TTL policy) ends the stream.
                if matches!(read, Ok(None)) {
                    self.ended = true;
                    return None;
                }
                continue;
            };
            self.task = record.into();
            if Some(self.task.status) == self.sent {
                continue;
            }
            self.sent = Some(self.task.status);
            let mut events = Vec::new();
            if !self.task.status.is_finished() {
                events.push(self.event(wire::status_update(version, &self.task, false)));
            }
            events.extend(self.ending());
            return Some(events);
        }
    }

    /// At a finished task: its artifact and its last status, and the end.
    fn ending(&mut self) -> Vec<Event> {
        if !self.task.status.is_finished() {
            return Vec::new();
        }
        self.ended = true;
        let version = self.version;
        let mut events = Vec::new();
        if let Some(artifact) = wire::artifact(version, &self.task) {
            events.push(self.event(wire::artifact_update(version, &self.task, artifact)));
        }
        events.push(self.event(wire::status_update(version, &self.task, true)));
        events
    }

    fn event(&self, result: Value) -> Event {
        Event::default().data(rpc::result(&self.id, result).to_string())
    }
}
