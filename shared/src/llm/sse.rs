//! Server-sent events, decoded incrementally.
//!
//! Both streaming providers answer with `text/event-stream`. The network cuts
//! that text wherever it likes: in the middle of a line, between the `\r` and
//! the `\n` of a line ending, or inside a multi-byte UTF-8 character. The
//! decoder therefore buffers bytes and only decodes complete lines (a line
//! ending is ASCII, and ASCII bytes never occur inside a UTF-8 sequence, so a
//! complete line always holds complete characters).
//!
//! It follows the WHATWG event-stream rules, with one leniency: an event that
//! is still pending when the stream ends is delivered rather than dropped,
//! because some OpenAI-compatible servers end with `data: [DONE]` and no
//! blank line.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::{BoxStream, Stream, StreamExt};

use super::{ModelError, ModelStream, StreamEvent};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` seen, as the spec keeps it across events.
    pub id: Option<String>,
}

/// A line longer than this is not an event stream a model would send; the
/// limit keeps a broken server from growing the buffer without end.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Bytes in, events out. Feed it chunks with [`SseDecoder::push`] and call
/// [`SseDecoder::finish`] at the end of the stream.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// Bytes of the current, incomplete line.
    buf: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk
    /// belongs to that line ending.
    skip_lf: bool,
    /// The stream start has been seen (a byte-order mark is only dropped there).
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
}

impl SseDecoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many bytes wait for their line ending.
    pub(crate) fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Decodes a chunk and returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.buf.extend_from_slice(&rest[..pos]);
            let line = std::mem::take(&mut self.buf);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            let ending = rest[pos];
            rest = &rest[pos + 1..];
            if ending == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        self.buf.extend_from_slice(rest);
        events
    }

    /// Ends the stream: a last line without a line ending is processed, and
    /// an event still pending is delivered (see the module documentation).
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let mut out = None;
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            out = self.line(&line);
        }
        out.or_else(|| self.dispatch())
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let mut line = String::from_utf8_lossy(line).into_owned();
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_string();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        })
    }
}

/// The events of a streaming response. The per-attempt timeout of a stream
/// covers each wait for the next chunk, not the whole answer: a long answer is
/// fine, a silent connection is not.
pub(crate) fn events(
    response: reqwest::Response,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<SseEvent, ModelError>> + Send + 'static {
    struct State {
        body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        decoder: SseDecoder,
        ready: VecDeque<SseEvent>,
        done: bool,
    }
    let state = State {
        body: response.bytes_stream().boxed(),
        decoder: SseDecoder::new(),
        ready: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            match tokio::time::timeout(idle_timeout, state.body.next()).await {
                Err(_) => {
                    state.done = true;
                    return Some((Err(ModelError::Timeout(idle_timeout)), state));
                }
                Ok(Some(Ok(chunk))) => {
                    state.ready.extend(state.decoder.push(&chunk));
                    if state.decoder.buffered_len() > MAX_LINE_BYTES {
                        state.done = true;
                        let err = ModelError::Upstream {
                            status: None,
                            message: "the event stream sent a line longer than 16 MiB".into(),
                        };
                        return Some((Err(err), state));
                    }
                }
                Ok(Some(Err(err))) => {
                    state.done = true;
                    let err = if err.is_timeout() {
                        ModelError::Timeout(idle_timeout)
                    } else {
                        ModelError::Unavailable {
                            message: format!("the stream was interrupted: {}", err.without_url()),
                            retry_after: None,
                        }
                    };
                    return Some((Err(err), state));
                }
                Ok(None) => {
                    state.done = true;
                    state.ready.extend(state.decoder.finish());
                }
            }
        }
    })
}

/// Waits for a stream's first event so that a failure that happens before
/// anything was produced (a block, an error chunk, a stall) is returned by
/// `Model::stream` itself, where the caller can still answer with a proper
/// HTTP status instead of a broken event stream.
pub(crate) async fn first_event_ready(mut stream: ModelStream) -> Result<ModelStream, ModelError> {
    match stream.next().await {
        Some(Ok(first)) => Ok(futures_util::stream::once(async move { Ok(first) })
            .chain(stream)
            .boxed()),
        Some(Err(err)) => Err(err),
        None => Err(ModelError::Upstream {
            status: None,
            message: "the stream ended without an answer".into(),
        }),
    }
}

/// A provider's way of folding its stream chunks into one answer.
pub(crate) trait Accumulator: Send + 'static {
    /// Takes one event: returns the text it adds (each piece becomes a
    /// `Delta`) and whether the stream is over (OpenAI's `[DONE]`).
    fn event(&mut self, event: &SseEvent) -> Result<(Vec<String>, bool), ModelError>;

    /// The whole answer, once the stream is over.
    fn finish(self) -> Result<super::ModelResponse, ModelError>;
}

/// Turns decoded events into `Delta`s and a final `Done`, with the folding
/// `accumulator` does. Nothing follows `Done` or an error.
pub(crate) fn model_stream<A: Accumulator>(
    events: impl Stream<Item = Result<SseEvent, ModelError>> + Send + 'static,
    accumulator: A,
) -> ModelStream {
    struct State<A> {
        events: BoxStream<'static, Result<SseEvent, ModelError>>,
        accumulator: Option<A>,
        ready: VecDeque<Result<StreamEvent, ModelError>>,
    }
    fn finish<A: Accumulator>(state: &mut State<A>) {
        if let Some(accumulator) = state.accumulator.take() {
            state.ready.push_back(accumulator.finish().map(StreamEvent::Done));
        }
    }
    let state = State {
        events: events.boxed(),
        accumulator: Some(accumulator),
        ready: VecDeque::new(),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            let accumulator = state.accumulator.as_mut()?;
            match state.events.next().await {
                Some(Ok(event)) => match accumulator.event(&event) {
                    Ok((deltas, end)) => {
                        let deltas = deltas.into_iter().filter(|d| !d.is_empty());
                        state.ready.extend(deltas.map(|d| Ok(StreamEvent::Delta(d))));
                        if end {
                            finish(&mut state);
                        }
                    }
                    Err(err) => {
                        state.accumulator = None;
                        state.ready.push_back(Err(err));
                    }
                },
                Some(Err(err)) => {
                    state.accumulator = None;
                    state.ready.push_back(Err(err));
                }
                None => finish(&mut state),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    /// Feeds `input` cut at every possible position into two chunks, and
    /// byte by byte, and checks all give the same events as one chunk.
    fn all_splits_agree(input: &[u8]) -> Vec<SseEvent> {
        let mut whole = SseDecoder::new();
        let mut expected = whole.push(input);
        expected.extend(whole.finish());
        for cut in 0..=input.len() {
            let mut d = SseDecoder::new();
            let mut got = d.push(&input[..cut]);
            got.extend(d.push(&input[cut..]));
            got.extend(d.finish());
            assert_eq!(got, expected, "cut at {cut}");
        }
        let mut d = SseDecoder::new();
        let mut got: Vec<SseEvent> = input.iter().flat_map(|b| d.push(&[*b])).collect();
        got.extend(d.finish());
        assert_eq!(got, expected, "byte by byte");
        expected
    }

    #[test]
    fn data_lines_and_blank_line_dispatch() {
        let events = all_splits_agree(b"data: one\n\ndata: two\n\n");
        assert_eq!(data(&events), ["one", "two"]);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let events = all_splits_agree(b"data: a\ndata:b\ndata:  c\n\n");
        assert_eq!(data(&events), ["a\nb\n c"]);
    }

    #[test]
    fn event_type_comments_and_ids() {
        let input = b": keep-alive\nevent: delta\nid: 7\ndata: x\nretry: 10\nunknown: y\n\n:ping\n\ndata: y\n\n";
        let events = all_splits_agree(input);
        assert_eq!(data(&events), ["x", "y"]);
        assert_eq!(events[0].event.as_deref(), Some("delta"));
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].event, None, "the event type does not carry over");
        assert_eq!(events[1].id.as_deref(), Some("7"), "the last id does");
    }

    #[test]
    fn crlf_and_lone_cr_line_endings() {
        let events = all_splits_agree(b"data: a\r\n\r\ndata: b\r\rdata: c\n\r\n");
        assert_eq!(data(&events), ["a", "b", "c"]);
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_does_not_make_an_extra_blank_line() {
        let mut d = SseDecoder::new();
        let mut events = d.push(b"data: a\r");
        events.extend(d.push(b"\ndata: b\r\n\r\n"));
        assert_eq!(data(&events), ["a\nb"]);
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let input = "data: {\"text\":\"héllo wörld 🌍\"}\n\n".as_bytes();
        let events = all_splits_agree(input);
        assert_eq!(data(&events), ["{\"text\":\"héllo wörld 🌍\"}"]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let events = all_splits_agree(b"event: ping\n\ndata\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "", "a bare `data` field is an empty data line");
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn a_pending_event_is_delivered_at_the_end() {
        let events = all_splits_agree(b"data: x\n\ndata: [DONE]");
        assert_eq!(data(&events), ["x", "[DONE]"]);
        let events = all_splits_agree(b"data: [DONE]\n");
        assert_eq!(data(&events), ["[DONE]"]);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_ignored() {
        let events = all_splits_agree("\u{feff}data: x\n\n".as_bytes());
        assert_eq!(data(&events), ["x"]);
    }

    #[tokio::test]
    async fn first_event_ready_returns_an_early_error() {
        let failing: ModelStream = futures_util::stream::iter(vec![Err(ModelError::Blocked("no".into()))]).boxed();
        assert_eq!(
            first_event_ready(failing).await.err(),
            Some(ModelError::Blocked("no".into()))
        );
        let ok: ModelStream = futures_util::stream::iter(vec![
            Ok(StreamEvent::Delta("a".into())),
            Ok(StreamEvent::Delta("b".into())),
        ])
        .boxed();
        let events: Vec<_> = first_event_ready(ok).await.expect("first event").collect().await;
        assert_eq!(events.len(), 2);
    }

    /// Joins `data` into the text; `end` ends the stream; `fail` fails it.
    struct Joiner(String);

    impl Accumulator for Joiner {
        fn event(&mut self, event: &SseEvent) -> Result<(Vec<String>, bool), ModelError> {
            match event.data.as_str() {
                "end" => Ok((vec![], true)),
                "fail" => Err(ModelError::Upstream {
                    status: None,
                    message: "fail".into(),
                }),
                text => {
                    self.0.push_str(text);
                    Ok((vec![text.to_string()], false))
                }
            }
        }

        fn finish(self) -> Result<super::super::ModelResponse, ModelError> {
            Ok(super::super::ModelResponse {
                content: super::super::Content::model_text(self.0),
                usage: super::super::Usage::default(),
                model: "m".into(),
                cost: None,
                cache_hit: None,
            })
        }
    }

    fn sse(items: &[&str]) -> impl Stream<Item = Result<SseEvent, ModelError>> + Send + 'static {
        let items: Vec<_> = items
            .iter()
            .map(|d| {
                Ok(SseEvent {
                    data: d.to_string(),
                    ..SseEvent::default()
                })
            })
            .collect();
        futures_util::stream::iter(items)
    }

    #[tokio::test]
    async fn model_stream_emits_deltas_then_done_and_stops() {
        let events: Vec<_> = model_stream(sse(&["a", "", "b", "end", "c"]), Joiner(String::new()))
            .collect()
            .await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0], Ok(StreamEvent::Delta("a".into())));
        assert_eq!(events[1], Ok(StreamEvent::Delta("b".into())));
        match &events[2] {
            Ok(StreamEvent::Done(r)) => assert_eq!(r.text(), "ab"),
            other => panic!("expected done, got {other:?}"),
        }
        let events: Vec<_> = model_stream(sse(&["a"]), Joiner(String::new())).collect().await;
        assert!(
            matches!(events.last(), Some(Ok(StreamEvent::Done(_)))),
            "the end of the events finishes"
        );
        let events: Vec<_> = model_stream(sse(&["a", "fail", "b"]), Joiner(String::new()))
            .collect()
            .await;
        assert_eq!(events.len(), 2);
        assert!(events[1].is_err());
    }
}
