//! The local runner: every function's named routes merged on one port.
//!
//! Only the named `/api/v1/...` routes are merged; the `POST /` aliases
//! belong to the standalone functions, where each function has its own URL.

use agent_core::App;
use axum::Router;

pub const FUNCTION: &str = "local";

/// Each route served, with what it does, for the start-up banner.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST   /api/v1/chat", "chat with session memory (stream: true for SSE)"),
    ("GET    /api/v1/sessions/{id}", "a session's messages"),
    ("DELETE /api/v1/sessions/{id}", "forget a session"),
    (
        "POST   /api/v1/agent",
        "run the tool-calling agent on a task (async: true to queue it)",
    ),
    ("GET    /api/v1/tasks/{id}", "an agent task: status, result or error"),
    (
        "GET    /api/v1/tasks/{id}/events",
        "an agent task's steps as they happen (SSE)",
    ),
    ("POST   /api/v1/tools/search", "search the corpus (BM25)"),
    ("POST   /api/v1/tools/calculate", "safe arithmetic"),
    ("GET    /health", "liveness"),
    ("GET    /openapi.json", "the OpenAPI 3.1 document of every route"),
    ("GET    /metrics", "Prometheus metrics"),
];

pub async fn router(app: &App) -> anyhow::Result<Router> {
    let api = chat_function::api(app)
        .merge(agent_function::api(app).await?)
        .merge(search_function::api(app)?)
        .merge(calculator_function::api(app));
    Ok(app.wrap(api, FUNCTION))
}

/// What `local` prints at start: where it listens, what it serves, and on
/// which model and store.
pub fn banner(app: &App, port: u16) -> String {
    let store = match app.settings.store.kind {
        agent_core::config::StoreKind::Sqlite => format!("sqlite {}", app.settings.store.sqlite_path.display()),
        agent_core::config::StoreKind::Firestore => "firestore".to_string(),
    };
    let mut out = format!(
        "serverless-agent local runner on http://127.0.0.1:{port} (model: {}/{}, store: {store})\n",
        app.model.provider(),
        app.model.name(),
    );
    for (route, what) in ROUTES {
        out.push_str(&format!("  {route:<32} {what}\n"));
    }
    out.push_str(&format!(
        "try: curl -s localhost:{port}/api/v1/chat -d '{{\"message\":\"hello\"}}'"
    ));
    out
}
