//! MLflow model versions: get, and create — from a run of the same model, that run's version
//! made ready; from a run of another model (or none), a new ready version carrying the run's
//! config, its source naming the run.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::registry::{one_version, registered, version_number};
use super::run_view::experiment_id_of;
use super::runs::{model_of, retag, run_version};
use super::{KeyValue, artifacts, logged_models};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::logged_model::LoggedStatus;
use crate::domain::metrics::{RawPoint, group};
use crate::domain::{Description, ModelName, Transition, VersionStatus};
use crate::error::{Error, Result};
use crate::store::{Actor, LoggedModel, NewVersion, Version};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn endpoints() -> Vec<Endpoint> {
    const CREATE: &str = "/api/2.0/mlflow/model-versions/create";
    const GET: &str = "/api/2.0/mlflow/model-versions/get";
    const DOWNLOAD_URI: &str = "/api/2.0/mlflow/model-versions/get-download-uri";
    vec![
        Endpoint::new(Method::POST, CREATE, Scope::Write, create_version).confined(),
        Endpoint::new(Method::GET, GET, Scope::Read, get_version).confined(),
        Endpoint::new(Method::GET, DOWNLOAD_URI, Scope::Read, download_uri).confined(),
    ]
}

#[derive(Deserialize)]
pub(super) struct VersionParams {
    name: String,
    version: String,
}

/// The version a `{name, version}` pair names, if the caller may see it.
pub(super) async fn named_version(
    state: &AppState,
    principal: &Principal,
    p: &VersionParams,
) -> Result<Version> {
    let model = registered(state, principal, &p.name).await?;
    // As MLflow's server: a version that is not an integer is a bad parameter, one that is
    // not a version number (0, -1) is missing.
    let number = version_number(&p.version).map_err(|e| {
        if p.version.trim().parse::<i64>().is_ok() {
            Error::not_found(
                "version_not_found",
                format!(
                    "Model Version (name={}, version={}) not found",
                    p.name, p.version
                ),
            )
        } else {
            e
        }
    })?;
    state
        .store
        .get_version(&ModelName::parse("name", &model.name)?, number)
        .await
}

async fn get_version(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<VersionParams>,
) -> Result<axum::Json<Value>> {
    let v = named_version(&state, &principal, &p).await?;
    one_version(&state, &v).await
}

async fn download_uri(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<VersionParams>,
) -> Result<axum::Json<Value>> {
    let v = named_version(&state, &principal, &p).await?;
    let artifacts = state
        .store
        .list_artifacts(&model_of(&v)?, v.version)
        .await?;
    let experiment = experiment_id_of(&state, &v).await?;
    Ok(axum::Json(
        json!({ "artifact_uri": artifacts::download_uri(&experiment, &v, &artifacts) }),
    ))
}

#[derive(Deserialize)]
struct CreateVersionBody {
    name: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    #[serde(default)]
    model_id: Option<String>,
}

/// The logged model a registration names: by `model_id`, or by a `models:/m-…` source.
fn logged_model_named(body: &CreateVersionBody) -> Option<String> {
    if let Some(id) = body.model_id.as_deref().filter(|m| !m.is_empty()) {
        return Some(id.to_owned());
    }
    let rest = body.source.as_deref()?.strip_prefix("models:/")?;
    let id = rest.split('/').next()?;
    id.starts_with("m-").then(|| id.to_owned())
}

async fn create_version(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateVersionBody>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &body.name).await?;
    let name = ModelName::parse("name", &model.name)?;
    if let Some(id) = logged_model_named(&body) {
        let logged = logged_models::visible(&state, &principal, &id).await?;
        return from_logged_model(&state, &actor, &principal, &model, logged, body).await;
    }
    let run = match body.run_id.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(run_version(&state, &principal, r).await?),
        None => None,
    };
    // A run of this very model: that run's version is the model version, made ready.
    if let Some(mut v) = run.clone().filter(|v| v.model == model.name) {
        if v.status == VersionStatus::Pending {
            let artifacts = state.store.list_artifacts(&name, v.version).await?;
            crate::api::schemas::take_from_mlmodel(&state, &name, v.version, &artifacts, &actor)
                .await?;
            v = state
                .store
                .transition_version(&name, v.version, Transition::Finalize, None, &actor)
                .await?;
        }
        for t in body.tags {
            v = retag(&state, &actor, &v, &t.key, Some(t.value)).await?;
        }
        return one_version(&state, &v).await;
    }
    let mut source = Map::new();
    let mut copies = Vec::new();
    if let Some(s) = body.source.filter(|s| !s.is_empty()) {
        let next = model.latest_version.unwrap_or(0) + 1;
        copies = artifacts::copy_model_files(&state, &principal, &s, &name, next).await?;
        source.insert("mlflow_source".into(), Value::String(s));
    }
    let config: Map<String, Value> = match &run {
        Some(v) => {
            source.insert("run_id".into(), Value::String(v.id.simple().to_string()));
            serde_json::from_str(v.config.get()).unwrap_or_default()
        }
        None => Map::new(),
    };
    let new = NewVersion {
        description: Description::parse_opt(
            "description",
            body.description.filter(|d| !d.is_empty()),
        )?,
        tags: KeyValue::tags(body.tags)?,
        config,
        source,
        finalize: true,
        artifacts: copies.clone(),
        inputs: Vec::new(),
        schema: crate::api::schemas::from_artifacts(&state, &copies).await?,
        copied_from: run
            .as_ref()
            .map(|v| Ok::<_, Error>((ModelName::parse("run_id", &v.model)?, v.version)))
            .transpose()?,
    };
    match state.store.register_version(&name, new, None, &actor).await {
        Ok(registered) => one_version(&state, &registered.version).await,
        Err(e) => {
            artifacts::discard(&state, &copies).await;
            Err(e)
        }
    }
}

