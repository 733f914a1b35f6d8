//! MLflow 3's logged models: created, filled and finalized as `log_model` does, searched as
//! `runs:/` resolution and `search_logged_models` do, and registered into versions the native
//! API reads whole (files, config, metrics, source).

use crate::blobs::Blobs;
use crate::helpers::{Commits, Resp, Setup, TestApp};
use crate::mlflow::{create_experiment, create_run, mlflow_error};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const STORES: Setup = Setup {
    blobs: &[Blobs::Folder, Blobs::S3],
    ..Setup::PLAIN
};

crate::backend_tests!(with super::STORES;
    a_logged_model_is_filled_finalized_and_registered
);

crate::backend_tests!(
    logged_models_are_searched_in_sql,
    runs_answer_their_logged_models,
    logged_model_errors_as_mlflow_gives_them,
    mlflow_tags_follow_mlflow_rules,
    runs_are_searched_across_experiments_and_restored
);

const ROOT: &str = "/api/2.0/mlflow/logged-models";
const PROXY: &str = "/api/2.0/mlflow-artifacts/artifacts";

fn hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn put(app: &TestApp, path: &str, bytes: &'static [u8]) -> Resp {
    app.send(
        app.client
            .put(app.url(&format!("{PROXY}/{path}")))
            .header("content-type", "application/octet-stream")
            .body(bytes),
    )
    .await
}

async fn create(app: &TestApp, body: Value) -> Value {
    app.post(ROOT, body).await.ok(200)["model"].clone()
}

fn id_of(m: &Value) -> String {
    m["info"]["model_id"].as_str().unwrap().to_owned()
}

async fn finalize(app: &TestApp, id: &str, status: &str) -> Resp {
    app.patch(
        &format!("{ROOT}/{id}"),
        json!({"model_id": id, "status": status}),
    )
    .await
}

async fn search(app: &TestApp, body: Value) -> Value {
    app.post(&format!("{ROOT}/search"), body)
        .await
        .ok(200)
        .clone()
}

