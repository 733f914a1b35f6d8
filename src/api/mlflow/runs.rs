//! MLflow runs: a run is a version of its experiment's model. The run id is the version's id
//! (32 hex digits); params are the version's config (top-level entries, as strings), run tags
//! its tags, metrics its metrics; a run `FINISHED` is a ready version, `FAILED` or `KILLED` a
//! failed one. Every call goes through the same store flows as the native API, so the event
//! log, history and webhooks see MLflow's changes like any other.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::experiments::{self, DEFAULT_MODEL};
use super::run_view::{Run, RunInfo, run_info, run_of};
use super::{Empty, KeyValue};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::change::Patch;
use crate::domain::{ModelName, Reason, TagPatch, Tags, Transition, VersionStatus};
use crate::error::{Error, Result};
use crate::store::{Actor, Model, NewVersion, PutModel, Version};
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

pub fn endpoints() -> Vec<Endpoint> {
    const CREATE: &str = "/api/2.0/mlflow/runs/create";
    const UPDATE: &str = "/api/2.0/mlflow/runs/update";
    const LOG_PARAM: &str = "/api/2.0/mlflow/runs/log-parameter";
    const SET_TAG: &str = "/api/2.0/mlflow/runs/set-tag";
    const DELETE_TAG: &str = "/api/2.0/mlflow/runs/delete-tag";
    const DELETE: &str = "/api/2.0/mlflow/runs/delete";
    const RESTORE: &str = "/api/2.0/mlflow/runs/restore";
    vec![
        Endpoint::new(Method::POST, CREATE, Scope::Write, create).confined(),
        Endpoint::new(Method::GET, "/api/2.0/mlflow/runs/get", Scope::Read, get).confined(),
        Endpoint::new(Method::POST, UPDATE, Scope::Write, update).confined(),
        Endpoint::new(Method::POST, LOG_PARAM, Scope::Write, log_param).confined(),
        Endpoint::new(Method::POST, SET_TAG, Scope::Write, set_tag).confined(),
        Endpoint::new(Method::POST, DELETE_TAG, Scope::Write, delete_tag).confined(),
        Endpoint::new(Method::POST, DELETE, Scope::Write, delete).confined(),
        Endpoint::new(Method::POST, RESTORE, Scope::Write, restore).confined(),
    ]
}

/// The tag MLflow keeps a run's name in.
pub(super) const RUN_NAME_TAG: &str = "mlflow.runName";

/// The version behind a run id, if the caller may see its model (else it does not exist).
pub async fn run_version(state: &AppState, principal: &Principal, run_id: &str) -> Result<Version> {
    let missing = || Error::not_found("run_not_found", format!("Run with id={run_id} not found"));
    let id = Uuid::try_parse(run_id).map_err(|_| missing())?;
    match state.store.version_by_id(id).await {
        Ok(v) if principal.sees_model(&v.model) => Ok(v),
        Ok(_) => Err(missing()),
        Err(e) if e.code == "version_not_found" => Err(missing()),
        Err(e) => Err(e),
    }
}

pub fn model_of(v: &Version) -> Result<ModelName> {
    ModelName::parse("run_id", &v.model)
}

#[derive(Serialize)]
pub struct OneRun {
    run: Run,
}

