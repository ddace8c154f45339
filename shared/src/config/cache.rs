//! The response cache (`CACHE*`): whether model answers are kept, where,
//! for how long, and how much of them one process holds.

use std::time::Duration;

use super::{ConfigError, Env};

/// `CACHE`: which tiers a model answer is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Every call goes to the model (the default: a repeated question is
    /// answered afresh, as a model samples, unless the operator chooses).
    Off,
    /// In this process only: bounded, LRU, with a TTL.
    Memory,
    /// In this process, then in the store every instance shares (the
    /// SQLite file's `response_cache` table, Firestore's `response_cache`
    /// collection with an `expire_at` TTL).
    Store,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Off => "off",
            CacheMode::Memory => "memory",
            CacheMode::Store => "store",
        }
    }
}

/// `CACHE_SCOPE`: who shares an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Each principal has its own entries (the default): a client never
    /// gets, or learns of, an answer another client paid for.
    Principal,
    /// One entry for everyone who sends the same input: more hits, for a
    /// deployment whose clients may share answers.
    Global,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub mode: CacheMode,
    pub scope: CacheScope,
    /// How long an answer is served from either tier.
    pub ttl: Duration,
    /// The in-process tier's bounds: the least recently used entry goes
    /// first when either is passed.
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl CacheSettings {
    pub fn enabled(&self) -> bool {
        self.mode != CacheMode::Off
    }
}

pub(super) fn cache_settings(env: &Env<'_>) -> Result<CacheSettings, ConfigError> {
    let mode = env.parse_or("CACHE", CacheMode::Off, "off, memory or store", |v| {
        match v.to_ascii_lowercase().as_str() {
            "off" => Some(CacheMode::Off),
            "memory" => Some(CacheMode::Memory),
            "store" => Some(CacheMode::Store),
            _ => None,
        }
    })?;
    let scope = env.parse_or("CACHE_SCOPE", CacheScope::Principal, "principal or global", |v| match v
        .to_ascii_lowercase()
        .as_str()
    {
        "principal" => Some(CacheScope::Principal),
        "global" => Some(CacheScope::Global),
        _ => None,
    })?;
    let ttl = env.parse_or(
        "CACHE_TTL_SECONDS",
        Duration::from_secs(3600),
        "seconds from 1 to 2592000 (30 days)",
        |v| {
            v.parse::<u64>()
                .ok()
                .filter(|s| (1..=2_592_000).contains(s))
                .map(Duration::from_secs)
        },
    )?;
    let max_entries = env.parse_or(
        "CACHE_MAX_ENTRIES",
        1000,
        "a number of entries from 1 to 1000000",
        |v| v.parse::<usize>().ok().filter(|n| (1..=1_000_000).contains(n)),
    )?;
    let max_bytes = env.parse_or(
        "CACHE_MAX_BYTES",
        32 * 1024 * 1024,
        "a number of bytes from 1024 to 17179869184 (16 GiB)",
        |v| v.parse::<usize>().ok().filter(|n| (1024..=17_179_869_184).contains(n)),
    )?;
    Ok(CacheSettings {
        mode,
        scope,
        ttl,
        max_entries,
        max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn read(vars: &[(&str, &str)]) -> Result<CacheSettings, ConfigError> {
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).map(|s| s.cache)
    }

    #[test]
    fn the_cache_is_off_unless_chosen_and_its_settings_are_checked() {
        let default = read(&[]).expect("defaults");
        assert_eq!((default.mode, default.scope), (CacheMode::Off, CacheScope::Principal));
        assert_eq!(default.ttl, Duration::from_secs(3600));
        let chosen = read(&[
            ("CACHE", "Store"),
            ("CACHE_SCOPE", "global"),
            ("CACHE_TTL_SECONDS", "60"),
            ("CACHE_MAX_ENTRIES", "10"),
            ("CACHE_MAX_BYTES", "4096"),
        ])
        .expect("chosen");
        assert_eq!((chosen.mode, chosen.scope), (CacheMode::Store, CacheScope::Global));
        assert_eq!(
            (chosen.ttl.as_secs(), chosen.max_entries, chosen.max_bytes),
            (60, 10, 4096)
        );
        for (var, value) in [
            ("CACHE", "redis"),
            ("CACHE_SCOPE", "team"),
            ("CACHE_TTL_SECONDS", "0"),
            ("CACHE_MAX_ENTRIES", "0"),
            ("CACHE_MAX_BYTES", "12"),
        ] {
            let err = read(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
        }
    }
}
