//! A version's inputs (datasets it was made from): added while pending, in order, the same
//! dataset for the same use kept once, immutable once ready, listed by the version's detail;
//! and MLflow's `runs/log-inputs` onto them, answered back by `runs/get`. Both backends.

use crate::helpers::TestApp;
use crate::mlflow::{create_run, mlflow_error};
use serde_json::{Value, json};

crate::backend_tests!(
    inputs_are_added_while_pending_and_kept_once,
    mlflow_datasets_are_the_runs_inputs,
    datasets_are_traced_to_the_versions_that_used_them,
    versions_and_code_are_inputs_too,
    lineage_reads_up_and_down,
    inputs_are_given_at_registration,
    versions_are_filtered_by_their_inputs,
    an_mlflow_registration_records_the_run_it_copies
);

const INPUTS: &str = "/api/v1/models/m/versions/1/inputs";

fn dataset(name: &str, digest: &str, context: &str) -> Value {
    json!({"kind": "dataset", "name": name, "digest": digest, "context": context,
           "uri": "s3://data/iris.csv", "schema": {"columns": ["a", "b"]}})
}

async fn inputs_are_added_while_pending_and_kept_once(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let r = app
        .post(
            INPUTS,
            json!({"inputs": [dataset("iris", "sha256:aa", "training"),
                              dataset("iris", "sha256:aa", "evaluation")]}),
        )
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 2);
    // Again, with one new: the two held are not added twice; order is kept.
    let r = app
        .post(
            INPUTS,
            json!({"inputs": [dataset("iris", "sha256:aa", "training"),
                              dataset("holdout", "sha256:bb", "validation")]}),
        )
        .await;
    let items = r.ok(200)["items"].as_array().unwrap().clone();
    let names: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["context"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("iris", "training"),
            ("iris", "evaluation"),
            ("holdout", "validation")
        ]
    );
    let detail = app.get("/api/v1/models/m/versions/1").await;
    let detail = detail.ok(200);
    assert_eq!(detail["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(
        detail["inputs"][0]["schema"],
        json!({"columns": ["a", "b"]})
    );
    assert_eq!(detail["inputs"][0]["kind"], "dataset");
    // Bad inputs: 422 naming the field; an unknown kind or field; not JSON of the shape.
    for bad in [
        json!({"inputs": [{"kind": "dataset", "name": "", "digest": "x"}]}),
        json!({"inputs": [{"kind": "table", "name": "a", "digest": "x"}]}),
        json!({"inputs": [{"kind": "dataset", "name": "a", "digest": "x", "color": "red"}]}),
        json!({"inputs": "iris"}),
        json!({"inputs": [], "extra": 1}),
    ] {
        app.post(INPUTS, bad)
            .await
            .problem(422, "validation_failed");
    }
    app.post("/api/v1/models/m/versions/7/inputs", json!({"inputs": []}))
        .await
        .problem(404, "version_not_found");
    // Once ready, inputs are final.
    app.post_empty("/api/v1/models/m/versions/1/finalize")
        .await
        .ok(200);
    app.post(
        INPUTS,
        json!({"inputs": [dataset("late", "sha256:cc", "training")]}),
    )
    .await
    .problem(409, "version_immutable");
    let events = app
        .get("/api/v1/events?model=m&action=version.inputs_added")
        .await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 2);
}

