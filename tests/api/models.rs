use crate::helpers::TestApp;
use serde_json::json;

crate::backend_tests!(
    create_get_and_list,
    put_is_idempotent_and_updates,
    patch_merges_tags_and_null_deletes,
    delete_only_without_versions,
    list_filters_by_prefix_and_tags_and_pages,
);

async fn create_get_and_list(app: &TestApp) {
    let r = app
        .post("/api/v1/models", json!({"name": "fraud-detector", "description": "card fraud", "tags": {"team": "risk"}}))
        .await;
    let m = r.ok(201);
    assert_eq!(m["name"], "fraud-detector");
    assert_eq!(m["tags"], json!({"team": "risk"}));
    assert_eq!(m["latest_version"], json!(null));
    assert_eq!(m["stages"], json!({}));
    assert_eq!(r.headers["location"], "/api/v1/models/fraud-detector");
    let again = app
        .post("/api/v1/models", json!({"name": "fraud-detector"}))
        .await;
    again.problem(409, "model_exists");

    let got = app.get("/api/v1/models/fraud-detector").await;
    assert_eq!(got.ok(200)["description"], "card fraud");
    assert_eq!(got.body["created_by"], "anonymous");

    app.version("fraud-detector", json!({})).await;
    app.version("fraud-detector", json!({})).await;
    let got = app.get("/api/v1/models/fraud-detector").await;
    assert_eq!(got.ok(200)["latest_version"], 2);

    app.get("/api/v1/models/nope")
        .await
        .problem(404, "model_not_found");
}

async fn put_is_idempotent_and_updates(app: &TestApp) {
    let r = app
        .put("/api/v1/models/churn", json!({"tags": {"a": "1"}}))
        .await;
    assert_eq!(r.ok(201)["tags"], json!({"a": "1"}));
    let r = app
        .put("/api/v1/models/churn", json!({"tags": {"a": "1"}}))
        .await;
    assert_eq!(r.ok(200)["tags"], json!({"a": "1"}));
    // Fields left out stay as they are.
    let r = app
        .put("/api/v1/models/churn", json!({"description": "d"}))
        .await;
    assert_eq!(r.ok(200)["tags"], json!({"a": "1"}));
    assert_eq!(r.body["description"], "d");
    let r = app.put("/api/v1/models/churn", json!({})).await;
    assert_eq!(r.ok(200)["description"], "d");

    let events = app.get("/api/v1/events?model=churn").await;
    let actions: Vec<&str> = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Retries that change nothing record nothing.
    assert_eq!(actions, ["model.created", "model.updated"]);
}

async fn patch_merges_tags_and_null_deletes(app: &TestApp) {
    app.post(
        "/api/v1/models",
        json!({"name": "m", "description": "x", "tags": {"a": "1", "b": "2"}}),
    )
    .await
    .ok(201);
    let r = app
        .patch("/api/v1/models/m", json!({"tags": {"a": null, "c": "3"}}))
        .await;
    assert_eq!(r.ok(200)["tags"], json!({"b": "2", "c": "3"}));
    assert_eq!(r.body["description"], "x");
    let r = app
        .patch("/api/v1/models/m", json!({"description": null}))
        .await;
    assert_eq!(r.ok(200)["description"], json!(null));
    assert_eq!(r.body["tags"], json!({"b": "2", "c": "3"}));
    app.patch("/api/v1/models/nope", json!({}))
        .await
        .problem(404, "model_not_found");
}

async fn delete_only_without_versions(app: &TestApp) {
    app.model("empty").await;
    app.model("full").await;
    app.version("full", json!({})).await;
    app.delete("/api/v1/models/full")
        .await
        .problem(409, "model_not_empty");
    app.delete("/api/v1/models/empty").await.ok(204);
    app.get("/api/v1/models/empty")
        .await
        .problem(404, "model_not_found");
    app.delete("/api/v1/models/empty")
        .await
        .problem(404, "model_not_found");
    // The name can be used again.
    app.model("empty").await;
}

async fn list_filters_by_prefix_and_tags_and_pages(app: &TestApp) {
    for (name, team) in [("a-1", "x"), ("a-2", "y"), ("a_3", "x"), ("b-1", "x")] {
        app.post(
            "/api/v1/models",
            json!({"name": name, "tags": {"team": team, "k.v/w-z": "a:b"}}),
        )
        .await
        .ok(201);
    }
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = app.get("/api/v1/models?q=a").await;
    assert_eq!(names(&r), ["a-1", "a-2", "a_3"]);
    // `_` is not a wildcard.
    let r = app.get("/api/v1/models?q=a_").await;
    assert_eq!(names(&r), ["a_3"]);
    let r = app.get("/api/v1/models?tag=team:x").await;
    assert_eq!(names(&r), ["a-1", "a_3", "b-1"]);
    let r = app.get("/api/v1/models?tag=team:x&q=a").await;
    assert_eq!(names(&r), ["a-1", "a_3"]);
    let r = app.get("/api/v1/models?tag=team:x&tag=k.v/w-z:a:b").await;
    assert_eq!(names(&r), ["a-1", "a_3", "b-1"]);
    let r = app.get("/api/v1/models?tag=team:nobody").await;
    assert!(names(&r).is_empty());

    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/models?limit=3&cursor={c}"),
            None => "/api/v1/models?limit=3".to_owned(),
        };
        let r = app.get(&path).await;
        seen.extend(names(&r));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["a-1", "a-2", "a_3", "b-1"]);
}
