//! `/api/v1/models/{model}/stages`: promote, roll back, clear, and what a stage held when.

use super::Endpoint;
use super::Items;
use super::extract::{Json, ModelPath, OptionalJson, Query, StagePath, double_option, page_limit};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::stage::Expected;
use crate::domain::time::Timestamp;
use crate::domain::{Reason, cursor};
use crate::error::{Error, Kind, Result};
use crate::store::{
    Actor, Approval, HistoryEntry, Page, StageChange, StageEntry, StageOp, StageRequest,
};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}/stages/{stage}";
    vec![
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/stages",
            Scope::Read,
            list,
        ),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(Method::DELETE, ONE, Scope::Promote, clear),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/stages/{stage}/promote",
            Scope::Promote,
            promote,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/stages/{stage}/rollback",
            Scope::Promote,
            rollback,
        ),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/stages/{stage}/history",
            Scope::Read,
            history,
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    version: i64,
    reason: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    expected_version: Expected,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
}

/// A promote onto a stage that needs approvals: the request it opened.
#[derive(Serialize)]
struct Requested {
    request_id: uuid::Uuid,
    status: &'static str,
    checks: Vec<crate::domain::policy::Check>,
}

/// A dry run's answer: would the promote pass the stage's policy, and every check.
#[derive(Serialize)]
struct DryRun {
    allowed: bool,
    checks: Vec<crate::domain::policy::Check>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to_version: Option<i64>,
    reason: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    expected_version: Expected,
}

#[derive(Deserialize)]
struct AtParams {
    at: Option<String>,
}

#[derive(Deserialize)]
struct ClearParams {
    reason: Option<String>,
}

#[derive(Deserialize)]
struct HistoryParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

fn check_version(field: &str, v: i64) -> Result<()> {
    if v < 1 {
        return Err(Error::validation(
            field,
            format!("{field} must be a version number from 1"),
        ));
    }
    Ok(())
}

fn check_expected(expected: Expected) -> Result<()> {
    match expected {
        Some(Some(v)) => check_version("expected_version", v),
        _ => Ok(()),
    }
}

/// Parses `?at=` as RFC 3339. A `+` offset sent unencoded arrives as a space; take it back.
fn parse_at(raw: &str) -> Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&raw.replace(' ', "+")))
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            Error::bad_request(
                "invalid_query_parameter",
                format!("at {raw:?} is not an RFC 3339 time such as 2026-01-02T03:04:05Z"),
            )
            .with_field("at")
        })
}

async fn list(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<Items<StageEntry>>> {
    let items = state.store.list_stages(&model).await?;
    Ok(axum::Json(Items { items }))
}

async fn get(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    Query(p): Query<AtParams>,
) -> Result<axum::Json<StageEntry>> {
    let at = p.at.as_deref().map(parse_at).transpose()?;
    Ok(axum::Json(state.store.get_stage(&model, &stage, at).await?))
}

/// Checks what every stage change carries and applies it.
async fn change(
    state: &AppState,
    StagePath(model, stage): StagePath,
    actor: &Actor,
    req: StageRequest,
) -> Result<axum::Json<StageChange>> {
    check_expected(req.expected)?;
    Ok(axum::Json(
        state.store.change_stage(&model, &stage, req, actor).await?,
    ))
}

async fn promote(
    State(state): State<AppState>,
    path: StagePath,
    actor: Actor,
    principal: Principal,
    Json(body): Json<PromoteBody>,
) -> Result<Response> {
    check_version("version", body.version)?;
    let op = StageOp::Promote {
        version: body.version,
    };
    let reason = Reason::parse_opt("reason", body.reason)?;
    if body.force {
        if !principal.allows(Scope::Admin) {
            return Err(Error::new(
                Kind::Forbidden,
                "insufficient_scope",
                "a forced promote needs the admin scope",
            ));
        }
        if reason.is_none() {
            return Err(Error::validation(
                "reason",
                "a forced promote needs a reason, recorded in the stage's history",
            ));
        }
    }
    let req = StageRequest {
        op,
        reason,
        expected: body.expected_version,
        dry_run: body.dry_run,
        force: body.force,
        approval: Some(Approval::Request {
            ttl: state.config.policies.request_ttl,
        }),
        clock: state.config.clock.clone(),
    };
    let dry_run = req.dry_run;
    let axum::Json(change) = change(&state, path, &actor, req).await?;
    if dry_run {
        let checks = change.checks.unwrap_or_default();
        let allowed = checks.iter().all(|c| c.ok);
        return Ok(axum::Json(DryRun { allowed, checks }).into_response());
    }
    if let Some(request_id) = change.request {
        let opened = Requested {
            request_id,
            status: "pending",
            checks: change.checks.unwrap_or_default(),
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(opened)).into_response());
    }
    Ok(axum::Json(change).into_response())
}

async fn rollback(
    State(state): State<AppState>,
    path: StagePath,
    actor: Actor,
    OptionalJson(body): OptionalJson<RollbackBody>,
) -> Result<axum::Json<StageChange>> {
    if let Some(v) = body.to_version {
        check_version("to_version", v)?;
    }
    let op = StageOp::Rollback {
        to: body.to_version,
    };
    let req = StageRequest {
        op,
        reason: Reason::parse_opt("reason", body.reason)?,
        expected: body.expected_version,
        dry_run: false,
        force: false,
        approval: None,
        clock: state.config.clock.clone(),
    };
    change(&state, path, &actor, req).await
}

async fn clear(
    State(state): State<AppState>,
    path: StagePath,
    actor: Actor,
    Query(p): Query<ClearParams>,
) -> Result<axum::Json<StageChange>> {
    let req = StageRequest {
        op: StageOp::Clear,
        reason: Reason::parse_opt("reason", p.reason)?,
        expected: None,
        dry_run: false,
        force: false,
        approval: None,
        clock: state.config.clock.clone(),
    };
    change(&state, path, &actor, req).await
}

async fn history(
    State(state): State<AppState>,
    StagePath(model, stage): StagePath,
    Query(p): Query<HistoryParams>,
) -> Result<axum::Json<Page<HistoryEntry>>> {
    let limit = page_limit(p.limit, &state)?;
    let before = p.cursor.map(|c| cursor::decode_i64("h", &c)).transpose()?;
    Ok(axum::Json(
        state
            .store
            .stage_history(&model, &stage, limit, before)
            .await?,
    ))
}
