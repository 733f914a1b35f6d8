//! Webhooks over real HTTP to a receiver the test runs: signed, filtered, retried with the same
//! id, ordered per model, disabled on 410, never sent for a rolled-back change, refused for
//! private addresses, signed twice during a rotation. Every case on SQLite and Postgres.

use crate::helpers::{Setup, TestApp};
use crate::receiver::Receiver;
use modelreg::config::Config;
use serde_json::{Value, json};
use sqlx::Connection;
use std::time::Duration;

/// Local receivers allowed; retries 50 ms apart so that a test sees several.
const SETUP: Setup = Setup {
    adjust: fast,
    ..Setup::PLAIN
};

fn fast(c: &mut Config) {
    c.webhooks.allow_private = true;
    c.webhooks.retry_base = Duration::from_millis(50);
    c.webhooks.poll = Duration::from_millis(200);
}

crate::backend_tests!(with super::SETUP;
    promote_sends_one_signed_delivery,
    events_and_models_filter,
    failed_attempts_are_retried_with_the_same_id,
    receiver_down_then_up_gets_everything_in_order,
    gone_disables_the_webhook,
    rolled_back_events_send_nothing,
    rotation_signs_with_both_secrets,
    ping_and_redeliver,
    retries_give_up_and_fail,
    crud_and_bad_input,
    a_new_webhook_gets_events_from_its_creation_on,
    one_pending_ping_and_old_deliveries_pruned
);

crate::backend_tests!(with crate::helpers::Setup::PLAIN; private_addresses_are_refused);

const QUIET: Duration = Duration::from_millis(400);

async fn subscribe(app: &TestApp, body: Value) -> (String, String) {
    let r = app.post("/api/v1/webhooks", body).await;
    let w = r.ok(201);
    (
        w["id"].as_str().unwrap().to_owned(),
        w["secret"].as_str().unwrap().to_owned(),
    )
}

async fn ready_version(app: &TestApp, model: &str) -> i64 {
    app.version(model, json!({"finalize": true})).await
}

async fn promote(app: &TestApp, model: &str, version: i64) {
    app.post(
        &format!("/api/v1/models/{model}/stages/production/promote"),
        json!({"version": version, "reason": "canary green"}),
    )
    .await
    .ok(200);
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/webhooks/{webhook}/deliveries"))
        .await;
    r.ok(200)["items"].as_array().unwrap().clone()
}

