//! The promises every store backend keeps, as one test suite.
//!
//! A backend's tests call [`run_all`] with a fresh [`Stores`]: SQLite on a
//! file (and two stores on one file), Firestore on its emulator. A backend
//! that breaks a promise fails here, whichever backend it is. Compiled for
//! tests and behind the `testing` feature (not only `cfg(test)`), so that
//! integration tests of any crate can run it; no release build has it.
//! Each case uses its own session and key names, so one store serves all.

//!
//! One file per store trait: `sessions`, `rate_limits`, `memory`, `tasks`
//! (and `cancel`, the tasks' cancel; `callback`, their callback states;
//! `listing`, the pages and listings of sessions and tasks; `usage`, the
//! sums of what was spent; `cache`, the response cache's shared tier).

mod cache;
mod callback;
mod cancel;
mod fan;
mod listing;
mod memory;
mod rate_limits;
mod sessions;
mod tasks;
mod usage;

pub use cache::*;
pub use callback::*;
pub use cancel::*;
pub use fan::*;
pub use listing::*;
pub use memory::*;
pub use rate_limits::*;
pub use sessions::*;
pub use tasks::*;
pub use usage::*;

use super::{NewMessage, StoreError, Stores};
use crate::llm::Role;

pub(super) fn message(role: Role, content: &str) -> NewMessage {
    NewMessage {
        role,
        content: content.to_string(),
    }
}

/// Runs every case; panics (failing the calling test) on the first broken promise.
pub async fn run_all(stores: &Stores) {
    sessions_keep_order_and_sequence(stores).await;
    identical_messages_are_all_kept(stores).await;
    recent_is_the_tail_oldest_first(stores).await;
    turns_append_after_their_history(stores).await;
    a_history_gone_stale_still_appends_in_order(stores).await;
    a_history_of_another_session_is_not_used(stores).await;
    large_messages_still_give_the_whole_history(stores).await;
    concurrent_appends_lose_nothing_and_never_interleave(stores).await;
    delete_removes_the_session(stores).await;
    rate_limits_admit_exactly_the_limit_under_concurrency(stores).await;
    rate_limit_windows_slide(stores).await;
    memory_is_per_session_and_case_insensitive(stores).await;
    tasks_are_created_once_as_given(stores).await;
    claims_take_turns_under_leases(stores).await;
    claims_run_out_of_attempts(stores).await;
    unknown_tasks_are_not_found(stores).await;
    queued_tasks_finish_with_attempt_zero(stores).await;
    synchronous_runs_are_held_for_good(stores).await;
    runnable_lists_queued_and_expired_oldest_first(stores).await;
    concurrent_claims_have_one_winner(stores).await;
    events_are_ordered_and_replaced(stores).await;
    queued_tasks_are_cancelled_and_never_claimed(stores).await;
    a_cancel_fences_out_every_claim_of_a_running_task(stores).await;
    finished_and_synchronous_tasks_are_not_cancelled(stores).await;
    concurrent_cancels_have_one_winner(stores).await;
    a_fan_out_makes_children_and_the_last_one_resumes_the_parent(stores).await;
    a_child_out_of_attempts_or_cancelled_is_counted_too(stores).await;
    concurrent_children_are_counted_once(stores).await;
    long_sessions_page_through_every_message_once_in_order(stores).await;
    sessions_are_listed_newest_first_paged_and_per_owner(stores).await;
    tasks_are_listed_newest_first_paged_per_owner_and_by_status(stores).await;
    finishing_a_task_owes_its_callback(stores).await;
    concurrent_callback_leases_have_one_winner(stores).await;
    an_expired_callback_lease_is_taken_over(stores).await;
    spent_callback_attempts_fail(stores).await;
    usage_adds_up_per_session_day_and_model(stores).await;
    requests_and_cache_hits_add_up(stores).await;
    a_run_of_several_models_charges_each_models_day(stores).await;
    cached_answers_are_found_until_they_expire(stores).await;
}

pub(super) fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what}: {err}"))
}
