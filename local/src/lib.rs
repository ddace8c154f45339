//! The local runner: every function's named routes merged on one port.
//!
//! Only the named `/api/v1/...` routes are merged; the `POST /` aliases
//! belong to the standalone functions, where each function has its own URL.
//!
//! Unlike the deployed functions, which listen on every interface as Cloud
//! Run and Lambda require, `local` listens on `HOST`, by default 127.0.0.1:
//! a runner started on a laptop must not lend its model key and its
//! sessions to everyone on the same network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use agent_core::App;
use agent_core::config::ConfigError;
use agent_core::http::Api;
use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

pub const FUNCTION: &str = agent_core::http::LOCAL_RUNNER;

/// Every function's named routes, merged.
pub async fn api(app: &App) -> anyhow::Result<Api> {
    Ok(chat_function::api(app)
        .merge(agent_function::api(app).await?)
        .merge(search_function::api(app)?)
        .merge(calculator_function::api(app))
        // Once: each model function's standalone router mounts it too.
        .merge(agent_core::http::models::api(app))
        .merge(agent_core::http::cache::api(app)))
}

pub async fn router(app: &App) -> anyhow::Result<Router> {
    Ok(app.wrap(api(app).await?, FUNCTION))
}

/// Where `local` listens when `HOST` is unset: this machine only.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const HOST_EXPECTED: &str = "an IP address of this machine to listen on: 127.0.0.1 (this machine only, \
     the default), 0.0.0.0 (every IPv4 interface), :: (every interface) or one interface's address";

/// The `HOST` setting: the address `local` listens on. Like every setting,
/// an empty value counts as unset; `localhost` is 127.0.0.1, and an IPv6
/// address may come in brackets. Host names are refused rather than
/// resolved, so a `HOST` exported for something else (a machine's name)
/// stops `local` instead of opening it on whatever that name resolves to.
pub fn host(lookup: impl Fn(&str) -> Option<String>) -> Result<IpAddr, ConfigError> {
    let Some(value) = lookup("HOST").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_HOST);
    };
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(DEFAULT_HOST);
    }
    let literal = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(&value);
    literal
        .parse::<IpAddr>()
        .map_err(|_| ConfigError::new("HOST", &value, HOST_EXPECTED))
}

/// [`host`] from the process environment (and its `.env` file), or the
/// problem as one line and exit code 2, as for every other setting.
pub fn host_from_env_or_exit() -> IpAddr {
    agent_core::config::dotenv::process_or_exit();
    host(agent_core::config::dotenv::var).unwrap_or_else(|err| {
        eprintln!("error: {}", err.with_source());
        std::process::exit(2);
    })
}

/// Listens on `host`:`port`.
pub async fn bind(host: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (HOST, PORT): is another process using port {port}, \
             and is {host} an address of this machine?"
        )
    })
}

