//! Access control: every route × every kind of caller, on both backends.

use crate::helpers::{Resp, Setup, TestApp};
use modelreg::domain::access::Scope;
use modelreg::domain::token::{TokenRequest, issue};
use modelreg::store::Actor;
use reqwest::Method;
use serde_json::{Value, json};

const SETUP: Setup = Setup {
    auth: true,
    ..Setup::PLAIN
};

crate::backend_tests!(with super::SETUP;
    every_route_checks_its_scope,
    every_method_on_every_route,
    secrets_are_stored_hashed,
    tokens_api_and_actor,
    mlflow_archive_needs_write_scope
);

/// MLflow's `transition-stage` to `Archived` is the native archive: a promote-only token may
/// move versions between stages through it, but not archive them.
async fn mlflow_archive_needs_write_scope(app: &TestApp) {
    fixture(app).await;
    let root = app.root_token();
    let (promoter, _) = token(app, root, "promoter", &["read", "promote"], None).await;
    let (writer, _) = token(app, root, "writer", &["read", "write", "promote"], None).await;
    let path = "/api/2.0/mlflow/model-versions/transition-stage";
    let to = |version: &str, stage: &str| {
        Body::Json(
            json!({"name": "fraud-a", "version": version, "stage": stage,
                          "archive_existing_versions": false}),
        )
    };
    let r = call(
        app,
        Some(&promoter),
        Method::POST,
        path,
        Some(&to("5", "Archived")),
    )
    .await;
    crate::mlflow::mlflow_error(&r, 403, "PERMISSION_DENIED");
    let v = call(
        app,
        Some(root),
        Method::GET,
        "/api/v1/models/fraud-a/versions/5",
        None,
    )
    .await;
    assert_eq!(v.ok(200)["status"], "ready", "nothing was archived");
    let r = call(
        app,
        Some(&promoter),
        Method::POST,
        path,
        Some(&to("5", "Staging")),
    )
    .await;
    r.ok(200);
    let r = call(
        app,
        Some(&writer),
        Method::POST,
        path,
        Some(&to("1", "Archived")),
    )
    .await;
    assert_eq!(r.ok(200)["model_version"]["current_stage"], "Archived");
}

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Body>,
) -> Resp {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = match body {
        Some(Body::Json(v)) => req.json(v),
        Some(Body::Bytes(b)) => req.body(b.clone()),
        None => req,
    };
    app.send(req).await
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

async fn token(
    app: &TestApp,
    root: &str,
    name: &str,
    scopes: &[&str],
    models: Option<&[&str]>,
) -> (String, String) {
    let body = json!({"name": name, "scopes": scopes, "models": models});
    let r = call(
        app,
        Some(root),
        Method::POST,
        "/api/v1/tokens",
        Some(&Body::Json(body)),
    )
    .await;
    let b = r.ok(201);
    (
        b["token"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    )
}

/// What each route is called with, what scope it must need, and what success it gives.
struct Case {
    path: String,
    body: Option<Body>,
    scope: Scope,
    success: u16,
}

/// What the cases of routes with ids refer to: a token to revoke, webhooks (made by the
/// glob-limited admin, which sees only its own) and a delivery of the first.
struct Ids {
    throwaway: String,
    hook: String,
    hook_to_delete: String,
    delivery: i64,
    /// Promotion requests of fraud-a onto `review`: to approve, to reject (both opened by
    /// the root token) and to cancel (opened by the promote token, its requester).
    requests: [String; 3],
    /// The MLflow experiment id of fraud-a, and a run in it (a pending version).
    experiment: String,
    /// The MLflow experiment id of fraud-life (deleted and restored).
    empty_experiment: String,
    run: String,
    /// Another run of fraud-a, for `runs/delete`, and a ready version for
    /// `model-versions/delete`.
    run_to_delete: String,
    version_to_archive: i64,
    /// A ready version of fraud-a on no stage, for `DELETE …/versions/{version}`.
    version_to_erase: i64,
    /// MLflow 3 logged models of fraud-a: one (tagged `k`) and one to delete.
    logged_model: String,
    logged_model_to_delete: String,
}

/// MLflow's routes, named by what MLflow calls them; errors come in MLflow's shape.
fn mlflow_case(method: &Method, template: &str, ids: &Ids) -> Option<Case> {
    let (path, body, scope, success) = match (method.as_str(), template) {
        ("POST", "/api/2.0/mlflow/experiments/create") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-mlflow"}))),
            Scope::Write,
            200,
        ),
        ("GET", "/api/2.0/mlflow/experiments/get") => (
            format!("{template}?experiment_id={}", ids.experiment),
            None,
            Scope::Read,
            200,
        ),
        ("GET", "/api/2.0/mlflow/experiments/get-by-name") => (
            format!("{template}?experiment_name=fraud-a"),
            None,
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/experiments/search") => (
            template.to_owned(),
            Some(Body::Json(json!({}))),
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/experiments/set-experiment-tag") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"experiment_id": ids.experiment, "key": "team", "value": "risk"}),
            )),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/experiments/delete-experiment-tag") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"experiment_id": ids.experiment, "key": "team"}),
            )),
            Scope::Write,
            200,
        ),
        // A model name is an identity: refused for everyone who may write.
        ("POST", "/api/2.0/mlflow/experiments/update") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"experiment_id": ids.experiment, "new_name": "Fraud A"}),
            )),
            Scope::Write,
            400,
        ),
        ("POST", "/api/2.0/mlflow/experiments/delete" | "/api/2.0/mlflow/experiments/restore") => (
            template.to_owned(),
            Some(Body::Json(json!({"experiment_id": ids.empty_experiment}))),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/runs/create") => (
            template.to_owned(),
            Some(Body::Json(json!({"experiment_id": ids.experiment}))),
            Scope::Write,
            200,
        ),
        ("GET", "/api/2.0/mlflow/runs/get") => (
            format!("{template}?run_id={}", ids.run),
            None,
            Scope::Read,
            200,
        ),
        ("GET", "/api/2.0/mlflow/metrics/get-history-bulk-interval") => (
            format!("{template}?run_ids={}&metric_key=loss", ids.run),
            None,
            Scope::Read,
            200,
        ),
        ("GET", "/api/2.0/mlflow/metrics/get-history") => (
            format!("{template}?run_id={}&metric_key=loss", ids.run),
            None,
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/logged-models") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"experiment_id": ids.experiment, "name": "model"}),
            )),
            Scope::Write,
            200,
        ),
        ("GET", "/api/2.0/mlflow/logged-models/{model_id}") => (
            template.replace("{model_id}", &ids.logged_model),
            None,
            Scope::Read,
            200,
        ),
        ("PATCH", "/api/2.0/mlflow/logged-models/{model_id}") => (
            template.replace("{model_id}", &ids.logged_model),
            Some(Body::Json(json!({"status": "LOGGED_MODEL_READY"}))),
            Scope::Write,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/logged-models/{model_id}") => (
            template.replace("{model_id}", &ids.logged_model_to_delete),
            None,
            Scope::Write,
            200,
        ),
        ("PATCH", "/api/2.0/mlflow/logged-models/{model_id}/tags") => (
            template.replace("{model_id}", &ids.logged_model),
            Some(Body::Json(json!({"tags": [{"key": "k", "value": "v"}]}))),
            Scope::Write,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/logged-models/{model_id}/tags/{tag_key}") => (
            template
                .replace("{model_id}", &ids.logged_model)
                .replace("{tag_key}", "k"),
            None,
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/logged-models/{model_id}/params") => (
            template.replace("{model_id}", &ids.logged_model),
            Some(Body::Json(
                json!({"params": [{"key": "alpha", "value": "0.5"}]}),
            )),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/runs/outputs") => (
            template.to_owned(),
            Some(Body::Json(json!({"run_id": ids.run, "models": [
                {"model_id": ids.logged_model, "step": 0}]}))),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/logged-models/search") => (
            template.to_owned(),
            Some(Body::Json(json!({"experiment_ids": [ids.experiment]}))),
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/runs/search") => (
            template.to_owned(),
            Some(Body::Json(json!({"experiment_ids": [ids.experiment]}))),
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/registered-models/create") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-registered"}))),
            Scope::Write,
            200,
        ),
        (
            "GET",
            "/api/2.0/mlflow/registered-models/get"
            | "/api/2.0/mlflow/registered-models/get-latest-versions",
        ) => (format!("{template}?name=fraud-a"), None, Scope::Read, 200),
        ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-a"}))),
            Scope::Read,
            200,
        ),
        ("POST", "/api/2.0/mlflow/registered-models/alias") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "alias": "champion", "version": "1"}),
            )),
            Scope::Promote,
            200,
        ),
        ("GET", "/api/2.0/mlflow/registered-models/alias") => (
            format!("{template}?name=fraud-a&alias=champion"),
            None,
            Scope::Read,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/alias") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-a", "alias": "champion"}))),
            Scope::Promote,
            200,
        ),
        ("POST", "/api/2.0/mlflow/model-versions/create") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "source": "s3://bucket/model"}),
            )),
            Scope::Write,
            200,
        ),
        (
            "GET",
            "/api/2.0/mlflow/model-versions/get"
            | "/api/2.0/mlflow/model-versions/get-download-uri",
        ) => (
            format!("{template}?name=fraud-a&version=1"),
            None,
            Scope::Read,
            200,
        ),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts") => (
            format!("{template}?path={}/{}/artifacts", ids.experiment, ids.run),
            None,
            Scope::Read,
            200,
        ),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/{*path}") => (
            format!(
                "/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/seed.txt",
                ids.experiment, ids.run
            ),
            None,
            Scope::Read,
            200,
        ),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{*path}") => (
            format!(
                "/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/up.txt",
                ids.experiment, ids.run
            ),
            Some(Body::Bytes(b"up".to_vec())),
            Scope::Write,
            200,
        ),
        ("GET", "/api/2.0/mlflow/registered-models/search") => {
            (template.to_owned(), None, Scope::Read, 200)
        }
        ("GET", "/api/2.0/mlflow/model-versions/search") => (
            format!("{template}?filter=name%3D%27fraud-a%27"),
            None,
            Scope::Read,
            200,
        ),
        ("PATCH", "/api/2.0/mlflow/registered-models/update") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "description": "scores"}),
            )),
            Scope::Write,
            200,
        ),
        // Refused for everyone: a model's name is its identity.
        ("POST", "/api/2.0/mlflow/registered-models/rename") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "new_name": "fraud-b"}),
            )),
            Scope::Write,
            400,
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-gone"}))),
            Scope::Admin,
            200,
        ),
        ("POST", "/api/2.0/mlflow/registered-models/set-tag") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "key": "k", "value": "v"}),
            )),
            Scope::Write,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag") => (
            template.to_owned(),
            Some(Body::Json(json!({"name": "fraud-a", "key": "k"}))),
            Scope::Write,
            200,
        ),
        ("PATCH", "/api/2.0/mlflow/model-versions/update") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "version": "1", "description": "d"}),
            )),
            Scope::Write,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "version": ids.version_to_archive.to_string()}),
            )),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "version": "1", "stage": "Staging"}),
            )),
            Scope::Promote,
            200,
        ),
        ("POST", "/api/2.0/mlflow/model-versions/set-tag") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "version": "1", "key": "k", "value": "v"}),
            )),
            Scope::Write,
            200,
        ),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag") => (
            template.to_owned(),
            Some(Body::Json(
                json!({"name": "fraud-a", "version": "1", "key": "k"}),
            )),
            Scope::Write,
            200,
        ),
        ("POST", "/api/2.0/mlflow/runs/delete" | "/api/2.0/mlflow/runs/restore") => (
            template.to_owned(),
            Some(Body::Json(json!({"run_id": ids.run_to_delete}))),
            Scope::Write,
            200,
        ),
        // The rest write to the run; each body may be sent again.
        ("POST", p) => {
            let run = ids.run.as_str();
            let body = match p.rsplit('/').next() {
                Some("update") => json!({"run_id": run, "run_name": "renamed"}),
                Some("log-parameter") => json!({"run_id": run, "key": "lr", "value": "0.1"}),
                Some("set-tag" | "delete-tag") => {
                    json!({"run_id": run, "key": "team", "value": "x"})
                }
                Some("log-metric") => {
                    json!({"run_id": run, "key": "loss", "value": 0.5, "step": 1})
                }
                Some("log-batch") => {
                    json!({"run_id": run, "metrics": [{"key": "loss", "value": 0.4, "step": 2}]})
                }
                Some("log-inputs") => json!({"run_id": run, "datasets": [
                    {"dataset": {"name": "iris", "digest": "ab", "source_type": "local",
                                 "source": "{}"}}]}),
                _ => return None,
            };
            (p.to_owned(), Some(Body::Json(body)), Scope::Write, 200)
        }
        _ => return None,
    };
    Some(Case {
        path,
        body,
        scope,
        success,
    })
}

