//! A task's progress as server-sent events, read from the store: any
//! instance can serve the stream of a task another one runs.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;

use super::TaskView;
use crate::http::sse;
use crate::store::{TaskEvent, TaskRecord, TaskStatus, TaskStore};

/// How often a progress stream looks at the store.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Consecutive failed reads after which a progress stream gives up.
const MAX_READ_FAILURES: u32 = 40;

/// The events of a task as server-sent events: `status` when it changes
/// (`queued`, `running`), one `step` per completed step (id
/// `ATTEMPT-INDEX`, data: the step with its `attempt` and `index`), or for
/// a chat batch one `item` per finished item (its result), then
/// `done` with the task's JSON once it is `completed`, `failed` or
/// `cancelled`, and the stream ends. `after` resumes after a `Last-Event-ID`.
///
/// A run fanned out as child tasks (`worker::fan`) is followed whole: each
/// child's events (its `subtask_started`, steps and `subtask_finished`)
/// come in the parent's stream as the child stores them, whichever worker
/// runs it. Their ids then carry where the stream stands in each child
/// too ([`Cursor`]), so a `Last-Event-ID` resumes all of them.
pub fn progress(
    tasks: Arc<dyn TaskStore>,
    task: TaskRecord,
    after: Option<Cursor>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let after = after.unwrap_or_default();
    let state = Progress {
        tasks,
        task_id: task.task_id.clone(),
        cursor: after.own,
        lanes: after.children,
        ended_lanes: Vec::new(),
        last_status: None,
        ready: VecDeque::new(),
        first: Some(task),
        failures: 0,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok(event), state));
            }
            if state.ended {
                return None;
            }
            state.poll().await;
        }
    })
}

/// Where a progress stream stands: after the task's own event `own`, and
/// after event `children[i]` of its `i`th child. Sent as each event's id:
/// `ATTEMPT-INDEX`, then `.I:ATTEMPT-INDEX` per child followed (`0-0`
/// before the task's first own event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub own: Option<(u32, u32)>,
    pub children: BTreeMap<usize, (u32, u32)>,
}

impl Cursor {
    fn id(&self) -> String {
        let (attempt, index) = self.own.unwrap_or((0, 0));
        let mut id = format!("{attempt}-{index}");
        for (child, (attempt, index)) in &self.children {
            id.push_str(&format!(".{child}:{attempt}-{index}"));
        }
        id
    }
}

/// Parses a `Last-Event-ID` as [`Cursor`] writes it.
pub fn parse_event_id(id: &str) -> Option<Cursor> {
    let mut parts = id.trim().split('.');
    let own = position(parts.next()?)?;
    let mut children = BTreeMap::new();
    for part in parts {
        let (child, at) = part.split_once(':')?;
        children.insert(child.parse().ok()?, position(at)?);
    }
    Some(Cursor {
        own: (own != (0, 0)).then_some(own),
        children,
    })
}

fn position(s: &str) -> Option<(u32, u32)> {
    let (attempt, index) = s.split_once('-')?;
    Some((attempt.parse().ok()?, index.parse().ok()?))
}

/// An event one poll read: the task's own (`None`) or its `i`th child's.
type Read = (Option<usize>, TaskEvent);

struct Progress {
    tasks: Arc<dyn TaskStore>,
    task_id: String,
    cursor: Option<(u32, u32)>,
    /// Where the stream stands in each child it follows.
    lanes: BTreeMap<usize, (u32, u32)>,
    /// Children whose last event (`subtask_finished`) was sent.
    ended_lanes: Vec<usize>,
    last_status: Option<TaskStatus>,
    ready: VecDeque<Event>,
    /// The record the handler already read, used for the first round.
    first: Option<TaskRecord>,
    failures: u32,
    ended: bool,
}

