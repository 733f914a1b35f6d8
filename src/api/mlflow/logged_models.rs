//! MLflow 3's logged models (`/api/2.0/mlflow/logged-models…`, `runs/outputs`): what
//! `log_model`, autolog and `evaluate` create before anything is registered. A logged model
//! belongs to the model its experiment stands for and may name the run that produced it; its
//! files are its own (write-once while pending, under
//! `mlflow-artifacts:/<experiment>/models/<model id>/artifacts`), final once it is ready.
//! Registering one (`model-versions/create` with `models:/m-…`) makes a version carrying
//! copies of its files, its params as config and its metrics (see `model_versions`).

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::experiments::{DEFAULT_ID, DEFAULT_MODEL, model_by_id};
use super::runs::{RunParams, active_experiment, run_version};
use super::{Empty, KeyValue, page_limit};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::logged_model::{self, LoggedStatus, Ordering};
use crate::domain::{ModelName, Tags};
use crate::error::{Error, Result};
use crate::store::{Actor, LoggedMetric, LoggedModel, LoggedSearch, NewLoggedModel, RunModel};
use axum::extract::{Path, State};
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

pub fn endpoints() -> Vec<Endpoint> {
    const ROOT: &str = "/api/2.0/mlflow/logged-models";
    const SEARCH: &str = "/api/2.0/mlflow/logged-models/search";
    const ONE: &str = "/api/2.0/mlflow/logged-models/{model_id}";
    const TAGS: &str = "/api/2.0/mlflow/logged-models/{model_id}/tags";
    const TAG: &str = "/api/2.0/mlflow/logged-models/{model_id}/tags/{tag_key}";
    const PARAMS: &str = "/api/2.0/mlflow/logged-models/{model_id}/params";
    const OUTPUTS: &str = "/api/2.0/mlflow/runs/outputs";
    vec![
        Endpoint::new(Method::POST, ROOT, Scope::Write, create).confined(),
        Endpoint::new(Method::POST, SEARCH, Scope::Read, search).confined(),
        Endpoint::new(Method::GET, ONE, Scope::Read, get).confined(),
        Endpoint::new(Method::PATCH, ONE, Scope::Write, finalize).confined(),
        Endpoint::new(Method::DELETE, ONE, Scope::Write, delete).confined(),
        Endpoint::new(Method::PATCH, TAGS, Scope::Write, set_tags).confined(),
        Endpoint::new(Method::DELETE, TAG, Scope::Write, delete_tag).confined(),
        Endpoint::new(Method::POST, PARAMS, Scope::Write, log_params).confined(),
        Endpoint::new(Method::POST, OUTPUTS, Scope::Write, log_outputs).confined(),
    ]
}

/// MLflow's tag listing the registered versions made from a logged model.
pub const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";
/// The most params one call sets (MLflow's client sends 100 at a time).
const MAX_PARAMS: usize = 1000;
const MAX_PARAM_KEY: usize = 250;
const MAX_PARAM_VALUE: usize = 8000;
const MAX_NAME: usize = 256;

/// A logged model's MLflow id: `m-` and 32 hex digits.
pub fn model_id(id: Uuid) -> String {
    format!("m-{}", id.simple())
}

fn parse_id(id: &str) -> Result<Uuid> {
    let missing = || {
        Error::not_found(
            "logged_model_not_found",
            format!("Logged model with ID '{id}' not found"),
        )
    };
    let hex = id.strip_prefix("m-").ok_or_else(missing)?;
    Uuid::try_parse(hex).map_err(|_| missing())
}

/// The logged model an MLflow id names, if the caller may see it (else it does not exist).
pub async fn visible(state: &AppState, principal: &Principal, id: &str) -> Result<LoggedModel> {
    visible_maybe_deleted(state, principal, id, false).await
}

async fn visible_maybe_deleted(
    state: &AppState,
    principal: &Principal,
    id: &str,
    deleted: bool,
) -> Result<LoggedModel> {
    let uuid = parse_id(id)?;
    let model = state.store.get_logged_model(uuid, deleted).await?;
    if principal.sees_model(&model.model) {
        Ok(model)
    } else {
        Err(crate::store::logged_model_not_found(uuid))
    }
}

/// The id of the experiment a logged model is in.
pub fn experiment_of(m: &LoggedModel) -> String {
    if m.model == DEFAULT_MODEL {
        DEFAULT_ID.to_owned()
    } else {
        m.model_id.simple().to_string()
    }
}

/// Where MLflow's client reads and writes a logged model's files.
pub fn artifact_uri(m: &LoggedModel) -> String {
    format!(
        "{}{}/models/{}/artifacts",
        super::artifacts::SCHEME,
        experiment_of(m),
        model_id(m.id)
    )
}

fn metric_json(m: &LoggedModel, x: &LoggedMetric) -> Value {
    let mut v = json!({
        "key": x.key,
        "value": x.value,
        "timestamp": x.timestamp_ms,
        "step": x.step,
        "model_id": model_id(m.id),
    });
    if let Some(run) = x.run_id {
        v["run_id"] = json!(run.simple().to_string());
    }
    if let Some(n) = &x.dataset_name {
        v["dataset_name"] = json!(n);
    }
    if let Some(d) = &x.dataset_digest {
        v["dataset_digest"] = json!(d);
    }
    v
}