/// A refusal: problem+json with this code, or on MLflow's paths MLflow's error for it.
#[track_caller]
fn refused(r: &Resp, path: &str, status: u16, code: &str) {
    if path.starts_with("/api/2.0/mlflow") {
        let want = modelreg::api::mlflow::mlflow_code(
            reqwest::StatusCode::from_u16(status).unwrap(),
            code,
        );
        assert_eq!(r.status, want.status, "{path}: {}", r.body);
        assert_eq!(r.body["error_code"], want.error_code, "{path}: {}", r.body);
    } else {
        r.problem(status, code);
    }
}

fn request_case(method: &Method, template: &str, ids: &Ids) -> Option<Case> {
    let base = "/api/v1/models/fraud-a/promotion-requests";
    let [approve, reject, cancel] = &ids.requests;
    let (path, scope) = match (method.as_str(), template) {
        ("GET", "/api/v1/models/{model}/promotion-requests") => (base.to_owned(), Scope::Read),
        ("GET", "/api/v1/models/{model}/promotion-requests/{id}") => {
            (format!("{base}/{approve}"), Scope::Read)
        }
        ("POST", "/api/v1/models/{model}/promotion-requests/{id}/approve") => {
            (format!("{base}/{approve}/approve"), Scope::Promote)
        }
        ("POST", "/api/v1/models/{model}/promotion-requests/{id}/reject") => {
            (format!("{base}/{reject}/reject"), Scope::Promote)
        }
        ("POST", "/api/v1/models/{model}/promotion-requests/{id}/cancel") => {
            (format!("{base}/{cancel}/cancel"), Scope::Promote)
        }
        _ => return None,
    };
    Some(Case {
        path,
        body: None,
        scope,
        success: 200,
    })
}

