//! Pages: a long session read a page at a time, and a principal's sessions
//! and tasks listed, newest first.
//!
//! Every listing is one bounded read in the store (SQLite: one range of an
//! index; Firestore: one query with a cursor and a limit), so a page costs
//! O(page) however long the session or the list. A store reads one item
//! more than asked for, to tell whether another page follows, and gives the
//! position of the page's last item ([`Page::next`]); the HTTP layer makes
//! it an opaque cursor (`http::paging`). A position holds only the ordering
//! key of an item, never an owner: the owner is always the caller's, so a
//! cursor cannot reach another principal's records.

use std::time::SystemTime;

/// At most `limit` items, in the listing's order, and where the next page
/// starts: `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, P> {
    pub items: Vec<T>,
    /// The position of the last item, when more follow it.
    pub next: Option<P>,
}

impl<T, P> Page<T, P> {
    /// The page of `limit` from `read`, which holds up to `limit + 1`
    /// items: the extra one is dropped and tells that a next page exists,
    /// which starts after the position of the last item kept.
    pub(crate) fn of(mut read: Vec<T>, limit: usize, position: impl Fn(&T) -> P) -> Page<T, P> {
        let more = read.len() > limit;
        read.truncate(limit);
        let next = if more { read.last().map(position) } else { None };
        Page { items: read, next }
    }
}

/// A session as listed: its id as the client named it (not the store key),
/// how many messages it holds, and when it was created and last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: String,
    pub message_count: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// What its charged turns spent, summed (`store::usage`).
    pub usage: super::Totals,
}

/// Where a session listing stands: sessions are listed by `updated_at`
/// descending, then by id descending (ties are the same millisecond or
/// microsecond), and a page starts after this one. `updated_at` is the
/// time exactly as stored, which an RFC 3339 text to the millisecond is
/// not on Firestore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPosition {
    pub updated_at: SystemTime,
    pub id: String,
}

/// Where a task listing stands: tasks are listed by `created_at`
/// descending, then by id descending; a page starts after this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPosition {
    pub created_at: SystemTime,
    pub task_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_the_limit_and_says_whether_more_follow() {
        let last = Page::of(vec![1, 2], 2, |n| *n);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
        let more = Page::of(vec![1, 2, 3], 2, |n| *n);
        assert_eq!((more.items, more.next), (vec![1, 2], Some(2)));
        let empty = Page::of(Vec::<u8>::new(), 2, |n| *n);
        assert_eq!((empty.items, empty.next), (vec![], None));
    }
}
