//! `/api/v1/models/{model}/versions/{version}/signatures`: OpenSSF model signatures over a
//! ready version's files. A bundle is checked when it is posted (its DSSE signature by a
//! trusted key, its statement's files against the version's artifacts under `path`) and
//! kept as it was posted, so that clients can verify it themselves.

use super::Endpoint;
use super::Items;
use super::extract::{Json, VersionPath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::signature::parse_prefix;
use crate::error::{Error, Result};
use crate::store::{Actor, SignatureView};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    const PATH: &str = "/api/v1/models/{model}/versions/{version}/signatures";
    vec![
        Endpoint::new(Method::POST, PATH, Scope::Write, add),
        Endpoint::new(Method::GET, PATH, Scope::Read, list),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBody {
    bundle: serde_json::Value,
    /// The artifact path prefix the signed directory is: `model/`, or `""` for every
    /// artifact.
    #[serde(default)]
    path: String,
}

/// 201 with the signature recorded; 200 when the same bundle was recorded before.
async fn add(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<SignatureBody>,
) -> Result<(StatusCode, axum::Json<SignatureView>)> {
    if !body.bundle.is_object() {
        return Err(Error::validation(
            "bundle",
            "a Sigstore bundle (a JSON object)",
        ));
    }
    let path = parse_prefix("path", &body.path)?;
    let (view, created) = state
        .store
        .add_signature(&model, version, &body.bundle, &path, &actor)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)))
}

async fn list(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<Items<SignatureView>>> {
    Ok(axum::Json(Items {
        items: state.store.list_signatures(&model, version).await?,
    }))
}