fn webhook_case(method: &Method, template: &str, ids: &Ids) -> Option<Case> {
    let hook = &ids.hook;
    let (path, success) = match (method.as_str(), template) {
        ("GET", "/api/v1/webhooks/{id}") | ("PATCH", "/api/v1/webhooks/{id}") => {
            (format!("/api/v1/webhooks/{hook}"), 200)
        }
        ("DELETE", "/api/v1/webhooks/{id}") => {
            (format!("/api/v1/webhooks/{}", ids.hook_to_delete), 204)
        }
        ("POST", "/api/v1/webhooks/{id}/rotate-secret") => (template.to_owned(), 200),
        ("POST", "/api/v1/webhooks/{id}/ping") => (template.to_owned(), 202),
        ("GET", "/api/v1/webhooks/{id}/deliveries") => (template.to_owned(), 200),
        ("POST", "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver") => (
            format!(
                "/api/v1/webhooks/{hook}/deliveries/{}/redeliver",
                ids.delivery
            ),
            202,
        ),
        _ => return None,
    };
    let body = (method == Method::PATCH).then(|| Body::Json(json!({"description": "x"})));
    Some(Case {
        path: path.replace("{id}", hook),
        body,
        scope: Scope::Admin,
        success,
    })
}

fn case_for(method: &Method, template: &str, ids: &Ids) -> Option<Case> {
    if template.starts_with("/api/2.0/mlflow") {
        return mlflow_case(method, template, ids);
    }
    if template.starts_with("/api/v1/webhooks/") {
        return webhook_case(method, template, ids);
    }
    if template.contains("/promotion-requests") {
        return request_case(method, template, ids);
    }
    if method == Method::DELETE && template == "/api/v1/models/{model}/versions/{version}" {
        return Some(Case {
            path: format!("/api/v1/models/fraud-a/versions/{}", ids.version_to_erase),
            body: None,
            scope: Scope::Admin,
            success: 200,
        });
    }
    let throwaway = &ids.throwaway;
    let j = |v: Value| Some(Body::Json(v));
    let (path, body, scope, success): (&str, Option<Body>, Scope, u16) =
        match (method.as_str(), template) {
            ("GET", "/healthz") => ("/healthz", None, Scope::Public, 200),
            ("GET", "/readyz") => ("/readyz", None, Scope::Public, 200),
            ("GET", "/api/3.0/mlflow/server-info") => {
                ("/api/3.0/mlflow/server-info", None, Scope::Public, 200)
            }
            ("GET", "/openapi.yaml") => ("/openapi.yaml", None, Scope::Public, 200),
            // 303 to /ui/, which the test client follows.
            ("GET", "/") => ("/", None, Scope::Public, 200),
            ("GET", "/ui/") => ("/ui/", None, Scope::Public, 200),
            ("GET", "/ui/{file}") => ("/ui/app.js", None, Scope::Public, 200),
            ("GET", "/metrics") => ("/metrics", None, Scope::Read, 200),
            ("GET", "/api/v1/whoami") => ("/api/v1/whoami", None, Scope::Authenticated, 200),
            ("POST", "/api/v1/models") => (
                "/api/v1/models",
                j(json!({"name": "fraud-new"})),
                Scope::Write,
                201,
            ),
            ("GET", "/api/v1/models") => ("/api/v1/models", None, Scope::Read, 200),
            ("PUT", "/api/v1/models/{model}") => {
                ("/api/v1/models/fraud-put", j(json!({})), Scope::Write, 201)
            }
            ("GET", "/api/v1/models/{model}") => ("/api/v1/models/fraud-a", None, Scope::Read, 200),
            ("PATCH", "/api/v1/models/{model}") => (
                "/api/v1/models/fraud-a",
                j(json!({"tags": {"x": "1"}})),
                Scope::Write,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}") => {
                ("/api/v1/models/fraud-empty", None, Scope::Admin, 204)
            }
            ("POST", "/api/v1/models/{model}/versions") => (
                "/api/v1/models/fraud-a/versions",
                j(json!({})),
                Scope::Write,
                201,
            ),
            ("GET", "/api/v1/models/{model}/versions") => {
                ("/api/v1/models/fraud-a/versions", None, Scope::Read, 200)
            }
            ("GET", "/api/v1/models/{model}/versions/{version}") => {
                ("/api/v1/models/fraud-a/versions/1", None, Scope::Read, 200)
            }
            ("PATCH", "/api/v1/models/{model}/versions/{version}") => (
                "/api/v1/models/fraud-a/versions/1",
                j(json!({"tags": {"a": "b"}})),
                Scope::Write,
                200,
            ),
            ("POST", "/api/v1/models/{model}/versions/{version}/finalize") => (
                "/api/v1/models/fraud-a/versions/3/finalize",
                None,
                Scope::Write,
                200,
            ),
            ("POST", "/api/v1/models/{model}/versions/{version}/inputs") => (
                "/api/v1/models/fraud-a/versions/2/inputs",
                j(json!({"inputs": [{"kind": "dataset", "name": "iris", "digest": "ab"}]})),
                Scope::Write,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/lineage") => (
                "/api/v1/models/fraud-a/versions/1/lineage?direction=down",
                None,
                Scope::Read,
                200,
            ),
            ("POST", "/api/v1/models/{model}/versions/{version}/fail") => (
                "/api/v1/models/fraud-a/versions/4/fail",
                None,
                Scope::Write,
                200,
            ),
            ("POST", "/api/v1/models/{model}/versions/{version}/archive") => (
                "/api/v1/models/fraud-a/versions/5/archive",
                None,
                Scope::Write,
                200,
            ),
            ("GET", "/api/v1/models/{model}/stages") => {
                ("/api/v1/models/fraud-a/stages", None, Scope::Read, 200)
            }
            ("GET", "/api/v1/models/{model}/stages/{stage}") => (
                "/api/v1/models/fraud-a/stages/staging",
                None,
                Scope::Read,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}/stages/{stage}") => (
                "/api/v1/models/fraud-a/stages/canary",
                None,
                Scope::Promote,
                200,
            ),
            ("POST", "/api/v1/models/{model}/stages/{stage}/promote") => (
                "/api/v1/models/fraud-a/stages/production/promote",
                j(json!({"version": 1})),
                Scope::Promote,
                200,
            ),
            ("POST", "/api/v1/models/{model}/stages/{stage}/rollback") => (
                "/api/v1/models/fraud-a/stages/staging/rollback",
                None,
                Scope::Promote,
                200,
            ),
            ("GET", "/api/v1/models/{model}/stages/{stage}/history") => (
                "/api/v1/models/fraud-a/stages/staging/history",
                None,
                Scope::Read,
                200,
            ),
            ("POST", "/api/v1/models/{model}/versions/{version}/metrics") => (
                "/api/v1/models/fraud-a/versions/1/metrics",
                j(json!({"points": [{"key": "loss", "step": 9, "value": 0.5}]})),
                Scope::Write,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/metrics") => (
                "/api/v1/models/fraud-a/versions/1/metrics",
                None,
                Scope::Read,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/metrics/{*key}") => (
                "/api/v1/models/fraud-a/versions/1/metrics/loss",
                None,
                Scope::Read,
                200,
            ),
            ("GET", "/api/v1/models/{model}/metrics/{*key}") => (
                "/api/v1/models/fraud-a/metrics/loss?versions=1,2",
                None,
                Scope::Read,
                200,
            ),
            ("GET", "/api/v1/models/{model}/compare") => (
                "/api/v1/models/fraud-a/compare?versions=1,2",
                None,
                Scope::Read,
                200,
            ),
            ("PUT", "/api/v1/models/{model}/versions/{version}/artifacts/{*path}") => (
                "/api/v1/models/fraud-a/versions/2/artifacts/new.bin",
                Some(Body::Bytes(b"new".to_vec())),
                Scope::Write,
                201,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/artifacts") => (
                "/api/v1/models/fraud-a/versions/2/artifacts",
                None,
                Scope::Read,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/artifacts/{*path}") => (
                "/api/v1/models/fraud-a/versions/2/artifacts/model.bin",
                None,
                Scope::Read,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}/versions/{version}/artifacts/{*path}") => (
                "/api/v1/models/fraud-a/versions/2/artifacts/del.bin",
                None,
                Scope::Write,
                204,
            ),
            ("PUT", "/api/v1/models/{model}/stages/{stage}/policy") => (
                "/api/v1/models/fraud-a/stages/gated/policy",
                j(json!({"require": "status = ready"})),
                Scope::Admin,
                200,
            ),
            ("GET", "/api/v1/models/{model}/stages/{stage}/policy") => (
                "/api/v1/models/fraud-a/stages/gated/policy",
                None,
                Scope::Read,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}/stages/{stage}/policy") => (
                "/api/v1/models/fraud-a/stages/gated/policy",
                None,
                Scope::Admin,
                204,
            ),
            ("PUT", "/api/v1/models/{model}/stages/{stage}/guard") => (
                "/api/v1/models/fraud-a/stages/staging/guard",
                j(
                    json!({"conditions": [{"metric": "prod/err", "aggregate": "mean",
                    "window": "PT10M", "op": ">", "threshold": 0.1}], "action": "notify"}),
                ),
                Scope::Admin,
                200,
            ),
            ("GET", "/api/v1/models/{model}/stages/{stage}/guard") => (
                "/api/v1/models/fraud-a/stages/staging/guard",
                None,
                Scope::Read,
                200,
            ),
            ("POST", "/api/v1/models/{model}/stages/{stage}/guard/rearm") => (
                "/api/v1/models/fraud-a/stages/staging/guard/rearm",
                None,
                Scope::Promote,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}/stages/{stage}/guard") => (
                "/api/v1/models/fraud-a/stages/staging/guard",
                None,
                Scope::Admin,
                204,
            ),
            ("PUT", "/api/v1/models/{model}/retention") => (
                "/api/v1/models/fraud-a/retention",
                j(json!({"keep_last": 5, "archive_after": "P3650D"})),
                Scope::Admin,
                200,
            ),
            ("GET", "/api/v1/models/{model}/retention") => {
                ("/api/v1/models/fraud-a/retention", None, Scope::Read, 200)
            }
            ("POST", "/api/v1/models/{model}/retention/preview") => (
                "/api/v1/models/fraud-a/retention/preview",
                None,
                Scope::Read,
                200,
            ),
            ("DELETE", "/api/v1/models/{model}/retention") => {
                ("/api/v1/models/fraud-a/retention", None, Scope::Admin, 204)
            }
            ("GET", "/api/v1/models/{model}/usage") => {
                ("/api/v1/models/fraud-a/usage", None, Scope::Read, 200)
            }
            ("GET", "/api/v1/usage") => ("/api/v1/usage", None, Scope::Read, 200),
            ("PUT", "/api/v1/trust/keys/{name}") => (
                "/api/v1/trust/keys/auth-check",
                j(json!({"public_key": crate::trust::public_pem(&["-algorithm", "ED25519"])})),
                Scope::Admin,
                201,
            ),
            ("GET", "/api/v1/trust/keys/{name}") => {
                ("/api/v1/trust/keys/auth-check", None, Scope::Admin, 200)
            }
            ("GET", "/api/v1/trust/keys") => ("/api/v1/trust/keys", None, Scope::Admin, 200),
            ("DELETE", "/api/v1/trust/keys/{name}") => {
                ("/api/v1/trust/keys/auth-check", None, Scope::Admin, 204)
            }
            ("GET", "/api/v1/models/{model}/guards") => {
                ("/api/v1/models/fraud-a/guards", None, Scope::Read, 200)
            }
            ("GET", "/api/v1/events") => ("/api/v1/events", None, Scope::Read, 200),
            ("GET", "/api/v1/events/stream") => ("/api/v1/events/stream", None, Scope::Read, 200),
            ("GET", "/api/v1/models/{model}/policies") => {
                ("/api/v1/models/fraud-a/policies", None, Scope::Read, 200)
            }
            ("GET", "/api/v1/models/{model}/card") => {
                ("/api/v1/models/fraud-a/card", None, Scope::Read, 200)
            }
            ("PUT", "/api/v1/models/{model}/card") => (
                "/api/v1/models/fraud-a/card",
                j(json!({"license": "MIT"})),
                Scope::Write,
                200,
            ),
            ("PATCH", "/api/v1/models/{model}/card") => (
                "/api/v1/models/fraud-a/card",
                j(json!({"owners": ["risk"]})),
                Scope::Write,
                200,
            ),
            // Past the scope check, an empty bundle is refused on its merits.
            ("POST", "/api/v1/models/{model}/versions/{version}/signatures") => (
                "/api/v1/models/fraud-a/versions/1/signatures",
                j(json!({"bundle": {}})),
                Scope::Write,
                422,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/signatures") => (
                "/api/v1/models/fraud-a/versions/1/signatures",
                None,
                Scope::Read,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/card") => (
                "/api/v1/models/fraud-a/versions/1/card",
                None,
                Scope::Read,
                200,
            ),
            ("PUT", "/api/v1/models/{model}/versions/{version}/card") => (
                "/api/v1/models/fraud-a/versions/1/card",
                j(json!({"evaluation": "fine"})),
                Scope::Write,
                200,
            ),
            ("PATCH", "/api/v1/models/{model}/versions/{version}/card") => (
                "/api/v1/models/fraud-a/versions/1/card",
                j(json!({"evaluation": null})),
                Scope::Write,
                200,
            ),
            ("GET", "/api/v1/models/{model}/versions/{version}/schema") => (
                "/api/v1/models/fraud-a/versions/2/schema",
                None,
                Scope::Read,
                200,
            ),
            ("PUT", "/api/v1/models/{model}/versions/{version}/schema") => (
                "/api/v1/models/fraud-a/versions/2/schema",
                j(json!({"inputs": [{"name": "x", "type": "long"}]})),
                Scope::Write,
                200,
            ),
            ("GET", "/api/v1/lineage/datasets") => {
                ("/api/v1/lineage/datasets?digest=ab", None, Scope::Read, 200)
            }
            ("POST", "/api/v1/tokens") => (
                "/api/v1/tokens",
                j(json!({"name": "t", "scopes": ["read"]})),
                Scope::Admin,
                201,
            ),
            ("GET", "/api/v1/tokens") => ("/api/v1/tokens", None, Scope::Admin, 200),
            ("POST", "/api/v1/webhooks") => (
                "/api/v1/webhooks",
                j(json!({"url": "https://hooks.invalid/new", "events": ["stage.*"]})),
                Scope::Admin,
                201,
            ),
            ("GET", "/api/v1/webhooks") => ("/api/v1/webhooks", None, Scope::Admin, 200),
            ("DELETE", "/api/v1/tokens/{id}") => {
                return Some(Case {
                    path: format!("/api/v1/tokens/{throwaway}"),
                    body: None,
                    scope: Scope::Admin,
                    success: 204,
                });
            }
            _ => return None,
        };
    Some(Case {
        path: path.to_owned(),
        body,
        scope,
        success,
    })
}

