//! The browser console: `GET /` and `GET /console/{file}`, the pages in
//! `shared/console/` compiled into the binary.
//!
//! The console is plain HTML, CSS and JavaScript modules, with no build
//! step and nothing fetched from elsewhere: `cargo run -p local` on a
//! machine with no network is the whole set-up, and the files a maintainer
//! edits are the files the browser runs. It talks only to the routes the
//! page came from, reading the OpenAPI document to learn which exist, so a
//! view appears where its routes are served.
//!
//! The files are open like `/health`: they hold no data, and every call
//! the page makes carries its own credentials. `local` serves the console
//! unless `CONSOLE=off`; a deployed function only with `CONSOLE=on`, since
//! its users are programs. The headers keep the page to its own origin
//! (no inline script, no frame, no referrer), so an answer that contains
//! markup cannot become script even if a view were to slip.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::ApiError;

/// Each file: name, media type, contents.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    ("main.js", JS, include_str!("../../console/main.js")),
    ("api.js", JS, include_str!("../../console/api.js")),
    ("dom.js", JS, include_str!("../../console/dom.js")),
    ("run.js", JS, include_str!("../../console/run.js")),
    ("chat.js", JS, include_str!("../../console/chat.js")),
    ("agent.js", JS, include_str!("../../console/agent.js")),
    ("tasks.js", JS, include_str!("../../console/tasks.js")),
    ("sessions.js", JS, include_str!("../../console/sessions.js")),
    ("tools.js", JS, include_str!("../../console/tools.js")),
    ("overview.js", JS, include_str!("../../console/overview.js")),
    ("apidoc.js", JS, include_str!("../../console/apidoc.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// Scripts, styles and calls from this origin only; `data:` for the empty
/// icon that spares the browser a request for `/favicon.ico`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes, to merge beside a function's (they need no
/// credentials and no rate limit).
pub(crate) fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers) }),
        )
}

/// The bytes of every file, hashed once: the validator a browser sends
/// back, so a reload costs a 304 rather than the files, while a new binary
/// is never served from a stale cache.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        let mut hash = Sha256::new();
        for (name, _, body) in FILES {
            hash.update(name.as_bytes());
            hash.update(body.as_bytes());
        }
        let digest = hash.finalize();
        HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
            .unwrap_or(HeaderValue::from_static("\"console\""))
    })
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((_, media_type, body)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let etag = etag();
    let mut response = if request.get(header::IF_NONE_MATCH) == Some(etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, *body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// What the console weighs, for the test that keeps it small.
#[cfg(test)]
pub(crate) fn total_bytes() -> usize {
    FILES.iter().map(|(_, _, body)| body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for (name, _, body) in FILES {
            for line in body.lines() {
                let Some(rest) = line
                    .split("from './")
                    .nth(1)
                    .or_else(|| line.split("import('./").nth(1))
                else {
                    continue;
                };
                let Some(end) = rest.find('\'') else { continue };
                let imported = &rest[..end];
                assert!(
                    FILES.iter().any(|(file, _, _)| *file == imported),
                    "{name} imports {imported}, which the console does not serve"
                );
            }
        }
    }

    #[test]
    fn the_console_stays_small() {
        // The budget is 300 KB; the files are well under it and
        // should stay so.
        assert!(total_bytes() < 300 * 1024, "{} bytes", total_bytes());
    }

    #[test]
    fn a_file_is_served_with_its_type_and_the_page_keeps_to_its_origin() {
        let response = serve("main.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JS);
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("script-src 'self'")
        );
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, response.headers()[header::ETAG].clone());
        assert_eq!(serve("main.js", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
