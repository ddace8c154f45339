//! The worker as its own service, behind a Pub/Sub push subscription or an
//! Eventarc trigger.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start(agent_worker::FUNCTION).await;
    let router = agent_worker::router(&app)
        .await
        .unwrap_or_else(|err| app.exit_on_start_error(err));
    agent_core::runtime::serve(router, &app.settings).await
}
