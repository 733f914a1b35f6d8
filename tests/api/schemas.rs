//! Interface schemas: set with the registration or while pending, read from an `MLmodel` file
//! at finalize, final once ready; compared (each change compatible or breaking); and the
//! `schema_compatible` stage policy check passing, failing and in a dry run. Both backends.

use crate::helpers::{Resp, TestApp};
use serde_json::{Value, json};

crate::backend_tests!(
    a_schema_is_set_while_pending_and_final_once_ready,
    a_schema_is_read_from_the_mlmodel_file_at_finalize,
    compare_classifies_each_schema_change,
    schema_compatible_refuses_a_breaking_promote
);

fn col(name: &str, ty: &str) -> Value {
    json!({"name": name, "type": ty})
}

fn schema(inputs: Value) -> Value {
    json!({"inputs": inputs, "outputs": [col("score", "double")]})
}

async fn a_schema_is_set_while_pending_and_final_once_ready(app: &TestApp) {
    app.model("m").await;
    let s1 = schema(json!([col("age", "long"), col("city", "string")]));
    let r = app
        .post("/api/v1/models/m/versions", json!({"schema": s1}))
        .await;
    assert_eq!(r.ok(201)["version"], 1);
    let got = app.get("/api/v1/models/m/versions/1/schema").await;
    assert_eq!(
        got.ok(200)["inputs"][0],
        json!({"name": "age", "type": "long", "required": true})
    );
    let detail = app.get("/api/v1/models/m/versions/1").await;
    assert_eq!(detail.ok(200)["schema"]["outputs"][0]["name"], "score");
    // Replaced while pending, in MLflow's tensor form too.
    let tensor = json!({"inputs": [{"name": "x", "type": "tensor",
                                    "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]});
    let r = app.put("/api/v1/models/m/versions/1/schema", tensor).await;
    assert_eq!(
        r.ok(200)["inputs"][0],
        json!({"name": "x", "type": "tensor", "dtype": "float32", "shape": [-1, 4], "required": true})
    );
    let events = app
        .get("/api/v1/events?model=m&action=version.schema_set")
        .await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 1);
    // Bad schemas: 422 naming the field.
    for (bad, field) in [
        (json!([]), "schema"),
        (json!({"inputs": [{"name": "a"}]}), "schema"),
        (
            json!({"inputs": [{"name": "a", "type": "long", "color": 1}]}),
            "schema.inputs[0].color",
        ),
        (
            json!({"inputs": [{"type": "tensor", "dtype": "f", "shape": [-7]}]}),
            "schema.inputs[0].shape",
        ),
    ] {
        let r = app
            .put("/api/v1/models/m/versions/1/schema", bad.clone())
            .await;
        assert_eq!(r.problem(422, "validation_failed")["field"], field, "{bad}");
    }
    let r = app
        .post(
            "/api/v1/models/m/versions",
            json!({"schema": {"inputs": 3}}),
        )
        .await;
    r.problem(422, "validation_failed");
    // Final once ready; a version without one answers 404.
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    app.put("/api/v1/models/m/versions/1/schema", schema(json!([])))
        .await
        .problem(409, "version_immutable");
    app.version("m", json!({})).await;
    app.get("/api/v1/models/m/versions/2/schema")
        .await
        .problem(404, "schema_not_found");
    app.get("/api/v1/models/m/versions/9/schema")
        .await
        .problem(404, "version_not_found");
    let detail = app.get("/api/v1/models/m/versions/2").await;
    assert_eq!(detail.ok(200)["schema"], Value::Null);
}

const MLMODEL: &str = r#"artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.2
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type": "double", "name": "petal width (cm)", "required": true}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
"#;

async fn upload(app: &TestApp, version: i64, path: &str, body: &'static str) -> Resp {
    app.send(
        app.client
            .put(app.url(&format!(
                "/api/v1/models/m/versions/{version}/artifacts/{path}"
            )))
            .header("content-type", "text/yaml")
            .body(body),
    )
    .await
}

async fn a_schema_is_read_from_the_mlmodel_file_at_finalize(app: &TestApp) {
    app.model("m").await;
    // The MLmodel nearest the root is the model's.
    app.version("m", json!({})).await;
    upload(app, 1, "model/MLmodel", MLMODEL).await.ok(201);
    upload(app, 1, "model/sub/MLmodel", "signature: {inputs: '[]'}\n")
        .await
        .ok(201);
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    let s = app.get("/api/v1/models/m/versions/1/schema").await;
    let s = s.ok(200);
    assert_eq!(s["inputs"][0]["name"], "sepal length (cm)");
    assert_eq!(s["outputs"], json!([{"type": "long", "required": true}]));
    // A schema the client set is kept.
    let mine = schema(json!([col("x", "double")]));
    app.post("/api/v1/models/m/versions", json!({"schema": mine}))
        .await
        .ok(201);
    upload(app, 2, "MLmodel", MLMODEL).await.ok(201);
    app.post_empty("/api/v1/models/m/versions/2/finalize")
        .await
        .ok(200);
    let s = app.get("/api/v1/models/m/versions/2/schema").await;
    assert_eq!(s.ok(200)["inputs"][0]["name"], "x");
    // An MLmodel that cannot be read declares nothing; the version is finalized all the same.
    app.version("m", json!({})).await;
    upload(app, 3, "MLmodel", "signature: [not: a, map")
        .await
        .ok(201);
    app.post_empty("/api/v1/models/m/versions/3/finalize")
        .await
        .ok(200);
    app.get("/api/v1/models/m/versions/3/schema")
        .await
        .problem(404, "schema_not_found");
}

async fn compare_classifies_each_schema_change(app: &TestApp) {
    app.model("m").await;
    for s in [
        schema(json!([col("age", "long"), col("city", "string")])),
        schema(json!([col("age", "long"), col("city", "string"),
                      {"name": "note", "type": "string", "required": false}])),
        schema(json!([col("age", "string")])),
    ] {
        app.post(
            "/api/v1/models/m/versions",
            json!({"schema": s, "finalize": true}),
        )
        .await
        .ok(201);
    }
    let r = app.get("/api/v1/models/m/compare?versions=1,2,3").await;
    let diffs = r.ok(200)["schema_diff"].clone();
    assert_eq!(diffs[0]["from"], 1);
    assert_eq!(diffs[0]["to"], 2);
    assert_eq!(diffs[0]["compatible"], true);
    assert_eq!(
        diffs[0]["changes"],
        json!([{"part": "inputs", "name": "note", "change": "added",
                "to": {"type": "string"}, "compatible": true,
                "detail": "a new optional input \"note\""}])
    );
    assert_eq!(diffs[1]["compatible"], false);
    let kinds: Vec<(String, String, bool)> = diffs[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["change"].as_str().unwrap().to_owned(),
                c["compatible"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("age".to_owned(), "retyped".to_owned(), false),
            ("city".to_owned(), "removed".to_owned(), false)
        ]
    );
}

const POLICY: &str = "/api/v1/models/m/stages/production/policy";

async fn promote(app: &TestApp, stage: &str, body: Value) -> Resp {
    app.post(&format!("/api/v1/models/m/stages/{stage}/promote"), body)
        .await
}

fn check(body: &Value) -> Value {
    body["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "schema_compatible"))
        .cloned()
        .unwrap_or_else(|| panic!("no schema_compatible check in {body}"))
}

async fn schema_compatible_refuses_a_breaking_promote(app: &TestApp) {
    app.model("m").await;
    let live = schema(json!([col("age", "long"), col("city", "string")]));
    let widened = schema(json!([col("age", "long"), col("city", "string"),
                                {"name": "note", "type": "string", "required": false}]));
    let broken = schema(json!([col("age", "string"), col("city", "string")]));
    for s in [live, widened, broken.clone()] {
        app.post(
            "/api/v1/models/m/versions",
            json!({"schema": s, "finalize": true}),
        )
        .await
        .ok(201);
    }
    app.version("m", json!({"finalize": true})).await; // 4: no schema
    let r = app.put(POLICY, json!({"schema_compatible": true})).await;
    assert_eq!(r.ok(200)["schema_compatible"], true);
    // Nothing live yet: anything passes.
    let r = promote(app, "production", json!({"version": 1})).await;
    r.ok(200);
    // A dry run shows the check; a compatible version passes.
    let r = promote(app, "production", json!({"version": 3, "dry_run": true})).await;
    let d = r.ok(200);
    assert_eq!(d["allowed"], false);
    let c = check(d);
    assert_eq!(c["ok"], false);
    assert_eq!(c["expected"], json!({"compatible_with": "production:1"}));
    assert_eq!(c["observed"]["breaking"][0]["name"], "age");
    assert!(
        c["detail"].as_str().unwrap().contains("input \"age\" was"),
        "{c}"
    );
    let r = promote(app, "production", json!({"version": 3})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(
        check(e)["observed"]["breaking"].as_array().unwrap().len(),
        1
    );
    // Without a schema a candidate cannot be shown compatible.
    let r = promote(app, "production", json!({"version": 4})).await;
    assert_eq!(check(r.problem(409, "policy_violation"))["ok"], false);
    let r = promote(app, "production", json!({"version": 2})).await;
    assert_eq!(r.ok(200)["version"], 2);
    // Checked against another stage: staging holds 1; 3 breaks it there too.
    let r = app
        .put(
            "/api/v1/models/m/stages/canary/policy",
            json!({"schema_compatible": {"with_stage": "staging"}}),
        )
        .await;
    assert_eq!(
        r.ok(200)["schema_compatible"],
        json!({"with_stage": "staging"})
    );
    let r = promote(app, "canary", json!({"version": 3, "dry_run": true})).await;
    assert_eq!(
        check(r.ok(200))["detail"],
        "staging holds no version to compare with"
    );
    promote(app, "staging", json!({"version": 1})).await.ok(200);
    let r = promote(app, "canary", json!({"version": 3})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(
        check(e)["expected"],
        json!({"compatible_with": "staging:1"})
    );
    for bad in [
        json!("yes"),
        json!({"with_stage": "Not A Stage"}),
        json!({"stage": "x"}),
    ] {
        app.put(POLICY, json!({"schema_compatible": bad}))
            .await
            .problem(422, "validation_failed");
    }
    // Every policy of the model, by stage.
    let all = app.get("/api/v1/models/m/policies").await;
    let stages: Vec<&str> = all.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["canary", "production"]);
    app.get("/api/v1/models/nope/policies")
        .await
        .problem(404, "model_not_found");
    // false turns it off.
    let r = app.put(POLICY, json!({"schema_compatible": false})).await;
    assert!(r.ok(200).get("schema_compatible").is_none());
    promote(app, "production", json!({"version": 3}))
        .await
        .ok(200);
}
