//! Google Cloud Pub/Sub through the official client.
//!
//! The client does not read `PUBSUB_EMULATOR_HOST`, so the emulator's
//! address and anonymous credentials are given to its builder; elsewhere it
//! finds Application Default Credentials (the service account on Cloud
//! Run). Messages are sent as soon as they are published (no batching
//! delay): the client is waiting for its 202.

use std::time::Duration;

use async_trait::async_trait;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use tracing::Instrument;

use super::{Queue, QueueError};
use crate::config::QueueSettings;

/// A publish that takes longer than this fails with 503 rather than hold
/// the client: the task is then marked failed, never left queued.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct PubSubQueue {
    publisher: Publisher,
    topic: String,
}

impl PubSubQueue {
    pub(crate) async fn connect(settings: &QueueSettings) -> anyhow::Result<PubSubQueue> {
        let project = settings
            .pubsub_project
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("QUEUE=pubsub needs PUBSUB_PROJECT or GOOGLE_CLOUD_PROJECT"))?;
        let topic = format!("projects/{project}/topics/{}", settings.pubsub_topic);
        let mut builder = Publisher::builder(topic.clone())
            .set_delay_threshold(Duration::ZERO)
            .set_message_count_threshold(1);
        if let Some(host) = &settings.pubsub_emulator_host {
            builder = builder
                .with_endpoint(format!("http://{host}"))
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
        }
        let publisher = builder
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the Pub/Sub publisher for {topic}: {e}"))?;
        Ok(PubSubQueue { publisher, topic })
    }
}

#[async_trait]
impl Queue for PubSubQueue {
    async fn publish(&self, task_id: &str) -> Result<String, QueueError> {
        let span = super::send_span("gcp_pubsub", &self.topic, task_id);
        self.send(task_id).instrument(span).await
    }
}

impl PubSubQueue {
    async fn send(&self, task_id: &str) -> Result<String, QueueError> {
        let trace = crate::telemetry::attributes();
        let message = Message::new()
            .set_data(super::message(task_id))
            .set_attributes([("task_id", task_id.to_string())].into_iter().chain(trace));
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publisher.publish(message)).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(err)) => Err(QueueError::Unavailable(format!(
                "publishing to {} failed: {err}",
                self.topic
            ))),
            Err(_) => Err(QueueError::Unavailable(format!(
                "publishing to {} took longer than {PUBLISH_TIMEOUT:?}",
                self.topic
            ))),
        }
    }
}
