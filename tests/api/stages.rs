use crate::helpers::{Resp, TestApp};
use modelreg::domain::stage::StageStack;
use serde_json::{Value, json};

crate::backend_tests!(
    rollback_walks_the_stack,
    rollback_to_version,
    promote_rules,
    expected_version_guards_every_change,
    clear_and_history,
    at_answers_from_history,
    archive_refused_while_in_stage,
    concurrent_promotes_one_winner,
    random_sequences_replay_to_the_current_pointer,
);

const STAGE: &str = "/api/v1/models/m/stages/production";

async fn setup(app: &TestApp, ready: usize) {
    app.model("m").await;
    for _ in 0..ready {
        app.version("m", json!({"finalize": true})).await;
    }
}

async fn promote(app: &TestApp, version: i64) -> Resp {
    app.post(&format!("{STAGE}/promote"), json!({"version": version}))
        .await
}

async fn current(app: &TestApp) -> Option<i64> {
    let r = app.get(STAGE).await;
    match r.status.as_u16() {
        200 => r.body["version"].as_i64(),
        404 => {
            r.problem(404, "stage_empty");
            None
        }
        s => panic!("unexpected {s}: {}", r.body),
    }
}

async fn rollback_walks_the_stack(app: &TestApp) {
    setup(app, 3).await;
    for v in 1..=3 {
        let r = promote(app, v).await;
        assert_eq!(r.ok(200)["version"], v);
        assert_eq!(r.body["stage"], "production");
        assert_eq!(
            r.body["previous_version"],
            if v == 1 { json!(null) } else { json!(v - 1) }
        );
        assert!(r.body["event_id"].as_i64().is_some());
    }
    let r = app.post_empty(&format!("{STAGE}/rollback")).await;
    assert_eq!(r.ok(200)["version"], 2);
    assert_eq!(r.body["previous_version"], 3);
    assert_eq!(current(app).await, Some(2));
    let r = app
        .post(&format!("{STAGE}/rollback"), json!({"reason": "still bad"}))
        .await;
    assert_eq!(r.ok(200)["version"], 1);
    app.post_empty(&format!("{STAGE}/rollback"))
        .await
        .problem(409, "nothing_to_roll_back");
    assert_eq!(current(app).await, Some(1));
    let m = app.get("/api/v1/models/m").await;
    assert_eq!(m.ok(200)["stages"], json!({"production": 1}));
}

async fn rollback_to_version(app: &TestApp) {
    setup(app, 4).await;
    for v in [1, 2, 1, 3, 4] {
        promote(app, v).await.ok(200);
    }
    let r = app
        .post(&format!("{STAGE}/rollback"), json!({"to_version": 4}))
        .await;
    assert_eq!(r.problem(409, "not_in_history")["field"], "to_version");
    app.post(&format!("{STAGE}/rollback"), json!({"to_version": 9}))
        .await
        .problem(409, "not_in_history");
    // Pops down to the highest occurrence of 1 beneath the top: stack is then [1, 2, 1].
    let r = app
        .post(&format!("{STAGE}/rollback"), json!({"to_version": 1}))
        .await;
    assert_eq!(r.ok(200)["version"], 1);
    assert_eq!(r.body["previous_version"], 4);
    let r = app.post_empty(&format!("{STAGE}/rollback")).await;
    assert_eq!(r.ok(200)["version"], 2);
    app.post(&format!("{STAGE}/rollback"), json!({"to_version": 3}))
        .await
        .problem(409, "not_in_history");
}

