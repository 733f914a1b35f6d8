//! MLflow 3's logged models are not kept by modelreg (a run's model files are its artifacts,
//! and registering them makes a version). Their search is answered, truthfully empty, because
//! MLflow's client asks it whenever it lists a run's artifacts, to add the files of a logged
//! model of the run; the experiments searched must exist, as on MLflow's server.

use super::super::Endpoint;
use super::super::extract::Json;
use super::experiments::model_by_id;
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::error::Result;
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    const SEARCH: &str = "/api/2.0/mlflow/logged-models/search";
    vec![Endpoint::new(Method::POST, SEARCH, Scope::Read, search).confined()]
}

#[derive(Deserialize)]
struct SearchBody {
    #[serde(default)]
    experiment_ids: Vec<String>,
}

#[derive(Serialize)]
struct Found {
    models: Vec<serde_json::Value>,
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> Result<axum::Json<Found>> {
    for id in &body.experiment_ids {
        model_by_id(&state, &principal, id).await?;
    }
    Ok(axum::Json(Found { models: Vec::new() }))
}
