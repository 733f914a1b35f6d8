use crate::helpers::{Backend, TestApp, TestDb};
use serde_json::json;
use std::time::Duration;

crate::backend_tests!(every_mutation_is_logged_in_order);

async fn every_mutation_is_logged_in_order(app: &TestApp) {
    app.model("a").await;
    app.model("b").await;
    app.version("a", json!({"finalize": true})).await;
    app.patch("/api/v1/models/a", json!({"tags": {"x": "1"}}))
        .await
        .ok(200);
    app.patch("/api/v1/models/a/versions/1", json!({"tags": {"x": "1"}}))
        .await
        .ok(200);
    app.delete("/api/v1/models/b").await.ok(204);

    let all = app.get("/api/v1/events?limit=100").await;
    let items = all.ok(200)["items"].as_array().unwrap().clone();
    let summary: Vec<(String, Option<String>, Option<i64>)> = items
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["model"].as_str().map(str::to_owned),
                e["version"].as_i64(),
            )
        })
        .collect();
    let s = |a: &str, m: &str, v: Option<i64>| (a.to_owned(), Some(m.to_owned()), v);
    assert_eq!(
        summary,
        [
            s("model.created", "a", None),
            s("model.created", "b", None),
            s("version.created", "a", Some(1)),
            s("version.finalized", "a", Some(1)),
            s("model.updated", "a", None),
            s("version.updated", "a", Some(1)),
            s("model.deleted", "b", None),
        ]
    );
    for e in &items {
        assert_eq!(e["actor"], "anonymous");
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    let ids: Vec<i64> = items
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Paging with `after` and with the returned cursor.
    let first = app.get("/api/v1/events?limit=3").await;
    let cursor = first.ok(200)["next_cursor"].as_str().unwrap().to_owned();
    let next = app
        .get(&format!("/api/v1/events?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(next.ok(200)["items"][0]["event_id"], ids[3]);

    // A feed starts at the end: the newest events, oldest first, then follows with `after`.
    let tail = app.get("/api/v1/events?newest=true&limit=2").await;
    let tail = tail.ok(200).clone();
    let tail_ids: Vec<i64> = tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(tail_ids, ids[ids.len() - 2..]);
    assert_eq!(tail["next_cursor"], ids[ids.len() - 1].to_string());
    let only_a = app.get("/api/v1/events?newest=true&limit=1&model=a").await;
    assert_eq!(only_a.ok(200)["items"][0]["event_id"], ids[5]);
    app.get("/api/v1/events?newest=maybe")
        .await
        .problem(400, "invalid_query_parameter");
    let after = app.get(&format!("/api/v1/events?after={}", ids[5])).await;
    assert_eq!(after.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(after.body["next_cursor"], json!(null));

    let only_b = app.get("/api/v1/events?model=b").await;
    assert_eq!(only_b.ok(200)["items"].as_array().unwrap().len(), 2);
    let created = app.get("/api/v1/events?action=model.created").await;
    assert_eq!(created.ok(200)["items"].as_array().unwrap().len(), 2);
    app.get("/api/v1/events?after=abc")
        .await
        .problem(400, "invalid_query_parameter");
}

/// Postgres only (SQLite has one writer, so ids commit in order): an event whose transaction
/// commits after a later-numbered one is not skipped by a reader tailing with `after=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_never_skips_an_event_that_commits_late_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let app = TestApp::spawn(db.url.clone(), |_| {}).await;
    app.model("a").await;
    let first: i64 = app.get("/api/v1/events").await.ok(200)["items"][0]["event_id"]
        .as_i64()
        .unwrap();

    // A writer draws the next event id and has not committed yet.
    let mut slow = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut slow, "begin").await.unwrap();
    let late: i64 = sqlx::query_scalar(
        "insert into events (at, action, model, actor) values (now(), 'test.late', 'a', 'test') returning id",
    )
    .fetch_one(&mut slow)
    .await
    .unwrap();
    assert_eq!(late, first + 1);
    // Another commits a higher id meanwhile.
    app.model("b").await;

    // A reader asks for what follows `first` while `late` is in flight: it must not answer
    // with the higher id alone.
    let url = app.url(&format!("/api/v1/events?after={first}"));
    let client = app.client.clone();
    let read = tokio::spawn(async move {
        let r = client.get(url).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::Executor::execute(&mut slow, "commit").await.unwrap();
    let page = read.await.unwrap();
    let ids: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [late, late + 1], "{page}");
    assert_eq!(page["items"][0]["action"], "test.late");

    drop(slow);
    app.stop().await;
    db.drop_db().await;
}

/// Postgres: a read that waits for a transaction still open does not spin. It looks at the
/// sessions in progress with a backoff (at most ~40 looks in its 2 s), answers within its
/// cap, and the transactions it runs meanwhile are counted by the server's own statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_event_horizon_does_not_spin_postgres() {
    let db = TestDb::create(Backend::Postgres).await;
    let app = TestApp::spawn(db.url.clone(), |c| c.webhooks.dispatcher = false).await;
    app.model("a").await;
    let mut open = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut open, "begin").await.unwrap();
    let (_, pid): (i64, i32) = sqlx::query_as("select txid_current(), pg_backend_pid()")
        .fetch_one(&mut open)
        .await
        .unwrap();
    let mut commits = crate::helpers::Commits::connect(&db.url).await;
    commits.keep(pid);
    let mut took = Duration::ZERO;
    let spent = commits
        .of(async {
            let started = std::time::Instant::now();
            app.get("/api/v1/events").await.ok(200);
            took = started.elapsed();
        })
        .await;
    assert!(
        took < Duration::from_secs(4),
        "the wait is capped: {took:?}"
    );
    assert!(
        spent < 150,
        "{spent} transactions while one read waited {took:?}"
    );
    sqlx::Executor::execute(&mut open, "rollback")
        .await
        .unwrap();
    drop(open);
    app.stop().await;
    db.drop_db().await;
}