/// A registration of a logged model: a new ready version of the registered model carrying
/// copies of the logged model's files, its params as config, its metrics (each key's points
/// by step), and a source naming the logged model and its run; the logged model's
/// `mlflow.modelVersions` tag lists the version, as on MLflow's server.
async fn from_logged_model(
    state: &AppState,
    actor: &Actor,
    principal: &Principal,
    model: &crate::store::Model,
    logged: LoggedModel,
    body: CreateVersionBody,
) -> Result<axum::Json<Value>> {
    if logged.status != LoggedStatus::Ready {
        return Err(Error::validation(
            "model_id",
            format!(
                "logged model {} is {}: a logged model is registered once it is ready (its \
                 files final)",
                logged_models::model_id(logged.id),
                logged.status.mlflow()
            ),
        ));
    }
    let name = ModelName::parse("name", &model.name)?;
    let next = model.latest_version.unwrap_or(0) + 1;
    let at = artifacts::Location {
        holder: artifacts::Holder::Logged(logged.clone()),
        path: String::new(),
    };
    let copies = artifacts::copy_files(state, &at, &name, next).await?;
    let mut source = Map::new();
    source.insert(
        "mlflow_source".into(),
        Value::String(
            body.source
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("models:/{}", logged_models::model_id(logged.id))),
        ),
    );
    source.insert(
        "logged_model_id".into(),
        Value::String(logged_models::model_id(logged.id)),
    );
    if let Some(run) = logged.source_version {
        source.insert("run_id".into(), Value::String(run.simple().to_string()));
    }
    let config: Map<String, Value> = logged
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    // The run that logged it, when the token may read it, is what the version copies.
    let run = match logged.source_version {
        Some(id) => match state.store.version_by_id(id).await {
            Ok(v) if principal.sees_model(&v.model) => {
                Some((ModelName::parse("run_id", &v.model)?, v.version))
            }
            Ok(_) => None,
            Err(e) if e.code == "version_not_found" => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let new = NewVersion {
        description: Description::parse_opt(
            "description",
            body.description.filter(|d| !d.is_empty()),
        )?,
        tags: KeyValue::tags(body.tags)?,
        config,
        source,
        finalize: true,
        artifacts: copies.clone(),
        inputs: Vec::new(),
        copied_from: run,
        schema: crate::api::schemas::from_artifacts(state, &copies).await?,
    };
    let registered = match state.store.register_version(&name, new, None, actor).await {
        Ok(r) => r.version,
        Err(e) => {
            artifacts::discard(state, &copies).await;
            return Err(e);
        }
    };
    let points: Vec<RawPoint> = logged
        .metrics
        .iter()
        .map(|m| RawPoint {
            key: m.key.clone(),
            step: m.step,
            value: m.value,
            at: chrono::DateTime::from_timestamp_millis(m.timestamp_ms),
        })
        .collect();
    let batches = group(points, crate::domain::time::now())?;
    if !batches.is_empty() {
        state
            .store
            .write_metrics(&name, registered.version, &batches)
            .await?;
    }
    let mut listed: Vec<Value> = logged
        .tags
        .get(logged_models::MODEL_VERSIONS_TAG)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let entry = json!({"name": body.name, "version": registered.version});
    if !listed.contains(&entry) {
        listed.push(entry);
    }
    let tag = BTreeMap::from([(
        logged_models::MODEL_VERSIONS_TAG.to_owned(),
        Some(Value::Array(listed).to_string()),
    )]);
    state.store.tag_logged_model(logged.id, tag, actor).await?;
    one_version(state, &registered).await
}
