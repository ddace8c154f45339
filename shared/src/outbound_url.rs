//! The outbound-URL guard: what every request the service makes to a URL a
//! client gave must pass, so that no client can aim the service at its own
//! network.
//!
//! Such a request leaves from inside the service, next to the metadata
//! server (which hands out the service's credentials) and the VPC. Task
//! callbacks ([`crate::webhook`]) go through this guard today, and so must
//! every later client of a user-given URL (MCP servers, A2A agents): it is a
//! module of its own so that there is one policy to review.
//!
//! A URL is checked twice: [`validate_url`] when it is accepted (no DNS, so
//! a bad URL is a 400 right away), and [`resolve_public`] just before
//! sending, where every address the name resolves to must be public. The
//! connection is then pinned to those addresses ([`pinned_client`]) so a
//! second lookup (DNS rebinding) cannot move it; redirects are not
//! followed, for the same reason. Every refusal is an [`OutboundUrlError`]
//! whose message says what is wrong and how to fix it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use url_host::Host;

/// Longer URLs are refused: no receiver needs one, and they end up in logs
/// and stored task records.
pub const MAX_URL_LEN: usize = 2048;

/// Names of the Google Cloud metadata server, which resolve only inside
/// Google Cloud and would hand out the service's credentials.
const METADATA_NAMES: [&str; 3] = ["metadata.google.internal", "metadata", "metadata.goog"];

/// Why `Url::parse` refused a URL (`url::ParseError`, which reqwest does not
/// re-export).
pub type UrlParseError = <Url as std::str::FromStr>::Err;

/// Why a URL may not be used for an outbound request. The messages are the
/// ones clients see (in a 400, or in a task's callback error), so each says
/// what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum OutboundUrlError {
    #[error("callback URL is {len} characters long; the limit is {MAX_URL_LEN}")]
    TooLong { len: usize },
    #[error("callback URL is not an absolute URL ({0}); give one like https://example.com/hook")]
    NotAbsolute(#[source] UrlParseError),
    /// Not http(s) at all.
    #[error("callback URL must use https (got {scheme}:)")]
    BadScheme { scheme: String },
    #[error(
        "callback URL must not contain a user name or password; check the X-Signature-256 header \
         instead, or put a token in the path or query"
    )]
    UserInfo,
    #[error("callback URL has no host; give one like https://example.com/hook")]
    NoHost,
    #[error("callback URL has no port")]
    NoPort,
    /// One of the metadata server's names.
    #[error("callback URL host {name} is the metadata server; callbacks go only to public hosts")]
    MetadataHost { name: String },
    /// An IP literal that is not public; `what` completes "the host ... is".
    #[error("callback URL host {ip} is {what}; callbacks go only to public addresses")]
    NotPublic { ip: IpAddr, what: &'static str },
    /// A loopback name or address while loopback is not allowed.
    #[error("callback URL host {host} is a loopback address; callbacks go only to public addresses")]
    Loopback { host: String },
    /// `http:` to a host that is not loopback.
    #[error(
        "callback URL must use https (got http:); plain http is accepted only for a loopback receiver{}",
        if *.allow_loopback { "" } else { " in local development" }
    )]
    PlainHttp { allow_loopback: bool },
    /// The lookup failed; it may pass on a later attempt.
    #[error("cannot resolve callback host {name}: {source}")]
    Unresolved { name: String, source: std::io::Error },
    #[error("callback host {name} resolves to no address")]
    NoAddress { name: String },
    /// A name accepted over http as loopback resolves to a public address.
    #[error("callback host {name} resolves to {ip}, which is not loopback; use https")]
    ResolvesToPublicOverHttp { name: String, ip: IpAddr },
    /// A name resolves to loopback while loopback is not allowed.
    #[error("callback host {name} resolves to {ip}, a loopback address; callbacks go only to public addresses")]
    ResolvesToLoopback { name: String, ip: IpAddr },
    /// A name resolves to an address that is never allowed (one such answer
    /// among public ones is enough for a rebinding attack).
    #[error("callback host {name} resolves to {ip}, {what}; callbacks go only to public addresses")]
    ResolvesToNotPublic {
        name: String,
        ip: IpAddr,
        what: &'static str,
    },
}

impl OutboundUrlError {
    /// Whether a later attempt may pass: only a failed lookup. Every other
    /// refusal is final.
    pub fn is_transient(&self) -> bool {
        matches!(self, OutboundUrlError::Unresolved { .. })
    }
}