impl Progress {
    async fn poll(&mut self) {
        let task = match self.first.take() {
            Some(task) => Some(task),
            None => {
                tokio::time::sleep(POLL_EVERY).await;
                match self.tasks.get(&self.task_id).await {
                    Ok(task) => task,
                    Err(err) => return self.read_failed(err),
                }
            }
        };
        let Some(task) = task else {
            // Deleted (a TTL policy) while watched.
            self.ready
                .push_back(sse::error(&crate::http::ApiError::not_found(format!(
                    "task {:?} no longer exists",
                    self.task_id
                ))));
            self.ended = true;
            return;
        };
        // Steps first, read after the status: a finished task's steps are
        // all stored before its status says so.
        let mut read: Vec<Read> = Vec::new();
        let mut own = self.cursor;
        loop {
            match self.tasks.events(&self.task_id, own, 100).await {
                Ok(events) => {
                    let more = events.len() == 100;
                    own = events.last().map(|e| (e.attempt, e.index)).or(own);
                    read.extend(events.into_iter().map(|event| (None, event)));
                    if !more {
                        break;
                    }
                }
                Err(err) => return self.read_failed_after(read, err),
            }
        }
        // Children's events, read after the parent's: a parent ends only
        // after its children have, so theirs are all stored by then.
        for child in 0..super::planned(&task).len() {
            if self.ended_lanes.contains(&child) {
                continue;
            }
            let child_id = crate::store::child_id(&self.task_id, child);
            let mut at = self.lanes.get(&child).copied();
            loop {
                match self.tasks.events(&child_id, at, 100).await {
                    Ok(events) => {
                        let more = events.len() == 100;
                        at = events.last().map(|e| (e.attempt, e.index)).or(at);
                        read.extend(events.into_iter().map(|event| (Some(child), event)));
                        if !more {
                            break;
                        }
                    }
                    Err(err) => return self.read_failed_after(read, err),
                }
            }
        }
        self.send(read);
        self.failures = 0;
        match task.status() {
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
                self.ready.push_back(sse::json("done", &TaskView::from(task)));
                self.ended = true;
            }
            status if self.last_status != Some(status) => {
                self.last_status = Some(status);
                self.ready.push_back(sse::json(
                    "status",
                    &StatusEvent {
                        status,
                        attempts: task.attempts,
                    },
                ));
            }
            _ => {}
        }
    }

    fn position(&self) -> Cursor {
        Cursor {
            own: self.cursor,
            children: self.lanes.clone(),
        }
    }

    /// Sends what one poll read, in the order it was stored, the parent's
    /// and its children's together (a stable sort: each one's own stay in
    /// their order). Each event's id is where the stream stands once it is
    /// sent, so a client that resumes after it misses nothing sent later.
    fn send(&mut self, mut read: Vec<Read>) {
        read.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at));
        for (lane, event) in read {
            let at = (event.attempt, event.index);
            match lane {
                None => self.cursor = Some(at),
                Some(child) => {
                    self.lanes.insert(child, at);
                    if ["subtask_finished", "subtopic_finished"]
                        .contains(&event.data["type"].as_str().unwrap_or_default())
                    {
                        self.ended_lanes.push(child);
                    }
                }
            }
            let id = self.position().id();
            self.ready.push_back(step_event(event, id));
        }
    }

    /// A read failed after others of the same poll: theirs are sent, then
    /// as [`Self::read_failed`].
    fn read_failed_after(&mut self, read: Vec<Read>, err: crate::store::StoreError) {
        self.send(read);
        self.read_failed(err);
    }

    fn read_failed(&mut self, err: crate::store::StoreError) {
        self.failures += 1;
        tracing::warn!(%err, task_id = %self.task_id, "a progress stream could not read its task");
        if self.failures >= MAX_READ_FAILURES {
            self.ready.push_back(sse::error(&crate::http::ApiError::from(err)));
            self.ended = true;
        }
    }
}

/// The `data` of a `status` event.
#[derive(Serialize, schemars::JsonSchema)]
pub struct StatusEvent {
    pub status: TaskStatus,
    pub attempts: u32,
}

/// The `data` of a `step` event: a step as the synchronous answer lists it,
/// with where it sits in the task. Written from the stored event (see
/// `step_event`); this type documents it.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct StepEvent {
    #[serde(flatten)]
    step: crate::agent::Step,
    /// The attempt that ran the step (more than 1 after a retry).
    attempt: u32,
    /// The step's place in its attempt, from 0.
    index: u32,
}

