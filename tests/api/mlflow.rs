//! The MLflow-compatible API: shapes and error codes as MLflow's server answers them, over the
//! same models the native API sees. (examples/mlflow_check.py drives it with MLflow's client.)

use crate::helpers::{Resp, TestApp};
use serde_json::{Value, json};

crate::backend_tests!(
    experiments_are_models,
    errors_come_in_mlflow_shape,
    search_pages_and_filters_by_name
);

#[track_caller]
fn mlflow_error(r: &Resp, status: u16, error_code: &str) -> String {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(
        r.headers["content-type"], "application/json",
        "MLflow's errors are plain JSON"
    );
    assert_eq!(r.body["error_code"], error_code, "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty());
    assert_eq!(r.body.as_object().map(|o| o.len()), Some(2), "{}", r.body);
    message
}

async fn experiments_are_models(app: &TestApp) {
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "fraud-detector", "tags": [{"key": "team", "value": "risk"}]}),
        )
        .await;
    let id = r.ok(200)["experiment_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "the model's id, as 32 hex digits");

    // The native API sees the model, with its tags, created in one recorded event.
    let m = app.get("/api/v1/models/fraud-detector").await;
    let m = m.ok(200);
    assert_eq!(m["id"].as_str().unwrap().replace('-', ""), id);
    assert_eq!(m["tags"], json!({"team": "risk"}));
    let ev = app.get("/api/v1/events?action=model.created").await;
    assert_eq!(ev.ok(200)["items"][0]["model"], "fraud-detector");

    for r in [
        app.get(&format!(
            "/api/2.0/mlflow/experiments/get?experiment_id={id}"
        ))
        .await,
        app.get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-detector")
            .await,
    ] {
        let e = &r.ok(200)["experiment"];
        assert_eq!(e["experiment_id"], id.as_str());
        assert_eq!(e["name"], "fraud-detector");
        assert_eq!(e["lifecycle_stage"], "active");
        assert_eq!(e["artifact_location"], format!("mlflow-artifacts:/{id}"));
        assert_eq!(e["tags"], json!([{"key": "team", "value": "risk"}]));
        let created = e["creation_time"].as_i64().unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            (now - 60_000..=now).contains(&created),
            "milliseconds: {created}"
        );
    }

    // MLflow's Default experiment, id "0", is the model `default`.
    let r = app
        .get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    app.model("default").await;
    let r = app
        .get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await;
    assert_eq!(r.ok(200)["experiment"]["name"], "Default");
    let r = app
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default")
        .await;
    assert_eq!(r.ok(200)["experiment"]["experiment_id"], "0");
}

async fn errors_come_in_mlflow_shape(app: &TestApp) {
    let create = |name: &str| json!({"name": name});
    app.post("/api/2.0/mlflow/experiments/create", create("churn"))
        .await
        .ok(200);
    // As MLflow's server: a duplicate is 400 RESOURCE_ALREADY_EXISTS.
    let r = app
        .post("/api/2.0/mlflow/experiments/create", create("churn"))
        .await;
    mlflow_error(&r, 400, "RESOURCE_ALREADY_EXISTS");
    // A name that is not a model name is refused, saying why.
    for bad in ["My Experiment", "Churn", ""] {
        let r = app
            .post("/api/2.0/mlflow/experiments/create", create(bad))
            .await;
        let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
        assert!(message.contains("not a modelreg model name"), "{message}");
    }
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "x", "artifact_location": "s3://elsewhere"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // Missing things are 404 RESOURCE_DOES_NOT_EXIST, whatever the id looks like.
    for q in [
        "get?experiment_id=12345",
        "get?experiment_id=01a22068c88676a082c932f320d3404b",
        "get-by-name?experiment_name=nope",
        "get-by-name?experiment_name=No%20Such%20Name",
    ] {
        let r = app.get(&format!("/api/2.0/mlflow/experiments/{q}")).await;
        mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    }
    // Bad requests: a missing parameter, malformed JSON, a JSON body of the wrong type.
    let r = app.get("/api/2.0/mlflow/experiments/get").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .send(
            app.client
                .post(app.url("/api/2.0/mlflow/experiments/create"))
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .post("/api/2.0/mlflow/experiments/create", json!({"name": 7}))
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"filter": "tags.x = 'y'"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // An endpoint this server does not have.
    let r = app.get("/api/2.0/mlflow/traces/get").await;
    mlflow_error(&r, 404, "ENDPOINT_NOT_FOUND");
    // The native API keeps problem+json.
    app.get("/api/v1/models/nope")
        .await
        .problem(404, "model_not_found");
}

async fn search_pages_and_filters_by_name(app: &TestApp) {
    for name in ["fraud-a", "fraud-b", "churn", "ranking"] {
        app.post("/api/2.0/mlflow/experiments/create", json!({"name": name}))
            .await
            .ok(200);
    }
    let names = |v: &Value| -> Vec<String> {
        v["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"max_results": 3});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let r = app.post("/api/2.0/mlflow/experiments/search", body).await;
        let page = r.ok(200).clone();
        seen.extend(names(&page));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["churn", "fraud-a", "fraud-b", "ranking"]);
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"filter": "name LIKE 'fraud%'"}),
        )
        .await;
    assert_eq!(names(r.ok(200)), ["fraud-a", "fraud-b"]);
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"filter": "name = 'churn'"}),
        )
        .await;
    assert_eq!(names(r.ok(200)), ["churn"]);
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"page_token": "garbage"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
}
