//! The MLflow-compatible API: shapes and error codes as MLflow's server answers them, over the
//! same models the native API sees. (examples/mlflow_check.py drives it with MLflow's client.)

use crate::helpers::{Resp, TestApp};
use serde_json::{Value, json};

crate::backend_tests!(
    experiments_are_models,
    errors_come_in_mlflow_shape,
    search_pages_and_filters_by_name,
    a_run_is_a_version,
    run_errors_as_mlflow_gives_them,
    search_runs_translates_filter_and_order,
    bulk_interval_answers_from_rollups,
    aliases_are_stages,
    any_name_is_an_experiment,
    experiments_are_tagged_renamed_deleted_and_restored
);

#[track_caller]
pub fn mlflow_error(r: &Resp, status: u16, error_code: &str) -> String {
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
    // Any name works (see any_name_is_an_experiment); an empty or control-character one
    // is refused, saying why.
    for bad in ["", "  ", "a\nb"] {
        let r = app
            .post("/api/2.0/mlflow/experiments/create", create(bad))
            .await;
        let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
        assert!(message.contains("control characters"), "{message}");
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
            json!({"filter": "metrics.x > 1"}),
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

/// Creates an experiment; its id.
pub async fn create_experiment(app: &TestApp, name: &str) -> String {
    let r = app
        .post("/api/2.0/mlflow/experiments/create", json!({"name": name}))
        .await;
    r.ok(200)["experiment_id"].as_str().unwrap().to_owned()
}

pub async fn create_run(app: &TestApp, body: Value) -> Value {
    let r = app.post("/api/2.0/mlflow/runs/create", body).await;
    r.ok(200)["run"].clone()
}

async fn a_run_is_a_version(app: &TestApp) {
    let exp = create_experiment(app, "fraud").await;
    let run = create_run(
        app,
        json!({"experiment_id": exp, "run_name": "first", "start_time": 1_700_000_000_000_i64,
               "user_id": "alice", "tags": [{"key": "team", "value": "risk"}]}),
    )
    .await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run["info"]["status"], "RUNNING");
    assert_eq!(run["info"]["run_name"], "first");
    assert_eq!(run["info"]["user_id"], "alice");
    assert_eq!(run["info"]["start_time"], 1_700_000_000_000_i64);
    assert_eq!(run["info"]["experiment_id"], exp.as_str());
    let post = |path: &str, body: Value| {
        let path = format!("/api/2.0/mlflow/runs/{path}");
        async move { app.post(&path, body).await }
    };
    post(
        "log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    )
    .await
    .ok(200);
    // The same value again is fine (a retried call); another value is refused.
    post(
        "log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    )
    .await
    .ok(200);
    let r = post(
        "log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.5"}),
    )
    .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    post(
        "set-tag",
        json!({"run_id": id, "key": "stage", "value": "tuning"}),
    )
    .await
    .ok(200);
    for step in 0..3 {
        let body = json!({"run_id": id, "key": "loss", "value": 1.0 / f64::from(step + 1),
                          "timestamp": 1_700_000_000_000_i64 + i64::from(step), "step": step});
        post("log-metric", body).await.ok(200);
    }
    let metrics: Vec<Value> = (0..1000)
        .map(|s| json!({"key": "acc", "value": 0.5 + f64::from(s) / 10_000.0, "timestamp": 1, "step": s}))
        .collect();
    let body = json!({"run_id": id, "metrics": metrics, "params": [{"key": "layers", "value": "3"}],
                      "tags": [{"key": "note", "value": "batch"}]});
    post("log-batch", body).await.ok(200);
    let r = post(
        "update",
        json!({"run_id": id, "status": "FINISHED", "end_time": 1}),
    )
    .await;
    assert_eq!(r.ok(200)["run_info"]["status"], "FINISHED");

    // The native API sees the version: ready, config from the params, tags, metrics.
    let v = app.get("/api/v1/models/fraud/versions/1").await;
    let v = v.ok(200);
    assert_eq!(v["id"].as_str().unwrap().replace('-', ""), id);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["config"], json!({"lr": "0.01", "layers": "3"}));
    assert_eq!(v["tags"]["team"], "risk");
    assert_eq!(v["tags"]["mlflow.runName"], "first");
    assert_eq!(v["tags"]["note"], "batch");
    let acc = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "acc")
        .unwrap();
    assert_eq!(acc["count"], 1000);

    let r = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={id}"))
        .await;
    let run = r.ok(200)["run"].clone();
    assert_eq!(run["info"]["status"], "FINISHED");
    assert!(run["info"]["end_time"].is_i64());
    assert_eq!(
        run["data"]["params"],
        json!([{"key": "layers", "value": "3"}, {"key": "lr", "value": "0.01"}])
    );
    let loss = run["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "loss")
        .unwrap()
        .clone();
    assert_eq!(
        (loss["step"].clone(), loss["value"].clone()),
        (json!(2), json!(1.0 / 3.0))
    );

    // History in pages, in step order, with MLflow's millisecond timestamps.
    let mut steps = Vec::new();
    let mut token = String::new();
    loop {
        let q = format!("run_id={id}&metric_key=acc&max_results=400&page_token={token}");
        let r = app
            .get(&format!("/api/2.0/mlflow/metrics/get-history?{q}"))
            .await;
        let page = r.ok(200).clone();
        steps.extend(
            page["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["step"].as_i64().unwrap()),
        );
        match page["next_page_token"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(steps, (0..1000).collect::<Vec<i64>>());
    let q = format!("run_id={id}&metric_key=loss");
    let r = app
        .get(&format!("/api/2.0/mlflow/metrics/get-history?{q}"))
        .await;
    let first = r.ok(200)["metrics"][0].clone();
    assert_eq!(
        first,
        json!({"key": "loss", "value": 1.0, "timestamp": 1_700_000_000_000_i64, "step": 0})
    );
    let q = format!("run_id={id}&metric_key=nope");
    let r = app
        .get(&format!("/api/2.0/mlflow/metrics/get-history?{q}"))
        .await;
    assert_eq!(r.ok(200)["metrics"], json!([]));

    // A finished run's params are final.
    let r = post(
        "log-parameter",
        json!({"run_id": id, "key": "new", "value": "x"}),
    )
    .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");

    // Runs of the Default experiment make the model `default`; KILLED is a failed version.
    let run = create_run(app, json!({})).await;
    assert_eq!(run["info"]["experiment_id"], "0");
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let r = post("update", json!({"run_id": id, "status": "KILLED"})).await;
    assert_eq!(r.ok(200)["run_info"]["status"], "KILLED");
    let v = app.get("/api/v1/models/default/versions/1").await;
    assert_eq!(v.ok(200)["status"], "failed");
}

async fn run_errors_as_mlflow_gives_them(app: &TestApp) {
    let missing = "01a22071bef07487b56bf65b4e9e4965";
    let r = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={missing}"))
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = app.get("/api/2.0/mlflow/runs/get?run_id=not-a-run").await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = app.get("/api/2.0/mlflow/runs/get").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .post(
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "12345"}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let run = create_run(app, json!({})).await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let too_many: Vec<Value> = (0..1001)
        .map(|s| json!({"key": "k", "value": 1.0, "step": s}))
        .collect();
    let r = app
        .post(
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": id, "metrics": too_many}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // A bad point refuses the whole batch: nothing of it is written.
    let body = json!({"run_id": id, "params": [{"key": "a", "value": "1"}],
                      "metrics": [{"key": "bad key", "value": 1.0}]});
    let r = app.post("/api/2.0/mlflow/runs/log-batch", body).await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let v = app.get("/api/v1/models/default/versions/1").await;
    assert_eq!(v.ok(200)["config"], json!({}));
    let r = app
        .post(
            "/api/2.0/mlflow/runs/update",
            json!({"run_id": id, "status": "DONE"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .post(
            "/api/2.0/mlflow/runs/delete-tag",
            json!({"run_id": id, "key": "nope"}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let q = format!("run_id={id}&metric_key=k&max_results=0");
    let r = app
        .get(&format!("/api/2.0/mlflow/metrics/get-history?{q}"))
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // A finished run keeps its params and files: refused, saying why; failing it afterwards
    // (what the client does at the end of a block that raised) leaves it finished.
    app.post(
        "/api/2.0/mlflow/runs/update",
        json!({"run_id": id, "status": "FINISHED"}),
    )
    .await
    .ok(200);
    let r = app
        .post(
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": id, "key": "late", "value": "1"}),
        )
        .await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(
        message.contains("has ended") && message.contains("immutable"),
        "{message}"
    );
    let r = app
        .post(
            "/api/2.0/mlflow/runs/update",
            json!({"run_id": id, "status": "FAILED"}),
        )
        .await;
    assert_eq!(r.ok(200)["run_info"]["status"], "FINISHED");
    let exp = run["info"]["experiment_id"].as_str().unwrap();
    let put = app
        .client
        .put(app.url(&format!(
            "/api/2.0/mlflow-artifacts/artifacts/{exp}/{id}/artifacts/late.txt"
        )))
        .body("late");
    let r = app.send(put).await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("has ended"), "{message}");
}

async fn search_runs_translates_filter_and_order(app: &TestApp) {
    let exp = create_experiment(app, "sweep").await;
    let mut ids = Vec::new();
    for (i, lr) in ["0.1", "0.01", "0.001", "0.0001"].iter().enumerate() {
        let run = create_run(
            app,
            json!({"experiment_id": exp, "run_name": format!("r{i}")}),
        )
        .await;
        let id = run["info"]["run_id"].as_str().unwrap().to_owned();
        let auc = [0.81, 0.93, 0.95, 0.88][i];
        let body = json!({"run_id": id, "params": [{"key": "lr", "value": lr}],
                          "metrics": [{"key": "val/auc", "value": auc, "step": 0}],
                          "tags": [{"key": "team", "value": if i % 2 == 0 { "a" } else { "b" }}]});
        app.post("/api/2.0/mlflow/runs/log-batch", body)
            .await
            .ok(200);
        if i < 3 {
            app.post(
                "/api/2.0/mlflow/runs/update",
                json!({"run_id": id, "status": "FINISHED"}),
            )
            .await
            .ok(200);
        }
        ids.push(id);
    }
    let search = |body: Value| async move {
        let r = app.post("/api/2.0/mlflow/runs/search", body).await;
        let page = r.ok(200).clone();
        let names: Vec<String> = page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["info"]["run_name"].as_str().unwrap().to_owned())
            .collect();
        (names, page["next_page_token"].as_str().map(str::to_owned))
    };
    let (all, _) = search(json!({"experiment_ids": [exp]})).await;
    assert_eq!(all, ["r3", "r2", "r1", "r0"], "newest first, as MLflow");
    let (best, _) = search(json!({"experiment_ids": [exp], "filter": "metrics.`val/auc` > 0.85 and attributes.status = 'FINISHED'",
                                  "order_by": ["metrics.`val/auc` DESC"]}))
    .await;
    assert_eq!(best, ["r2", "r1"]);
    let (p, _) = search(
        json!({"experiment_ids": [exp], "filter": "params.lr = '0.01' AND tags.team = 'b'"}),
    )
    .await;
    assert_eq!(p, ["r1"]);
    let (running, _) =
        search(json!({"experiment_ids": [exp], "filter": "attributes.status = 'RUNNING'"})).await;
    assert_eq!(running, ["r3"]);
    let (first, token) = search(json!({"experiment_ids": [exp], "max_results": 3, "order_by": ["attributes.start_time ASC"]})).await;
    assert_eq!(first, ["r0", "r1", "r2"]);
    let (rest, _) = search(
        json!({"experiment_ids": [exp], "max_results": 3, "order_by": ["attributes.start_time ASC"],
                                  "page_token": token.unwrap()}),
    )
    .await;
    assert_eq!(rest, ["r3"]);
    for body in [
        json!({"experiment_ids": [exp], "filter": "metrics.auc > 'x'"}),
        json!({"experiment_ids": [exp], "order_by": ["params.lr"]}),
        json!({"experiment_ids": []}),
        // The native filter's limits hold for translated filters: 21 clauses, 1,000 clauses,
        // 5,000 characters.
        json!({"experiment_ids": [exp], "filter": vec!["metrics.auc > 0"; 21].join(" AND ")}),
        json!({"experiment_ids": [exp], "filter": vec!["metrics.auc > 0"; 1000].join(" AND ")}),
        json!({"experiment_ids": [exp], "filter": format!("tags.t = '{}'", "x".repeat(5000))}),
    ] {
        let r = app.post("/api/2.0/mlflow/runs/search", body).await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    }
    let many = vec!["tags.t = 'x'"; 1000].join(" AND ");
    for path in [
        "/api/2.0/mlflow/model-versions/search",
        "/api/2.0/mlflow/registered-models/search",
    ] {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", &many)
            .finish();
        let r = app.get(&format!("{path}?{q}")).await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    }
}

async fn bulk_interval_answers_from_rollups(app: &TestApp) {
    let mut runs = Vec::new();
    for n in [100_000_i64, 50] {
        let run = create_run(app, json!({})).await;
        let id = run["info"]["run_id"].as_str().unwrap().to_owned();
        let version = if runs.is_empty() { 1 } else { 2 };
        for start in (0..n).step_by(10_000) {
            let points: Vec<Value> = (start..(start + 10_000).min(n))
                .map(|s| json!({"key": "loss", "step": s, "value": 1.0 / (s as f64 + 1.0)}))
                .collect();
            app.post(
                &format!("/api/v1/models/default/versions/{version}/metrics"),
                json!({"points": points}),
            )
            .await
            .ok(200);
        }
        runs.push(id);
    }
    let q = format!(
        "run_ids={}&run_ids={}&metric_key=loss&max_results=100",
        runs[0], runs[1]
    );
    let r = app
        .get(&format!(
            "/api/2.0/mlflow/metrics/get-history-bulk-interval?{q}"
        ))
        .await;
    let points = r.ok(200)["metrics"].as_array().unwrap().clone();
    let of = |id: &str| {
        points
            .iter()
            .filter(|p| p["run_id"] == id)
            .cloned()
            .collect::<Vec<_>>()
    };
    let long = of(&runs[0]);
    assert!((2..=100).contains(&long.len()), "bucketed: {}", long.len());
    let steps: Vec<i64> = long.iter().map(|p| p["step"].as_i64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*steps.last().unwrap(), 99_999);
    // The short run has fewer points than asked for: all of them, exactly.
    let short = of(&runs[1]);
    assert_eq!(short.len(), 50);
    assert_eq!(short[49]["value"], json!(1.0 / 50.0));
    // A step range reads that range only.
    let q = format!(
        "run_ids={}&metric_key=loss&start_step=10&end_step=19",
        runs[0]
    );
    let r = app
        .get(&format!(
            "/api/2.0/mlflow/metrics/get-history-bulk-interval?{q}"
        ))
        .await;
    let steps: Vec<i64> = r.ok(200)["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, (10..20).collect::<Vec<i64>>());
    let r = app
        .get("/api/2.0/mlflow/metrics/get-history-bulk-interval?metric_key=loss")
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
}

async fn aliases_are_stages(app: &TestApp) {
    let exp = create_experiment(app, "fraud").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap().to_owned();
    app.post(
        "/api/2.0/mlflow/runs/log-parameter",
        json!({"run_id": run_id, "key": "lr", "value": "0.1"}),
    )
    .await
    .ok(200);
    // The experiment's model is the registered model already.
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "fraud"}),
        )
        .await;
    mlflow_error(&r, 400, "RESOURCE_ALREADY_EXISTS");
    // Registering the run into its own model: that version, made ready.
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "fraud", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        )
        .await;
    let mv = r.ok(200)["model_version"].clone();
    assert_eq!(
        (mv["version"].clone(), mv["status"].clone()),
        (json!("1"), json!("READY"))
    );
    assert_eq!(mv["run_id"], run_id.as_str());
    // Into another model: a new version there, with the run's config and the source.
    app.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "fraud-prod"}),
    )
    .await
    .ok(200);
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "fraud-prod", "source": "runs:/x/model", "run_id": run_id}),
        )
        .await;
    assert_eq!(r.ok(200)["model_version"]["version"], "1");
    let v = app.get("/api/v1/models/fraud-prod/versions/1").await;
    let v = v.ok(200);
    assert_eq!(
        (v["status"].clone(), v["config"].clone()),
        (json!("ready"), json!({"lr": "0.1"}))
    );
    // An alias is a stage: set = promote, delete = clear, both in the stage's history.
    let alias = json!({"name": "fraud-prod", "alias": "champion", "version": "1"});
    app.post("/api/2.0/mlflow/registered-models/alias", alias.clone())
        .await
        .ok(200);
    let r = app.get("/api/v1/models/fraud-prod/stages/champion").await;
    assert_eq!(r.ok(200)["version"], 1);
    let r = app
        .get("/api/2.0/mlflow/registered-models/alias?name=fraud-prod&alias=champion")
        .await;
    assert_eq!(r.ok(200)["model_version"]["aliases"], json!(["champion"]));
    let r = app
        .get("/api/2.0/mlflow/registered-models/get?name=fraud-prod")
        .await;
    let rm = r.ok(200)["registered_model"].clone();
    assert_eq!(
        rm["aliases"],
        json!([{"alias": "champion", "version": "1"}])
    );
    assert_eq!(rm["latest_versions"][0]["version"], "1");
    let r = app
        .send(
            app.client
                .delete(app.url("/api/2.0/mlflow/registered-models/alias"))
                .json(&json!({"name": "fraud-prod", "alias": "champion"})),
        )
        .await;
    r.ok(200);
    let h = app
        .get("/api/v1/models/fraud-prod/stages/champion/history")
        .await;
    let actions: Vec<Value> = h.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(actions, [json!("stage.cleared"), json!("stage.promoted")]);
    // MLflow's server answers a missing alias as a bad parameter.
    let r = app
        .get("/api/2.0/mlflow/registered-models/alias?name=fraud-prod&alias=champion")
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // A stage policy that refuses a promote refuses the alias, as MLflow's error.
    app.put(
        "/api/v1/models/fraud-prod/stages/production/policy",
        json!({"require": "metric.auc > 0.9"}),
    )
    .await
    .ok(200);
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": "fraud-prod", "alias": "production", "version": "1"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // Errors: a missing model or version, a bad version or alias.
    for q in [
        "registered-models/get?name=nope",
        "model-versions/get?name=fraud-prod&version=9",
        "model-versions/get?name=fraud-prod&version=0",
    ] {
        let r = app.get(&format!("/api/2.0/mlflow/{q}")).await;
        mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    }
    let r = app
        .get("/api/2.0/mlflow/model-versions/get?name=fraud-prod&version=x")
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    for body in [
        json!({"name": "fraud-prod", "alias": "champion", "version": "one"}),
        json!({"name": "fraud-prod", "alias": "Bad Alias", "version": "1"}),
    ] {
        let r = app
            .post("/api/2.0/mlflow/registered-models/alias", body)
            .await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    }
}