async fn promote_rules(app: &TestApp) {
    setup(app, 2).await;
    let pending = app.version("m", json!({})).await;
    promote(app, pending)
        .await
        .problem(409, "version_not_ready");
    let r = promote(app, 99).await;
    assert_eq!(r.problem(404, "version_not_found")["field"], "version");
    app.post_empty("/api/v1/models/m/versions/2/archive")
        .await
        .ok(200);
    promote(app, 2).await.problem(409, "version_not_ready");
    app.post(
        "/api/v1/models/nope/stages/production/promote",
        json!({"version": 1}),
    )
    .await
    .problem(404, "model_not_found");

    // Re-promoting the current version is a no-op that answers with the assignment in force.
    let first = promote(app, 1).await;
    let again = promote(app, 1).await;
    assert_eq!(again.ok(200)["previous_version"], 1);
    assert_eq!(again.body["event_id"], first.body["event_id"]);
    assert_eq!(again.body["at"], first.body["at"]);
    let h = app.get(&format!("{STAGE}/history")).await;
    assert_eq!(h.ok(200)["items"].as_array().unwrap().len(), 1);

    // Bad bodies.
    for (body, field) in [
        (json!({}), "."),
        (json!({"version": "1"}), "version"),
        (json!({"version": 0}), "version"),
        (json!({"version": 1, "forced": true}), "forced"),
        (
            json!({"version": 1, "expected_version": "x"}),
            "expected_version",
        ),
    ] {
        let r = app.post(&format!("{STAGE}/promote"), body.clone()).await;
        r.problem(422, "validation_failed");
        if field != "." {
            assert_eq!(r.body["field"], field, "{body}");
        }
    }
    app.post(
        "/api/v1/models/m/stages/Prod/promote",
        json!({"version": 1}),
    )
    .await
    .problem(400, "invalid_path_parameter");
    app.get("/api/v1/models/m/stages/staging")
        .await
        .problem(404, "stage_empty");
}

async fn expected_version_guards_every_change(app: &TestApp) {
    setup(app, 3).await;
    // `null` means "I believe the stage is empty".
    let r = app
        .post(
            &format!("{STAGE}/promote"),
            json!({"version": 1, "expected_version": null}),
        )
        .await;
    r.ok(200);
    app.post(
        &format!("{STAGE}/promote"),
        json!({"version": 2, "expected_version": null}),
    )
    .await
    .problem(409, "stage_conflict");
    app.post(
        &format!("{STAGE}/promote"),
        json!({"version": 2, "expected_version": 1}),
    )
    .await
    .ok(200);
    // Stale even though the promote itself would be a no-op.
    let r = app
        .post(
            &format!("{STAGE}/promote"),
            json!({"version": 2, "expected_version": 1}),
        )
        .await;
    assert_eq!(
        r.problem(409, "stage_conflict")["field"],
        "expected_version"
    );
    app.post(&format!("{STAGE}/rollback"), json!({"expected_version": 3}))
        .await
        .problem(409, "stage_conflict");
    assert_eq!(current(app).await, Some(2));
    let r = app
        .post(&format!("{STAGE}/rollback"), json!({"expected_version": 2}))
        .await;
    assert_eq!(r.ok(200)["version"], 1);
    let h = app.get(&format!("{STAGE}/history")).await;
    assert_eq!(h.ok(200)["items"].as_array().unwrap().len(), 3);
}

