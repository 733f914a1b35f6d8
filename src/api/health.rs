//! Liveness and readiness.

use super::Endpoint;
use crate::AppState;
use crate::domain::access::Scope;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/healthz", Scope::Public, healthz),
        Endpoint::new(Method::GET, "/readyz", Scope::Public, readyz),
        Endpoint::new(Method::GET, "/openapi.yaml", Scope::Public, openapi),
        // Request counts by route say what a registry is used for: a token is needed when
        // authentication is on (or scrape a separate MODELREG_METRICS_LISTEN address).
        Endpoint::new(Method::GET, "/metrics", Scope::Read, prometheus),
    ]
}

/// Prometheus text format: requests by route and status, latencies, metric points and artifact
/// bytes, database connections, build info.
pub async fn prometheus(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let pool = state.store.pool_stats();
    metrics::gauge!("modelreg_db_connections", "state" => "in_use")
        .set(pool.size.saturating_sub(pool.idle) as f64);
    metrics::gauge!("modelreg_db_connections", "state" => "idle").set(pool.idle as f64);
    let replicas = state.store.replicas();
    for r in &replicas.replicas {
        let name = r.name.clone();
        metrics::gauge!("modelreg_replica_up", "replica" => name.clone()).set(if r.state == "ok" {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("modelreg_replica_lag_seconds", "replica" => name.clone())
            .set(r.lag_seconds.unwrap_or(f64::NAN));
        metrics::gauge!("modelreg_replica_reads", "replica" => name).set(r.reads as f64);
    }
    if !replicas.replicas.is_empty() {
        metrics::gauge!("modelreg_replica_reads_on_primary").set(replicas.primary_reads as f64);
    }
    if let Some(u) = state.usage.totals(&state).await {
        metrics::gauge!("modelreg_storage_bytes", "kind" => "artifacts")
            .set(u.artifacts.bytes as f64);
        metrics::gauge!("modelreg_storage_bytes", "kind" => "logged_model_files")
            .set(u.logged_model_files.bytes as f64);
        metrics::gauge!("modelreg_storage_bytes", "kind" => "metrics").set(u.metrics.bytes as f64);
        metrics::gauge!("modelreg_metric_points_stored").set(u.metrics.points as f64);
        for (status, n) in &u.versions {
            if status != "total" {
                metrics::gauge!("modelreg_versions", "status" => status.clone()).set(*n as f64);
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::prometheus().render(),
    )
}

/// The contract this server implements (kept equal to the router by a test).
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../openapi.yaml"),
    )
}

/// The process is up and serving.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database and the artifact store answer within a second; 503 naming the
/// failing check otherwise.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let limit = Duration::from_secs(1);
    let (db, blobs) = tokio::join!(
        tokio::time::timeout(limit, state.store.ping()),
        tokio::time::timeout(limit, state.blobs.ping()),
    );
    let database = check("database", db);
    let artifacts = check("artifact store", blobs);
    let ready = database == "ok" && artifacts == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"database": database, "artifacts": artifacts},
    });
    // Replicas never make the server unready: reads fall back to the primary. Shown in
    // the configured order, without their addresses (this answer is public; /metrics names
    // them).
    let replicas = state.store.replicas();
    if !replicas.replicas.is_empty() {
        body["replicas"] = replicas
            .replicas
            .iter()
            .map(|r| json!({"state": r.state, "lag_seconds": r.lag_seconds, "reads": r.reads}))
            .collect();
        body["replica_reads_on_primary"] = json!(replicas.primary_reads);
    }
    (status, Json(body))
}

fn check(
    what: &str,
    outcome: Result<crate::error::Result<()>, tokio::time::error::Elapsed>,
) -> &'static str {
    match outcome {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness: {what} check failed");
            "unavailable"
        }
        Err(_) => "timeout",
    }
}
