//! `/api/v1/webhooks`: subscriptions to the event log, pushed to a URL, signed; their
//! delivery log, pings and redeliveries. Admin scope; a glob-limited admin sees only the
//! webhooks it made, and their deliveries stay within its globs.

use super::Endpoint;
use super::Items;
use super::extract::{Json, OptionalJson, Query, double_option, page_limit};
use crate::AppState;
use crate::domain::Description;
use crate::domain::access::{Principal, Scope};
use crate::domain::time::{self, Timestamp};
use crate::domain::webhook::{self, WebhookUrl};
use crate::error::{Error, Result};
use crate::store::{
    Delivery, DeliveryQuery, DeliveryStats, NewWebhook, Page, Webhook, WebhookOwner, WebhookPatch,
};
use axum::extract::{RawPathParams, State};
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/webhooks/{id}";
    vec![
        Endpoint::new(Method::POST, "/api/v1/webhooks", Scope::Admin, create),
        Endpoint::new(Method::GET, "/api/v1/webhooks", Scope::Admin, list),
        Endpoint::new(Method::GET, ONE, Scope::Admin, show),
        Endpoint::new(Method::PATCH, ONE, Scope::Admin, update),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
        Endpoint::new(
            Method::POST,
            "/api/v1/webhooks/{id}/rotate-secret",
            Scope::Admin,
            rotate,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/webhooks/{id}/ping",
            Scope::Admin,
            ping,
        ),
        Endpoint::new(
            Method::GET,
            "/api/v1/webhooks/{id}/deliveries",
            Scope::Admin,
            deliveries,
        ),
        Endpoint::new(
            Method::POST,
            "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            Scope::Admin,
            redeliver,
        ),
    ]
    .into_iter()
    .map(Endpoint::confined)
    .collect()
}

/// How long the old secret keeps signing after a rotation.
const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    events: Option<Vec<String>>,
    models: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    webhook: Webhook,
    /// Shown this once.
    secret: String,
}

#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    webhook: Webhook,
    #[serde(flatten)]
    stats: DeliveryStats,
}

#[derive(Serialize)]
struct Rotated {
    secret: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    previous_secret_until: Timestamp,
}

#[derive(Serialize)]
struct Queued {
    delivery_id: i64,
}

#[derive(Deserialize)]
struct DeliveryParams {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Which webhooks the caller sees: all, or (glob-limited) those it made.
fn owner(p: &Principal) -> WebhookOwner {
    match (&p.models, p.actor.token_id) {
        (None, _) => WebhookOwner::Any,
        (Some(_), Some(id)) => WebhookOwner::Token(id),
        (Some(_), None) => WebhookOwner::Token(Uuid::nil()),
    }
}

fn path_id(params: &RawPathParams, name: &str) -> Result<String> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| Error::internal(format!("route has no {name} parameter")))
}

fn webhook_id(params: &RawPathParams) -> Result<Uuid> {
    let raw = path_id(params, "id")?;
    Uuid::try_parse(&raw).map_err(|_| {
        Error::bad_request(
            "invalid_path_parameter",
            format!("{raw:?} is not a webhook id"),
        )
        .with_field("id")
    })
}

/// A URL the registry may call: its form, and where its host name points now.
async fn checked_url(raw: &str, state: &AppState) -> Result<WebhookUrl> {
    let allow = state.config.webhooks.allow_private;
    let url = WebhookUrl::parse(raw, allow)?;
    if !allow {
        crate::webhooks::sender::check_resolution(&url).await?;
    }
    Ok(url)
}

