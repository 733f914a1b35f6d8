//! `POST /api/v1/models/{model}/versions/{version}/inputs`: what a pending version was made
//! from (datasets, for now), added in order; the version's detail lists them. Immutable once
//! the version is ready, as its config is.

use super::Endpoint;
use super::extract::{Json, VersionPath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::inputs::Input;
use crate::error::Result;
use crate::store::Actor;
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::POST,
        "/api/v1/models/{model}/versions/{version}/inputs",
        Scope::Write,
        add,
    )]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    inputs: Vec<Input>,
}

#[derive(Serialize)]
struct Items {
    items: Vec<Input>,
}

/// Adds inputs (one already held, the same dataset for the same use, is not added twice);
/// answers all the version holds.
async fn add(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<AddBody>,
) -> Result<axum::Json<Items>> {
    let items = state
        .store
        .add_inputs(&model, version, body.inputs, &actor)
        .await?;
    Ok(axum::Json(Items { items }))
}
