//! `DELETE /api/v1/models/{model}/versions/{version}`: erase a version. Everything of it
//! goes but a tombstone (its number, who, when, why); its artifacts' objects are deleted
//! after the commit, and retried in the background when the store cannot be reached then.

use super::Endpoint;
use super::extract::{Query, VersionPath};
use crate::AppState;
use crate::blob::BlobStore;
use crate::domain::Reason;
use crate::domain::access::Scope;
use crate::error::Result;
use crate::store::{Actor, Store, Version};
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
        delete_objects(state.store.as_ref(), &state.blobs, erased.objects).await;
    }
    Ok(axum::Json(erased.version))
}

/// Deletes objects of erased artifacts and forgets those deleted; what the store refuses now
/// stays queued for the background retry ([`retry`]).
pub async fn delete_objects(store: &dyn Store, blobs: &BlobStore, keys: Vec<String>) -> usize {
    let mut gone = Vec::with_capacity(keys.len());
    for key in keys {
        match blobs.delete(&key).await {
            Ok(()) => gone.push(key),
            Err(e) => {
                tracing::warn!(code = %e.code, "an erased artifact's object could not be deleted yet; retried later");
            }
        }
    }
    let n = gone.len();
    if let Err(e) = store.forget_object_deletions(&gone).await {
        tracing::warn!(code = %e.code, "deleted objects could not be unqueued; deleted again later");
    }
    n
}

/// One retry pass over the queued deletions (at most `limit`); how many went.
pub async fn retry(store: &dyn Store, blobs: &BlobStore, limit: u32) -> Result<usize> {
    let keys = store.queued_object_deletions(limit).await?;
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(delete_objects(store, blobs, keys).await)
}
