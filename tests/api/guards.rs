//! Stage guards on both backends, with a manual clock and the evaluator's passes driven by
//! the test (the background evaluator is off): a breach rolls back within a period, with
//! actor, reason and both events; too few points decide nothing; grace; a relative
//! condition; holding after a trip and re-arming; `notify`; promotes racing the evaluator;
//! and a restart that does not roll back twice.

use crate::helpers::{Setup, TestApp};
use modelreg::clock::Clock;
use modelreg::domain::guard::State;
use serde_json::{Value, json};
use std::time::Duration;

crate::backend_tests!(with super::MANUAL;
    a_breach_rolls_back_and_the_guard_holds,
    too_few_points_and_grace_decide_nothing,
    a_relative_condition_compares_with_the_previous_version,
    notify_only_records,
    promotes_racing_the_evaluator_never_lose_a_judgement,
    a_restart_does_not_roll_back_twice,
    bad_guards_are_refused
);

const MANUAL: Setup = Setup {
    adjust: |c| {
        c.guards = false;
        c.clock = Clock::manual(modelreg::domain::time::now());
    },
    ..Setup::PLAIN
};

const PERIOD: Duration = Duration::from_secs(15);

fn clock(app: &TestApp) -> Clock {
    app.state.config.clock.clone()
}

async fn pass(app: &TestApp) -> Vec<modelreg::store::GuardPass> {
    modelreg::guards::pass(app.state.store.as_ref(), &clock(app))
        .await
        .expect("a pass")
}

/// A model with `n` ready versions, promoted onto production in order.
async fn live(app: &TestApp, model: &str, n: i64) {
    app.model(model).await;
    for v in 1..=n {
        app.version(model, json!({"finalize": true})).await;
        let r = app
            .post(
                &format!("/api/v1/models/{model}/stages/production/promote"),
                json!({"version": v}),
            )
            .await;
        r.ok(200);
    }
}

/// Points of `key` for a version at the clock's time minus `ago` (one per value, a second
/// apart, steps from `first_step`).
async fn points(
    app: &TestApp,
    model: &str,
    v: i64,
    key: &str,
    first_step: i64,
    ago: Duration,
    values: &[f64],
) {
    let base = clock(app).now() - chrono::Duration::from_std(ago).unwrap();
    let points: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let at = base + chrono::Duration::milliseconds(i as i64 * 10);
            json!({"key": key, "step": first_step + i as i64, "value": value,
                   "timestamp": modelreg::domain::time::rfc3339::format(&at)})
        })
        .collect();
    app.post(
        &format!("/api/v1/models/{model}/versions/{v}/metrics"),
        json!({"points": points}),
    )
    .await
    .ok(200);
}

async fn on_stage(app: &TestApp, model: &str) -> Option<i64> {
    let r = app
        .get(&format!("/api/v1/models/{model}/stages/production"))
        .await;
    r.body["version"].as_i64()
}

async fn events(app: &TestApp, model: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/events?model={model}&limit=1000"))
        .await;
    r.ok(200)["items"].as_array().unwrap().clone()
}

async fn guard(app: &TestApp, model: &str, body: Value) -> Value {
    let r = app
        .put(
            &format!("/api/v1/models/{model}/stages/production/guard"),
            body,
        )
        .await;
    r.ok(200).clone()
}

fn error_rate(min_points: i64, action: &str) -> Value {
    json!({"conditions": [{"metric": "prod/error_rate", "aggregate": "mean", "window": "PT10M",
                           "op": ">", "threshold": 0.05}],
           "min_points": min_points, "period": "PT15S", "action": action})
}

