//! Usage: a session's totals and a principal's day records add up exactly
//! to what was charged with its turns and finished tasks, and no one else
//! sees them.

use std::sync::Arc;

use super::{message, ok};
use crate::llm::Role;
use crate::llm::Spend;
use crate::llm::prices::Usd;
use crate::owned::session_key;
use crate::store::{Charge, Finished, SessionStore, Stores, TaskRecord, TaskState, Totals};

/// A spend unlike any other `i` gives, with a cost, so that a sum that
/// lost or doubled one would show.
pub fn spend(i: u64) -> Spend {
    Spend {
        input_tokens: 1000 + i,
        output_tokens: 100 + 3 * i,
        cached_tokens: i % 7,
        thinking_tokens: i % 5,
        model_calls: 1 + (i % 2) as u32,
        cost_usd: Some(Usd::from_pico(1_000_003 * (i + 1))),
        cache_hits: (i % 3) as u32,
        saved_usd: Some(Usd::from_pico(700_001 * (i % 3))),
    }
}

/// A request the response cache answered alone: no model call, `saved`
/// pico-dollars saved (unknown when `None`).
pub fn cache_hit(saved: Option<u64>) -> Spend {
    Spend {
        cache_hits: 1,
        saved_usd: saved.map(Usd::from_pico),
        ..Spend::default()
    }
}

fn charge(day: &str, model: &str, spend: Spend) -> Charge {
    Charge {
        day: day.to_string(),
        model: model.to_string(),
        spend,
        request: true,
        also: Vec::new(),
    }
}

fn sum(spends: impl IntoIterator<Item = Spend>) -> Totals {
    spends
        .into_iter()
        .fold(Totals::default(), |total, s| total.plus(Totals::of(&s)))
}

pub async fn usage_adds_up_per_session_day_and_model(stores: &Stores) {
    let (owner, other) = ("key:usage-a", "key:usage-b");
    let (one, two) = (session_key(owner, "u1"), session_key(owner, "u2"));
    let s = &stores.sessions;
    let turn = [message(Role::User, "q"), message(Role::Model, "a")];
    let charges = [
        (&one, charge("2026-11-30", "m-small", spend(1))),
        (&one, charge("2026-12-01", "m-small", spend(2))),
        (&two, charge("2026-12-01", "m-small", spend(3))),
        (&two, charge("2026-12-01", "m-large", spend(4))),
    ];
    for (key, charge) in &charges {
        ok(s.append_charged(key, &turn, Some(charge)).await, "charged append");
    }
    // A turn with nothing spent (a test, a tool) changes no sum.
    ok(s.append(&one, &turn).await, "uncharged append");
    let history = ok(s.history(&two, 10).await, "history");
    let after = charge("2026-12-01", "m-large", spend(5));
    ok(
        s.append_after(&two, &history, &turn, Some(&after)).await,
        "append after",
    );

    assert_eq!(ok(s.totals(&one).await, "totals"), Some(sum([spend(1), spend(2)])));
    assert_eq!(
        ok(s.totals(&two).await, "totals"),
        Some(sum([spend(3), spend(4), spend(5)]))
    );
    assert_eq!(ok(s.totals(&session_key(owner, "none")).await, "totals"), None);
    let listed = ok(s.list_sessions(owner, None, 10).await, "list");
    let listed_totals: Vec<(String, Totals)> = listed.items.iter().map(|s| (s.id.clone(), s.usage)).collect();
    assert_eq!(
        listed_totals,
        [
            ("u2".to_string(), sum([spend(3), spend(4), spend(5)])),
            ("u1".to_string(), sum([spend(1), spend(2)]))
        ],
        "a listing shows each session's totals"
    );

    // A finished task's run counts once, with the outcome that records it.
    let mut task = TaskRecord::queued("usage-task", owner, "t", "u3", 5);
    task.state = TaskState::Running;
    task.attempts = 1;
    ok(stores.tasks.create(&task).await, "create");
    let run = charge("2026-12-01", "m-small", spend(6));
    let done = Finished::Completed(serde_json::json!({"response": "4"}));
    assert!(ok(
        stores.tasks.finish_charged("usage-task", 1, &done, Some(&run)).await,
        "finish"
    ));
    assert!(
        !ok(
            stores.tasks.finish_charged("usage-task", 1, &done, Some(&run)).await,
            "finish again"
        ),
        "a second finish records nothing"
    );

    // An attempt given back for a retry counts its calls with the release.
    let mut retried = TaskRecord::queued("usage-retry", owner, "t", "u4", 5);
    retried.state = TaskState::Running;
    retried.attempts = 1;
    // Held by a delivery, as a claim leaves it.
    retried.delivery_id = Some("m1".to_string());
    ok(stores.tasks.create(&retried).await, "create");
    let attempt = charge("2026-12-01", "m-small", spend(7));
    assert!(ok(
        stores.tasks.release_charged("usage-retry", 1, Some(&attempt)).await,
        "release"
    ));
    assert!(
        !ok(
            stores.tasks.release_charged("usage-retry", 1, Some(&attempt)).await,
            "release again"
        ),
        "a second release records nothing"
    );

    // The given-back attempt's calls count, but not as a request.
    let given_back_7 = Totals {
        requests: 3,
        ..sum([spend(2), spend(3), spend(6), spend(7)])
    };
    let days = ok(stores.usage.usage(owner, "2026-11-01", "2026-12-31").await, "usage");
    let got: Vec<(&str, &str, Totals)> = days
        .iter()
        .map(|d| (d.date.as_str(), d.model.as_str(), d.totals))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-30", "m-small", sum([spend(1)])),
            ("2026-12-01", "m-large", sum([spend(4), spend(5)])),
            ("2026-12-01", "m-small", given_back_7),
        ],
        "one record per day and model, by date then model"
    );
    let one_day = ok(stores.usage.usage(owner, "2026-12-01", "2026-12-01").await, "usage");
    assert_eq!(one_day.len(), 2, "the range is inclusive and bounded");
    assert!(
        ok(stores.usage.usage(other, "2026-01-01", "2026-12-31").await, "usage").is_empty(),
        "another principal sees none of them"
    );
}

