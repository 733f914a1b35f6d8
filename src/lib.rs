//! modelreg: a model registry service. `app` builds the router from an [`AppState`];
//! `serve` runs it on a listener until the shutdown future resolves.
//!
//! Layers, each knowing only those below it:
//! - [`api`]: HTTP. Extracts and validates requests into domain types, calls the store,
//!   renders answers and errors (`api::problem`). [`auth`] is its per-route guard.
//! - [`store`]: persistence. Each flow once, over either database (`store::sql::Conn`).
//! - [`blob`]: artifact bytes in an object store.
//! - [`domain`]: the registry's rules, pure; [`error`] is the error type every layer speaks.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod blob;
pub mod client;
pub mod clock;
pub mod compactor;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod gc;
pub mod guards;
pub mod retention;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod verify;
pub mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use config::Config;
use error::{Error, Kind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::CompressionLevel;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: blob::BlobStore,
    pub config: Arc<Config>,
    /// The event tail that `GET /api/v1/events/stream` reads from.
    pub events: Arc<api::event_stream::EventHub>,
    /// The storage totals `/metrics` shows.
    pub usage: Arc<api::retention::UsageCache>,
    /// Each caller's last write position, for reads from replicas.
    pub positions: Arc<api::consistency::Positions>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    telemetry::prometheus();
    let body_limit = state.config.body_limit;
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("-", |p| p.as_str())
                .to_owned();
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("request", method = %req.method(), route, request_id)
        })
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(LatencyUnit::Micros),
        );
    let mut routes = api::router(&state);
    // Only with read replicas: without them no answer carries a position.
    if !state.config.database.read_urls.is_empty() {
        routes = routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::consistency::stamp_writes,
        ));
    }
    routes
        .layer(axum::middleware::from_fn(telemetry::record_request))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // After the fallbacks, so that they too answer MLflow's error shape on its paths.
        .layer(axum::middleware::from_fn(api::mlflow::translate_errors))
        .layer(
            // Outermost first. The Authorization header is marked sensitive before anything
            // else sees the request, so no layer can log it.
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // No answer of this server is meant to be sniffed into something else.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .option_layer(cors(&state.config.cors_origins))
                // After CORS, so that preflights of allowed origins are answered first.
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    api::browsers::guard,
                ))
                .layer(
                    CompressionLayer::new()
                        .quality(CompressionLevel::Fastest)
                        .compress_when(SizeAbove::new(1024).and(compressible)),
                )
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

