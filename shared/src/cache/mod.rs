//! The response cache: an identical model input is answered with the
//! answer the model already gave, for nothing.
//!
//! - `key`: what makes two calls the same call.
//! - `entry`: an answer as the cache keeps it, checked when read back.
//! - `memory`: the in-process tier, LRU, bounded by entries and bytes.
//!
//! The shared tier is the store's ([`crate::store::CacheStore`]): a SQLite
//! table or a Firestore collection, so every instance benefits from every
//! other's answers (`CACHE=store`).
//!
//! A lookup goes memory, then the calls in flight on this instance, then
//! the store, then the model. Concurrent identical misses make one model
//! call: the first caller (the leader) calls, the others wait for its
//! answer (single flight); should the leader vanish without an answer,
//! they try again, one of them leading. A cache that fails never fails a
//! request: a store that errs, is slow or holds a damaged entry is a miss,
//! logged and counted, and the model answers.
//!
//! Entries belong to a principal unless `CACHE_SCOPE=global`: the scope is
//! part of the key, so one principal's answers can never reach another.

mod entry;
mod key;
mod memory;

pub use entry::Entry;
pub use key::{Key, key};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{CacheMode, CacheScope, CacheSettings};
use crate::http::metrics::Metrics;
use crate::llm::{ModelError, ModelResponse, ModelStream, StreamEvent};
use crate::store::CacheStore;
use memory::MemoryTier;

/// A store lookup or keep that takes longer is given up as a miss: the
/// model call it would save takes seconds, but a hung store must not hold
/// every request.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Owners whose statistics one process keeps; past it, one is forgotten.
const MAX_OWNERS: usize = 10_000;

/// What a call in flight ends with, for those waiting on it.
type Landed = Result<Arc<Entry>, ModelError>;

/// Those waiting on a call in flight watch this until it holds the answer.
type Waiting = watch::Receiver<Option<Landed>>;

pub struct ResponseCache {
    settings: CacheSettings,
    memory: MemoryTier,
    /// The shared tier, with `CACHE=store`.
    store: Option<Arc<dyn CacheStore>>,
    /// The calls in flight, each with the id of its lead.
    flights: Mutex<HashMap<Key, (u64, Waiting)>>,
    next_flight: AtomicU64,
    owners: Mutex<HashMap<Arc<str>, Counters>>,
    metrics: Metrics,
}

/// One owner's lookups on this instance.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    memory_hits: u64,
    memory_misses: u64,
    flight_hits: u64,
    store_hits: u64,
    store_misses: u64,
    store_errors: u64,
    evictions: u64,
    /// Lookups that ended at the model.
    model_calls: u64,
}

#[derive(Clone, Copy)]
enum Event {
    MemoryHit,
    MemoryMiss,
    FlightHit,
    StoreHit,
    StoreMiss,
    StoreError(&'static str),
    Eviction,
    ModelCall,
}

impl ResponseCache {
    /// The cache `settings` ask for, on `store` for the shared tier;
    /// `None` with `CACHE=off`.
    pub fn new(settings: &CacheSettings, store: Arc<dyn CacheStore>, metrics: Metrics) -> Option<Arc<ResponseCache>> {
        if !settings.enabled() {
            return None;
        }
        Some(Arc::new(ResponseCache {
            settings: settings.clone(),
            memory: MemoryTier::new(settings.max_entries, settings.max_bytes),
            store: (settings.mode == CacheMode::Store).then_some(store),
            flights: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
            owners: Mutex::new(HashMap::new()),
            metrics,
        }))
    }

    /// Whose entries `principal`'s calls use: its own, or everyone's.
    pub fn scope(&self, principal: &str) -> Arc<str> {
        match self.settings.scope {
            CacheScope::Principal => Arc::from(principal),
            CacheScope::Global => Arc::from("*"),
        }
    }

