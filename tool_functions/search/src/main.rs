//! The search tool as its own service (Cloud Run, Lambda, a laptop).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start_without_model(search_function::FUNCTION).await;
    let router = search_function::router(&app).unwrap_or_else(|err| app.exit_on_start_error(err));
    agent_core::runtime::serve(router, &app.settings).await
}