async fn a_breach_rolls_back_and_the_guard_holds(app: &TestApp) {
    live(app, "m", 2).await;
    // A policy that every promote must pass (an approval): it never blocks the guard's
    // rollback, as it never blocks any rollback.
    app.put(
        "/api/v1/models/m/stages/production/policy",
        json!({"approvals": 1}),
    )
    .await
    .ok(200);
    let g = guard(app, "m", error_rate(5, "rollback")).await;
    assert_eq!(g["state"], "insufficient_data", "{g}");
    assert_eq!(g["version"], 2);
    // Healthy traffic: judged, nothing happens.
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        1,
        Duration::from_secs(60),
        &[0.01; 10],
    )
    .await;
    let done = pass(app).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, State::Ok);
    assert_eq!(on_stage(app, "m").await, Some(2));
    // Not due again before its period.
    assert!(pass(app).await.is_empty());
    // Errors climb: within one period the stage is back on 1.
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        100,
        Duration::from_secs(5),
        &[0.5; 20],
    )
    .await;
    clock(app).advance(PERIOD);
    let done = pass(app).await;
    assert_eq!(done[0].state, State::Tripped);
    assert!(done[0].rollback_event_id.is_some());
    assert_eq!(on_stage(app, "m").await, Some(1));
    let history = app.get("/api/v1/models/m/stages/production/history").await;
    let last = &history.ok(200)["items"][0];
    assert_eq!(last["action"], "stage.rolled_back");
    assert_eq!(last["actor"], "guard");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("mean of prod/error_rate over PT10M is 0.336667 (> 0.05), 30 points"),
        "{reason}"
    );
    let all = events(app, "m").await;
    let n = all.len();
    assert_eq!(all[n - 2]["action"], "stage.guard_tripped");
    assert_eq!(all[n - 2]["version"], 2);
    assert_eq!(all[n - 2]["details"]["stage"], "production");
    assert_eq!(
        all[n - 2]["stage"],
        Value::Null,
        "stage history is for stage changes"
    );
    assert_eq!(all[n - 2]["actor"], "guard");
    assert_eq!(all[n - 1]["action"], "stage.rolled_back");
    assert_eq!(all[n - 1]["event_id"], json!(done[0].rollback_event_id));

    // Holding: version 1 breaches too, and nothing more is rolled back.
    points(
        app,
        "m",
        1,
        "prod/error_rate",
        1,
        Duration::from_secs(5),
        &[0.9; 10],
    )
    .await;
    clock(app).advance(PERIOD);
    let done = pass(app).await;
    assert_eq!(done[0].state, State::Holding);
    assert_eq!(on_stage(app, "m").await, Some(1));
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    let shown = shown.ok(200);
    assert_eq!(shown["state"], "holding");
    let listed = app.get("/api/v1/models/m/guards").await;
    assert_eq!(listed.ok(200)["items"][0]["state"], "holding");
    assert_eq!(listed.body["items"][0]["stage"], "production");
    assert_eq!(shown["trip"]["version"], 2);
    assert!(
        shown["trip"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("guard: ")
    );

    // Re-armed by a person: judged again, and with nothing beneath 1 the trip is recorded
    // and holds (a person decides).
    let r = app
        .post_empty("/api/v1/models/m/stages/production/guard/rearm")
        .await;
    assert_eq!(
        r.ok(200)["state"],
        "tripped",
        "re-armed, it sees the breach at once"
    );
    clock(app).advance(PERIOD);
    let done = pass(app).await;
    assert_eq!(done[0].state, State::Tripped);
    assert_eq!(done[0].rollback_event_id, None);
    assert_eq!(on_stage(app, "m").await, Some(1));
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    let reason = shown.ok(200)["trip"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("not rolled back"), "{reason}");

    app.delete("/api/v1/models/m/stages/production/policy")
        .await;
    // A promote ends holding (its answer says what the guard held on): the new version is
    // judged on its own points.
    let r = app
        .post(
            "/api/v1/models/m/stages/production/promote",
            json!({"version": 2}),
        )
        .await;
    let held = &r.ok(200)["guard"];
    assert_eq!(held["version"], 1, "{held}");
    assert!(held["reason"].as_str().unwrap().contains("not rolled back"));
    let r = app
        .post(
            "/api/v1/models/m/stages/staging/promote",
            json!({"version": 2}),
        )
        .await;
    assert!(r.ok(200).get("guard").is_none(), "no guard, no note");
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    assert_eq!(
        shown.ok(200)["state"],
        "tripped",
        "2's window still breaches"
    );
    let events_before = events(app, "m").await.len();
    assert_eq!(
        app.get("/api/v1/models/m/stages/production/guard")
            .await
            .body["trip"],
        Value::Null
    );
    clock(app).advance(PERIOD);
    assert_eq!(pass(app).await[0].state, State::Tripped);
    assert_eq!(on_stage(app, "m").await, Some(1));
    assert_eq!(events(app, "m").await.len(), events_before + 2);
}