async fn mlflow_datasets_are_the_runs_inputs(app: &TestApp) {
    let run = create_run(app, json!({})).await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let schema = r#"{"mlflow_colspec": [{"type": "double", "name": "x"}]}"#;
    let body = json!({"run_id": id, "datasets": [{
        "tags": [{"key": "mlflow.data.context", "value": "training"}],
        "dataset": {"name": "iris", "digest": "2f1e", "source_type": "local",
                    "source": "{\"uri\": \"/data/iris.csv\"}", "schema": schema,
                    "profile": "{\"num_rows\": 150}"}}]});
    app.post("/api/2.0/mlflow/runs/log-inputs", body.clone())
        .await
        .ok(200);
    // Logged again (autolog and evaluate do): kept once.
    app.post("/api/2.0/mlflow/runs/log-inputs", body)
        .await
        .ok(200);
    let got = app
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={id}"))
        .await;
    let inputs = got.ok(200)["run"]["inputs"].clone();
    let datasets = inputs["dataset_inputs"].as_array().unwrap();
    assert_eq!(datasets.len(), 1, "{inputs}");
    assert_eq!(
        datasets[0]["tags"],
        json!([{"key": "mlflow.data.context", "value": "training"}])
    );
    assert_eq!(datasets[0]["dataset"]["name"], "iris");
    assert_eq!(datasets[0]["dataset"]["source_type"], "local");
    let back: Value =
        serde_json::from_str(datasets[0]["dataset"]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(schema).unwrap());
    // Natively: a dataset input of the run's version, with its uri and schema as JSON.
    let v = app.get("/api/v1/models/default/versions/1").await;
    let input = v.ok(200)["inputs"][0].clone();
    assert_eq!(input["uri"], "/data/iris.csv");
    assert_eq!(input["context"], "training");
    assert_eq!(input["profile"], json!({"num_rows": 150}));
    // A logged-model input must exist; a finished run's inputs are final.
    let r = app
        .post(
            "/api/2.0/mlflow/runs/log-inputs",
            json!({"run_id": id, "models": [{"model_id": "m-123"}]}),
        )
        .await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    app.post(
        "/api/2.0/mlflow/runs/update",
        json!({"run_id": id, "status": "FINISHED"}),
    )
    .await
    .ok(200);
    let late = json!({"run_id": id, "datasets": [{"tags": [], "dataset":
        {"name": "late", "digest": "1", "source_type": "local", "source": "{}"}}]});
    let r = app.post("/api/2.0/mlflow/runs/log-inputs", late).await;
    let message = mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
    assert!(message.contains("has ended"), "{message}");
}

