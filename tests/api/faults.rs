//! Faults under load: the database goes away in the middle of mixed writes and comes back.
//! Every write acknowledged with a 2xx is there afterwards, the outage answers 503 (never
//! 500), the server recovers by itself, and `verify` finds the registry sound.

use crate::cluster::Cluster;
use crate::helpers::TestApp;
use modelreg::blob::BlobStore;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the load saw, and what it was told was written.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, usize>,
    /// Versions whose registration was acknowledged.
    versions: Vec<i64>,
    /// `(version, step)` of acknowledged metric batches (one point each).
    points: Vec<(i64, i64)>,
    /// Event ids of acknowledged promotes.
    promotes: Vec<i64>,
}

/// Every item of a paginated list.
async fn all(app: &TestApp, path: &str) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = match &cursor {
            Some(c) => app.get(&format!("{path}{sep}limit=1000&cursor={c}")).await,
            None => app.get(&format!("{path}{sep}limit=1000")).await,
        };
        let body = page.ok(200);
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_write_load_loses_nothing_acknowledged() {
    let cluster = Cluster::init("", &[]);
    cluster.write_hba("host all all 127.0.0.1/32 trust\nlocal all all trust\n");
    cluster.start();
    let url = cluster.url("");
    let folder = tempfile::tempdir().unwrap();
    let blobs = BlobStore::from_url(&format!("file://{}", folder.path().display())).unwrap();
    let app = Arc::new(TestApp::spawn_with(url, |_| {}, Some(blobs)).await);
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    app.post("/api/v1/models/m/versions", json!({"finalize": true}))
        .await
        .ok(201);
    app.post("/api/v1/models/m/versions", json!({"finalize": true}))
        .await
        .ok(201);

    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(9);
    let mut workers = Vec::new();
    for worker in 0..4i64 {
        let (app, tally) = (app.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut step = worker * 1_000_000;
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                step += 1;
                let r = match n % 3 {
                    0 => {
                        app.post("/api/v1/models/m/versions", json!({"finalize": true}))
                            .await
                    }
                    1 => {
                        let point = json!({"key": "loss", "step": step, "value": 0.5});
                        app.post(
                            "/api/v1/models/m/versions/1/metrics",
                            json!({"points": [point]}),
                        )
                        .await
                    }
                    _ => {
                        let v = 1 + (n / 3) as i64 % 2;
                        let body = json!({"version": v});
                        app.post("/api/v1/models/m/stages/production/promote", body)
                            .await
                    }
                };
                {
                    let mut t = tally.lock().unwrap();
                    *t.statuses.entry(r.status.as_u16()).or_default() += 1;
                    if r.status.is_success() {
                        match n % 3 {
                            0 => t.versions.push(r.body["version"].as_i64().unwrap()),
                            1 => t.points.push((1, step)),
                            _ => t.promotes.extend(r.body["event_id"].as_i64()),
                        }
                    }
                }
                if !r.status.is_success() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Down for two seconds in the middle of the load, as a crash or a failover would be.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.stop());
    let down = Instant::now();
    // Readiness sees the outage whatever the load's requests were doing at the stop (those
    // in flight answer 503; those that wait for a connection may outlast it and succeed).
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status, 503,
        "readiness during the outage: {}",
        ready.body
    );
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down.elapsed())).await;
    tokio::task::block_in_place(|| cluster.start());
    for w in workers {
        w.await.unwrap();
    }

    let ready = app.wait_ready().await;
    assert!(ready, "ready again without a restart of modelreg");
    let t = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!("statuses during the load: {:?}", t.statuses);
    let unexpected: Vec<_> = t
        .statuses
        .keys()
        .filter(|s| !matches!(s, 200 | 201 | 503))
        .collect();
    assert!(unexpected.is_empty(), "{:?}", t.statuses);
    assert!(t.versions.len() > 10 && t.points.len() > 10 && t.promotes.len() > 10);

    for v in &t.versions {
        app.get(&format!("/api/v1/models/m/versions/{v}"))
            .await
            .ok(200);
    }
    let latest = app.get("/api/v1/models/m").await;
    let latest = latest.ok(200)["latest_version"].as_i64().unwrap();
    assert_eq!(
        all(&app, "/api/v1/models/m/versions").await.len() as i64,
        latest,
        "gapless: every number up to the latest is a version"
    );
    let series = app
        .get("/api/v1/models/m/versions/1/metrics/loss?from_step=0")
        .await;
    let stored: std::collections::HashSet<i64> = series.ok(200)["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    for (_, step) in &t.points {
        assert!(
            stored.contains(step),
            "acknowledged point at step {step} is missing"
        );
    }
    let recorded: std::collections::HashSet<i64> =
        all(&app, "/api/v1/models/m/stages/production/history")
            .await
            .iter()
            .map(|e| e["event_id"].as_i64().unwrap())
            .collect();
    for id in &t.promotes {
        assert!(
            recorded.contains(id),
            "acknowledged promote (event {id}) is missing"
        );
    }
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// The S3 server goes away while idle and in the middle of an upload. Artifact calls answer
/// 503 while it is away (everything else keeps working), the interrupted upload records
/// nothing, and once it is back uploads work again without a restart of modelreg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_idle_and_mid_upload() {
    use crate::blobs::{Blobs, start_blobs};
    use crate::helpers::TestDb;
    let db = TestDb::create(crate::helpers::Backend::Sqlite).await;
    let mut s3 = start_blobs(Blobs::S3).await;
    let app = TestApp::spawn_with(db.url.clone(), |_| {}, Some(s3.blobs.clone())).await;
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    app.post("/api/v1/models/m/versions", json!({}))
        .await
        .ok(201);
    let upload = |path: &str, body: reqwest::Body| {
        let url = app.url(&format!("/api/v1/models/m/versions/1/artifacts/{path}"));
        app.client.put(url).body(body)
    };

    // Idle: the store is away before the request.
    let server = s3.server.as_mut().unwrap();
    server.stop();
    let r = app.send(upload("idle.bin", reqwest::Body::from("x"))).await;
    r.problem(503, "artifact_store_unavailable");
    app.get("/api/v1/models/m/versions/1").await.ok(200);
    assert_eq!(app.get("/readyz").await.status, 503);
    server.restart().await;
    let back = app.wait_ready().await;
    assert!(back, "ready again once the store is back");
    app.send(upload("idle.bin", reqwest::Body::from("x")))
        .await
        .ok(201);

    // Mid-upload: 24 MiB in 1 MiB chunks; the store goes away after the eighth.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = tokio::spawn(upload("big.bin", body).send());
    for i in 0..24 {
        if i == 8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            s3.server.as_ref().unwrap().stop();
        }
        if tx.send(Ok(vec![7u8; 1 << 20])).await.is_err() {
            break; // the server stopped reading: it has answered
        }
    }
    drop(tx);
    let answer = crate::helpers::into_resp(request.await.unwrap().unwrap()).await;
    answer.problem(503, "artifact_store_unavailable");
    s3.server.as_mut().unwrap().restart().await;
    assert!(app.wait_ready().await, "ready again once the store is back");
    // Nothing of the interrupted upload is recorded; the path is free for a retry.
    app.get("/api/v1/models/m/versions/1/artifacts/big.bin")
        .await
        .problem(404, "artifact_not_found");
    app.send(upload("big.bin", reqwest::Body::from(vec![7u8; 1 << 20])))
        .await
        .ok(201);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.artifacts_checked, 2);
    app.stop().await;
    db.drop_db().await;
}