async fn too_few_points_and_grace_decide_nothing(app: &TestApp) {
    live(app, "m", 2).await;
    let mut body = error_rate(10, "rollback");
    body["grace"] = json!("PT5M");
    guard(app, "m", body).await;
    // Inside the grace after the promote: terrible numbers, no decision.
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        1,
        Duration::from_secs(1),
        &[1.0; 20],
    )
    .await;
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    let shown = shown.ok(200);
    assert_eq!(shown["state"], "ok");
    assert!(shown["grace_until"].is_string());
    assert_eq!(pass(app).await[0].state, State::Ok);
    assert_eq!(on_stage(app, "m").await, Some(2));
    // After the grace, but the points have left the 10-minute window: too few to judge.
    clock(app).advance(Duration::from_secs(11 * 60));
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        100,
        Duration::from_secs(1),
        &[1.0; 9],
    )
    .await;
    let done = pass(app).await;
    assert_eq!(done[0].state, State::InsufficientData);
    assert_eq!(on_stage(app, "m").await, Some(2));
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    let verdict = &shown.ok(200)["evaluation"][0];
    assert_eq!(verdict["points"], 9);
    assert_eq!(verdict["state"], "insufficient_data");
    // The tenth point: enough.
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        200,
        Duration::from_secs(1),
        &[1.0],
    )
    .await;
    clock(app).advance(PERIOD);
    assert_eq!(pass(app).await[0].state, State::Tripped);
    assert_eq!(on_stage(app, "m").await, Some(1));
}

async fn a_relative_condition_compares_with_the_previous_version(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"finalize": true})).await;
    app.version("m", json!({"finalize": true})).await;
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": 1}),
    )
    .await
    .ok(200);
    // Version 1 served at 100 ms before 2 replaced it.
    points(
        app,
        "m",
        1,
        "prod/latency_ms",
        1,
        Duration::from_secs(30),
        &[100.0; 10],
    )
    .await;
    clock(app).advance(Duration::from_secs(1));
    // The stage's `since` is the database's time: the manual clock runs from the real one.
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": 2}),
    )
    .await
    .ok(200);
    guard(
        app,
        "m",
        json!({"conditions": [{"metric": "prod/latency_ms", "aggregate": "mean",
            "window": "PT5M", "worse_than_previous_by": 0.2, "higher_is_better": false}],
            "min_points": 5, "action": "rollback"}),
    )
    .await;
    clock(app).advance(Duration::from_secs(60));
    points(
        app,
        "m",
        2,
        "prod/latency_ms",
        1,
        Duration::from_secs(10),
        &[115.0; 10],
    )
    .await;
    let shown = app.get("/api/v1/models/m/stages/production/guard").await;
    let v = &shown.ok(200)["evaluation"][0];
    assert_eq!(v["state"], "ok", "{v}");
    assert_eq!(v["baseline"], 100.0);
    assert_eq!(v["limit"], 120.0);
    assert_eq!(pass(app).await[0].state, State::Ok);
    points(
        app,
        "m",
        2,
        "prod/latency_ms",
        100,
        Duration::from_secs(5),
        &[200.0; 10],
    )
    .await;
    clock(app).advance(PERIOD);
    assert_eq!(pass(app).await[0].state, State::Tripped);
    assert_eq!(on_stage(app, "m").await, Some(1));
}

async fn notify_only_records(app: &TestApp) {
    live(app, "m", 2).await;
    guard(app, "m", error_rate(1, "notify")).await;
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        1,
        Duration::from_secs(5),
        &[0.9; 3],
    )
    .await;
    let done = pass(app).await;
    assert_eq!(done[0].state, State::Tripped);
    assert_eq!(done[0].rollback_event_id, None);
    assert_eq!(on_stage(app, "m").await, Some(2), "notify changes nothing");
    let all = events(app, "m").await;
    let tripped: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "stage.guard_tripped")
        .collect();
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0]["details"]["action"], "notify");
    // It holds: one event per trip, not one per period.
    for _ in 0..3 {
        clock(app).advance(PERIOD);
        assert_eq!(pass(app).await[0].state, State::Holding);
    }
    let again = events(app, "m").await;
    assert_eq!(again.len(), all.len());
}

