//! What a Pub/Sub-triggered worker receives, decoded into one [`Delivery`].
//!
//! The same task notification (`{"task_id":"..."}` as the message data) can
//! reach the worker's `POST /` in three shapes, depending on how the
//! subscription was made: a Pub/Sub push subscription posts its envelope,
//! and an Eventarc trigger posts a CloudEvent in structured or binary mode.
//! Deployments switch between them without touching the worker, so the
//! worker decodes all three here and the handler sees only the task id.
//!
//! Decoding is liberal where Google is (base64 with or without padding,
//! standard or URL-safe; `messageId` or `message_id`) and strict about what
//! the worker acts on: the task id follows the same rules as a session id,
//! because it becomes a store key. A malformed body is a [`DecodeError`]
//! whose message says what was wrong, for the log line and for the body of
//! the 2xx that acknowledges it (a redelivery would be just as malformed).

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// The only CloudEvent type that carries a Pub/Sub message.
pub const PUBSUB_EVENT_TYPE: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// Longest value quoted back in an error, so a hostile body cannot make a
/// log line or an ack body large.
const QUOTE_LIMIT: usize = 64;

/// One task notification, whichever way it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub task_id: String,
    /// Pub/Sub's id for the message; the same on every redelivery, so it can
    /// be used to spot duplicates.
    pub message_id: String,
    /// Present only when the subscription has a dead-letter policy (the
    /// emulator never sends it); starts at 1.
    pub delivery_attempt: Option<u32>,
    pub subscription: Option<String>,
    /// The trace the message was published in (its
    /// `googclient_traceparent` attribute), which the run continues.
    pub traceparent: Option<String>,
}

/// Why a body is not a task notification. The message names the field and
/// the shape that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not JSON ({0}); expected a Pub/Sub push envelope or a CloudEvent")]
    NotJson(String),
    #[error("{0} must be a JSON object")]
    NotObject(&'static str),
    #[error(
        "the body has no \"message\" object; expected a Pub/Sub push envelope \
         {{\"message\":{{\"data\":\"<base64>\",\"messageId\":\"...\"}},\"subscription\":\"...\"}}"
    )]
    NoMessage,
    #[error("message.data is missing or empty; it must be the base64 of {{\"task_id\":\"...\"}}")]
    NoData,
    #[error("message.data is not base64 ({0}); it must be the base64 of {{\"task_id\":\"...\"}}")]
    DataNotBase64(String),
    #[error("message.data does not decode to a JSON object ({0}); it must be {{\"task_id\":\"...\"}}")]
    DataNotJson(String),
    #[error("message.data has no string \"task_id\"; it must be {{\"task_id\":\"...\"}}")]
    NoTaskId,
    #[error(
        "task_id {0} is not valid: it must be 1 to {max} characters of A-Z, a-z, 0-9, _, . and - \
         (and not ., .. or __name__)",
        max = crate::session::MAX_LEN
    )]
    BadTaskId(String),
    #[error("the message has no id: message.messageId (or message_id) must be a non-empty string")]
    NoMessageId,
    #[error("the CloudEvent has no type; expected type {PUBSUB_EVENT_TYPE}")]
    NoEventType,
    #[error("the CloudEvent has type {0}, but this endpoint takes only {PUBSUB_EVENT_TYPE}")]
    WrongEventType(String),
    #[error("the CloudEvent has no data; expected data {{\"message\":{{...}},\"subscription\":\"...\"}}")]
    NoEventData,
    #[error("the CloudEvent's data_base64 is not base64 ({0})")]
    EventDataNotBase64(String),
}

