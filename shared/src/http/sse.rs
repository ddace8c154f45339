//! Server-sent events as every function sends them: named events with JSON
//! data, keep-alive comments, and no proxy buffering.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use http::HeaderValue;
use serde::Serialize;
use tokio::sync::mpsc;

use super::ApiError;

/// An event named `name` whose data is `data` as JSON.
pub fn json<T: Serialize>(name: &str, data: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string()))
}

/// An `error` event carrying the error envelope, for a failure after the
/// 200 status line has gone.
pub fn error(err: &ApiError) -> Event {
    Event::default().event("error").data(err.to_json())
}

/// The `text/event-stream` response for `events`.
pub fn response<S>(events: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    // Tell nginx-style proxies not to hold the stream back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Where a task that outlives its client (see [`super::detached`]) sends
/// the events of a stream; the other end is the stream to answer with.
/// Sending never waits, and a send to a client that went away is dropped,
/// so the task goes on to its end either way.
#[derive(Debug, Clone)]
pub struct Feed {
    events: mpsc::UnboundedSender<Event>,
}

impl Feed {
    /// Sends `event` to the client, if it is still reading.
    pub fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The client went away: its response, and the stream, were dropped.
    pub fn is_gone(&self) -> bool {
        self.events.is_closed()
    }
}

/// A [`Feed`] and the events it sends, for [`response`]; the stream ends
/// when every `Feed` is dropped.
pub fn channel() -> (Feed, impl Stream<Item = Result<Event, Infallible>> + Send + 'static) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|event| event.map(Ok)));
    (Feed { events: tx }, events)
}