/// A run whose calls went to several models (a multi-agent run's tiers, a
/// fallback) adds each model's spend to that model's day record, and
/// counts as one request, under the model of its last answer; a session's
/// totals add every model's spend.
pub async fn a_run_of_several_models_charges_each_models_day(stores: &Stores) {
    let owner = "key:models-a";
    let day = "2026-09-20";
    let mut run = charge(day, "m-strong", spend(8));
    run.also = vec![("m-fast".to_string(), spend(9))];
    let mut task = TaskRecord::queued("models-task", owner, "t", "m1", 5);
    task.state = TaskState::Running;
    task.attempts = 1;
    ok(stores.tasks.create(&task).await, "create");
    let done = Finished::Completed(serde_json::json!({"response": "ok"}));
    assert!(ok(
        stores.tasks.finish_charged("models-task", 1, &done, Some(&run)).await,
        "finish"
    ));
    let session = session_key(owner, "m2");
    let turn = [message(Role::User, "q"), message(Role::Model, "a")];
    let mut turn_charge = charge(day, "m-strong", spend(1));
    turn_charge.also = vec![("m-fast".to_string(), spend(2))];
    ok(
        stores
            .sessions
            .append_charged(&session, &turn, Some(&turn_charge))
            .await,
        "charged append",
    );
    assert_eq!(
        ok(stores.sessions.totals(&session).await, "totals"),
        Some(Totals {
            requests: 1,
            ..sum([spend(1), spend(2)])
        }),
        "a session's totals add every model's spend, and the turn once"
    );
    let days = ok(stores.usage.usage(owner, day, day).await, "usage");
    let got: Vec<(&str, Totals)> = days.iter().map(|d| (d.model.as_str(), d.totals)).collect();
    assert_eq!(
        got,
        [
            (
                "m-fast",
                Totals {
                    requests: 0,
                    ..sum([spend(9), spend(2)])
                }
            ),
            (
                "m-strong",
                Totals {
                    requests: 2,
                    ..sum([spend(8), spend(1)])
                }
            ),
        ],
        "each model's day record holds its own calls; the requests count under the last answer's model"
    );
}

