//! MLflow model versions: get, and create — from a run of the same model, that run's version
//! made ready; from a run of another model (or none), a new ready version carrying the run's
//! config, its source naming the run.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::KeyValue;
use super::registry::{one_version, registered, version_number};
use super::runs::{retag, run_version};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::{Description, ModelName, Transition, VersionStatus};
use crate::error::{Error, Result};
use crate::store::{Actor, NewVersion};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

pub fn endpoints() -> Vec<Endpoint> {
    const CREATE: &str = "/api/2.0/mlflow/model-versions/create";
    const GET: &str = "/api/2.0/mlflow/model-versions/get";
    vec![
        Endpoint::new(Method::POST, CREATE, Scope::Write, create_version).confined(),
        Endpoint::new(Method::GET, GET, Scope::Read, get_version).confined(),
    ]
}

#[derive(Deserialize)]
struct VersionParams {
    name: String,
    version: String,
}

async fn get_version(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<VersionParams>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &p.name).await?;
    let number = version_number(&p.version).map_err(|_| {
        Error::not_found(
            "version_not_found",
            format!(
                "Model Version (name={}, version={}) not found",
                p.name, p.version
            ),
        )
    })?;
    let v = state
        .store
        .get_version(&ModelName::parse("name", &model.name)?, number)
        .await?;
    one_version(&state, &v).await
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
}

async fn create_version(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateVersionBody>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &body.name).await?;
    let name = ModelName::parse("name", &model.name)?;
    let run = match body.run_id.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(run_version(&state, &principal, r).await?),
        None => None,
    };
    // A run of this very model: that run's version is the model version, made ready.
    if let Some(mut v) = run.clone().filter(|v| v.model == model.name) {
        if v.status == VersionStatus::Pending {
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
    if let Some(s) = body.source.filter(|s| !s.is_empty()) {
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
    };
    let registered = state
        .store
        .register_version(&name, new, None, &actor)
        .await?;
    one_version(&state, &registered.version).await
}