/// `GET /api/v1/lineage/datasets`: the versions that used a dataset, by digest or name, with
/// their context and the stages holding them, keyset-paged; MLflow's logged datasets included.
async fn datasets_are_traced_to_the_versions_that_used_them(app: &TestApp) {
    for (model, versions) in [("fraud", 3), ("churn", 1)] {
        app.model(model).await;
        for v in 1..=versions {
            app.version(model, json!({})).await;
            let context = if v == 2 { "evaluation" } else { "training" };
            app.post(
                &format!("/api/v1/models/{model}/versions/{v}/inputs"),
                json!({"inputs": [dataset("iris", "sha256:aa", context)]}),
            )
            .await
            .ok(200);
        }
    }
    app.post(
        "/api/v1/models/fraud/versions/3/inputs",
        json!({"inputs": [dataset("holdout", "sha256:bb", "validation")]}),
    )
    .await
    .ok(200);
    app.post_empty("/api/v1/models/fraud/versions/3/finalize")
        .await
        .ok(200);
    app.post(
        "/api/v1/models/fraud/stages/production/promote",
        json!({"version": 3}),
    )
    .await
    .ok(200);
    let uses = |query: &'static str| async move {
        app.get(&format!("/api/v1/lineage/datasets?{query}"))
            .await
            .ok(200)
            .clone()
    };
    let key = |page: &Value| -> Vec<(String, i64)> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["model"].as_str().unwrap().to_owned(),
                    i["version"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let all = uses("digest=sha256:aa").await;
    assert_eq!(
        key(&all),
        [
            ("churn".into(), 1),
            ("fraud".into(), 3),
            ("fraud".into(), 2),
            ("fraud".into(), 1)
        ]
    );
    assert_eq!(all["items"][1]["stages"], json!(["production"]));
    assert_eq!(all["items"][1]["status"], "ready");
    assert_eq!(all["items"][2]["context"], "evaluation");
    assert_eq!(key(&uses("name=holdout").await), [("fraud".into(), 3)]);
    // The live ones only: held by a stage now.
    assert_eq!(
        key(&uses("digest=sha256:aa&staged=true").await),
        [("fraud".into(), 3)]
    );
    assert!(key(&uses("digest=sha256:none").await).is_empty());
    // Paged: two at a time, nothing lost or repeated.
    let first = uses("digest=sha256:aa&limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!(
            "/api/v1/lineage/datasets?digest=sha256:aa&limit=2&cursor={cursor}"
        ))
        .await;
    let rest = rest.ok(200);
    let mut both = key(&first);
    both.extend(key(rest));
    assert_eq!(both, key(&all));
    assert!(rest["next_cursor"].is_null());
    // MLflow's logged datasets are inputs too.
    let run = create_run(app, json!({})).await;
    let id = run["info"]["run_id"].as_str().unwrap();
    app.post(
        "/api/2.0/mlflow/runs/log-inputs",
        json!({"run_id": id, "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
               "dataset": {"name": "iris", "digest": "sha256:aa", "source_type": "local", "source": "{}"}}]}),
    )
    .await
    .ok(200);
    assert!(key(&uses("digest=sha256:aa").await).contains(&("default".into(), 1)));
    // Exactly one of digest and name; a cursor of this list only.
    for bad in ["", "digest=a&name=b", "digest=", "digest=a&cursor=zzz"] {
        let r = app.get(&format!("/api/v1/lineage/datasets?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

/// Inputs of the other kinds: a version this one was made from (final, readable, not itself)
/// and the code that built it.
async fn versions_and_code_are_inputs_too(app: &TestApp) {
    app.model("base").await;
    app.version("base", json!({"finalize": true})).await;
    app.version("base", json!({})).await;
    app.model("tuned").await;
    app.version("tuned", json!({})).await;
    let inputs = "/api/v1/models/tuned/versions/1/inputs";
    let r = app
        .post(
            inputs,
            json!({"inputs": [
                {"kind": "version", "model": "base", "version": 1, "relation": "fine_tuned_from"},
                {"kind": "code", "uri": "https://git.example/train", "commit": "0a1b2c3"}]}),
        )
        .await;
    let items = r.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["relation"], "fine_tuned_from");
    assert_eq!(items[1]["commit"], "0a1b2c3");
    // The same again adds nothing; another relation to the same version is another input.
    let r = app
        .post(
            inputs,
            json!({"inputs": [
                {"kind": "version", "model": "base", "version": 1, "relation": "fine_tuned_from"},
                {"kind": "version", "model": "base", "version": 1, "relation": "evaluated_with"}]}),
        )
        .await;
    assert_eq!(r.ok(200)["items"].as_array().unwrap().len(), 3);
    // A pending version is not an input (lineage never loops); nor is a missing one, nor itself.
    let r = app
        .post(
            inputs,
            json!({"inputs": [{"kind": "version", "model": "base", "version": 2, "relation": "x"}]}),
        )
        .await;
    r.problem(409, "input_pending");
    let r = app
        .post(
            inputs,
            json!({"inputs": [{"kind": "version", "model": "base", "version": 9, "relation": "x"}]}),
        )
        .await;
    r.problem(404, "version_not_found");
    let r = app
        .post(
            inputs,
            json!({"inputs": [{"kind": "version", "model": "tuned", "version": 1, "relation": "x"}]}),
        )
        .await;
    r.problem(422, "validation_failed");
    let r = app
        .post(
            inputs,
            json!({"inputs": [{"kind": "version", "model": "base", "version": 1, "relation": "Not A Word"}]}),
        )
        .await;
    r.problem(422, "validation_failed");
    let detail = app.get("/api/v1/models/tuned/versions/1").await;
    let kinds: Vec<&str> = detail.ok(200)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["version", "code", "version"]);
    // Final once the version is.
    app.post_empty("/api/v1/models/tuned/versions/1/finalize")
        .await
        .ok(200);
    let r = app
        .post(
            inputs,
            json!({"inputs": [{"kind": "code", "uri": "https://git.example/other"}]}),
        )
        .await;
    r.problem(409, "version_immutable");
}

/// `…/lineage`: a chain base:1 → tuned:1 → distilled:1 (and base:1 → eval:1), read up and down
/// to a depth.
async fn lineage_reads_up_and_down(app: &TestApp) {
    for (model, inputs) in [
        ("base", vec![]),
        ("tuned", vec![("base", "fine_tuned_from")]),
        ("distilled", vec![("tuned", "distilled_from")]),
        ("eval", vec![("base", "evaluated_with")]),
    ] {
        app.model(model).await;
        app.version(model, json!({})).await;
        let list: Vec<Value> = inputs
            .iter()
            .map(|(m, r)| json!({"kind": "version", "model": m, "version": 1, "relation": r}))
            .collect();
        if !list.is_empty() {
            app.post(
                &format!("/api/v1/models/{model}/versions/1/inputs"),
                json!({"inputs": list}),
            )
            .await
            .ok(200);
        }
        app.post_empty(&format!("/api/v1/models/{model}/versions/1/finalize"))
            .await
            .ok(200);
    }
    let graph = |path: &'static str| async move {
        app.get(&format!("/api/v1/models/{path}"))
            .await
            .ok(200)
            .clone()
    };
    let ids = |g: &Value| -> Vec<String> {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let up = graph("distilled/versions/1/lineage").await;
    assert_eq!(ids(&up), ["distilled:1", "tuned:1", "base:1"]);
    assert_eq!(
        up["edges"],
        json!([{"from": "tuned:1", "to": "distilled:1", "relation": "distilled_from"},
               {"from": "base:1", "to": "tuned:1", "relation": "fine_tuned_from"}])
    );
    assert_eq!(
        ids(&graph("distilled/versions/1/lineage?depth=1").await),
        ["distilled:1", "tuned:1"]
    );
    let down = graph("base/versions/1/lineage?direction=down&depth=10").await;
    let mut got = ids(&down);
    got.sort();
    assert_eq!(got, ["base:1", "distilled:1", "eval:1", "tuned:1"]);
    assert_eq!(down["nodes"][0]["id"], "base:1");
    assert_eq!(down["edges"].as_array().unwrap().len(), 3);
    assert_eq!(ids(&graph("base/versions/1/lineage").await), ["base:1"]);
    for bad in ["depth=0", "depth=11", "direction=sideways"] {
        let r = app
            .get(&format!("/api/v1/models/base/versions/1/lineage?{bad}"))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    app.get("/api/v1/models/base/versions/9/lineage")
        .await
        .problem(404, "version_not_found");
}

/// `inputs` in the registration body: recorded in order with the version, checked as
/// `POST …/inputs` checks them, part of what an `Idempotency-Key` remembers.
async fn inputs_are_given_at_registration(app: &TestApp) {
    app.model("base").await;
    app.version("base", json!({"finalize": true})).await;
    app.version("base", json!({})).await;
    app.model("tuned").await;
    let inputs = json!([
        dataset("iris", "sha256:aa", "training"),
        {"kind": "version", "model": "base", "version": 1, "relation": "fine_tuned_from"},
        {"kind": "code", "uri": "https://git.example/train", "commit": "0a1b2c3"},
        dataset("iris", "sha256:aa", "training")
    ]);
    let send = |body: Value| async move {
        app.send(
            app.client
                .post(app.url("/api/v1/models/tuned/versions"))
                .header("idempotency-key", "run-17")
                .json(&body),
        )
        .await
    };
    let r = send(json!({"inputs": inputs, "finalize": true})).await;
    assert_eq!(r.ok(201)["version"], 1);
    let detail = app.get("/api/v1/models/tuned/versions/1").await;
    let kinds: Vec<&str> = detail.ok(200)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["dataset", "version", "code"],
        "the repeat kept once"
    );
    // The retry answers the same version; the same key with other inputs is refused.
    let r = send(json!({"inputs": inputs, "finalize": true})).await;
    assert_eq!(r.ok(200)["version"], 1);
    let r = send(json!({"inputs": [dataset("other", "sha256:bb", "training")], "finalize": true}))
        .await;
    r.problem(422, "idempotency_key_reused");
    // The version.created event counts them.
    let events = app
        .get("/api/v1/events?model=tuned&action=version.created")
        .await;
    let created = events.ok(200)["items"][0].clone();
    assert_eq!(created["details"]["inputs"], 3, "{created}");
    // The checks of POST …/inputs, and nothing registered when they fail.
    let one = |input: Value| json!({"inputs": [input]});
    let cases = [
        (
            one(json!({"kind": "version", "model": "base", "version": 2, "relation": "x"})),
            409,
            "input_pending",
        ),
        (
            one(json!({"kind": "version", "model": "base", "version": 9, "relation": "x"})),
            404,
            "version_not_found",
        ),
        (
            one(json!({"kind": "version", "model": "nope", "version": 1, "relation": "x"})),
            404,
            "model_not_found",
        ),
        (
            one(json!({"kind": "version", "model": "tuned", "version": 2, "relation": "x"})),
            422,
            "validation_failed",
        ),
        (
            one(json!({"kind": "dataset", "name": "", "digest": "x"})),
            422,
            "validation_failed",
        ),
        (
            json!({"inputs": {"kind": "code"}}),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let r = app
            .post("/api/v1/models/tuned/versions", body.clone())
            .await;
        let problem = r.problem(status, code);
        assert!(
            problem["field"]
                .as_str()
                .unwrap_or("inputs")
                .starts_with("inputs"),
            "{body}: {problem}"
        );
    }
    let r = app.post("/api/v1/models/tuned/versions", json!({})).await;
    assert_eq!(
        r.ok(201)["version"],
        2,
        "no number was used by a refused registration"
    );
}

/// `input.dataset.name`, `input.dataset.digest` and `input.version` in the list's filter (and
/// in a policy's `require`, the same grammar): `=` has such an input, `!=` has none.
async fn versions_are_filtered_by_their_inputs(app: &TestApp) {
    app.model("base").await;
    app.version("base", json!({"finalize": true})).await;
    app.model("m").await;
    for inputs in [
        json!([dataset("iris", "sha256:aa", "training")]),
        json!([dataset("iris", "sha256:bb", "training"),
               {"kind": "version", "model": "base", "version": 1, "relation": "fine_tuned_from"}]),
        json!([dataset("wine", "sha256:cc", "evaluation")]),
        json!([]),
    ] {
        app.post("/api/v1/models/m/versions", json!({"inputs": inputs}))
            .await
            .ok(201);
    }
    let numbers = |filter: &str| {
        let url = format!(
            "/api/v1/models/m/versions?order_by=version:asc&filter={}",
            urlencode(filter)
        );
        async move {
            let r = app.get(&url).await;
            r.ok(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_i64().unwrap())
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(numbers(r#"input.dataset.name = "iris""#).await, [1, 2]);
    assert_eq!(numbers(r#"input.dataset.name != "iris""#).await, [3, 4]);
    assert_eq!(numbers(r#"input.dataset.digest = "sha256:bb""#).await, [2]);
    assert_eq!(numbers(r#"input.version = "base:1""#).await, [2]);
    assert_eq!(numbers(r#"input.version != "base:1""#).await, [1, 3, 4]);
    assert_eq!(
        numbers(r#"input.dataset.name = "iris" and input.dataset.digest != "sha256:bb""#).await,
        [1]
    );
    assert!(numbers(r#"input.version = "base:2""#).await.is_empty());
    for (bad, position) in [
        (r#"input.version = "base""#, 16),
        (r#"input.version = "base:0""#, 16),
        ("input.dataset.name = 3", 21),
        (r#"input.dataset.name < "a""#, 19),
        (r#"input.dataset.size = "a""#, 0),
    ] {
        let r = app
            .get(&format!(
                "/api/v1/models/m/versions?filter={}",
                urlencode(bad)
            ))
            .await;
        let p = r.problem(400, "invalid_filter");
        assert_eq!(p["position"], position, "{bad}: {p}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An MLflow registration of a run's model records the run as a `copied_from` input and the
/// datasets the run logged, so that lineage and the dataset query reach the registered
/// version; the run, once copied, gains no version inputs while it goes on (no loop).
/// MLflow's `datasets.name` / `datasets.digest` run search reads the same inputs.
async fn an_mlflow_registration_records_the_run_it_copies(app: &TestApp) {
    let run = create_run(app, json!({})).await;
    let id = run["info"]["run_id"].as_str().unwrap().to_owned();
    let body = json!({"run_id": id, "datasets": [{
        "tags": [{"key": "mlflow.data.context", "value": "training"}],
        "dataset": {"name": "iris", "digest": "2f1e", "source_type": "local", "source": "{}"}}]});
    app.post("/api/2.0/mlflow/runs/log-inputs", body)
        .await
        .ok(200);
    app.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "fraud"}),
    )
    .await
    .ok(200);
    // The run is still going: registered all the same, as MLflow's autolog does.
    let r = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "fraud", "source": "s3://bucket/model", "run_id": id}),
        )
        .await;
    assert_eq!(r.ok(200)["model_version"]["version"], "1");
    let detail = app.get("/api/v1/models/fraud/versions/1").await;
    let inputs = detail.ok(200)["inputs"].clone();
    assert_eq!(
        inputs[0],
        json!({"kind": "version", "model": "default", "version": 1, "relation": "copied_from"})
    );
    assert_eq!(inputs[1]["name"], "iris");
    assert_eq!(inputs.as_array().unwrap().len(), 2);
    let users = app.get("/api/v1/lineage/datasets?digest=2f1e").await;
    let found: Vec<(String, i64)> = users.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["model"].as_str().unwrap().to_owned(),
                u["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("default".to_owned(), 1), ("fraud".to_owned(), 1)]);
    let down = app
        .get("/api/v1/models/default/versions/1/lineage?direction=down")
        .await;
    assert_eq!(
        down.ok(200)["edges"],
        json!([{"from": "default:1", "to": "fraud:1", "relation": "copied_from"}])
    );
    // The pending run, now an input of fraud:1, cannot take fraud:1 (or any version) as input.
    let r = app
        .post(
            "/api/v1/models/default/versions/1/inputs",
            json!({"inputs": [{"kind": "version", "model": "fraud", "version": 1, "relation": "x"}]}),
        )
        .await;
    r.problem(409, "input_pending");
    // Datasets it may still log.
    app.post(
        "/api/v1/models/default/versions/1/inputs",
        json!({"inputs": [dataset("extra", "sha256:ee", "validation")]}),
    )
    .await
    .ok(200);
    // MLflow's run search by dataset.
    let search = |filter: &'static str| async move {
        let r = app
            .post(
                "/api/2.0/mlflow/runs/search",
                json!({"experiment_ids": ["0"], "filter": filter}),
            )
            .await;
        r.ok(200)["runs"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(search("datasets.name = 'iris'").await, 1);
    assert_eq!(search("datasets.digest = '2f1e'").await, 1);
    assert_eq!(search("datasets.name != 'iris'").await, 0);
    assert_eq!(search("datasets.name = 'wine'").await, 0);
    let r = app
        .post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "filter": "datasets.context = 'training'"}),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE");
}