/// `url::Host`, through reqwest, which re-exports `Url` but not the crate.
mod url_host {
    pub(super) enum Host<'a> {
        Domain(&'a str),
        Ip(std::net::IpAddr),
    }

    pub(super) fn of(url: &reqwest::Url) -> Option<Host<'_>> {
        let host = url.host_str()?;
        // `host_str` gives IPv6 literals in brackets; the parsed URL has
        // already normalised every IP form (`0x7f.1`, `2130706433`, ...).
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(Host::Ip(ip)),
            Err(_) => Some(Host::Domain(host)),
        }
    }
}

/// What an address is, for deciding whether a callback may go there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    Loopback,
    /// Never allowed; the text completes "the host ... is".
    Forbidden(&'static str),
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => Class::Loopback,
        (0, _, _) => Class::Forbidden("an unspecified (\"this network\") address"),
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Class::Forbidden("a private address"),
        (100, 64..=127, _) => Class::Forbidden("a carrier-grade NAT address"),
        (169, 254, _) => Class::Forbidden("a link-local address (the metadata server lives at 169.254.169.254)"),
        (192, 0, 0) => Class::Forbidden("an IETF protocol assignment address"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Class::Forbidden("a documentation address"),
        (192, 88, 99) => Class::Forbidden("a 6to4 relay anycast address"),
        (198, 18..=19, _) => Class::Forbidden("a benchmarking address"),
        (224..=239, _, _) => Class::Forbidden("a multicast address"),
        (255, 255, 255) if ip.is_broadcast() => Class::Forbidden("the broadcast address"),
        (240..=255, _, _) => Class::Forbidden("a reserved address"),
        _ => Class::Public,
    }
}

/// Only global unicast (`2000::/3`) can be public; inside it the special
/// ranges are refused, and the ranges that embed an IPv4 address (NAT64,
/// 6to4) are judged by that address.
fn classify_v6(ip: Ipv6Addr) -> Class {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        match classify_v4(Ipv4Addr::new(a, b, c, d)) {
            Class::Public => Class::Public,
            _ => Class::Forbidden("an IPv6 address that embeds a non-public IPv4 address (NAT64 or 6to4)"),
        }
    };
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_unspecified() {
        Class::Forbidden("the unspecified address")
    } else if s[0] & 0xff00 == 0xff00 {
        Class::Forbidden("a multicast address")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Class::Forbidden("a link-local address")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Class::Forbidden("a unique-local (private) address")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        embedded(s[6], s[7])
    } else if s[0] == 0x2002 {
        embedded(s[1], s[2])
    } else if (s[0] == 0x2001 && s[1] == 0xdb8) || s[0] & 0xfff0 == 0x3ff0 {
        Class::Forbidden("a documentation address")
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        Class::Forbidden("an IETF special-purpose address (Teredo, ORCHID and the like)")
    } else if s[0] & 0xe000 != 0x2000 {
        Class::Forbidden("a reserved or non-global address")
    } else {
        Class::Public
    }
}

/// The checks that need no DNS. Returns whether the host is loopback.
fn check_url(url: &Url, allow_loopback: bool) -> Result<bool, OutboundUrlError> {
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(OutboundUrlError::BadScheme {
            scheme: scheme.to_string(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundUrlError::UserInfo);
    }
    let Some(host) = url_host::of(url) else {
        return Err(OutboundUrlError::NoHost);
    };
    let loopback = match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err(OutboundUrlError::NoHost);
            }
            if METADATA_NAMES.contains(&name.as_str()) {
                return Err(OutboundUrlError::MetadataHost { name });
            }
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ip(ip) => match classify(ip) {
            Class::Public => false,
            Class::Loopback => true,
            Class::Forbidden(what) => return Err(OutboundUrlError::NotPublic { ip, what }),
        },
    };
    if loopback && !allow_loopback {
        return Err(OutboundUrlError::Loopback {
            host: url.host_str().unwrap_or_default().to_string(),
        });
    }
    if scheme == "http" && !loopback {
        return Err(OutboundUrlError::PlainHttp { allow_loopback });
    }
    Ok(loopback)
}