async fn clear_and_history(app: &TestApp) {
    setup(app, 2).await;
    app.post(
        &format!("{STAGE}/promote"),
        json!({"version": 1, "reason": "first release"}),
    )
    .await
    .ok(200);
    app.post(
        &format!("{STAGE}/promote"),
        json!({"version": 2, "reason": "better AUC"}),
    )
    .await
    .ok(200);
    app.post(
        &format!("{STAGE}/rollback"),
        json!({"reason": "latency regression"}),
    )
    .await
    .ok(200);
    let r = app.delete(&format!("{STAGE}?reason=decommissioned")).await;
    assert_eq!(r.ok(200)["version"], json!(null));
    assert_eq!(r.body["previous_version"], 1);
    assert_eq!(current(app).await, None);
    app.post_empty(&format!("{STAGE}/rollback"))
        .await
        .problem(409, "nothing_to_roll_back");
    // Clearing an empty stage changes and records nothing.
    assert_eq!(app.delete(STAGE).await.ok(200)["event_id"], json!(null));
    assert_eq!(
        app.get("/api/v1/models/m").await.ok(200)["stages"],
        json!({})
    );
    assert!(
        app.get("/api/v1/models/m/stages").await.ok(200)["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let h = app.get(&format!("{STAGE}/history")).await;
    let items = h.ok(200)["items"].as_array().unwrap().clone();
    let rows: Vec<(String, Value, Value, String)> = items
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "anonymous");
            assert!(e["at"].as_str().is_some());
            (
                e["action"].as_str().unwrap().to_owned(),
                e["from_version"].clone(),
                e["to_version"].clone(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "stage.cleared".to_owned(),
                json!(1),
                json!(null),
                "decommissioned".to_owned()
            ),
            (
                "stage.rolled_back".to_owned(),
                json!(2),
                json!(1),
                "latency regression".to_owned()
            ),
            (
                "stage.promoted".to_owned(),
                json!(1),
                json!(2),
                "better AUC".to_owned()
            ),
            (
                "stage.promoted".to_owned(),
                json!(null),
                json!(1),
                "first release".to_owned()
            ),
        ]
    );
    // Paged, newest first.
    let p1 = app.get(&format!("{STAGE}/history?limit=3")).await;
    let cursor = p1.ok(200)["next_cursor"].as_str().unwrap().to_owned();
    let p2 = app
        .get(&format!("{STAGE}/history?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(p2.ok(200)["items"][0]["event_id"], items[3]["event_id"]);
    // Stage events are in the audit log too.
    let ev = app
        .get("/api/v1/events?model=m&action=stage.promoted")
        .await;
    assert_eq!(ev.ok(200)["items"].as_array().unwrap().len(), 2);
    assert_eq!(ev.body["items"][0]["stage"], "production");

    app.post_empty("/api/v1/models/m/stages/staging/promote")
        .await
        .problem(400, "malformed_json");
    let r = app.get("/api/v1/models/m/stages").await;
    assert!(r.ok(200)["items"].as_array().unwrap().is_empty());
}

async fn at_answers_from_history(app: &TestApp) {
    setup(app, 2).await;
    let r1 = promote(app, 1).await;
    let t1 = r1.ok(200)["at"].as_str().unwrap().to_owned();
    let r2 = promote(app, 2).await;
    let t2 = r2.ok(200)["at"].as_str().unwrap().to_owned();
    let r3 = app.delete(STAGE).await;
    let t3 = r3.ok(200)["at"].as_str().unwrap().to_owned();
    assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");

    let at = |t: &str| format!("{STAGE}?at={t}");
    app.get(&at("2000-01-01T00:00:00Z"))
        .await
        .problem(404, "stage_empty");
    let r = app.get(&at(&t1)).await;
    assert_eq!(r.ok(200)["version"], 1);
    assert_eq!(r.body["since"], t1.as_str());
    assert_eq!(app.get(&at(&t2)).await.ok(200)["version"], 2);
    app.get(&at(&t3)).await.problem(404, "stage_empty");
    // Offsets are honoured (an unencoded `+` arrives as a space and is taken back).
    let r = app.get(&at("2999-01-01T01:00:00+01:00")).await;
    r.problem(404, "stage_empty");
    let r = app.get(&at("yesterday")).await;
    assert_eq!(r.problem(400, "invalid_query_parameter")["field"], "at");
}

async fn archive_refused_while_in_stage(app: &TestApp) {
    setup(app, 2).await;
    promote(app, 1).await.ok(200);
    app.post(
        "/api/v1/models/m/stages/staging/promote",
        json!({"version": 1}),
    )
    .await
    .ok(200);
    let r = app.post_empty("/api/v1/models/m/versions/1/archive").await;
    let detail = r.problem(409, "version_in_stage")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("production") && detail.contains("staging"),
        "{detail}"
    );
    promote(app, 2).await.ok(200);
    app.delete("/api/v1/models/m/stages/staging").await.ok(200);
    // Version 1 is only beneath the top now: archiving it is allowed, rolling back to it is not.
    app.post_empty("/api/v1/models/m/versions/1/archive")
        .await
        .ok(200);
    app.post_empty(&format!("{STAGE}/rollback"))
        .await
        .problem(409, "version_not_ready");
    assert_eq!(current(app).await, Some(2));
    app.delete("/api/v1/models/m")
        .await
        .problem(409, "model_not_empty");
}

async fn concurrent_promotes_one_winner(app: &TestApp) {
    setup(app, 17).await;
    promote(app, 1).await.ok(200);
    let tasks: Vec<_> = (2..=17)
        .map(|v| {
            let req = app
                .client
                .post(app.url(&format!("{STAGE}/promote")))
                .json(&json!({"version": v, "expected_version": 1}));
            tokio::spawn(async move { crate::helpers::into_resp(req.send().await.unwrap()).await })
        })
        .collect();
    let mut winners = vec![];
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => winners.push(r.body["version"].as_i64().unwrap()),
            _ => {
                r.problem(409, "stage_conflict");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one promote wins");
    assert_eq!(current(app).await, Some(winners[0]));
    let h = app.get(&format!("{STAGE}/history")).await;
    let items = h.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["to_version"], winners[0]);
}

/// A small deterministic generator, so that a failing sequence can be replayed.
async fn random_sequences_replay_to_the_current_pointer(app: &TestApp) {
    setup(app, 5).await;
    let (mut rng, seed) = crate::helpers::Rng::from_env();
    let mut model = StageStack::default();
    for step in 0..80 {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(10) {
            0..=4 => {
                let v = rng.below(5) as i64 + 1;
                let r = promote(app, v).await;
                assert_eq!(r.ok(200)["version"], v, "{ctx}");
                model.promote(v);
            }
            5..=7 => {
                let to = (rng.below(3) == 0).then(|| rng.below(5) as i64 + 1);
                let r = app
                    .post(&format!("{STAGE}/rollback"), json!({"to_version": to}))
                    .await;
                match model.clone().rollback("production", to) {
                    Ok(v) => {
                        assert_eq!(r.ok(200)["version"], v, "{ctx}");
                        model.rollback("production", to).unwrap();
                    }
                    Err(e) => {
                        r.problem(409, e.code);
                    }
                }
            }
            8 => {
                let r = app.delete(STAGE).await;
                r.ok(200);
                model.clear();
            }
            _ => {
                let exp = model.current();
                let r = app
                    .post(
                        &format!("{STAGE}/promote"),
                        json!({"version": 1, "expected_version": exp.map_or(9, |v| v + 1)}),
                    )
                    .await;
                r.problem(409, "stage_conflict");
            }
        }
        assert_eq!(current(app).await, model.current(), "{ctx}");
    }

    // Replaying the history, oldest first, reproduces the current pointer.
    let mut events = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{STAGE}/history?limit=25&cursor={c}"),
            None => format!("{STAGE}/history?limit=25"),
        };
        let r = app.get(&path).await;
        events.extend(r.ok(200)["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    events.reverse();
    let mut replay = StageStack::default();
    for e in &events {
        assert_eq!(e["from_version"].as_i64(), replay.current());
        match e["action"].as_str().unwrap() {
            "stage.promoted" => assert!(replay.promote(e["to_version"].as_i64().unwrap())),
            "stage.rolled_back" => {
                let to = e["to_version"].as_i64().unwrap();
                assert_eq!(replay.rollback("production", Some(to)).unwrap(), to);
            }
            "stage.cleared" => replay.clear(),
            other => panic!("unexpected action {other}"),
        }
    }
    assert_eq!(replay.current(), current(app).await);
    assert_eq!(replay, model);
}

crate::backend_tests!(model_with_only_empty_stages_can_be_deleted);

async fn model_with_only_empty_stages_can_be_deleted(app: &TestApp) {
    app.model("m").await;
    // Clearing a stage that never held anything leaves an empty stage row behind.
    app.delete(STAGE).await.ok(200);
    app.delete("/api/v1/models/m").await.ok(204);
}
