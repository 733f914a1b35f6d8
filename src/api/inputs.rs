//! `POST /api/v1/models/{model}/versions/{version}/inputs`: what a pending version was made
//! from (datasets, for now), added in order; the version's detail lists them. Immutable once
//! the version is ready, as its config is. `GET /api/v1/lineage/datasets` reads them the other
//! way: the versions that used a dataset.

use super::Endpoint;
use super::Items;
use super::extract::{Json, Query, VersionPath, page_limit};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::cursor;
use crate::domain::inputs::Input;
use crate::error::{Error, Result};
use crate::store::{Actor, DatasetQuery, DatasetUse, Page};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/versions/{version}/inputs",
            Scope::Write,
            add,
        ),
        Endpoint::new(
            Method::GET,
            "/api/v1/lineage/datasets",
            Scope::Read,
            dataset_users,
        ),
    ]
}

#[derive(Deserialize)]
struct DatasetParams {
    digest: Option<String>,
    name: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The versions that used a dataset, by `digest` or by `name` (exactly one), within the
/// token's models, by model name and newest version first, keyset-paged.
async fn dataset_users(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<DatasetParams>,
) -> Result<axum::Json<Page<DatasetUse>>> {
    let (by_digest, key) = match (p.digest, p.name) {
        (Some(d), None) if !d.is_empty() => (true, d),
        (None, Some(n)) if !n.is_empty() => (false, n),
        _ => {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                "name the dataset by digest or by name (one of them)",
            )
            .with_field("digest"));
        }
    };
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bad = || {
                Error::bad_request("invalid_cursor", "not a cursor of this list")
                    .with_field("cursor")
            };
            let raw = cursor::decode("d", c).map_err(|_| bad())?;
            let (model, version) = raw.rsplit_once(':').ok_or_else(bad)?;
            Some((model.to_owned(), version.parse::<i64>().map_err(|_| bad())?))
        }
    };
    let q = DatasetQuery {
        by_digest,
        key,
        visible: principal.like_patterns(),
        after,
        limit: page_limit(p.limit, &state)?,
    };
    Ok(axum::Json(state.store.dataset_users(&q).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    inputs: Vec<Input>,
}

/// Adds inputs (one already held, the same dataset for the same use, is not added twice);
/// answers all the version holds.
async fn add(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    principal: Principal,
    Json(body): Json<AddBody>,
) -> Result<axum::Json<Items<Input>>> {
    // A version input the token may not read is answered as absent, as a read of it would be.
    for (i, input) in body.inputs.iter().enumerate() {
        if let Input::Version(v) = input
            && !principal.sees_model(&v.model)
        {
            return Err(Error::model_not_found(&v.model).with_field(format!("inputs[{i}].model")));
        }
    }
    let items = state
        .store
        .add_inputs(&model, version, body.inputs, &actor)
        .await?;
    Ok(axum::Json(Items { items }))
}
