//! Erasing a version, on both backends and both artifact stores: its rows and its objects go
//! (checked in the database and in the store), a tombstone keeps the number (never reused),
//! its events stay, `verify --deep` stays clean; refused while live; taken out of a stage's
//! stack (a rollback never lands on it, the history says so); a store outage during the
//! erase is retried later, never a row pointing at nothing; a promote racing an erase: one
//! wins.

use crate::blobs::{Blobs, start_blobs};
use crate::helpers::{Backend, Setup, TestApp, TestDb};
use serde_json::{Value, json};
use sqlx::Connection;

const STORES: Setup = Setup {
    blobs: &[Blobs::Folder, Blobs::S3],
    ..Setup::PLAIN
};

crate::backend_tests!(with super::STORES;
    an_erased_version_leaves_only_its_number,
    a_model_is_deleted_with_every_version,
);

crate::backend_tests!(a_promote_racing_an_erase_one_wins, bad_erases_are_refused,);

/// One number from the case's database.
async fn count(app: &TestApp, sql: &str) -> i64 {
    if app.db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

async fn objects(app: &TestApp) -> usize {
    use futures::TryStreamExt;
    let listed: Vec<_> = app.state.blobs.list().try_collect().await.unwrap();
    listed.len()
}

async fn ready_with_everything(app: &TestApp, model: &str) -> i64 {
    let v = app
        .version(
            model,
            json!({"config": {"lr": 0.1}, "tags": {"k": "v"}, "description": "d",
                   "inputs": [{"kind": "dataset", "name": "tx", "digest": "sha256:ab"}]}),
        )
        .await;
    for path in ["model/weights.bin", "model/MLmodel", "README.md"] {
        let r = app
            .send(
                app.client
                    .put(app.url(&format!(
                        "/api/v1/models/{model}/versions/{v}/artifacts/{path}"
                    )))
                    .body(format!("{path} of {v}")),
            )
            .await;
        r.ok(201);
    }
    let points: Vec<Value> = (0..1000)
        .map(|s| json!({"key": "loss", "step": s, "value": 1.0 / f64::from(s + 1)}))
        .collect();
    app.post(
        &format!("/api/v1/models/{model}/versions/{v}/metrics"),
        json!({"points": points}),
    )
    .await
    .ok(200);
    app.post_empty(&format!("/api/v1/models/{model}/versions/{v}/finalize"))
        .await
        .ok(200);
    v
}

async fn an_erased_version_leaves_only_its_number(app: &TestApp) {
    app.model("m").await;
    let v1 = ready_with_everything(app, "m").await;
    let v2 = ready_with_everything(app, "m").await;
    for v in [v1, v2] {
        app.post(
            "/api/v1/models/m/stages/production/promote",
            json!({"version": v}),
        )
        .await
        .ok(200);
    }
    assert_eq!(objects(app).await, 6);
    let before_erase = modelreg::domain::time::rfc3339::format(&modelreg::domain::time::now());
    // Live: refused, nothing changes.
    let r = app.delete(&format!("/api/v1/models/m/versions/{v2}")).await;
    r.problem(409, "version_in_stage");
    // Beneath in the stack: erased, and out of the stack.
    let r = app
        .delete(&format!(
            "/api/v1/models/m/versions/{v1}?reason=GDPR%20request%2042"
        ))
        .await;
    let tomb = r.ok(200).clone();
    assert_eq!(tomb["status"], "erased");
    assert_eq!(tomb["version"], v1);
    assert_eq!(tomb["status_reason"], "GDPR request 42");
    assert_eq!(tomb["erased_by"], "anonymous");
    assert!(tomb["erased_at"].is_string());
    assert_eq!(tomb["config"], json!({}));
    assert_eq!(tomb["tags"], json!({}));
    assert_eq!(tomb["description"], Value::Null);
    // Its rows are gone, in the database itself.
    let id = tomb["id"].as_str().unwrap().to_owned();
    let id_sql = if app.db_url.starts_with("sqlite:") {
        // Stored as a 16-byte blob.
        format!("x'{}'", id.replace('-', ""))
    } else {
        format!("'{id}'")
    };
    for table in ["artifacts", "metric_series", "version_inputs"] {
        let n = count(
            app,
            &format!("select count(*) from {table} where version_id = {id_sql}"),
        )
        .await;
        assert_eq!(n, 0, "{table}");
    }
    let points = count(app, "select count(*) from metric_points").await
        + count(app, "select count(*) from metric_blocks").await;
    let series = count(app, "select count(*) from metric_series").await;
    assert_eq!(series, 1, "only version 2's series is left");
    assert!(points > 0);
    // And its objects, in the store.
    assert_eq!(
        objects(app).await,
        3,
        "version 1's three objects are deleted"
    );
    assert_eq!(count(app, "select count(*) from object_deletions").await, 0);
    let shown = app.get(&format!("/api/v1/models/m/versions/{v1}")).await;
    let shown = shown.ok(200);
    assert_eq!(shown["artifacts"], json!([]));
    assert_eq!(shown["metrics"], json!([]));
    // Out of production's stack: nothing beneath 2 any more, and the history says why.
    let r = app
        .post_empty("/api/v1/models/m/stages/production/rollback")
        .await;
    r.problem(409, "nothing_to_roll_back");
    let history = app.get("/api/v1/models/m/stages/production/history").await;
    let last = &history.ok(200)["items"][0];
    assert_eq!(last["action"], "stage.version_erased");
    assert_eq!(last["reason"], "GDPR request 42");
    // What the stage held before is still told right.
    let then = app
        .get(&format!(
            "/api/v1/models/m/stages/production?at={before_erase}"
        ))
        .await;
    assert_eq!(then.ok(200)["version"], v2);
    // The number is never reused; the events stay; an erased version is not promoted.
    assert_eq!(app.version("m", json!({"finalize": true})).await, 3);
    let events = app.get("/api/v1/events?model=m&limit=1000").await;
    let events = events.ok(200)["items"].as_array().unwrap().clone();
    let of_v1: Vec<&str> = events
        .iter()
        .filter(|e| e["version"] == v1)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        of_v1.contains(&"version.created") && of_v1.contains(&"version.erased"),
        "{of_v1:?}"
    );
    let r = app
        .post(
            "/api/v1/models/m/stages/staging/promote",
            json!({"version": v1}),
        )
        .await;
    r.problem(409, "version_not_ready");
    let r = app
        .post_empty(&format!("/api/v1/models/m/versions/{v1}/archive"))
        .await;
    r.problem(409, "version_erased");
    // Again: the same tombstone, nothing recorded twice.
    let r = app.delete(&format!("/api/v1/models/m/versions/{v1}")).await;
    assert_eq!(r.ok(200)["erased_at"], tomb["erased_at"]);
    let again = app
        .get("/api/v1/events?model=m&action=version.erased")
        .await;
    assert_eq!(again.ok(200)["items"].as_array().unwrap().len(), 1);
    let listed = app.get("/api/v1/models/m/versions?status=erased").await;
    assert_eq!(listed.ok(200)["items"][0]["version"], v1);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    // `verify` knows what an erased version may not have.
    app.exec(&format!(
        "insert into version_inputs (version_id, position, kind, name, digest, body, created_at) \
         values ({id_sql}, 1, 'code', null, null, '{{}}', '2026-01-01T00:00:00Z')"
    ))
    .await;
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    assert_eq!(report.findings[0].check, "erased_version");
    assert!(report.findings[0].detail.contains("still has inputs"));
}

