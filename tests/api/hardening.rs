//! Inputs that once made the server answer 5xx: each is a clear 4xx now, on both backends, and
//! the server stays healthy after it.

use crate::helpers::{Resp, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

crate::backend_tests!(
    nul_characters_are_refused_everywhere,
    rollup_arithmetic_never_overflows,
    configs_and_sources_are_bounded,
);

/// Sends a JSON body as given (with `\u0000` escapes in it).
async fn send_json(app: &TestApp, method: Method, path: &str, body: &str) -> Resp {
    app.send(
        app.client
            .request(method, app.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn healthy(app: &TestApp) {
    app.get("/readyz").await.ok(200);
    app.get("/api/v1/models?limit=1").await.ok(200);
}

async fn nul_characters_are_refused_everywhere(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"finalize": true})).await;
    app.version("m", json!({})).await;
    let before = app.get("/api/v1/events?limit=1000").await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();

    // Query parameters: 400 naming the parameter.
    for (path, field) in [
        ("/api/v1/models?q=%00", "q"),
        ("/api/v1/models?q=a%00b", "q"),
        ("/api/v1/models?tag=k:%00", "tag"),
        ("/api/v1/models?tag=k%00:v", "tag"),
        ("/api/v1/events?model=%00", "model"),
        ("/api/v1/events?action=stage.%00", "action"),
        ("/api/v1/models/m/versions?tag=k:%00", "tag"),
        (
            "/api/v1/models/m/versions?filter=tag.ds%20%3D%20%22%00%22",
            "filter",
        ),
        (
            "/api/v1/models/m/versions?filter=config.%00%20%3D%201",
            "filter",
        ),
        ("/api/v1/models/m/versions?order_by=metric.%00", "order_by"),
        ("/api/v1/models/m/stages/production?at=%00", "at"),
        ("/api/v1/models/m/metrics/loss?versions=1%00", "versions"),
    ] {
        let r = app.get(path).await;
        assert_eq!(
            r.problem(400, "invalid_query_parameter")["field"],
            field,
            "{path}"
        );
    }
    // A cursor that decodes to a NUL character is not one of ours.
    let cursor = base64_url("m:a\u{0}b");
    app.get(&format!("/api/v1/models?cursor={cursor}"))
        .await
        .problem(400, "invalid_cursor");
    app.send(
        app.client
            .delete(app.url("/api/v1/models/m/stages/production"))
            .query(&[("reason", "a\u{0}")]),
    )
    .await
    .problem(400, "invalid_query_parameter");

    // JSON bodies: 422 naming the field, in keys and values, at any depth.
    let nul = r"\u0000";
    for (method, path, body, field) in [
        (
            Method::POST,
            "/api/v1/models",
            format!(r#"{{"name": "n", "description": "a{nul}"}}"#),
            "description".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models",
            format!(r#"{{"name": "n", "tags": {{"k": "v{nul}"}}}}"#),
            "tags.k".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models",
            format!(r#"{{"name": "n", "tags": {{"k{nul}": "v"}}}}"#),
            format!("tags.k{nul}"),
        ),
        (
            Method::PUT,
            "/api/v1/models/n",
            format!(r#"{{"description": "{nul}"}}"#),
            "description".to_owned(),
        ),
        (
            Method::PATCH,
            "/api/v1/models/m",
            format!(r#"{{"tags": {{"a": "{nul}"}}}}"#),
            "tags.a".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions",
            format!(r#"{{"config": {{"lr": "{nul}"}}}}"#),
            "config.lr".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions",
            format!(r#"{{"config": {{"a": {{"b{nul}": 1}}}}}}"#),
            format!("config.a.b{nul}"),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions",
            format!(r#"{{"config": {{"l": [1, "{nul}"]}}}}"#),
            "config.l[1]".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions",
            format!(r#"{{"source": {{"git": "{nul}"}}}}"#),
            "source.git".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions",
            format!(r#"{{"description": "{nul}"}}"#),
            "description".to_owned(),
        ),
        (
            Method::PATCH,
            "/api/v1/models/m/versions/1",
            format!(r#"{{"description": "x{nul}"}}"#),
            "description".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/2/fail",
            format!(r#"{{"reason": "{nul}"}}"#),
            "reason".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/stages/production/promote",
            format!(r#"{{"version": 1, "reason": "{nul}"}}"#),
            "reason".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/stages/production/rollback",
            format!(r#"{{"reason": "{nul}"}}"#),
            "reason".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/1/metrics",
            format!(r#"{{"points": [{{"key": "a{nul}", "step": 1, "value": 1}}]}}"#),
            "points[0].key".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            format!(r#"{{"name": "t{nul}", "scopes": ["read"]}}"#),
            "name".to_owned(),
        ),
    ] {
        let r = send_json(app, method.clone(), path, &body).await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            field.as_str(),
            "{method} {path} {body}"
        );
    }
    // An escaped backslash followed by the text u0000 is no NUL: stored as sent.
    let r = send_json(
        app,
        Method::PATCH,
        "/api/v1/models/m",
        r#"{"description": "C:\\u0000"}"#,
    )
    .await;
    assert_eq!(r.ok(200)["description"], "C:\\u0000");

    // Nothing was written by any refused request, and the server is fine.
    let after = app.get("/api/v1/events?limit=1000").await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before + 1, "only the last PATCH wrote an event");
    assert_eq!(app.get("/api/v1/models/n").await.status, 404);
    healthy(app).await;
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn points(app: &TestApp, points: Value) -> Resp {
    app.post(
        "/api/v1/models/m/versions/1/metrics",
        json!({ "points": points }),
    )
    .await
}

async fn buckets(app: &TestApp, key: &str, n: u32) -> Vec<Value> {
    let r = app
        .get(&format!(
            "/api/v1/models/m/versions/1/metrics/{key}?max_points={n}"
        ))
        .await;
    r.ok(200)["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("no buckets: {}", r.body))
        .clone()
}

async fn rollup_arithmetic_never_overflows(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    const MAX_STEP: i64 = (1 << 53) - 1;

    // Steps beyond 2^53 - 1 are refused, naming the point.
    for step in [i64::MAX, MAX_STEP + 1] {
        let r = points(
            app,
            json!([{"key": "s", "step": 1, "value": 1}, {"key": "s", "step": step, "value": 1}]),
        )
        .await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            "points[1].step"
        );
    }
    // The largest step is written, written again (an overwrite), and read back.
    for value in [1.0, 2.0] {
        points(app, json!([{"key": "s", "step": 0, "value": 0}, {"key": "s", "step": MAX_STEP, "value": value}]))
            .await
            .ok(200);
    }
    let b = buckets(app, "s", 1).await;
    assert_eq!(b.last().unwrap()["step_end"], MAX_STEP);
    assert_eq!(b.last().unwrap()["last"], 2.0);
    let s = app.get("/api/v1/models/m/versions/1/metrics").await;
    assert_eq!(s.ok(200)["items"][0]["last_step"], MAX_STEP);

    // The largest values, appended batch after batch and overwritten: sums never overflow,
    // means stay numbers within [min, max], and the series stays writable.
    let big = f64::MAX;
    for step in 0..4 {
        points(app, json!([{"key": "v", "step": step, "value": big}]))
            .await
            .ok(200);
    }
    points(
        app,
        json!([{"key": "v", "step": 4, "value": -big}, {"key": "v", "step": 5, "value": big}]),
    )
    .await
    .ok(200);
    // An overwrite recomputes the touched blocks from the points.
    points(app, json!([{"key": "v", "step": 2, "value": -big}]))
        .await
        .ok(200);
    for b in buckets(app, "v", 2).await {
        let mean = b["mean"]
            .as_f64()
            .unwrap_or_else(|| panic!("mean is not a number: {b}"));
        let (min, max) = (b["min"].as_f64().unwrap(), b["max"].as_f64().unwrap());
        assert!(mean.is_finite() && min <= mean && mean <= max, "{b}");
    }
    let all = buckets(app, "v", 1).await;
    assert_eq!(all.len(), 1, "one bucket for six points");
    let one = &all[0];
    assert_eq!(one["count"], 6);
    assert_eq!(one["mean"], 1.7976931348623157e308 / 3.0);

    // Tiny values: the mean is clamped into [min, max], never 0 outside it.
    let tiny = 5e-324;
    points(app, json!([{"key": "t", "step": 1, "value": tiny}, {"key": "t", "step": 2, "value": tiny}, {"key": "t", "step": 3, "value": tiny}]))
        .await
        .ok(200);
    for b in buckets(app, "t", 2).await {
        assert_eq!(b["mean"], tiny, "{b}");
    }
    healthy(app).await;
}

async fn configs_and_sources_are_bounded(app: &TestApp) {
    app.model("m").await;
    let big = json!({"config": {"blob": "x".repeat(1 << 20)}});
    let r = app.post("/api/v1/models/m/versions", big).await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "config");
    // The document and 32 levels inside it are allowed; one more is not.
    let mut deep = json!(1);
    for _ in 0..34 {
        deep = json!({ "d": deep });
    }
    let r = app
        .post("/api/v1/models/m/versions", json!({ "source": deep }))
        .await;
    assert!(
        r.problem(422, "validation_failed")["field"]
            .as_str()
            .unwrap()
            .starts_with("source.d.d.d"),
        "{}",
        r.body
    );
    let long_key = json!({"config": {"opt": {"k".repeat(257): 1}}});
    let r = app.post("/api/v1/models/m/versions", long_key).await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "config.opt");
    // At the limits, accepted, and read back the same.
    let mut ok = json!(1);
    for _ in 0..33 {
        ok = json!({ "d": ok });
    }
    let body = json!({"config": {"blob": "x".repeat((1 << 20) - 20)}, "source": ok.clone()});
    let v = app.version("m", body).await;
    let r = app.get(&format!("/api/v1/models/m/versions/{v}")).await;
    assert_eq!(r.ok(200)["source"], ok);
    assert_eq!(
        r.body["config"]["blob"].as_str().unwrap().len(),
        (1 << 20) - 20
    );
    assert_eq!(v, 1, "nothing was registered by the refused requests");
    healthy(app).await;
}

/// SQLite on a full disk: every write is 503 `storage_full` (never a 500), readiness says so,
/// and once space is freed writes work again without a restart. The disk is simulated with
/// SQLite's page limit, raised again to "free" it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recovers_from_a_full_disk() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let db = crate::helpers::TestDb::create(crate::helpers::Backend::Sqlite).await;
    let pages = Arc::new(AtomicU64::new(0));
    let store = modelreg::store::SqliteStore::connect_with_page_limit(&db.url, pages.clone())
        .await
        .unwrap();
    modelreg::store::Store::migrate(&store).await.unwrap();
    let app = TestApp::spawn_with_store(db.url.clone(), Arc::new(store)).await;
    app.model("m").await;
    app.version("m", json!({})).await;
    // Nearly full: what the database holds now, plus a little.
    let used: i64 = {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let n = sqlx::query_scalar("pragma page_count")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    pages.store(used as u64 + 8, Ordering::Relaxed);
    let batch = |from: i64| {
        let points: Vec<Value> = (from..from + 5000)
            // Values that do not compress: each batch needs pages of its own.
            .map(|s| json!({"key": "loss", "step": s, "value": (s as f64).sin()}))
            .collect();
        json!({ "points": points })
    };
    let mut full = None;
    for i in 0..20 {
        let r = app
            .post("/api/v1/models/m/versions/1/metrics", batch(i * 5000))
            .await;
        if r.status != 200 {
            full = Some(r);
            break;
        }
    }
    full.expect("the disk filled up")
        .problem(503, "storage_full");
    // Every later write that needs space says the same (the writer connection was left in a
    // broken transaction state by SQLite's own rollback once: those answered 500 until a
    // restart), readiness sees it, reads still work.
    for i in 0..3 {
        app.post(
            "/api/v1/models/m/versions/1/metrics",
            batch(100_000 + i * 5000),
        )
        .await
        .problem(503, "storage_full");
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "unavailable");
    app.get("/api/v1/models/m").await.ok(200);
    // A small write may still fit in the pages there are; it never fails otherwise.
    let r = app
        .patch("/api/v1/models/m", json!({"tags": {"a": "b"}}))
        .await;
    if r.status != 200 {
        r.problem(503, "storage_full");
    }
    // Space is freed: writes and readiness are back, without a restart.
    pages.store(0, Ordering::Relaxed);
    app.get("/readyz").await.ok(200);
    let v = app.version("m", json!({})).await;
    assert_eq!(v, 2);
    app.post("/api/v1/models/m/versions/2/metrics", batch(0))
        .await
        .ok(200);
    app.stop().await;
    db.drop_db().await;
}
