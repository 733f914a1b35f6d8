//! Our own extractors, so that every malformed request gets a problem+json answer with a
//! stable code and the offending field, never axum's plain-text rejection.

use crate::AppState;
use crate::error::{Error, Kind};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub use super::paths::{ModelPath, RequestPath, StagePath, VersionPath};

/// A JSON body: 415 `unsupported_media_type` unless sent as `application/json`, 400
/// `malformed_json` when it is not JSON, 422 `validation_failed` naming the field when it has
/// the wrong shape, 413 `payload_too_large` above the body limit.
///
/// The content type is required, not sniffed: a web page can make a browser send a
/// `text/plain` or form body to any address without asking first, never an
/// `application/json` one.
pub struct Json<T>(pub T);

/// Like [`Json`], but an empty body means `T::default()`: for actions whose body is optional
/// (`curl -X POST …/rollback` with nothing else is a valid rollback).
pub struct OptionalJson<T>(pub T);

/// `application/json` or any `application/…+json`, with parameters.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

fn not_json() -> Error {
    Error::new(
        Kind::UnsupportedMediaType,
        "unsupported_media_type",
        "send the body as JSON with content-type: application/json",
    )
    .with_field("content-type")
}

/// The body's bytes, and whether it was declared JSON.
pub(crate) async fn body_bytes(req: Request, state: &AppState) -> Result<(Bytes, bool), Error> {
    let json = is_json(&req);
    let limit = state.config.body_limit;
    let too_large = || {
        Error::new(
            Kind::PayloadTooLarge,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    // Refuse a declared oversize body before reading any of it.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = req.extensions().get::<super::deadline::BodyRead>().cloned();
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Error::bad_request("invalid_body", "the request body could not be read")
        }
    })?;
    if let Some(read) = read {
        read.done();
    }
    Ok((bytes, json))
}

/// Parses JSON, telling syntax errors (400) from shape errors (422, with the field's path).
/// A NUL character (`\u0000`) anywhere, in a key or a value, is refused (422 naming the
/// field): neither database can store one in text, so no request gets that far with it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if has_escaped_nul(bytes) {
        return Err(nul_error(bytes));
    }
    let malformed = |e: serde_json::Error| {
        Error::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(inner);
        }
        // The path names the offending field, unknown ones included.
        Error::validation(path, strip_position(&inner.to_string()))
    })?;
    de.end().map_err(malformed)?;
    Ok(value)
}

/// Whether the JSON text holds a `\u0000` escape (a raw NUL byte is not valid JSON at all).
/// A scan of the bytes, so that the common case costs no second parse.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    // Escapes come whole: `\\` is a backslash, `\u0000` a NUL. Jump from backslash to
    // backslash (most bodies have few), skipping each escape's second character.
    let mut i = 0;
    while let Some(found) = bytes[i..].iter().position(|b| *b == b'\\') {
        let at = i + found;
        if bytes[at + 1..].starts_with(b"u0000") {
            return true;
        }
        i = at + 2;
        if i >= bytes.len() {
            return false;
        }
    }
    false
}

/// The 422 for a body with a NUL character, naming where it is.
fn nul_error(bytes: &[u8]) -> Error {
    let field = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| nul_path(&v, String::new()))
        .unwrap_or_default();
    Error::validation(field, "text may not contain NUL characters (\\u0000)")
}

fn nul_path(v: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "\\u0000")))
            } else {
                nul_path(item, join(k))
            }
        }),
        _ => None,
    }
}

/// Drops serde's " at line 1 column 42" suffix: the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let (bytes, json) = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::bad_request(
                "malformed_json",
                "request body is empty; a JSON object is expected",
            ));
        }
        if !json {
            return Err(not_json());
        }
        parse_json(&bytes).map(Json)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let (bytes, json) = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Query parameters, repeated keys allowed (`?tag=a:1&tag=b:2`). Failures are 400s naming the
/// parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        if let Some(field) = nul_parameter(query) {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                "query parameters may not contain NUL characters (%00)",
            )
            .with_field(field));
        }
        let de = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let field = e.path().to_string();
                let message = e.into_inner().to_string();
                query_error(
                    Error::bad_request("invalid_query_parameter", message).with_field(field),
                )
            })
    }
}

/// The name of the first query parameter whose name or value decodes to a NUL character
/// (only `%00` does: a raw NUL cannot be in a request target).
fn nul_parameter(query: &str) -> Option<String> {
    if !query.contains("%00") {
        return None;
    }
    query
        .split('&')
        .find(|pair| pair.contains("%00"))
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(k, _)| k.replace('\0', "%00"))
                .unwrap_or_default()
        })
}

/// Turns a validation error about a query parameter into the 400 that query errors are.
pub fn query_error(e: Error) -> Error {
    let mut out = Error::bad_request("invalid_query_parameter", e.detail);
    out.field = e.field;
    out
}

/// Validates `?limit=` against the configured bounds.
pub fn page_limit(limit: Option<u32>, state: &AppState) -> Result<u32, Error> {
    let max = state.config.max_page_size;
    match limit {
        None => Ok(state.config.default_page_size),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Error::bad_request(
            "invalid_query_parameter",
            format!("limit {n} is out of range: use 1 to {max}"),
        )
        .with_field("limit")),
    }
}

/// Deserializes a present field as `Some(value)`, so that `null` becomes `Some(None)`:
/// tells "clear it" from "leave it".
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Option<BTreeMap<String, String>>,
        n: Option<i64>,
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let e = parse_json::<serde_json::Value>(br#"{"a": {"b": ["x", "y\u0000"]}}"#).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (Kind::Unprocessable, Some("a.b[1]"))
        );
        let e = parse_json::<serde_json::Value>(br#"{"k\u0000": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("k\\u0000"));
        // An escaped backslash followed by the text u0000 is no NUL.
        assert!(parse_json::<serde_json::Value>(br#"{"a": "\\u0000"}"#).is_ok());
        assert!(parse_json::<serde_json::Value>(br#"{"a": "\\\u0000"}"#).is_err());
        assert_eq!(nul_parameter("a=1&tag=k:%00&q=2").as_deref(), Some("tag"));
        assert_eq!(nul_parameter("x%00y=1").as_deref(), Some("x%00y"));
        assert_eq!(nul_parameter("a=%0001"), Some("a".to_owned()));
        assert_eq!(nul_parameter("a=%2500"), None);
    }

    #[test]
    fn syntax_errors_are_400() {
        for bad in [
            &b"{"[..],
            b"{\"name\": NaN}",
            b"not json",
            b"{\"name\":\"a\"} x",
            b"{\"name\": 1e999}",
        ] {
            let e = parse_json::<Body>(bad).unwrap_err();
            assert_eq!(e.code, "malformed_json", "{}", String::from_utf8_lossy(bad));
            assert_eq!(e.kind, Kind::BadRequest);
        }
    }

    #[test]
    fn shape_errors_are_422_with_field() {
        let e = parse_json::<Body>(br#"{"name": 1}"#).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (Kind::Unprocessable, Some("name"))
        );
        let e = parse_json::<Body>(br#"{"name": "a", "tags": {"k": 1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags.k"));
        let e = parse_json::<Body>(br#"{"name": "a", "colour": "red"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
        assert!(e.detail.starts_with("unknown field"));
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert!(e.detail.contains("missing field `name`"), "{}", e.detail);
        let e = parse_json::<Body>(br#"[1]"#).unwrap_err();
        assert_eq!(e.kind, Kind::Unprocessable);
        let e = parse_json::<Body>(br#"{"name": "a", "n": 1.5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("n"));
    }
}
