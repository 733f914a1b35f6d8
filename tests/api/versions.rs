use crate::helpers::TestApp;
use serde_json::{Value, json};
use std::collections::BTreeSet;

crate::backend_tests!(
    register_and_get,
    concurrent_registrations_are_gapless,
    idempotency_key_replays_and_rejects_other_bodies,
    paging_returns_each_version_once_newest_first,
    list_filters_by_status_and_tag,
    list_filter_grammar,
    list_order_by_pages_through_ties_and_missing_values,
    list_carries_asked_metric_columns,
    patch_changes_only_description_and_tags,
    lifecycle_transitions,
);

async fn register_and_get(app: &TestApp) {
    app.model("m").await;
    let body = json!({
        "config": {"optimizer": {"name": "adam", "lr": 0.001}, "layers": [64, 32]},
        "description": "first try",
        "tags": {"dataset": "v2"},
        "source": {"git": "abc123"},
    });
    let r = app.post("/api/v1/models/m/versions", body.clone()).await;
    let v = r.ok(201);
    assert_eq!(v["model"], "m");
    assert_eq!(v["version"], 1);
    assert_eq!(v["status"], "pending");
    assert_eq!(v["config"], body["config"]);
    assert_eq!(v["source"], body["source"]);
    assert_eq!(v["tags"], body["tags"]);
    assert_eq!(v["created_by"], "anonymous");
    assert!(v["id"].as_str().is_some());
    assert_eq!(r.headers["location"], "/api/v1/models/m/versions/1");

    let got = app.get("/api/v1/models/m/versions/1").await;
    let mut expected = v.clone();
    let got_body = got.ok(200).clone();
    for k in ["artifacts", "metrics"] {
        expected.as_object_mut().unwrap().remove(k);
    }
    for (k, val) in expected.as_object().unwrap() {
        assert_eq!(&got_body[k], val, "field {k}");
    }

    let r = app
        .post("/api/v1/models/m/versions", json!({"finalize": true}))
        .await;
    assert_eq!(r.ok(201)["status"], "ready");
    assert_eq!(r.body["version"], 2);
    // An empty object is a valid registration.
    assert_eq!(app.version("m", json!({})).await, 3);

    app.get("/api/v1/models/m/versions/9")
        .await
        .problem(404, "version_not_found");
    app.get("/api/v1/models/nope/versions/1")
        .await
        .problem(404, "model_not_found");
    app.post("/api/v1/models/nope/versions", json!({}))
        .await
        .problem(404, "model_not_found");
}

async fn concurrent_registrations_are_gapless(app: &TestApp) {
    app.model("race").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/api/v1/models/race/versions");
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({"tags": {"i": i.to_string()}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                r.json::<Value>().await.unwrap()["version"]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let mut numbers = vec![];
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
    let listed = app.get("/api/v1/models/race/versions?limit=100").await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 16);
}

async fn idempotency_key_replays_and_rejects_other_bodies(app: &TestApp) {
    app.model("m").await;
    let url = app.url("/api/v1/models/m/versions");
    let body = json!({"config": {"lr": 0.1, "depth": 3}, "tags": {"run": "42"}});
    let first = app
        .send(
            app.client
                .post(&url)
                .header("Idempotency-Key", "run-42")
                .json(&body),
        )
        .await;
    assert_eq!(first.ok(201)["version"], 1);
    // Same body with keys in another order: the same JSON value, so a replay.
    let reordered = r#"{"tags": {"run": "42"}, "config": {"depth": 3, "lr": 0.1}}"#;
    let replay = app
        .send(
            app.client
                .post(&url)
                .header("Idempotency-Key", "run-42")
                .header("content-type", "application/json")
                .body(reordered),
        )
        .await;
    assert_eq!(replay.ok(200)["version"], 1);
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    let other = app
        .send(
            app.client
                .post(&url)
                .header("Idempotency-Key", "run-42")
                .json(&json!({"config": {"lr": 0.2}})),
        )
        .await;
    other.problem(422, "idempotency_key_reused");

    // Nothing was created by the replay or the refusal.
    let list = app.get("/api/v1/models/m/versions").await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 1);
    let events = app
        .get("/api/v1/events?model=m&action=version.created")
        .await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 1);

    // Keys are per model, and a new key makes a new version.
    let second = app
        .send(
            app.client
                .post(&url)
                .header("Idempotency-Key", "run-43")
                .json(&body),
        )
        .await;
    assert_eq!(second.ok(201)["version"], 2);
    app.model("other").await;
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/models/other/versions"))
                .header("Idempotency-Key", "run-42")
                .json(&body),
        )
        .await;
    assert_eq!(r.ok(201)["version"], 1);

    // Concurrent retries with one key: one version.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let req = app
                .client
                .post(&url)
                .header("Idempotency-Key", "burst")
                .json(&json!({"tags": {"b": "1"}}));
            tokio::spawn(async move {
                req.send().await.unwrap().json::<Value>().await.unwrap()["version"].as_i64()
            })
        })
        .collect();
    let mut got = BTreeSet::new();
    for t in tasks {
        got.insert(t.await.unwrap());
    }
    assert_eq!(got, BTreeSet::from([Some(3)]));

    let bad = app
        .send(
            app.client
                .post(&url)
                .header("Idempotency-Key", "")
                .json(&body),
        )
        .await;
    bad.problem(400, "invalid_idempotency_key");
}