/// Waits (up to 20 s) until the delivery log of `webhook` satisfies `done`.
async fn log_until(app: &TestApp, webhook: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..400 {
        let log = deliveries(app, webhook).await;
        if done(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "delivery log never got there: {:?}",
        deliveries(app, webhook).await
    );
}

async fn promote_sends_one_signed_delivery(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    app.model("fraud").await;
    let v = ready_version(app, "fraud").await;
    promote(app, "fraud", v).await;
    receiver.wait_for(1).await;
    let got = receiver.settle(1, QUIET).await.remove(0);
    assert!(
        got.signed_with(&secret),
        "signature does not verify: {got:?}"
    );
    let now = chrono::Utc::now().timestamp();
    let ts: i64 = got.timestamp.parse().unwrap();
    assert!((now - ts).abs() < 60, "webhook-timestamp {ts} is not now");
    let body = got.json();
    assert_eq!(body["type"], "stage.promoted");
    let data = &body["data"];
    assert_eq!(data["action"], "stage.promoted");
    assert_eq!(data["model"], "fraud");
    assert_eq!(data["stage"], "production");
    assert_eq!(data["version"], v);
    assert_eq!(data["to_version"], v);
    assert_eq!(data["from_version"], Value::Null);
    assert_eq!(data["reason"], "canary green");
    assert_eq!(data["actor"], "anonymous");
    assert!(data["event_id"].as_i64().is_some() && data["at"].is_string());
    let log = log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(d["id"].to_string(), got.id, "webhook-id is the delivery id");
    assert_eq!(
        (d["attempts"].as_i64(), d["last_status_code"].as_i64()),
        (Some(1), Some(204))
    );
    assert_eq!(d["type"], "stage.promoted");
    assert_eq!(d["event_id"], data["event_id"]);
    let shown = app.get(&format!("/api/v1/webhooks/{id}")).await;
    let shown = shown.ok(200);
    assert_eq!(
        (shown["delivered"].as_i64(), shown["pending"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(shown["last_success_at"].is_string() && shown.get("secret").is_none());
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for name in [
        "modelreg_webhook_deliveries_total{outcome=\"delivered\"}",
        "modelreg_webhook_attempts_total{outcome=\"delivered\"}",
        "modelreg_webhook_attempt_duration_seconds_bucket",
        "modelreg_webhook_queue_depth",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
}

async fn events_and_models_filter(app: &TestApp) {
    let receiver = Receiver::start().await;
    subscribe(
        app,
        json!({"url": receiver.url(), "events": ["version.finalized"], "models": ["fraud-*"]}),
    )
    .await;
    let other = Receiver::start().await;
    subscribe(app, json!({"url": other.url(), "events": ["model.*"]})).await;
    for m in ["fraud-a", "churn"] {
        app.model(m).await;
        ready_version(app, m).await;
    }
    let got = receiver.wait_for(1).await;
    let got = receiver.settle(got.len(), QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["data"]["model"], "fraud-a");
    assert_eq!(got[0].json()["type"], "version.finalized");
    let models = other.wait_for(2).await;
    let models = other.settle(models.len(), QUIET).await;
    let mut names: Vec<String> = models
        .iter()
        .map(|r| r.json()["data"]["model"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["churn", "fraud-a"]);
}

async fn failed_attempts_are_retried_with_the_same_id(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 503, 429]);
    let (id, secret) = subscribe(
        app,
        json!({"url": receiver.url(), "events": ["stage.promoted"]}),
    )
    .await;
    app.model("m").await;
    let v = ready_version(app, "m").await;
    promote(app, "m", v).await;
    receiver.wait_for(4).await;
    let got = receiver.settle(4, QUIET).await;
    assert!(
        got[..4].iter().all(|r| r.id == got[0].id),
        "one webhook-id for every attempt"
    );
    assert!(got[..4].iter().all(|r| r.signed_with(&secret)));
    // Backed off: each wait at least ~80% of the doubling 50 ms base.
    for (i, pair) in got[..4].windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let least = Duration::from_millis(40 << i);
        assert!(
            gap >= least,
            "attempt {} came {gap:?} after the previous",
            i + 2
        );
    }
    let log = log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    assert_eq!(log[0]["attempts"], 4);
    assert_eq!(log[0]["last_status_code"], 204);
    let shown = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert!(shown.ok(200)["last_failure_at"].is_string());
}

async fn receiver_down_then_up_gets_everything_in_order(app: &TestApp) {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let (id, _) = subscribe(
        app,
        json!({"url": receiver.url(), "events": ["stage.promoted"]}),
    )
    .await;
    for m in ["a", "b"] {
        app.model(m).await;
        for _ in 0..4 {
            ready_version(app, m).await;
        }
    }
    for v in 1..=4 {
        for m in ["a", "b"] {
            promote(app, m, v).await;
        }
    }
    // Refused connections meanwhile; a failure is recorded and retried.
    log_until(app, &id, |l| {
        l.iter().any(|d| d["attempts"].as_i64() >= Some(2))
    })
    .await;
    let failing = deliveries(app, &id).await;
    assert!(
        failing.iter().any(|d| d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect"))),
        "{failing:?}"
    );
    receiver.restart().await;
    let got = receiver.wait_for(8).await;
    for m in ["a", "b"] {
        let order: Vec<i64> = got
            .iter()
            .map(|r| r.json()["data"].clone())
            .filter(|d| d["model"] == m)
            .map(|d| d["to_version"].as_i64().unwrap())
            .collect();
        assert_eq!(order, [1, 2, 3, 4], "model {m} out of order");
    }
    log_until(app, &id, |l| {
        l.len() == 8 && l.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
}

async fn gone_disables_the_webhook(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer(&[410]);
    let (id, _) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    app.model("m").await;
    let v = ready_version(app, "m").await;
    promote(app, "m", v).await;
    receiver.wait_for(1).await;
    log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let shown = app.get(&format!("/api/v1/webhooks/{id}")).await;
    let shown = shown.ok(200);
    assert_eq!(shown["enabled"], false);
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));
    // A disabled webhook gets no deliveries.
    app.delete("/api/v1/models/m/stages/production").await;
    receiver.settle(1, QUIET).await;
    assert_eq!(deliveries(app, &id).await.len(), 1);
    let events = app.get("/api/v1/events?action=webhook.disabled").await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 1);
    // Enabled again, it gets new events, not those logged while it was disabled.
    app.patch(&format!("/api/v1/webhooks/{id}"), json!({"enabled": true}))
        .await
        .ok(200);
    promote(app, "m", v).await;
    receiver.wait_for(2).await;
    let got = receiver.settle(2, QUIET).await;
    assert_eq!(got[1].json()["type"], "stage.promoted");
}

/// A webhook gets the events logged from its creation on, not the log before it.
async fn a_new_webhook_gets_events_from_its_creation_on(app: &TestApp) {
    app.model("m").await;
    let v = ready_version(app, "m").await;
    promote(app, "m", v).await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    app.delete("/api/v1/models/m/stages/production").await;
    receiver.wait_for(1).await;
    let got = receiver.settle(1, QUIET).await;
    assert_eq!(got[0].json()["type"], "stage.cleared");
    assert_eq!(deliveries(app, &id).await.len(), 1);
}

/// The outbox holds at the database: an event written in a transaction that rolls back
/// queues nothing; one that commits queues its delivery (whatever wrote it).
async fn rolled_back_events_send_nothing(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(app, json!({"url": receiver.url(), "events": ["test.*"]})).await;
    let insert = "insert into events (at, action, model, actor, details) \
                  values ('2026-01-01T00:00:00.000000Z', 'test.rolled_back', 'm', 'test', '{}')";
    // The same on either driver: roll one insert back, commit another.
    macro_rules! roll_back_then_commit {
        ($conn:ty) => {{
            let mut c = <$conn>::connect(&app.db_url).await.unwrap();
            let mut tx = c.begin().await.unwrap();
            sqlx::query(insert).execute(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
            let committed = insert.replace("rolled_back", "committed");
            let committed = sqlx::query(sqlx::AssertSqlSafe(committed));
            committed.execute(&mut c).await.unwrap();
        }};
    }
    if app.db_url.starts_with("postgres") {
        roll_back_then_commit!(sqlx::PgConnection);
    } else {
        roll_back_then_commit!(sqlx::SqliteConnection);
    }
    // Nothing tells the dispatcher of a commit made behind the server's back: the poll
    // finds it.
    receiver.wait_for(1).await;
    let got = receiver.settle(1, QUIET).await.remove(0);
    assert_eq!(got.json()["type"], "test.committed");
    assert_eq!(deliveries(app, &id).await.len(), 1);
}

async fn rotation_signs_with_both_secrets(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (id, old) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    let r = app
        .post_empty(&format!("/api/v1/webhooks/{id}/rotate-secret"))
        .await;
    let rotated = r.ok(200);
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert!(rotated["previous_secret_until"].is_string());
    app.model("m").await;
    let v = ready_version(app, "m").await;
    promote(app, "m", v).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].signature.split(' ').count(),
        2,
        "{}",
        got[0].signature
    );
    assert!(got[0].signed_with(&new) && got[0].signed_with(&old));
    let shown = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert!(shown.ok(200)["previous_secret_until"].is_string());
}

async fn ping_and_redeliver(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    let r = app.post_empty(&format!("/api/v1/webhooks/{id}/ping")).await;
    let delivery = r.ok(202)["delivery_id"].as_i64().unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].id, delivery.to_string());
    assert!(got[0].signed_with(&secret));
    let body = got[0].json();
    assert_eq!(body["type"], "webhook.ping");
    assert_eq!(body["data"]["webhook_id"], id.as_str());
    log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    let path = format!("/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver");
    app.post_empty(&path).await.ok(202);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].id, got[0].id, "a redelivery keeps its webhook-id");
    let log = log_until(app, &id, |l| {
        l[0]["status"] == "succeeded" && l[0]["attempts"] == 1
    })
    .await;
    assert_eq!(log.len(), 1);
    // Filters of the log.
    let failed = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries?status=failed"))
        .await;
    assert_eq!(failed.ok(200)["items"], json!([]));
    let missing = format!("/api/v1/webhooks/{id}/deliveries/999999/redeliver");
    app.post_empty(&missing)
        .await
        .problem(404, "delivery_not_found");
}