async fn a_promote_racing_an_erase_one_wins(app: &TestApp) {
    app.model("m").await;
    for _ in 0..10 {
        let v = app.version("m", json!({"finalize": true})).await;
        let promote = app.post(
            "/api/v1/models/m/stages/production/promote",
            json!({"version": v}),
        );
        let path = format!("/api/v1/models/m/versions/{v}");
        let erase = app.delete(&path);
        let (p, e) = tokio::join!(promote, erase);
        match (p.status.as_u16(), e.status.as_u16()) {
            (200, 409) => assert_eq!(e.body["code"], "version_in_stage"),
            (409, 200) => assert_eq!(p.body["code"], "version_not_ready"),
            other => panic!("both or neither won: {other:?} {} {}", p.body, e.body),
        }
        let held = app.get("/api/v1/models/m/stages/production").await;
        if held.status == 200 {
            let live = held.body["version"].as_i64().unwrap();
            let status = app.get(&format!("/api/v1/models/m/versions/{live}")).await;
            assert_ne!(
                status.body["status"], "erased",
                "a stage holds an erased version"
            );
        }
    }
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

async fn bad_erases_are_refused(app: &TestApp) {
    app.model("m").await;
    app.delete("/api/v1/models/m/versions/7")
        .await
        .problem(404, "version_not_found");
    app.delete("/api/v1/models/nope/versions/1")
        .await
        .problem(404, "model_not_found");
    app.delete("/api/v1/models/m/versions/x")
        .await
        .problem(400, "invalid_path_parameter");
    let long = "r".repeat(10_001);
    let v = app.version("m", json!({})).await;
    app.delete(&format!("/api/v1/models/m/versions/{v}?reason={long}"))
        .await
        .problem(422, "validation_failed");
    // A pending version can be erased too (a run that went wrong).
    let r = app.delete(&format!("/api/v1/models/m/versions/{v}")).await;
    assert_eq!(r.ok(200)["status"], "erased");
}

/// The S3 store down during the erase: the rows go at once, the objects stay queued; once
/// the store is back the background retry deletes them. Never a row without its object.
async fn outage_case(backend: Backend) {
    let db = TestDb::create(backend).await;
    let mut s3 = start_blobs(Blobs::S3).await;
    let app = TestApp::spawn_with(db.url.clone(), |_| {}, Some(s3.blobs.clone())).await;
    app.model("m").await;
    let v = ready_with_everything(&app, "m").await;
    assert_eq!(objects(&app).await, 3);
    s3.server.as_ref().unwrap().stop();
    let r = app.delete(&format!("/api/v1/models/m/versions/{v}")).await;
    assert_eq!(r.ok(200)["status"], "erased");
    assert_eq!(count(&app, "select count(*) from artifacts").await, 0);
    assert_eq!(
        count(&app, "select count(*) from object_deletions").await,
        3
    );
    s3.server.as_mut().unwrap().restart().await;
    assert_eq!(objects(&app).await, 3, "still there while queued");
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    let gone = modelreg::gc::retry_erased(app.state.store.as_ref(), &app.state.blobs, 100)
        .await
        .unwrap();
    assert_eq!(gone, 3);
    assert_eq!(objects(&app).await, 0);
    assert_eq!(
        count(&app, "select count(*) from object_deletions").await,
        0
    );
    app.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_an_erase_is_retried_sqlite() {
    outage_case(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_an_erase_is_retried_postgres() {
    outage_case(Backend::Postgres).await;
}

async fn a_model_is_deleted_with_every_version(app: &TestApp) {
    app.model("m").await;
    app.model("other").await;
    let kept = ready_with_everything(app, "other").await;
    for _ in 0..3 {
        ready_with_everything(app, "m").await;
    }
    app.delete("/api/v1/models/m/versions/1").await.ok(200);
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": 2}),
    )
    .await
    .ok(200);
    assert_eq!(objects(app).await, 12 - 3);
    // Versions, no cascade: as before.
    app.delete("/api/v1/models/m")
        .await
        .problem(409, "model_not_empty");
    // Live on a stage: refused unless forced, with a reason.
    app.delete("/api/v1/models/m?cascade=true")
        .await
        .problem(409, "model_in_use");
    app.delete("/api/v1/models/m?cascade=true&force=true")
        .await
        .problem(422, "validation_failed");
    app.delete("/api/v1/models/m?force=true")
        .await
        .problem(422, "validation_failed");
    let r = app
        .delete("/api/v1/models/m?cascade=true&force=true&reason=retired")
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.get("/api/v1/models/m")
        .await
        .problem(404, "model_not_found");
    // Only the other model's objects and rows are left.
    assert_eq!(objects(app).await, 3);
    assert_eq!(count(app, "select count(*) from versions").await, 1);
    assert_eq!(count(app, "select count(*) from metric_series").await, 1);
    assert_eq!(count(app, "select count(*) from object_deletions").await, 0);
    let shown = app
        .get(&format!("/api/v1/models/other/versions/{kept}"))
        .await;
    assert_eq!(shown.ok(200)["artifacts"].as_array().unwrap().len(), 3);
    // Its events stay: the stage cleared (forced), each version erased, the model deleted.
    let events = app.get("/api/v1/events?model=m&limit=1000").await;
    let actions: Vec<String> = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    let tail: Vec<&str> = actions[actions.len() - 4..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "stage.cleared",
            "version.erased",
            "version.erased",
            "model.deleted"
        ],
        "{actions:?}"
    );
    // A new model of the name is a new model.
    app.model("m").await;
    assert_eq!(app.version("m", json!({})).await, 1);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}
