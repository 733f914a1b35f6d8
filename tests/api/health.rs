use crate::helpers::{Backend, TestApp, TestDb};

crate::backend_tests!(health_and_readiness, prometheus_metrics_count_the_workload);

async fn prometheus_metrics_count_the_workload(app: &TestApp) {
    app.model("m").await;
    app.version("m", serde_json::json!({})).await;
    let points = serde_json::json!({"points": [{"key": "loss", "step": 1, "value": 0.5}, {"key": "loss", "step": 2, "value": 0.4}]});
    app.post("/api/v1/models/m/versions/1/metrics", points)
        .await
        .ok(200);
    let r = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(r.status, 200);
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |needle: &str| -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value(r#"modelreg_http_requests_total{method="POST",route="/api/v1/models",status="201"}"#)
            >= 1.0,
        "{text}"
    );
    assert!(
        value(r#"route="/api/v1/models/{model}/versions",status="201""#) >= 1.0,
        "{text}"
    );
    assert!(
        value("modelreg_http_request_duration_seconds_count") >= 3.0,
        "{text}"
    );
    assert!(
        value("modelreg_metric_points_ingested_total") >= 2.0,
        "{text}"
    );
    assert!(
        text.contains("modelreg_db_connections{state=\"idle\"}"),
        "{text}"
    );
    assert!(text.contains("modelreg_build_info"), "{text}");
}

async fn health_and_readiness(app: &TestApp) {
    let r = app.get("/healthz").await;
    assert_eq!(r.ok(200)["status"], "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.ok(200)["checks"]["database"], "ok");
    assert!(r.headers.contains_key("x-request-id"));
}

/// Postgres only: the embedded SQLite file cannot go away from under a running process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let app = TestApp::spawn(db.url.clone(), |_| {}).await;
    app.model("m").await;

    // Take the database away: refuse new connections and end the open ones.
    db.admin(format!(
        "alter database {} allow_connections false",
        db.name
    ))
    .await;
    db.admin(format!(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'",
        db.name
    ))
    .await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_ne!(r.body["checks"]["database"], "ok");
    let r = app.get("/api/v1/models/m").await;
    r.problem(503, "service_unavailable");
    assert!(
        !r.body["detail"].as_str().unwrap().contains("accepting"),
        "internals leaked: {}",
        r.body
    );

    // Bring it back: the pool reconnects.
    db.admin(format!("alter database {} allow_connections true", db.name))
        .await;
    let ready = app.wait_ready().await;
    assert!(ready, "readyz did not recover");
    app.get("/api/v1/models/m").await.ok(200);
    app.stop().await;
    db.drop_db().await;
}