/// MLflow's own names (spaces, capitals, paths) work: each maps to a model with a derived
/// name, the original kept in its `mlflow.name` tag and answered by every MLflow call.
async fn any_name_is_an_experiment(app: &TestApp) {
    let exp = create_experiment(app, "MLflow Quickstart").await;
    let got = app
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=MLflow%20Quickstart")
        .await;
    let experiment = got.ok(200)["experiment"].clone();
    assert_eq!(experiment["name"], "MLflow Quickstart");
    assert_eq!(experiment["experiment_id"], exp.as_str());
    assert_eq!(
        experiment["tags"],
        json!([]),
        "the kept name is not an MLflow tag"
    );
    let again = app
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "MLflow Quickstart"}),
        )
        .await;
    mlflow_error(&again, 400, "RESOURCE_ALREADY_EXISTS");
    // Native readers see the model and the original name.
    let models = app.get("/api/v1/models?q=mlflow-quickstart-").await;
    let model = models.ok(200)["items"][0].clone();
    assert_eq!(model["tags"]["mlflow.name"], "MLflow Quickstart", "{model}");
    assert!(
        model["name"]
            .as_str()
            .unwrap()
            .starts_with("mlflow-quickstart-")
    );
    // Searched by its name; another name with the same letters is another experiment.
    let r = app
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"filter": "name = 'MLflow Quickstart'"}),
        )
        .await;
    assert_eq!(r.ok(200)["experiments"][0]["experiment_id"], exp.as_str());
    let other = create_experiment(app, "mlflow quickstart!").await;
    assert_ne!(other, exp);
    for name in ["/Users/me/exp", "Ünïcode ✓"] {
        let id = create_experiment(app, name).await;
        let r = app
            .get(&format!(
                "/api/2.0/mlflow/experiments/get?experiment_id={id}"
            ))
            .await;
        assert_eq!(r.ok(200)["experiment"]["name"], name);
    }
    // Registered models too.
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "Fraud Model"}),
        )
        .await;
    assert_eq!(r.ok(200)["registered_model"]["name"], "Fraud Model");
    let r = app
        .get("/api/2.0/mlflow/registered-models/get?name=Fraud%20Model")
        .await;
    assert_eq!(r.ok(200)["registered_model"]["name"], "Fraud Model");
    assert_eq!(r.body["registered_model"]["tags"], json!([]));
    // A name that is itself a model name stays that model.
    create_experiment(app, "plain-name").await;
    app.get("/api/v1/models/plain-name").await.ok(200);
}

