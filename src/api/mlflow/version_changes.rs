//! MLflow model versions beyond create and get: search, update, delete, transition-stage and
//! tags, through the native version and stage flows. `transition-stage` to `Staging` or
//! `Production` promotes the version to the modelreg stage `staging` / `production` (policies,
//! history and rollback apply; `archive_existing_versions` is moot, as the stage's previous
//! holder simply stops holding it), to `None` clears those stages where the version holds them,
//! to `Archived` archives it. `delete` archives a ready version and fails a pending one:
//! modelreg never erases a version, so it stays in the history.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::model_versions::{VersionParams, named_version};
use super::registry::{
    PRODUCTION, STAGING, aliases_of, mlflow_stage, model_of_version, model_version, one_version,
    registered, stage_change,
};
use super::run_search::{clause, clauses, text};
use super::runs::{model_of, retag, retire, run_version};
use super::{Empty, KeyValue, SearchParams, names};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::change::Patch;
use crate::domain::filter::Filter;
use crate::domain::order::{OrderBy, SortKey};
use crate::domain::{Description, ModelName, TagFilter, TagPatch, Transition};
use crate::error::{Error, Result};
use crate::store::{Actor, Model, StageOp, Version, VersionQuery};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn endpoints() -> Vec<Endpoint> {
    const SEARCH: &str = "/api/2.0/mlflow/model-versions/search";
    const UPDATE: &str = "/api/2.0/mlflow/model-versions/update";
    const DELETE: &str = "/api/2.0/mlflow/model-versions/delete";
    const TRANSITION: &str = "/api/2.0/mlflow/model-versions/transition-stage";
    const SET_TAG: &str = "/api/2.0/mlflow/model-versions/set-tag";
    const DELETE_TAG: &str = "/api/2.0/mlflow/model-versions/delete-tag";
    vec![
        Endpoint::new(Method::GET, SEARCH, Scope::Read, search).confined(),
        Endpoint::new(Method::PATCH, UPDATE, Scope::Write, update).confined(),
        Endpoint::new(Method::DELETE, DELETE, Scope::Write, delete).confined(),
        Endpoint::new(Method::POST, TRANSITION, Scope::Promote, transition).confined(),
        Endpoint::new(Method::POST, SET_TAG, Scope::Write, set_tag).confined(),
        Endpoint::new(Method::DELETE, DELETE_TAG, Scope::Write, delete_tag).confined(),
    ]
}

/// A model version search: `name = '…'` (with any `tags.k = '…'` / `metrics.k > …` clauses,
/// translated onto the version list's filter), or `run_id = '…'` (the run's own version).
#[derive(Debug, Default, PartialEq)]
struct VersionSearch {
    name: Option<String>,
    run_id: Option<String>,
    filter: Option<Filter>,
}

fn version_search(filter: &str) -> Result<VersionSearch> {
    let mut search = VersionSearch::default();
    let mut rest = Vec::new();
    for raw in clauses(filter)?.into_iter().filter(|c| !c.is_empty()) {
        let attribute = |field: &str| -> Option<String> {
            let (name, value) = raw.split_once('=')?;
            let name = name.trim();
            let name = name.strip_prefix("attributes.").unwrap_or(name);
            (name == field && !value.starts_with('=')).then(|| text(value))?
        };
        if let Some(name) = attribute("name") {
            search.name = Some(name);
        } else if let Some(run) = attribute("run_id") {
            search.run_id = Some(run);
        } else {
            rest.push(clause(&raw)?);
        }
    }
    if search.name.is_none() && search.run_id.is_none() {
        return Err(Error::validation(
            "filter",
            "search model versions by name = '<model>' (optionally with tags.<k> = '<v>' and \
             metrics.<k> <op> <n>) or by run_id = '<run id>'",
        ));
    }
    search.filter = (!rest.is_empty()).then_some(Filter { clauses: rest });
    Ok(search)
}

