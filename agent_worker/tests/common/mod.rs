//! What the Pub/Sub tests share: a topic of their own on the Pub/Sub
//! emulator, and `agent_function` in process on the Firestore emulator
//! publishing to it, the side that submits (and cancels) tasks.

use agent_core::testing::{self, PubSubAdmin, TestServer};

/// The Pub/Sub emulator's project every test uses.
pub const PUBSUB_PROJECT: &str = "test-project";

/// A test's own names: its Firestore project and its topic (created),
/// with the suffix that makes them unique, for its other names.
pub struct Names {
    pub suffix: String,
    pub project: String,
    pub topic: String,
    pub admin: PubSubAdmin,
}

/// Names no other test (or earlier run on the same emulators) uses, and
/// the topic created.
pub async fn names(name: &str) -> Names {
    let suffix = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 0xff_ffff_ffff)
            .unwrap_or(0)
    );
    let (project, topic) = (format!("{name}-{suffix}"), format!("tasks-{name}-{suffix}"));
    let admin = PubSubAdmin::new(&testing::pubsub_emulator_host(), PUBSUB_PROJECT);
    admin.create_topic(&topic).await;
    Names {
        suffix,
        project,
        topic,
        admin,
    }
}

/// `agent_function` on Firestore project `project`, queueing to `topic`,
/// signing callbacks with `secret` (loopback callbacks allowed), with no
/// rate limits and the offline model (the worker runs the tasks); the app
/// is returned to be kept alive as long as the server.
pub async fn agent(project: &str, topic: &str, secret: &str) -> (agent_core::App, TestServer) {
    let pubsub = testing::pubsub_emulator_host();
    let settings = testing::settings(&[
        ("STORE", "firestore"),
        ("FIRESTORE_PROJECT", project),
        ("QUEUE", "pubsub"),
        ("PUBSUB_PROJECT", PUBSUB_PROJECT),
        ("PUBSUB_TOPIC", topic),
        ("PUBSUB_EMULATOR_HOST", &pubsub),
        ("RATE_LIMIT_AGENT", "off"),
        ("RATE_LIMIT_TASKS", "off"),
        ("WEBHOOK_SECRET", secret),
        ("ALLOW_LOOPBACK_CALLBACKS", "true"),
        ("LLM_PROVIDER", "offline"),
    ]);
    let app = agent_core::App::build(settings, agent_function::FUNCTION)
        .await
        .expect("the agent app starts");
    let server = TestServer::start(agent_function::router(&app).await.expect("router")).await;
    (app, server)
}