async fn answer(state: &AppState, v: &Version) -> Result<axum::Json<OneRun>> {
    let detail = state.store.version_detail(&model_of(v)?, v.version).await?;
    Ok(axum::Json(OneRun {
        run: run_of(state, detail).await?,
    }))
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    experiment_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    run_name: Option<String>,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

/// The model of an experiment that takes new runs and logged models (none named: MLflow's
/// Default experiment, made on first use): 400 when the experiment is deleted.
pub(super) async fn active_experiment(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    experiment_id: Option<String>,
) -> Result<Model> {
    let experiment = experiment_id
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| experiments::DEFAULT_ID.to_owned());
    let model = if experiment == experiments::DEFAULT_ID {
        // MLflow's Default experiment always exists: the model `default` is made on first use.
        let name = ModelName::parse("experiment_id", DEFAULT_MODEL)?;
        if !principal.sees_model(name.as_str()) {
            return Err(experiments::not_found("no experiment with id \"0\"".into()));
        }
        let put = PutModel {
            description: None,
            tags: None,
        };
        state.store.put_model(&name, put, actor).await?.0
    } else {
        experiments::model_by_id(state, principal, &experiment).await?
    };
    if super::names::is_deleted(&model) {
        return Err(Error::validation(
            "experiment_id",
            format!(
                "The experiment {experiment} must be in the 'active' state; it is deleted \
                 (restore it first)"
            ),
        ));
    }
    Ok(model)
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<axum::Json<OneRun>> {
    let model = active_experiment(&state, &principal, &actor, body.experiment_id).await?;
    let mut tags: BTreeMap<String, String> =
        body.tags.into_iter().map(|t| (t.key, t.value)).collect();
    if let Some(name) = body.run_name.filter(|n| !n.is_empty()) {
        tags.insert(RUN_NAME_TAG.to_owned(), name);
    }
    let mut run = Map::new();
    if let Some(user) = body.user_id.filter(|u| !u.is_empty()) {
        run.insert("user_id".into(), Value::String(user));
    }
    if let Some(t) = body.start_time {
        run.insert("start_time".into(), Value::from(t));
    }
    let mut source = Map::new();
    source.insert("mlflow_run".into(), Value::Object(run));
    let new = NewVersion {
        description: None,
        tags: Tags::parse_mlflow("tags", tags)?,
        config: Map::new(),
        source,
        finalize: false,
        artifacts: Vec::new(),
        inputs: Vec::new(),
        copied_from: None,
        schema: None,
    };
    let name = ModelName::parse("experiment_id", &model.name)?;
    let registered = state
        .store
        .register_version(&name, new, None, &actor)
        .await?;
    answer(&state, &registered.version).await
}

/// A run named by `run_id` (or MLflow's older `run_uuid`).
#[derive(Deserialize)]
pub(super) struct RunParams {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
}

impl RunParams {
    pub(super) fn id(self) -> Result<String> {
        self.run_id
            .or(self.run_uuid)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::validation("run_id", "Missing value for required parameter 'run_id'")
            })
    }
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<RunParams>,
) -> Result<axum::Json<OneRun>> {
    let v = run_version(&state, &principal, &p.id()?).await?;
    answer(&state, &v).await
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(flatten)]
    run: RunParams,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    run_name: Option<String>,
}

#[derive(Serialize)]
struct Updated {
    run_info: RunInfo,
}

async fn update(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<UpdateBody>,
) -> Result<axum::Json<Updated>> {
    let mut v = run_version(&state, &principal, &body.run.id()?).await?;
    let model = model_of(&v)?;
    if let Some(name) = body.run_name.filter(|n| !n.is_empty()) {
        v = retag(&state, &actor, &v, RUN_NAME_TAG, Some(name)).await?;
    }
    let transition = match body.status.as_deref() {
        None | Some("" | "RUNNING" | "SCHEDULED") => None,
        Some("FINISHED") => Some((Transition::Finalize, None)),
        Some("FAILED") => Some((Transition::Fail, None)),
        Some("KILLED") => Some((Transition::Fail, Some("KILLED"))),
        Some(other) => {
            return Err(Error::validation(
                "status",
                format!("unknown run status {other:?}"),
            ));
        }
    };
    if let Some((t, reason)) = transition {
        let wanted = if t == Transition::Finalize {
            VersionStatus::Ready
        } else {
            VersionStatus::Failed
        };
        // A run that has ended keeps its end: failing it again is what MLflow's client does
        // at the end of a `with start_run(run_id=…)` block that raised (say, because a param
        // was refused), and its error must not replace the one that stopped the block.
        let ended_already = t == Transition::Fail && v.status != VersionStatus::Pending;
        if v.status != wanted && !ended_already {
            if t == Transition::Finalize {
                // A model logged into the run's artifacts (MLflow 2's layout) declares its
                // schema in its MLmodel file.
                let artifacts = state.store.list_artifacts(&model, v.version).await?;
                crate::api::schemas::take_from_mlmodel(
                    &state, &model, v.version, &artifacts, &actor,
                )
                .await?;
            }
            let reason = reason
                .map(|r| Reason::parse("status", r.to_owned()))
                .transpose()?;
            v = state
                .store
                .transition_version(&model, v.version, t, reason, &actor)
                .await?;
        }
    }
    Ok(axum::Json(Updated {
        run_info: run_info(&state, &v).await?,
    }))
}

