//! Webhook dispatchers in several `modelreg serve` processes on one Postgres database: they
//! share the queue, each attempt is made by one of them, and a process killed mid-attempt
//! leaves its delivery to another once its lease runs out. Also: no secret in any log line.

use crate::helpers::{Backend, TestDb, into_resp, wait_ready};
use crate::processes::{Server, cli_token, start_with};
use crate::receiver::{HANG, Receiver};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const ALLOW: (&str, &str) = ("MODELREG_WEBHOOK_ALLOW_PRIVATE", "true");

async fn post(client: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let r = client
        .post(format!("http://{}{path}", server.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    into_resp(r).await.body
}

fn attempts_logged(server: &Server) -> usize {
    let log = server.log.lock().unwrap();
    log.iter().filter(|l| l.contains("webhook attempt")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_deliveries_none_twice_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let servers = [start_with(&db.url, &[ALLOW]), start_with(&db.url, &[ALLOW])];
    let client = reqwest::Client::new();
    for s in &servers {
        wait_ready(&client, s.addr).await;
    }
    let receiver = Receiver::start().await;
    let body = json!({"url": receiver.url(), "events": ["stage.promoted"]});
    post(&client, &servers[0], "/api/v1/webhooks", body).await;
    let models: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for m in &models {
        post(&client, &servers[0], "/api/v1/models", json!({"name": m})).await;
        for _ in 0..20 {
            let path = format!("/api/v1/models/{m}/versions");
            post(&client, &servers[1], &path, json!({"finalize": true})).await;
        }
    }
    // 200 promotes, 8 at a time, through both processes.
    let mut tasks = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let (client, addr) = (client.clone(), servers[i % 2].addr);
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for v in 1..=20 {
                let url = format!("http://{addr}/api/v1/models/{m}/stages/production/promote");
                let r = client
                    .post(url)
                    .json(&json!({"version": v}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    receiver.wait_for(200).await;
    let got = receiver.settle(200, Duration::from_secs(1)).await;
    let ids: BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 200, "a delivery was made twice");
    let mut order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &got {
        let data = r.json()["data"].clone();
        order
            .entry(data["model"].as_str().unwrap().to_owned())
            .or_default()
            .push(data["to_version"].as_i64().unwrap());
    }
    for (m, versions) in order {
        assert_eq!(
            versions,
            (1..=20).collect::<Vec<_>>(),
            "model {m} out of order"
        );
    }
    let shares = [attempts_logged(&servers[0]), attempts_logged(&servers[1])];
    assert_eq!(shares[0] + shares[1], 200, "{shares:?}");
    assert!(
        shares.iter().all(|&n| n > 0),
        "both processes deliver: {shares:?}"
    );
    drop(servers);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_attempt_the_other_delivers_after_the_lease_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let timeout = ("MODELREG_WEBHOOK_TIMEOUT", "2s");
    let mut first = start_with(&db.url, &[ALLOW, timeout]);
    let client = reqwest::Client::new();
    wait_ready(&client, first.addr).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[HANG]);
    let body = json!({"url": receiver.url(), "events": ["webhook.ping"]});
    let id = post(&client, &first, "/api/v1/webhooks", body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = post(
        &client,
        &first,
        &format!("/api/v1/webhooks/{id}/ping"),
        json!({}),
    )
    .await;
    // The first process is mid-attempt (the receiver does not answer): kill it.
    receiver.wait_for(1).await;
    let second = start_with(&db.url, &[ALLOW, timeout]);
    wait_ready(&client, second.addr).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].id, got[0].id, "the same webhook-id again");
    assert_eq!(got[1].id, queued["delivery_id"].to_string());
    // Not before the lease (twice the timeout and 5 s from the claim) ran out.
    assert!(
        killed.elapsed() >= Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    // The outcome is recorded just after the answer arrives.
    let mut log = Value::Null;
    for _ in 0..100 {
        let url = format!("http://{}/api/v1/webhooks/{id}/deliveries", second.addr);
        log = into_resp(client.get(url).send().await.unwrap()).await.body;
        if log["items"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log["items"][0]["status"], "succeeded", "{log}");
    assert_eq!(
        log["items"][0]["attempts"], 1,
        "the killed attempt was never recorded"
    );
    assert_eq!(attempts_logged(&second), 1);
    receiver.settle(2, Duration::from_millis(500)).await;
    drop(second);
    db.drop_db().await;
}

/// Secrets (webhook signing secrets, tokens) never reach the log, at the most verbose level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let root = cli_token(&db.url, &["--name", "root", "--scope", "admin"]);
    let server = start_with(
        &db.url,
        &[ALLOW, ("MODELREG_AUTH", "required"), ("RUST_LOG", "trace")],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500]);
    let call = |method: reqwest::Method, path: String| {
        client
            .request(method, format!("http://{}{path}", server.addr))
            .bearer_auth(&root)
    };
    let r = call(reqwest::Method::POST, "/api/v1/webhooks".into())
        .json(&json!({"url": receiver.url()}))
        .send()
        .await
        .unwrap();
    let created = into_resp(r).await.body;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![created["secret"].as_str().unwrap().to_owned(), root.clone()];
    let r = call(
        reqwest::Method::POST,
        format!("/api/v1/webhooks/{id}/rotate-secret"),
    )
    .send()
    .await
    .unwrap();
    secrets.push(
        into_resp(r).await.body["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    call(reqwest::Method::POST, format!("/api/v1/webhooks/{id}/ping"))
        .send()
        .await
        .unwrap();
    receiver.wait_for(2).await;
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("webhook attempt")),
        "attempts are logged"
    );
    for line in &log {
        for s in &secrets {
            // The secret part of each (after its prefix), so a prefix alone cannot match.
            let tail = &s[s.len() - 20..];
            assert!(!line.contains(tail), "a secret reached the log: {line}");
        }
        assert!(
            !line.contains("whsec_"),
            "a signing secret reached the log: {line}"
        );
        assert!(!line.contains("v1,"), "a signature reached the log: {line}");
    }
    drop(server);
    db.drop_db().await;
}

/// A receiver that accepts connections and never reads or answers: every attempt to it lasts
/// the whole timeout. Counts the connections it was sent.
struct BlackHole {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One healthy receiver beside 50 webhooks whose receivers never answer, on three models:
/// the black holes take their own lane and their own share, and the healthy webhook's
/// deliveries arrive within 2 s of each change (p99), from the first event on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_webhooks_delay_only_themselves_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let server = start_with(&db.url, &[ALLOW]);
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let hole = BlackHole::start().await;
    for i in 0..50 {
        let url = format!("http://{}/hole/{i}", hole.addr);
        let r = post(
            &client,
            &server,
            "/api/v1/webhooks",
            json!({"url": url, "events": ["stage.*"]}),
        )
        .await;
        assert!(r["id"].is_string(), "{r}");
    }
    let healthy = Receiver::start().await;
    let body = json!({"url": healthy.url(), "events": ["stage.*"]});
    post(&client, &server, "/api/v1/webhooks", body).await;
    let models = ["m0", "m1", "m2"];
    for m in models {
        post(&client, &server, "/api/v1/models", json!({"name": m})).await;
        for _ in 0..10 {
            let path = format!("/api/v1/models/{m}/versions");
            post(&client, &server, &path, json!({"finalize": true})).await;
        }
    }
    // 30 promotes over about 9 s, while the black holes hold their attempts 10 s each.
    let mut promoted = BTreeMap::new();
    for v in 1..=10 {
        for m in models {
            let path = format!("/api/v1/models/{m}/stages/production/promote");
            let r = post(&client, &server, &path, json!({"version": v})).await;
            assert_eq!(r["version"], v, "{r}");
            promoted.insert((m.to_owned(), v), std::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let got = healthy.wait_for(30).await;
    let mut latencies: Vec<Duration> = got
        .iter()
        .map(|r| {
            let data = r.json()["data"].clone();
            let key = (
                data["model"].as_str().unwrap().to_owned(),
                data["to_version"].as_i64().unwrap(),
            );
            r.at.saturating_duration_since(promoted[&key])
        })
        .collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    assert!(
        p99 < Duration::from_secs(2),
        "the healthy webhook's p99 delivery latency was {p99:?} ({latencies:?})"
    );
    assert!(
        hole.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 50,
        "every black hole was tried"
    );
    drop(server);
    db.drop_db().await;
}

/// The SSRF guard holds with a proxy in the environment: the webhook client never uses
/// `HTTP(S)_PROXY`, so a name that does not resolve to a public address is not delivered
/// through a proxy that would resolve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_settings_do_not_bypass_the_address_check_sqlite() {
    let db = TestDb::create(Backend::Sqlite).await;
    let proxy = BlackHole::start().await;
    let proxy_url = format!("http://{}", proxy.addr);
    let server = start_with(
        &db.url,
        &[
            ("HTTP_PROXY", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("MODELREG_WEBHOOK_TIMEOUT", "2s"),
        ],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, server.addr).await;
    let body = json!({"url": "http://internal-only.invalid/hook", "events": ["webhook.ping"]});
    let w = post(&client, &server, "/api/v1/webhooks", body).await;
    let id = w["id"].as_str().expect("a webhook").to_owned();
    post(
        &client,
        &server,
        &format!("/api/v1/webhooks/{id}/ping"),
        json!({}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while attempts_logged(&server) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(attempts_logged(&server) > 0, "the ping was attempted");
    assert_eq!(
        proxy.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the webhook went through the proxy"
    );
    drop(server);
}