async fn paging_returns_each_version_once_newest_first(app: &TestApp) {
    app.model("pages").await;
    for _ in 0..60 {
        app.version("pages", json!({})).await;
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/models/pages/versions?limit=7&cursor={c}"),
            None => "/api/v1/models/pages/versions?limit=7".to_owned(),
        };
        let r = app.get(&path).await;
        let items = r.ok(200)["items"].as_array().unwrap().clone();
        assert!(items.len() <= 7);
        seen.extend(items.iter().map(|v| v["version"].as_i64().unwrap()));
        pages += 1;
        // Inserts while paging do not disturb the pages already handed out.
        if pages == 3 {
            app.version("pages", json!({})).await;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=60).rev().collect::<Vec<_>>());
    assert_eq!(pages, 9);
}

async fn list_filters_by_status_and_tag(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"tags": {"dataset": "v1"}})).await;
    app.version(
        "m",
        json!({"tags": {"dataset": "v2", "gpu": "a100"}, "finalize": true}),
    )
    .await;
    app.version("m", json!({"tags": {"dataset": "v2"}})).await;
    let versions = |r: &crate::helpers::Resp| -> Vec<i64> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        versions(&app.get("/api/v1/models/m/versions").await),
        [3, 2, 1]
    );
    assert_eq!(
        versions(&app.get("/api/v1/models/m/versions?status=ready").await),
        [2]
    );
    assert_eq!(
        versions(&app.get("/api/v1/models/m/versions?status=pending").await),
        [3, 1]
    );
    assert_eq!(
        versions(&app.get("/api/v1/models/m/versions?tag=dataset:v2").await),
        [3, 2]
    );
    assert_eq!(
        versions(
            &app.get("/api/v1/models/m/versions?tag=dataset:v2&tag=gpu:a100")
                .await
        ),
        [2]
    );
    assert_eq!(
        versions(
            &app.get("/api/v1/models/m/versions?tag=dataset:v2&status=pending")
                .await
        ),
        [3]
    );
    assert!(versions(&app.get("/api/v1/models/m/versions?tag=dataset:v9").await).is_empty());
}

async fn patch_changes_only_description_and_tags(app: &TestApp) {
    app.model("m").await;
    app.version(
        "m",
        json!({"tags": {"a": "1"}, "config": {"x": 1}, "finalize": true}),
    )
    .await;
    let r = app
        .patch(
            "/api/v1/models/m/versions/1",
            json!({"description": "best", "tags": {"a": null, "b": "2"}}),
        )
        .await;
    assert_eq!(r.ok(200)["tags"], json!({"b": "2"}));
    assert_eq!(r.body["description"], "best");
    assert_eq!(r.body["config"], json!({"x": 1}));
    app.patch("/api/v1/models/m/versions/1", json!({"config": {"x": 2}}))
        .await
        .problem(422, "validation_failed");
    app.patch("/api/v1/models/m/versions/2", json!({}))
        .await
        .problem(404, "version_not_found");
}

async fn lifecycle_transitions(app: &TestApp) {
    app.model("m").await;
    let v = app.version("m", json!({})).await;
    let base = format!("/api/v1/models/m/versions/{v}");
    app.post_empty(&format!("{base}/archive"))
        .await
        .problem(409, "invalid_transition");
    let r = app.post_empty(&format!("{base}/finalize")).await;
    assert_eq!(r.ok(200)["status"], "ready");
    // A retried finalize is a 200 that records nothing.
    assert_eq!(
        app.post_empty(&format!("{base}/finalize")).await.ok(200)["status"],
        "ready"
    );
    app.post_empty(&format!("{base}/fail"))
        .await
        .problem(409, "invalid_transition");
    assert_eq!(
        app.post_empty(&format!("{base}/archive")).await.ok(200)["status"],
        "archived"
    );
    app.post_empty(&format!("{base}/finalize"))
        .await
        .problem(409, "invalid_transition");

    let w = app.version("m", json!({})).await;
    let r = app
        .post(
            &format!("/api/v1/models/m/versions/{w}/fail"),
            json!({"reason": "loss diverged"}),
        )
        .await;
    assert_eq!(r.ok(200)["status"], "failed");
    assert_eq!(r.body["status_reason"], "loss diverged");
    app.post_empty(&format!("/api/v1/models/m/versions/{w}/finalize"))
        .await
        .problem(409, "invalid_transition");

    let events = app.get("/api/v1/events?model=m").await;
    let actions: Vec<&str> = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "model.created",
            "version.created",
            "version.finalized",
            "version.archived",
            "version.created",
            "version.failed"
        ]
    );
}