    /// The answer to the call `key`, from a tier or from `call`, which
    /// yields the model's answer and whether it may be kept (an answer a
    /// fallback model gave is passed on, not kept for the routed model).
    pub async fn generate<F, Fut>(
        self: &Arc<Self>,
        scope: &Arc<str>,
        key: Key,
        call: F,
    ) -> Result<ModelResponse, ModelError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(ModelResponse, bool), ModelError>>,
    {
        let flight = match self.look_up(scope, &key).await {
            Found::Hit(entry) => return Ok(entry.hit()),
            Found::Failed(err) => return Err(err),
            Found::Lead(flight) => flight,
        };
        self.count(scope, Event::ModelCall);
        match call().await {
            Ok((answer, keep)) => {
                let entry = Arc::new(Entry::of(&answer));
                if keep {
                    self.keep(scope, &key, &entry).await;
                }
                flight.land(Ok(entry));
                Ok(answer)
            }
            Err(err) => {
                flight.land(Err(err.clone()));
                Err(err)
            }
        }
    }

    /// As [`Self::generate`], streamed: a hit is the whole text as one
    /// delta, then `done`; a miss is the model's stream, whose answer is
    /// kept when it completes, before its `done` goes on.
    pub async fn stream<F, Fut>(
        self: &Arc<Self>,
        scope: &Arc<str>,
        key: Key,
        open: F,
    ) -> Result<ModelStream, ModelError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(ModelStream, bool), ModelError>>,
    {
        let flight = match self.look_up(scope, &key).await {
            Found::Hit(entry) => return Ok(hit_stream(&entry)),
            Found::Failed(err) => return Err(err),
            Found::Lead(flight) => flight,
        };
        self.count(scope, Event::ModelCall);
        let (stream, keep) = match open().await {
            Ok(opened) => opened,
            Err(err) => {
                flight.land(Err(err.clone()));
                return Err(err);
            }
        };
        let flight = Arc::new(Mutex::new(Some(flight)));
        let (cache, scope, key) = (self.clone(), scope.clone(), key);
        Ok(stream
            .then(move |item| {
                let (cache, scope, key, flight) = (cache.clone(), scope.clone(), key.clone(), flight.clone());
                async move {
                    let landed = match &item {
                        Ok(StreamEvent::Delta(_)) => return item,
                        Ok(StreamEvent::Done(answer)) => {
                            let entry = Arc::new(Entry::of(answer));
                            if keep {
                                cache.keep(&scope, &key, &entry).await;
                            }
                            Ok(entry)
                        }
                        Err(err) => Err(err.clone()),
                    };
                    let taken = flight.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some(flight) = taken {
                        flight.land(landed);
                    }
                    item
                }
            })
            .boxed())
    }

    /// Memory, then a call in flight, then the store; or the lead of a
    /// new call in flight, for the caller to make.
    async fn look_up(self: &Arc<Self>, scope: &Arc<str>, key: &Key) -> Found {
        loop {
            if let Some(entry) = self.memory.get(key, Instant::now()) {
                self.count(scope, Event::MemoryHit);
                return Found::Hit(entry);
            }
            self.count(scope, Event::MemoryMiss);
            let mut waiting = match self.join(key) {
                Joined::Lead(flight) => {
                    return match self.read_store(scope, key).await {
                        Some(entry) => {
                            flight.land(Ok(entry.clone()));
                            Found::Hit(entry)
                        }
                        None => Found::Lead(flight),
                    };
                }
                Joined::Wait(waiting) => waiting,
            };
            // The leader's answer; a leader gone without one (its task
            // dropped) lets another lead.
            let landed = match waiting.wait_for(Option::is_some).await {
                Ok(landed) => landed.clone(),
                Err(_) => continue,
            };
            match landed {
                Some(Ok(entry)) => {
                    self.count(scope, Event::FlightHit);
                    return Found::Hit(entry);
                }
                Some(Err(err)) => return Found::Failed(err),
                None => continue,
            }
        }
    }

