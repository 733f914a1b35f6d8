//! The MLflow layer's artifacts and the rest of its registry: the artifact proxy over a run's
//! artifacts, registration from a run copying its model files, download URIs, searches,
//! stage transitions, deletes and tags, each landing in the native models.

use crate::blobs::Blobs;
use crate::helpers::{Resp, Setup, TestApp};
use crate::mlflow::{create_experiment, create_run, mlflow_error};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The artifact cases run on the local folder and on an in-process S3 server (where the
/// registration's copies are server-side copies).
const STORES: Setup = Setup {
    blobs: &[Blobs::Folder, Blobs::S3],
    ..Setup::PLAIN
};

crate::backend_tests!(with super::STORES;
    the_artifact_proxy_serves_run_artifacts,
    registering_a_run_copies_its_model_files
);

crate::backend_tests!(
    versions_are_searched_transitioned_and_deleted,
    registered_models_are_searched_updated_and_tagged
);

const PROXY: &str = "/api/2.0/mlflow-artifacts/artifacts";

async fn put(app: &TestApp, path: &str, bytes: &'static [u8]) -> Resp {
    app.send(
        app.client
            .put(app.url(&format!("{PROXY}/{path}")))
            .header("content-type", "text/plain")
            .body(bytes),
    )
    .await
}

async fn delete_json(app: &TestApp, path: &str, body: Value) -> Resp {
    app.send(app.client.delete(app.url(path)).json(&body)).await
}

async fn patch_json(app: &TestApp, path: &str, body: Value) -> Resp {
    app.send(app.client.patch(app.url(path)).json(&body)).await
}

/// A run of a new experiment with `model/MLmodel` and `model/data/w.bin` logged: the
/// experiment id, the run id and the run's artifact root (without the scheme).
async fn run_with_model(app: &TestApp, experiment: &str) -> (String, String, String) {
    let exp = create_experiment(app, experiment).await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let root = format!("{exp}/{id}/artifacts");
    assert_eq!(
        run["info"]["artifact_uri"],
        format!("mlflow-artifacts:/{root}")
    );
    put(app, &format!("{root}/model/MLmodel"), b"flavors: {}\n")
        .await
        .ok(200);
    put(app, &format!("{root}/model/data/w.bin"), b"weights")
        .await
        .ok(200);
    (exp, id, root)
}

async fn list(app: &TestApp, path: &str) -> Value {
    let r = app.get(&format!("{PROXY}?path={path}")).await;
    r.ok(200)["files"].clone()
}

async fn the_artifact_proxy_serves_run_artifacts(app: &TestApp) {
    let (exp, run, root) = run_with_model(app, "fraud").await;
    assert_eq!(
        list(app, &root).await,
        json!([{"path": "model", "is_dir": true}])
    );
    assert_eq!(
        list(app, &format!("{root}/model")).await,
        json!([
            {"path": "MLmodel", "is_dir": false, "file_size": 12},
            {"path": "data", "is_dir": true}
        ])
    );
    assert_eq!(list(app, &format!("{root}/nothing")).await, json!([]));
    let r = app
        .send(
            app.client
                .get(app.url(&format!("{PROXY}/{root}/model/data/w.bin"))),
        )
        .await;
    assert_eq!(r.status, 200);
    // The bytes are the native artifact's: same path, checksum and event.
    let v = app.get("/api/v1/models/fraud/versions/1/artifacts").await;
    let items = v.ok(200)["items"].as_array().unwrap().clone();
    let w = items
        .iter()
        .find(|a| a["path"] == "model/data/w.bin")
        .unwrap();
    assert_eq!(w["sha256"], hex(b"weights"));
    assert_eq!(w["content_type"], "text/plain");

    // Missing things, a path the run cannot hold, another experiment's id, a second upload.
    let r = app.get(&format!("{PROXY}/{root}/model/absent")).await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    let other = create_experiment(app, "other").await;
    let r = app
        .get(&format!("{PROXY}?path={other}/{run}/artifacts"))
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    for bad in ["", "just-a-word", "0/0/artifacts"] {
        let r = app.get(&format!("{PROXY}?path={bad}")).await;
        mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    }
    let r = put(app, &format!("{root}/model/MLmodel"), b"again").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = put(app, &format!("{root}/a//b"), b"x").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");

    // A finished run's artifacts are immutable, as a ready version's are.
    app.post(
        "/api/2.0/mlflow/runs/update",
        json!({"run_id": run, "status": "FINISHED"}),
    )
    .await
    .ok(200);
    let r = put(app, &format!("{root}/late.txt"), b"late").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert_eq!(exp.len(), 32);
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn registering_a_run_copies_its_model_files(app: &TestApp) {
    let (exp, run, root) = run_with_model(app, "training").await;
    app.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "fraud"}),
    )
    .await
    .ok(200);
    let source = format!("mlflow-artifacts:/{root}/model");
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "fraud", "source": source, "run_id": run}),
        )
        .await;
    let mv = &r.ok(200)["model_version"];
    assert_eq!(
        (mv["version"].clone(), mv["status"].clone()),
        (json!("1"), json!("READY"))
    );
    assert_eq!(mv["source"], source.as_str());

    // The new version holds copies of the files under model/, at its root, with their
    // checksums; the run keeps its own.
    let v = app.get("/api/v1/models/fraud/versions/1").await;
    let v = v.ok(200);
    let files: Vec<(Value, Value)> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].clone(), a["sha256"].clone()))
        .collect();
    assert_eq!(
        files,
        [
            (json!("MLmodel"), json!(hex(b"flavors: {}\n"))),
            (json!("data/w.bin"), json!(hex(b"weights")))
        ]
    );
    let copy_id = v["id"].as_str().unwrap().replace('-', "");
    let fraud = app.get("/api/v1/models/fraud").await.ok(200)["id"]
        .as_str()
        .unwrap()
        .replace('-', "");
    let r = app
        .get("/api/2.0/mlflow/model-versions/get-download-uri?name=fraud&version=1")
        .await;
    assert_eq!(
        r.ok(200)["artifact_uri"],
        format!("mlflow-artifacts:/{fraud}/{copy_id}/artifacts")
    );
    let r = app
        .send(
            app.client
                .get(app.url(&format!("{PROXY}/{fraud}/{copy_id}/artifacts/data/w.bin"))),
        )
        .await;
    assert_eq!(r.status, 200);

    // A run registered into its own experiment's model is that version: its MLmodel's
    // directory is where the model is downloaded from.
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "training", "source": source, "run_id": run}),
        )
        .await;
    assert_eq!(r.ok(200)["model_version"]["version"], "1");
    let r = app
        .get("/api/2.0/mlflow/model-versions/get-download-uri?name=training&version=1")
        .await;
    assert_eq!(
        r.ok(200)["artifact_uri"],
        format!("mlflow-artifacts:/{root}/model")
    );
    // Files kept elsewhere: the source itself.
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "fraud", "source": "s3://bucket/model"}),
        )
        .await;
    assert_eq!(r.ok(200)["model_version"]["version"], "2");
    let r = app
        .get("/api/2.0/mlflow/model-versions/get-download-uri?name=fraud&version=2")
        .await;
    assert_eq!(r.ok(200)["artifact_uri"], "s3://bucket/model");
    // The registration's events: the version and its copied artifacts.
    let ev = app.get("/api/v1/events?model=fraud&limit=50").await;
    let actions: Vec<Value> = ev.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert!(actions.contains(&json!("artifact.uploaded")), "{actions:?}");
    assert_eq!(exp.len(), 32);
}

