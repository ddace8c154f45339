//! The session document's tail: a bounded copy of a session's most recent
//! messages, so that a chat turn finds its history in the one document it
//! reads anyway (for the counter) instead of querying the messages.
//!
//! The tail is a cache of the `messages` subcollection, never the record:
//! what it cannot answer exactly, it does not answer ([`history`] returns
//! `None` and the store queries).

use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use super::time_of;
use crate::llm::Role;
use crate::store::StoredMessage;

/// The most bytes of messages a tail holds: a quarter of Firestore's 1 MiB
/// document limit, so that the session document stays far below it whatever
/// `MAX_MESSAGE_CHARS` allows, and a turn's commit stays small.
pub(super) const TAIL_BYTES: usize = 256 * 1024;

/// What a message costs in the tail beside its content: its field names,
/// number, role and time, rounded up.
const OVERHEAD_BYTES: usize = 64;

/// One message as the tail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TailMessage {
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub created_at: FirestoreTimestamp,
}

impl TailMessage {
    fn bytes(&self) -> usize {
        self.content.len() + OVERHEAD_BYTES
    }

    pub(super) fn to_stored(&self) -> StoredMessage {
        self.clone().into_stored()
    }

    pub(super) fn into_stored(self) -> StoredMessage {
        StoredMessage {
            seq: self.seq.max(0) as u64,
            role: role_from(&self.role),
            content: self.content,
            created_at: time_of(self.created_at),
        }
    }
}

fn role_from(s: &str) -> Role {
    if s == "model" { Role::Model } else { Role::User }
}

/// The last `limit` messages of a session, oldest first, from the tail of
/// its document, or `None` when the tail cannot tell: it holds fewer than
/// `limit` and does not reach back to the session's first message
/// (`first_seq`, unknown in documents written before tails), because large
/// messages pushed older ones out or the session is older than its tail.
pub(super) fn history(
    tail: &[TailMessage],
    first_seq: Option<i64>,
    next_seq: i64,
    limit: usize,
) -> Option<Vec<StoredMessage>> {
    let whole = first_seq.is_some_and(|first| tail.first().map_or(next_seq, |m| m.seq) == first);
    if tail.len() < limit && !whole {
        return None;
    }
    let skip = tail.len().saturating_sub(limit);
    Some(tail[skip..].iter().map(TailMessage::to_stored).collect())
}

/// The tail after a turn: `base` (the tail as read, or the history a query
/// found) followed by `added`, keeping the last `keep` messages, fewer when
/// they would pass [`TAIL_BYTES`].
pub(super) fn extend(mut base: Vec<TailMessage>, added: Vec<TailMessage>, keep: usize) -> Vec<TailMessage> {
    base.extend(added);
    base.drain(..base.len().saturating_sub(keep));
    let mut bytes: usize = base.iter().map(TailMessage::bytes).sum();
    let mut drop = 0;
    while bytes > TAIL_BYTES && drop < base.len() {
        bytes -= base[drop].bytes();
        drop += 1;
    }
    base.drain(..drop);
    base
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn message(seq: i64, content: &str) -> TailMessage {
        TailMessage {
            seq,
            role: if seq % 2 == 1 { "user" } else { "model" }.to_string(),
            content: content.to_string(),
            created_at: FirestoreTimestamp::try_from(SystemTime::now()).expect("a timestamp"),
        }
    }

    fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_tail_answers_what_it_holds_and_nothing_else() {
        let tail: Vec<TailMessage> = (3..=6).map(|seq| message(seq, "x")).collect();
        // Enough messages: the last `limit`, oldest first.
        assert_eq!(seqs(&history(&tail, Some(3), 7, 2).expect("covered")), [5, 6]);
        assert_eq!(seqs(&history(&tail, None, 7, 4).expect("covered")), [3, 4, 5, 6]);
        // Fewer than asked, but the whole session: all of it.
        assert_eq!(seqs(&history(&tail, Some(3), 7, 20).expect("whole")), [3, 4, 5, 6]);
        // Fewer than asked, and older messages exist (or may): no answer.
        assert_eq!(history(&tail, Some(1), 7, 20), None);
        assert_eq!(history(&tail, None, 7, 20), None);
        // A session with no messages yet, and a limit of 0.
        assert_eq!(history(&[], Some(1), 1, 20), Some(Vec::new()));
        assert_eq!(history(&tail, Some(1), 7, 0), Some(Vec::new()));
        // Messages went, the tail did not keep them: no answer.
        assert_eq!(history(&[], Some(1), 5, 20), None);
    }

    #[test]
    fn a_tail_keeps_the_last_messages_within_its_bytes() {
        let base: Vec<TailMessage> = (1..=4).map(|seq| message(seq, "x")).collect();
        let tail = extend(base.clone(), vec![message(5, "q"), message(6, "a")], 3);
        assert_eq!(tail.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5, 6]);

        let big = "y".repeat(TAIL_BYTES / 2);
        let tail = extend(base.clone(), vec![message(5, &big), message(6, &big)], 20);
        assert_eq!(
            tail.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [6],
            "two halves and their overhead are over the bound"
        );
        let huge = "z".repeat(TAIL_BYTES + 1);
        assert!(extend(base, vec![message(5, &huge)], 20).is_empty());
    }
}