fn names(found: &Value) -> Vec<String> {
    found["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["info"]["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_logged_model_is_filled_finalized_and_registered(app: &TestApp) {
    let exp = create_experiment(app, "iris").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap().to_owned();
    app.post(
        "/api/2.0/mlflow/runs/log-batch",
        json!({"run_id": run_id, "params": [{"key": "max_iter", "value": "1000"}]}),
    )
    .await
    .ok(200);

    // As log_model does: create (params and tags), link the run, upload, finalize.
    let m = create(
        app,
        json!({"experiment_id": exp, "name": "iris_model", "source_run_id": run_id,
               "model_type": "sklearn",
               "params": [{"key": "max_iter", "value": "1000"}, {"key": "solver", "value": "lbfgs"}],
               "tags": [{"key": "mlflow.modelFlavor", "value": "sklearn"}]}),
    )
    .await;
    let id = id_of(&m);
    assert!(id.starts_with("m-") && id.len() == 34, "{id}");
    let info = &m["info"];
    assert_eq!(info["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(info["experiment_id"], exp.as_str());
    assert_eq!(info["source_run_id"], run_id.as_str());
    assert_eq!(info["model_type"], "sklearn");
    let root = format!("{exp}/models/{id}/artifacts");
    assert_eq!(info["artifact_uri"], format!("mlflow-artifacts:/{root}"));
    assert_eq!(
        m["data"]["params"],
        json!([{"key": "max_iter", "value": "1000"}, {"key": "solver", "value": "lbfgs"}])
    );
    app.post(
        "/api/2.0/mlflow/runs/outputs",
        json!({"run_id": run_id, "models": [{"model_id": id, "step": 0}]}),
    )
    .await
    .ok(200);
    let mlmodel: &[u8] = b"artifact_path: iris_model\nflavors:\n  sklearn: {}\n";
    put(
        app,
        &format!("{root}/MLmodel"),
        b"artifact_path: iris_model\nflavors:\n  sklearn: {}\n",
    )
    .await
    .ok(200);
    put(app, &format!("{root}/model.pkl"), b"pickled")
        .await
        .ok(200);
    let r = put(app, &format!("{root}/model.pkl"), b"again").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let listed = app.get(&format!("{PROXY}?path={root}")).await;
    assert_eq!(
        listed.ok(200)["files"],
        json!([{"path": "MLmodel", "is_dir": false, "file_size": mlmodel.len()},
               {"path": "model.pkl", "is_dir": false, "file_size": 7}])
    );
    let got = app
        .client
        .get(app.url(&format!("{PROXY}/{root}/model.pkl")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], b"pickled");
    // The run's metric, logged again against the model (as log_model does for its step).
    app.post(
        "/api/2.0/mlflow/runs/log-batch",
        json!({"run_id": run_id, "metrics": [
            {"key": "accuracy", "value": 0.9, "timestamp": 1_700_000_000_000_i64, "step": 0,
             "model_id": id, "dataset_name": "test", "dataset_digest": "d1"}]}),
    )
    .await
    .ok(200);

    // A pending model is not registered: its files are not final yet.
    app.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "tracking-quickstart"}),
    )
    .await
    .ok(200);
    let register = json!({"name": "tracking-quickstart", "source": format!("models:/{id}"),
                          "model_id": id});
    let r = app
        .post("/api/2.0/mlflow/model-versions/create", register.clone())
        .await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("ready"), "{message}");

    let done = finalize(app, &id, "LOGGED_MODEL_READY").await;
    assert_eq!(
        done.ok(200)["model"]["info"]["status"],
        "LOGGED_MODEL_READY"
    );
    // Retried: the same answer; the other way: refused; files are final.
    finalize(app, &id, "LOGGED_MODEL_READY").await.ok(200);
    let r = finalize(app, &id, "LOGGED_MODEL_UPLOAD_FAILED").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = put(app, &format!("{root}/late.txt"), b"late").await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("final"), "{message}");

    // Registered: a ready version with copies of the files, the params as config, the
    // metrics, and a source naming the logged model and its run.
    let r = app
        .post("/api/2.0/mlflow/model-versions/create", register)
        .await;
    let mv = r.ok(200)["model_version"].clone();
    assert_eq!(mv["version"], "1");
    assert_eq!(mv["status"], "READY");
    assert_eq!(mv["run_id"], run_id.as_str());
    let v = app
        .get("/api/v1/models/tracking-quickstart/versions/1")
        .await;
    let v = v.ok(200);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["config"], json!({"max_iter": "1000", "solver": "lbfgs"}));
    assert_eq!(v["source"]["logged_model_id"], id.as_str());
    assert_eq!(v["source"]["run_id"], run_id.as_str());
    let files: Vec<(String, String)> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_owned(),
                a["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("MLmodel".to_owned(), hex(mlmodel)),
            ("model.pkl".to_owned(), hex(b"pickled"))
        ]
    );
    let accuracy = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "accuracy")
        .unwrap();
    assert_eq!(accuracy["last"], 0.9);
    // The download URI of the version is its own copy; the logged model lists the version.
    let uri = app
        .get("/api/2.0/mlflow/model-versions/get-download-uri?name=tracking-quickstart&version=1")
        .await;
    assert!(
        !uri.ok(200)["artifact_uri"]
            .as_str()
            .unwrap()
            .contains("/models/m-"),
        "{}",
        uri.body
    );
    let m = app.get(&format!("{ROOT}/{id}")).await;
    let tags = m.ok(200)["model"]["info"]["tags"]
        .as_array()
        .unwrap()
        .clone();
    let versions = tags
        .iter()
        .find(|t| t["key"] == "mlflow.modelVersions")
        .unwrap();
    let listed: Value = serde_json::from_str(versions["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        listed,
        json!([{"name": "tracking-quickstart", "version": 1}])
    );
    // The logged model keeps its files after registration; the events record every step.
    let events = app
        .get("/api/v1/events?model=iris&limit=100")
        .await
        .ok(200)
        .clone();
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "logged_model.created",
        "logged_model.file_uploaded",
        "logged_model.finalized",
        "logged_model.updated",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

async fn logged_models_are_searched_in_sql(app: &TestApp) {
    let exp = create_experiment(app, "search").await;
    let other = create_experiment(app, "elsewhere").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for (i, (name, acc)) in [("alpha", 0.7), ("beta", 0.9), ("Gamma", 0.8)]
        .into_iter()
        .enumerate()
    {
        let m = create(
            app,
            json!({"experiment_id": exp, "name": name, "source_run_id": run_id,
                   "params": [{"key": "depth", "value": i.to_string()}],
                   "tags": [{"key": "flavor", "value": format!("sk-{name}")}]}),
        )
        .await;
        let id = id_of(&m);
        for (step, value) in [(0, acc - 0.2), (1, acc)] {
            app.post(
                "/api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run_id, "metrics": [
                    {"key": "acc", "value": value, "timestamp": 1, "step": step, "model_id": id,
                     "dataset_name": "eval", "dataset_digest": "e1"}]}),
            )
            .await
            .ok(200);
        }
        ids.push(id);
    }
    create(app, json!({"experiment_id": other, "name": "alpha"})).await;
    finalize(app, &ids[1], "LOGGED_MODEL_READY").await.ok(200);

    let all = search(app, json!({"experiment_ids": [exp]})).await;
    assert_eq!(names(&all), ["Gamma", "beta", "alpha"], "newest first");
    let both = search(app, json!({"experiment_ids": [exp, other]})).await;
    assert_eq!(names(&both).len(), 4);
    let by = |filter: &'static str| search(app, json!({"experiment_ids": [exp], "filter": filter}));
    assert_eq!(names(&by("name = 'alpha'").await), ["alpha"]);
    assert_eq!(names(&by("name != 'alpha'").await), ["Gamma", "beta"]);
    assert_eq!(
        names(&by("name LIKE 'g%'").await),
        Vec::<String>::new(),
        "LIKE keeps case"
    );
    assert_eq!(names(&by("name ILIKE 'g%'").await), ["Gamma"]);
    assert_eq!(names(&by("status = 'READY'").await), ["beta"]);
    assert_eq!(
        names(&by("metrics.acc > 0.75 AND params.depth != '1'").await),
        ["Gamma"]
    );
    assert_eq!(
        names(&by("tags.flavor LIKE 'sk-%a'").await),
        ["Gamma", "beta", "alpha"]
    );
    assert_eq!(names(&by("tags.absent = 'x'").await), Vec::<String>::new());
    let run_filter = format!("source_run_id = '{run_id}'");
    let found = search(app, json!({"experiment_ids": [exp], "filter": run_filter})).await;
    assert_eq!(names(&found).len(), 3);
    // A metric condition counts the datasets asked for.
    let found = search(
        app,
        json!({"experiment_ids": [exp], "filter": "metrics.acc > 0.1",
               "datasets": [{"dataset_name": "train"}]}),
    )
    .await;
    assert_eq!(names(&found), Vec::<String>::new());

    // Ordered by a metric's latest value, then paged.
    let ordered = search(
        app,
        json!({"experiment_ids": [exp],
               "order_by": [{"field_name": "metrics.acc", "ascending": false,
                             "dataset_name": "eval"}]}),
    )
    .await;
    assert_eq!(names(&ordered), ["beta", "Gamma", "alpha"]);
    let first = search(
        app,
        json!({"experiment_ids": [exp], "max_results": 2,
               "order_by": [{"field_name": "name"}]}),
    )
    .await;
    assert_eq!(names(&first), ["Gamma", "alpha"]);
    let token = first["next_page_token"].as_str().unwrap();
    let rest = search(
        app,
        json!({"experiment_ids": [exp], "max_results": 2, "page_token": token,
               "order_by": [{"field_name": "name"}]}),
    )
    .await;
    assert_eq!(names(&rest), ["beta"]);
    assert!(rest.get("next_page_token").is_none());
    // Each model carries its params, tags and metrics.
    let beta = &ordered["models"][0];
    assert_eq!(
        beta["data"]["params"],
        json!([{"key": "depth", "value": "1"}])
    );
    let metrics = beta["data"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[1]["dataset_name"], "eval");
    assert_eq!(metrics[1]["run_id"], run_id.as_str());

    // Deleted: gone from searches and reads, unless asked.
    app.delete(&format!("{ROOT}/{}", ids[0])).await.ok(200);
    assert_eq!(
        names(&search(app, json!({"experiment_ids": [exp]})).await),
        ["Gamma", "beta"]
    );
    let r = app.get(&format!("{ROOT}/{}", ids[0])).await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = app
        .get(&format!("{ROOT}/{}?allow_deleted=true", ids[0]))
        .await;
    assert_eq!(r.ok(200)["model"]["info"]["name"], "alpha");
}