async fn versions_are_searched_transitioned_and_deleted(app: &TestApp) {
    app.model("fraud").await;
    for tags in [json!({"team": "risk"}), json!({"team": "ops"}), json!({})] {
        app.version("fraud", json!({"tags": tags, "finalize": true}))
            .await;
    }
    let search = |q: &'static str| async move {
        let r = app
            .get(&format!("/api/2.0/mlflow/model-versions/search?{q}"))
            .await;
        let page = r.ok(200).clone();
        page["model_versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(search("filter=name%3D%27fraud%27").await, ["3", "2", "1"]);
    assert_eq!(
        search("filter=name%3D%27fraud%27&order_by=version_number%20ASC&max_results=2").await,
        ["1", "2"]
    );
    assert_eq!(
        search("filter=name%3D%27fraud%27%20and%20tags.team%3D%27risk%27").await,
        ["1"]
    );
    assert!(search("filter=name%3D%27absent%27").await.is_empty());
    let r = app
        .get("/api/2.0/mlflow/model-versions/search?filter=tags.team%3D%27risk%27")
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");

    // Staging and Production are the modelreg stages of those names.
    let transition = |version: &'static str, stage: &'static str| async move {
        app.post(
            "/api/2.0/mlflow/model-versions/transition-stage",
            json!({"name": "fraud", "version": version, "stage": stage,
                   "archive_existing_versions": false}),
        )
        .await
    };
    let r = transition("2", "production").await;
    assert_eq!(r.ok(200)["model_version"]["current_stage"], "Production");
    let s = app.get("/api/v1/models/fraud/stages/production").await;
    assert_eq!(s.ok(200)["version"], 2);
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/get-latest-versions",
            json!({"name": "fraud", "stages": ["Production"]}),
        )
        .await;
    assert_eq!(r.ok(200)["model_versions"][0]["version"], "2");
    // A version in a stage is not archived; once cleared it is.
    let r = transition("2", "Archived").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = transition("2", "None").await;
    assert_eq!(r.ok(200)["model_version"]["current_stage"], "None");
    let r = transition("2", "Staging-ish").await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");

    // Description and tags, then delete: archived, still there.
    let r = patch_json(
        app,
        "/api/2.0/mlflow/model-versions/update",
        json!({"name": "fraud", "version": "3", "description": "latest"}),
    )
    .await;
    assert_eq!(r.ok(200)["model_version"]["description"], "latest");
    app.post(
        "/api/2.0/mlflow/model-versions/set-tag",
        json!({"name": "fraud", "version": "3", "key": "k", "value": "v"}),
    )
    .await
    .ok(200);
    let v = app.get("/api/v1/models/fraud/versions/3").await;
    assert_eq!(v.ok(200)["tags"]["k"], "v");
    delete_json(
        app,
        "/api/2.0/mlflow/model-versions/delete-tag",
        json!({"name": "fraud", "version": "3", "key": "k"}),
    )
    .await
    .ok(200);
    delete_json(
        app,
        "/api/2.0/mlflow/model-versions/delete",
        json!({"name": "fraud", "version": "3"}),
    )
    .await
    .ok(200);
    let v = app.get("/api/v1/models/fraud/versions/3").await;
    let v = v.ok(200);
    assert_eq!(
        (v["status"].clone(), v["tags"].clone()),
        (json!("archived"), json!({}))
    );
    let r = app
        .get("/api/2.0/mlflow/model-versions/get?name=fraud&version=3")
        .await;
    assert_eq!(r.ok(200)["model_version"]["current_stage"], "Archived");

    // A run: deleted is archived (lifecycle_stage deleted); searching by run_id finds it.
    let exp = create_experiment(app, "training").await;
    let run = create_run(app, json!({"experiment_id": exp})).await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    app.post(
        "/api/2.0/mlflow/runs/update",
        json!({"run_id": id, "status": "FINISHED"}),
    )
    .await
    .ok(200);
    let r = app
        .get(&format!(
            "/api/2.0/mlflow/model-versions/search?filter=run_id%3D%27{id}%27"
        ))
        .await;
    assert_eq!(r.ok(200)["model_versions"][0]["name"], "training");
    app.post("/api/2.0/mlflow/runs/delete", json!({"run_id": id}))
        .await
        .ok(200);
    let r = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={id}"))
        .await;
    assert_eq!(r.ok(200)["run"]["info"]["lifecycle_stage"], "deleted");
}