async fn retries_give_up_and_fail(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer(&[500; 100]);
    let (id, _) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    app.model("m").await;
    let v = ready_version(app, "m").await;
    // Retries stop a day after the delivery was queued: move that day into the past.
    promote(app, "m", v).await;
    receiver.wait_for(2).await;
    let day_ago =
        (chrono::Utc::now() - chrono::Duration::hours(25)).format("%Y-%m-%dT%H:%M:%S%.6fZ");
    app.exec(&format!(
        "update webhook_deliveries set queued_at = '{day_ago}'"
    ))
    .await;
    let log = log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(log[0]["last_status_code"], 500);
    assert!(log[0]["last_error"].as_str().unwrap().contains("500"));
    assert_eq!(log[0]["next_attempt_at"], Value::Null);
    let n = receiver.received().len();
    receiver.settle(n, QUIET).await;
}

async fn crud_and_bad_input(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(
        app,
        json!({"url": receiver.url(), "description": "deployer", "enabled": false}),
    )
    .await;
    let list = app.get("/api/v1/webhooks").await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("secret").is_none());
    assert_eq!(items[0]["events"], json!(["*"]));
    assert_eq!(items[0]["models"], Value::Null);
    let path = format!("/api/v1/webhooks/{id}");
    let r = app
        .patch(
            &path,
            json!({"events": ["stage.*"], "models": ["a*"], "description": null, "enabled": true}),
        )
        .await;
    let w = r.ok(200);
    assert_eq!(
        (w["events"].clone(), w["models"].clone()),
        (json!(["stage.*"]), json!(["a*"]))
    );
    assert_eq!(
        (w["description"].clone(), w["enabled"].clone()),
        (Value::Null, json!(true))
    );
    let r = app.patch(&path, json!({"models": null})).await;
    assert_eq!(r.ok(200)["models"], Value::Null);
    for (body, code) in [
        (
            json!({"url": "ftp://example.com/"}),
            "webhook_url_not_allowed",
        ),
        (json!({"url": "not a url"}), "validation_failed"),
        (
            json!({"url": "http://u:p@example.com/"}),
            "validation_failed",
        ),
        (
            json!({"url": receiver.url(), "events": []}),
            "validation_failed",
        ),
        (
            json!({"url": receiver.url(), "events": ["Stage.*"]}),
            "validation_failed",
        ),
        (
            json!({"url": receiver.url(), "models": ["no spaces"]}),
            "validation_failed",
        ),
        (
            json!({"url": receiver.url(), "secret": "mine"}),
            "validation_failed",
        ),
    ] {
        app.post("/api/v1/webhooks", body.clone())
            .await
            .problem(422, code);
    }
    app.patch(&path, json!({"url": "gopher://x/"}))
        .await
        .problem(422, "webhook_url_not_allowed");
    app.get("/api/v1/webhooks/nope")
        .await
        .problem(400, "invalid_path_parameter");
    let missing = "/api/v1/webhooks/01900000-0000-7000-8000-000000000000";
    app.get(missing).await.problem(404, "webhook_not_found");
    app.get(&format!("{path}/deliveries?status=lost"))
        .await
        .problem(400, "invalid_query_parameter");
    app.get(&format!("{path}/deliveries?cursor=x"))
        .await
        .problem(400, "invalid_query_parameter");
    app.post_empty(&format!("{path}/deliveries/x/redeliver"))
        .await
        .problem(400, "invalid_path_parameter");
    app.delete(&path).await.ok(204);
    app.get(&path).await.problem(404, "webhook_not_found");
    let actions: Vec<Value> = app.get("/api/v1/events?limit=100").await.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .filter(|a| a.as_str().unwrap().starts_with("webhook."))
        .collect();
    assert_eq!(
        actions,
        [
            json!("webhook.created"),
            json!("webhook.updated"),
            json!("webhook.updated"),
            json!("webhook.deleted")
        ]
    );
    let all = app.get("/api/v1/events?limit=100").await;
    assert!(
        !all.body.to_string().contains(&receiver.url()),
        "URLs stay out of the event log"
    );
}

