//! Stage policies: each check passing and failing with what it expected and observed, the dry
//! run that changes nothing, bad policies refused at PUT, force for admins only and recorded,
//! rollback never blocked. Every case on SQLite and Postgres.

use crate::helpers::{Resp, Setup, TestApp};
use serde_json::{Value, json};

crate::backend_tests!(
    policy_crud_and_bad_input,
    require_names_the_failing_clauses,
    no_regression_compares_with_the_stage_holder,
    dry_run_changes_nothing,
    rollback_is_never_blocked,
    dry_run_shows_the_approvals_a_promote_would_wait_for
);

crate::backend_tests!(with super::AUTH; force_is_for_admins_with_a_reason);

crate::backend_tests!(with super::MANUAL_CLOCK; after_stage_and_min_soak);

/// The app's clock stands still until the case moves it.
const MANUAL_CLOCK: Setup = Setup {
    adjust: |c| c.clock = modelreg::clock::Clock::manual(modelreg::domain::time::now()),
    ..Setup::PLAIN
};

const AUTH: Setup = Setup {
    auth: true,
    ..Setup::PLAIN
};

const POLICY: &str = "/api/v1/models/m/stages/production/policy";

/// A ready version of `m` with these metric values (at step 1) and tags.
async fn version(app: &TestApp, metrics: &[(&str, f64)], tags: Value) -> i64 {
    let v = app
        .version("m", json!({"finalize": true, "tags": tags}))
        .await;
    let points: Vec<Value> = metrics
        .iter()
        .map(|(k, x)| json!({"key": k, "step": 1, "value": x}))
        .collect();
    if !points.is_empty() {
        app.post(
            &format!("/api/v1/models/m/versions/{v}/metrics"),
            json!({ "points": points }),
        )
        .await
        .ok(200);
    }
    v
}

