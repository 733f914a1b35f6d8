//! Promotion requests over real HTTP with authentication on (approvers are tokens): a promote
//! onto a stage needing approvals opens a request; approvals by others promote it once; the
//! checks run again at the final approval; self-approval, rejection, cancellation, expiry.
//! Every case on SQLite and Postgres.

use crate::helpers::{Resp, Setup, TestApp};
use modelreg::config::Config;
use serde_json::{Value, json};
use std::time::Duration;

const SETUP: Setup = Setup {
    auth: true,
    adjust: manual_clock,
    ..Setup::PLAIN
};

/// Requests live a day, on a clock that stands still until the expiry case moves it.
fn manual_clock(c: &mut Config) {
    c.policies.request_ttl = TTL;
    c.clock = modelreg::clock::Clock::manual(modelreg::domain::time::now());
}

const TTL: Duration = Duration::from_secs(86_400);

crate::backend_tests!(with super::SETUP;
    approvals_by_others_promote_once,
    final_approval_evaluates_the_checks_again,
    racing_approvers_promote_once,
    reject_cancel_and_expiry,
    expected_version_is_honoured_at_the_final_approval,
    approvals_count_people_not_tokens,
    one_pending_request_per_stage_and_candidate
);

const STAGE: &str = "/api/v1/models/m/stages/production";
const REQUESTS: &str = "/api/v1/models/m/promotion-requests";