    fn join(self: &Arc<Self>, key: &Key) -> Joined {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, waiting)) = flights.get(key) {
            return Joined::Wait(waiting.clone());
        }
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), (id, rx));
        Joined::Lead(Flight {
            cache: self.clone(),
            key: key.clone(),
            id,
            tx,
        })
    }

    async fn read_store(&self, scope: &Arc<str>, key: &Key) -> Option<Arc<Entry>> {
        let store = self.store.as_ref()?;
        let bytes = match tokio::time::timeout(STORE_WAIT, store.cached(key.as_str(), SystemTime::now())).await {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => {
                self.count(scope, Event::StoreMiss);
                return None;
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "the response cache could not be read; the model answers");
                self.count(scope, Event::StoreError("read"));
                return None;
            }
            Err(_) => {
                tracing::warn!(wait = ?STORE_WAIT, "the response cache did not answer in time; the model answers");
                self.count(scope, Event::StoreError("timeout"));
                return None;
            }
        };
        let entry = match Entry::decode(key, &bytes) {
            Ok(entry) => Arc::new(entry),
            Err(why) => {
                tracing::warn!(
                    key = key.as_str(),
                    why,
                    "a response cache entry is damaged; the model answers"
                );
                self.count(scope, Event::StoreError("corrupt"));
                return None;
            }
        };
        self.count(scope, Event::StoreHit);
        // Kept here too, for what is left of its time.
        let age = SystemTime::now().duration_since(entry.created_at).unwrap_or_default();
        if let Some(left) = self.settings.ttl.checked_sub(age) {
            self.remember(scope, key, entry.clone(), bytes.len(), left);
        }
        Some(entry)
    }

    /// Keeps an answer in memory and, with `CACHE=store`, in the store.
    async fn keep(&self, scope: &Arc<str>, key: &Key, entry: &Arc<Entry>) {
        let bytes = entry.encode(key);
        self.remember(scope, key, entry.clone(), bytes.len(), self.settings.ttl);
        let Some(store) = &self.store else { return };
        let expire_at = SystemTime::now() + self.settings.ttl;
        match tokio::time::timeout(STORE_WAIT, store.keep(key.as_str(), scope, bytes, expire_at)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(%err, "an answer could not be kept in the response cache");
                self.count(scope, Event::StoreError("write"));
            }
            Err(_) => {
                tracing::warn!(wait = ?STORE_WAIT, "keeping an answer in the response cache took too long");
                self.count(scope, Event::StoreError("timeout"));
            }
        }
    }

    fn remember(&self, scope: &Arc<str>, key: &Key, entry: Arc<Entry>, bytes: usize, ttl: Duration) {
        let evicted = self
            .memory
            .put(key.clone(), entry, bytes, scope.clone(), Instant::now() + ttl);
        for owner in evicted {
            self.count(&owner, Event::Eviction);
        }
    }

    fn count(&self, owner: &Arc<str>, event: Event) {
        let (tier, result) = match event {
            Event::MemoryHit => ("memory", "hit"),
            Event::MemoryMiss => ("memory", "miss"),
            Event::FlightHit => ("flight", "hit"),
            Event::StoreHit => ("store", "hit"),
            Event::StoreMiss => ("store", "miss"),
            Event::StoreError(kind) => ("store", kind),
            Event::Eviction => ("memory", "evicted"),
            Event::ModelCall => ("model", "called"),
        };
        self.metrics.inc(
            "response_cache_lookups_total",
            "Response cache lookups by tier and result: hits and misses of each tier, store errors \
             (read, write, timeout, corrupt), evictions, and calls that went on to the model.",
            &[("tier", tier), ("result", result)],
        );
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if !owners.contains_key(owner)
            && owners.len() >= MAX_OWNERS
            && let Some(forgotten) = owners.keys().next().cloned()
        {
            owners.remove(&forgotten);
        }
        let counters = owners.entry(owner.clone()).or_default();
        match event {
            Event::MemoryHit => counters.memory_hits += 1,
            Event::MemoryMiss => counters.memory_misses += 1,
            Event::FlightHit => counters.flight_hits += 1,
            Event::StoreHit => counters.store_hits += 1,
            Event::StoreMiss => counters.store_misses += 1,
            Event::StoreError(_) => counters.store_errors += 1,
            Event::Eviction => counters.evictions += 1,
            Event::ModelCall => counters.model_calls += 1,
        }
    }

    /// `GET /api/v1/cache/stats` for `principal`: its own entries and
    /// lookups on this instance, never another's.
    pub fn stats(&self, principal: &str) -> CacheStats {
        let scope = self.scope(principal);
        let counters = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&scope)
            .copied()
            .unwrap_or_default();
        let held = self.memory.held_by(&scope);
        let hits = counters.memory_hits + counters.flight_hits + counters.store_hits;
        CacheStats {
            mode: self.settings.mode.as_str(),
            scope: match self.settings.scope {
                CacheScope::Principal => "principal",
                CacheScope::Global => "global",
            },
            ttl_seconds: self.settings.ttl.as_secs(),
            hits,
            misses: counters.model_calls,
            hit_rate: rate(hits, counters.model_calls),
            memory: MemoryStats {
                entries: held.entries,
                bytes: held.bytes,
                max_entries: self.settings.max_entries as u64,
                max_bytes: self.settings.max_bytes as u64,
                hits: counters.memory_hits,
                misses: counters.memory_misses,
                hit_rate: rate(counters.memory_hits, counters.memory_misses),
                evictions: counters.evictions,
            },
            single_flight: FlightStats {
                hits: counters.flight_hits,
            },
            store: self.store.as_ref().map(|_| StoreStats {
                hits: counters.store_hits,
                misses: counters.store_misses,
                hit_rate: rate(counters.store_hits, counters.store_misses),
                errors: counters.store_errors,
            }),
        }
    }

    /// What `GET /api/v1/cache/stats` answers with `CACHE=off`.
    pub fn off(settings: &CacheSettings) -> CacheStats {
        CacheStats {
            mode: CacheMode::Off.as_str(),
            scope: match settings.scope {
                CacheScope::Principal => "principal",
                CacheScope::Global => "global",
            },
            ttl_seconds: settings.ttl.as_secs(),
            hits: 0,
            misses: 0,
            hit_rate: None,
            memory: MemoryStats {
                max_entries: settings.max_entries as u64,
                max_bytes: settings.max_bytes as u64,
                ..MemoryStats::default()
            },
            single_flight: FlightStats::default(),
            store: None,
        }
    }
}