/// Decodes a task notification from the request's headers and body.
///
/// The encoding is chosen from the headers, as Eventarc sets them: a
/// `ce-specversion` header means binary mode, a `application/cloudevents+json`
/// content type means structured mode, anything else is a push envelope.
pub fn decode(headers: &http::HeaderMap, body: &[u8]) -> Result<Delivery, DecodeError> {
    if headers.contains_key("ce-specversion") {
        let event_type = headers
            .get("ce-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        check_event_type(event_type.as_deref())?;
        let fallback_id = headers.get("ce-id").and_then(|v| v.to_str().ok());
        let envelope = parse_object(body, "the body")?;
        return from_envelope(&envelope, fallback_id);
    }
    if is_structured(headers) {
        let event = parse_object(body, "the CloudEvent")?;
        check_event_type(event.get("type").map(|t| t.as_str().unwrap_or("(not a string)")))?;
        let fallback_id = event.get("id").and_then(Value::as_str);
        let envelope = match (event.get("data"), event.get("data_base64")) {
            (Some(Value::Object(data)), _) => data.clone(),
            (Some(Value::Null) | None, Some(Value::String(encoded))) => {
                let bytes = decode_base64(encoded).map_err(DecodeError::EventDataNotBase64)?;
                parse_object(&bytes, "the CloudEvent's data")?
            }
            (Some(Value::Null) | None, _) => return Err(DecodeError::NoEventData),
            (Some(_), _) => return Err(DecodeError::NotObject("the CloudEvent's data")),
        };
        return from_envelope(&envelope, fallback_id);
    }
    let envelope = parse_object(body, "the body")?;
    from_envelope(&envelope, None)
}

fn is_structured(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/cloudevents+json"))
}

fn check_event_type(event_type: Option<&str>) -> Result<(), DecodeError> {
    match event_type {
        None => Err(DecodeError::NoEventType),
        Some(PUBSUB_EVENT_TYPE) => Ok(()),
        Some(other) => Err(DecodeError::WrongEventType(quote(other))),
    }
}

fn parse_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DecodeError::NotObject(what)),
        Err(err) => Err(DecodeError::NotJson(err.to_string())),
    }
}

/// Reads `{"message":{...},"subscription":...,"deliveryAttempt":n}`. A
/// CloudEvent's own id stands in for a message id the message lacks:
/// Eventarc sets it to the Pub/Sub message id.
fn from_envelope(envelope: &Map<String, Value>, fallback_id: Option<&str>) -> Result<Delivery, DecodeError> {
    let message = match envelope.get("message") {
        Some(Value::Object(message)) => message,
        Some(_) => return Err(DecodeError::NotObject("message")),
        None => return Err(DecodeError::NoMessage),
    };
    let data = match message.get("data") {
        Some(Value::String(data)) if !data.is_empty() => data,
        _ => return Err(DecodeError::NoData),
    };
    let bytes = decode_base64(data).map_err(DecodeError::DataNotBase64)?;
    let payload = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(payload)) => payload,
        Ok(_) => return Err(DecodeError::DataNotJson("it is JSON, but not an object".into())),
        Err(err) => return Err(DecodeError::DataNotJson(err.to_string())),
    };
    let task_id = match payload.get("task_id") {
        Some(Value::String(id)) => id,
        _ => return Err(DecodeError::NoTaskId),
    };
    if crate::task::validate_id("task_id", task_id).is_err() {
        return Err(DecodeError::BadTaskId(quote(task_id)));
    }
    let message_id = ["messageId", "message_id"]
        .iter()
        .filter_map(|key| message.get(*key).and_then(Value::as_str))
        .chain(fallback_id)
        .find(|id| !id.is_empty())
        .ok_or(DecodeError::NoMessageId)?;
    Ok(Delivery {
        task_id: task_id.clone(),
        message_id: message_id.to_string(),
        // Informational only: a malformed count must not drop the task.
        delivery_attempt: envelope
            .get("deliveryAttempt")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        subscription: envelope.get("subscription").and_then(Value::as_str).map(str::to_string),
        traceparent: message
            .get("attributes")
            .and_then(|a| a.get(crate::telemetry::PUBSUB_ATTRIBUTE))
            .and_then(Value::as_str)
            // A W3C traceparent is 55 characters; anything long is no trace.
            .filter(|v| v.len() <= 128)
            .map(str::to_string),
    })
}

/// Standard or URL-safe alphabet, padded or not: Pub/Sub sends standard
/// padded base64, but hand-made test messages and other publishers vary.
fn decode_base64(encoded: &str) -> Result<Vec<u8>, String> {
    const LIBERAL: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LIBERAL);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LIBERAL);
    STANDARD
        .decode(encoded.trim())
        .or_else(|err| URL_SAFE.decode(encoded.trim()).map_err(|_| err.to_string()))
}

