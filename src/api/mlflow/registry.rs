//! MLflow's model registry: a registered model is the model of the same name, a model version
//! is a version (its number as a string), and an alias is a stage — setting one is a promote,
//! deleting one a clear, through the same stage flow as the native API, so history, rollback,
//! policies and webhooks apply. A version made from a run of the same model is that run's
//! version (made ready); from a run of another model, a new ready version whose source names
//! the run and which carries its config.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::runs::model_of;
use super::{KeyValue, millis, names};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::{ModelName, StageName, VersionStatus};
use crate::error::{Error, Result};
use crate::store::{Actor, Approval, Model, StageOp, StageRequest, Version};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub fn endpoints() -> Vec<Endpoint> {
    const CREATE: &str = "/api/2.0/mlflow/registered-models/create";
    const GET: &str = "/api/2.0/mlflow/registered-models/get";
    const LATEST: &str = "/api/2.0/mlflow/registered-models/get-latest-versions";
    const ALIAS: &str = "/api/2.0/mlflow/registered-models/alias";
    vec![
        Endpoint::new(Method::POST, CREATE, Scope::Write, create_model).confined(),
        Endpoint::new(Method::GET, GET, Scope::Read, get_model).confined(),
        Endpoint::new(Method::POST, LATEST, Scope::Read, latest_post).confined(),
        Endpoint::new(Method::GET, LATEST, Scope::Read, latest_get).confined(),
        Endpoint::new(Method::POST, ALIAS, Scope::Promote, set_alias).confined(),
        Endpoint::new(Method::GET, ALIAS, Scope::Read, get_alias).confined(),
        Endpoint::new(Method::DELETE, ALIAS, Scope::Promote, delete_alias).confined(),
    ]
}

/// The registered model, if the caller may see it (else it does not exist).
pub(super) async fn registered(
    state: &AppState,
    principal: &Principal,
    name: &str,
) -> Result<Model> {
    let missing = || {
        Error::not_found(
            "registered_model_not_found",
            format!("Registered Model with name={name} not found"),
        )
    };
    names::find(state, principal, name)
        .await?
        .ok_or_else(missing)
}

fn status_of(v: &Version) -> &'static str {
    match v.status {
        VersionStatus::Pending => "PENDING_REGISTRATION",
        VersionStatus::Failed | VersionStatus::Erased => "FAILED_REGISTRATION",
        VersionStatus::Ready | VersionStatus::Archived => "READY",
    }
}

/// MLflow's (deprecated) stage of a version: `Production` or `Staging` while it holds the
/// modelreg stage of that name, `Archived` once archived, else `None`.
pub(super) fn current_stage(v: &Version, stages: &[String]) -> &'static str {
    let holds = |s: &str| stages.iter().any(|h| h == s);
    if matches!(v.status, VersionStatus::Archived | VersionStatus::Erased) {
        "Archived"
    } else if holds(PRODUCTION) {
        "Production"
    } else if holds(STAGING) {
        "Staging"
    } else {
        "None"
    }
}

/// The modelreg stages MLflow's `Production` and `Staging` stand for.
pub(super) const PRODUCTION: &str = "production";
pub(super) const STAGING: &str = "staging";

/// The stages of `m` holding version `v`: its aliases.
fn aliases(m: &Model, v: &Version) -> Vec<String> {
    m.stages
        .iter()
        .filter(|(_, held)| **held == v.version)
        .map(|(stage, _)| stage.clone())
        .collect()
}

/// A version of the registered model `m` as MLflow's ModelVersion; its aliases are the
/// stages of `m` holding it.
pub(super) fn model_version(v: &Version, m: &Model) -> Value {
    let aliases = aliases(m, v);
    let source: Map<String, Value> = serde_json::from_str(v.source.get()).unwrap_or_default();
    let run_id = match (source.get("run_id"), source.contains_key("mlflow_run")) {
        (Some(Value::String(r)), _) => r.clone(),
        // The version is itself a run.
        (_, true) => v.id.simple().to_string(),
        _ => String::new(),
    };
    let tags = KeyValue::list(&v.tags);
    json!({
        "name": names::mlflow_name(m),
        "version": v.version.to_string(),
        "creation_timestamp": millis(v.created_at),
        "last_updated_timestamp": millis(v.updated_at),
        "user_id": v.created_by,
        "current_stage": current_stage(v, &aliases),
        "description": v.description.clone().unwrap_or_default(),
        "source": source.get("mlflow_source").and_then(Value::as_str).unwrap_or_default(),
        "run_id": run_id,
        "status": status_of(v),
        "tags": tags,
        "aliases": aliases,
    })
}

