//! `DELETE /api/v1/models/{model}/versions/{version}`: erase a version. Everything of it
//! goes but a tombstone (its number, who, when, why); its artifacts' objects are deleted
//! after the commit, and retried in the background when the store cannot be reached then.

use super::Endpoint;
use super::extract::{Query, VersionPath};
use crate::AppState;
use crate::domain::Reason;
use crate::domain::access::Scope;
use crate::error::Result;
use crate::store::{Actor, Version};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::DELETE,
        "/api/v1/models/{model}/versions/{version}",
        Scope::Admin,
        erase,
    )]
}

#[derive(Deserialize)]
struct EraseParams {
    reason: Option<String>,
}

async fn erase(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Query(p): Query<EraseParams>,
) -> Result<axum::Json<Version>> {
    let reason = Reason::parse_opt("reason", p.reason)?;
    let erased = state
        .store
        .erase_version(&model, version, reason, &actor)
        .await?;
    if !erased.objects.is_empty() {
        crate::gc::delete_erased(state.store.as_ref(), &state.blobs, erased.objects).await;
    }
    Ok(axum::Json(erased.version))
}
