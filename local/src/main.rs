//! Every function in one process, on one port, on embedded defaults: the
//! README's first command. SQLite under `.agent-data/`, the offline model
//! unless a provider is configured, no cloud account needed.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = agent_core::App::start(local::FUNCTION).await;
    let api = local::api(&app)
        .await
        .unwrap_or_else(|err| app.exit_on_start_error(err));
    let banner = local::banner(&app, app.settings.port, &api);
    let router = app.wrap(api, local::FUNCTION);
    let listener = agent_core::runtime::bind(app.settings.port).await?;
    println!("{banner}");
    agent_core::runtime::serve_on(listener, router, agent_core::runtime::shutdown_signal()).await
}
