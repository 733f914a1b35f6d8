//! Liveness and readiness.

use super::Endpoint;
use crate::AppState;
use crate::auth::Scope;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/healthz", Scope::Public, healthz),
        Endpoint::new(Method::GET, "/readyz", Scope::Public, readyz),
    ]
}

/// The process is up and serving.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers within a second; 503 with the failing check otherwise.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness: database check failed");
            "unavailable"
        }
        Err(_) => "timeout",
    };
    let ready = database == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"database": database},
    });
    (status, Json(body))
}
