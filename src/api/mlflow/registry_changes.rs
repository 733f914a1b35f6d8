//! MLflow registered models beyond create and get: search, update, rename, delete and tags,
//! each through the native model flows (recorded as `model.updated` / `model.deleted`).
//! A model's name is its identity in modelreg (stages, token globs, webhooks and URLs name
//! it), so `rename` is refused with a clear message; `delete` removes a model only while it
//! has no versions, as the native API does.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::experiment_search::find_models;
use super::registry::{registered, registered_json, registered_page};
use super::{Empty, KeyValue, SearchParams, names};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::change::Patch;
use crate::domain::{Description, ModelName, TagPatch};
use crate::error::Result;
use crate::store::{Actor, Model};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn endpoints() -> Vec<Endpoint> {
    const SEARCH: &str = "/api/2.0/mlflow/registered-models/search";
    const UPDATE: &str = "/api/2.0/mlflow/registered-models/update";
    const RENAME: &str = "/api/2.0/mlflow/registered-models/rename";
    const DELETE: &str = "/api/2.0/mlflow/registered-models/delete";
    const SET_TAG: &str = "/api/2.0/mlflow/registered-models/set-tag";
    const DELETE_TAG: &str = "/api/2.0/mlflow/registered-models/delete-tag";
    vec![
        Endpoint::new(Method::GET, SEARCH, Scope::Read, search).confined(),
        Endpoint::new(Method::PATCH, UPDATE, Scope::Write, update).confined(),
        Endpoint::new(Method::POST, RENAME, Scope::Write, rename).confined(),
        Endpoint::new(Method::DELETE, DELETE, Scope::Admin, delete).confined(),
        Endpoint::new(Method::POST, SET_TAG, Scope::Write, set_tag).confined(),
        Endpoint::new(Method::DELETE, DELETE_TAG, Scope::Write, delete_tag).confined(),
    ]
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<SearchParams>,
) -> Result<axum::Json<Value>> {
    let (models, next) = find_models(
        &state,
        &principal,
        p.filter.as_deref(),
        p.max_results,
        p.page_token.as_deref(),
        &p.order_by,
    )
    .await?;
    let found = registered_page(&state, &models).await?;
    let mut answer = json!({ "registered_models": found });
    if let Some(token) = next {
        answer["next_page_token"] = Value::String(token);
    }
    Ok(axum::Json(answer))
}

async fn patch_model(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    name: &str,
    patch: Patch,
) -> Result<Model> {
    let model = registered(state, principal, name).await?;
    state
        .store
        .update_model(&ModelName::parse("name", &model.name)?, patch, actor)
        .await
}

#[derive(Deserialize)]
struct UpdateBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<UpdateBody>,
) -> Result<axum::Json<Value>> {
    let description = match body.description {
        // MLflow clears a description by setting it empty.
        Some(d) => Some(Description::parse_opt(
            "description",
            Some(d).filter(|d| !d.is_empty()),
        )?),
        None => None,
    };
    let patch = Patch {
        description,
        tags: TagPatch::default(),
    };
    let model = patch_model(&state, &principal, &actor, &body.name, patch).await?;
    Ok(axum::Json(
        json!({ "registered_model": registered_json(&state, &model).await? }),
    ))
}

#[derive(Deserialize)]
struct RenameBody {
    name: String,
    #[serde(default)]
    new_name: Option<String>,
}

/// Renames a registered model whose MLflow name is not a model name (see `names::rename`);
/// a model name is a native identity and is not renamed.
async fn rename(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<RenameBody>,
) -> Result<axum::Json<Value>> {
    let model = registered(&state, &principal, &body.name).await?;
    let new_name = body.new_name.unwrap_or_default();
    let model = names::rename(&state, &actor, &model, &new_name).await?;
    Ok(axum::Json(
        json!({ "registered_model": registered_json(&state, &model).await? }),
    ))
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<NameBody>,
) -> Result<axum::Json<Empty>> {
    let model = registered(&state, &principal, &body.name).await?;
    state
        .store
        .delete_model(&ModelName::parse("name", &model.name)?, &actor)
        .await?;
    Ok(axum::Json(Empty {}))
}

async fn retag(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    name: &str,
    key: String,
    value: Option<String>,
) -> Result<axum::Json<Empty>> {
    names::check_tag_key(&key)?;
    let model = registered(state, principal, name).await?;
    names::set_tag(state, actor, &model, &key, value).await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct TagBody {
    name: String,
    #[serde(flatten)]
    tag: KeyValue,
}

async fn set_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagBody>,
) -> Result<axum::Json<Empty>> {
    let KeyValue { key, value } = body.tag;
    retag(&state, &principal, &actor, &body.name, key, Some(value)).await
}

#[derive(Deserialize)]
struct TagKeyBody {
    name: String,
    key: String,
}

async fn delete_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagKeyBody>,
) -> Result<axum::Json<Empty>> {
    retag(&state, &principal, &actor, &body.name, body.key, None).await
}