/// Experiment tags, rename (for names that are not model names), delete and restore.
async fn experiments_are_tagged_renamed_deleted_and_restored(app: &TestApp) {
    let exp = create_experiment(app, "Team Sweep").await;
    let native = create_experiment(app, "native-exp").await;
    let post = |path: &'static str, body: Value| async move {
        app.post(&format!("/api/2.0/mlflow/experiments/{path}"), body)
            .await
    };
    let get = |id: String| async move {
        let r = app
            .get(&format!(
                "/api/2.0/mlflow/experiments/get?experiment_id={id}"
            ))
            .await;
        r.ok(200)["experiment"].clone()
    };
    post(
        "set-experiment-tag",
        json!({"experiment_id": exp, "key": "team", "value": "risk"}),
    )
    .await
    .ok(200);
    assert_eq!(
        get(exp.clone()).await["tags"],
        json!([{"key": "team", "value": "risk"}])
    );
    post(
        "delete-experiment-tag",
        json!({"experiment_id": exp, "key": "team"}),
    )
    .await
    .ok(200);
    assert_eq!(get(exp.clone()).await["tags"], json!([]));
    for key in ["mlflow.name", "mlflow.lifecycle"] {
        let r = post(
            "set-experiment-tag",
            json!({"experiment_id": exp, "key": key, "value": "x"}),
        )
        .await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    }
    // Rename: the experiment keeps its id and runs; the old name is free again.
    post(
        "update",
        json!({"experiment_id": exp, "new_name": "Team Sweep 2"}),
    )
    .await
    .ok(200);
    assert_eq!(get(exp.clone()).await["name"], "Team Sweep 2");
    let old = app
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=Team%20Sweep")
        .await;
    mlflow_error(&old, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = post(
        "update",
        json!({"experiment_id": native, "new_name": "Native Exp"}),
    )
    .await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("identity"), "{message}");
    let r = post(
        "update",
        json!({"experiment_id": exp, "new_name": "some-model-name"}),
    )
    .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // Delete: shown deleted, hidden from searches unless asked, no new runs; restore.
    post("delete", json!({"experiment_id": exp})).await.ok(200);
    assert_eq!(get(exp.clone()).await["lifecycle_stage"], "deleted");
    let ids = |r: crate::helpers::Resp| -> Vec<String> {
        r.body["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["experiment_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let active = ids(post("search", json!({})).await);
    assert!(
        !active.contains(&exp) && active.contains(&native),
        "{active:?}"
    );
    let deleted = ids(post("search", json!({"view_type": "DELETED_ONLY"})).await);
    assert_eq!(deleted, std::slice::from_ref(&exp));
    let all = ids(post("search", json!({"view_type": "ALL"})).await);
    assert!(all.contains(&exp) && all.contains(&native));
    let r = app
        .post("/api/2.0/mlflow/runs/create", json!({"experiment_id": exp}))
        .await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("active"), "{message}");
    let r = post("delete", json!({"experiment_id": "0"})).await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    post("restore", json!({"experiment_id": exp})).await.ok(200);
    assert_eq!(get(exp.clone()).await["lifecycle_stage"], "active");
    create_run(app, json!({"experiment_id": exp})).await;
    // server-info answers what MLflow's client asks before its calls.
    let info = app.get("/api/3.0/mlflow/server-info").await;
    assert_eq!(info.ok(200)["multipart_uploads_enabled"], false);
}