/// The `data` of an `item` event: a queued chat batch's item result, as
/// the batch's answer lists it, with where the event sits in the task.
/// Written from the stored event (see `step_event`); this type documents it.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct ItemEvent {
    /// `item`.
    r#type: String,
    result: crate::chat::batch::BatchResult,
    /// The attempt that ran the item (more than 1 after a redelivery).
    attempt: u32,
    /// The event's place in its attempt (the order items finished), from 0.
    index: u32,
}

/// The `data` of a multi-agent run's `synthesis` event. Written from the
/// stored event; this type documents it.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct SynthesisEvent {
    /// `synthesis`.
    r#type: String,
    /// The subtasks whose results the synthesis is given.
    subtasks: usize,
}

/// The `data` of a research's `subtopics` event. Written from the stored
/// event; this type documents it.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct SubtopicsEvent {
    /// `subtopics`.
    r#type: String,
    subtopics: Vec<crate::research::Planned>,
    /// `planned`, `repaired` or `fallback`.
    origin: String,
}

/// The `data` of a research's `subtopic_started` event.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct SubtopicStartedEvent {
    /// `subtopic_started`.
    r#type: String,
    title: String,
}

/// The `data` of a research's `stage` event.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct StageEvent {
    /// `stage`.
    r#type: String,
    /// `analysis`, `draft`, `critique` or `revision`.
    stage: String,
}

/// What a task's progress stream sends, for its documentation. A
/// multi-agent run's and a research's `step` events also carry their
/// `subtask`.
pub const PROGRESS_EVENTS: [crate::http::Event; 13] = [
    crate::http::Event::json::<StatusEvent>("status"),
    crate::http::Event::json::<StepEvent>("step"),
    crate::http::Event::json::<ItemEvent>("item"),
    crate::http::Event::json::<crate::multi::PlanView>("plan"),
    crate::http::Event::json::<crate::multi::Subtask>("subtask_started"),
    crate::http::Event::json::<crate::multi::SubtaskResult>("subtask_finished"),
    crate::http::Event::json::<SynthesisEvent>("synthesis"),
    crate::http::Event::json::<SubtopicsEvent>("subtopics"),
    crate::http::Event::json::<SubtopicStartedEvent>("subtopic_started"),
    crate::http::Event::json::<crate::research::SubtopicResult>("subtopic_finished"),
    crate::http::Event::json::<StageEvent>("stage"),
    crate::http::Event::json::<TaskView>("done"),
    crate::http::Event::error(),
];

fn step_event(event: TaskEvent, id: String) -> Event {
    let mut data = event.data;
    if let Value::Object(map) = &mut data {
        map.insert("attempt".into(), event.attempt.into());
        map.insert("index".into(), event.index.into());
    }
    // A chat batch's item results are `item` events, a multi-agent run's
    // events are named by their type, and steps are `step` events.
    let kind = data["type"].as_str().unwrap_or_default();
    let name = if kind == crate::worker::ITEM_EVENT {
        "item"
    } else if let Some(name) = crate::multi::EVENT_NAMES
        .iter()
        .chain(&crate::research::EVENT_NAMES)
        .find(|n| **n == kind)
    {
        name
    } else {
        "step"
    };
    sse::json(name, &data).id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_garbage_is_ignored() {
        let own = |a, i| Cursor {
            own: Some((a, i)),
            children: BTreeMap::new(),
        };
        assert_eq!(parse_event_id("2-7"), Some(own(2, 7)));
        assert_eq!(parse_event_id(" 1-0 "), Some(own(1, 0)));
        let fanned = Cursor {
            own: Some((1, 3)),
            children: BTreeMap::from([(0, (1, 4)), (2, (2, 0))]),
        };
        assert_eq!(fanned.id(), "1-3.0:1-4.2:2-0");
        assert_eq!(parse_event_id(&fanned.id()), Some(fanned));
        let children_only = Cursor {
            own: None,
            children: BTreeMap::from([(1, (1, 1))]),
        };
        assert_eq!(parse_event_id(&children_only.id()), Some(children_only));
        for bad in [
            "",
            "1",
            "-",
            "a-b",
            "1-",
            "-1",
            "1-2-3",
            "99999999999-1",
            "1-2.",
            "1-2.x:1-1",
            "1-2.0:1",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }
}