/// Without MODELREG_WEBHOOK_ALLOW_PRIVATE: refused at creation, and at delivery time for a
/// URL stored before (here: written into the database behind the API's back).
async fn private_addresses_are_refused(app: &TestApp) {
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/",
        "http://192.168.1.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let r = app.post("/api/v1/webhooks", json!({"url": url})).await;
        r.problem(422, "webhook_url_not_allowed");
    }
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(
        app,
        json!({"url": "https://hooks.example.com/x", "events": ["webhook.ping"]}),
    )
    .await;
    app.exec(&format!("update webhooks set url = '{}'", receiver.url()))
        .await;
    app.post_empty(&format!("/api/v1/webhooks/{id}/ping"))
        .await
        .ok(202);
    let log = log_until(app, &id, |l| {
        l.first().is_some_and(|d| d["attempts"].as_i64() >= Some(1))
    })
    .await;
    assert!(
        log[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("webhook_url_not_allowed"),
        "{log:?}"
    );
    assert!(receiver.received().is_empty());
}

const SETUP_AUTH: Setup = Setup {
    adjust: fast,
    auth: true,
    ..Setup::PLAIN
};

crate::backend_tests!(with super::SETUP_AUTH; limited_admin_sees_its_models_only);

const SETUP_CAPPED: Setup = Setup {
    auth: true,
    adjust: capped,
    ..Setup::PLAIN
};