/// A logged model as MLflow shows it.
pub fn view(m: &LoggedModel) -> Value {
    let pairs = |map: &BTreeMap<String, String>| -> Vec<Value> {
        map.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect()
    };
    let mut info = json!({
        "model_id": model_id(m.id),
        "experiment_id": experiment_of(m),
        "name": m.name,
        "creation_timestamp_ms": super::millis(m.created_at),
        "last_updated_timestamp_ms": super::millis(m.updated_at),
        "artifact_uri": artifact_uri(m),
        "status": m.status.mlflow(),
        "tags": pairs(&m.tags),
    });
    if let Some(run) = m.source_version {
        info["source_run_id"] = json!(run.simple().to_string());
    }
    if let Some(t) = &m.model_type {
        info["model_type"] = json!(t);
    }
    if let Some(s) = &m.status_message {
        info["status_message"] = json!(s);
    }
    json!({
        "info": info,
        "data": {
            "params": pairs(&m.params),
            "metrics": m.metrics.iter().map(|x| metric_json(m, x)).collect::<Vec<_>>(),
        },
    })
}

fn one(m: &LoggedModel) -> axum::Json<Value> {
    axum::Json(json!({ "model": view(m) }))
}

/// Params as MLflow sends them, checked: at most [`MAX_PARAMS`], keys and values bounded.
fn params_of(pairs: Vec<KeyValue>) -> Result<BTreeMap<String, String>> {
    if pairs.len() > MAX_PARAMS {
        return Err(Error::validation(
            "params",
            format!("at most {MAX_PARAMS} params at once; got {}", pairs.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for p in pairs {
        if p.key.is_empty() || p.key.chars().count() > MAX_PARAM_KEY {
            return Err(Error::validation(
                "params",
                format!("a param key has 1 to {MAX_PARAM_KEY} characters"),
            ));
        }
        if p.value.chars().count() > MAX_PARAM_VALUE {
            return Err(Error::validation(
                "params",
                format!(
                    "param {:?}'s value is longer than {MAX_PARAM_VALUE} characters",
                    p.key
                ),
            ));
        }
        if let Some(held) = out.get(&p.key)
            && held != &p.value
        {
            return Err(Error::validation(
                "params",
                format!("param {:?} is given twice with different values", p.key),
            ));
        }
        out.insert(p.key, p.value);
    }
    Ok(out)
}

/// Tags as MLflow sends them, checked as every tag is.
fn tags_of(pairs: Vec<KeyValue>) -> Result<BTreeMap<String, String>> {
    let tags: Tags = KeyValue::tags(pairs)?;
    Ok(tags.as_map().clone())
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    experiment_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<axum::Json<Value>> {
    let experiment = active_experiment(&state, &principal, &actor, body.experiment_id).await?;
    let source_version = match body.source_run_id.as_deref().filter(|r| !r.is_empty()) {
        Some(run) => Some(run_version(&state, &principal, run).await?.id),
        None => None,
    };
    let name = match body.name.filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > MAX_NAME => {
            return Err(Error::validation(
                "name",
                format!("a logged model's name has at most {MAX_NAME} characters"),
            ));
        }
        Some(n) => n,
        None => format!("model-{}", &Uuid::now_v7().simple().to_string()[20..]),
    };
    let new = NewLoggedModel {
        model: ModelName::parse("experiment_id", &experiment.name)?,
        name,
        source_version,
        model_type: body.model_type.filter(|t| !t.is_empty()),
        tags: tags_of(body.tags)?,
        params: params_of(body.params)?,
    };
    let m = state.store.create_logged_model(new, &actor).await?;
    Ok(one(&m))
}

#[derive(Deserialize)]
struct GetParams {
    #[serde(default)]
    allow_deleted: Option<bool>,
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(p): Query<GetParams>,
) -> Result<axum::Json<Value>> {
    let m =
        visible_maybe_deleted(&state, &principal, &id, p.allow_deleted.unwrap_or(false)).await?;
    Ok(one(&m))
}

#[derive(Deserialize)]
struct FinalizeBody {
    status: Value,
}

async fn finalize(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<FinalizeBody>,
) -> Result<axum::Json<Value>> {
    let status = match &body.status {
        Value::String(s) => LoggedStatus::from_mlflow(s)?,
        other => LoggedStatus::from_mlflow(&other.to_string())?,
    };
    let m = visible(&state, &principal, &id).await?;
    let m = state
        .store
        .finalize_logged_model(m.id, status, None, &actor)
        .await?;
    Ok(one(&m))
}

async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Empty>> {
    let m = visible(&state, &principal, &id).await?;
    state.store.delete_logged_model(m.id, &actor).await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct TagsBody {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn set_tags(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<TagsBody>,
) -> Result<axum::Json<Empty>> {
    let m = visible(&state, &principal, &id).await?;
    let tags = tags_of(body.tags)?
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    state.store.tag_logged_model(m.id, tags, &actor).await?;
    Ok(axum::Json(Empty {}))
}

async fn delete_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Path((id, key)): Path<(String, String)>,
) -> Result<axum::Json<Empty>> {
    let m = visible(&state, &principal, &id).await?;
    if !m.tags.contains_key(&key) {
        return Err(Error::not_found(
            "tag_not_found",
            format!("No tag with key {key:?} on logged model {id}"),
        ));
    }
    state
        .store
        .tag_logged_model(m.id, BTreeMap::from([(key, None)]), &actor)
        .await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct ParamsBody {
    #[serde(default)]
    params: Vec<KeyValue>,
}

async fn log_params(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<ParamsBody>,
) -> Result<axum::Json<Empty>> {
    let m = visible(&state, &principal, &id).await?;
    let params = params_of(body.params)?;
    state
        .store
        .log_logged_model_params(m.id, params, &actor)
        .await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct DatasetBody {
    dataset_name: String,
    #[serde(default)]
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
struct OrderBody {
    field_name: String,
    #[serde(default)]
    ascending: Option<bool>,
    #[serde(default)]
    dataset_name: Option<String>,
    #[serde(default)]
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
struct SearchBody {
    #[serde(default)]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetBody>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderBody>,
    #[serde(default)]
    page_token: Option<String>,
}

/// The most experiments, datasets and order keys one search names.
const MAX_SEARCH_LIST: usize = 100;

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> Result<axum::Json<Value>> {
    for (field, n) in [
        ("experiment_ids", body.experiment_ids.len()),
        ("datasets", body.datasets.len()),
        ("order_by", body.order_by.len()),
    ] {
        if n > MAX_SEARCH_LIST {
            return Err(Error::validation(
                field,
                format!("at most {MAX_SEARCH_LIST} {field}; got {n}"),
            ));
        }
    }
    let conditions = match body.filter.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(f) => super::run_search::clauses(f)?
            .iter()
            .map(|c| logged_model::condition(c))
            .collect::<Result<Vec<_>>>()?,
    };
    let order = body
        .order_by
        .into_iter()
        .map(|o| {
            Ordering::parse(
                &o.field_name,
                o.ascending.unwrap_or(true),
                o.dataset_name.filter(|n| !n.is_empty()),
                o.dataset_digest.filter(|d| !d.is_empty()),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let offset =
        match body.page_token.as_deref().filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t.parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(|| {
                Error::validation("page_token", "not a page token of this search")
            })?,
        };
    let limit = page_limit(body.max_results, state.config.max_page_size.min(1000))?;
    let mut model_ids = Vec::new();
    for id in &body.experiment_ids {
        model_ids.push(model_by_id(&state, &principal, id).await?.id);
    }
    let s = LoggedSearch {
        model_ids,
        conditions,
        datasets: body
            .datasets
            .into_iter()
            .map(|d| (d.dataset_name, d.dataset_digest.filter(|d| !d.is_empty())))
            .collect(),
        order,
        offset,
        limit: i64::from(limit),
    };
    let (models, more) = state.store.search_logged_models(&s).await?;
    let mut answer = json!({ "models": models.iter().map(view).collect::<Vec<_>>() });
    if more {
        answer["next_page_token"] = json!((offset + i64::from(limit)).to_string());
    }
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
struct OutputBody {
    model_id: String,
    #[serde(default)]
    step: Option<i64>,
}

#[derive(Deserialize)]
struct OutputsBody {
    #[serde(flatten)]
    run: RunParams,
    #[serde(default)]
    models: Vec<OutputBody>,
}

/// `runs/outputs`: the logged models a run produced, each at a step.
async fn log_outputs(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<OutputsBody>,
) -> Result<axum::Json<Empty>> {
    if body.models.len() > MAX_SEARCH_LIST {
        return Err(Error::validation(
            "models",
            format!("at most {MAX_SEARCH_LIST} models at once"),
        ));
    }
    let run = run_version(&state, &principal, &body.run.id()?).await?;
    let mut links = Vec::new();
    for o in body.models {
        let m = visible(&state, &principal, &o.model_id).await?;
        links.push((m.id, RunModel::Output, o.step.unwrap_or(0)));
    }
    state.store.link_run_models(run.id, links).await?;
    Ok(axum::Json(Empty {}))
}

/// The logged models a run used (`runs/log-inputs` with `models`), checked visible.
pub async fn link_inputs(
    state: &AppState,
    principal: &Principal,
    run: Uuid,
    ids: Vec<String>,
) -> Result<()> {
    if ids.len() > MAX_SEARCH_LIST {
        return Err(Error::validation(
            "models",
            format!("at most {MAX_SEARCH_LIST} models at once"),
        ));
    }
    let mut links = Vec::new();
    for id in ids {
        let m = visible(state, principal, &id).await?;
        links.push((m.id, RunModel::Input, 0));
    }
    state.store.link_run_models(run, links).await
}