/// Lists `GET …/versions` with the given query pairs; the version numbers and the next cursor.
async fn list(app: &TestApp, pairs: &[(&str, &str)]) -> (Vec<i64>, Option<String>) {
    let r = app
        .send(
            app.client
                .get(app.url("/api/v1/models/m/versions"))
                .query(pairs),
        )
        .await;
    let body = r.ok(200);
    let versions = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    (versions, body["next_cursor"].as_str().map(str::to_owned))
}

async fn log(app: &TestApp, version: i64, points: Value) {
    app.post(
        &format!("/api/v1/models/m/versions/{version}/metrics"),
        json!({ "points": points }),
    )
    .await
    .ok(200);
}

async fn list_filter_grammar(app: &TestApp) {
    app.model("m").await;
    // v1: acc 0.70 (last of two points), lr 0.01, team a, ready
    // v2: acc 0.90, lr 0.001, team b, pending
    // v3: no acc, lr "auto" (a string), team a, ready
    // v4: acc 0.90, nested depth 18, no team, failed
    let configs = [
        json!({"optimizer": {"lr": 0.01, "name": "adam"}, "arch": "resnet"}),
        json!({"optimizer": {"lr": 0.001, "name": "sgd"}, "arch": "resnet"}),
        json!({"optimizer": {"lr": "auto"}, "arch": "vit"}),
        json!({"depth": 18, "huge": 1e300}),
    ];
    let tags = [
        json!({"team": "a"}),
        json!({"team": "b"}),
        json!({"team": "a", "eval:set": "holdout/2"}),
        json!({}),
    ];
    for (c, t) in configs.iter().zip(&tags) {
        app.version("m", json!({"config": c, "tags": t})).await;
    }
    log(app, 1, json!([{"key": "val/acc", "step": 1, "value": 0.95}, {"key": "val/acc", "step": 2000, "value": 0.7}])).await;
    log(app, 2, json!([{"key": "val/acc", "step": 5, "value": 0.9}])).await;
    log(app, 4, json!([{"key": "val/acc", "step": 0, "value": 0.9}])).await;
    for v in [1, 3] {
        app.post_empty(&format!("/api/v1/models/m/versions/{v}/finalize"))
            .await
            .ok(200);
    }
    app.post(
        "/api/v1/models/m/versions/4/fail",
        json!({"reason": "diverged"}),
    )
    .await
    .ok(200);

    for (filter, expected) in [
        // The last value (at the highest step) counts, not any value.
        ("metric.val/acc > 0.8", vec![4, 2]),
        ("metric.val/acc >= 0.7", vec![4, 2, 1]),
        ("metric.val/acc = 0.9", vec![4, 2]),
        // A version without the metric matches no comparison on it, != included.
        ("metric.val/acc != 0.9", vec![1]),
        ("metric.val/acc < 1e9", vec![4, 2, 1]),
        ("metric.nothing > 0", vec![]),
        (r#"tag.team = "a""#, vec![3, 1]),
        (r#"tag.team != "a""#, vec![2]),
        (r#"tag.eval:set = "holdout/2""#, vec![3]),
        ("config.optimizer.lr < 0.005", vec![2]),
        ("config.optimizer.lr > 0", vec![2, 1]),
        // Numbers and strings do not compare with each other.
        (r#"config.optimizer.lr = "auto""#, vec![3]),
        (r#"config.arch != "vit""#, vec![2, 1]),
        ("config.depth >= 18", vec![4]),
        ("config.huge > 1e299", vec![4]),
        ("config.optimizer > 0", vec![]),
        ("status = ready", vec![3, 1]),
        (r#"status != "ready""#, vec![4, 2]),
        (
            r#"metric.val/acc > 0.5 and tag.team = "a" and status = ready"#,
            vec![1],
        ),
        (
            r#"config.optimizer.name = "sgd" AND metric.val/acc >= 0.9"#,
            vec![2],
        ),
    ] {
        assert_eq!(
            list(app, &[("filter", filter)]).await.0,
            expected,
            "{filter}"
        );
    }
    // Filters combine with status and tag parameters.
    assert_eq!(
        list(
            app,
            &[("filter", "metric.val/acc > 0"), ("status", "pending")]
        )
        .await
        .0,
        [2]
    );
    assert_eq!(
        list(app, &[("filter", "metric.val/acc > 0"), ("tag", "team:a")])
            .await
            .0,
        [1]
    );
    // And with order_by.
    assert_eq!(
        list(
            app,
            &[
                ("filter", r#"tag.team = "a""#),
                ("order_by", "metric.val/acc:desc")
            ]
        )
        .await
        .0,
        [1, 3]
    );
}

async fn list_order_by_pages_through_ties_and_missing_values(app: &TestApp) {
    app.model("m").await;
    // Eleven versions; loss values with ties, and versions 4 and 9 without the metric.
    let loss = [
        Some(0.5),
        Some(0.3),
        Some(0.5),
        None,
        Some(0.1),
        Some(0.3),
        Some(0.5),
        Some(-2.0),
        None,
        Some(0.3),
        Some(1e10),
    ];
    for (i, l) in loss.iter().enumerate() {
        let v = app.version("m", json!({})).await;
        assert_eq!(v, i as i64 + 1);
        if let Some(l) = l {
            log(app, v, json!([{"key": "loss", "step": 0, "value": l}])).await;
        }
    }
    let mut with: Vec<(f64, i64)> = loss
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (l, i as i64 + 1)))
        .collect();
    // Ties newest first, missing values last, in either direction.
    with.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let missing = [9, 4];
    let asc: Vec<i64> = with.iter().map(|p| p.1).chain(missing).collect();
    with.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let desc: Vec<i64> = with.iter().map(|p| p.1).chain(missing).collect();

    for (order, expected) in [
        ("metric.loss:asc", asc.clone()),
        ("metric.loss", asc),
        ("metric.loss:desc", desc),
        ("version:asc", (1..=11).collect()),
        ("version:desc", (1..=11).rev().collect()),
        ("created_at:desc", (1..=11).rev().collect()),
        ("created_at:asc", (1..=11).collect()),
    ] {
        // Whole, then in pages of every size: each version exactly once, in the same order.
        assert_eq!(
            list(app, &[("order_by", order)]).await.0,
            expected,
            "{order}"
        );
        for size in 1..=4 {
            let limit = size.to_string();
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut pairs = vec![("order_by", order), ("limit", limit.as_str())];
                if let Some(c) = &cursor {
                    pairs.push(("cursor", c.as_str()));
                }
                let (page, next) = list(app, &pairs).await;
                assert!(page.len() <= size);
                seen.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{order} in pages of {size}");
        }
    }

    // A cursor belongs to its order.
    let (_, cursor) = list(app, &[("order_by", "metric.loss:asc"), ("limit", "2")]).await;
    let r = app
        .send(
            app.client
                .get(app.url("/api/v1/models/m/versions"))
                .query(&[
                    ("order_by", "metric.loss:desc"),
                    ("cursor", cursor.unwrap().as_str()),
                ]),
        )
        .await;
    r.problem(400, "invalid_cursor");
}

async fn list_carries_asked_metric_columns(app: &TestApp) {
    app.model("m").await;
    for _ in 0..3 {
        app.post("/api/v1/models/m/versions", json!({}))
            .await
            .ok(201);
    }
    // v1: acc last 0.7 (at step 5, though 0.9 came later at step 2), loss 0.3; v2: loss only.
    log(
        app,
        1,
        json!([{"key": "acc", "step": 5, "value": 0.7}, {"key": "loss", "step": 1, "value": 0.3}]),
    )
    .await;
    log(app, 1, json!([{"key": "acc", "step": 2, "value": 0.9}])).await;
    log(app, 2, json!([{"key": "loss", "step": 9, "value": 0.25}])).await;
    let r = app
        .get("/api/v1/models/m/versions?metrics=acc,%20loss,acc,nope")
        .await;
    let items = r.ok(200)["items"].as_array().unwrap().clone();
    let cols: Vec<Value> = items.iter().map(|v| v["last_metrics"].clone()).collect();
    assert_eq!(
        cols,
        [
            json!({}),
            json!({"loss": 0.25}),
            json!({"acc": 0.7, "loss": 0.3})
        ]
    );
    // Without the parameter no item carries the field.
    let r = app.get("/api/v1/models/m/versions").await;
    assert!(r.ok(200)["items"][0].get("last_metrics").is_none());
    // A bad key, or too many keys, is the caller's error.
    let r = app
        .get("/api/v1/models/m/versions?metrics=acc,bad%20key")
        .await;
    assert_eq!(
        r.problem(400, "invalid_query_parameter")["field"],
        "metrics"
    );
    let many: Vec<String> = (0..21).map(|i| format!("k{i}")).collect();
    let r = app
        .get(&format!(
            "/api/v1/models/m/versions?metrics={}",
            many.join(",")
        ))
        .await;
    assert_eq!(
        r.problem(400, "invalid_query_parameter")["field"],
        "metrics"
    );
}