fn capped(c: &mut Config) {
    c.webhooks.allow_private = true;
    c.webhooks.max_per_token = 2;
}

crate::backend_tests!(with super::SETUP_CAPPED; a_token_owns_a_bounded_number_of_webhooks);

/// A token owns `max_per_token` webhooks at most; deleting one makes room. Other tokens have
/// their own count.
async fn a_token_owns_a_bounded_number_of_webhooks(app: &TestApp) {
    let root = app.root_token().to_owned();
    let create = |token: String| {
        let req = app
            .client
            .post(app.url("/api/v1/webhooks"))
            .bearer_auth(token)
            .json(&json!({"url": "http://127.0.0.1:9/hook"}));
        async move { app.send(req).await }
    };
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/tokens"))
                .bearer_auth(&root)
                .json(&json!({"name": "limited", "scopes": ["admin"], "models": ["a*"]})),
        )
        .await;
    let limited = r.ok(201)["token"].as_str().unwrap().to_owned();
    let first = create(limited.clone()).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    create(limited.clone()).await.ok(201);
    create(limited.clone()).await.problem(409, "webhook_limit");
    create(root.clone()).await.ok(201);
    let del = app
        .client
        .delete(app.url(&format!("/api/v1/webhooks/{first}")))
        .bearer_auth(&limited);
    app.send(del).await.ok(204);
    create(limited).await.ok(201);
}