async fn registered_models_are_searched_updated_and_tagged(app: &TestApp) {
    for name in ["fraud-a", "fraud-b", "churn"] {
        app.post(
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": name}),
        )
        .await
        .ok(200);
    }
    let names = |r: &Resp| -> Vec<String> {
        r.ok(200)["registered_models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // MLflow's client adds a prompt clause to every search.
    let q = "filter=name%20LIKE%20%27fraud%25%27%20AND%20tag.%60mlflow.prompt.is_prompt%60%20!%3D%20%27true%27";
    let r = app
        .get(&format!("/api/2.0/mlflow/registered-models/search?{q}"))
        .await;
    assert_eq!(names(&r), ["fraud-a", "fraud-b"]);
    let r = app
        .get("/api/2.0/mlflow/registered-models/search?max_results=1")
        .await;
    assert_eq!(names(&r), ["churn"]);
    let token = r.body["next_page_token"].as_str().unwrap().to_owned();
    let r = app
        .get(&format!(
            "/api/2.0/mlflow/registered-models/search?max_results=1&page_token={token}"
        ))
        .await;
    assert_eq!(names(&r), ["fraud-a"]);

    let r = patch_json(
        app,
        "/api/2.0/mlflow/registered-models/update",
        json!({"name": "fraud-a", "description": "scores"}),
    )
    .await;
    assert_eq!(r.ok(200)["registered_model"]["description"], "scores");
    app.post(
        "/api/2.0/mlflow/registered-models/set-tag",
        json!({"name": "fraud-a", "key": "team", "value": "risk"}),
    )
    .await
    .ok(200);
    let q = "filter=tags.team%20%3D%20%27risk%27";
    let r = app
        .get(&format!("/api/2.0/mlflow/registered-models/search?{q}"))
        .await;
    assert_eq!(names(&r), ["fraud-a"]);
    delete_json(
        app,
        "/api/2.0/mlflow/registered-models/delete-tag",
        json!({"name": "fraud-a", "key": "team"}),
    )
    .await
    .ok(200);
    let m = app.get("/api/v1/models/fraud-a").await;
    assert_eq!(m.ok(200)["tags"], json!({}));
    assert_eq!(m.body["description"], "scores");

    // Renaming is refused; deleting works while the model has no versions.
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/rename",
            json!({"name": "fraud-a", "new_name": "fraud-c"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    delete_json(
        app,
        "/api/2.0/mlflow/registered-models/delete",
        json!({"name": "fraud-b"}),
    )
    .await
    .ok(200);
    app.version("fraud-a", json!({})).await;
    let r = delete_json(
        app,
        "/api/2.0/mlflow/registered-models/delete",
        json!({"name": "fraud-a"}),
    )
    .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    let r = app
        .get("/api/2.0/mlflow/registered-models/get?name=fraud-b")
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");

    // MLflow 3's logged models: none, in experiments that exist.
    let exp = create_experiment(app, "training").await;
    let r = app
        .post(
            "/api/2.0/mlflow/logged-models/search",
            json!({"experiment_ids": [exp]}),
        )
        .await;
    assert_eq!(r.ok(200)["models"], json!([]));
    let r = app
        .post(
            "/api/2.0/mlflow/logged-models/search",
            json!({"experiment_ids": ["123"]}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
}
