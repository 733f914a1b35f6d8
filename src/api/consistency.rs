//! Read-your-writes with read replicas (`MODELREG_DATABASE_READ_URLS`).
//!
//! Every successful write answers `Modelreg-Consistency: <position>`: the primary's commit
//! position once it committed. A read that sends it back is served by a replica only once
//! that replica has replayed past it (after a short wait), otherwise by the primary. The
//! server also remembers each caller's last write (by its credentials) for a while, so that
//! a client that ignores the header — MLflow's, a script's — still reads what it wrote when
//! it comes back to the same server. Without replicas none of this runs.
//!
//! Only endpoints marked replica-safe (`Endpoint::replica`) read from a replica, and only
//! their handler does: the token check before it reads from the primary, so that a revoked
//! token is refused at once. A handler that fails (5xx) after a replica served it is run
//! again on the primary: a replica going away mid-request is not the client's problem.

use crate::AppState;
use crate::store::reads::{self, Route};
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The header a write answers with and a read may send back.
pub const HEADER: HeaderName = HeaderName::from_static("modelreg-consistency");

/// MLflow's searches that are POSTs (the body is the query): reads all the same.
const MLFLOW_SEARCHES: [&str; 3] = [
    "/api/2.0/mlflow/runs/search",
    "/api/2.0/mlflow/experiments/search",
    "/api/2.0/mlflow/logged-models/search",
];

/// Whether an endpoint's reads may be served by a replica: the GETs of models, versions,
/// metrics, comparisons, lineage and cards (what dashboards, sweeps and pages read), and the
/// MLflow layer's reads (its GETs and its POST searches). Stages, policies, guards,
/// promotion requests, retention, usage, events, tokens, trusted keys and webhooks read from
/// the primary: what an operator decides on, and what must take effect at once.
pub fn replica_safe(method: &Method, path: &str) -> bool {
    const ON_PRIMARY: [&str; 9] = [
        "/stages",
        "/policies",
        "/policy",
        "/guard",
        "/promotion-requests",
        "/retention",
        "/usage",
        "/events",
        "/signatures",
    ];
    if method == Method::POST {
        return MLFLOW_SEARCHES.contains(&path);
    }
    if method != Method::GET {
        return false;
    }
    if path.starts_with("/api/2.0/mlflow/")
        || path.starts_with("/api/2.0/mlflow-artifacts/")
        || path == "/api/v1/lineage/datasets"
    {
        return true;
    }
    path.strip_prefix("/api/v1/models")
        .is_some_and(|rest| !ON_PRIMARY.iter().any(|p| rest.contains(p)))
}

/// Callers remembered at most; beyond, the oldest positions are forgotten first.
const MAX_CALLERS: usize = 10_000;

/// Each caller's last write position, kept while a usable replica could still lack it.
#[derive(Debug, Default)]
pub struct Positions {
    by_caller: Mutex<HashMap<[u8; 16], (u64, Instant)>>,
}

/// A caller, by a hash of its credentials (none: every anonymous caller is one).
fn caller(headers: &HeaderMap) -> [u8; 16] {
    let mut h = Sha256::new();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Positions {
    /// Remembers a write; positions older than `keep` go when the table is full.
    fn remember(&self, who: [u8; 16], position: u64, keep: Duration) {
        let mut map = self
            .by_caller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CALLERS {
            map.retain(|_, (_, at)| at.elapsed() <= keep);
            if map.len() >= MAX_CALLERS {
                // Every entry is recent: forget the oldest half. Those callers read from
                // the primary or a caught-up replica anyway once `keep` has passed.
                let mut ages: Vec<Instant> = map.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, (_, at)| *at > cut);
            }
        }
        let entry = map.entry(who).or_insert((0, Instant::now()));
        *entry = (entry.0.max(position), Instant::now());
    }

    /// The caller's last write, if it is recent enough that a usable replica may lack it.
    fn of(&self, who: &[u8; 16], keep: Duration) -> Option<u64> {
        let map = self
            .by_caller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(who)
            .filter(|(_, at)| at.elapsed() <= keep)
            .map(|(p, _)| *p)
    }
}

/// How long a caller's write is remembered: a usable replica is never further behind than
/// the allowed lag, so after it (with a margin for the checks' period) any usable replica
/// has the write.
fn keep(state: &AppState) -> Duration {
    state.config.database.replica_max_lag + Duration::from_secs(2)
}

/// Whether an answer carries the primary's position: every write, and the reads of stages
/// (a deployment agent that reads a stage then lists the version's files must find them).
fn stamped(method: &Method, path: &str) -> bool {
    if replica_safe(method, path) {
        return false;
    }
    match *method {
        Method::GET => path.starts_with("/api/v1/models/") && path.contains("/stages"),
        Method::HEAD | Method::OPTIONS => false,
        _ => true,
    }
}