/// The model of a version, with its stages (the version's aliases) and MLflow name.
pub(super) async fn model_of_version(state: &AppState, v: &Version) -> Result<Model> {
    state.store.get_model(&model_of(v)?).await
}

pub(super) async fn aliases_of(state: &AppState, v: &Version) -> Result<Vec<String>> {
    Ok(aliases(&model_of_version(state, v).await?, v))
}

pub(super) async fn one_version(state: &AppState, v: &Version) -> Result<axum::Json<Value>> {
    let m = model_of_version(state, v).await?;
    Ok(axum::Json(json!({ "model_version": model_version(v, &m) })))
}

#[derive(Deserialize)]
struct CreateModelBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_model(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateModelBody>,
) -> Result<axum::Json<Value>> {
    let model = super::create_model(
        &state,
        &principal,
        &actor,
        &body.name,
        body.description,
        body.tags,
    )
    .await?;
    Ok(axum::Json(
        json!({ "registered_model": registered_json(&state, &model).await? }),
    ))
}

pub(super) async fn registered_json(state: &AppState, m: &Model) -> Result<Value> {
    let latest = match m.latest_version {
        Some(n) => {
            let name = ModelName::parse("name", &m.name)?;
            Some(state.store.get_version(&name, n).await?)
        }
        None => None,
    };
    Ok(registered_in(m, latest.as_ref()))
}

/// Registered models as MLflow shows them, each with its latest version, read in one
/// statement for the whole page.
pub(super) async fn registered_page(state: &AppState, models: &[Model]) -> Result<Vec<Value>> {
    let wanted: Vec<(String, i64)> = models
        .iter()
        .filter_map(|m| m.latest_version.map(|n| (m.name.clone(), n)))
        .collect();
    let latest = state.store.versions_named(&wanted).await?;
    Ok(models
        .iter()
        .map(|m| {
            let v = latest
                .iter()
                .find(|v| v.model == m.name && Some(v.version) == m.latest_version);
            registered_in(m, v)
        })
        .collect())
}

fn registered_in(m: &Model, latest: Option<&Version>) -> Value {
    let latest: Vec<Value> = latest.map(|v| model_version(v, m)).into_iter().collect();
    let tags = names::shown_tags(&m.tags);
    let aliases: Vec<Value> = m
        .stages
        .iter()
        .map(|(alias, version)| json!({"alias": alias, "version": version.to_string()}))
        .collect();
    json!({
        "name": names::mlflow_name(m),
        "creation_timestamp": millis(m.created_at),
        "last_updated_timestamp": millis(m.updated_at),
        "user_id": m.created_by,
        "description": m.description.clone().unwrap_or_default(),
        "latest_versions": latest,
        "tags": tags,
        "aliases": aliases,
    })
}

#[derive(Deserialize)]
struct NameParams {
    name: String,
}

async fn get_model(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<NameParams>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &p.name).await?;
    Ok(axum::Json(
        json!({ "registered_model": registered_json(&state, &model).await? }),
    ))
}

/// MLflow's four stages, as its API spells them.
pub(super) const MLFLOW_STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// MLflow's stage name as its API spells it, whatever the case it came in.
pub(super) fn mlflow_stage(raw: &str) -> Result<&'static str> {
    MLFLOW_STAGES
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(raw.trim()))
        .ok_or_else(|| {
            Error::validation(
                "stage",
                format!("Invalid Model Version stage: {raw}. Value must be one of None, Staging, Production, Archived."),
            )
        })
}