async fn promote(app: &TestApp, stage: &str, body: Value) -> Resp {
    app.post(&format!("/api/v1/models/m/stages/{stage}/promote"), body)
        .await
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

/// The version on the stage (null: none).
async fn holder(app: &TestApp, stage: &str) -> Value {
    let r = app.get(&format!("/api/v1/models/m/stages/{stage}")).await;
    if r.status == 404 {
        r.problem(404, "stage_empty");
        return Value::Null;
    }
    r.ok(200)["version"].clone()
}

async fn policy_crud_and_bad_input(app: &TestApp) {
    app.model("m").await;
    app.get(POLICY).await.problem(404, "policy_not_found");
    let body = json!({
        "require": "metric.acc >= 0.9 and tag.team = \"fraud\"",
        "no_regression": [{"metric": "acc", "higher_is_better": true, "tolerance": 0.01}],
        "after_stage": "staging",
        "min_soak": "P1DT12H",
    });
    let put = app.put(POLICY, body).await;
    let p = put.ok(200);
    assert_eq!(p["min_soak"], "P1DT12H");
    assert_eq!(p["approvals"], 0);
    assert_eq!(p["no_regression"][0]["tolerance"], 0.01);
    assert_eq!(app.get(POLICY).await.ok(200)["require"], p["require"]);
    // Replaced whole by the next PUT.
    let p = app.put(POLICY, json!({"approvals": 2})).await;
    assert_eq!(p.ok(200)["require"], Value::Null);

    let bad = app.put(POLICY, json!({"require": "metric.acc >= "})).await;
    let e = bad.problem(400, "invalid_filter");
    assert_eq!(
        (e["field"].clone(), e["position"].clone()),
        (json!("require"), json!(14))
    );
    for (body, field) in [
        (json!({"approvals": 6}), "approvals"),
        (json!({"min_soak": "PT1H"}), "min_soak"),
        (
            json!({"after_stage": "staging", "min_soak": "an hour"}),
            "min_soak",
        ),
        (json!({"after_stage": "Not A Stage"}), "after_stage"),
        (
            json!({"no_regression": [{"metric": "acc", "higher_is_better": true, "tolerance": -1}]}),
            "no_regression[0].tolerance",
        ),
        (
            json!({"no_regression": [{"metric": "a b", "higher_is_better": true}]}),
            "no_regression[0].metric",
        ),
    ] {
        let r = app.put(POLICY, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
    }
    let r = app
        .put(POLICY, json!({"approvals": 1, "reviewers": 2}))
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    app.put("/api/v1/models/nope/stages/production/policy", json!({}))
        .await
        .problem(404, "model_not_found");

    assert_eq!(app.delete(POLICY).await.status, 204);
    app.get(POLICY).await.problem(404, "policy_not_found");
    app.delete(POLICY).await.problem(404, "policy_not_found");
    let events = app.get("/api/v1/events?action=policy.changed").await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 3);
}

async fn require_names_the_failing_clauses(app: &TestApp) {
    app.model("m").await;
    let low = version(app, &[("acc", 0.8)], json!({"team": "fraud"})).await;
    let good = version(app, &[("acc", 0.95)], json!({"team": "fraud"})).await;
    let other = version(app, &[("acc", 0.97)], json!({"team": "ads"})).await;
    let require = "metric.acc >= 0.9 and tag.team = \"fraud\"";
    app.put(POLICY, json!({ "require": require })).await.ok(200);

    let r = promote(app, "production", json!({"version": low})).await;
    let e = r.problem(409, "policy_violation");
    let c = check(e, "require");
    assert_eq!(c["ok"], false);
    assert_eq!(c["expected"], require);
    assert_eq!(c["observed"]["failing"], json!(["metric.acc >= 0.9"]));
    let r = promote(app, "production", json!({"version": other})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(
        check(e, "require")["observed"]["failing"],
        json!(["tag.team = \"fraud\""])
    );
    assert_eq!(holder(app, "production").await, Value::Null);

    let r = promote(app, "production", json!({"version": good})).await;
    let ok = r.ok(200);
    assert_eq!(ok["version"], good);
    assert_eq!(check(ok, "require")["ok"], true);
}

async fn no_regression_compares_with_the_stage_holder(app: &TestApp) {
    app.model("m").await;
    let first = version(app, &[("acc", 0.9), ("loss", 0.3)], json!({})).await;
    let worse = version(app, &[("acc", 0.85), ("loss", 0.25)], json!({})).await;
    let close = version(app, &[("acc", 0.895), ("loss", 0.31)], json!({})).await;
    let bare = version(app, &[], json!({})).await;
    let rules = json!([
        {"metric": "acc", "higher_is_better": true, "tolerance": 0.01},
        {"metric": "loss", "higher_is_better": false, "tolerance": 0.02},
    ]);
    app.put(POLICY, json!({ "no_regression": rules }))
        .await
        .ok(200);

    // An empty stage: nothing to regress from.
    let r = promote(app, "production", json!({"version": first})).await;
    assert_eq!(check(r.ok(200), "no_regression:acc")["ok"], true);

    let r = promote(app, "production", json!({"version": worse})).await;
    let e = r.problem(409, "policy_violation");
    let acc = check(e, "no_regression:acc");
    assert_eq!(acc["ok"], false);
    assert_eq!(acc["observed"], 0.85);
    let min = acc["expected"]["min"].as_f64().unwrap();
    assert!((min - 0.89).abs() < 1e-12, "{acc}");
    assert!(
        acc["detail"]
            .as_str()
            .unwrap()
            .contains("version 1 on production")
    );
    let loss = check(e, "no_regression:loss");
    assert_eq!(loss["ok"], true);
    assert!((loss["expected"]["max"].as_f64().unwrap() - 0.32).abs() < 1e-12);

    let r = promote(app, "production", json!({"version": bare})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(check(e, "no_regression:acc")["observed"], Value::Null);

    let r = promote(app, "production", json!({"version": close})).await;
    r.ok(200);
    assert_eq!(holder(app, "production").await, close);
}

async fn after_stage_and_min_soak(app: &TestApp) {
    app.model("m").await;
    let v = version(app, &[], json!({})).await;
    let body = json!({"after_stage": "staging", "min_soak": "PT1H"});
    app.put(POLICY, body).await.ok(200);

    let r = promote(app, "production", json!({"version": v})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(check(e, "after_stage")["ok"], false);
    assert_eq!(check(e, "after_stage")["expected"], "staging");
    assert_eq!(check(e, "min_soak")["ok"], false);

    promote(app, "staging", json!({"version": v})).await.ok(200);
    let r = promote(app, "production", json!({"version": v})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(check(e, "after_stage")["ok"], true);
    let soak = check(e, "min_soak");
    assert_eq!(
        (soak["ok"].clone(), soak["expected"].clone()),
        (json!(false), json!("PT1H"))
    );
    assert_eq!(soak["observed"], "PT0S");

    let clock = &app.state.config.clock;
    clock.advance(std::time::Duration::from_secs(3599));
    let r = promote(app, "production", json!({"version": v})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(check(e, "min_soak")["observed"], "PT59M59S");
    clock.advance(std::time::Duration::from_secs(1));
    let r = promote(app, "production", json!({"version": v})).await;
    assert_eq!(check(r.ok(200), "min_soak")["ok"], true);
}

async fn dry_run_changes_nothing(app: &TestApp) {
    app.model("m").await;
    let low = version(app, &[("acc", 0.5)], json!({})).await;
    let high = version(app, &[("acc", 0.99)], json!({})).await;
    app.put(POLICY, json!({"require": "metric.acc > 0.9"}))
        .await
        .ok(200);
    let before = app.get("/api/v1/events").await.ok(200)["items"].clone();

    let r = promote(app, "production", json!({"version": low, "dry_run": true})).await;
    let d = r.ok(200);
    assert_eq!(d["allowed"], false);
    assert_eq!(check(d, "require")["ok"], false);
    let r = promote(app, "production", json!({"version": high, "dry_run": true})).await;
    assert_eq!(r.ok(200)["allowed"], true);
    // A stage without a policy allows anything ready.
    let r = promote(app, "canary", json!({"version": low, "dry_run": true})).await;
    assert_eq!(r.ok(200), &json!({"allowed": true, "checks": []}));
    // Still the same input errors as a real promote.
    promote(app, "production", json!({"version": 9, "dry_run": true}))
        .await
        .problem(404, "version_not_found");

    assert_eq!(holder(app, "production").await, Value::Null);
    let stages = app.get("/api/v1/models/m/stages").await;
    assert_eq!(stages.ok(200)["items"], json!([]), "no stage row was left");
    let after = app.get("/api/v1/events").await.ok(200)["items"].clone();
    assert_eq!(before, after);
}

async fn rollback_is_never_blocked(app: &TestApp) {
    app.model("m").await;
    let a = version(app, &[("acc", 0.91)], json!({})).await;
    let b = version(app, &[("acc", 0.95)], json!({})).await;
    promote(app, "production", json!({"version": a}))
        .await
        .ok(200);
    promote(app, "production", json!({"version": b}))
        .await
        .ok(200);
    // A policy that version a would fail now.
    let body = json!({"require": "metric.acc >= 0.99", "approvals": 1});
    app.put(POLICY, body).await.ok(200);
    let r = app
        .post(
            "/api/v1/models/m/stages/production/rollback",
            json!({"reason": "p99 latency doubled"}),
        )
        .await;
    assert_eq!(r.ok(200)["version"], a);
    let h = app.get("/api/v1/models/m/stages/production/history").await;
    let top = &h.ok(200)["items"][0];
    assert_eq!(
        (top["action"].clone(), top["reason"].clone()),
        (json!("stage.rolled_back"), json!("p99 latency doubled"))
    );
}

/// A dry run on a stage asking for approvals is not allowed as such: a promote would open a
/// request and wait.
async fn dry_run_shows_the_approvals_a_promote_would_wait_for(app: &TestApp) {
    app.model("m").await;
    let v = version(app, &[], json!({})).await;
    app.put(POLICY, json!({"approvals": 2})).await.ok(200);
    let r = promote(app, "production", json!({"version": v, "dry_run": true})).await;
    let d = r.ok(200);
    assert_eq!(d["allowed"], false);
    let c = check(d, "approvals");
    assert_eq!(
        (c["ok"].clone(), c["expected"].clone()),
        (json!(false), json!(2))
    );
    let r = promote(app, "production", json!({"version": v})).await;
    assert!(r.ok(202)["request_id"].is_string());
}

async fn force_is_for_admins_with_a_reason(app: &TestApp) {
    let root = app.root_token().to_owned();
    let as_ = |token: &str, path: &str, body: Value| {
        let req = app
            .client
            .post(app.url(path))
            .bearer_auth(token)
            .json(&body);
        app.send(req)
    };
    as_(&root, "/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    let v = as_(
        &root,
        "/api/v1/models/m/versions",
        json!({"finalize": true}),
    )
    .await
    .ok(201)["version"]
        .as_i64()
        .unwrap();
    let policy = app
        .client
        .put(app.url(POLICY))
        .bearer_auth(&root)
        .json(&json!({"require": "metric.acc > 0.9"}));
    app.send(policy).await.ok(200);
    let operator = as_(
        &root,
        "/api/v1/tokens",
        json!({"name": "operator", "scopes": ["promote"]}),
    )
    .await
    .ok(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let promote = "/api/v1/models/m/stages/production/promote";
    let forced = json!({"version": v, "force": true, "reason": "hotfix, acc logged later"});
    as_(&operator, promote, forced.clone())
        .await
        .problem(403, "insufficient_scope");
    as_(&operator, promote, json!({"version": v}))
        .await
        .problem(409, "policy_violation");
    let r = as_(&root, promote, json!({"version": v, "force": true})).await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "reason");

    let r = as_(&root, promote, forced).await;
    let done = r.ok(200);
    assert_eq!(
        (done["forced"].clone(), done["version"].clone()),
        (json!(true), json!(v))
    );
    let history = app
        .client
        .get(app.url("/api/v1/models/m/stages/production/history"))
        .bearer_auth(&root);
    let h = app.send(history).await;
    let top = &h.ok(200)["items"][0];
    assert_eq!(top["forced"], true);
    assert_eq!(top["checks"][0]["check"], "require");
    assert_eq!(top["checks"][0]["ok"], false);
    assert_eq!(top["reason"], "hotfix, acc logged later");
}

/// 16 clients promote different candidates onto a stage with a `no_regression` policy while
/// every candidate's metric is being logged, on Postgres. The checks are evaluated under the
/// stage lock with the compared series share-locked, so each promote in the history compared
/// against the version that really held the stage when it committed (the chain of holders has
/// no gap), passed with the values it read, and no promote regressed by more than the tolerance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_promotes_and_metrics_never_regress_postgres() {
    crate::helpers::run_case(crate::helpers::Backend::Postgres, Setup::PLAIN, racing).await;
}

async fn racing(app: &TestApp) {
    const CANDIDATES: i64 = 16;
    const TOLERANCE: f64 = 0.05;
    app.model("m").await;
    for v in 1..=CANDIDATES {
        version(app, &[("acc", 0.5 + v as f64 / 100.0)], json!({})).await;
    }
    let rules = json!([{"metric": "acc", "higher_is_better": true, "tolerance": TOLERANCE}]);
    app.put(POLICY, json!({ "no_regression": rules }))
        .await
        .ok(200);
    // Loggers: each version's accuracy drifts up and down step by step.
    let loggers = (1..=CANDIDATES).map(|v| async move {
        for step in 2..40 {
            let drift = ((step * 7 + v * 3) % 11) as f64 / 100.0 - 0.05;
            let value = 0.5 + v as f64 / 100.0 + drift;
            let points = json!({"points": [{"key": "acc", "step": step, "value": value}]});
            app.post(&format!("/api/v1/models/m/versions/{v}/metrics"), points)
                .await
                .ok(200);
        }
    });
    // Promoters: each tries its own candidate again and again; refusals are expected.
    let promoters = (1..=CANDIDATES).map(|v| async move {
        let mut promoted = 0;
        for _ in 0..12 {
            let r = promote(app, "production", json!({"version": v})).await;
            match r.status.as_u16() {
                200 => promoted += 1,
                409 => assert_eq!(r.body["code"], "policy_violation", "{}", r.body),
                s => panic!("promote answered {s}: {}", r.body),
            }
        }
        promoted
    });
    let (_, promoted) = tokio::join!(
        futures::future::join_all(loggers),
        futures::future::join_all(promoters)
    );
    assert!(promoted.iter().sum::<i32>() > 1, "{promoted:?}");

    let mut history = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/models/m/stages/production/history?limit=1000&cursor={c}"),
            None => "/api/v1/models/m/stages/production/history?limit=1000".to_owned(),
        };
        let page = app.get(&path).await.ok(200).clone();
        history.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    history.reverse();
    let mut holder: Option<i64> = None;
    for entry in &history {
        assert_eq!(entry["action"], "stage.promoted");
        assert_eq!(entry["from_version"].as_i64(), holder, "a gap in {entry}");
        let c = &entry["checks"][0];
        assert_eq!(c["ok"], true, "{entry}");
        if holder.is_some() {
            let observed = c["observed"].as_f64().unwrap();
            let min = c["expected"]["min"].as_f64().unwrap();
            assert!(observed >= min, "{entry}");
        }
        holder = entry["to_version"].as_i64();
    }
}
