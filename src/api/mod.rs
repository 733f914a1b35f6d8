//! The HTTP layer: one module per resource, each declaring its endpoints.
//!
//! The router is built only from [`endpoints`], so the table is the router: every route
//! carries its own access guard (its scope travels with it, see [`crate::auth`]), and the
//! OpenAPI description is checked against the table by tests.

pub mod artifacts;
pub mod browsers;
pub mod cards;
pub mod compare;
pub mod consistency;
pub mod deadline;
pub mod erase;
pub mod event_stream;
pub mod events;
pub mod extract;
pub mod guards;
pub mod health;
pub mod inputs;
pub mod metrics;
pub mod mlflow;
pub mod models;
pub mod overlay;
pub mod paths;
pub mod policies;
pub mod problem;
pub mod requests;
pub mod retention;
pub mod schemas;
pub mod signatures;
pub mod stages;
pub mod tokens;
pub mod trust;
pub mod ui;
pub mod versions;
pub mod webhooks;

/// A list answered whole: `{"items": [...]}` (a page adds `next_cursor`: `store::Page`).
#[derive(serde::Serialize)]
pub(crate) struct Items<T> {
    pub items: Vec<T>,
}

use crate::AppState;
use crate::auth::{Guard, guard};
use crate::domain::access::Scope;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

/// One route: what it is, who may call it, and its handler.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub scope: Scope,
    handler: MethodRouter<AppState>,
    streaming: bool,
    confined: bool,
}

impl Endpoint {
    pub fn new<H, T>(method: Method, path: &'static str, scope: Scope, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::PATCH => MethodFilter::PATCH,
            Method::DELETE => MethodFilter::DELETE,
            // Invariant: endpoints are declared in this crate with the methods above.
            _ => unreachable!("unsupported method {method} for {path}"),
        };
        Self {
            method,
            path,
            scope,
            handler: on(filter, handler),
            streaming: false,
            confined: false,
        }
    }

    /// For admin endpoints whose handler keeps a glob-limited caller within its globs (see
    /// [`Guard::confined`]).
    pub fn confined(mut self) -> Self {
        self.confined = true;
        self
    }

    /// For endpoints whose body is streamed (artifact uploads): no JSON body limit, and no
    /// request deadline (the upload is bounded by the idle timeout between its chunks).
    pub fn streaming(mut self) -> Self {
        self.handler = self
            .handler
            .layer(axum::extract::DefaultBodyLimit::disable());
        self.streaming = true;
        self
    }
}

/// Every endpoint of the service.
pub fn endpoints() -> Vec<Endpoint> {
    [
        health::endpoints(),
        models::endpoints(),
        versions::endpoints(),
        inputs::endpoints(),
        event_stream::endpoints(),
        cards::endpoints(),
        schemas::endpoints(),
        stages::endpoints(),
        policies::endpoints(),
        guards::endpoints(),
        erase::endpoints(),
        signatures::endpoints(),
        retention::endpoints(),
        requests::endpoints(),
        metrics::endpoints(),
        overlay::endpoints(),
        compare::endpoints(),
        artifacts::endpoints(),
        tokens::endpoints(),
        trust::endpoints(),
        events::endpoints(),
        webhooks::endpoints(),
        ui::endpoints(),
        mlflow::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl Endpoint {
    /// The handler behind its access guard (a public endpoint has none), within the request
    /// deadline (a streaming one has none).
    fn into_route(self, state: &AppState) -> MethodRouter<AppState> {
        let mut route = self.handler;
        // Inside the guard: the token check reads from the primary. Only with replicas.
        if !state.config.database.read_urls.is_empty()
            && consistency::replica_safe(&self.method, self.path)
        {
            route = route.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                consistency::replica_reads,
            ));
        }
        if self.scope != Scope::Public {
            let guard_state = Guard {
                state: state.clone(),
                scope: self.scope,
                confined: self.confined,
            };
            route = route.route_layer(axum::middleware::from_fn_with_state(guard_state, guard));
        }
        if !self.streaming {
            let limit = state.config.request_timeout;
            route = route.route_layer(axum::middleware::from_fn_with_state(limit, deadline::limit));
        }
        route
    }
}

/// The router of every endpoint, each behind its guard (state still to be supplied).
pub fn router(state: &AppState) -> Router<AppState> {
    endpoints().into_iter().fold(Router::new(), |router, e| {
        let path = e.path;
        router.route(path, e.into_route(state))
    })
}

/// Whether every endpoint of a route template is public (health, readiness, the spec).
pub fn is_public_path(path: &str) -> bool {
    static PUBLIC: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    PUBLIC
        .get_or_init(|| {
            let all = endpoints();
            all.iter()
                .filter(|e| {
                    all.iter()
                        .filter(|o| o.path == e.path)
                        .all(|o| o.scope == Scope::Public)
                })
                .map(|e| e.path)
                .collect()
        })
        .contains(&path)
}