/// CORS for the configured origins (none: no CORS headers at all). Preflights are answered
/// here, before authentication, as browsers send them without credentials.
fn cors(raw: &[String]) -> Option<CorsLayer> {
    let origins = config::cors_origins(raw);
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        // Validated at start-up; an origin that is not a header value cannot match anyway.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::RANGE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-content-sha256"),
                api::consistency::HEADER,
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::CONTENT_RANGE,
                REQUEST_ID,
                HeaderName::from_static("idempotent-replayed"),
                api::consistency::HEADER,
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Which answers are compressed for clients that ask (with [`SizeAbove`]: those of 1 KiB or
/// more, or of unknown length, as streamed metric series are): API answers (JSON,
/// problem+json, Prometheus text, the spec). Never artifacts: they are served byte for byte,
/// with ranges, and are usually compressed already.
fn compressible(
    _: StatusCode,
    _: axum::http::Version,
    headers: &HeaderMap,
    _: &Extensions,
) -> bool {
    if headers.contains_key(header::ACCEPT_RANGES) || headers.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    [
        "application/json",
        "application/problem+json",
        "text/plain",
        "application/yaml",
    ]
    .iter()
    .any(|t| content_type.starts_with(t))
}

/// Unknown paths. With authentication on, a caller without a valid token learns nothing
/// (401), as on every other route that is not public.
async fn not_found(State(state): State<AppState>, headers: HeaderMap) -> Error {
    if let Err(e) = auth::authenticate(&state, &headers).await {
        return e;
    }
    Error::not_found("route_not_found", "no such endpoint; see /openapi.yaml")
}

/// A known path with a method it does not have (OPTIONS and unknown methods included).
async fn method_not_allowed(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    headers: HeaderMap,
) -> Error {
    let public = matched.is_some_and(|m| api::is_public_path(m.as_str()));
    if !public && let Err(e) = auth::authenticate(&state, &headers).await {
        return e;
    }
    Error::new(
        Kind::MethodNotAllowed,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Error::internal("handler panicked").into_response()
}

/// The connection limits the settings ask for.
pub fn limits(config: &Config) -> server::Limits {
    server::Limits {
        header_timeout: config.header_timeout,
        first_byte_timeout: config.first_byte_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.connection_limit,
        shutdown_timeout: config.shutdown_timeout,
    }
}

/// Serves until `shutdown` resolves, then finishes in-flight requests (within the shutdown
/// timeout) and returns. Speaks HTTPS when the settings name a certificate and key.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = limits(&state.config);
    let (acceptor, watcher) = match (&state.config.tls_cert, &state.config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = tls::Acceptor::from_files(cert, key).map_err(std::io::Error::other)?;
            let watcher = tokio::spawn(tls.clone().watch(Duration::from_secs(5)));
            (server::Acceptor::Tls(tls), Some(watcher))
        }
        _ => (server::Acceptor::Plain, None),
    };
    // The webhook dispatcher runs beside the server and stops after it.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let compactor = state
        .config
        .compactor
        .then(|| compactor::spawn(state.store.clone(), stopping.clone()));
    let deletions = tokio::spawn(retry_object_deletions(
        state.store.clone(),
        state.blobs.clone(),
        stopping.clone(),
    ));
    let guards = state.config.guards.then(|| {
        guards::spawn(
            state.store.clone(),
            state.config.clock.clone(),
            stopping.clone(),
        )
    });
    let retention = state.config.retention.then(|| {
        retention::spawn(
            state.store.clone(),
            state.blobs.clone(),
            state.config.clock.clone(),
            state.config.retention_interval,
            stopping.clone(),
        )
    });
    let dispatcher = if state.config.webhooks.dispatcher {
        let settings = state.config.webhooks.clone();
        Some(
            webhooks::spawn(state.store.clone(), settings, stopping)
                .map_err(std::io::Error::other)?,
        )
    } else {
        None
    };
    let served = server::serve(listener, app(state), limits, acceptor, shutdown).await;
    if let Some(w) = watcher {
        w.abort();
    }
    let _ = stop.send(true);
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    if let Some(c) = compactor {
        let _ = c.await;
    }
    if let Some(g) = guards {
        let _ = g.await;
    }
    if let Some(r) = retention {
        let _ = r.await;
    }
    let _ = deletions.await;
    served
}

/// Deletes the objects of erased artifacts that the store could not delete when they were
/// erased, every 30 s, until `stop` turns true.
async fn retry_object_deletions(
    store: Arc<dyn Store>,
    blobs: blob::BlobStore,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match gc::retry_erased(store.as_ref(), &blobs, 256).await {
            Ok(n) if n > 0 => tracing::info!(objects = n, "objects of erased artifacts deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "queued object deletions could not be read"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}

/// Serves only `/metrics`, without authentication, on a second address.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = limits(&state.config);
    let app = Router::new()
        .route("/metrics", axum::routing::get(api::health::prometheus))
        .with_state(state);
    server::serve(listener, app, limits, server::Acceptor::Plain, shutdown).await
}

#[cfg(test)]
mod layout_tests {
    /// Names the files in `src/` over 400 lines, as a prompt to split them where a concept
    /// ends (a report, not a failure: moving code only to pass a count helps nobody).
    #[test]
    fn report_source_files_over_400_lines() {
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut long = Vec::new();
        let mut files = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files += 1;
                    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                    if lines > 400 {
                        long.push(format!("{}: {lines} lines", path.display()));
                    }
                }
            }
        }
        assert!(files > 50, "read {files} files");
        if !long.is_empty() {
            println!("source files over 400 lines (split where a concept ends): {long:#?}");
        }
    }
}