/// The latest version in each stage asked for (all four when none is): the holders of
/// `production` and `staging`, and the latest version when its stage is `None` or `Archived`.
async fn latest(
    state: &AppState,
    principal: &Principal,
    name: &str,
    stages: &[String],
) -> Result<axum::Json<Value>> {
    let model = registered(state, principal, name).await?;
    let wanted = stages
        .iter()
        .map(|s| mlflow_stage(s))
        .collect::<Result<Vec<_>>>()?;
    let wants = |s: &str| wanted.is_empty() || wanted.contains(&s);
    let name = ModelName::parse("name", &model.name)?;
    let mut numbers = Vec::new();
    for (mlflow, stage) in [("Production", PRODUCTION), ("Staging", STAGING)] {
        if let Some(n) = model.stages.get(stage).filter(|_| wants(mlflow)) {
            numbers.push(*n);
        }
    }
    numbers.extend(model.latest_version);
    let mut seen = Vec::new();
    let mut versions = Vec::new();
    for n in numbers {
        if seen.contains(&n) {
            continue;
        }
        seen.push(n);
        let v = state.store.get_version(&name, n).await?;
        if wants(current_stage(&v, &aliases(&model, &v))) {
            versions.push(model_version(&v, &model));
        }
    }
    Ok(axum::Json(json!({ "model_versions": versions })))
}

#[derive(Deserialize)]
struct LatestBody {
    name: String,
    #[serde(default)]
    stages: Vec<String>,
}

async fn latest_post(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<LatestBody>,
) -> Result<axum::Json<Value>> {
    latest(&state, &principal, &body.name, &body.stages).await
}

async fn latest_get(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<LatestBody>,
) -> Result<axum::Json<Value>> {
    latest(&state, &principal, &p.name, &p.stages).await
}

pub(super) fn version_number(raw: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            Error::validation(
                "version",
                format!("version {raw:?} is not a version number"),
            )
        })
}

#[derive(Deserialize)]
struct AliasBody {
    name: String,
    alias: String,
    #[serde(default)]
    version: Option<String>,
}

/// Promotes or clears a stage through the native stage flow (policies, history, webhooks); a
/// stage that needs approvals opens a promotion request and says so.
pub(super) async fn stage_change(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    (model, alias): (&str, &str),
    op: StageOp,
) -> Result<()> {
    let model = registered(state, principal, model).await?;
    let stage = StageName::parse("alias", alias)?;
    let req = StageRequest {
        op,
        reason: None,
        expected: None,
        dry_run: false,
        force: false,
        approval: Some(Approval::Request {
            ttl: state.config.policies.request_ttl,
        }),
        clock: state.config.clock.clone(),
    };
    let name = ModelName::parse("name", &model.name)?;
    let change = state.store.change_stage(&name, &stage, req, actor).await?;
    if let Some(request) = change.request {
        return Err(Error::validation(
            "alias",
            format!(
                "stage '{stage}' needs approvals: promotion request {request} is pending \
                 (approve it through /api/v1/models/{name}/promotion-requests)"
            ),
        ));
    }
    Ok(())
}

async fn set_alias(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<AliasBody>,
) -> Result<axum::Json<Value>> {
    let version = version_number(body.version.as_deref().unwrap_or_default())?;
    stage_change(
        &state,
        &principal,
        &actor,
        (&body.name, &body.alias),
        StageOp::Promote { version },
    )
    .await?;
    Ok(axum::Json(json!({})))
}

async fn delete_alias(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<AliasBody>,
) -> Result<axum::Json<Value>> {
    stage_change(
        &state,
        &principal,
        &actor,
        (&body.name, &body.alias),
        StageOp::Clear,
    )
    .await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct AliasParams {
    name: String,
    alias: String,
}

async fn get_alias(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<AliasParams>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &p.name).await?;
    let name = ModelName::parse("name", &model.name)?;
    let stage = StageName::parse("alias", &p.alias)?;
    let entry = state
        .store
        .get_stage(&name, &stage, None)
        .await
        .map_err(|e| {
            // MLflow's server answers a missing alias as INVALID_PARAMETER_VALUE.
            if e.code == "stage_empty" {
                Error::validation(
                    "alias",
                    format!("Registered model alias {} not found.", p.alias),
                )
            } else {
                e
            }
        })?;
    let v = state.store.get_version(&name, entry.version).await?;
    one_version(&state, &v).await
}