/// Sets (or, with `None`, removes) one tag of a run's version.
pub async fn retag(
    state: &AppState,
    actor: &Actor,
    v: &Version,
    key: &str,
    value: Option<String>,
) -> Result<Version> {
    let tags = TagPatch::parse_mlflow("tags", BTreeMap::from([(key.to_owned(), value)]))?;
    let patch = Patch {
        description: None,
        tags,
    };
    state
        .store
        .update_version(&model_of(v)?, v.version, patch, actor)
        .await
}

#[derive(Deserialize)]
struct KeyValueBody {
    #[serde(flatten)]
    run: RunParams,
    key: String,
    #[serde(default)]
    value: Option<String>,
}

async fn log_param(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<KeyValueBody>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.run.id()?).await?;
    let entries = Map::from_iter([(body.key, Value::String(body.value.unwrap_or_default()))]);
    add_params(&state, &actor, &v, entries).await?;
    Ok(axum::Json(Empty {}))
}

/// MLflow's params into the version's config.
pub async fn add_params(
    state: &AppState,
    actor: &Actor,
    v: &Version,
    entries: Map<String, Value>,
) -> Result<()> {
    check_param_keys(&entries)?;
    let added = state
        .store
        .add_config(&model_of(v)?, v.version, entries, actor)
        .await;
    params_ended(v, added.map(|_| ()))
}

/// MLflow's param keys: 1-250 characters.
pub fn check_param_keys(entries: &Map<String, Value>) -> Result<()> {
    for key in entries.keys() {
        if key.is_empty() || key.len() > 250 {
            return Err(Error::validation(
                "key",
                format!("param key {key:?} must be 1-250 characters"),
            ));
        }
    }
    Ok(())
}

/// A refusal to change a finished run's config, said as MLflow users need to hear it.
pub fn params_ended<T>(v: &Version, result: Result<T>) -> Result<T> {
    match result {
        Err(e) if e.code == "version_immutable" => Err(Error::conflict(
            "version_immutable",
            format!(
                "run {} has ended ({}): its params are its version's config, which modelreg \
                 keeps immutable once a run ends; log params before the run ends, or start a \
                 new run",
                v.id.simple(),
                v.status.as_str()
            ),
        )),
        other => other,
    }
}

async fn set_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<KeyValueBody>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.run.id()?).await?;
    retag(
        &state,
        &actor,
        &v,
        &body.key,
        Some(body.value.unwrap_or_default()),
    )
    .await?;
    Ok(axum::Json(Empty {}))
}

async fn delete_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<KeyValueBody>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.run.id()?).await?;
    if !v.tags.as_map().contains_key(&body.key) {
        return Err(Error::not_found(
            "tag_not_found",
            format!(
                "No tag with name: {} in run with id {}",
                body.key,
                v.id.simple()
            ),
        ));
    }
    retag(&state, &actor, &v, &body.key, None).await?;
    Ok(axum::Json(Empty {}))
}

/// Deleting a run archives its version (`lifecycle_stage` `deleted`); a running one is marked
/// failed. Nothing is erased: the version and its history stay.
async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<RunParams>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.id()?).await?;
    retire(&state, &actor, &v).await?;
    Ok(axum::Json(Empty {}))
}

/// `runs/restore`: a deleted (archived) run is ready again; any other run is left as it is
/// (a run deleted while running stays failed: it did not finish).
async fn restore(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<RunParams>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.id()?).await?;
    if v.status == VersionStatus::Archived {
        let reason = Reason::parse_opt("reason", Some("restored through the MLflow API".into()))?;
        state
            .store
            .transition_version(
                &model_of(&v)?,
                v.version,
                Transition::Restore,
                reason,
                &actor,
            )
            .await?;
    }
    Ok(axum::Json(Empty {}))
}

/// What MLflow's deletes of runs and model versions do here: a ready version is archived, a
/// pending one failed (a failed or archived one stays as it is). Nothing is erased.
pub async fn retire(state: &AppState, actor: &Actor, v: &Version) -> Result<()> {
    let transition = match v.status {
        VersionStatus::Pending => Transition::Fail,
        VersionStatus::Ready => Transition::Archive,
        VersionStatus::Failed | VersionStatus::Archived | VersionStatus::Erased => return Ok(()),
    };
    let reason = Reason::parse_opt("reason", Some("deleted through the MLflow API".into()))?;
    state
        .store
        .transition_version(&model_of(v)?, v.version, transition, reason, actor)
        .await?;
    Ok(())
}