async fn fixture(app: &TestApp) {
    let root = app.root_token();
    let post = |path: &'static str, body: Value| async move {
        call(app, Some(root), Method::POST, path, Some(&Body::Json(body))).await
    };
    for name in ["fraud-a", "fraud-empty", "fraud-life", "other-x"] {
        post("/api/v1/models", json!({"name": name})).await.ok(201);
    }
    post("/api/v1/models/other-x/versions", json!({"finalize": true}))
        .await
        .ok(201);
    for finalize in [true, false, false, false, true, true] {
        post(
            "/api/v1/models/fraud-a/versions",
            json!({"finalize": finalize}),
        )
        .await
        .ok(201);
    }
    post(
        "/api/v1/models/fraud-a/versions/1/metrics",
        json!({"points": [{"key": "loss", "step": 1, "value": 1.0}]}),
    )
    .await
    .ok(200);
    for path in ["model.bin", "del.bin"] {
        let url = format!("/api/v1/models/fraud-a/versions/2/artifacts/{path}");
        call(
            app,
            Some(root),
            Method::PUT,
            &url,
            Some(&Body::Bytes(b"bytes".to_vec())),
        )
        .await
        .ok(201);
    }
    for v in [1, 6] {
        post(
            "/api/v1/models/fraud-a/stages/staging/promote",
            json!({"version": v}),
        )
        .await
        .ok(200);
    }
}

