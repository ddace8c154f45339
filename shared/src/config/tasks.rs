//! Asynchronous tasks: where they are queued (`QUEUE`, Pub/Sub), how they
//! are claimed and retried, and how their callbacks are signed and sent.

use std::time::Duration;

use super::{ConfigError, Env, Secret, parse_bool, project, validate_url};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Durable in the store, delivered in process (the embedded default).
    Local,
    /// Google Cloud Pub/Sub; a push subscription delivers to `agent_worker`.
    PubSub,
}

/// Where asynchronous tasks are queued.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub kind: QueueKind,
    pub pubsub_project: Option<String>,
    pub pubsub_topic: String,
    /// `HOST:PORT` of the Pub/Sub emulator: no TLS, anonymous credentials.
    pub pubsub_emulator_host: Option<String>,
    /// How many local-queue tasks run at once in one process.
    pub local_concurrency: usize,
}

/// How queued tasks are claimed, retried and reported.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// A claim lasts this long unless its worker renews it (every third of
    /// it while the task runs); a worker that dies frees its task after at
    /// most this long.
    pub lease: Duration,
    /// Claims per task before it is marked failed, so no poison message
    /// loops (Pub/Sub's dead-letter policy is the second net).
    pub max_attempts: u32,
    /// Signs every callback (`X-Signature-256`); without it, `callback_url`
    /// is refused.
    pub webhook_secret: Option<Secret>,
    /// Accept `http://` loopback callback URLs (development and tests).
    pub allow_loopback_callbacks: bool,
    /// POSTs per callback before giving up, and each one's time limit.
    pub webhook_attempts: u32,
    pub webhook_timeout: Duration,
}

pub(super) fn queue_settings(env: &Env<'_>) -> Result<QueueSettings, ConfigError> {
    let kind = env.parse_or("QUEUE", QueueKind::Local, "local or pubsub", |v| {
        match v.to_ascii_lowercase().as_str() {
            "local" => Some(QueueKind::Local),
            "pubsub" => Some(QueueKind::PubSub),
            _ => None,
        }
    })?;
    let pubsub_project = project(
        env,
        "PUBSUB_PROJECT",
        kind == QueueKind::PubSub,
        "of the topic when QUEUE=pubsub",
    )?;
    let pubsub_topic = env.get_or("PUBSUB_TOPIC", "agent-tasks");
    let topic_ok = (3..=255).contains(&pubsub_topic.len())
        && pubsub_topic.starts_with(|c: char| c.is_ascii_alphabetic())
        && pubsub_topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
        && !pubsub_topic.to_ascii_lowercase().starts_with("goog");
    if !topic_ok {
        return Err(ConfigError::new(
            "PUBSUB_TOPIC",
            &pubsub_topic,
            "a topic id: 3 to 255 letters, digits and - _ . ~ + %, starting with a letter, not with goog",
        ));
    }
    let pubsub_emulator_host = env.get("PUBSUB_EMULATOR_HOST");
    if let Some(host) = &pubsub_emulator_host {
        validate_url("PUBSUB_EMULATOR_HOST", &format!("http://{host}"))
            .map_err(|_| ConfigError::new("PUBSUB_EMULATOR_HOST", host, "HOST:PORT of the Pub/Sub emulator"))?;
    }
    Ok(QueueSettings {
        kind,
        pubsub_project,
        pubsub_topic,
        pubsub_emulator_host,
        local_concurrency: env.parse_or("LOCAL_QUEUE_CONCURRENCY", 4, "a number of tasks from 1 to 256", |v| {
            v.parse::<usize>().ok().filter(|n| (1..=256).contains(n))
        })?,
    })
}

pub(super) fn task_settings(env: &Env<'_>) -> Result<TaskSettings, ConfigError> {
    Ok(TaskSettings {
        lease: env.seconds_or("TASK_LEASE_SECONDS", Duration::from_secs(60), 1.0..=3600.0)?,
        max_attempts: env.parse_or("TASK_MAX_ATTEMPTS", 5, "a number of attempts from 1 to 100", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=100).contains(n))
        })?,
        webhook_secret: env.get("WEBHOOK_SECRET").map(Secret::new),
        allow_loopback_callbacks: env.parse_or("ALLOW_LOOPBACK_CALLBACKS", false, "true or false", parse_bool)?,
        webhook_attempts: env.parse_or("WEBHOOK_ATTEMPTS", 5, "a number of attempts from 1 to 20", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=20).contains(n))
        })?,
        webhook_timeout: env.seconds_or("WEBHOOK_TIMEOUT_SECONDS", Duration::from_secs(10), 0.1..=120.0)?,
    })
}