/// Whether a listener on `addr` can be reached from beyond this machine.
pub fn reachable_from_network(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// The base URL a client on this machine uses for a listener on `addr`.
fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Who can reach a listener on `addr`, for the banner; `open` when no key
/// is asked (`API_KEYS` unset).
fn reach(addr: SocketAddr, open: bool) -> String {
    if !reachable_from_network(addr) {
        return format!("listening on {addr}: this machine only (HOST=0.0.0.0 listens on every interface)");
    }
    let (at, who) = if addr.ip().is_unspecified() {
        (format!("{addr} (every interface)"), "this machine")
    } else {
        (addr.to_string(), "that address")
    };
    if open {
        format!(
            "listening on {at}: anyone who can reach {who} can use it with no key, spending the model \
             key and reading every session (API_KEYS is unset: set it, or leave HOST unset for \
             127.0.0.1 only)"
        )
    } else {
        format!("listening on {at}: anyone who can reach {who} can use it with a key from API_KEYS")
    }
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

/// What `local` prints at start: where it listens (`addr`, the listener's
/// own address) and who can reach it, what it serves (`api`'s routes and
/// the shared layer's, as the OpenAPI document lists them), and on which
/// model and store.
pub fn banner(app: &App, addr: SocketAddr, api: &Api) -> String {
    let store = match app.settings.store.kind {
        agent_core::config::StoreKind::Sqlite => format!("sqlite {}", app.settings.store.sqlite_path.display()),
        agent_core::config::StoreKind::Firestore => "firestore".to_string(),
    };
    let url = base_url(addr);
    let mut out = format!(
        "serverless-agent local runner on {url} (model: {}/{}, store: {store})\n{}\n",
        app.model.provider(),
        app.model.name(),
        reach(addr, !app.authenticator.api_keys() && !app.authenticator.tokens()),
    );
    for (method, path, summary) in agent_core::http::served(api) {
        let route = format!("{method:<6} {path}");
        out.push_str(&format!("  {route:<32} {}\n", headline(&summary)));
    }
    if agent_core::http::serves_console(&app.settings.http, FUNCTION) {
        out.push_str(&format!("console: open {url}/ in a browser\n"));
    }
    out.push_str(&format!(
        "try: curl -s {url}/api/v1/chat -d '{{\"message\":\"hello\"}}'"
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

    fn host_of(value: Option<&str>) -> Result<IpAddr, ConfigError> {
        host(|name| {
            assert_eq!(name, "HOST");
            value.map(str::to_string)
        })
    }

    #[test]
    fn host_is_loopback_unless_set() {
        assert_eq!(host_of(None), Ok(DEFAULT_HOST));
        assert!(DEFAULT_HOST.is_loopback());
        assert_eq!(host_of(Some("")), Ok(DEFAULT_HOST), "empty counts as unset");
        assert_eq!(host_of(Some("  ")), Ok(DEFAULT_HOST), "blank counts as unset");
        assert_eq!(host_of(Some("localhost")), Ok(DEFAULT_HOST));
        assert_eq!(host_of(Some("0.0.0.0")), Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(
            host_of(Some(" 192.0.2.7 ")),
            Ok("192.0.2.7".parse().expect("an address"))
        );
        assert_eq!(host_of(Some("::")), Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
        assert_eq!(host_of(Some("[::1]")), Ok(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn a_host_that_is_not_an_ip_address_is_a_config_error_naming_host() {
        for bad in ["my-laptop", "0.0.0.0:8080", "http://127.0.0.1", "256.1.1.1", "[::1"] {
            let err = host_of(Some(bad)).expect_err(bad);
            assert_eq!(err.var, "HOST");
            assert_eq!(err.value, bad);
            let line = err.to_string();
            assert!(
                line.starts_with(&format!("HOST={bad:?} is not valid: expected an IP address")),
                "{line}"
            );
        }
    }

    #[test]
    fn the_banner_says_who_can_reach_the_listener_and_how_to_call_it() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        assert!(!reachable_from_network(loopback));
        for open in [true, false] {
            let line = reach(loopback, open);
            assert!(line.contains("127.0.0.1:8080: this machine only"), "{line}");
        }
        assert_eq!(base_url(loopback), "http://127.0.0.1:8080");

        let every: SocketAddr = "0.0.0.0:8080".parse().expect("an address");
        assert!(reachable_from_network(every));
        let line = reach(every, true);
        assert!(
            line.contains("every interface") && line.contains("API_KEYS is unset"),
            "{line}"
        );
        let line = reach(every, false);
        assert!(
            line.contains("every interface") && line.contains("with a key"),
            "{line}"
        );
        assert_eq!(base_url(every), "http://127.0.0.1:8080");
        assert_eq!(base_url("[::]:8080".parse().expect("an address")), "http://[::1]:8080");

        let one: SocketAddr = "192.0.2.7:8080".parse().expect("an address");
        assert!(reachable_from_network(one));
        let line = reach(one, true);
        assert!(
            line.contains("192.0.2.7:8080: anyone who can reach that address"),
            "{line}"
        );
        assert_eq!(base_url(one), "http://192.0.2.7:8080");
    }
}
