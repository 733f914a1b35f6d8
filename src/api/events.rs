//! `/api/v1/events`: the audit log, oldest first.

use super::Endpoint;
use super::extract::{Query, page_limit, query_error};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::access::{Principal, Scope};
use crate::error::{Error, Result};
use crate::store::{Event, EventQuery, Page};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::GET,
        "/api/v1/events",
        Scope::Read,
        list,
    )]
}

#[derive(Deserialize)]
struct ListParams {
    model: Option<String>,
    action: Option<String>,
    /// Event id to continue after; `cursor` (the `next_cursor` of a page) means the same.
    after: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    /// The newest events: where a feed starts before it follows with `after`.
    #[serde(default)]
    newest: bool,
}

/// Actions are lower-case words joined by dots (`stage.promoted`, `version.created`).
pub(super) fn is_action(a: &str) -> bool {
    (1..=64).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_'))
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Page<Event>>> {
    let after = match p.after.or(p.cursor) {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            Error::bad_request(
                "invalid_query_parameter",
                format!("after {raw:?} is not an event id"),
            )
            .with_field("after")
        })?),
    };
    let model = p
        .model
        .map(|m| ModelName::parse("model", &m).map_err(query_error))
        .transpose()?;
    if let Some(a) = &p.action
        && !is_action(a)
    {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("action {a:?} is not an event action such as stage.promoted"),
        )
        .with_field("action"));
    }
    let query = EventQuery {
        visible: principal.like_patterns(),
        model: model.map(|m| m.as_str().to_owned()),
        action: p.action,
        after,
        limit: page_limit(p.limit, &state)?,
        newest: p.newest,
    };
    Ok(axum::Json(state.store.list_events(&query).await?))
}