fn description(raw: Option<String>) -> Result<Option<String>> {
    Ok(Description::parse_opt("description", raw)?.map(|d| d.as_str().to_owned()))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, axum::Json<Created>)> {
    let events = webhook::event_patterns(body.events)?;
    let models = webhook::model_patterns(body.models)?;
    let description = description(body.description)?;
    let url = checked_url(&body.url, &state).await?;
    let secret = webhook::new_secret()?;
    let new = NewWebhook {
        id: Uuid::now_v7(),
        url: url.as_str().to_owned(),
        description,
        events,
        models,
        enabled: body.enabled.unwrap_or(true),
        secret: secret.clone(),
        owner_models: principal.models.clone(),
        owner_token_id: principal.actor.token_id,
        owner_limit: state.config.webhooks.max_per_token,
        at: time::now(),
    };
    let webhook = state.store.create_webhook(&new, &principal.actor).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { webhook, secret })))
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<axum::Json<Items<Webhook>>> {
    let items = state.store.list_webhooks(owner(&principal)).await?;
    Ok(axum::Json(Items { items }))
}

async fn show(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<axum::Json<Shown>> {
    let id = webhook_id(&params)?;
    let (webhook, stats) = state.store.webhook(id, owner(&principal)).await?;
    Ok(axum::Json(Shown { webhook, stats }))
}

async fn update(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    Json(body): Json<PatchBody>,
) -> Result<axum::Json<Webhook>> {
    let id = webhook_id(&params)?;
    let url = match &body.url {
        Some(raw) => Some(checked_url(raw, &state).await?.as_str().to_owned()),
        None => None,
    };
    let patch = WebhookPatch {
        url,
        events: body
            .events
            .map(|e| webhook::event_patterns(Some(e)))
            .transpose()?,
        models: body.models.map(webhook::model_patterns).transpose()?,
        description: body.description.map(description).transpose()?,
        enabled: body.enabled,
    };
    let updated = state
        .store
        .update_webhook(id, &patch, owner(&principal), &principal.actor)
        .await?;
    Ok(axum::Json(updated))
}

async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<StatusCode> {
    let id = webhook_id(&params)?;
    state
        .store
        .delete_webhook(id, owner(&principal), &principal.actor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    OptionalJson(_): OptionalJson<Empty>,
) -> Result<axum::Json<Rotated>> {
    let id = webhook_id(&params)?;
    let secret = webhook::new_secret()?;
    let until = time::now() + ROTATION_OVERLAP;
    state
        .store
        .rotate_webhook_secret(id, &secret, until, owner(&principal), &principal.actor)
        .await?;
    Ok(axum::Json(Rotated {
        secret,
        previous_secret_until: until,
    }))
}

/// The body of actions that take none (`{}` or nothing).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn ping(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    OptionalJson(_): OptionalJson<Empty>,
) -> Result<(StatusCode, axum::Json<Queued>)> {
    let id = webhook_id(&params)?;
    let delivery_id = state.store.ping_webhook(id, owner(&principal)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Queued { delivery_id })))
}

async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    Query(p): Query<DeliveryParams>,
) -> Result<axum::Json<Page<Delivery>>> {
    let id = webhook_id(&params)?;
    let status = match p.status.as_deref() {
        None => None,
        Some("pending") => Some("pending"),
        Some("succeeded") => Some("succeeded"),
        Some("failed") => Some("failed"),
        Some(other) => {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                format!("status {other:?}: one of pending, succeeded, failed"),
            )
            .with_field("status"));
        }
    };
    let before = match p.cursor {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            Error::bad_request(
                "invalid_query_parameter",
                format!("cursor {raw:?} is not a delivery id"),
            )
            .with_field("cursor")
        })?),
    };
    let query = DeliveryQuery {
        status,
        before,
        limit: page_limit(p.limit, &state)?,
    };
    let page = state
        .store
        .list_deliveries(id, &query, owner(&principal))
        .await?;
    Ok(axum::Json(page))
}

async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    OptionalJson(_): OptionalJson<Empty>,
) -> Result<(StatusCode, axum::Json<Queued>)> {
    let id = webhook_id(&params)?;
    let raw = path_id(&params, "delivery")?;
    let delivery = raw.parse::<i64>().map_err(|_| {
        Error::bad_request(
            "invalid_path_parameter",
            format!("{raw:?} is not a delivery id"),
        )
        .with_field("delivery")
    })?;
    state
        .store
        .redeliver(id, delivery, owner(&principal))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Queued {
            delivery_id: delivery,
        }),
    ))
}
