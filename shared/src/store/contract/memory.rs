//! The promises of [`MemoryStore`](crate::store::MemoryStore).

use super::ok;
use crate::store::Stores;

pub async fn memory_is_per_session_and_case_insensitive(stores: &Stores) {
    let m = &stores.memory;
    ok(m.remember("contract-m1", "Favourite colour", "green").await, "remember");
    ok(m.remember("contract-m1", "favourite colour ", "teal").await, "remember");
    ok(m.remember("contract-m1", "city", "Oslo").await, "remember");
    ok(m.remember("contract-m2", "city", "Lima").await, "remember");
    let all = ok(m.recall("contract-m1", None, 10).await, "recall");
    let pairs: Vec<(&str, &str)> = all.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(
        pairs,
        [("favourite colour", "teal"), ("city", "Oslo")],
        "oldest first, last value kept"
    );
    let one = ok(m.recall("contract-m1", Some("FAVOURITE COLOUR"), 10).await, "recall");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].value, "teal");
    assert_eq!(ok(m.recall("contract-m2", None, 10).await, "recall")[0].value, "Lima");
    assert!(ok(m.recall("contract-m3", None, 10).await, "recall").is_empty());
    assert_eq!(
        ok(m.recall("contract-m1", None, 1).await, "recall").len(),
        1,
        "the limit holds"
    );
}