/// The root token and three promote-scope tokens: requester, alice, bob.
struct People {
    root: String,
    requester: String,
    alice: String,
    bob: String,
}

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Resp {
    let req = app.client.request(method, app.url(path)).bearer_auth(token);
    let req = if body.is_null() { req } else { req.json(&body) };
    app.send(req).await
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Resp {
    call(app, token, reqwest::Method::POST, path, body).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> Resp {
    call(app, token, reqwest::Method::GET, path, Value::Null).await
}

/// Model `m` with `versions` ready versions (metric acc = 0.9 each), a policy on production,
/// and the people.
async fn setup(app: &TestApp, versions: usize, policy: Value) -> People {
    let root = app.root_token().to_owned();
    post(app, &root, "/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    for v in 1..=versions {
        post(
            app,
            &root,
            "/api/v1/models/m/versions",
            json!({"finalize": true}),
        )
        .await
        .ok(201);
        let points = json!({"points": [{"key": "acc", "step": 1, "value": 0.9}]});
        post(
            app,
            &root,
            &format!("/api/v1/models/m/versions/{v}/metrics"),
            points,
        )
        .await
        .ok(200);
    }
    call(
        app,
        &root,
        reqwest::Method::PUT,
        &format!("{STAGE}/policy"),
        policy,
    )
    .await
    .ok(200);
    let mut tokens = Vec::new();
    for name in ["requester", "alice", "bob"] {
        let body = json!({"name": name, "scopes": ["promote", "read"]});
        let r = post(app, &root, "/api/v1/tokens", body).await;
        tokens.push(r.ok(201)["token"].as_str().unwrap().to_owned());
    }
    People {
        root,
        requester: tokens[0].clone(),
        alice: tokens[1].clone(),
        bob: tokens[2].clone(),
    }
}

async fn request(app: &TestApp, p: &People, version: i64) -> String {
    let r = post(
        app,
        &p.requester,
        &format!("{STAGE}/promote"),
        json!({"version": version, "reason": "canary green"}),
    )
    .await;
    let opened = r.ok(202);
    assert_eq!(opened["status"], "pending");
    opened["request_id"].as_str().unwrap().to_owned()
}

async fn decide(app: &TestApp, token: &str, id: &str, what: &str) -> Resp {
    post(
        app,
        token,
        &format!("{REQUESTS}/{id}/{what}"),
        json!({"comment": "ok by me"}),
    )
    .await
}

async fn holder(app: &TestApp, p: &People) -> Value {
    let r = get(app, &p.root, STAGE).await;
    if r.status == 404 {
        return Value::Null;
    }
    r.ok(200)["version"].clone()
}

async fn approvals_by_others_promote_once(app: &TestApp) {
    let p = setup(
        app,
        1,
        json!({"approvals": 2, "require": "metric.acc >= 0.5"}),
    )
    .await;
    let id = request(app, &p, 1).await;
    assert_eq!(
        holder(app, &p).await,
        Value::Null,
        "a request promotes nothing yet"
    );
    let shown = get(app, &p.alice, &format!("{REQUESTS}/{id}")).await;
    let shown = shown.ok(200);
    assert_eq!(
        (
            shown["requested_by"].clone(),
            shown["approvals_needed"].clone()
        ),
        (json!("requester"), json!(2))
    );
    assert_eq!(shown["checks"][0]["check"], "require");

    decide(app, &p.requester, &id, "approve")
        .await
        .problem(403, "self_approval");
    let r = decide(app, &p.alice, &id, "approve").await;
    assert_eq!(r.ok(200)["status"], "pending");
    // The same approver twice counts once.
    let r = decide(app, &p.alice, &id, "approve").await;
    assert_eq!(r.ok(200)["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(holder(app, &p).await, Value::Null);

    let r = decide(app, &p.bob, &id, "approve").await;
    let done = r.ok(200);
    assert_eq!(done["status"], "approved");
    assert!(done["event_id"].is_i64(), "{done}");
    assert_eq!(holder(app, &p).await, 1);
    decide(app, &p.bob, &id, "approve")
        .await
        .problem(409, "request_not_pending");

    let h = get(app, &p.root, &format!("{STAGE}/history")).await;
    let items = h.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"], "requester");
    assert_eq!(items[0]["reason"], "canary green");
    assert_eq!(items[0]["request"]["approvers"], json!(["alice", "bob"]));
    assert_eq!(items[0]["request"]["request_id"], json!(id));
    assert_eq!(items[0]["checks"][0]["ok"], true);
    let events = get(app, &p.root, "/api/v1/events?model=m").await;
    let actions: Vec<String> = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .filter(|a| a.starts_with("promotion.") || a.starts_with("stage."))
        .collect();
    for a in [
        "promotion.requested",
        "promotion.approved",
        "stage.promoted",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} in {actions:?}");
    }
}

async fn final_approval_evaluates_the_checks_again(app: &TestApp) {
    let rules = json!([{"metric": "acc", "higher_is_better": true}]);
    let p = setup(app, 3, json!({"approvals": 1, "no_regression": rules})).await;
    // Version 1 holds the stage (approved), then 2 regresses and 3 is archived while their
    // requests wait.
    let first = request(app, &p, 1).await;
    decide(app, &p.alice, &first, "approve").await.ok(200);
    let regressed = request(app, &p, 2).await;
    let archived = request(app, &p, 3).await;
    let points = json!({"points": [{"key": "acc", "step": 2, "value": 0.5}]});
    post(app, &p.root, "/api/v1/models/m/versions/2/metrics", points)
        .await
        .ok(200);
    post(
        app,
        &p.root,
        "/api/v1/models/m/versions/3/archive",
        json!({}),
    )
    .await
    .ok(200);

    let r = decide(app, &p.alice, &regressed, "approve").await;
    let r = r.ok(200);
    assert_eq!(r["status"], "rejected");
    let c = &r["checks"][0];
    assert_eq!(
        (c["check"].clone(), c["ok"].clone(), c["observed"].clone()),
        (json!("no_regression:acc"), json!(false), json!(0.5))
    );
    let r = decide(app, &p.alice, &archived, "approve").await;
    let r = r.ok(200);
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["checks"][0]["check"], "version_not_ready");
    assert_eq!(holder(app, &p).await, 1);
    let rejected = get(app, &p.root, &format!("{REQUESTS}?status=rejected")).await;
    assert_eq!(rejected.ok(200)["items"].as_array().unwrap().len(), 2);
}

async fn racing_approvers_promote_once(app: &TestApp) {
    let p = setup(app, 2, json!({"approvals": 2})).await;
    for round in 0..3 {
        let version = round % 2 + 1;
        let id = request(app, &p, version).await;
        let (a, b) = tokio::join!(
            decide(app, &p.alice, &id, "approve"),
            decide(app, &p.bob, &id, "approve")
        );
        let statuses = [a.ok(200)["status"].clone(), b.ok(200)["status"].clone()];
        assert!(statuses.contains(&json!("approved")), "{statuses:?}");
        let shown = get(app, &p.root, &format!("{REQUESTS}/{id}")).await;
        assert_eq!(shown.ok(200)["status"], "approved");
        assert_eq!(holder(app, &p).await, version);
    }
    let h = get(app, &p.root, &format!("{STAGE}/history")).await;
    let items = h.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3, "one promote per request: {items:?}");
    for item in items {
        let mut approvers: Vec<String> =
            serde_json::from_value(item["request"]["approvers"].clone()).unwrap();
        approvers.sort();
        assert_eq!(approvers, ["alice", "bob"]);
    }
}

async fn reject_cancel_and_expiry(app: &TestApp) {
    let p = setup(app, 1, json!({"approvals": 1})).await;
    let rejected = request(app, &p, 1).await;
    let r = decide(app, &p.alice, &rejected, "reject").await;
    let r = r.ok(200);
    assert_eq!(
        (
            r["status"].clone(),
            r["decided_by"].clone(),
            r["decision_comment"].clone()
        ),
        (json!("rejected"), json!("alice"), json!("ok by me"))
    );
    decide(app, &p.bob, &rejected, "approve")
        .await
        .problem(409, "request_not_pending");

    let cancelled = request(app, &p, 1).await;
    decide(app, &p.alice, &cancelled, "cancel")
        .await
        .problem(403, "not_requester");
    let r = decide(app, &p.requester, &cancelled, "cancel").await;
    assert_eq!(r.ok(200)["status"], "cancelled");

    let expired = request(app, &p, 1).await;
    let pending = get(app, &p.root, &format!("{REQUESTS}?status=pending")).await;
    assert_eq!(pending.ok(200)["items"][0]["id"], json!(expired));
    let clock = &app.state.config.clock;
    clock.advance(TTL - Duration::from_secs(1));
    let pending = get(app, &p.root, &format!("{REQUESTS}?status=pending")).await;
    assert_eq!(pending.ok(200)["items"][0]["id"], json!(expired));
    clock.advance(Duration::from_secs(1));
    let pending = get(app, &p.root, &format!("{REQUESTS}?status=pending")).await;
    assert_eq!(pending.ok(200)["items"], json!([]));
    decide(app, &p.alice, &expired, "approve")
        .await
        .problem(409, "request_not_pending");
    let list = get(app, &p.root, &format!("{REQUESTS}?status=expired")).await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], json!(expired));
    let all = get(app, &p.root, REQUESTS).await;
    assert_eq!(all.ok(200)["items"].as_array().unwrap().len(), 3);
    get(app, &p.root, &format!("{REQUESTS}?status=maybe"))
        .await
        .problem(400, "invalid_query_parameter");
    get(app, &p.root, &format!("{REQUESTS}/not-a-uuid"))
        .await
        .problem(400, "invalid_path_parameter");
    get(app, &p.root, &format!("{REQUESTS}/{}", uuid::Uuid::nil()))
        .await
        .problem(404, "request_not_found");
    assert_eq!(holder(app, &p).await, Value::Null);
}

