//! Two `modelreg serve` processes on one Postgres database.

use crate::helpers::{Backend, TestDb, into_resp, wait_ready};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port and reads the bound address from its log.
fn start(db_url: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("serve")
        .env("MODELREG_LISTEN", "127.0.0.1:0")
        .env("MODELREG_DATABASE_URL", db_url)
        .env("MODELREG_ARTIFACTS_URL", "memory://")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start modelreg");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read log");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("address")
                .parse()
                .expect("socket address");
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

pub(crate) fn start_servers(db_url: &str, n: usize) -> Vec<(SocketAddr, impl Drop)> {
    (0..n).map(|_| start(db_url)).map(|s| (s.addr, s)).collect()
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
