//! Read replicas, with a primary and a streaming replica the test owns (`initdb`,
//! `pg_basebackup -R`, ports of their own): a write followed by a read that sends back its
//! `Modelreg-Consistency` token sees the write while replay is paused on the replica (the
//! primary serves it) and after replay resumes (the replica serves it); without the token a
//! lagging replica is skipped; a replica stopped under read load costs no 5xx; a replica
//! promoted away from the primary serves nothing more.

use crate::cluster::Cluster;
use crate::helpers::TestApp;
use serde_json::{Value, json};
use sqlx::Connection;
use std::time::{Duration, Instant};

const CONSISTENCY: &str = "modelreg-consistency";

/// A primary, a replica following it, and a server reading from both that skips the
/// replica when it is more than `max_lag` behind.
async fn setup(max_lag: Duration) -> (Cluster, Cluster, TestApp) {
    let primary = Cluster::init("", &[]);
    primary.start();
    let replica = Cluster::replica_of(&primary);
    replica.start();
    let read_url = replica.url("");
    let app = TestApp::spawn(primary.url(""), |c| {
        c.database.read_urls = vec![read_url];
        c.database.replica_max_lag = max_lag;
    })
    .await;
    wait_state(&app, "ok", Duration::from_secs(20)).await;
    (primary, replica, app)
}

async fn replica_status(app: &TestApp) -> Value {
    let r = app.get("/readyz").await;
    r.ok(200)["replicas"][0].clone()
}