fn rate(hits: u64, misses: u64) -> Option<f64> {
    let all = hits + misses;
    (all > 0).then(|| hits as f64 / all as f64)
}

enum Found {
    Hit(Arc<Entry>),
    /// The call this one waited on failed: the same failure, not a second call.
    Failed(ModelError),
    Lead(Flight),
}

enum Joined {
    Lead(Flight),
    Wait(Waiting),
}

/// The lead of a call in flight: landing it hands its answer (or error)
/// to everyone waiting; dropping it unlanded lets them try again.
struct Flight {
    cache: Arc<ResponseCache>,
    key: Key,
    id: u64,
    tx: watch::Sender<Option<Landed>>,
}

impl Flight {
    fn land(self, landed: Landed) {
        self.tx.send_replace(Some(landed));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flights = self.cache.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            flights.remove(&self.key);
        }
    }
}

fn hit_stream(entry: &Entry) -> ModelStream {
    let hit = entry.hit();
    let text = hit.text();
    let mut events = Vec::with_capacity(2);
    if !text.is_empty() {
        events.push(Ok(StreamEvent::Delta(text)));
    }
    events.push(Ok(StreamEvent::Done(hit)));
    futures_util::stream::iter(events).boxed()
}

/// `GET /api/v1/cache/stats`: the caller's entries and lookups on the
/// instance that answers, since it started.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CacheStats {
    /// `off`, `memory` or `store` (`CACHE`).
    pub mode: &'static str,
    /// `principal` (each caller has its own entries) or `global`.
    pub scope: &'static str,
    pub ttl_seconds: u64,
    /// Model calls answered by any tier.
    pub hits: u64,
    /// Model calls no tier could answer: the model was called.
    pub misses: u64,
    /// `hits / (hits + misses)`; null before any lookup.
    pub hit_rate: Option<f64>,
    pub memory: MemoryStats,
    /// Calls that waited for an identical call already in flight.
    pub single_flight: FlightStats,
    /// The shared tier; null unless `CACHE=store`.
    pub store: Option<StoreStats>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct MemoryStats {
    /// The caller's entries in this instance's memory, and their size.
    pub entries: u64,
    pub bytes: u64,
    /// The tier's bounds, for every caller together.
    pub max_entries: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: Option<f64>,
    /// The caller's entries dropped to make room.
    pub evictions: u64,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct FlightStats {
    pub hits: u64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StoreStats {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: Option<f64>,
    /// Lookups and keeps that failed (read, write, timeout, a damaged
    /// entry): each was a miss, and the model answered.
    pub errors: u64,
}