/// Requests, response-cache hits and their savings are summed exactly with
/// the rest, per session and per day: a request the cache answered alone
/// is a request and a hit but no model call, and a hit whose saving was
/// unknown makes the day's saving unknown, not smaller.
pub async fn requests_and_cache_hits_add_up(stores: &Stores) {
    let owner = "key:stats-a";
    let session = session_key(owner, "s1");
    let s = &stores.sessions;
    let turn = [message(Role::User, "q"), message(Role::Model, "a")];
    let day = "2026-10-15";
    let spends = [spend(1), cache_hit(Some(2_500_000)), spend(2), cache_hit(Some(7))];
    for spent in spends {
        ok(
            s.append_charged(&session, &turn, Some(&charge(day, "m", spent))).await,
            "charged append",
        );
    }
    let expected = sum(spends);
    assert_eq!(
        (expected.requests, expected.model_calls, expected.cache_hits),
        (4, 3, 5),
        "spend(1) and spend(2) hold a cache hit and two of their own"
    );
    assert_eq!(expected.saved_pico, 700_001 + 2_500_000 + 2 * 700_001 + 7);
    assert_eq!(ok(s.totals(&session).await, "totals"), Some(expected));
    let days = ok(stores.usage.usage(owner, day, day).await, "usage");
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!(days[0].totals, expected, "the day's record");
    assert_eq!(
        days[0].totals.saved_usd(),
        Some(Usd::from_pico(expected.saved_pico).dollars())
    );

    // A run that finished on a cache hit alone counts as a request too.
    let mut task = TaskRecord::queued("stats-task", owner, "t", "s2", 5);
    task.state = TaskState::Running;
    task.attempts = 1;
    ok(stores.tasks.create(&task).await, "create");
    let done = Finished::Completed(serde_json::json!({"response": "4"}));
    let run = charge(day, "m", cache_hit(None));
    assert!(ok(
        stores.tasks.finish_charged("stats-task", 1, &done, Some(&run)).await,
        "finish"
    ));
    let days = ok(stores.usage.usage(owner, day, day).await, "usage");
    let with_run = expected.plus(Totals::of(&cache_hit(None)));
    assert_eq!(days[0].totals, with_run);
    assert_eq!(
        (with_run.requests, with_run.cache_hits, with_run.unpriced_hits),
        (5, 6, 1)
    );
    assert_eq!(days[0].totals.saved_usd(), None, "unknown, not smaller");
    assert!(
        ok(stores.usage.usage("key:stats-b", day, day).await, "usage").is_empty(),
        "another principal sees none of them"
    );
}

/// `turns` charged turns at once on one session, alternating between two
/// stores on one database (two processes or instances), each as a chat
/// turn makes it (history, then the append after it): the session's
/// totals and the owner's day record are exactly the sum of the charges.
pub async fn charged_turns_across_stores_are_exact(a: &Stores, b: &Stores, owner: &str, turns: u64) {
    let session = session_key(owner, "usage-busy");
    let writers: Vec<_> = (0..turns)
        .map(|i| {
            let sessions: Arc<dyn SessionStore> = if i % 2 == 0 {
                a.sessions.clone()
            } else {
                b.sessions.clone()
            };
            let session = session.clone();
            tokio::spawn(async move {
                let history = ok(sessions.history(&session, 20).await, "history");
                let turn = [
                    message(Role::User, &format!("q{i}")),
                    message(Role::Model, &format!("a{i}")),
                ];
                let charged = charge("2026-12-02", "m-busy", spend(i));
                ok(
                    sessions.append_after(&session, &history, &turn, Some(&charged)).await,
                    "append after",
                );
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap_or_else(|e| panic!("writer task: {e}"));
    }
    let expected = sum((0..turns).map(spend));
    let stored = ok(a.sessions.messages(&session).await, "messages").expect("exists");
    assert_eq!(stored.len() as u64, 2 * turns, "every turn stored");
    for store in [a, b] {
        assert_eq!(
            ok(store.sessions.totals(&session).await, "totals"),
            Some(expected),
            "the session's totals"
        );
        let days = ok(store.usage.usage(owner, "2026-12-02", "2026-12-02").await, "usage");
        assert_eq!(days.len(), 1, "{days:?}");
        assert_eq!(days[0].totals, expected, "the day's record");
    }
    assert!(expected.cost_pico > 0 && expected.unpriced_calls == 0);
}