fn version_order(order_by: &[String]) -> Result<OrderBy> {
    let key_of = |name: &str| match name {
        "version_number" => Some(SortKey::Version),
        "creation_timestamp" => Some(SortKey::CreatedAt),
        _ => None,
    };
    super::order_by(
        order_by,
        key_of,
        "versions can be ordered by version_number or creation_timestamp",
    )
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<SearchParams>,
) -> Result<axum::Json<Value>> {
    let search = version_search(p.filter.as_deref().unwrap_or(""))?;
    let order = version_order(&p.order_by)?;
    let limit = super::page_limit(p.max_results, state.config.max_page_size.min(1000))?;
    let mut found: Vec<Version> = Vec::new();
    let mut next = None;
    // One model's versions at most: its MLflow name and aliases come with it.
    let mut of: Option<Model> = None;
    if let Some(run) = &search.run_id {
        let v = match run_version(&state, &principal, run).await {
            Ok(v) => Some(v),
            Err(e) if e.code == "run_not_found" => None,
            Err(e) => return Err(e),
        };
        if let Some(v) = v {
            let m = model_of_version(&state, &v).await?;
            if search
                .name
                .as_ref()
                .is_none_or(|n| *n == names::mlflow_name(&m))
            {
                found.push(v);
                of = Some(m);
            }
        }
    } else if let Some(name) = &search.name {
        let model = match registered(&state, &principal, name).await {
            Ok(m) => m,
            Err(e) if e.code == "registered_model_not_found" => {
                return Ok(axum::Json(json!({ "model_versions": [] })));
            }
            Err(e) => return Err(e),
        };
        let after = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Some(order.decode_cursor(t)?),
            None => None,
        };
        let query = VersionQuery {
            status: None,
            tags: TagFilter::default(),
            filter: search.filter,
            order,
            after,
            limit,
            metrics: Vec::new(),
        };
        let page = state
            .store
            .list_versions(&ModelName::parse("name", &model.name)?, &query)
            .await?;
        found = page.items;
        next = page.next_cursor;
        of = Some(model);
    }
    let versions: Vec<Value> = match &of {
        Some(m) => found.iter().map(|v| model_version(v, m)).collect(),
        None => Vec::new(),
    };
    let mut answer = json!({ "model_versions": versions });
    if let Some(token) = next {
        answer["next_page_token"] = Value::String(token);
    }
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(flatten)]
    version: VersionParams,
    #[serde(default)]
    description: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<UpdateBody>,
) -> Result<axum::Json<Value>> {
    let v = named_version(&state, &principal, &body.version).await?;
    let description = match body.description {
        Some(d) => Some(Description::parse_opt(
            "description",
            Some(d).filter(|d| !d.is_empty()),
        )?),
        None => None,
    };
    let patch = Patch {
        description,
        tags: TagPatch::default(),
    };
    let v = state
        .store
        .update_version(&model_of(&v)?, v.version, patch, &actor)
        .await?;
    one_version(&state, &v).await
}

async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<VersionParams>,
) -> Result<axum::Json<Empty>> {
    let v = named_version(&state, &principal, &body).await?;
    retire(&state, &actor, &v).await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct TransitionBody {
    #[serde(flatten)]
    version: VersionParams,
    stage: String,
}

async fn transition(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TransitionBody>,
) -> Result<axum::Json<Value>> {
    let stage = mlflow_stage(&body.stage)?;
    let v = named_version(&state, &principal, &body.version).await?;
    let model = v.model.as_str();
    match stage {
        "Production" | "Staging" => {
            let target = if stage == "Production" {
                PRODUCTION
            } else {
                STAGING
            };
            let op = StageOp::Promote { version: v.version };
            stage_change(&state, &principal, &actor, (model, target), op).await?;
        }
        "None" => {
            for held in aliases_of(&state, &v).await? {
                if held == PRODUCTION || held == STAGING {
                    stage_change(&state, &principal, &actor, (model, &held), StageOp::Clear)
                        .await?;
                }
            }
        }
        _ => {
            // Archiving is the native archive, which needs write scope: the route's promote
            // scope covers only the stage moves above.
            crate::auth::authorize(&principal, Scope::Write, Some(model))?;
            state
                .store
                .transition_version(&model_of(&v)?, v.version, Transition::Archive, None, &actor)
                .await?;
        }
    }
    let v = state.store.get_version(&model_of(&v)?, v.version).await?;
    one_version(&state, &v).await
}

#[derive(Deserialize)]
struct TagBody {
    #[serde(flatten)]
    version: VersionParams,
    #[serde(flatten)]
    tag: KeyValue,
}

async fn set_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagBody>,
) -> Result<axum::Json<Empty>> {
    let v = named_version(&state, &principal, &body.version).await?;
    retag(&state, &actor, &v, &body.tag.key, Some(body.tag.value)).await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct TagKeyBody {
    #[serde(flatten)]
    version: VersionParams,
    key: String,
}

async fn delete_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagKeyBody>,
) -> Result<axum::Json<Empty>> {
    let v = named_version(&state, &principal, &body.version).await?;
    retag(&state, &actor, &v, &body.key, None).await?;
    Ok(axum::Json(Empty {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_searches() {
        let s = version_search("name = 'fraud' and tags.team = 'risk'").unwrap();
        assert_eq!(s.name.as_deref(), Some("fraud"));
        assert_eq!(
            s.filter.unwrap().clauses[0].to_string(),
            "tag.team = \"risk\""
        );
        let s = version_search("run_id='0123'").unwrap();
        assert_eq!(s.run_id.as_deref(), Some("0123"));
        assert!(s.filter.is_none());
        assert_eq!(
            version_search("name='a b'").unwrap().name.as_deref(),
            Some("a b")
        );
        for bad in [
            "",
            "tags.team = 'risk'",
            "name = fraud",
            "name == 'x' and foo",
        ] {
            assert!(version_search(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_orders() {
        let o = |s: &str| version_order(&[s.to_owned()]).map(|o| o.canonical());
        assert_eq!(o("version_number DESC").unwrap(), "version:desc");
        assert_eq!(o("creation_timestamp").unwrap(), "created_at:asc");
        assert!(o("name").is_err());
    }
}
