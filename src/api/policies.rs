//! `/api/v1/models/{model}/stages/{stage}/policy`: what every promote onto a stage must pass.

use super::Endpoint;
use super::Items;
use super::extract::{Json, ModelPath, StagePath};
use crate::AppState;
use crate::domain::StageName;
use crate::domain::access::Scope;
use crate::domain::policy::{NoRegression, Policy, SchemaCompatible, SignedBy};
use crate::error::{Error, Result};
use crate::store::{Actor, StagePolicy};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}/stages/{stage}/policy";
    vec![
        Endpoint::new(Method::PUT, ONE, Scope::Admin, put),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/policies",
            Scope::Read,
            list,
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    require: Option<String>,
    #[serde(default)]
    no_regression: Vec<NoRegression>,
    after_stage: Option<String>,
    min_soak: Option<String>,
    #[serde(default)]
    approvals: i64,
    /// `true` or `{"with_stage": "…"}`.
    schema_compatible: Option<serde_json::Value>,
    /// `["key", …]` or `{"keys": […], "path": "model/"}`.
    signed_by: Option<serde_json::Value>,
}

async fn put(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    actor: Actor,
    Json(body): Json<PolicyBody>,
) -> Result<axum::Json<StagePolicy>> {
    let after_stage = body
        .after_stage
        .map(|s| StageName::parse("after_stage", &s))
        .transpose()?;
    let policy = Policy::new(
        body.require,
        body.no_regression,
        after_stage,
        body.min_soak.as_deref(),
        body.approvals,
    )?
    .with_schema_compatible(SchemaCompatible::parse(body.schema_compatible)?)
    .with_signed_by(SignedBy::parse(body.signed_by)?);
    if let Some(rule) = &policy.signed_by {
        known_keys(&state, &rule.keys).await?;
    }
    let stored = state
        .store
        .put_policy(&model, &stage, &policy, &actor)
        .await?;
    Ok(axum::Json(stored))
}

/// A `signed_by` naming a key nobody trusts could never pass: refused (422) so that a typo
/// does not lock the stage. A key removed later fails the check instead, saying so.
async fn known_keys(state: &AppState, keys: &[String]) -> Result<()> {
    for (i, name) in keys.iter().enumerate() {
        match state.store.get_trusted_key(name).await {
            Ok(_) => {}
            Err(e) if e.code == "key_not_found" => {
                return Err(Error::validation(
                    format!("signed_by.keys[{i}]"),
                    format!(
                        "no trusted key named {name:?}: add it with PUT /api/v1/trust/keys/{name} first"
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every stage policy of a model, by stage name.
async fn list(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<Items<StagePolicy>>> {
    Ok(axum::Json(Items {
        items: state.store.list_policies(&model).await?,
    }))
}

async fn get(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
) -> Result<axum::Json<StagePolicy>> {
    Ok(axum::Json(state.store.get_policy(&model, &stage).await?))
}

async fn delete(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    actor: Actor,
) -> Result<StatusCode> {
    state.store.delete_policy(&model, &stage, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