async fn new_run(app: &TestApp, root: &str, experiment: &str) -> String {
    let body =
        Body::Json(json!({"experiment_id": experiment, "tags": [{"key": "team", "value": "a"}]}));
    let path = "/api/2.0/mlflow/runs/create";
    let r = call(app, Some(root), Method::POST, path, Some(&body)).await;
    r.ok(200)["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A logged model of the experiment, tagged `k`.
async fn new_logged_model(app: &TestApp, root: &str, experiment: &str) -> String {
    let body = Body::Json(json!({"experiment_id": experiment, "name": "model",
                                 "tags": [{"key": "k", "value": "v"}]}));
    let path = "/api/2.0/mlflow/logged-models";
    let r = call(app, Some(root), Method::POST, path, Some(&body)).await;
    r.ok(200)["model"]["info"]["model_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn every_route_checks_its_scope(app: &TestApp) {
    let root = app.root_token();
    fixture(app).await;
    let limited = Some(&["fraud-*"][..]);
    let (read, _) = token(app, root, "reader", &["read"], limited).await;
    let (write, _) = token(app, root, "writer", &["write"], limited).await;
    let (promote, _) = token(app, root, "operator", &["promote"], limited).await;
    let (admin_limited, _) = token(app, root, "fraud-admin", &["admin"], limited).await;
    let (wrong_glob, _) = token(
        app,
        root,
        "other-team",
        &["read", "write", "promote", "admin"],
        Some(&["other-*"]),
    )
    .await;
    let (revoked, revoked_id) = token(app, root, "gone", &["admin"], None).await;
    call(
        app,
        Some(root),
        Method::DELETE,
        &format!("/api/v1/tokens/{revoked_id}"),
        None,
    )
    .await
    .ok(204);
    let (_, throwaway) = token(app, root, "throwaway", &["read"], None).await;
    let expired = {
        let past = chrono::Utc::now() - chrono::Duration::hours(1);
        let body = TokenRequest {
            name: "old".into(),
            subject: None,
            scopes: vec!["admin".into()],
            models: None,
            expires_at: None,
        };
        let (mut record, secret) = issue(body, &Actor::named("cli")).unwrap();
        record.expires_at = Some(past);
        app.state
            .store
            .create_token(&record, &Actor::named("cli"))
            .await
            .unwrap();
        secret
    };
    let mut hooks = Vec::new();
    for _ in 0..2 {
        let body = json!({"url": "https://hooks.invalid/x", "events": ["webhook.ping"]});
        let r = call(
            app,
            Some(&admin_limited),
            Method::POST,
            "/api/v1/webhooks",
            Some(&Body::Json(body)),
        )
        .await;
        hooks.push(r.ok(201)["id"].as_str().unwrap().to_owned());
    }
    let ping = format!("/api/v1/webhooks/{}/ping", hooks[0]);
    let r = call(app, Some(&admin_limited), Method::POST, &ping, None).await;
    let review = "/api/v1/models/fraud-a/stages/review";
    let policy = Body::Json(json!({"approvals": 1}));
    let policy_path = format!("{review}/policy");
    call(app, Some(root), Method::PUT, &policy_path, Some(&policy))
        .await
        .ok(200);
    let mut requests = Vec::new();
    for (t, v) in [(root, 1), (root, 5), (&promote, 6)] {
        let body = Body::Json(json!({"version": v}));
        let r = call(
            app,
            Some(t),
            Method::POST,
            &format!("{review}/promote"),
            Some(&body),
        )
        .await;
        requests.push(r.ok(202)["request_id"].as_str().unwrap().to_owned());
    }
    let experiment_of = |model: &'static str| async move {
        let m = call(
            app,
            Some(root),
            Method::GET,
            &format!("/api/v1/models/{model}"),
            None,
        )
        .await;
        m.ok(200)["id"].as_str().unwrap().replace('-', "")
    };
    let experiment = experiment_of("fraud-a").await;
    let empty_experiment = experiment_of("fraud-life").await;
    let ids = Ids {
        requests: [
            requests[0].clone(),
            requests[1].clone(),
            requests[2].clone(),
        ],
        throwaway,
        hook: hooks[0].clone(),
        hook_to_delete: hooks[1].clone(),
        delivery: r.ok(202)["delivery_id"].as_i64().unwrap(),
        experiment: experiment.clone(),
        empty_experiment,
        run: new_run(app, root, &experiment).await,
        run_to_delete: new_run(app, root, &experiment).await,
        version_to_archive: {
            let body = Body::Json(json!({"finalize": true}));
            let path = "/api/v1/models/fraud-a/versions";
            let r = call(app, Some(root), Method::POST, path, Some(&body)).await;
            r.ok(201)["version"].as_i64().unwrap()
        },
        version_to_erase: {
            let body = Body::Json(json!({"finalize": true}));
            let path = "/api/v1/models/fraud-a/versions";
            let r = call(app, Some(root), Method::POST, path, Some(&body)).await;
            r.ok(201)["version"].as_i64().unwrap()
        },
        logged_model: new_logged_model(app, root, &experiment).await,
        logged_model_to_delete: new_logged_model(app, root, &experiment).await,
    };
    let seed = format!(
        "/api/2.0/mlflow-artifacts/artifacts/{experiment}/{}/artifacts/seed.txt",
        ids.run
    );
    let seed_body = Body::Bytes(b"seed".to_vec());
    call(app, Some(root), Method::PUT, &seed, Some(&seed_body))
        .await
        .ok(200);
    let gone = Body::Json(json!({"name": "fraud-gone"}));
    call(app, Some(root), Method::POST, "/api/v1/models", Some(&gone))
        .await
        .ok(201);
    // A schema for the schema read's case (the version stays pending for the inputs' case).
    let schema = Body::Json(json!({"inputs": [{"name": "x", "type": "long"}]}));
    call(
        app,
        Some(root),
        Method::PUT,
        "/api/v1/models/fraud-a/versions/2/schema",
        Some(&schema),
    )
    .await
    .ok(200);
    let by_scope = [
        (Scope::Read, &read),
        (Scope::Write, &write),
        (Scope::Promote, &promote),
    ];

    let endpoints = modelreg::api::endpoints();
    assert!(
        endpoints.len() >= 34,
        "every route of the contract is in the router"
    );
    for e in &endpoints {
        let c = case_for(&e.method, e.path, &ids).unwrap_or_else(|| {
            panic!(
                "no access case for {} {}: declare its scope in this table",
                e.method, e.path
            )
        });
        assert_eq!(
            e.scope, c.scope,
            "{} {} declares the wrong scope",
            e.method, e.path
        );
        let ctx = format!("{} {}", e.method, c.path);
        let m = || e.method.clone();
        if c.scope == Scope::Public {
            call(app, None, m(), &c.path, None).await.ok(c.success);
            continue;
        }
        let r = call(app, None, m(), &c.path, c.body.as_ref()).await;
        refused(&r, &c.path, 401, "unauthorized");
        for bad in [
            "garbage",
            "mrt_01a21997b68674bc8f474e033e10a64e_xyz",
            &format!("{root}x"),
        ] {
            let r = call(app, Some(bad), m(), &c.path, c.body.as_ref()).await;
            assert_eq!(r.status, 401, "{ctx} with a bad token: {}", r.body);
        }
        for t in [&expired, &revoked] {
            let r = call(app, Some(t), m(), &c.path, c.body.as_ref()).await;
            refused(&r, &c.path, 401, "unauthorized");
        }
        for (scope, t) in by_scope {
            if scope != c.scope && c.scope != Scope::Authenticated {
                let r = call(app, Some(t), m(), &c.path, c.body.as_ref()).await;
                assert_eq!(r.status, 403, "{ctx} with a {scope:?} token: {}", r.body);
            }
        }
        // The event stream's answer never ends: its status only, for the token of the right
        // scope and one for other models (tests/api/event_stream.rs reads what they get).
        if e.path == "/api/v1/events/stream" {
            for t in [&read, &wrong_glob] {
                let r = app.client.get(app.url(&c.path)).bearer_auth(t).send().await;
                assert_eq!(r.unwrap().status(), 200, "{ctx}");
            }
            continue;
        }
        // A token for other models: those routes answer as if the model were absent.
        let r = call(app, Some(&wrong_glob), m(), &c.path, c.body.as_ref()).await;
        match (e.path.contains("{model}"), e.path) {
            (true, _) => assert_eq!(
                r.problem(404, "model_not_found")["code"],
                "model_not_found",
                "{ctx}"
            ),
            // Global: only an admin not limited to models.
            (false, p) if p.starts_with("/api/v1/tokens") || p.starts_with("/api/v1/trust") => {
                r.problem(403, "insufficient_scope");
            }
            // Another glob-limited admin: its own webhooks only.
            (false, p) if p.starts_with("/api/v1/webhooks/") => {
                r.problem(404, "webhook_not_found");
            }
            (false, "/api/v1/webhooks") if e.method == Method::POST => {
                r.ok(201);
            }
            (false, "/api/v1/models") if e.method == Method::POST => {
                r.problem(403, "model_forbidden");
            }
            (
                false,
                "/api/2.0/mlflow/experiments/create" | "/api/2.0/mlflow/registered-models/create",
            ) => {
                refused(&r, &c.path, 403, "model_forbidden");
            }
            (false, "/api/2.0/mlflow/model-versions/search") => {
                assert_eq!(r.ok(200)["model_versions"], json!([]), "{ctx}");
            }
            (
                false,
                "/api/2.0/mlflow/experiments/search" | "/api/2.0/mlflow/registered-models/search",
            ) => {
                let list = if e.path.contains("experiments") {
                    "experiments"
                } else {
                    "registered_models"
                };
                let names: Vec<&str> = r.ok(200)[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["name"].as_str())
                    .collect();
                assert!(
                    names.iter().all(|n| n.starts_with("other-")),
                    "{ctx} leaks other models: {names:?}"
                );
            }
            (false, p) if p.starts_with("/api/2.0/mlflow") => {
                refused(&r, &c.path, 404, "experiment_not_found");
            }
            (false, "/api/v1/whoami") => {
                assert_eq!(r.ok(200)["models"], json!(["other-*"]), "{ctx}");
            }
            (false, "/metrics") => {
                r.ok(200);
            }
            (false, "/api/v1/usage") => {
                let names: Vec<&str> = r.ok(200)["models"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["model"].as_str())
                    .collect();
                assert!(
                    names.iter().all(|n| n.starts_with("other-")),
                    "{ctx} leaks other models: {names:?}"
                );
            }
            (false, _) => {
                let names: Vec<&str> = r.ok(200)["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["model"].as_str().or(i["name"].as_str()))
                    .collect();
                assert!(
                    names.iter().all(|n| n.starts_with("other-")),
                    "{ctx} leaks other models: {names:?}"
                );
            }
        }
        // The right scope succeeds; a limited admin passes the scope check too.
        let allowed = match c.scope {
            Scope::Admin => {
                if e.path.starts_with("/api/v1/tokens") || e.path.starts_with("/api/v1/trust") {
                    call(app, Some(&admin_limited), m(), &c.path, c.body.as_ref())
                        .await
                        .problem(403, "insufficient_scope");
                    root.to_owned()
                } else {
                    admin_limited.clone()
                }
            }
            Scope::Authenticated => read.clone(),
            s => by_scope
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, t)| (*t).clone())
                .unwrap(),
        };
        let r = call(app, Some(&allowed), m(), &c.path, c.body.as_ref()).await;
        assert_eq!(
            r.status.as_u16(),
            c.success,
            "{ctx} with the {:?} scope: {}",
            c.scope,
            r.body
        );
        let r = call(app, Some(root), m(), &c.path, c.body.as_ref()).await;
        assert!(
            ![401, 403].contains(&r.status.as_u16()),
            "{ctx} with admin: {}",
            r.body
        );
    }
}

async fn secrets_are_stored_hashed(app: &TestApp) {
    let root = app.root_token();
    let (secret, id) = token(app, root, "ci", &["read"], None).await;
    let list = call(app, Some(root), Method::GET, "/api/v1/tokens", None).await;
    let text = list.ok(200).to_string();
    assert!(
        !text.contains(&secret) && !text.contains("secret_hash"),
        "{text}"
    );
    assert!(text.contains(&id));
    // Read the table itself: no column holds the secret or its random part.
    // Everything after `mrt_<id>_`: base64url, so it may hold `_` itself.
    let random = secret.splitn(3, '_').nth(2).unwrap().to_owned();
    let rows: Vec<String> = if app.db_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        let rows = sqlx::query_scalar("select t::text from tokens t")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        let rows = sqlx::query_scalar("select name || secret_hash || scopes || coalesce(models, '') || created_by from tokens")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    };
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(
            !row.contains(&random),
            "the secret is stored in plain text: {row}"
        );
    }
    call(app, Some(&secret), Method::GET, "/api/v1/models", None)
        .await
        .ok(200);
}