/// Checks a URL without DNS, for request validation. The error says what is
/// wrong and how to fix it. `allow_loopback` is for local development and
/// tests only.
pub fn validate_url(url: &str, allow_loopback: bool) -> Result<Url, OutboundUrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(OutboundUrlError::TooLong { len: url.len() });
    }
    let parsed = Url::parse(url).map_err(OutboundUrlError::NotAbsolute)?;
    check_url(&parsed, allow_loopback)?;
    Ok(parsed)
}

/// Resolves the URL's host and refuses it when any address it resolves to
/// is not public (one private answer among public ones is enough for a
/// rebinding attack). The addresses returned are the ones to connect to
/// (see [`pinned_client`]). A failed lookup is
/// [`OutboundUrlError::Unresolved`], the one refusal a retry may get past.
pub async fn resolve_public(url: &Url, allow_loopback: bool) -> Result<Vec<SocketAddr>, OutboundUrlError> {
    check_url(url, allow_loopback)?;
    let Some(port) = url.port_or_known_default() else {
        return Err(OutboundUrlError::NoPort);
    };
    let name = match url_host::of(url) {
        Some(Host::Ip(ip)) => return Ok(vec![SocketAddr::new(ip, port)]),
        Some(Host::Domain(name)) => name,
        None => return Err(OutboundUrlError::NoHost),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|source| OutboundUrlError::Unresolved {
            name: name.to_string(),
            source,
        })?
        .collect();
    check_resolved(name, &addrs, allow_loopback, url.scheme() == "http")?;
    Ok(addrs)
}

/// `plain_http`: the URL was accepted as http because its name is
/// loopback, so every address must be loopback too.
fn check_resolved(
    name: &str,
    addrs: &[SocketAddr],
    allow_loopback: bool,
    plain_http: bool,
) -> Result<(), OutboundUrlError> {
    if addrs.is_empty() {
        return Err(OutboundUrlError::NoAddress { name: name.to_string() });
    }
    for addr in addrs {
        let ip = addr.ip();
        let name = name.to_string();
        match classify(ip) {
            Class::Public if plain_http => return Err(OutboundUrlError::ResolvesToPublicOverHttp { name, ip }),
            Class::Public => {}
            Class::Loopback if allow_loopback => {}
            Class::Loopback => return Err(OutboundUrlError::ResolvesToLoopback { name, ip }),
            Class::Forbidden(what) => return Err(OutboundUrlError::ResolvesToNotPublic { name, ip, what }),
        }
    }
    Ok(())
}

