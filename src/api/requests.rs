//! `/api/v1/models/{model}/promotion-requests`: promotes waiting for approvals, and the
//! approvals, rejections and cancellations that decide them.

use super::Endpoint;
use super::Items;
use super::extract::{ModelPath, OptionalJson, Query, RequestPath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::error::{Error, Result};
use crate::store::{Actor, Decision, PromotionRequest};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &str = "/api/v1/models/{model}/promotion-requests";
    const ONE: &str = "/api/v1/models/{model}/promotion-requests/{id}";
    vec![
        Endpoint::new(Method::GET, LIST, Scope::Read, list),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/promotion-requests/{id}/approve",
            Scope::Promote,
            approve,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/promotion-requests/{id}/reject",
            Scope::Promote,
            reject,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/promotion-requests/{id}/cancel",
            Scope::Promote,
            cancel,
        ),
    ]
}

const STATUSES: [&str; 5] = ["pending", "approved", "rejected", "cancelled", "expired"];
/// Most requests one list answers (newest first).
const LIST_LIMIT: u32 = 500;
/// Longest comment kept with a decision, in bytes.
const MAX_COMMENT: usize = 10_000;

#[derive(Deserialize)]
struct ListParams {
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Items<PromotionRequest>>> {
    if let Some(s) = &p.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("status {s:?} is not one of {}", STATUSES.join(", ")),
        )
        .with_field("status"));
    }
    let items = state
        .store
        .list_requests(&model, p.status.as_deref(), LIST_LIMIT, &state.config.clock)
        .await?;
    Ok(axum::Json(Items { items }))
}

async fn get(
    State(state): State<AppState>,
    RequestPath(model, id): RequestPath,
) -> Result<axum::Json<PromotionRequest>> {
    Ok(axum::Json(
        state
            .store
            .get_request(&model, id, &state.config.clock)
            .await?,
    ))
}

async fn decide(
    state: &AppState,
    RequestPath(model, id): RequestPath,
    actor: &Actor,
    decision: Decision,
    body: DecisionBody,
) -> Result<axum::Json<PromotionRequest>> {
    if body.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(Error::validation(
            "comment",
            format!("a comment is at most {MAX_COMMENT} bytes"),
        ));
    }
    let r = state
        .store
        .decide_request(
            &model,
            id,
            decision,
            body.comment.as_deref(),
            actor,
            &state.config.clock,
        )
        .await?;
    Ok(axum::Json(r))
}

async fn approve(
    State(state): State<AppState>,
    path: RequestPath,
    actor: Actor,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<axum::Json<PromotionRequest>> {
    decide(&state, path, &actor, Decision::Approve, body).await
}

async fn reject(
    State(state): State<AppState>,
    path: RequestPath,
    actor: Actor,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<axum::Json<PromotionRequest>> {
    decide(&state, path, &actor, Decision::Reject, body).await
}

async fn cancel(
    State(state): State<AppState>,
    path: RequestPath,
    actor: Actor,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<axum::Json<PromotionRequest>> {
    decide(&state, path, &actor, Decision::Cancel, body).await
}
