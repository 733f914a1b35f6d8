//! Web pages, while authentication is off.
//!
//! Without authentication the registry trusts whoever reaches it, and a browser on this
//! machine reaches it on behalf of any page it shows. Two checks keep pages out:
//! - a request a page on another origin makes (its `Origin` is neither this server's own nor
//!   one allowed by `MODELREG_CORS_ORIGINS`) is refused: 403 `cross_origin_refused`;
//! - on a local-only listener (loopback, plain HTTP), a request whose `Host` is not a loopback
//!   name or address is refused: 403 `host_not_allowed` (DNS rebinding: a page's own domain
//!   pointed at 127.0.0.1 would otherwise count as this server's origin).
//!
//! With authentication on, neither applies: a page cannot attach a bearer token to a
//! cross-site request without a CORS preflight, and proxies and container networks send
//! whatever `Host` they route by.

use crate::AppState;
use crate::config::{AuthMode, cors_origins};
use crate::error::{Error, Kind};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = &state.config;
    if config.auth == AuthMode::Required {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if config.is_local_only()
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return Error::new(
            Kind::Forbidden,
            "host_not_allowed",
            "without authentication this server answers only requests addressed to a loopback \
             name or address (localhost, 127.0.0.1, [::1])",
        )
        .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let tls = config.tls_cert.is_some();
        let allowed = origin
            .to_str()
            .is_ok_and(|o| is_own_origin(o, host, tls) || cors_allows(&config.cors_origins, o));
        if !allowed {
            return Error::new(
                Kind::Forbidden,
                "cross_origin_refused",
                "without authentication this server refuses requests that web pages of other \
                 origins make; allow an origin with MODELREG_CORS_ORIGINS, or turn \
                 authentication on",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `origin` is this server's: the scheme it is served with and the `Host` it was
/// asked for (default ports made explicit on both sides).
fn is_own_origin(origin: &str, host: Option<&str>, tls: bool) -> bool {
    let (scheme, default_port) = if tls {
        ("https", "443")
    } else {
        ("http", "80")
    };
    let Some(authority) = origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
    else {
        return false;
    };
    let Some(host) = host else {
        return false;
    };
    let with_port = |a: &str| {
        let a = a.to_ascii_lowercase();
        let has_port = match a.rfind(']') {
            Some(i) => a[i..].contains(':'),
            None => a.contains(':'),
        };
        if has_port {
            a
        } else {
            format!("{a}:{default_port}")
        }
    };
    with_port(authority) == with_port(host)
}

fn cors_allows(configured: &[String], origin: &str) -> bool {
    let origins = cors_origins(configured);
    origins.contains(&"*") || origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "ui.localhost:3000",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]:8080",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn own_origin() {
        let host = Some("127.0.0.1:8080");
        assert!(is_own_origin("http://127.0.0.1:8080", host, false));
        assert!(!is_own_origin("https://127.0.0.1:8080", host, false));
        assert!(!is_own_origin("http://localhost:8080", host, false));
        assert!(is_own_origin(
            "http://LOCALHOST",
            Some("localhost:80"),
            false
        ));
        assert!(is_own_origin("https://[::1]", Some("[::1]:443"), true));
        assert!(!is_own_origin("null", host, false));
        assert!(!is_own_origin("http://127.0.0.1:8080", None, false));
    }

    #[test]
    fn configured_origins() {
        let c = vec!["https://dash.example".to_owned()];
        assert!(cors_allows(&c, "https://dash.example"));
        assert!(!cors_allows(&c, "https://evil.example"));
        assert!(cors_allows(&["*".to_owned()], "https://any.example"));
        assert!(!cors_allows(&[], "https://any.example"));
    }
}
