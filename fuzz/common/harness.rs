//! The `local` router the body targets (`request_body`, `mcp`) send their
//! inputs to: built once per fuzzing process, on the offline model, SQLite
//! in a temporary folder of its own (`serverless-agent-fuzz-<target>-<pid>`)
//! and no rate limits (`inputs::SETTINGS`), with a current-thread runtime
//! to run each input on.

use std::sync::OnceLock;

use agent_core::App;
use axum::Router;
use axum::body::Body;
use tower::ServiceExt;

use super::inputs;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _app: App,
}

impl Harness {
    /// The harness of this process, built on first use.
    pub fn get(target: &str) -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let dir = std::env::temp_dir().join(format!("serverless-agent-fuzz-{target}-{}", std::process::id()));
            let db = dir.join("agent.db").to_string_lossy().into_owned();
            let mut vars = vec![("SQLITE_PATH", db.as_str())];
            vars.extend_from_slice(&inputs::SETTINGS);
            let settings = agent_core::testing::settings(&vars);
            let (app, router) = runtime.block_on(async {
                let app = App::build(settings, local::FUNCTION).await.expect("the app starts");
                let router = local::router(&app).await.expect("the router builds");
                (app, router)
            });
            Harness {
                runtime,
                router,
                _app: app,
            }
        })
    }

    /// Sends `request` and reads the whole answer: its status, content
    /// type and body.
    pub fn send(&self, request: http::Request<Body>) -> (u16, Option<String>, axum::body::Bytes) {
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the body reads");
            (status, content_type, bytes)
        })
    }
}