async fn promotes_racing_the_evaluator_never_lose_a_judgement(app: &TestApp) {
    live(app, "m", 1).await;
    for _ in 0..12 {
        app.version("m", json!({"finalize": true})).await;
    }
    guard(app, "m", error_rate(1, "rollback")).await;
    // Every version breaches: each pass that sees one live rolls it back.
    for v in 1..=13 {
        points(
            app,
            "m",
            v,
            "prod/error_rate",
            1,
            Duration::from_secs(5),
            &[0.9; 2],
        )
        .await;
    }
    for round in 0..12 {
        let target = 2 + round;
        clock(app).advance(PERIOD);
        // A promote and a pass at once, in either order.
        let promote = app.post(
            "/api/v1/models/m/stages/production/promote",
            json!({"version": target}),
        );
        let evaluate = pass(app);
        let (p, _) = tokio::join!(promote, evaluate);
        p.ok(200);
    }
    // Every rollback by the guard undid the very version its trip judged, and nothing else.
    let all = events(app, "m").await;
    let mut judged = None;
    let mut rollbacks = 0;
    for e in &all {
        match e["action"].as_str() {
            Some("stage.guard_tripped") => judged = e["version"].as_i64(),
            Some("stage.rolled_back") if e["actor"] == "guard" => {
                rollbacks += 1;
                assert_eq!(
                    e["details"]["from_version"].as_i64(),
                    judged,
                    "a rollback of a version the guard did not judge: {e}"
                );
                judged = None;
            }
            _ => {}
        }
    }
    assert!(rollbacks > 0, "the races left no rollback at all");
}

async fn a_restart_does_not_roll_back_twice(app: &TestApp) {
    live(app, "m", 3).await;
    guard(app, "m", error_rate(1, "rollback")).await;
    points(
        app,
        "m",
        3,
        "prod/error_rate",
        1,
        Duration::from_secs(5),
        &[0.9; 3],
    )
    .await;
    points(
        app,
        "m",
        2,
        "prod/error_rate",
        1,
        Duration::from_secs(5),
        &[0.9; 3],
    )
    .await;
    assert_eq!(pass(app).await[0].state, State::Tripped);
    assert_eq!(on_stage(app, "m").await, Some(2));
    // Another server on the same database, later: the trip holds there too.
    let clock = clock(app);
    clock.advance(PERIOD);
    let other = TestApp::spawn(app.db_url.clone(), move |c| {
        c.guards = false;
        c.clock = clock;
    })
    .await;
    let done = modelreg::guards::pass(other.state.store.as_ref(), &other.state.config.clock)
        .await
        .unwrap();
    assert_eq!(done[0].state, State::Holding);
    assert_eq!(on_stage(app, "m").await, Some(2), "no second rollback");
    other.stop().await;
}

async fn bad_guards_are_refused(app: &TestApp) {
    live(app, "m", 1).await;
    let path = "/api/v1/models/m/stages/production/guard";
    let r = app.get(path).await;
    r.problem(404, "guard_not_found");
    let r = app
        .post_empty("/api/v1/models/m/stages/production/guard/rearm")
        .await;
    r.problem(404, "guard_not_found");
    let r = app.delete(path).await;
    r.problem(404, "guard_not_found");
    for (body, field) in [
        (
            json!({"conditions": [], "action": "rollback"}),
            "conditions",
        ),
        (
            json!({"conditions": [{"metric": "x", "aggregate": "mean", "window": "ten minutes", "op": ">", "threshold": 1}], "action": "rollback"}),
            "conditions[0].window",
        ),
        (
            json!({"conditions": [{"metric": "x", "aggregate": "mean", "window": "PT1M", "op": ">", "threshold": 1}], "action": "rollback", "period": "P1D"}),
            "period",
        ),
        (
            json!({"conditions": [{"metric": "x", "aggregate": "mean", "window": "PT1M", "op": ">", "threshold": 1}], "action": "rollback", "min_points": 0}),
            "min_points",
        ),
    ] {
        let r = app.put(path, body).await;
        assert_eq!(r.problem(422, "validation_failed")["field"], field);
    }
    let r = app
        .put(path, json!({"conditions": [], "action": "explode"}))
        .await;
    r.problem(422, "validation_failed");
    let r = app
        .put(
            "/api/v1/models/nope/stages/production/guard",
            error_rate(1, "notify"),
        )
        .await;
    r.problem(404, "model_not_found");
    guard(app, "m", error_rate(1, "notify")).await;
    let r = app.delete(path).await;
    assert_eq!(r.status, 204);
    let r = app.get(path).await;
    r.problem(404, "guard_not_found");
}
