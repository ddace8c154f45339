//! Any body, `POST`ed to the chat, agent, calculate and search routes of the
//! real `local` router (every function's routes behind the shared HTTP
//! layer), on the offline model and SQLite: no answer is a 5xx, and every
//! 4xx is the error envelope (see `common/inputs.rs`).
//!
//! The app and the router are built once; each input is one
//! `ServiceExt::oneshot` on a current-thread runtime, its whole body read
//! (a chat stream stores its turn only when read to the end).
#![no_main]

use std::sync::OnceLock;

use agent_core::App;
use axum::Router;
use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[path = "../common/inputs.rs"]
mod inputs;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _app: App,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("serverless-agent-fuzz-{}", std::process::id()));
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

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let (path, content_type, body) = inputs::request_parts(data);
    let mut request = http::Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body.to_vec())).expect("a request");
    let (status, answer_type, bytes) = harness.runtime.block_on(async {
        let response = harness.router.clone().oneshot(request).await.expect("infallible");
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
    });
    if let Err(why) = inputs::check_response(status, answer_type.as_deref(), &bytes) {
        panic!(
            "POST {path} ({content_type:?}) {:?}: {why}",
            String::from_utf8_lossy(body)
        );
    }
});