/// Stamps every successful write (and stage read) with the primary's commit position (with
/// replicas only).
pub async fn stamp_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.config.database.read_urls.is_empty() || !stamped(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let who = caller(req.headers());
    let mut response = next.run(req).await;
    if response.status().is_success()
        && let Some(position) = state.store.write_position().await
    {
        state.positions.remember(who, position, keep(&state));
        if let Ok(v) = HeaderValue::from_str(&reads::format_position(position)) {
            response.headers_mut().insert(HEADER, v);
        }
    }
    response
}

/// Runs a replica-safe endpoint's handler with its reads allowed on a replica that has the
/// caller's writes (see the module's documentation).
pub async fn replica_reads(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.config.database.read_urls.is_empty() {
        return next.run(req).await;
    }
    let sent = req
        .headers()
        .get(&HEADER)
        .map(|v| v.to_str().ok().and_then(reads::parse_position).ok_or(()));
    let own = state.positions.of(&caller(req.headers()), keep(&state));
    let at_least = match sent {
        // A token this server did not write: the primary has everything.
        Some(Err(())) => return reads::on_primary(next.run(req)).await,
        Some(Ok(p)) => Some(own.map_or(p, |o| o.max(p))),
        None => own,
    };
    let route = Route::new(at_least);
    let (parts, body) = req.into_parts();
    // The body (a search's query) is kept for a second run; a GET has none.
    let bytes = if parts.method == Method::POST {
        let whole = Request::from_parts(parts.clone(), body);
        match super::extract::body_bytes(whole, &state).await {
            Ok((bytes, _)) => bytes,
            Err(e) => return e.into_response(),
        }
    } else {
        Bytes::new()
    };
    let first = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let response = reads::on_replica(route.clone(), next.clone().run(first)).await;
    if response.status().is_server_error() && route.used_replica() {
        tracing::warn!(
            status = response.status().as_u16(),
            "a read served by a replica failed: running it again on the primary"
        );
        let again = Request::from_parts(parts, Body::from(bytes));
        return reads::on_primary(next.run(again)).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_replica_may_serve() {
        let get = Method::GET;
        for path in [
            "/api/v1/models",
            "/api/v1/models/{model}",
            "/api/v1/models/{model}/versions",
            "/api/v1/models/{model}/versions/{version}",
            "/api/v1/models/{model}/versions/{version}/metrics/{*key}",
            "/api/v1/models/{model}/compare",
            "/api/v1/models/{model}/versions/{version}/lineage",
            "/api/2.0/mlflow/runs/get",
        ] {
            assert!(replica_safe(&get, path), "{path}");
        }
        for path in [
            "/api/v1/models/{model}/stages",
            "/api/v1/models/{model}/stages/{stage}/history",
            "/api/v1/models/{model}/policies",
            "/api/v1/models/{model}/guards",
            "/api/v1/models/{model}/promotion-requests",
            "/api/v1/models/{model}/usage",
            "/api/v1/events",
            "/api/v1/tokens",
            "/api/v1/whoami",
            "/api/v1/trust/keys",
        ] {
            assert!(!replica_safe(&get, path), "{path}");
        }
        assert!(!replica_safe(
            &Method::POST,
            "/api/v1/models/{model}/versions"
        ));
        assert!(replica_safe(&Method::POST, "/api/2.0/mlflow/runs/search"));
        assert!(!replica_safe(&Method::POST, "/api/2.0/mlflow/runs/create"));
        assert!(!stamped(&Method::POST, "/api/2.0/mlflow/runs/search"));
        assert!(stamped(&Method::POST, "/api/2.0/mlflow/runs/create"));
        assert!(stamped(&Method::GET, "/api/v1/models/m/stages/production"));
        assert!(!stamped(&Method::GET, "/api/v1/models/m/versions/3"));
    }

    #[test]
    fn callers_are_told_apart_by_their_credentials() {
        let mut a = HeaderMap::new();
        a.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        let mut b = HeaderMap::new();
        b.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_ne!(caller(&a), caller(&b));
        assert_eq!(caller(&HeaderMap::new()), caller(&HeaderMap::new()));
    }

    #[test]
    fn positions_are_kept_for_a_while_and_only_grow() {
        let p = Positions::default();
        let keep = Duration::from_secs(60);
        p.remember([1; 16], 10, keep);
        p.remember([1; 16], 7, keep);
        assert_eq!(p.of(&[1; 16], keep), Some(10));
        assert_eq!(p.of(&[2; 16], keep), None);
        assert_eq!(p.of(&[1; 16], Duration::ZERO), None, "too old to matter");
        for i in 0..MAX_CALLERS + 10 {
            let mut who = [0; 16];
            who[..8].copy_from_slice(&(i as u64).to_le_bytes());
            p.remember(who, 1, keep);
        }
        assert!(p.by_caller.lock().unwrap().len() <= MAX_CALLERS);
    }
}
