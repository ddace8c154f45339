//! The in-process tier: a least-recently-used map bounded by entries and
//! by bytes, whose entries expire.
//!
//! One mutex guards it; every operation under it is a hash lookup and a
//! B-tree step, far cheaper than the request that makes it, so a sharded
//! or lock-free map would buy nothing measurable here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::entry::Entry;
use super::key::Key;

struct Slot {
    entry: Arc<Entry>,
    /// The entry's encoded size, which the byte bound counts.
    bytes: usize,
    expires: Instant,
    /// Its place in the recency order.
    tick: u64,
    /// Whose it is (a principal, or `*`), for per-owner statistics.
    owner: Arc<str>,
}

#[derive(Default)]
struct Lru {
    slots: HashMap<Key, Slot>,
    /// Least recently used first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

/// What the tier holds for one owner, counted when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) entries: u64,
    pub(super) bytes: u64,
}

pub(super) struct MemoryTier {
    lru: Mutex<Lru>,
    max_entries: usize,
    max_bytes: usize,
}

impl MemoryTier {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> MemoryTier {
        MemoryTier {
            lru: Mutex::new(Lru::default()),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry under `key`, now the most recently used. An expired
    /// one is dropped on the way.
    pub(super) fn get(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        let mut lru = self.lock();
        let lru = &mut *lru;
        let slot = lru.slots.get_mut(key)?;
        if slot.expires <= now {
            let tick = slot.tick;
            let bytes = slot.bytes;
            lru.slots.remove(key);
            lru.order.remove(&tick);
            lru.bytes -= bytes;
            return None;
        }
        lru.order.remove(&slot.tick);
        lru.tick += 1;
        slot.tick = lru.tick;
        lru.order.insert(lru.tick, key.clone());
        Some(slot.entry.clone())
    }

    /// Keeps `entry` until `expires`, then drops the least recently used
    /// entries while either bound is passed. Returns the owners of the
    /// entries evicted to make room. An entry larger than the whole tier
    /// is not kept.
    pub(super) fn put(
        &self,
        key: Key,
        entry: Arc<Entry>,
        bytes: usize,
        owner: Arc<str>,
        expires: Instant,
    ) -> Vec<Arc<str>> {
        if bytes > self.max_bytes {
            return Vec::new();
        }
        let mut lru = self.lock();
        let lru = &mut *lru;
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(old) = lru.slots.insert(
            key.clone(),
            Slot {
                entry,
                bytes,
                expires,
                tick,
                owner,
            },
        ) {
            lru.order.remove(&old.tick);
            lru.bytes -= old.bytes;
        }
        lru.order.insert(tick, key);
        lru.bytes += bytes;
        let mut evicted = Vec::new();
        while lru.slots.len() > self.max_entries || lru.bytes > self.max_bytes {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(slot) = lru.slots.remove(&oldest) {
                lru.bytes -= slot.bytes;
                evicted.push(slot.owner);
            }
        }
        evicted
    }

    /// What `owner` has in the tier (its live and not yet dropped expired
    /// entries): a scan, bounded by the tier's entry limit.
    pub(super) fn held_by(&self, owner: &str) -> Held {
        let lru = self.lock();
        lru.slots
            .values()
            .filter(|slot| &*slot.owner == owner)
            .fold(Held::default(), |held, slot| Held {
                entries: held.entries + 1,
                bytes: held.bytes + slot.bytes as u64,
            })
    }

    /// The whole tier's entries and bytes.
    #[cfg(test)]
    fn held(&self) -> Held {
        let lru = self.lock();
        Held {
            entries: lru.slots.len() as u64,
            bytes: lru.bytes as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::{ModelRequest, Usage};

    fn key(i: usize) -> Key {
        super::super::key::key(&format!("owner-{i}"), "p", "m", &ModelRequest::default())
    }

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            model: "m".into(),
            parts: vec![crate::llm::Part::Text("x".into())],
            raw: None,
            usage: Usage::default(),
            cost: None,
            created_at: std::time::SystemTime::now(),
        })
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_when_a_bound_is_passed() {
        let tier = MemoryTier::new(3, 1000);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let a: Arc<str> = Arc::from("a");
        for i in 0..3 {
            assert!(tier.put(key(i), entry(), 10, a.clone(), later).is_empty());
        }
        // Key 0 is used, so key 1 is now the least recently used.
        assert!(tier.get(&key(0), now).is_some());
        assert_eq!(tier.put(key(3), entry(), 10, Arc::from("b"), later), vec![a.clone()]);
        assert!(tier.get(&key(1), now).is_none(), "evicted");
        assert!(tier.get(&key(0), now).is_some() && tier.get(&key(3), now).is_some());
        assert_eq!(tier.held(), Held { entries: 3, bytes: 30 });
        assert_eq!(tier.held_by("b"), Held { entries: 1, bytes: 10 });

        // The byte bound: one large entry pushes out the two least
        // recently used (2, then 0), and no more than it must.
        let evicted = tier.put(key(4), entry(), 985, a.clone(), later);
        assert_eq!(evicted.len(), 2);
        assert_eq!(tier.held(), Held { entries: 2, bytes: 995 });
        assert!(tier.get(&key(3), now).is_some() && tier.get(&key(0), now).is_none());
        // Larger than the whole tier: not kept, nothing evicted.
        assert!(tier.put(key(5), entry(), 1001, a, later).is_empty());
        assert!(tier.get(&key(5), now).is_none());
    }

    #[test]
    fn an_expired_entry_is_not_served_and_frees_its_room() {
        let tier = MemoryTier::new(10, 1000);
        let now = Instant::now();
        tier.put(key(0), entry(), 10, Arc::from("a"), now + Duration::from_secs(1));
        assert!(tier.get(&key(0), now).is_some());
        assert!(tier.get(&key(0), now + Duration::from_secs(1)).is_none());
        assert_eq!(tier.held(), Held::default());
        // Replacing an entry counts its bytes once.
        tier.put(key(1), entry(), 10, Arc::from("a"), now + Duration::from_secs(9));
        tier.put(key(1), entry(), 20, Arc::from("a"), now + Duration::from_secs(9));
        assert_eq!(tier.held(), Held { entries: 1, bytes: 20 });
    }
}