/// A value from the body, JSON-quoted (so control characters cannot forge
/// log lines) and cut short. JSON escapes only what it must (below U+0020),
/// so DEL and the C1 controls are escaped here too: U+0085 ends a line in
/// some log viewers, and U+009B starts a terminal escape sequence (found by
/// the `delivery` fuzz target).
fn quote(value: &str) -> String {
    use std::fmt::Write as _;
    let mut cut: String = value.chars().take(QUOTE_LIMIT).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    let json = Value::String(cut).to_string();
    let mut quoted = String::with_capacity(json.len());
    for ch in json.chars() {
        if ch.is_control() {
            // Still valid JSON: a \u escape may stand for any character.
            let _ = write!(quoted, "\\u{:04x}", u32::from(ch));
        } else {
            quoted.push(ch);
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use serde_json::json;

    fn b64(payload: &Value) -> String {
        STANDARD.encode(payload.to_string())
    }

    fn no_headers() -> http::HeaderMap {
        http::HeaderMap::new()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("test header value"));
        }
        map
    }

    /// What the Pub/Sub emulator posts to a push endpoint.
    fn emulator_push(task_id: &str) -> Value {
        json!({
            "message": {
                "attributes": {"origin": "api"},
                "data": b64(&json!({"task_id": task_id})),
                "messageId": "4",
                "message_id": "4",
                "publishTime": "2025-01-02T03:04:05.678Z",
                "publish_time": "2025-01-02T03:04:05.678Z"
            },
            "subscription": "projects/demo/subscriptions/tasks-push"
        })
    }

    fn body(value: &Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn decode_json(headers: &http::HeaderMap, value: &Value) -> Result<Delivery, DecodeError> {
        decode(headers, &body(value))
    }

    #[test]
    fn a_message_brings_its_trace() {
        let mut push = emulator_push("task-1");
        push["message"]["attributes"] = json!({
            "googclient_traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        });
        let got = decode_json(&no_headers(), &push).expect("decodes");
        assert_eq!(
            got.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        push["message"]["attributes"] = json!({"googclient_traceparent": "x".repeat(500)});
        assert_eq!(decode_json(&no_headers(), &push).expect("decodes").traceparent, None);
    }

    #[test]
    fn push_envelope_from_the_emulator() {
        let got = decode_json(&no_headers(), &emulator_push("task-1")).expect("decodes");
        assert_eq!(
            got,
            Delivery {
                task_id: "task-1".into(),
                message_id: "4".into(),
                delivery_attempt: None,
                subscription: Some("projects/demo/subscriptions/tasks-push".into()),
                traceparent: None,
            }
        );
    }

    #[test]
    fn push_envelope_with_delivery_attempt() {
        let mut envelope = emulator_push("t");
        envelope["deliveryAttempt"] = json!(3);
        let got = decode_json(&headers(&[("content-type", "application/json")]), &envelope).expect("decodes");
        assert_eq!(got.delivery_attempt, Some(3));
        envelope["deliveryAttempt"] = json!("three");
        let got = decode_json(&no_headers(), &envelope).expect("a malformed count is ignored");
        assert_eq!(got.delivery_attempt, None);
    }

    #[test]
    fn either_message_id_spelling_is_enough() {
        for key in ["messageId", "message_id"] {
            let envelope = json!({"message": {"data": b64(&json!({"task_id": "t"})), key: "77"}});
            let got = decode_json(&no_headers(), &envelope).expect("decodes");
            assert_eq!(got.message_id, "77", "{key}");
            assert_eq!(got.subscription, None);
        }
        let envelope = json!({"message": {"data": b64(&json!({"task_id": "t"})), "messageId": "", "message_id": "8"}});
        assert_eq!(decode_json(&no_headers(), &envelope).expect("decodes").message_id, "8");
    }

    #[test]
    fn base64_padded_unpadded_and_url_safe() {
        // `?>` in the payload makes standard and URL-safe encodings differ.
        let payload = json!({"task_id": "t", "note": "??>>"}).to_string();
        for data in [
            STANDARD.encode(&payload),
            STANDARD_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&payload),
            base64::engine::general_purpose::URL_SAFE.encode(&payload),
        ] {
            let envelope = json!({"message": {"data": data, "messageId": "1"}});
            assert_eq!(decode_json(&no_headers(), &envelope).expect("decodes").task_id, "t");
        }
    }

    #[test]
    fn structured_cloudevent() {
        let event = json!({
            "specversion": "1.0",
            "type": PUBSUB_EVENT_TYPE,
            "source": "//pubsub.googleapis.com/projects/p/topics/tasks",
            "id": "9001",
            "time": "2025-01-02T03:04:05.678Z",
            "datacontenttype": "application/json",
            "data": emulator_push("task-2"),
        });
        let h = headers(&[("Content-Type", "application/cloudevents+json; charset=utf-8")]);
        let got = decode_json(&h, &event).expect("decodes");
        assert_eq!(got.task_id, "task-2");
        assert_eq!(got.message_id, "4");
        assert_eq!(
            got.subscription.as_deref(),
            Some("projects/demo/subscriptions/tasks-push")
        );
    }

    #[test]
    fn structured_cloudevent_with_data_base64_and_id_fallback() {
        let data = json!({"message": {"data": b64(&json!({"task_id": "t3"}))}});
        let event = json!({"specversion": "1.0", "type": PUBSUB_EVENT_TYPE, "id": "ce-1", "data_base64": b64(&data)});
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let got = decode_json(&h, &event).expect("decodes");
        assert_eq!((got.task_id.as_str(), got.message_id.as_str()), ("t3", "ce-1"));
    }

    #[test]
    fn binary_cloudevent() {
        let h = headers(&[
            ("Ce-Specversion", "1.0"),
            ("CE-Type", PUBSUB_EVENT_TYPE),
            ("ce-id", "555"),
            ("ce-source", "//pubsub.googleapis.com/projects/p/topics/tasks"),
            ("content-type", "application/json"),
        ]);
        let mut envelope = emulator_push("task-3");
        envelope["deliveryAttempt"] = json!(2);
        let got = decode_json(&h, &envelope).expect("decodes");
        assert_eq!(got.task_id, "task-3");
        assert_eq!(got.message_id, "4");
        assert_eq!(got.delivery_attempt, Some(2));

        let bare = json!({"message": {"data": b64(&json!({"task_id": "t"}))}});
        assert_eq!(decode_json(&h, &bare).expect("decodes").message_id, "555");
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let task = |payload: Value| json!({"message": {"data": b64(&payload), "messageId": "1"}});
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (b"task_id=1".to_vec(), DecodeError::NotJson(String::new())),
            (b"[1,2]".to_vec(), DecodeError::NotObject("the body")),
            (body(&json!({"subscription": "s"})), DecodeError::NoMessage),
            (body(&json!({"message": "x"})), DecodeError::NotObject("message")),
            (body(&json!({"message": {"messageId": "1"}})), DecodeError::NoData),
            (
                body(&json!({"message": {"data": "", "messageId": "1"}})),
                DecodeError::NoData,
            ),
            (
                body(&json!({"message": {"data": "not base64!", "messageId": "1"}})),
                DecodeError::DataNotBase64(String::new()),
            ),
            (
                body(&json!({"message": {"data": STANDARD.encode("task_id: 1"), "messageId": "1"}})),
                DecodeError::DataNotJson(String::new()),
            ),
            (body(&task(json!(["t"]))), DecodeError::DataNotJson(String::new())),
            (body(&task(json!({"id": "t"}))), DecodeError::NoTaskId),
            (body(&task(json!({"task_id": 7}))), DecodeError::NoTaskId),
            (
                body(&task(json!({"task_id": ""}))),
                DecodeError::BadTaskId(String::new()),
            ),
            (
                body(&task(json!({"task_id": "a/b"}))),
                DecodeError::BadTaskId(String::new()),
            ),
            (
                body(&task(json!({"task_id": "x".repeat(129)}))),
                DecodeError::BadTaskId(String::new()),
            ),
            (
                body(&task(json!({"task_id": ".."}))),
                DecodeError::BadTaskId(String::new()),
            ),
            (
                body(&json!({"message": {"data": b64(&json!({"task_id": "t"})), "messageId": ""}})),
                DecodeError::NoMessageId,
            ),
            (
                body(&json!({"message": {"data": b64(&json!({"task_id": "t"}))}})),
                DecodeError::NoMessageId,
            ),
        ];
        for (input, want) in cases {
            let got = decode(&no_headers(), &input).expect_err("must be refused");
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{}: {got}",
                String::from_utf8_lossy(&input)
            );
            assert!(!got.to_string().is_empty());
        }
    }

    #[test]
    fn bad_task_id_is_quoted_safely() {
        let envelope =
            json!({"message": {"data": b64(&json!({"task_id": "evil\nline".repeat(20)})), "messageId": "1"}});
        let msg = decode_json(&no_headers(), &envelope).expect_err("refused").to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn control_characters_beyond_json_are_escaped_too() {
        // DEL, NEL and CSI, which JSON itself does not escape.
        let sneaky = "google\u{7f}\u{85}\u{9b}31m";
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let event = json!({"specversion": "1.0", "type": sneaky, "id": "1", "data": emulator_push("t")});
        let got = decode_json(&structured, &event).expect_err("refused");
        assert_eq!(
            got,
            DecodeError::WrongEventType(r#""google\u007f\u0085\u009b31m""#.into())
        );
        let msg = got.to_string();
        assert!(!msg.chars().any(char::is_control), "{msg}");
        let unquoted: String = serde_json::from_str(&quote(sneaky)).expect("still a JSON string");
        assert_eq!(unquoted, sneaky);
    }

    #[test]
    fn other_cloudevent_types_are_refused() {
        let storage = "google.cloud.storage.object.v1.finalized";
        let h = headers(&[("ce-specversion", "1.0"), ("ce-type", storage), ("ce-id", "1")]);
        let got = decode_json(&h, &emulator_push("t")).expect_err("refused");
        assert_eq!(got, DecodeError::WrongEventType(format!("\"{storage}\"")));
        let msg = got.to_string();
        assert!(msg.contains(storage) && msg.contains(PUBSUB_EVENT_TYPE), "{msg}");

        let h = headers(&[("ce-specversion", "1.0"), ("ce-id", "1")]);
        assert_eq!(decode_json(&h, &emulator_push("t")), Err(DecodeError::NoEventType));

        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let event = json!({"specversion": "1.0", "type": storage, "id": "1", "data": emulator_push("t")});
        assert!(matches!(
            decode_json(&structured, &event),
            Err(DecodeError::WrongEventType(_))
        ));
        let event = json!({"specversion": "1.0", "id": "1", "data": emulator_push("t")});
        assert_eq!(decode_json(&structured, &event), Err(DecodeError::NoEventType));
    }

    #[test]
    fn structured_without_data_is_refused() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let event = json!({"specversion": "1.0", "type": PUBSUB_EVENT_TYPE, "id": "1"});
        assert_eq!(decode_json(&h, &event), Err(DecodeError::NoEventData));
        let event = json!({"specversion": "1.0", "type": PUBSUB_EVENT_TYPE, "id": "1", "data": "text"});
        assert_eq!(
            decode_json(&h, &event),
            Err(DecodeError::NotObject("the CloudEvent's data"))
        );
        let event = json!({"specversion": "1.0", "type": PUBSUB_EVENT_TYPE, "id": "1", "data_base64": "%%"});
        assert!(matches!(
            decode_json(&h, &event),
            Err(DecodeError::EventDataNotBase64(_))
        ));
        // A push envelope sent with the CloudEvents content type is not one.
        assert_eq!(decode_json(&h, &emulator_push("t")), Err(DecodeError::NoEventType));
    }

    /// xorshift64*: deterministic, so a failure reproduces from the seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics() {
        const SEED: u64 = 0x5EED_CAFE_F00D_0001;
        let mut rng = Rng(SEED);
        let mut event = json!({"specversion": "1.0", "type": PUBSUB_EVENT_TYPE, "id": "1", "data": emulator_push("t")});
        event["data"]["deliveryAttempt"] = json!(u64::MAX);
        let seeds: Vec<Vec<u8>> = vec![
            body(&emulator_push("task-1")),
            body(&event),
            body(&json!({"message": {"data": STANDARD.encode("{\"task_id\":\"é\u{0}\"}"), "messageId": "1"}})),
            b"{\"message\":{\"data\":\"=\",\"messageId\":1}}".to_vec(),
            Vec::new(),
        ];
        let tokens: [&[u8]; 12] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"null",
            b"\"data\"",
            b"\"message\"",
            b"\\u0000",
            b"\xff\xfe",
        ];
        let header_sets = [
            no_headers(),
            headers(&[("content-type", "application/cloudevents+json")]),
            headers(&[("ce-specversion", "1.0"), ("ce-type", PUBSUB_EVENT_TYPE)]),
        ];
        for round in 0..5000 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(8) {
                let at = rng.below(input.len() + 1);
                match rng.below(5) {
                    0 if !input.is_empty() => {
                        let i = at.min(input.len() - 1);
                        input[i] = rng.next() as u8;
                    }
                    1 => input.truncate(at),
                    2 => input
                        .splice(at..at, tokens[rng.below(tokens.len())].iter().copied())
                        .for_each(drop),
                    3 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.insert(at, rng.next() as u8),
                }
            }
            let h = &header_sets[rng.below(header_sets.len())];
            if let Ok(delivery) = decode(h, &input) {
                assert!(
                    crate::task::validate_id("task_id", &delivery.task_id).is_ok(),
                    "round {round} (seed {SEED:#x}) accepted task id {:?}",
                    delivery.task_id
                );
                assert!(!delivery.message_id.is_empty(), "round {round} (seed {SEED:#x})");
            }
        }
    }
}
