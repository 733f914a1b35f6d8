//! `/api/v1/tokens`: create (the secret is shown once), list (never the secret), revoke.

use super::Endpoint;
use super::Items;
use super::extract::Json;
use crate::AppState;
use crate::domain::access::{Glob, Principal, Scope};
use crate::domain::time::Timestamp;
use crate::domain::token::{TokenRequest, issue};
use crate::error::{Error, Result};
use crate::store::{Actor, TokenRecord};
use axum::extract::{RawPathParams, State};
use axum::http::{Method, StatusCode};
use serde::Serialize;
use uuid::Uuid;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::POST, "/api/v1/tokens", Scope::Admin, create),
        Endpoint::new(Method::GET, "/api/v1/tokens", Scope::Admin, list),
        Endpoint::new(Method::DELETE, "/api/v1/tokens/{id}", Scope::Admin, revoke),
        Endpoint::new(Method::GET, "/api/v1/whoami", Scope::Authenticated, whoami),
    ]
}

/// A token as listed: everything but the secret.
#[derive(Serialize)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    /// Who holds it.
    pub subject: String,
    pub scopes: Vec<Scope>,
    pub models: Option<Vec<Glob>>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    pub created_by: String,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            subject: t.subject,
            scopes: t.scopes,
            models: t.models,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            created_at: t.created_at,
            created_by: t.created_by,
        }
    }
}

/// The answer to a create: the token itself, once.
#[derive(Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(body): Json<TokenRequest>,
) -> Result<(StatusCode, axum::Json<Created>)> {
    let (record, token) = issue(body, &actor)?;
    state.store.create_token(&record, &actor).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            view: record.into(),
            token,
        }),
    ))
}

async fn list(State(state): State<AppState>) -> Result<axum::Json<Items<TokenView>>> {
    let items = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(axum::Json(Items { items }))
}

/// The caller: what a client (the web UI) needs to know to show only what the token may do.
#[derive(Serialize)]
struct WhoAmI {
    name: String,
    /// Who holds the token.
    subject: String,
    /// `null` while authentication is off (the anonymous caller has no token).
    token_id: Option<Uuid>,
    scopes: Vec<Scope>,
    /// Model-name globs the token is limited to; `null`: every model.
    models: Option<Vec<Glob>>,
    /// Whether the server requires tokens at all.
    auth_required: bool,
}

async fn whoami(State(state): State<AppState>, principal: Principal) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        subject: principal.actor.subject,
        name: principal.actor.name,
        token_id: principal.actor.token_id,
        scopes: principal.scopes,
        models: principal.models,
        auth_required: state.config.auth == crate::config::AuthMode::Required,
    })
}

async fn revoke(
    State(state): State<AppState>,
    params: RawPathParams,
    actor: Actor,
) -> Result<StatusCode> {
    let raw = params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let id = Uuid::try_parse(raw).map_err(|_| {
        Error::bad_request(
            "invalid_path_parameter",
            format!("{raw:?} is not a token id"),
        )
        .with_field("id")
    })?;
    state.store.revoke_token(id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
