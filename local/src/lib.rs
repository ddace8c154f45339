//! The local runner: every function's named routes merged on one port.
//!
//! Only the named `/api/v1/...` routes are merged; the `POST /` aliases
//! belong to the standalone functions, where each function has its own URL.

use agent_core::App;
use agent_core::http::Api;
use axum::Router;

pub const FUNCTION: &str = "local";

/// Every function's named routes, merged.
pub async fn api(app: &App) -> anyhow::Result<Api> {
    Ok(chat_function::api(app)
        .merge(agent_function::api(app).await?)
        .merge(search_function::api(app)?)
        .merge(calculator_function::api(app)))
}

pub async fn router(app: &App) -> anyhow::Result<Router> {
    Ok(app.wrap(api(app).await?, FUNCTION))
}

/// The longest summary a banner line shows.
const HEADLINE_CHARS: usize = 80;

/// A summary short enough for one banner line: its first sentence, cut at
/// a word past [`HEADLINE_CHARS`] (the tools' summaries are the long
/// descriptions the model reads).
fn headline(summary: &str) -> String {
    let first = summary.split_once(". ").map_or(summary, |(first, _)| first);
    let first = first.strip_suffix('.').unwrap_or(first);
    if first.chars().count() <= HEADLINE_CHARS {
        return first.to_string();
    }
    let mut out = String::new();
    for word in first.split(' ') {
        if out.chars().count() + 1 + word.chars().count() > HEADLINE_CHARS - 3 {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out + "..."
}

/// What `local` prints at start: where it listens, what it serves (`api`'s
/// routes and the shared layer's, as the OpenAPI document lists them), and
/// on which model and store.
pub fn banner(app: &App, port: u16, api: &Api) -> String {
    let store = match app.settings.store.kind {
        agent_core::config::StoreKind::Sqlite => format!("sqlite {}", app.settings.store.sqlite_path.display()),
        agent_core::config::StoreKind::Firestore => "firestore".to_string(),
    };
    let mut out = format!(
        "serverless-agent local runner on http://127.0.0.1:{port} (model: {}/{}, store: {store})\n",
        app.model.provider(),
        app.model.name(),
    );
    for (method, path, summary) in agent_core::http::served(api) {
        let route = format!("{method:<6} {path}");
        out.push_str(&format!("  {route:<32} {}\n", headline(&summary)));
    }
    out.push_str(&format!(
        "try: curl -s localhost:{port}/api/v1/chat -d '{{\"message\":\"hello\"}}'"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_banner_line_shows_the_first_sentence_of_a_summary_and_no_more_than_a_line() {
        assert_eq!(
            headline("liveness: the function's name and version"),
            "liveness: the function's name and version"
        );
        assert_eq!(
            headline("Evaluates an arithmetic expression and returns its numeric result. Use it for any arithmetic."),
            "Evaluates an arithmetic expression and returns its numeric result"
        );
        let long = headline(&"word ".repeat(40));
        assert!(
            long.ends_with("...") && long.chars().count() <= HEADLINE_CHARS,
            "{long}"
        );
    }
}
