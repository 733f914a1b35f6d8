//! Upgrading a database written by an earlier release: the schema as of an older migration,
//! rows as that release wrote them, then the server starts (running the newer migrations)
//! and answers from the converted data.

use crate::helpers::{Backend, TestApp, TestDb};
use serde_json::json;
use sqlx::migrate::Migrator;
use std::borrow::Cow;

/// The last migration before metric series kept their last value.
const BEFORE_LAST_VALUES: i64 = 12;

/// A bound value of the fixture.
#[derive(Clone, Copy)]
enum Arg {
    Id(uuid::Uuid),
    At(chrono::DateTime<chrono::Utc>),
}

/// Rows of a model with two versions and an `acc` series each, as release 12 wrote them:
/// points and their rollups, no last value on the series.
fn fixture(model: uuid::Uuid, v1: uuid::Uuid, v2: uuid::Uuid) -> Vec<(&'static str, Vec<Arg>)> {
    let now = Arg::At(chrono::Utc::now());
    let (m, a, b) = (Arg::Id(model), Arg::Id(v1), Arg::Id(v2));
    vec![
        (
            "insert into models (id, name, tags, last_version, created_at, updated_at, created_by) \
             values ($1, 'm', '{}', 2, $2, $2, 'test')",
            vec![m, now],
        ),
        (
            "insert into versions (id, model_id, version, status, config, source, tags, \
             created_at, updated_at, created_by) values \
             ($1, $2, 1, 'ready', '{}', '{}', '{}', $3, $3, 'test'), \
             ($4, $2, 2, 'ready', '{}', '{}', '{}', $3, $3, 'test')",
            vec![a, m, now, b],
        ),
        (
            "insert into metric_series (version_id, key, created_at) \
             values ($1, 'acc', $3), ($2, 'acc', $3)",
            vec![a, b, now],
        ),
        (
            "insert into metric_points (series_id, step, value, at) \
             select s.id, p.step, \
                    case when s.version_id = $1 then 0.7 else 0.9 end - 0.1 * (1 - p.step), 0 \
             from metric_series s, (select 0 as step union all select 1) p",
            vec![a],
        ),
        (
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, \
             first_step, last_step, last) \
             select s.id, l.level, 0, 2, min(p.value), max(p.value), sum(p.value) * 5.421010862427522e-20, 0, 1, \
                    max(p.value) \
             from metric_series s join metric_points p on p.series_id = s.id, \
                  (select 1 as level union all select 2 union all select 3) l \
             group by s.id, l.level",
            vec![],
        ),
    ]
}

macro_rules! load {
    ($pool:expr, $rows:expr) => {
        for (sql, args) in $rows {
            let mut q = sqlx::query(sql);
            for arg in args {
                q = match arg {
                    Arg::Id(id) => q.bind(id),
                    Arg::At(at) => q.bind(at),
                };
            }
            q.execute(&$pool).await.unwrap();
        }
    };
}

fn older(mut migrator: Migrator) -> Migrator {
    let kept: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= BEFORE_LAST_VALUES)
        .cloned()
        .collect();
    migrator.migrations = Cow::Owned(kept);
    migrator
}

async fn last_values_are_backfilled(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (model, v1, v2) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let rows = fixture(model, v1, v2);
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            older(sqlx::migrate!("./migrations/postgres"))
                .run(&pool)
                .await
                .unwrap();
            load!(pool, rows);
            pool.close().await;
        }
        Backend::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
            let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
                .await
                .unwrap();
            older(sqlx::migrate!("./migrations/sqlite"))
                .run(&pool)
                .await
                .unwrap();
            load!(pool, rows);
            pool.close().await;
        }
    }
    let app = TestApp::spawn(db.url.clone(), |_| {}).await;
    let r = app
        .get("/api/v1/models/m/versions?order_by=metric.acc:desc&metrics=acc")
        .await;
    let items = r.ok(200)["items"].as_array().unwrap().clone();
    let got: Vec<_> = items
        .iter()
        .map(|v| (v["version"].clone(), v["last_metrics"]["acc"].clone()))
        .collect();
    assert_eq!(got, [(json!(2), json!(0.9)), (json!(1), json!(0.7))]);
    let r = app
        .get("/api/v1/models/m/versions?filter=metric.acc%20%3E%200.8")
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 1);
    // New points move the converted series' last value.
    app.post(
        "/api/v1/models/m/versions/1/metrics",
        json!({"points": [{"key": "acc", "step": 2, "value": 0.95}]}),
    )
    .await;
    let r = app
        .get("/api/v1/models/m/versions?order_by=metric.acc:desc")
        .await;
    assert_eq!(r.ok(200)["items"][0]["version"], 1);
    // The rows written before blocks existed are packed, a transaction per series; the
    // versions are ready, so their tails are packed too.
    while app.state.store.compact_pending(1).await.unwrap() > 0 {}
    let rows: i64 = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from metric_points")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from metric_points")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows, 0, "every point is packed");
    for (v, top, steps) in [(1, 0.7, 3), (2, 0.9, 2)] {
        let r = app
            .get(&format!("/api/v1/models/m/versions/{v}/metrics/acc"))
            .await;
        let points = r.ok(200)["points"].as_array().unwrap().clone();
        assert_eq!(points.len(), steps, "{}", r.body);
        for (step, p) in points.iter().enumerate().take(2) {
            let want = top - 0.1 * (1 - step as i64) as f64;
            assert!((p["value"].as_f64().unwrap() - want).abs() < 1e-12, "{p}");
        }
    }
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    // The fixture records no events; its points and rollups must verify.
    let metric_findings: Vec<_> = report
        .findings
        .iter()
        .filter(|f| matches!(f.check, "rollup" | "metric_block" | "metric_last_value"))
        .collect();
    assert!(metric_findings.is_empty(), "{metric_findings:#?}");
    app.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_values_are_backfilled_postgres() {
    last_values_are_backfilled(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_values_are_backfilled_sqlite() {
    last_values_are_backfilled(Backend::Sqlite).await;
}
