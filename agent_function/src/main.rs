//! The agent function as its own service (Cloud Run, Lambda, a laptop).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start(agent_function::FUNCTION).await;
    let router = agent_function::router(&app)
        .await
        .unwrap_or_else(|err| app.exit_on_start_error(err));
    agent_core::runtime::serve(router, &app.settings).await
}