async fn tokens_api_and_actor(app: &TestApp) {
    let root = app.root_token();
    let (ci, _) = token(
        app,
        root,
        "pipeline-ci",
        &["read", "write"],
        Some(&["churn-*"]),
    )
    .await;
    let (ops, ops_id) = token(app, root, "alice", &["promote", "read"], None).await;
    // Another token with the same name: the history tells them apart by id.
    let (_, other_alice) = token(app, root, "alice", &["promote", "read"], None).await;
    assert_ne!(ops_id, other_alice);
    let post = |t: &str, path: &str, body: Value| {
        let t = t.to_owned();
        let path = path.to_owned();
        async move { call(app, Some(&t), Method::POST, &path, Some(&Body::Json(body))).await }
    };
    post(&ci, "/api/v1/models", json!({"name": "churn-a"}))
        .await
        .ok(201);
    let v = post(
        &ci,
        "/api/v1/models/churn-a/versions",
        json!({"finalize": true}),
    )
    .await;
    assert_eq!(v.ok(201)["created_by"], "pipeline-ci");
    post(
        &ops,
        "/api/v1/models/churn-a/stages/production/promote",
        json!({"version": 1, "reason": "go"}),
    )
    .await
    .ok(200);
    let h = call(
        app,
        Some(&ops),
        Method::GET,
        "/api/v1/models/churn-a/stages/production/history",
        None,
    )
    .await;
    assert_eq!(h.ok(200)["items"][0]["actor"], "alice");
    assert_eq!(h.body["items"][0]["actor_token_id"], ops_id.as_str());
    let ev = call(
        app,
        Some(root),
        Method::GET,
        "/api/v1/events?action=stage.promoted",
        None,
    )
    .await;
    assert_eq!(ev.ok(200)["items"][0]["actor_token_id"], ops_id.as_str());
    let me = call(app, Some(&ops), Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(
        me.ok(200).clone(),
        json!({"name": "alice", "subject": "alice", "token_id": ops_id, "scopes": ["promote", "read"],
               "models": null, "auth_required": true})
    );
    let ev = call(
        app,
        Some(root),
        Method::GET,
        "/api/v1/events?action=token.created",
        None,
    )
    .await;
    assert_eq!(ev.ok(200)["items"][0]["actor"], "cli");
    // Bad requests for tokens.
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "scopes[0]"),
        (
            json!({"name": "x", "scopes": ["read"], "models": ["Bad"]}),
            "models[0]",
        ),
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let r = post(root, "/api/v1/tokens", body.clone()).await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            field,
            "{body}"
        );
    }
    call(app, Some(root), Method::DELETE, "/api/v1/tokens/nope", None)
        .await
        .problem(400, "invalid_path_parameter");
    let missing = format!("/api/v1/tokens/{}", uuid::Uuid::now_v7());
    call(app, Some(root), Method::DELETE, &missing, None)
        .await
        .problem(404, "token_not_found");
    let r = call(app, None, Method::GET, "/api/v1/models", None).await;
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    // A glob that a backtracking matcher spends seconds on: names are validated before any
    // glob runs, and matching is linear.
    let (globbed, _) = token(
        app,
        root,
        "globbed",
        &["read"],
        Some(&["a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"]),
    )
    .await;
    let long = format!("/api/v1/models/{}", "a".repeat(400));
    call(app, Some(&globbed), Method::GET, &long, None)
        .await
        .problem(400, "invalid_path_parameter");
    let max = format!("/api/v1/models/{}", "a".repeat(128));
    call(app, Some(&globbed), Method::GET, &max, None)
        .await
        .problem(404, "model_not_found");
}

