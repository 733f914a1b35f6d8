//! The request deadline: every endpoint but streamed uploads must answer within the request
//! timeout. A request that runs out of time is answered 408 when its body never arrived
//! whole (the client was too slow) and 503 otherwise (the server could not finish); either
//! way the handler is dropped, so its transaction rolls back.

use crate::error::{Error, Kind};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the body extractors once the whole body has been read.
#[derive(Clone, Default)]
pub struct BodyRead(Arc<AtomicBool>);

impl BodyRead {
    pub fn done(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_done(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub async fn limit(State(limit): State<Duration>, mut req: Request, next: Next) -> Response {
    let body = BodyRead::default();
    // A request that declares no body has nothing left to arrive.
    if !has_body(&req) {
        body.done();
    }
    req.extensions_mut().insert(body.clone());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) if !body.is_done() => Error::new(
            Kind::RequestTimeout,
            "request_timeout",
            format!(
                "the request body did not arrive within {}s",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
        Err(_) => Error::new(
            Kind::Unavailable,
            "request_timeout",
            format!(
                "the request could not be completed within {}s; nothing was changed, try again",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

fn has_body(req: &Request) -> bool {
    use axum::http::header;
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}
