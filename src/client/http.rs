//! The client's one way to the server: its public HTTP API, with the token, and every
//! answer that is not a success turned into a [`Failure`] with its exit code.

use super::credentials;
use super::{Conn, Exit, Failure};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// A server and the token to speak to it with.
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// The furthest commit position the server answered (`Modelreg-Consistency`), sent back
    /// with every request so that a read from a replica sees what this client wrote or saw.
    position: std::sync::Mutex<Option<u64>>,
}

impl Api {
    /// From the command line, the environment and the credentials file, in that order.
    pub fn connect(conn: &Conn) -> Result<Self, Failure> {
        let saved = credentials::load()?;
        let server = conn
            .server
            .clone()
            .or_else(|| saved.as_ref().and_then(|s| s.default.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let base = parse_server(&server)?;
        let token = std::env::var("MODELREG_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_owned())
            .or_else(|| saved.and_then(|s| s.token_for(base.as_str())));
        Self::new(base, token, conn.timeout)
    }

    pub fn new(base: Url, token: Option<String>, timeout: Duration) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // Between two reads of a body, not the whole transfer: a large download is
            // never cut for being large, a stalled one is.
            .read_timeout(timeout)
            .user_agent(concat!("modelreg/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(Exit::Unavailable, format!("cannot start HTTP: {e}")))?;
        Ok(Self {
            http,
            base,
            token,
            position: std::sync::Mutex::new(None),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `/api/v1/` followed by `segments`, each percent-encoded as one segment.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// A request with the token, for calls the helpers below do not cover.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(p) = *self.lock_position() {
            req = req.header(CONSISTENCY, crate::store::reads::format_position(p));
        }
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET` a JSON resource.
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = self.url(segments);
        append_query(&mut url, query);
        let resp = self.send(self.request(Method::GET, url)).await?;
        json_of(ok(resp).await?).await
    }

    /// Every item of a paginated list, following `next_cursor` until `limit` items.
    pub async fn list(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        limit: usize,
    ) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            q.push(("limit", (limit - items.len()).clamp(1, 1000).to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.get(segments, &q).await?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || items.len() >= limit {
                items.truncate(limit);
                return Ok(items);
            }
        }
    }

    /// A JSON call: the status and the body of a success (2xx), a [`Failure`] otherwise.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), Failure> {
        let mut req = self.request(method, self.url(segments));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = ok(self.send(req).await?).await?;
        let status = resp.status();
        Ok((status, json_of(resp).await?))
    }

    /// Sends, with a transport error (no answer at all) as exit 5.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, Failure> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if let Some(p) = resp
            .headers()
            .get(CONSISTENCY)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::store::reads::parse_position)
        {
            let mut kept = self.lock_position();
            *kept = Some(kept.map_or(p, |k| k.max(p)));
        }
        Ok(resp)
    }

    fn lock_position(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.position
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> Failure {
        Failure::new(
            Exit::Unavailable,
            format!("cannot reach {}: {}", self.base, chain(e)),
        )
    }
}

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The read-your-writes header (see the server's `api::consistency`).
const CONSISTENCY: &str = "modelreg-consistency";

/// A server URL as given: http(s), no query; a path is kept as the prefix of every call.
pub fn parse_server(raw: &str) -> Result<Url, Failure> {
    let url = Url::parse(raw.trim())
        .map_err(|e| Failure::usage(format!("--server {raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(Failure::usage(format!(
            "--server {raw:?} must be an http:// or https:// URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Failure::usage(format!(
            "--server {raw:?} must not carry a query, a fragment or credentials"
        )));
    }
    Ok(url)
}

pub fn append_query(url: &mut Url, query: &[(&str, String)]) {
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
}

/// The response when it is a success, else its problem as a [`Failure`].
pub async fn ok(resp: Response) -> Result<Response, Failure> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Err(Failure::from_problem(status, problem))
}

async fn json_of(resp: Response) -> Result<Value, Failure> {
    let bytes = resp.bytes().await.map_err(|e| {
        Failure::new(
            Exit::Unavailable,
            format!("the answer was cut: {}", chain(&e)),
        )
    })?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            Exit::Unavailable,
            format!("the server's answer is not JSON: {e}"),
        )
    })
}

/// An error with its causes, as one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked() {
        assert!(parse_server("http://127.0.0.1:8080").is_ok());
        assert!(parse_server("https://registry.example.com/prefix").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://x/?a=b",
            "http://u:p@x/",
            "",
        ] {
            let e = parse_server(bad).err().map(|f| f.exit);
            assert_eq!(e, Some(Exit::Usage), "{bad}");
        }
    }

    #[test]
    fn segments_are_encoded_one_by_one() {
        let api = Api::new(
            parse_server("http://h:1/base/").unwrap_or_else(|_| unreachable!()),
            None,
            Duration::from_secs(1),
        )
        .unwrap_or_else(|_| unreachable!());
        let url = api.url(&["models", "m", "artifacts", "a b?.bin"]);
        assert_eq!(
            url.as_str(),
            "http://h:1/base/api/v1/models/m/artifacts/a%20b%3F.bin"
        );
    }
}