/// A concrete path for a route template, naming things the fixture made.
fn concrete(template: &str) -> String {
    template
        .replace("{model}", "fraud-a")
        .replace("{version}", "2")
        .replace("{stage}", "staging")
        .replace("{*key}", "loss")
        .replace("{*path}", "model.bin")
        .replace("{file}", "app.js")
        .replace("{id}", &uuid::Uuid::now_v7().to_string())
}

/// Every method, declared or not (HEAD, OPTIONS and an unknown one included), on every route,
/// without a token, with a bad one and with each scope: nothing is answered before the
/// caller is authenticated, and a method the router answers in another's stead (HEAD for
/// GET) needs that method's scope.
async fn every_method_on_every_route(app: &TestApp) {
    let root = app.root_token();
    fixture(app).await;
    let mut tokens = vec![(Scope::Admin, root.to_owned())];
    for scope in [Scope::Read, Scope::Write, Scope::Promote] {
        let (t, _) = token(app, root, scope.as_str(), &[scope.as_str()], None).await;
        tokens.push((scope, t));
    }
    let endpoints = modelreg::api::endpoints();
    let mut templates: Vec<&str> = endpoints.iter().map(|e| e.path).collect();
    templates.sort_unstable();
    templates.dedup();
    templates.push("/api/v1/no-such-route");
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::from_bytes(b"FROB").unwrap(),
    ];
    let mut checked = 0;
    for template in templates {
        let path = concrete(template);
        let of_path: Vec<_> = endpoints.iter().filter(|e| e.path == template).collect();
        let public = !of_path.is_empty() && of_path.iter().all(|e| e.scope == Scope::Public);
        for method in &methods {
            let declared = of_path.iter().find(|e| {
                e.method == *method || (*method == Method::HEAD && e.method == Method::GET)
            });
            let ctx = format!("{method} {path}");
            for bad in [None, Some("mrt_01a21997b68674bc8f474e033e10a64e_nope")] {
                let r = call(app, bad, method.clone(), &path, None).await;
                match declared {
                    Some(e) if e.scope == Scope::Public => {
                        assert!(r.status.is_success(), "{ctx}: {}", r.status)
                    }
                    None if public => assert_eq!(r.status, 405, "{ctx}"),
                    _ => {
                        assert_eq!(r.status, 401, "{ctx} without a valid token: {}", r.body);
                        assert_eq!(r.headers["www-authenticate"], "Bearer", "{ctx}");
                    }
                }
                checked += 1;
            }
            for (scope, t) in &tokens {
                // The event stream's answer never ends: its status, not its body.
                if path == "/api/v1/events/stream" && *method == Method::GET {
                    let r = app.client.get(app.url(&path)).bearer_auth(t).send().await;
                    let want = if matches!(scope, Scope::Admin | Scope::Read) {
                        200
                    } else {
                        403
                    };
                    assert_eq!(r.unwrap().status(), want, "{ctx} with {scope:?}");
                    checked += 1;
                    continue;
                }
                let r = call(app, Some(t), method.clone(), &path, None).await;
                let status = r.status.as_u16();
                match declared {
                    None if of_path.is_empty() => assert_eq!(status, 404, "{ctx}"),
                    None => assert_eq!(status, 405, "{ctx} with {scope:?}: {}", r.body),
                    Some(e) => {
                        let allowed = matches!(e.scope, Scope::Public | Scope::Authenticated)
                            || *scope == Scope::Admin
                            || *scope == e.scope;
                        if allowed {
                            assert!(
                                ![401, 403, 405].contains(&status),
                                "{ctx} with {scope:?}: {status} {}",
                                r.body
                            );
                        } else {
                            assert_eq!(status, 403, "{ctx} with {scope:?}: {}", r.body);
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked} requests checked");
}