/// `expected_version` sent with the promote that opened a request is checked when the request
/// promotes: the stage moved meanwhile (a forced promote), so the approval rejects it.
async fn expected_version_is_honoured_at_the_final_approval(app: &TestApp) {
    let p = setup(app, 2, json!({"approvals": 1})).await;
    let body = json!({"version": 1, "expected_version": null});
    let r = post(app, &p.requester, &format!("{STAGE}/promote"), body).await;
    let stale = r.ok(202)["request_id"].as_str().unwrap().to_owned();
    // The same promote again answers the request already pending (one per candidate).
    let body = json!({"version": 1, "expected_version": null});
    let r = post(app, &p.requester, &format!("{STAGE}/promote"), body).await;
    assert_eq!(r.ok(202)["request_id"].as_str(), Some(stale.as_str()));
    let shown = get(app, &p.root, &format!("{REQUESTS}/{stale}")).await;
    assert_eq!(shown.ok(200)["expected_version"], Value::Null);

    let forced = json!({"version": 2, "force": true, "reason": "incident fix"});
    post(app, &p.root, &format!("{STAGE}/promote"), forced)
        .await
        .ok(200);
    let r = decide(app, &p.alice, &stale, "approve").await;
    let r = r.ok(200);
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["checks"][0]["check"], "stage_conflict");
    assert_eq!(holder(app, &p).await, 2);
    // Without an expected version a request promotes over whatever holds the stage.
    let body = json!({"version": 1});
    let r = post(app, &p.requester, &format!("{STAGE}/promote"), body).await;
    let plain = r.ok(202)["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        decide(app, &p.bob, &plain, "approve").await.ok(200)["status"],
        "approved"
    );
    assert_eq!(holder(app, &p).await, 1);
}

