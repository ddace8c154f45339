//! The chat function as its own service (Cloud Run, Lambda, a laptop).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start(chat_function::FUNCTION).await;
    agent_core::runtime::serve(chat_function::router(&app), &app.settings).await
}