async fn runs_answer_their_logged_models(app: &TestApp) {
    let exp = create_experiment(app, "runs").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let made = id_of(&create(app, json!({"experiment_id": exp, "source_run_id": run_id})).await);
    let used = id_of(&create(app, json!({"experiment_id": exp})).await);
    app.post(
        "/api/2.0/mlflow/runs/outputs",
        json!({"run_id": run_id, "models": [{"model_id": made, "step": 3}]}),
    )
    .await
    .ok(200);
    app.post(
        "/api/2.0/mlflow/runs/log-inputs",
        json!({"run_id": run_id, "models": [{"model_id": used}]}),
    )
    .await
    .ok(200);
    let got = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={run_id}"))
        .await;
    let got = got.ok(200)["run"].clone();
    // Created with the run as its source: linked at step 0, which the later call keeps.
    assert_eq!(
        got["outputs"]["model_outputs"],
        json!([{"model_id": made, "step": 0}])
    );
    assert_eq!(got["inputs"]["model_inputs"], json!([{"model_id": used}]));
    let found = app
        .post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": [exp]}),
        )
        .await;
    assert_eq!(
        found.ok(200)["runs"][0]["outputs"]["model_outputs"][0]["model_id"],
        made.as_str()
    );
    // A generated name when none is given.
    let m = app.get(&format!("{ROOT}/{used}")).await;
    assert!(
        !m.ok(200)["model"]["info"]["name"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

async fn logged_model_errors_as_mlflow_gives_them(app: &TestApp) {
    let exp = create_experiment(app, "errors").await;
    let id = id_of(
        &create(
            app,
            json!({"experiment_id": exp, "params": [{"key": "a", "value": "1"}]}),
        )
        .await,
    );
    // A model with a logged model and no version is not empty: refused, never a 500; the
    // cascade deletes both.
    app.delete("/api/v1/models/errors")
        .await
        .problem(409, "model_not_empty");
    let r = app
        .send(
            app.client
                .delete(app.url("/api/2.0/mlflow/registered-models/delete"))
                .json(&json!({"name": "errors"})),
        )
        .await;
    assert!(r.status.is_client_error(), "{}: {}", r.status, r.body);
    for missing in ["m-00000000000000000000000000000000", "nonsense", "m-xyz"] {
        let r = app.get(&format!("{ROOT}/{missing}")).await;
        mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    }
    let r = app
        .post(ROOT, json!({"experiment_id": "1234567", "name": "m"}))
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = app
        .post(ROOT, json!({"experiment_id": exp, "source_run_id": "0123"}))
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let r = finalize(app, &id, "DONE").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = finalize(app, &id, "LOGGED_MODEL_PENDING").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    // A param is set once.
    let params = format!("{ROOT}/{id}/params");
    app.post(&params, json!({"params": [{"key": "a", "value": "1"}]}))
        .await
        .ok(200);
    let r = app
        .post(&params, json!({"params": [{"key": "a", "value": "2"}]}))
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app.delete(&format!("{ROOT}/{id}/tags/absent")).await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    // Searches: a bad filter, order, page token or page size.
    for body in [
        json!({"experiment_ids": [exp], "filter": "colour = 'red'"}),
        json!({"experiment_ids": [exp], "filter": "metrics.acc > 'high'"}),
        json!({"experiment_ids": [exp], "filter": "name"}),
        json!({"experiment_ids": [exp], "order_by": [{"field_name": "tags.x"}]}),
        json!({"experiment_ids": [exp], "order_by": [{"field_name": "name", "dataset_name": "d"}]}),
        json!({"experiment_ids": [exp], "page_token": "garbage"}),
        json!({"experiment_ids": [exp], "max_results": 0}),
    ] {
        let r = app.post(&format!("{ROOT}/search"), body.clone()).await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    }
    let r = app
        .post(
            &format!("{ROOT}/search"),
            json!({"experiment_ids": ["999"]}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    // A metric naming a logged model that does not exist writes nothing.
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let r = app
        .post(
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "metrics": [{"key": "acc", "value": 1.0, "timestamp": 1,
                   "step": 0, "model_id": "m-00000000000000000000000000000000"}]}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let got = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={run_id}"))
        .await;
    assert_eq!(got.ok(200)["run"]["data"]["metrics"], json!([]));
    // A model of a deleted experiment is refused, as a run is.
    app.post(
        "/api/2.0/mlflow/experiments/delete",
        json!({"experiment_id": exp}),
    )
    .await
    .ok(200);
    let r = app.post(ROOT, json!({"experiment_id": exp})).await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
}

/// Tags set through MLflow follow MLflow's rule (the quickstart's "Training Info"); native
/// readers see them as they are; native writes keep the native rule.
async fn mlflow_tags_follow_mlflow_rules(app: &TestApp) {
    let exp = create_experiment(app, "tags").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let long = "x".repeat(5000);
    app.post(
        "/api/2.0/mlflow/runs/set-tag",
        json!({"run_id": run_id, "key": "Training Info", "value": long}),
    )
    .await
    .ok(200);
    let v = app.get("/api/v1/models/tags/versions/1").await;
    assert_eq!(v.ok(200)["tags"]["Training Info"], long.as_str());
    let r = app
        .post(
            "/api/2.0/mlflow/runs/set-tag",
            json!({"run_id": run_id, "key": "bad\u{0007}key", "value": "x"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .patch(
            "/api/v1/models/tags/versions/1",
            json!({"tags": {"Training Info": "x"}}),
        )
        .await;
    r.problem(422, "validation_failed");
}

/// `search_all_experiments` (every experiment's id at once, paged across them), LIKE on tags
/// as `load_table` sends it, and a deleted run restored.
async fn runs_are_searched_across_experiments_and_restored(app: &TestApp) {
    let mut exps = Vec::new();
    let mut runs = Vec::new();
    for (name, n) in [("first", 2), ("empty", 0), ("third", 3)] {
        let exp = create_experiment(app, name).await;
        for i in 0..n {
            let run = create_run(
                app,
                json!({"experiment_id": exp, "run_name": format!("{name}-{i}")}),
            )
            .await;
            runs.push(run["info"]["run_id"].as_str().unwrap().to_owned());
        }
        exps.push(exp);
    }
    let search = |body: Value| async move {
        app.post("/api/2.0/mlflow/runs/search", body)
            .await
            .ok(200)
            .clone()
    };
    let run_names = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| r["info"]["run_name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"experiment_ids": exps, "max_results": 2});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let page = search(body).await;
        seen.extend(run_names(&page));
        pages += 1;
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(
        seen,
        ["first-1", "first-0", "third-2", "third-1", "third-0"]
    );
    let r = app
        .post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": exps, "page_token": "9:"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .post("/api/2.0/mlflow/runs/search", json!({"experiment_ids": []}))
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");

    // LIKE on a tag, case-sensitive; ILIKE ignores case.
    let tables = r#"[{"path": "tables/t.json", "type": "table"}]"#;
    app.post(
        "/api/2.0/mlflow/runs/set-tag",
        json!({"run_id": runs[0], "key": "mlflow.loggedArtifacts", "value": tables}),
    )
    .await
    .ok(200);
    let like =
        |filter: &'static str| search(json!({"experiment_ids": [exps[0]], "filter": filter}));
    assert_eq!(
        run_names(&like(r#"tags.mlflow.loggedArtifacts LIKE '%"path"%:%"tables/t.json",%'"#).await),
        ["first-0"]
    );
    assert!(run_names(&like("tags.mlflow.loggedArtifacts LIKE '%T.JSON%'").await).is_empty());
    assert_eq!(
        run_names(&like("tags.mlflow.loggedArtifacts ILIKE '%T.JSON%'").await),
        ["first-0"]
    );
    assert_eq!(
        run_names(&like("attributes.run_name LIKE 'first-_'").await).len(),
        2
    );

    // A finished run deleted and restored: ready again, and recorded.
    let run = &runs[0];
    app.post(
        "/api/2.0/mlflow/runs/update",
        json!({"run_id": run, "status": "FINISHED"}),
    )
    .await
    .ok(200);
    app.post("/api/2.0/mlflow/runs/delete", json!({"run_id": run}))
        .await
        .ok(200);
    let got = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={run}"))
        .await;
    assert_eq!(got.ok(200)["run"]["info"]["lifecycle_stage"], "deleted");
    for _ in 0..2 {
        app.post("/api/2.0/mlflow/runs/restore", json!({"run_id": run}))
            .await
            .ok(200);
    }
    let got = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={run}"))
        .await;
    let info = got.ok(200)["run"]["info"].clone();
    assert_eq!(
        (info["lifecycle_stage"].as_str(), info["status"].as_str()),
        (Some("active"), Some("FINISHED"))
    );
    let v = app.get("/api/v1/models/first/versions/1").await;
    assert_eq!(v.ok(200)["status"], "ready");
    let events = app
        .get("/api/v1/events?model=first&action=version.restored")
        .await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 1);
    let r = app
        .post("/api/2.0/mlflow/runs/restore", json!({"run_id": "0123"}))
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
}

async fn registered_page(app: &TestApp, page: usize) {
    let r = app
        .get(&format!(
            "/api/2.0/mlflow/registered-models/search?max_results={page}"
        ))
        .await;
    let found = r.ok(200)["registered_models"].as_array().unwrap().clone();
    assert_eq!(found.len(), page);
    assert!(
        found
            .iter()
            .all(|m| m["latest_versions"][0]["version"] == "1")
    );
}

async fn logged_page(app: &TestApp, exp: &str, page: usize) {
    let found = search(
        app,
        json!({"experiment_ids": [exp], "max_results": page,
               "filter": "metrics.acc >= 0 AND tags.t = 'x'",
               "order_by": [{"field_name": "metrics.acc", "ascending": false}]}),
    )
    .await;
    let models = found["models"].as_array().unwrap();
    assert_eq!(models.len(), page);
    assert_eq!(models[0]["info"]["name"], "m99");
    assert!(
        models
            .iter()
            .all(|m| m["data"]["metrics"][0]["key"] == "acc")
    );
}

/// Registered-model and logged-model searches read a page in a few statements whatever its
/// size, and a log-batch is one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_searches_read_in_pages_postgres() {
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
    let run = create_run(&app, json!({"experiment_id": exp})).await;
    let run_id = run["info"]["run_id"].as_str().unwrap().to_owned();
    for i in 0..100 {
        let name = format!("registered-{i:03}");
        app.post(
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": name}),
        )
        .await
        .ok(200);
        app.post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": name, "source": "s3://bucket/model"}),
        )
        .await
        .ok(200);
        let m = create(
            &app,
            json!({"experiment_id": exp, "name": format!("m{i}"), "source_run_id": run_id,
                   "params": [{"key": "i", "value": i.to_string()}],
                   "tags": [{"key": "t", "value": "x"}]}),
        )
        .await;
        app.post(
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "metrics": [{"key": "acc", "value": i, "timestamp": 1,
                   "step": 0, "model_id": id_of(&m)}]}),
        )
        .await
        .ok(200);
    }
    let mut commits = Commits::connect(&db.url).await;
    // Autovacuum's analyze of the tables just filled would count in the windows.
    commits.quiet_tables().await;
    let mut report = Vec::new();
    for page in [2, 100] {
        // Noise (a pool opening a connection, housekeeping) only adds: the least of two
        // windows is the closest to the calls' own cost.
        let mut registered = i64::MAX;
        let mut logged = i64::MAX;
        for _ in 0..2 {
            registered = registered.min(commits.of(registered_page(&app, page)).await);
            logged = logged.min(commits.of(logged_page(&app, &exp, page)).await);
        }
        eprintln!(
            "a page of {page}: registered-model search {registered} transactions, logged-model search {logged}"
        );
        report.push((registered, logged));
    }
    // Per row, each registered model would cost a read of its latest version (98 more for
    // the larger page) and each logged model three (its tags, params and metrics: 294 more).
    assert!(report[1].0 < report[0].0 + 60, "{report:?}");
    assert!(report[1].1 < report[0].1 + 120, "{report:?}");

    // A log-batch of params, tags and 1,000 points: one write transaction (and the reads
    // that check the run and the token), with one event.
    let other = create_run(&app, json!({"experiment_id": exp})).await;
    let other = other["info"]["run_id"].as_str().unwrap().to_owned();
    let points: Vec<Value> = (0..1000)
        .map(|s| json!({"key": "loss", "value": 1.0 / f64::from(s + 1), "timestamp": 1, "step": s}))
        .collect();
    let body = json!({"run_id": other, "metrics": points,
                      "params": (0..50).map(|i| json!({"key": format!("p{i}"), "value": "1"})).collect::<Vec<_>>(),
                      "tags": (0..50).map(|i| json!({"key": format!("t{i}"), "value": "1"})).collect::<Vec<_>>()});
    // Sent twice (a retry: the same params and tags change nothing, the points overwrite
    // themselves); the least of the two windows.
    let mut batch = i64::MAX;
    for _ in 0..2 {
        let sent = commits
            .of(async {
                app.post("/api/2.0/mlflow/runs/log-batch", body.clone())
                    .await
                    .ok(200);
            })
            .await;
        batch = batch.min(sent);
    }
    eprintln!("a log-batch of 50 params, 50 tags and 1,000 points: {batch} transactions");
    // One transaction per tag, as before, would be 52 or more.
    assert!(batch < 30, "{batch} transactions");
    let events = app
        .get("/api/v1/events?model=paged&action=version.updated&limit=100")
        .await;
    let updated: Vec<Value> = events.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["version"] == 2)
        .cloned()
        .collect();
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(
        updated[0]["details"]["config_added"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    app.stop().await;
    db.drop_db().await;
}