/// A client builder that connects only to `addrs` (those [`resolve_public`]
/// checked; an IP literal needs no lookup), through no proxy, and follows no
/// redirect. The caller adds its own timeout and user agent.
pub fn pinned_client(url: &Url, addrs: &[SocketAddr]) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    match url_host::of(url) {
        Some(Host::Domain(name)) => builder.resolve_to_addrs(name, addrs),
        _ => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_url_rules() {
        // (url, allow_loopback, accepted, a word the refusal must contain)
        let cases: &[(&str, bool, bool, &str)] = &[
            ("https://example.com/hook?x=1", false, true, ""),
            ("https://example.com:8443/a/b#frag", false, true, ""),
            ("https://93.184.215.14/hook", false, true, ""),
            ("https://[2606:4700::6810:84e5]/hook", false, true, ""),
            ("http://127.0.0.1:8080/hook", true, true, ""),
            ("http://localhost:9/x", true, true, ""),
            ("http://LOCALHOST./x", true, true, ""),
            ("http://[::1]:8080/hook", true, true, ""),
            ("https://127.0.0.1/hook", true, true, ""),
            // Scheme and shape.
            ("http://example.com/", false, false, "https"),
            ("http://example.com/", true, false, "https"),
            ("ftp://x", false, false, "https"),
            ("file:///etc/passwd", false, false, "https"),
            ("not a url", false, false, "absolute"),
            ("/relative/path", false, false, "absolute"),
            ("https://", false, false, "absolute"),
            ("https://user:pw@example.com/", false, false, "password"),
            ("https://user@example.com/", false, false, "user name"),
            // Loopback.
            ("http://127.0.0.1:8080/hook", false, false, "loopback"),
            ("https://127.0.0.1/", false, false, "loopback"),
            ("https://127.1.2.3/", false, false, "loopback"),
            ("https://localhost/", false, false, "loopback"),
            ("https://api.localhost/", false, false, "loopback"),
            ("https://[::1]/", false, false, "loopback"),
            ("https://[::ffff:127.0.0.1]/", false, false, "loopback"),
            ("https://2130706433/", false, false, "loopback"),
            ("https://0x7f.1/", false, false, "loopback"),
            // The metadata server, by address and by name.
            ("http://169.254.169.254/", true, false, "link-local"),
            ("http://169.254.169.254/", false, false, "link-local"),
            ("https://169.254.169.254/latest", false, false, "link-local"),
            ("https://[::ffff:169.254.169.254]/", false, false, "link-local"),
            ("https://[::ffff:a9fe:a9fe]/", true, false, "link-local"),
            ("https://[64:ff9b::a9fe:a9fe]/", false, false, "non-public"),
            ("https://[2002:a9fe:a9fe::1]/", false, false, "non-public"),
            ("https://[::a9fe:a9fe]/", false, false, "non-global"),
            ("https://metadata.google.internal/", false, false, "metadata"),
            ("https://metadata.google.internal./", false, false, "metadata"),
            (
                "https://METADATA.Google.Internal/computeMetadata/v1/",
                true,
                false,
                "metadata",
            ),
            ("http://metadata/", true, false, "metadata"),
            ("https://metadata.goog/", false, false, "metadata"),
            ("https://[fe80::1]/", false, false, "link-local"),
            // Private, shared and special IPv4.
            ("https://10.0.0.1/", false, false, "private"),
            ("https://172.16.0.1/", false, false, "private"),
            ("https://172.31.255.255/", false, false, "private"),
            ("https://192.168.1.1/", true, false, "private"),
            ("https://[::ffff:10.0.0.1]/", false, false, "private"),
            ("https://100.64.0.1/", false, false, "carrier-grade"),
            ("https://100.127.255.254/", false, false, "carrier-grade"),
            ("https://0.0.0.0/", true, false, "unspecified"),
            ("https://0.1.2.3/", false, false, "unspecified"),
            ("https://255.255.255.255/", false, false, "broadcast"),
            ("https://224.0.0.1/", false, false, "multicast"),
            ("https://240.0.0.1/", false, false, "reserved"),
            ("https://192.0.2.1/", false, false, "documentation"),
            ("https://198.51.100.7/", false, false, "documentation"),
            ("https://203.0.113.9/", false, false, "documentation"),
            ("https://198.18.0.1/", false, false, "benchmarking"),
            // Special IPv6.
            ("https://[::]/", true, false, "unspecified"),
            ("https://[fc00::1]/", false, false, "unique-local"),
            ("https://[fd12:3456::1]/", false, false, "unique-local"),
            ("https://[ff02::1]/", false, false, "multicast"),
            ("https://[2001:db8::1]/", false, false, "documentation"),
            ("https://[3fff::1]/", false, false, "documentation"),
            ("https://[2001::1]/", false, false, "special-purpose"),
        ];
        for (url, allow_loopback, accepted, word) in cases {
            match validate_url(url, *allow_loopback) {
                Ok(parsed) => assert!(accepted, "{url} (loopback {allow_loopback}) was accepted as {parsed}"),
                Err(msg) => {
                    assert!(!accepted, "{url} (loopback {allow_loopback}) was refused: {msg}");
                    let msg = msg.to_string();
                    assert!(msg.contains(word), "{url}: {msg:?} does not mention {word:?}");
                }
            }
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(
            validate_url(&long, false)
                .expect_err("too long")
                .to_string()
                .contains("2048")
        );
    }

    /// Clients and tests read these messages: each variant says exactly
    /// what the guard said before it had a type.
    #[test]
    fn refusals_are_typed_and_keep_their_messages() {
        let refused = |url: &str, allow_loopback: bool| validate_url(url, allow_loopback).expect_err(url);
        let err = refused("ftp://x", false);
        assert!(
            matches!(&err, OutboundUrlError::BadScheme { scheme } if scheme == "ftp"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "callback URL must use https (got ftp:)");
        let err = refused("https://u:p@example.com/", false);
        assert!(matches!(err, OutboundUrlError::UserInfo));
        assert_eq!(
            err.to_string(),
            "callback URL must not contain a user name or password; check the X-Signature-256 header \
             instead, or put a token in the path or query"
        );
        let err = refused("/relative", false);
        assert!(matches!(err, OutboundUrlError::NotAbsolute(_)));
        assert_eq!(
            err.to_string(),
            "callback URL is not an absolute URL (relative URL without a base); give one like https://example.com/hook"
        );
        let err = refused("https://METADATA.goog./x", true);
        assert!(matches!(&err, OutboundUrlError::MetadataHost { name } if name == "metadata.goog"));
        assert_eq!(
            err.to_string(),
            "callback URL host metadata.goog is the metadata server; callbacks go only to public hosts"
        );
        let err = refused("https://10.0.0.1/", true);
        assert!(matches!(err, OutboundUrlError::NotPublic { .. }));
        assert_eq!(
            err.to_string(),
            "callback URL host 10.0.0.1 is a private address; callbacks go only to public addresses"
        );
        let err = refused("https://[::1]/", false);
        assert!(matches!(&err, OutboundUrlError::Loopback { host } if host == "[::1]"));
        assert_eq!(
            err.to_string(),
            "callback URL host [::1] is a loopback address; callbacks go only to public addresses"
        );
        assert_eq!(
            refused("http://example.com/", false).to_string(),
            "callback URL must use https (got http:); plain http is accepted only for a loopback receiver in local development"
        );
        assert_eq!(
            refused("http://example.com/", true).to_string(),
            "callback URL must use https (got http:); plain http is accepted only for a loopback receiver"
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        let err = refused(&long, false);
        assert!(matches!(err, OutboundUrlError::TooLong { len } if len == MAX_URL_LEN + 20));
        assert_eq!(
            err.to_string(),
            format!(
                "callback URL is {} characters long; the limit is 2048",
                MAX_URL_LEN + 20
            )
        );
        assert!(!err.is_transient());

        let ip: IpAddr = "169.254.169.254".parse().expect("ip");
        let err = check_resolved("rebind.example", &[SocketAddr::new(ip, 443)], false, false).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "callback host rebind.example resolves to 169.254.169.254, a link-local address (the metadata server \
             lives at 169.254.169.254); callbacks go only to public addresses"
        );
        let unresolved = OutboundUrlError::Unresolved {
            name: "nowhere.invalid".into(),
            source: std::io::Error::other("no such host"),
        };
        assert!(unresolved.is_transient());
        assert_eq!(
            unresolved.to_string(),
            "cannot resolve callback host nowhere.invalid: no such host"
        );
    }

    #[test]
    fn a_pinned_client_builds() {
        let url = Url::parse("https://example.com/hook").expect("url");
        let addrs = ["93.184.215.14:443".parse().expect("addr")];
        assert!(pinned_client(&url, &addrs).build().is_ok());
        let literal = Url::parse("https://93.184.215.14/hook").expect("url");
        assert!(pinned_client(&literal, &addrs).build().is_ok());
    }

    #[tokio::test]
    async fn resolve_public_refuses_loopback_names() {
        let url = Url::parse("https://localhost:8443/hook").expect("url");
        let err = resolve_public(&url, false).await.expect_err("loopback");
        assert!(err.to_string().contains("loopback"), "{err}");

        let url = Url::parse("http://localhost:8080/hook").expect("url");
        let addrs = resolve_public(&url, true).await.expect("allowed in development");
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addrs:?}"
        );

        let url = Url::parse("https://10.1.2.3/").expect("url");
        assert!(
            resolve_public(&url, true)
                .await
                .expect_err("private")
                .to_string()
                .contains("private")
        );
    }

    #[test]
    fn any_forbidden_answer_refuses_the_name() {
        let public: SocketAddr = "93.184.215.14:443".parse().expect("addr");
        let metadata: SocketAddr = "169.254.169.254:443".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:192.168.0.1]:443".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.1:443".parse().expect("addr");
        assert!(check_resolved("example.com", &[public], false, false).is_ok());
        for (addrs, allow_loopback, plain_http, word) in [
            (vec![public, metadata], false, false, "link-local"),
            (vec![mapped, public], true, false, "private"),
            (vec![public, loopback], false, false, "loopback"),
            (vec![loopback, public], true, true, "not loopback"),
            (vec![], true, false, "no address"),
        ] {
            let err = check_resolved("rebind.example", &addrs, allow_loopback, plain_http).expect_err("refused");
            let msg = err.to_string();
            assert!(msg.contains(word) && msg.contains("rebind.example"), "{msg}");
        }
        assert!(check_resolved("localhost", &[loopback], true, true).is_ok());
    }
}
