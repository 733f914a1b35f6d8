use crate::helpers::TestApp;
use serde_json::{Value, json};
use std::collections::BTreeSet;

crate::backend_tests!(
    register_and_get,
    concurrent_registrations_are_gapless,
    idempotency_key_replays_and_rejects_other_bodies,
    paging_returns_each_version_once_newest_first,
    list_filters_by_status_and_tag,
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
