//! `/api/v1/models/{model}/card` and `…/versions/{version}/card`: what a model is for, who
//! owns it, its license, where it fails, and a markdown readme; a version's card adds its own
//! fields over its model's. PUT replaces the card, PATCH sets the fields given (`null`
//! removes one); GET answers `{card, effective?, updated_at?, updated_by?}`.

use super::Endpoint;
use super::extract::{Json, ModelPath, VersionPath};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::access::Scope;
use crate::domain::card::Card;
use crate::error::{Error, Result};
use crate::store::{Actor, CardChange, CardOf, CardView};
use axum::extract::State;
use axum::http::Method;
use serde_json::Value;

const MODEL: &str = "/api/v1/models/{model}/card";
const VERSION: &str = "/api/v1/models/{model}/versions/{version}/card";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, MODEL, Scope::Read, get_model),
        Endpoint::new(Method::PUT, MODEL, Scope::Write, put_model),
        Endpoint::new(Method::PATCH, MODEL, Scope::Write, patch_model),
        Endpoint::new(Method::GET, VERSION, Scope::Read, get_version),
        Endpoint::new(Method::PUT, VERSION, Scope::Write, put_version),
        Endpoint::new(Method::PATCH, VERSION, Scope::Write, patch_version),
    ]
}

fn replace(body: Value) -> Result<CardChange> {
    Card::parse(body).map(CardChange::Replace)
}

fn patch(body: Value) -> Result<CardChange> {
    match body {
        Value::Object(fields) => Ok(CardChange::Patch(fields)),
        _ => Err(Error::validation(
            "card",
            "a card patch is an object of the fields to set (null removes one)",
        )),
    }
}

async fn get_model(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<CardView>> {
    Ok(axum::Json(
        state.store.get_card(&model, CardOf::Model).await?,
    ))
}

async fn get_version(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<CardView>> {
    let of = CardOf::Version(version);
    Ok(axum::Json(state.store.get_card(&model, of).await?))
}

async fn set(
    state: &AppState,
    model: &ModelName,
    of: CardOf,
    change: CardChange,
    actor: &Actor,
) -> Result<axum::Json<CardView>> {
    Ok(axum::Json(
        state.store.set_card(model, of, change, actor).await?,
    ))
}

async fn put_model(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    actor: Actor,
    Json(body): Json<Value>,
) -> Result<axum::Json<CardView>> {
    set(&state, &model, CardOf::Model, replace(body)?, &actor).await
}

async fn patch_model(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    actor: Actor,
    Json(body): Json<Value>,
) -> Result<axum::Json<CardView>> {
    set(&state, &model, CardOf::Model, patch(body)?, &actor).await
}

async fn put_version(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<Value>,
) -> Result<axum::Json<CardView>> {
    set(
        &state,
        &model,
        CardOf::Version(version),
        replace(body)?,
        &actor,
    )
    .await
}

async fn patch_version(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<Value>,
) -> Result<axum::Json<CardView>> {
    set(
        &state,
        &model,
        CardOf::Version(version),
        patch(body)?,
        &actor,
    )
    .await
}
