//! `/api/v1/models/{model}/retention`: which versions a model keeps and what happens to the
//! rest (archived, erased, failed by age), applied by a background job; the preview shows
//! what it would do now, and why, without doing it. `/api/v1/models/{model}/usage` and
//! `/api/v1/usage`: what the models store.

use super::Endpoint;
use super::extract::{Json, ModelPath, OptionalJson};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::retention::{Retention, RetentionBody};
use crate::error::Result;
use crate::store::{Actor, ModelUsage, Preview, RetentionView, Usage, UsageReport};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}/retention";
    vec![
        Endpoint::new(Method::PUT, ONE, Scope::Admin, put),
        Endpoint::new(Method::GET, ONE, Scope::Read, get),
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/retention/preview",
            Scope::Read,
            preview,
        ),
        Endpoint::new(Method::DELETE, ONE, Scope::Admin, delete),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/usage",
            Scope::Read,
            model_usage,
        ),
        Endpoint::new(Method::GET, "/api/v1/usage", Scope::Read, usage),
    ]
}

async fn put(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    actor: Actor,
    Json(body): Json<RetentionBody>,
) -> Result<axum::Json<RetentionView>> {
    let policy = Retention::from_body(&body)?;
    let now = state.config.clock.now();
    Ok(axum::Json(
        state
            .store
            .put_retention(&model, &policy, &actor, now)
            .await?,
    ))
}

async fn get(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<RetentionView>> {
    Ok(axum::Json(state.store.get_retention(&model).await?))
}

async fn delete(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    actor: Actor,
) -> Result<StatusCode> {
    state.store.delete_retention(&model, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The stored policy's plan, or that of the policy in the body (not saved: a policy can be
/// tried before it is put).
async fn preview(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    OptionalJson(body): OptionalJson<Option<RetentionBody>>,
) -> Result<axum::Json<Preview>> {
    let proposed = body.as_ref().map(Retention::from_body).transpose()?;
    let now = state.config.clock.now();
    Ok(axum::Json(
        state
            .store
            .preview_retention(&model, proposed.as_ref(), now)
            .await?,
    ))
}

async fn model_usage(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
) -> Result<axum::Json<ModelUsage>> {
    Ok(axum::Json(state.store.model_usage(&model).await?))
}

/// A token limited to some models sees those only, and their totals.
async fn usage(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<axum::Json<UsageReport>> {
    let report = state.store.usage().await?;
    Ok(axum::Json(report.only(|m| principal.sees_model(m))))
}

/// The totals `/metrics` shows, read at most once a minute (they are sums over every row).
#[derive(Default)]
pub struct UsageCache(Mutex<Option<(Instant, Usage)>>);

const FRESH: Duration = Duration::from_secs(60);

impl UsageCache {
    /// The totals, read again when older than a minute; `None` when they cannot be read.
    pub async fn totals(&self, state: &AppState) -> Option<Usage> {
        let mut cached = self.0.lock().await;
        if let Some((at, usage)) = cached.as_ref()
            && at.elapsed() < FRESH
        {
            return Some(usage.clone());
        }
        match state.store.usage().await {
            Ok(report) => {
                *cached = Some((Instant::now(), report.totals.clone()));
                Some(report.totals)
            }
            Err(e) => {
                tracing::warn!(error = %e, "storage totals could not be read for /metrics");
                cached.as_ref().map(|(_, u)| u.clone())
            }
        }
    }
}
