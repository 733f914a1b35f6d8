//! `/api/v1/models/{model}/versions`: register, list, get, patch and the lifecycle actions.

use super::Endpoint;
use super::extract::{Json, ModelPath, OptionalJson, Query, VersionPath, page_limit, query_error};
use super::models::PatchBody;
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::document;
use crate::domain::filter::{Filter, OrderBy};
use crate::domain::inputs::{self, Input};
use crate::domain::metrics::check_key;
use crate::domain::{Description, Reason};
use crate::domain::{TagFilter, Tags, Transition, VersionStatus};
use crate::error::{Error, Result};
use crate::store::{Actor, Idempotency, NewVersion, Page, Version, VersionDetail, VersionQuery};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &str = "/api/v1/models/{model}/versions";
    const ONE: &str = "/api/v1/models/{model}/versions/{version}";
    vec![
        Endpoint::new(Method::POST, LIST, Scope::Write, register),
        Endpoint::new(Method::GET, LIST, Scope::Read, list),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(Method::PATCH, ONE, Scope::Write, patch),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/versions/{version}/finalize",
            Scope::Write,
            finalize,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/versions/{version}/fail",
            Scope::Write,
            fail,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/versions/{version}/archive",
            Scope::Write,
            archive,
        ),
    ]
}

/// The register body. Serialized again (maps in key order) to fingerprint it for
/// `Idempotency-Key`: two bodies are the same request when they are equal as JSON values.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    config: Option<Map<String, Value>>,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    source: Option<Map<String, Value>>,
    finalize: Option<bool>,
    /// What the version accepts and answers (`PUT …/schema` takes the same).
    schema: Option<Value>,
    /// What the version was made from, as `POST …/inputs` takes them.
    inputs: Option<Vec<Input>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FailBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ListParams {
    status: Option<String>,
    #[serde(default)]
    tag: Vec<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    filter: Option<String>,
    order_by: Option<String>,
    /// Comma-separated metric keys: each item carries their last values.
    metrics: Option<String>,
}

/// Most metric columns one list may ask for.
const MAX_METRIC_COLUMNS: usize = 20;

/// `?metrics=a,b`: distinct keys in the order given.
fn metric_columns(param: Option<&str>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for key in param.unwrap_or("").split(',').map(str::trim) {
        if key.is_empty() || keys.iter().any(|k| k == key) {
            continue;
        }
        check_key("metrics", key).map_err(query_error)?;
        keys.push(key.to_owned());
    }
    if keys.len() > MAX_METRIC_COLUMNS {
        let detail = format!("at most {MAX_METRIC_COLUMNS} metric keys");
        return Err(query_error(Error::validation("metrics", detail)));
    }
    Ok(keys)
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(raw) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(Error::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 visible ASCII characters",
        )
        .with_field("Idempotency-Key")),
    }
}

fn fingerprint(body: &RegisterBody) -> Result<String> {
    let bytes = serde_json::to_vec(body).map_err(Error::internal)?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

async fn register(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    actor: Actor,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<RegisterBody>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Version>)> {
    let idempotency = match idempotency_key(&headers)? {
        Some(key) => Some(Idempotency {
            key,
            request_hash: fingerprint(&body)?,
        }),
        None => None,
    };
    let description = Description::parse_opt("description", body.description)?;
    for (field, doc) in [("config", &body.config), ("source", &body.source)] {
        if let Some(doc) = doc {
            document::check(field, doc)?;
        }
    }
    let inputs = inputs::to_add(&[], body.inputs.unwrap_or_default())?;
    super::inputs::readable(&principal, &inputs)?;
    let new = NewVersion {
        description,
        tags: Tags::parse("tags", body.tags.unwrap_or_default())?,
        config: body.config.unwrap_or_default(),
        source: body.source.unwrap_or_default(),
        finalize: body.finalize.unwrap_or(false),
        artifacts: Vec::new(),
        inputs,
        copied_from: None,
        schema: body
            .schema
            .map(|s| crate::domain::schema::Schema::parse("schema", s))
            .transpose()?,
    };
    let registered = state
        .store
        .register_version(&model, new, idempotency, &actor)
        .await?;
    let v = registered.version;
    let mut out = HeaderMap::new();
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/api/v1/models/{}/versions/{}",
        v.model, v.version
    )) {
        out.insert(header::LOCATION, loc);
    }
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        out.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
        StatusCode::OK
    };
    Ok((status, out, axum::Json(v)))
}

async fn list(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Page<Version>>> {
    let order = match p.order_by.as_deref() {
        Some(o) => OrderBy::parse(o)?,
        None => OrderBy::newest_first(),
    };
    let query = VersionQuery {
        status: p
            .status
            .map(|s| VersionStatus::parse("status", &s))
            .transpose()
            .map_err(query_error)?,
        tags: TagFilter::parse(&p.tag).map_err(query_error)?,
        filter: p.filter.as_deref().map(Filter::parse).transpose()?,
        after: p.cursor.map(|c| order.decode_cursor(&c)).transpose()?,
        order,
        limit: page_limit(p.limit, &state)?,
        metrics: metric_columns(p.metrics.as_deref())?,
    };
    Ok(axum::Json(state.store.list_versions(&model, &query).await?))
}

async fn get(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<VersionDetail>> {
    Ok(axum::Json(
        state.store.version_detail(&model, version).await?,
    ))
}

async fn patch(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    Json(body): Json<PatchBody>,
) -> Result<axum::Json<Version>> {
    let patch = body.into_patch()?;
    Ok(axum::Json(
        state
            .store
            .update_version(&model, version, patch, &actor)
            .await?,
    ))
}

async fn transition(
    state: &AppState,
    model: crate::domain::ModelName,
    version: i64,
    t: Transition,
    reason: Option<String>,
    actor: &Actor,
) -> Result<axum::Json<Version>> {
    let reason = Reason::parse_opt("reason", reason)?;
    Ok(axum::Json(
        state
            .store
            .transition_version(&model, version, t, reason, actor)
            .await?,
    ))
}

async fn finalize(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
) -> Result<axum::Json<Version>> {
    // Every recorded artifact must be in the store, whole, before the version becomes
    // immutable. An upload recorded after this check was itself verified before its row.
    let artifacts = state.store.list_artifacts(&model, version).await?;
    super::artifacts::check_artifacts_present(&state, &artifacts).await?;
    super::schemas::take_from_mlmodel(&state, &model, version, &artifacts, &actor).await?;
    transition(&state, model, version, Transition::Finalize, None, &actor).await
}

async fn fail(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    OptionalJson(body): OptionalJson<FailBody>,
) -> Result<axum::Json<Version>> {
    transition(
        &state,
        model,
        version,
        Transition::Fail,
        body.reason,
        &actor,
    )
    .await
}

async fn archive(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
) -> Result<axum::Json<Version>> {
    transition(&state, model, version, Transition::Archive, None, &actor).await
}
