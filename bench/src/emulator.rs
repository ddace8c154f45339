//! The store a run measures: SQLite (the default), or Firestore on the
//! emulator the settings name, or on a fresh emulator the run starts and
//! stops itself.
//!
//! The emulator is started as `agent_core::testing::FirestoreEmulator`
//! starts it (`gcloud emulators firestore start` in a process group of its
//! own, stopped by that group's id), but the benchmark needs the group's id
//! to read its CPU time, and reports a failure instead of panicking.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A Firestore emulator of this run's own, killed (its whole process group)
/// when stopped or dropped.
pub(crate) struct Emulator {
    pub(crate) host: String,
    port: u16,
    child: Option<tokio::process::Child>,
}

impl Emulator {
    /// Starts an emulator on a free port and waits until it answers.
    pub(crate) async fn start() -> anyhow::Result<Emulator> {
        let port = crate::free_port()?;
        let host = format!("127.0.0.1:{port}");
        eprintln!("starting a fresh Firestore emulator on {host}...");
        let child = tokio::process::Command::new("gcloud")
            .args(["emulators", "firestore", "start", &format!("--host-port={host}")])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start the Firestore emulator (gcloud emulators firestore start)")?;
        let mut emulator = Emulator {
            host,
            port,
            child: Some(child),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = http.get(format!("http://{}/", emulator.host)).send().await
                && r.status().is_success()
            {
                return Ok(emulator);
            }
            if let Some(child) = emulator.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the Firestore emulator exited ({status}) before it answered on {}",
                    emulator.host
                );
            }
            if Instant::now() > deadline {
                emulator.stop().await;
                bail!("the Firestore emulator did not answer on {} within 90 s", emulator.host);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The id of the emulator's process group (gcloud's Python wrapper leads
    /// it; the Java emulator is its child).
    pub(crate) fn group(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    fn kill_group(&self) {
        if let Some(group) = self.group() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Kills the whole process group and waits until the port is closed.
    pub(crate) async fn stop(&mut self) {
        self.kill_group();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// The store settings of one `bench` command.
pub(crate) struct Store {
    /// The settings for the server: the given ones, and for Firestore the
    /// emulator's host and a project of this run's own when not given.
    pub(crate) settings: Vec<(String, String)>,
    /// What the report calls the store.
    pub(crate) label: String,
    /// The emulator this run started, if it did.
    pub(crate) emulator: Option<Emulator>,
}

impl Store {
    /// With `STORE=firestore` and no `FIRESTORE_EMULATOR_HOST`, starts a
    /// fresh emulator; without `FIRESTORE_PROJECT`, names a project of this
    /// run's own, so that no earlier run's documents are in the way.
    pub(crate) async fn prepare(extra: &[(&str, &str)], nonce: &str) -> anyhow::Result<Store> {
        let mut settings: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = |name: &str| extra.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        if !get("STORE").is_some_and(|s| s.eq_ignore_ascii_case("firestore")) {
            return Ok(Store {
                settings,
                label: "SQLite".into(),
                emulator: None,
            });
        }
        if get("FIRESTORE_PROJECT").is_none() {
            settings.push(("FIRESTORE_PROJECT".into(), format!("bench-{nonce}")));
        }
        if let Some(host) = get("FIRESTORE_EMULATOR_HOST") {
            return Ok(Store {
                settings,
                label: format!("Firestore (the emulator at {host})"),
                emulator: None,
            });
        }
        let emulator = Emulator::start().await?;
        settings.push(("FIRESTORE_EMULATOR_HOST".into(), emulator.host.clone()));
        Ok(Store {
            settings,
            label: "Firestore (a fresh emulator)".into(),
            emulator: Some(emulator),
        })
    }

    /// The settings as `spawn` takes them.
    pub(crate) fn vars(&self) -> Vec<(&str, &str)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Stops the emulator this run started, if any.
    pub(crate) async fn stop(mut self) {
        if let Some(mut emulator) = self.emulator.take() {
            emulator.stop().await;
        }
    }
}

/// A name for this run's sessions and project: the time and the process id,
/// in lowercase hex (valid in a session id and a Firestore project id).
pub(crate) fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos % (1 << 40), std::process::id())
}
