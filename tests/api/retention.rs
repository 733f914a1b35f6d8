//! Retention policies and storage accounting, on both backends (erasures on both artifact
//! stores), with a manual clock: each rule with a preview that matches what the job then
//! does; live and stacked versions kept whatever the policy says; keep rules; the job acting
//! by itself; a promote racing a run; bad policies refused; usage counting what is stored.

use crate::blobs::Blobs;
use crate::helpers::{Setup, TestApp};
use modelreg::clock::Clock;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

/// Passes driven by the case; a manual clock.
const MANUAL: Setup = Setup {
    adjust: |c| {
        c.retention = false;
        c.clock = Clock::manual(modelreg::domain::time::now());
    },
    blobs: &[Blobs::Folder, Blobs::S3],
    ..Setup::PLAIN
};

/// The server's own job runs, on a manual clock.
const JOB: Setup = Setup {
    adjust: |c| {
        c.clock = Clock::manual(modelreg::domain::time::now());
        c.retention_interval = Duration::from_secs(3600);
    },
    ..Setup::PLAIN
};

crate::backend_tests!(with super::MANUAL;
    each_rule_previews_what_the_job_then_does,
);

crate::backend_tests!(with super::JOB; the_job_applies_policies_by_itself);

crate::backend_tests!(with super::MANUAL_ONE_STORE;
    live_stacked_and_recently_staged_versions_are_kept,
    a_promote_racing_a_run_never_loses_a_live_version,
    usage_counts_what_is_stored,
    bad_policies_are_refused,
);

const MANUAL_ONE_STORE: Setup = Setup {
    blobs: &[],
    ..MANUAL
};

async fn pass(app: &TestApp) -> Vec<modelreg::store::RetentionRun> {
    modelreg::retention::pass(
        app.state.store.as_ref(),
        &app.state.blobs,
        &app.state.config.clock,
        Duration::from_secs(3600),
    )
    .await
    .expect("a pass")
}

fn advance(app: &TestApp, by: Duration) {
    app.state.config.clock.advance(by);
}

async fn ready(app: &TestApp, model: &str, acc: Option<f64>) -> i64 {
    let v = app.version(model, json!({})).await;
    app.send(
        app.client
            .put(app.url(&format!(
                "/api/v1/models/{model}/versions/{v}/artifacts/model.bin"
            )))
            .body(format!("weights of {v}")),
    )
    .await
    .ok(201);
    if let Some(acc) = acc {
        app.post(
            &format!("/api/v1/models/{model}/versions/{v}/metrics"),
            json!({"points": [{"key": "acc", "step": 0, "value": acc}]}),
        )
        .await
        .ok(200);
    }
    app.post_empty(&format!("/api/v1/models/{model}/versions/{v}/finalize"))
        .await
        .ok(200);
    v
}

async fn promote(app: &TestApp, model: &str, v: i64) {
    app.post(
        &format!("/api/v1/models/{model}/stages/production/promote"),
        json!({"version": v}),
    )
    .await
    .ok(200);
}

async fn status(app: &TestApp, model: &str, v: i64) -> String {
    let r = app
        .get(&format!("/api/v1/models/{model}/versions/{v}"))
        .await;
    r.ok(200)["status"].as_str().unwrap().to_owned()
}

