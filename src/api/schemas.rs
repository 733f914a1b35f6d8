//! `PUT|GET /api/v1/models/{model}/versions/{version}/schema`: what a version accepts and
//! answers, in MLflow's signature model. Set while pending (or read from the version's
//! `MLmodel` file at finalize), immutable once ready.

use super::Endpoint;
use super::extract::{Json, VersionPath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::schema::Schema;
use crate::error::{Error, Result};
use crate::store::{Actor, Artifact};
use axum::extract::State;
use axum::http::Method;
use futures::TryStreamExt;

const PATH: &str = "/api/v1/models/{model}/versions/{version}/schema";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::PUT, PATH, Scope::Write, put),
        Endpoint::new(Method::GET, PATH, Scope::Read, get),
    ]
}

async fn put(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<serde_json::Value>,
) -> Result<axum::Json<Schema>> {
    let schema = Schema::parse("schema", body)?;
    Ok(axum::Json(
        state
            .store
            .set_schema(&model, version, schema, false, &actor)
            .await?,
    ))
}

async fn get(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<Schema>> {
    let detail = state.store.version_detail(&model, version).await?;
    detail.schema.map(axum::Json).ok_or_else(|| {
        Error::not_found(
            "schema_not_found",
            format!("version {version} of '{model}' declares no schema"),
        )
    })
}

/// The largest `MLmodel` file read for its signature.
const MAX_MLMODEL: u64 = 1 << 20;

/// The schema an `MLmodel` file among `artifacts` declares (the one nearest the root), if
/// any. A file that cannot be read as one declares none: the version is finalized all the
/// same, as MLflow's server would, and the warning names the version, not the file's text.
pub async fn from_artifacts(state: &AppState, artifacts: &[Artifact]) -> Result<Option<Schema>> {
    let Some(file) = artifacts
        .iter()
        .filter(|a| a.path == "MLmodel" || a.path.ends_with("/MLmodel"))
        .filter(|a| u64::try_from(a.size).is_ok_and(|s| s <= MAX_MLMODEL))
        .min_by_key(|a| (a.path.matches('/').count(), a.path.clone()))
    else {
        return Ok(None);
    };
    let bytes: Vec<u8> = state
        .blobs
        .get(&file.object_key, None)
        .await?
        .map_err(|e| Error::internal(format!("reading {}: {e}", file.path)))
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| Error::validation("MLmodel", "not UTF-8 text"))
        .and_then(Schema::from_mlmodel);
    match parsed {
        Ok(schema) => Ok(schema),
        Err(e) => {
            tracing::warn!(path = %file.path, code = %e.code, "an MLmodel file's signature could not be read; no schema taken from it");
            Ok(None)
        }
    }
}

/// At finalize: a version without a schema takes the one its `MLmodel` file declares.
pub async fn take_from_mlmodel(
    state: &AppState,
    model: &crate::domain::ModelName,
    version: i64,
    artifacts: &[Artifact],
    actor: &Actor,
) -> Result<()> {
    if let Some(schema) = from_artifacts(state, artifacts).await? {
        state
            .store
            .set_schema(model, version, schema, true, actor)
            .await?;
    }
    Ok(())
}
