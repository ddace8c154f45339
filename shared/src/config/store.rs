//! Where sessions, memory and tasks are kept: `STORE` and each backend's
//! settings, and `HISTORY_LIMIT` (which also sizes a Firestore session's
//! tail).

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Env, project};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Firestore,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub sqlite_path: PathBuf,
    pub firestore_project: Option<String>,
    pub firestore_database: String,
    /// `FIRESTORE_EMULATOR_HOST`: read with the settings, not left to the
    /// Firestore client, so that a `.env` file's value reaches it too.
    pub firestore_emulator_host: Option<String>,
    /// Sessions untouched for this long may be deleted by a Firestore TTL
    /// policy on `expire_at` (`SESSION_TTL_DAYS`); `None`: kept forever.
    pub session_ttl: Option<Duration>,
    /// Messages a Firestore session document keeps for the next turn's
    /// history, so that the turn reads no query: `HISTORY_LIMIT`.
    pub session_tail: usize,
}

pub(super) fn history_limit(env: &Env<'_>) -> Result<usize, ConfigError> {
    env.parse_or("HISTORY_LIMIT", 20, "a number of messages from 0 to 1000", |v| {
        v.parse::<usize>().ok().filter(|n| *n <= 1000)
    })
}

pub(super) fn store_settings(env: &Env<'_>) -> Result<StoreSettings, ConfigError> {
    let kind = env.parse_or("STORE", StoreKind::Sqlite, "sqlite or firestore", |v| {
        match v.to_ascii_lowercase().as_str() {
            "sqlite" => Some(StoreKind::Sqlite),
            "firestore" => Some(StoreKind::Firestore),
            _ => None,
        }
    })?;
    let firestore_project = project(
        env,
        "FIRESTORE_PROJECT",
        kind == StoreKind::Firestore,
        "when STORE=firestore",
    )?;
    Ok(StoreSettings {
        kind,
        sqlite_path: PathBuf::from(env.get_or("SQLITE_PATH", ".agent-data/agent.db")),
        firestore_project,
        firestore_database: env.get_or("FIRESTORE_DATABASE", "(default)"),
        firestore_emulator_host: env.get("FIRESTORE_EMULATOR_HOST"),
        session_ttl: env.parse_or("SESSION_TTL_DAYS", None, "a number of days from 1 to 3650", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .map(|d| Some(Duration::from_secs(d * 86_400)))
        })?,
        session_tail: history_limit(env)?,
    })
}
