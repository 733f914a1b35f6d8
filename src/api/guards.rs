//! `/api/v1/models/{model}/stages/{stage}/guard`: conditions on the live version's
//! production metrics; when one is breached the registry rolls the stage back by itself
//! (or records it), then holds until a person re-arms it or changes the stage.

use super::Endpoint;
use super::Items;
use super::extract::{Json, ModelPath, StagePath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::guard::{Guard, GuardBody};
use crate::error::Result;
use crate::store::{Actor, StageGuard};
use axum::extract::State;
use axum::http::{Method, StatusCode};

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}/stages/{stage}/guard";
    vec![
        Endpoint::new(Method::PUT, ONE, Scope::Admin, put),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/stages/{stage}/guard/rearm",
            Scope::Promote,
            rearm,
        ),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/guards",
            Scope::Read,
            list,
        ),
    ]
}

async fn put(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    actor: Actor,
    Json(body): Json<GuardBody>,
) -> Result<axum::Json<StageGuard>> {
    let guard = Guard::from_body(body)?;
    let now = state.config.clock.now();
    let stored = state
        .store
        .put_guard(&model, &stage, &guard, &actor, now)
        .await?;
    Ok(axum::Json(stored))
}

async fn get(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
) -> Result<axum::Json<StageGuard>> {
    let now = state.config.clock.now();
    Ok(axum::Json(
        state.store.get_guard(&model, &stage, now).await?,
    ))
}

/// Every guard of a model, by stage name, each with its evaluation now.
async fn list(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<Items<StageGuard>>> {
    let now = state.config.clock.now();
    Ok(axum::Json(Items {
        items: state.store.list_guards(&model, now).await?,
    }))
}

async fn delete(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    actor: Actor,
) -> Result<StatusCode> {
    state.store.delete_guard(&model, &stage, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rearm(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    actor: Actor,
) -> Result<axum::Json<StageGuard>> {
    let now = state.config.clock.now();
    Ok(axum::Json(
        state.store.rearm_guard(&model, &stage, &actor, now).await?,
    ))
}
