//! Two `modelreg serve` processes on one Postgres database.

use crate::helpers::{Backend, TestDb, into_resp, wait_ready};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub(crate) struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the server logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a server's log lines as they come (so that it never blocks on a full pipe).
pub(crate) struct LogReader {
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LogReader {
    pub fn new(stderr: std::process::ChildStderr) -> Self {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { lines }
    }

    /// Whether a line containing `needle` appears within `limit`.
    pub fn wait_for(&self, needle: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// The address the server says it listens on.
    pub fn address(&self) -> SocketAddr {
        assert!(
            self.wait_for("addr=", std::time::Duration::from_secs(30)),
            "server exited before listening: {:?}",
            self.lines.lock().unwrap()
        );
        let lines = self.lines.lock().unwrap();
        let line = lines.iter().find(|l| l.contains("addr=")).unwrap();
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address")
            .parse()
            .expect("socket address")
    }
}

/// Starts the binary on a free port and reads the bound address from its log.
fn start(db_url: &str) -> Server {
    start_with(db_url, &[])
}

pub(crate) fn start_with(db_url: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelreg"));
    cmd.arg("serve")
        .env("MODELREG_LISTEN", "127.0.0.1:0")
        .env("MODELREG_DATABASE_URL", db_url)
        .env("MODELREG_ARTIFACTS_URL", "memory://")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start modelreg");
    let log = LogReader::new(child.stderr.take().expect("stderr"));
    let addr = log.address();
    Server {
        child,
        addr,
        log: log.lines,
    }
}

pub(crate) fn start_servers(db_url: &str, n: usize) -> Vec<(SocketAddr, impl Drop)> {
    (0..n).map(|_| start(db_url)).map(|s| (s.addr, s)).collect()
}

/// `modelreg token create`, as an operator bootstraps the first admin token.
pub(crate) fn cli_token(db_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .args(["token", "create"])
        .args(args)
        .env("MODELREG_DATABASE_URL", db_url)
        .output()
        .expect("run modelreg token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_register_gapless_versions_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let servers = start_servers(&db.url, 2);
    let client = reqwest::Client::new();
    for (addr, _) in &servers {
        wait_ready(&client, *addr).await;
    }
    let a = servers[0].0;
    let r = client
        .post(format!("http://{a}/api/v1/models"))
        .json(&json!({"name": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let addr = servers[i % 2].0;
            let client = client.clone();
            tokio::spawn(async move {
                let r = client
                    .post(format!("http://{addr}/api/v1/models/shared/versions"))
                    .json(&json!({"tags": {"i": i.to_string()}}))
                    .send()
                    .await
                    .unwrap();
                let r = into_resp(r).await;
                r.ok(201)["version"].as_i64().unwrap()
            })
        })
        .collect();
    let mut numbers = vec![];
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=32).collect::<Vec<_>>());

    // The same idempotency key sent to both processes at once creates one version.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let addr = servers[i % 2].0;
            let req = client
                .post(format!("http://{addr}/api/v1/models/shared/versions"))
                .header("Idempotency-Key", "cross-process")
                .json(&json!({"config": {"a": 1}}));
            tokio::spawn(async move {
                req.send().await.unwrap().json::<Value>().await.unwrap()["version"].as_i64()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some(33));
    }
    drop(servers);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_race_promotes_one_winner_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let servers = start_servers(&db.url, 2);
    let client = reqwest::Client::new();
    for (addr, _) in &servers {
        wait_ready(&client, *addr).await;
    }
    let base = format!("http://{}/api/v1/models", servers[0].0);
    client
        .post(&base)
        .json(&json!({"name": "m"}))
        .send()
        .await
        .unwrap();
    for _ in 0..17 {
        let r = client
            .post(format!("{base}/m/versions"))
            .json(&json!({"finalize": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = client
        .post(format!("{base}/m/stages/production/promote"))
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for round in 0..3 {
        let expected = if round == 0 {
            1
        } else {
            current(&client, &base).await
        };
        let tasks: Vec<_> = (2..=17)
            .map(|v| {
                let addr = servers[v as usize % 2].0;
                let req = client
                    .post(format!("http://{addr}/api/v1/models/m/stages/production/promote"))
                    .json(&json!({"version": v, "expected_version": expected, "reason": format!("round {round}")}));
                tokio::spawn(async move { into_resp(req.send().await.unwrap()).await })
            })
            .collect();
        let mut winners = vec![];
        for t in tasks {
            let r = t.await.unwrap();
            if r.status == 200 {
                winners.push(r.body["version"].as_i64().unwrap());
            } else if r.body["code"] != "stage_conflict" || r.status != 409 {
                panic!("unexpected answer: {} {}", r.status, r.body);
            }
        }
        // Exactly one change wins; the current version re-promoted is a no-op 200, not a change.
        let changes: Vec<i64> = winners.iter().copied().filter(|w| *w != expected).collect();
        assert_eq!(changes.len(), 1, "{winners:?}");
        let now = current(&client, &base).await;
        let history = client
            .get(format!("{base}/m/stages/production/history?limit=1"))
            .send()
            .await
            .unwrap();
        let history = into_resp(history).await;
        assert_eq!(
            history.ok(200)["items"][0]["to_version"],
            now,
            "history disagrees with the pointer"
        );
    }
    drop(servers);
    db.drop_db().await;
}

async fn current(client: &reqwest::Client, base: &str) -> i64 {
    let r = into_resp(
        client
            .get(format!("{base}/m/stages/production"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.ok(200)["version"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_holds_at_once_across_processes_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let root = cli_token(&db.url, &["--name", "root", "--scope", "admin"]);
    assert!(root.starts_with("mrt_"));
    let env = [("MODELREG_AUTH", "required"), ("RUST_LOG", "trace")];
    let (a, b) = (start_with(&db.url, &env), start_with(&db.url, &env));
    let client = reqwest::Client::new();
    for s in [&a, &b] {
        wait_ready(&client, s.addr).await;
    }
    let r = client
        .post(format!("http://{}/api/v1/tokens", a.addr))
        .bearer_auth(&root)
        .json(&json!({"name": "ci", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    let created = into_resp(r).await;
    let token = created.ok(201)["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    let on_b = || {
        client
            .get(format!("http://{}/api/v1/models", b.addr))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(on_b().await.unwrap().status(), 200);
    let r = client
        .delete(format!("http://{}/api/v1/tokens/{id}", a.addr))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        on_b().await.unwrap().status(),
        401,
        "the other process still accepts a revoked token"
    );

    // Nothing any of this logged contains a token, even at trace level. The random part is
    // everything after `mrt_<id>_`: it is base64url, so it may hold `_` itself.
    let secrets = [
        root.as_str(),
        token.as_str(),
        root.splitn(3, '_').nth(2).unwrap(),
        token.splitn(3, '_').nth(2).unwrap(),
    ];
    for server in [&a, &b] {
        let log = server.log.lock().unwrap();
        assert!(log.len() > 10, "the log was captured");
        for line in log.iter() {
            for s in secrets {
                assert!(!line.contains(s), "a token reached the log: {line}");
            }
        }
    }
    drop((a, b));
    db.drop_db().await;
}

#[test]
fn refuses_to_start_without_auth_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modelreg"))
            .arg("serve")
            .args(extra)
            .env("MODELREG_LISTEN", "0.0.0.0:0")
            .env("MODELREG_AUTH", "disabled")
            .env(
                "MODELREG_DATABASE_URL",
                format!("sqlite://{}/db.sqlite", dir.path().display()),
            )
            .env("MODELREG_ARTIFACTS_URL", "memory://")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run(&[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "refusing to listen on 0.0.0.0:0 on a non-loopback address without authentication"
        ),
        "{err}"
    );
    // Said in so many words, it starts.
    let mut child = run(&["--insecure-no-auth"]);
    let stderr = child.stderr.take().unwrap();
    let started = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("listening"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(started);
}

/// Passwords in a database URL, in the user info or the query string, never reach the log:
/// not at start-up, not in a connection error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_passwords_never_reach_the_log_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let secrets = ["userinfo-s3cret", "query-s3cret"];
    // Trust authentication ignores the passwords; the server starts and logs its URL.
    let (head, name) = db.url.rsplit_once('/').unwrap();
    let url = format!(
        "{}postgres:userinfo-s3cret@{}/{name}?password=query-s3cret",
        &head[..head.find("//").unwrap() + 2],
        head[head.find("//").unwrap() + 2..]
            .rsplit('@')
            .next()
            .unwrap()
    );
    let server = start_with(&url, &[]);
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("password=***")),
        "the URL is logged, redacted: {log:?}"
    );
    for line in &log {
        for s in secrets {
            assert!(!line.contains(s), "a password reached the log: {line}");
        }
    }
    drop(server);
    // A connection that fails: nothing listens on port 1.
    let out = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("migrate")
        .env(
            "MODELREG_DATABASE_URL",
            "postgres://u:userinfo-s3cret@127.0.0.1:1/db?password=query-s3cret",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
    for s in secrets {
        assert!(!err.contains(s), "a password reached the error: {err}");
    }
    db.drop_db().await;
}

/// Waits for the server, then makes model `m` with pending version 1.
async fn model_with_a_pending_version(server: &Server) {
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let base = format!("http://{}/api/v1/models", server.addr);
    for (url, body) in [
        (base.clone(), json!({"name": "m"})),
        (format!("{base}/m/versions"), json!({})),
    ] {
        let r = client.post(url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
}

/// SIGTERM: in-flight requests are answered, a client that stalls does not keep the process
/// past the shutdown deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_requests_and_exits_by_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/db.sqlite", dir.path().display());
    let mut server = start_with(
        &db,
        &[
            ("MODELREG_SHUTDOWN_TIMEOUT", "2s"),
            ("MODELREG_IDLE_TIMEOUT", "10m"),
            ("MODELREG_REQUEST_TIMEOUT", "10m"),
        ],
    );
    model_with_a_pending_version(&server).await;
    // An upload that stalls after its first bytes, forever.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"PUT /api/v1/models/m/versions/1/artifacts/a.bin HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\nabc")
        .await
        .unwrap();
    // A request in flight: its body is still on the way when the signal comes.
    let body = br#"{"name": "late"}"#;
    let mut in_flight = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    in_flight.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    in_flight.write_all(&body[5..]).await.unwrap();
    let mut reply = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        in_flight.read_to_string(&mut reply),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 201"),
        "in-flight request: {reply:?}"
    );

    let exited = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < std::time::Duration::from_secs(15),
            "still running {:?} after SIGTERM with a 2 s deadline",
            signalled.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("shutdown deadline reached"), "{log}");
    drop(stalled);
}

/// With authentication on, `/metrics` needs a token on the main address and none on the
/// separate metrics address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_prometheus_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/db.sqlite", dir.path().display());
    let server = start_with(
        &db,
        &[
            ("MODELREG_AUTH", "required"),
            ("MODELREG_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let metrics_addr = loop {
        let found = server.log.lock().unwrap().iter().find_map(|l| {
            l.contains("serving /metrics")
                .then(|| {
                    l.split("addr=")
                        .nth(1)?
                        .split_whitespace()
                        .next()
                        .map(str::to_owned)
                })
                .flatten()
        });
        if let Some(a) = found {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let main = client
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 401);
    let side = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(side.status(), 200);
    assert!(side.text().await.unwrap().contains("modelreg_build_info"));
    let other = client
        .get(format!("http://{metrics_addr}/api/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics is there");
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A register body whose config is about 1 MiB, built to be as costly as the limits allow: a
/// chain of 31 objects under 256-byte names, then tens of thousands of leaves whose values
/// differ per version. Written as text: building it as a `Value` is slow in a debug build.
fn costly_register_body(version: i64) -> String {
    let mut leaves = String::with_capacity(1 << 20);
    let mut i = 0;
    while leaves.len() < 900 << 10 {
        if i > 0 {
            leaves.push(',');
        }
        leaves.push_str(&format!("\"k{i}\":{}", version * 1_000_000 + i));
        i += 1;
    }
    let mut doc = format!("{{{leaves}}}");
    for level in 0..31 {
        doc = format!("{{\"{level:02}{}\":{doc}}}", "n".repeat(254));
    }
    format!("{{\"config\":{doc},\"finalize\":true}}")
}

/// Comparing versions with costly configs, listing versions with 1 MiB configs, and the
/// largest overlay stay within a fixed memory budget, whatever the configs' shape.
async fn memory_stays_bounded(db_url: &str) {
    let server = start(db_url);
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let base = format!("http://{}/api/v1/models", server.addr);
    let ok = |r: reqwest::Response| async move {
        let r = into_resp(r).await;
        assert!(r.status.is_success(), "{} {}", r.status, r.body);
        r
    };
    ok(client
        .post(&base)
        .json(&json!({"name": "m"}))
        .send()
        .await
        .unwrap())
    .await;
    for v in 1..=12 {
        let r = client
            .post(format!("{base}/m/versions"))
            .header("content-type", "application/json")
            .body(costly_register_body(v))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let idle = peak_rss_mib(server.child.id());
    // Ten costly configs compared: every leaf differs.
    let versions: Vec<String> = (1..=10).map(|v| v.to_string()).collect();
    let r = ok(client
        .get(format!("{base}/m/compare?versions={}", versions.join(",")))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(r.body["config"].as_array().unwrap().len(), 1000);
    assert_eq!(r.body["config_truncated"], true);
    // Every version, with its config, page by page.
    let mut cursor: Option<String> = None;
    let mut listed = 0;
    loop {
        let mut url = format!("{base}/m/versions?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = ok(client.get(url).send().await.unwrap()).await;
        listed += r.body["items"].as_array().unwrap().len();
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, 12);
    // The largest overlay: 20 versions × 10,000 raw points.
    let points: Vec<Value> = (0..10_000)
        .map(|s| json!({"key": "loss", "step": s, "value": s as f64 / 3.0}))
        .collect();
    let batch = json!({ "points": points });
    for v in 1..=20 {
        if v > 12 {
            ok(client
                .post(format!("{base}/m/versions"))
                .json(&json!({}))
                .send()
                .await
                .unwrap())
            .await;
        }
        ok(client
            .post(format!("{base}/m/versions/{v}/metrics"))
            .json(&batch)
            .send()
            .await
            .unwrap())
        .await;
    }
    let all: Vec<String> = (1..=20).map(|v| v.to_string()).collect();
    let r = ok(client
        .get(format!(
            "{base}/m/metrics/loss?versions={}&max_points=10000",
            all.join(",")
        ))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(
        r.body["series"][19]["points"].as_array().unwrap().len(),
        10_000
    );
    let peak = peak_rss_mib(server.child.id());
    eprintln!("peak RSS {peak:.0} MiB (after registering: {idle:.0} MiB)");
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    memory_stays_bounded(&format!("sqlite://{}/db.sqlite", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    memory_stays_bounded(&db.url).await;
    db.drop_db().await;
}

/// `kill -9` in the middle of an upload leaves a staging file (folder store) or an incomplete
/// multipart upload (S3) that no listing shows; `modelreg gc` finds and removes it.
async fn killed_upload_is_collected(kind: crate::blobs::Blobs) {
    use crate::blobs::{Blobs, start_blobs};
    use tokio::io::AsyncWriteExt;
    let blobs = start_blobs(kind).await;
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/db.sqlite", db_dir.path().display());
    let env: Vec<(&str, &str)> = blobs
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut server = start_with(&db, &env);
    model_with_a_pending_version(&server).await;

    // 20 MiB of a declared 64 MiB: two S3 parts, or a staging file, are written.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PUT /api/v1/models/m/versions/1/artifacts/weights.bin HTTP/1.1\r\nhost: localhost\r\ncontent-length: 67108864\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&vec![9u8; 20 << 20]).await.unwrap();
    let files = |dir: &std::path::Path| -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out
    };
    let in_progress = |f: &[String]| match kind {
        Blobs::Folder => f.iter().any(|n| n.contains('#')),
        Blobs::S3 => f.iter().any(|n| n.contains(".upload_id-")),
    };
    for _ in 0..200 {
        if in_progress(&files(blobs.dir.path())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        in_progress(&files(blobs.dir.path())),
        "{:?}",
        files(blobs.dir.path())
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(tcp);
    let left = files(blobs.dir.path());
    assert!(
        in_progress(&left),
        "the killed upload left its traces: {left:?}"
    );

    let gc = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .args(["gc", "--grace", "0s"])
        .env("MODELREG_DATABASE_URL", &db)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&gc.stdout);
    assert!(
        gc.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(out.contains("1 abandoned uploads deleted"), "{out}");
    let after = files(blobs.dir.path());
    assert!(!in_progress(&after), "{after:?}");
    match kind {
        Blobs::Folder => {
            assert!(after.is_empty(), "{after:?}");
            let folders: Vec<_> = std::fs::read_dir(blobs.dir.path()).unwrap().collect();
            assert!(folders.is_empty(), "empty folders are left: {folders:?}");
        }
        // The bucket keeps no marker either.
        Blobs::S3 => assert!(!after.iter().any(|f| f.contains(".uploads")), "{after:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upload_is_collected_folder() {
    killed_upload_is_collected(crate::blobs::Blobs::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upload_is_collected_s3() {
    killed_upload_is_collected(crate::blobs::Blobs::S3).await;
}

/// SIGTERM while four clients write as fast as they can: every request either gets its answer
/// or finds the door closed (never a 5xx, never a half answer), the process exits by its
/// deadline, and every write it acknowledged is there when the registry is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/db.sqlite", dir.path().display());
    let mut server = start_with(&db, &[("MODELREG_SHUTDOWN_TIMEOUT", "5s")]);
    let base = format!("http://{}", server.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (base, stop) = (base.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut acknowledged, mut refused, mut statuses) = (Vec::new(), 0, Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let name = format!("load-{c}-{n}");
                match client
                    .put(format!("{base}/api/v1/models/{name}"))
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => acknowledged.push(name),
                    Ok(r) => statuses.push(r.status().as_u16()),
                    Err(_) => {
                        refused += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
            (acknowledged, refused, statuses)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let signalled = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let exited = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < std::time::Duration::from_secs(15),
            "still running {:?} after SIGTERM with a 5 s deadline",
            signalled.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for c in clients {
        let (a, r, statuses) = c.await.unwrap();
        assert!(statuses.is_empty(), "answers other than 201: {statuses:?}");
        acknowledged.extend(a);
        refused += r;
    }
    eprintln!(
        "{} writes acknowledged, {refused} refused after the signal",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > 20,
        "the load ran: {}",
        acknowledged.len()
    );

    let again = start(&db);
    let client = reqwest::Client::new();
    for name in &acknowledged {
        let r = client
            .get(format!("http://{}/api/v1/models/{name}", again.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged {name} is missing");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("verify")
        .env("MODELREG_DATABASE_URL", &db)
        .env("MODELREG_ARTIFACTS_URL", "memory://")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// 1,030 connections that send nothing, past the default cap of 1,024: a health check on a
/// new connection is still answered at once (the longest-idle connection gives way), and the
/// silent ones are closed after the first-byte timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_every_slot_sqlite() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = start_with(&db.url, &[("MODELREG_FIRST_BYTE_TIMEOUT", "3s")]);
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let mut silent = Vec::new();
    for _ in 0..1030 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let quick = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = quick
            .get(format!("http://{}/readyz", server.addr))
            .send()
            .await
            .expect("/readyz answered within 2 s beside 1,030 idle connections");
        assert_eq!(r.status(), 200);
    }
    // Every silent connection is closed within the first-byte timeout (and some before).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for tcp in &mut silent {
        let mut buf = [0u8; 1];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let read = tokio::time::timeout(left, tokio::io::AsyncReadExt::read(tcp, &mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a silent connection was left open: {read:?}"
        );
    }
    drop(server);
}

/// A TLS certificate that does not load stops the server before it says it listens.
#[test]
fn a_bad_certificate_stops_the_start_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("serve")
        .env("MODELREG_LISTEN", "127.0.0.1:0")
        .env(
            "MODELREG_DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .env("MODELREG_ARTIFACTS_URL", "memory://")
        .env("MODELREG_AUTH", "required")
        .env("MODELREG_TLS_CERT", &cert)
        .env("MODELREG_TLS_KEY", &key)
        .env("RUST_LOG", "info")
        .output()
        .expect("run modelreg serve");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("TLS certificate"), "{log}");
    assert!(!log.contains("listening"), "said it listens: {log}");
}