async fn wait_state(app: &TestApp, state: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let s = replica_status(app).await;
        if s["state"] == state {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "the replica is not {state} after {limit:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the replica served, and reads that fell back to the primary (from `/readyz`: the
/// `/metrics` registry is shared by every server of the test process).
async fn served(app: &TestApp) -> (u64, u64) {
    let r = app.get("/readyz").await;
    let body = r.ok(200);
    (
        body["replicas"][0]["reads"].as_u64().unwrap(),
        body["replica_reads_on_primary"].as_u64().unwrap(),
    )
}

async fn sql(url: &str, statement: &'static str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(statement).execute(&mut conn).await.unwrap();
}

/// A request as another caller (its own credentials: auth is off, but callers are still told
/// apart by them), optionally sending a consistency token back.
fn as_reader(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let req = app.client.get(app.url(path)).bearer_auth("reader");
    match token {
        Some(t) => req.header(CONSISTENCY, t),
        None => req,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_token_sees_the_write() {
    let (_primary, replica, app) = setup(Duration::from_secs(1)).await;
    let r = app.post("/api/v1/models", json!({"name": "m"})).await;
    r.ok(201);
    assert!(
        r.headers.get(CONSISTENCY).is_some(),
        "a write answers its position"
    );
    // Replicated and within the lag: another caller's read is the replica's (as soon as the
    // replica has the model: until then it answers 404, or the primary serves the read).
    let started = Instant::now();
    loop {
        let (before, _) = served(&app).await;
        let r = app.send(as_reader(&app, "/api/v1/models/m", None)).await;
        if r.status == 200 && served(&app).await.0 == before + 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never served the read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Replay paused: the replica keeps answering, but without the new version.
    sql(&replica.url(""), "select pg_wal_replay_pause()").await;
    let r = app.post("/api/v1/models/m/versions", json!({})).await;
    let token = r.headers[CONSISTENCY].to_str().unwrap().to_owned();
    let version = r.ok(201)["version"].as_i64().unwrap();
    let (replica_before, primary_before) = served(&app).await;
    let path = format!("/api/v1/models/m/versions/{version}");
    let r = app.send(as_reader(&app, &path, Some(&token))).await;
    assert_eq!(
        r.ok(200)["version"],
        version,
        "read-your-writes through the token"
    );
    // The writer itself, without the header: the server remembers its last write.
    app.get(&path).await.ok(200);
    let (replica_after, primary_after) = served(&app).await;
    assert_eq!(
        replica_after, replica_before,
        "the paused replica served neither"
    );
    assert_eq!(primary_after, primary_before + 2);
    // A malformed token is not an error: the primary has everything.
    app.send(as_reader(&app, &path, Some("not-a-position")))
        .await
        .ok(200);

    // Without a token: once its lag passes the limit, the replica is skipped altogether.
    for _ in 0..5 {
        app.post("/api/v1/models/m/versions", json!({}))
            .await
            .ok(201);
    }
    let lagging = wait_state(&app, "lagging", Duration::from_secs(5)).await;
    assert!(lagging["lag_seconds"].as_f64().unwrap() > 1.0, "{lagging}");
    let (replica_before, _) = served(&app).await;
    let r = app
        .send(as_reader(&app, "/api/v1/models/m/versions", None))
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 6);
    assert_eq!(served(&app).await.0, replica_before);

    // Replay resumed: the replica catches up and serves the token's read itself.
    sql(&replica.url(""), "select pg_wal_replay_resume()").await;
    wait_state(&app, "ok", Duration::from_secs(10)).await;
    let (replica_before, _) = served(&app).await;
    let r = app.send(as_reader(&app, &path, Some(&token))).await;
    assert_eq!(r.ok(200)["version"], version);
    assert_eq!(served(&app).await.0, replica_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_goes_away_costs_no_error() {
    // A lag limit the replica never reaches, even on a loaded machine: it serves until it stops.
    let (_primary, replica, app) = setup(Duration::from_secs(30)).await;
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    for _ in 0..3 {
        app.post("/api/v1/models/m/versions", json!({"finalize": true}))
            .await
            .ok(201);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Readers for 3 s; the replica is stopped (immediately, as a crash) after the first.
    let stop_at = Instant::now() + Duration::from_secs(1);
    let end = Instant::now() + Duration::from_secs(3);
    let mut readers = Vec::new();
    for _ in 0..4 {
        let client = app.client.clone();
        let url = app.url("/api/v1/models/m/versions/2");
        readers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < end {
                let r = client.get(&url).bearer_auth("reader").send().await;
                statuses.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    let (served_before_stop, _) = served(&app).await;
    replica.stop();
    let mut statuses = Vec::new();
    for r in readers {
        statuses.extend(r.await.unwrap());
    }
    let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of {} reads failed: {bad:?}",
        bad.len(),
        statuses.len()
    );
    assert!(
        served_before_stop > 0,
        "the replica served reads before it stopped"
    );
    wait_state(&app, "down", Duration::from_secs(5)).await;
    let r = app.get("/readyz").await;
    assert_eq!(
        r.ok(200)["status"],
        "ready",
        "a replica never makes the server unready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_serves_nothing_more() {
    let (_primary, replica, app) = setup(Duration::from_secs(30)).await;
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    replica.promote();
    wait_state(&app, "promoted", Duration::from_secs(10)).await;
    // Writes on the old primary, reads go on from it.
    app.post("/api/v1/models/m/versions", json!({}))
        .await
        .ok(201);
    let (replica_before, _) = served(&app).await;
    let r = app
        .send(as_reader(&app, "/api/v1/models/m/versions", None))
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(served(&app).await.0, replica_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_agent_reads_what_the_stage_holds() {
    let (_primary, replica, app) = setup(Duration::from_secs(30)).await;
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Registered, uploaded and promoted while the replica replays nothing.
    sql(&replica.url(""), "select pg_wal_replay_pause()").await;
    let v = app.version("m", json!({})).await;
    app.send(
        app.client
            .put(app.url(&format!(
                "/api/v1/models/m/versions/{v}/artifacts/model.txt"
            )))
            .body("weights"),
    )
    .await
    .ok(201);
    app.post_empty(&format!("/api/v1/models/m/versions/{v}/finalize"))
        .await
        .ok(200);
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": v}),
    )
    .await
    .ok(200);
    // A fresh agent: the stage (read on the primary) answers its position, which the agent
    // sends back when it lists and fetches the files, so the paused replica is not asked.
    let (_keep, dir) = crate::cli_support::scratch();
    let dest = dir.join("serve");
    let cli = crate::cli_support::Cli::at(format!("http://{}", app.addr), Some("agent".into()));
    let out = cli
        .run(&["sync", "m@production", dest.to_str().unwrap(), "--once"])
        .await;
    out.code(0);
    assert_eq!(
        std::fs::read_to_string(dest.join("current/model.txt")).unwrap(),
        "weights"
    );
    sql(&replica.url(""), "select pg_wal_replay_resume()").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_searches_read_their_own_writes() {
    let (_primary, replica, app) = setup(Duration::from_secs(30)).await;
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "sweep"}),
        )
        .await;
    let experiment = r.ok(200)["experiment_id"].as_str().unwrap().to_owned();
    let search = json!({"experiment_ids": [experiment]});
    // Another caller's search, once the replica has the experiment, is the replica's.
    let started = Instant::now();
    loop {
        let (before, _) = served(&app).await;
        let r = app
            .send(
                app.client
                    .post(app.url("/api/2.0/mlflow/runs/search"))
                    .bearer_auth("reader")
                    .json(&search),
            )
            .await;
        // A search reads a few times (the experiment, the page, the runs' models).
        if r.status == 200 && served(&app).await.0 > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never served the search"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // MLflow's client knows no header: its search right after its write still finds the run.
    sql(&replica.url(""), "select pg_wal_replay_pause()").await;
    let r = app
        .post(
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": experiment, "start_time": 1}),
        )
        .await;
    let run = r.ok(200)["run"]["info"]["run_id"].clone();
    let r = app
        .post("/api/2.0/mlflow/runs/search", search.clone())
        .await;
    let runs = r.ok(200)["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["info"]["run_id"], run);
    sql(&replica.url(""), "select pg_wal_replay_resume()").await;
}
