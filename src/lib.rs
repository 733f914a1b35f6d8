//! modelreg: a model registry service. `app` builds the router from an [`AppState`];
//! `serve` runs it on a listener until the shutdown future resolves.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod blob;
pub mod config;
pub mod domain;
pub mod error;
pub mod gc;
pub mod store;
pub mod telemetry;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use config::Config;
use error::{Error, Kind};
use std::future::Future;
use std::sync::Arc;
use store::Store;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: blob::BlobStore,
    pub config: Arc<Config>,
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
    api::router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(telemetry::record_request))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

async fn not_found() -> Error {
    Error::not_found("route_not_found", "no such endpoint; see /openapi.yaml")
}

async fn method_not_allowed() -> Error {
    Error::new(
        Kind::MethodNotAllowed,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Error::internal("handler panicked").into_response()
}

/// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY, keep-alive clients stall ~40 ms per request on delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