/// A token made for `subject`, with promote and read scope.
async fn token_of(app: &TestApp, root: &str, name: &str, subject: &str) -> String {
    let body = json!({"name": name, "subject": subject, "scopes": ["promote", "read"]});
    let r = post(app, root, "/api/v1/tokens", body).await;
    let made = r.ok(201);
    assert_eq!(made["subject"], subject);
    made["token"].as_str().unwrap().to_owned()
}

/// People hold several tokens: the requester's second token is still the requester, and two
/// tokens of one approver count once. Events and history name the subjects.
async fn approvals_count_people_not_tokens(app: &TestApp) {
    let p = setup(app, 1, json!({"approvals": 2})).await;
    let requester_laptop = token_of(app, &p.root, "laptop", "requester").await;
    let bob_ci = token_of(app, &p.root, "bob-ci", "bob").await;
    let id = request(app, &p, 1).await;
    let r = decide(app, &requester_laptop, &id, "approve").await;
    r.problem(403, "self_approval");
    decide(app, &p.bob, &id, "approve").await.ok(200);
    let r = decide(app, &bob_ci, &id, "approve").await;
    let shown = r.ok(200);
    assert_eq!(shown["status"], "pending", "bob's second token counts once");
    assert_eq!(shown["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(shown["requested_by_subject"], "requester");
    assert_eq!(holder(app, &p).await, Value::Null);
    let r = decide(app, &p.alice, &id, "approve").await;
    assert_eq!(r.ok(200)["status"], "approved");
    assert_eq!(holder(app, &p).await, 1);
    let h = get(app, &p.root, &format!("{STAGE}/history")).await;
    let entry = h.ok(200)["items"][0].clone();
    assert_eq!(entry["subject"], "requester");
    assert_eq!(entry["request"]["approvers"], json!(["bob", "alice"]));
    let events = get(
        app,
        &p.root,
        "/api/v1/events?model=m&action=promotion.approved",
    )
    .await;
    let last = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["subject"], "alice");
    assert_eq!(last["details"]["approvers"], json!(["bob", "alice"]));
}

/// A second promote of the same candidate onto the same stage answers the request already
/// pending instead of opening another; another candidate opens its own.
async fn one_pending_request_per_stage_and_candidate(app: &TestApp) {
    let p = setup(app, 2, json!({"approvals": 1})).await;
    let first = request(app, &p, 1).await;
    let again = request(app, &p, 1).await;
    assert_eq!(again, first);
    let other = request(app, &p, 2).await;
    assert_ne!(other, first);
    let list = get(app, &p.root, &format!("{REQUESTS}?status=pending")).await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 2);
    // Once it is decided, a new promote opens a new request.
    decide(app, &p.requester, &first, "cancel").await.ok(200);
    let third = request(app, &p, 1).await;
    assert_ne!(third, first);
}
