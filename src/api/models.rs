//! `/api/v1/models`: create, put, list, get, patch, delete.

use super::Endpoint;
use super::extract::{Json, ModelPath, Query, double_option, page_limit, query_error};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::{Description, ModelName, TagFilter, TagPatch, Tags, cursor};
use crate::error::{Error, Kind, Result};
use crate::store::{Actor, Model, ModelQuery, NewModel, Page, Patch, PutModel};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use std::collections::BTreeMap;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}";
    vec![
        Endpoint::new(Method::POST, "/api/v1/models", Scope::Write, create),
        Endpoint::new(Method::GET, "/api/v1/models", Scope::Read, list),
        Endpoint::new(Method::PUT, ONE, Scope::Write, put),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(Method::PATCH, ONE, Scope::Write, patch),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

/// Shared by models and versions: `{description?, tags?}` where `null` clears or deletes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<String>>,
    tags: Option<BTreeMap<String, Option<String>>>,
}

impl PatchBody {
    pub(crate) fn into_patch(self) -> Result<Patch> {
        let description = match self.description {
            Some(d) => Some(Description::parse_opt("description", d)?),
            None => None,
        };
        Ok(Patch {
            description,
            tags: TagPatch::parse("tags", self.tags.unwrap_or_default())?,
        })
    }
}

#[derive(Deserialize)]
struct ListParams {
    q: Option<String>,
    #[serde(default)]
    tag: Vec<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn location(model: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/models/{model}")) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Model>)> {
    let name = ModelName::parse("name", &body.name)?;
    if !principal.sees_model(name.as_str()) {
        return Err(Error::new(
            Kind::Forbidden,
            "model_forbidden",
            format!("this token may not create model '{name}'"),
        )
        .with_field("name"));
    }
    let description = Description::parse_opt("description", body.description)?;
    let tags = Tags::parse("tags", body.tags.unwrap_or_default())?;
    let new = NewModel {
        name,
        description,
        tags,
    };
    let model = state.store.create_model(new, &actor).await?;
    Ok((
        StatusCode::CREATED,
        location(&model.name),
        axum::Json(model),
    ))
}

async fn put(
    State(state): State<AppState>,
    ModelPath(name): ModelPath,
    actor: Actor,
    Json(body): Json<PutBody>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Model>)> {
    let description = Description::parse_opt("description", body.description)?;
    let tags = body.tags.map(|t| Tags::parse("tags", t)).transpose()?;
    let put = PutModel { description, tags };
    let (model, created) = state.store.put_model(&name, put, &actor).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, location(&model.name), axum::Json(model)))
}

async fn get(
    State(state): State<AppState>,
    ModelPath(name): ModelPath,
) -> Result<axum::Json<Model>> {
    Ok(axum::Json(state.store.get_model(&name).await?))
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Page<Model>>> {
    let query = ModelQuery {
        prefix: p.q.filter(|q| !q.is_empty()),
        visible: principal.like_patterns(),
        tags: TagFilter::parse(&p.tag).map_err(query_error)?,
        limit: page_limit(p.limit, &state)?,
        after: p.cursor.map(|c| model_cursor(&c)).transpose()?,
    };
    Ok(axum::Json(state.store.list_models(&query).await?))
}

/// The name a page of models continues after: a cursor that decodes to anything but a model
/// name was not made here.
fn model_cursor(raw: &str) -> Result<String> {
    let name = cursor::decode("m", raw)?;
    ModelName::parse("cursor", &name).map_err(|_| {
        Error::bad_request("invalid_cursor", "cursor is not valid for this list")
            .with_field("cursor")
    })?;
    Ok(name)
}

async fn patch(
    State(state): State<AppState>,
    ModelPath(name): ModelPath,
    actor: Actor,
    Json(body): Json<PatchBody>,
) -> Result<axum::Json<Model>> {
    let patch = body.into_patch()?;
    Ok(axum::Json(
        state.store.update_model(&name, patch, &actor).await?,
    ))
}

#[derive(Deserialize, Default)]
struct DeleteParams {
    /// Erase every version, then delete the model.
    #[serde(default)]
    cascade: bool,
    /// With `cascade`: clear the stages that hold a version first (a reason is required).
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    ModelPath(name): ModelPath,
    actor: Actor,
    Query(p): Query<DeleteParams>,
) -> Result<StatusCode> {
    if !p.cascade {
        if p.force {
            return Err(crate::error::Error::validation(
                "force",
                "force applies to a cascade: delete with cascade=true&force=true",
            ));
        }
        state.store.delete_model(&name, &actor).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let reason = crate::domain::Reason::parse_opt("reason", p.reason)?;
    let objects = state
        .store
        .delete_model_cascade(&name, p.force, reason, &actor)
        .await?;
    if !objects.is_empty() {
        crate::gc::delete_erased(state.store.as_ref(), &state.blobs, objects).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
