//! The calculator tool as its own service (Cloud Run, Lambda, a laptop).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start_without_model(calculator_function::FUNCTION).await;
    agent_core::runtime::serve(calculator_function::router(&app), &app.settings).await
}
