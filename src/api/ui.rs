//! The web pages at `/ui/`, embedded in the binary: no build step and nothing to install. The
//! page uses the public API only (with the caller's token); these routes serve files.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests from
//! this origin only, no inline script, no framing), `nosniff` and no referrer. Assets are
//! fingerprinted: the page asks for `app.js?v=<hash>`, which may be cached for a year;
//! everything is revalidated by ETag otherwise.

use super::Endpoint;
use crate::domain::access::Scope;
use axum::extract::RawPathParams;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/", Scope::Public, home),
        Endpoint::new(Method::GET, "/ui/", Scope::Public, index),
        Endpoint::new(Method::GET, "/ui/{file}", Scope::Public, asset),
    ]
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
    /// The first 16 hex digits of its SHA-256: its ETag and fingerprint.
    hash: String,
}

fn asset_of(name: &'static str, content_type: &'static str, bytes: Vec<u8>) -> Asset {
    let hash = hex::encode(Sha256::digest(&bytes))[..16].to_owned();
    Asset {
        name,
        content_type,
        bytes,
        hash,
    }
}

const JS: &str = "text/javascript; charset=utf-8";

/// The files in dependency order: each names the ones before it as `{{name}}`, replaced by
/// their fingerprints (so a changed module changes every URL that leads to it), the page last.
const FILES: &[(&str, &str, &str)] = &[
    ("lib.js", JS, include_str!("../ui/assets/lib.js")),
    ("chart.js", JS, include_str!("../ui/assets/chart.js")),
    ("markdown.js", JS, include_str!("../ui/assets/markdown.js")),
    ("models.js", JS, include_str!("../ui/assets/models.js")),
    ("version.js", JS, include_str!("../ui/assets/version.js")),
    ("stages.js", JS, include_str!("../ui/assets/stages.js")),
    ("compare.js", JS, include_str!("../ui/assets/compare.js")),
    ("storage.js", JS, include_str!("../ui/assets/storage.js")),
    ("events.js", JS, include_str!("../ui/assets/events.js")),
    ("app.js", JS, include_str!("../ui/assets/app.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/assets/app.css"),
    ),
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/assets/index.html"),
    ),
];

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut files: Vec<Asset> = Vec::with_capacity(FILES.len());
        for (name, content_type, text) in FILES {
            let mut text = (*text).to_owned();
            for f in &files {
                text = text.replace(&format!("{{{{{}}}}}", f.name), &f.hash);
            }
            files.push(asset_of(name, content_type, text.into_bytes()));
        }
        files
    })
}

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn serve(name: &str, headers: &HeaderMap, fingerprint: Option<&str>) -> Response {
    let Some(a) = assets().iter().find(|a| a.name == name) else {
        return secured(
            crate::error::Error::not_found("ui_file_not_found", format!("no file {name:?}"))
                .into_response(),
        );
    };
    let etag = format!("\"{}\"", a.hash);
    // A request naming this very version may keep it; anything else revalidates.
    let cache = if name != "index.html" && fingerprint == Some(a.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.bytes.clone()).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secured(r)
}

/// `/`: the pages are at `/ui/`.
async fn home() -> Response {
    secured(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/ui/")],
            "the registry's pages are at /ui/\n",
        )
            .into_response(),
    )
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers, None)
}

/// A file; `?v=` is read leniently (any other query is ignored, never refused).
async fn asset(params: RawPathParams, headers: HeaderMap, uri: Uri) -> Response {
    let name = params
        .iter()
        .find(|(k, _)| *k == "file")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let fingerprint = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "v")
        .map(|(_, v)| v.into_owned());
    serve(&name, &headers, fingerprint.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_fingerprint() {
        let files = assets();
        for a in files {
            let text = std::str::from_utf8(&a.bytes).unwrap();
            assert!(!text.contains("{{"), "a placeholder is left in {}", a.name);
            for other in files.iter().filter(|o| o.name != a.name) {
                let plain = format!("\"./{}\"", other.name);
                assert!(
                    !text.contains(&plain),
                    "{} names {} without a fingerprint",
                    a.name,
                    other.name
                );
            }
        }
        let page = files.iter().find(|a| a.name == "index.html").unwrap();
        let page = std::str::from_utf8(&page.bytes).unwrap();
        for name in ["app.js", "app.css"] {
            let a = files.iter().find(|a| a.name == name).unwrap();
            assert!(page.contains(&format!("{}?v={}", a.name, a.hash)), "{name}");
        }
        // Every module is reachable from the entry point by fingerprinted imports.
        let app =
            std::str::from_utf8(&files.iter().find(|a| a.name == "app.js").unwrap().bytes).unwrap();
        for a in files
            .iter()
            .filter(|a| a.name.ends_with(".js") && a.name != "app.js")
        {
            let imported = files.iter().any(|f| {
                std::str::from_utf8(&f.bytes)
                    .unwrap()
                    .contains(&format!("./{}?v={}", a.name, a.hash))
            });
            assert!(imported, "{} is imported by fingerprint", a.name);
        }
        assert!(app.contains("import "));
    }

    /// Values from the API must reach the page as text: the script never parses HTML.
    #[test]
    fn the_script_never_writes_html() {
        for (name, _, js) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute(\"style",
            ] {
                assert!(!js.contains(sink), "{name} uses {sink}");
            }
        }
        let page = include_str!("../ui/assets/index.html");
        assert!(
            !page.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
        assert!(
            !page.contains("style="),
            "no inline style (the CSP forbids it)"
        );
    }
}
