//! Every function in one process, on one port, on embedded defaults: the
//! README's first command. SQLite under `.agent-data/`, the offline model
//! unless a provider is configured, no cloud account needed, and reachable
//! from this machine only unless `HOST` says otherwise.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Read before anything is opened: a bad HOST stops local as any bad
    // setting does (one line naming it, exit code 2).
    let host = local::host_from_env_or_exit();
    let app = agent_core::App::start(local::FUNCTION).await;
    let api = local::api(&app)
        .await
        .unwrap_or_else(|err| app.exit_on_start_error(err));
    let listener = local::bind(host, app.settings.port)
        .await
        .unwrap_or_else(|err| app.exit_on_start_error(err));
    let addr = listener.local_addr()?;
    let banner = local::banner(&app, addr, &api);
    let router = app.wrap(api, local::FUNCTION);
    println!("{banner}");
    agent_core::runtime::serve_on(listener, router, agent_core::runtime::shutdown_signal()).await
}