/// `(version, action)` of a preview's actions, or `(version, kept_by)` of its kept.
fn pairs(preview: &Value, list: &str, key: &str) -> Vec<(i64, String)> {
    preview[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["version"].as_i64().unwrap(),
                a[key].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn owned(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(v, s)| (*v, (*s).to_owned())).collect()
}

async fn objects(app: &TestApp) -> usize {
    use futures::TryStreamExt;
    let listed: Vec<_> = app.state.blobs.list().try_collect().await.unwrap();
    listed.len()
}

async fn each_rule_previews_what_the_job_then_does(app: &TestApp) {
    app.model("m").await;
    let best = ready(app, "m", Some(0.9)).await; // 1: kept by keep_best
    let worse = ready(app, "m", Some(0.5)).await; // 2: archived
    let archived = ready(app, "m", Some(0.6)).await; // 3: erased
    app.post_empty(&format!("/api/v1/models/m/versions/{archived}/archive"))
        .await
        .ok(200);
    let failed = app.version("m", json!({})).await; // 4: erased
    app.post(
        &format!("/api/v1/models/m/versions/{failed}/fail"),
        json!({"reason": "diverged"}),
    )
    .await
    .ok(200);
    let pending = app.version("m", json!({})).await; // 5: failed
    let live = ready(app, "m", Some(0.1)).await; // 6: live
    promote(app, "m", live).await;
    let last = ready(app, "m", None).await; // 7: kept by keep_last
    let r = app
        .put(
            "/api/v1/models/m/retention",
            json!({"keep_last": 1, "keep_best": [{"order_by": "metric.acc:desc", "n": 1}],
                   "archive_after": "P30D", "erase_after": "P60D", "fail_pending_after": "P1D"}),
        )
        .await;
    let shown = r.ok(200).clone();
    assert_eq!(shown["archive_after"], "P30D");
    assert_eq!(shown["keep_best"][0]["order_by"], "metric.acc:desc");
    assert_eq!(shown["updated_by"], "anonymous");
    // Young: nothing to do.
    let preview = app.post_empty("/api/v1/models/m/retention/preview").await;
    assert_eq!(preview.ok(200)["actions"], json!([]));
    assert!(pass(app).await.iter().all(|r| r.done.is_empty()));

    // (The clock started as the app did, a moment before the versions were registered.)
    advance(app, 90 * DAY + Duration::from_secs(3600));
    let preview = app
        .post_empty("/api/v1/models/m/retention/preview")
        .await
        .ok(200)
        .clone();
    assert_eq!(
        pairs(&preview, "actions", "action"),
        owned(&[
            (worse, "archive"),
            (archived, "erase"),
            (failed, "erase"),
            (pending, "fail")
        ])
    );
    assert_eq!(
        pairs(&preview, "actions", "rule"),
        owned(&[
            (worse, "archive_after"),
            (archived, "erase_after"),
            (failed, "erase_after"),
            (pending, "fail_pending_after")
        ])
    );
    assert_eq!(
        pairs(&preview, "kept", "kept_by"),
        owned(&[
            (best, "keep_best metric.acc:desc 1"),
            (live, "live"),
            (last, "keep_last")
        ])
    );
    assert!(
        preview["actions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("90 days"),
        "{preview}"
    );
    // A preview changes nothing.
    assert_eq!(status(app, "m", worse).await, "ready");
    assert_eq!(objects(app).await, 5);

    let runs = pass(app).await;
    assert_eq!(runs.len(), 1);
    let done: Vec<(i64, String)> = runs[0]
        .done
        .iter()
        .map(|d| {
            (
                d.version,
                serde_json::to_value(d.action)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        done,
        pairs(&preview, "actions", "action"),
        "the job did what the preview said"
    );
    for (v, s) in [
        (best, "ready"),
        (worse, "archived"),
        (archived, "erased"),
        (failed, "erased"),
        (pending, "failed"),
        (live, "ready"),
        (last, "ready"),
    ] {
        assert_eq!(status(app, "m", v).await, s, "version {v}");
    }
    // The erased version's object is gone from the store; the others stay.
    assert_eq!(objects(app).await, 4);
    let events = app.get("/api/v1/events?model=m&limit=200").await;
    let events = events.ok(200)["items"].as_array().unwrap().clone();
    let by_retention: Vec<(String, i64)> = events
        .iter()
        .filter(|e| e["actor"] == "retention")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_retention,
        vec![
            ("version.archived".to_owned(), worse),
            ("version.erased".to_owned(), archived),
            ("version.erased".to_owned(), failed),
            ("version.failed".to_owned(), pending)
        ]
    );
    let erased = events
        .iter()
        .find(|e| e["action"] == "version.erased")
        .unwrap();
    assert!(
        erased["details"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("retention: archived, registered 90 days ago (erase_after P60D)"),
        "{erased}"
    );
    let view = app.get("/api/v1/models/m/retention").await;
    assert!(view.ok(200)["last_run_at"].is_string());

    // Versions 2 and 5, archived and failed now, older than erase_after, are next; the
    // policy is due again after the interval.
    let preview = app
        .post_empty("/api/v1/models/m/retention/preview")
        .await
        .ok(200)
        .clone();
    assert_eq!(
        pairs(&preview, "actions", "action"),
        owned(&[(worse, "erase"), (pending, "erase")])
    );
    assert!(pass(app).await.is_empty(), "not due before the interval");
    advance(app, Duration::from_secs(3600));
    let runs = pass(app).await;
    assert_eq!(runs[0].done.len(), 2);
    assert_eq!(status(app, "m", worse).await, "erased");
    assert_eq!(status(app, "m", pending).await, "erased");
    assert_eq!(objects(app).await, 3);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    // Numbers are never reused.
    assert_eq!(app.version("m", json!({})).await, 8);
}

async fn live_stacked_and_recently_staged_versions_are_kept(app: &TestApp) {
    app.model("m").await;
    let v1 = ready(app, "m", None).await;
    let v2 = ready(app, "m", None).await;
    let v3 = ready(app, "m", None).await;
    let v4 = ready(app, "m", None).await;
    // v1 beneath v2 on production; v3 was on it and was rolled back from; v4 never was.
    promote(app, "m", v1).await;
    promote(app, "m", v2).await;
    promote(app, "m", v3).await;
    app.post("/api/v1/models/m/stages/production/rollback", json!({}))
        .await
        .ok(200);
    advance(app, 10 * DAY);
    let policy = json!({"archive_after": "P1D", "erase_after": "P1D"});
    let preview = app
        .post("/api/v1/models/m/retention/preview", policy.clone())
        .await
        .ok(200)
        .clone();
    assert_eq!(
        pairs(&preview, "actions", "action"),
        owned(&[(v3, "archive"), (v4, "archive")])
    );
    assert_eq!(
        pairs(&preview, "kept", "kept_by"),
        owned(&[(v1, "rollback_target"), (v2, "live")])
    );
    // A proposed policy is not saved.
    app.get("/api/v1/models/m/retention")
        .await
        .problem(404, "retention_not_found");
    let within =
        json!({"keep_staged_within": "P30D", "archive_after": "P1D", "erase_after": "P1D"});
    let preview = app
        .post("/api/v1/models/m/retention/preview", within.clone())
        .await
        .ok(200)
        .clone();
    assert_eq!(
        pairs(&preview, "actions", "action"),
        owned(&[(v4, "archive")])
    );
    assert_eq!(preview["kept"][2]["kept_by"], "keep_staged_within");
    // Past the period, v3 goes too.
    advance(app, 30 * DAY);
    let preview = app
        .post("/api/v1/models/m/retention/preview", within.clone())
        .await
        .ok(200)
        .clone();
    assert_eq!(
        pairs(&preview, "actions", "action"),
        owned(&[(v3, "archive"), (v4, "archive")])
    );
    app.put("/api/v1/models/m/retention", policy).await.ok(200);
    pass(app).await;
    // And again after the interval: the archived ones are erased; live and stacked stay.
    advance(app, Duration::from_secs(3600));
    pass(app).await;
    for (v, s) in [(v1, "ready"), (v2, "ready"), (v3, "erased"), (v4, "erased")] {
        assert_eq!(status(app, "m", v).await, s, "version {v}");
    }
    // The rollback target is still one.
    app.post("/api/v1/models/m/stages/production/rollback", json!({}))
        .await
        .ok(200);
    let stage = app.get("/api/v1/models/m/stages/production").await;
    assert_eq!(stage.ok(200)["version"], v1);
}

async fn the_job_applies_policies_by_itself(app: &TestApp) {
    app.model("m").await;
    let v1 = ready(app, "m", None).await;
    let v2 = ready(app, "m", None).await;
    app.put(
        "/api/v1/models/m/retention",
        json!({"keep_last": 1, "archive_after": "P7D"}),
    )
    .await
    .ok(200);
    advance(app, 8 * DAY);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status(app, "m", v1).await != "archived" {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not archive version {v1}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(app, "m", v2).await, "ready");
    let events = app
        .get("/api/v1/events?model=m&action=version.archived")
        .await;
    let events = events.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"], "retention");
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("modelreg_retention_actions_total{action=\"archive\"}"),
        "{metrics}"
    );
    // Deleted, the policy does nothing more.
    assert_eq!(app.delete("/api/v1/models/m/retention").await.status, 204);
    app.delete("/api/v1/models/m/retention")
        .await
        .problem(404, "retention_not_found");
}

async fn a_promote_racing_a_run_never_loses_a_live_version(app: &TestApp) {
    app.model("m").await;
    let mut candidates = Vec::new();
    for _ in 0..6 {
        candidates.push(ready(app, "m", None).await);
    }
    app.put(
        "/api/v1/models/m/retention",
        json!({"archive_after": "P1D", "erase_after": "P1D"}),
    )
    .await
    .ok(200);
    advance(app, 2 * DAY);
    // Each promote races the run: either it lands first (the version is live and kept) or
    // the run does (the version is archived and the promote is refused).
    let promotes = async {
        let mut landed = Vec::new();
        for v in &candidates {
            let r = app
                .post(
                    "/api/v1/models/m/stages/production/promote",
                    json!({"version": v}),
                )
                .await;
            if r.status == 200 {
                landed.push(*v);
            } else {
                assert_eq!(r.status, 409, "{:?}", r.body);
            }
        }
        landed
    };
    let (landed, _) = tokio::join!(promotes, pass(app));
    let stage = app.get("/api/v1/models/m/stages/production").await;
    // Empty when the run archived every version before the first promote.
    let live = (stage.status == 200).then(|| stage.body["version"].as_i64().unwrap());
    assert_eq!(live, landed.last().copied());
    for v in &candidates {
        let s = status(app, "m", *v).await;
        if Some(*v) == live {
            assert_eq!(s, "ready", "the live version {v} is never archived");
        }
        if landed.contains(v) && Some(*v) != live {
            // Replaced on the stage: beneath in the stack, kept.
            assert_ne!(s, "erased", "version {v}");
        }
    }
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

async fn usage_counts_what_is_stored(app: &TestApp) {
    app.model("a").await;
    app.model("b").await;
    let v1 = ready(app, "a", Some(0.5)).await;
    ready(app, "a", Some(0.6)).await;
    let points: Vec<Value> = (0..1000)
        .map(|s| json!({"key": "loss", "step": s, "value": 1.0 / f64::from(s + 1)}))
        .collect();
    let pending = app.version("a", json!({})).await;
    app.post(
        &format!("/api/v1/models/a/versions/{pending}/metrics"),
        json!({"points": points}),
    )
    .await
    .ok(200);
    let u = app.get("/api/v1/models/a/usage").await.ok(200).clone();
    assert_eq!(u["model"], "a");
    assert_eq!(u["versions"]["ready"], 2);
    assert_eq!(u["versions"]["pending"], 1);
    assert_eq!(u["versions"]["total"], 3);
    assert_eq!(u["artifacts"]["count"], 2);
    // "weights of 1", "weights of 2".
    assert_eq!(u["artifacts"]["bytes"], 24);
    assert_eq!(u["metrics"]["series"], 3);
    assert_eq!(u["metrics"]["points"], 1002);
    let bytes = u["metrics"]["bytes"].as_i64().unwrap();
    assert!(bytes > 0, "{u}");
    assert_eq!(u["total_bytes"].as_i64().unwrap(), 24 + bytes);
    let empty = app.get("/api/v1/models/b/usage").await.ok(200).clone();
    assert_eq!(empty["total_bytes"], 0);
    assert_eq!(empty["versions"]["total"], 0);
    app.get("/api/v1/models/nope/usage")
        .await
        .problem(404, "model_not_found");

    let all = app.get("/api/v1/usage").await.ok(200).clone();
    assert_eq!(all["totals"]["artifacts"]["bytes"], 24);
    assert_eq!(all["totals"]["metrics"]["points"], 1002);
    let models: Vec<&str> = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, vec!["a", "b"], "most bytes first");
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("modelreg_storage_bytes{kind=\"artifacts\"}"),
        "{metrics}"
    );

    // Erasing gives it back.
    app.delete(&format!("/api/v1/models/a/versions/{v1}"))
        .await
        .ok(200);
    let u = app.get("/api/v1/models/a/usage").await.ok(200).clone();
    let by_status: BTreeMap<String, i64> = serde_json::from_value(u["versions"].clone()).unwrap();
    assert_eq!(by_status["erased"], 1);
    assert_eq!(by_status["ready"], 1);
    assert_eq!(u["artifacts"]["bytes"], 12);
    assert_eq!(u["metrics"]["points"], 1001);
}

async fn bad_policies_are_refused(app: &TestApp) {
    app.model("m").await;
    for (body, field) in [
        (json!({"keep_last": 3}), "archive_after"),
        (json!({"keep_last": 0, "archive_after": "P1D"}), "keep_last"),
        (json!({"archive_after": "30 days"}), "archive_after"),
        (json!({"erase_after": "PT0S"}), "erase_after"),
        (
            json!({"archive_after": "P1D", "keep_best": [{"order_by": "accuracy", "n": 1}]}),
            "keep_best[0].order_by",
        ),
        (
            json!({"archive_after": "P1D", "keep_best": [{"order_by": "metric.acc", "n": 0}]}),
            "keep_best[0].n",
        ),
    ] {
        let r = app.put("/api/v1/models/m/retention", body.clone()).await;
        let status = r.status;
        let p = r.body.clone();
        assert!(status == 422 || status == 400, "{body}: {status} {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
        // The preview of a proposed policy checks it the same way.
        let r = app
            .post("/api/v1/models/m/retention/preview", body.clone())
            .await;
        assert_eq!(r.status, status, "{body}");
    }
    app.put("/api/v1/models/m/retention", json!({"keep": 1}))
        .await
        .problem(422, "validation_failed");
    app.put(
        "/api/v1/models/nope/retention",
        json!({"archive_after": "P1D"}),
    )
    .await
    .problem(404, "model_not_found");
    app.get("/api/v1/models/m/retention")
        .await
        .problem(404, "retention_not_found");
    app.post_empty("/api/v1/models/m/retention/preview")
        .await
        .problem(404, "retention_not_found");
    app.delete("/api/v1/models/m/retention")
        .await
        .problem(404, "retention_not_found");
}