/// Postgres: a page of runs costs the same few statements whatever its size (the list, then
/// every run's details at once), counted by the database's own transaction statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_search_reads_in_pages_not_rows_postgres() {
    use crate::helpers::{Backend, TestDb};
    let db = TestDb::create(Backend::Postgres).await;
    let app = TestApp::spawn(db.url.clone(), |c| {
        c.webhooks.dispatcher = false;
        c.compactor = false;
        c.guards = false;
        c.retention = false;
    })
    .await;
    let exp = create_experiment(&app, "paged").await;
    for i in 0..100 {
        let run = create_run(&app, json!({"experiment_id": exp})).await;
        let id = run["info"]["run_id"].as_str().unwrap().to_owned();
        let body = json!({"run_id": id, "metrics": [{"key": "loss", "value": i, "step": 1}],
                          "params": [{"key": "i", "value": i.to_string()}]});
        app.post("/api/2.0/mlflow/runs/log-batch", body)
            .await
            .ok(200);
    }
    let mut commits = crate::helpers::Commits::connect(&db.url).await;
    let mut cost = Vec::new();
    for page in [2, 100] {
        let spent = commits
            .of(async {
                let r = app
                    .post(
                        "/api/2.0/mlflow/runs/search",
                        json!({"experiment_ids": [exp], "max_results": page}),
                    )
                    .await;
                let runs = r.ok(200)["runs"].as_array().unwrap().clone();
                assert_eq!(runs.len(), page);
                assert!(
                    runs.iter()
                        .all(|r| r["data"]["metrics"][0]["key"] == "loss")
                );
            })
            .await;
        eprintln!("a page of {page} runs: {spent} transactions");
        cost.push(spent);
    }
    // Reading each run on its own costs at least two statements a run (its detail and its
    // model): 196 more for the larger page. Autovacuum and other sessions' housekeeping add a
    // few transactions to either window.
    assert!(
        cost[1] < cost[0] + 40,
        "a page of 100 runs cost {} transactions, a page of 2 cost {}",
        cost[1],
        cost[0]
    );
    app.stop().await;
    db.drop_db().await;
}
