//! What the CLI tests share: running the `modelreg` binary as a client, and a proxy between
//! it and the server that can race a promote, cut a download, go down, or corrupt bytes.

use crate::helpers::TestApp;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_modelreg");

/// The `modelreg` client as a user runs it: its own config folder, a server, a token.
pub struct Cli {
    pub server: String,
    pub token: Option<String>,
    pub home: tempfile::TempDir,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }

    /// Asserts the exit code, showing what the command said when it differs.
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Cli {
    pub fn new(app: &TestApp) -> Self {
        Self::at(format!("http://{}", app.addr), app.root.clone())
    }

    pub fn at(server: String, token: Option<String>) -> Self {
        Self {
            server,
            token,
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self::at(self.server.clone(), token.map(str::to_owned))
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        c.args(args)
            .env("MODELREG_URL", &self.server)
            .env("MODELREG_CONFIG_DIR", self.home.path())
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match &self.token {
            Some(t) => c.env("MODELREG_TOKEN", t),
            None => c.env_remove("MODELREG_TOKEN"),
        };
        c
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with(self.command(args)).await
    }

    pub async fn run_with(&self, mut c: tokio::process::Command) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(120), c.output())
            .await
            .expect("the command finished within 120 s")
            .expect("the binary runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A request to the app with the root token.
pub async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> crate::helpers::Resp {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(app.root_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

/// A token made through the API.
pub async fn token(app: &TestApp, name: &str, scopes: &[&str], models: Option<&[&str]>) -> String {
    let body = serde_json::json!({"name": name, "scopes": scopes, "models": models});
    let r = admin(app, reqwest::Method::POST, "/api/v1/tokens", Some(body)).await;
    r.ok(201)["token"].as_str().unwrap().to_owned()
}

/// A ready version with these artifacts.
pub async fn version_with(app: &TestApp, model: &str, files: &[(&str, &[u8])]) -> i64 {
    use reqwest::Method;
    let r = admin(
        app,
        Method::POST,
        &format!("/api/v1/models/{model}/versions"),
        Some(serde_json::json!({})),
    )
    .await;
    let v = r.ok(201)["version"].as_i64().unwrap();
    for (path, bytes) in files {
        let r = app
            .send(
                app.client
                    .put(app.url(&format!(
                        "/api/v1/models/{model}/versions/{v}/artifacts/{path}"
                    )))
                    .bearer_auth(app.root_token())
                    .body(bytes.to_vec()),
            )
            .await;
        r.ok(201);
    }
    let r = admin(
        app,
        Method::POST,
        &format!("/api/v1/models/{model}/versions/{v}/finalize"),
        None,
    )
    .await;
    r.ok(200);
    v
}

pub async fn promote(app: &TestApp, model: &str, stage: &str, version: i64) {
    let r = admin(
        app,
        reqwest::Method::POST,
        &format!("/api/v1/models/{model}/stages/{stage}/promote"),
        Some(serde_json::json!({"version": version})),
    )
    .await;
    r.ok(200);
}

/// Bytes that do not compress and differ per seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::helpers::Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The version `DEST/current` points at.
pub fn current(dest: &Path) -> Option<String> {
    std::fs::read_link(dest.join("current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Waits until `DEST/current` is `versions/<v>`; the time it took.
pub async fn wait_current(dest: &Path, version: i64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let want = format!("versions/{version}");
    while start.elapsed() < limit {
        if current(dest).as_deref() == Some(want.as_str()) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// A running `modelreg sync`, killed when dropped; its log is kept.
pub struct Agent {
    /// Killed when the agent is dropped (`kill_on_drop`).
    _child: tokio::process::Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub health: SocketAddr,
}

impl Agent {
    pub async fn start(cli: &Cli, target: &str, dest: &Path, extra: &[&str]) -> Self {
        let health = free_addr();
        let h = health.to_string();
        let mut args = vec![
            "sync",
            target,
            dest.to_str().unwrap(),
            "--health",
            h.as_str(),
        ];
        args.extend_from_slice(extra);
        let mut c = cli.command(&args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("start sync");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            _child: child,
            log,
            health,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The agent's state from `--health`.
    pub async fn state(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}{path}", self.health)).await;
        match r {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// Waits until the health endpoint's state satisfies `f`.
    pub async fn wait_state(&self, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, s) = self.state("/healthz").await;
            if f(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "state not reached in {limit:?}: {s}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// What the proxy does to the next requests.
#[derive(Default)]
pub struct Faults {
    /// Every request is answered 503 and open streams end.
    pub down: AtomicBool,
    down_now: tokio::sync::Notify,
    /// The next artifact download is cut after this many bytes, and the proxy goes down.
    pub cut_after: Mutex<Option<usize>>,
    /// Artifact downloads have their first byte flipped.
    pub corrupt: AtomicBool,
    /// Before forwarding the next promote, this promote body is sent to the same path (as
    /// another operator would, between the client's read and its write).
    pub race_promote: Mutex<Option<Value>>,
    /// Artifact downloads forwarded so far.
    pub artifact_gets: AtomicUsize,
}

impl Faults {
    /// Waits until the proxy is down (a cut made it so), then brings it back after `pause`.
    pub async fn back_up_after(&self, pause: Duration) {
        while !self.down.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(pause).await;
        self.set_down(false);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.down_now.notify_waiters();
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyState {
    upstream: SocketAddr,
    token: Option<String>,
    client: reqwest::Client,
    faults: Arc<Faults>,
}

impl Proxy {
    pub async fn start(app: &TestApp) -> Self {
        let faults = Arc::new(Faults::default());
        let state = Arc::new(ProxyState {
            upstream: app.addr,
            token: app.root.clone(),
            client: reqwest::Client::new(),
            faults: faults.clone(),
        });
        let router = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, faults, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(State(p): State<Arc<ProxyState>>, req: Request) -> Response {
    if p.faults.down.load(Ordering::SeqCst) {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let url = format!("http://{}{path}", p.upstream);
    if parts.method == axum::http::Method::POST && parts.uri.path().ends_with("/promote") {
        let race = p.faults.race_promote.lock().unwrap().take();
        if let Some(body) = race {
            let mut r = p.client.post(&url).json(&body);
            if let Some(t) = &p.token {
                r = r.bearer_auth(t);
            }
            let answer = r.send().await.unwrap();
            assert_eq!(answer.status(), 200, "the racing promote");
        }
    }
    let artifact =
        parts.method == axum::http::Method::GET && parts.uri.path().contains("/artifacts/");
    if artifact {
        p.faults.artifact_gets.fetch_add(1, Ordering::SeqCst);
    }
    let mut r = p.client.request(parts.method, &url).body(bytes);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            r = r.header(name, value);
        }
    }
    let resp = match r.send().await {
        Ok(r) => r,
        Err(_) => return (axum::http::StatusCode::BAD_GATEWAY, "upstream").into_response(),
    };
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if name != "transfer-encoding" && name != "connection" {
            out = out.header(name, value);
        }
    }
    let corrupt = artifact && p.faults.corrupt.load(Ordering::SeqCst);
    // The cut is for a download larger than it, not the small files before it.
    let cut = if artifact {
        let mut slot = p.faults.cut_after.lock().unwrap();
        match *slot {
            Some(limit) if resp.content_length().is_some_and(|n| n > limit as u64) => slot.take(),
            _ => None,
        }
    } else {
        None
    };
    let faults = p.faults.clone();
    let down = {
        let faults = p.faults.clone();
        async move { faults.down_now.notified().await }
    };
    let mut sent = 0usize;
    let mut first = true;
    let body = resp
        .bytes_stream()
        .take_until(Box::pin(down))
        .map(move |chunk| {
            let mut chunk = chunk.map_err(std::io::Error::other)?.to_vec();
            if corrupt && first && !chunk.is_empty() {
                chunk[0] ^= 0xff;
            }
            first = false;
            if let Some(limit) = cut
                && sent + chunk.len() > limit
            {
                faults.set_down(true);
                return Err(std::io::Error::other("cut"));
            }
            sent += chunk.len();
            Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
        });
    out.body(Body::from_stream(body)).unwrap()
}

/// A folder for a test's files, removed afterwards.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}