/// A glob-limited admin's webhooks see only its models, and it sees only its own webhooks.
async fn limited_admin_sees_its_models_only(app: &TestApp) {
    let root = app.root_token().to_owned();
    let as_ = |token: &str, req: reqwest::RequestBuilder| {
        let req = req.bearer_auth(token);
        async move { app.send(req).await }
    };
    let r = as_(
        &root,
        app.client
            .post(app.url("/api/v1/tokens"))
            .json(&json!({"name": "fraud-admin", "scopes": ["admin"], "models": ["fraud-*"]})),
    )
    .await;
    let limited = r.ok(201)["token"].as_str().unwrap().to_owned();
    let receiver = Receiver::start().await;
    let body = json!({"url": receiver.url(), "events": ["model.created"]});
    let r = as_(
        &limited,
        app.client.post(app.url("/api/v1/webhooks")).json(&body),
    )
    .await;
    let mine = r.ok(201)["id"].as_str().unwrap().to_owned();
    let everyone = Receiver::start().await;
    let body = json!({"url": everyone.url(), "events": ["model.created"]});
    let r = as_(
        &root,
        app.client.post(app.url("/api/v1/webhooks")).json(&body),
    )
    .await;
    let roots = r.ok(201)["id"].as_str().unwrap().to_owned();
    for name in ["fraud-a", "churn", "fraud-b"] {
        let req = app
            .client
            .post(app.url("/api/v1/models"))
            .json(&json!({"name": name}));
        as_(&root, req).await.ok(201);
    }
    everyone.wait_for(3).await;
    receiver.wait_for(2).await;
    let got = receiver.settle(2, QUIET).await;
    let mut models: Vec<String> = got
        .iter()
        .map(|r| r.json()["data"]["model"].as_str().unwrap().to_owned())
        .collect();
    models.sort();
    assert_eq!(models, ["fraud-a", "fraud-b"]);
    let listed = as_(&limited, app.client.get(app.url("/api/v1/webhooks"))).await;
    let ids: Vec<Value> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert_eq!(ids, [json!(mine)]);
    let theirs = app
        .client
        .get(app.url(&format!("/api/v1/webhooks/{roots}")));
    as_(&limited, theirs)
        .await
        .problem(404, "webhook_not_found");
    let all = as_(&root, app.client.get(app.url("/api/v1/webhooks"))).await;
    assert_eq!(all.ok(200)["items"].as_array().unwrap().len(), 2);
}

/// Pings do not pile up: while one is pending, another answers the same delivery. Old
/// deliveries go after their retention: succeeded ones after 7 days, failed ones after 30.
async fn one_pending_ping_and_old_deliveries_pruned(app: &TestApp) {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let (id, _) = subscribe(app, json!({"url": receiver.url(), "events": ["stage.*"]})).await;
    let path = format!("/api/v1/webhooks/{id}/ping");
    let first = app.post_empty(&path).await.ok(202)["delivery_id"].clone();
    for _ in 0..5 {
        let again = app.post_empty(&path).await.ok(202)["delivery_id"].clone();
        assert_eq!(again, first, "a second ping while one is pending");
    }
    receiver.restart().await;
    log_until(app, &id, |l| l.iter().all(|d| d["status"] == "succeeded")).await;
    let next = app.post_empty(&path).await.ok(202)["delivery_id"].clone();
    assert_ne!(next, first, "a new ping once the last one is done");
    log_until(app, &id, |l| {
        l.len() == 2 && l.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    // Age them: one succeeded 8 days ago, one failed 31 days ago, one failed 10 days ago.
    let ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%S%.6fZ")
    };
    app.exec(&format!(
        "update webhook_deliveries set delivered_at = '{}' where id = {first}",
        ago(8)
    ))
    .await;
    app.exec(&format!(
        "update webhook_deliveries set status = 'failed', delivered_at = null, \
                        last_attempt_at = '{}' where id = {next}",
        ago(31)
    ))
    .await;
    let third = app.post_empty(&path).await.ok(202)["delivery_id"].clone();
    log_until(app, &id, |l| l.len() == 3 && l[0]["status"] == "succeeded").await;
    app.exec(&format!(
        "update webhook_deliveries set status = 'failed', delivered_at = null, \
                        last_attempt_at = '{}' where id = {third}",
        ago(10)
    ))
    .await;
    let now = chrono::Utc::now();
    let pruned = app
        .state
        .store
        .prune_deliveries(
            now - chrono::Duration::days(7),
            now - chrono::Duration::days(30),
            1,
        )
        .await
        .unwrap();
    assert_eq!(pruned, 1, "a bounded batch");
    let pruned = app
        .state
        .store
        .prune_deliveries(
            now - chrono::Duration::days(7),
            now - chrono::Duration::days(30),
            100,
        )
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: Vec<Value> = deliveries(app, &id).await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0]["delivery_id"].as_i64().or(left[0]["id"].as_i64()),
        third.as_i64()
    );
}
