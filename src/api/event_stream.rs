//! `GET /api/v1/events/stream`: the event log as Server-Sent Events, with the filters and
//! token rules of `GET /api/v1/events`. Each event is sent once, in id order, with its id as
//! the SSE `id:`; a client that reconnects with `Last-Event-ID` (or `?after=`) gets every
//! event after it, read from the log, before the live ones. A comment every 15 s keeps
//! proxies from closing an idle stream.
//!
//! One tail per process reads new events once (woken by commits, here or on other processes,
//! and every second) and hands them to every stream through a bounded broadcast: a reader
//! that falls more than [`BUFFERED`] events behind is cut (it reconnects and catches up from
//! the log), so a slow reader costs no memory beyond that shared buffer; one that stops
//! reading altogether is cut by the server's stalled-write timeout. Streams are capped per
//! token (`MODELREG_EVENT_STREAMS_PER_TOKEN`): one more is 429 `too_many_streams`.

use super::Endpoint;
use super::extract::{Query, query_error};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::access::{Principal, Scope};
use crate::error::{Error, Kind, Result};
use crate::store::{Event, EventQuery, Store};
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(Method::GET, "/api/v1/events/stream", Scope::Read, stream).streaming()]
}

/// Events the broadcast holds for its slowest reader.
pub const BUFFERED: usize = 1024;
/// Events one read of the log returns (the tail's and a catch-up's).
const PAGE: u32 = 500;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The tail reads at least this often, whatever the commit signal says.
const POLL: Duration = Duration::from_secs(1);

/// The process's event tail and its streams.
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
    /// The newest event the tail has read (0: none yet).
    last: AtomicI64,
    /// Whether the tail runs; it stops when no stream is left, under this lock, so that a
    /// stream opened meanwhile starts it again.
    running: Mutex<bool>,
    /// Open streams by token (`anonymous` while authentication is off).
    open: Mutex<HashMap<String, usize>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BUFFERED).0,
            last: AtomicI64::new(0),
            running: Mutex::new(false),
            open: Mutex::new(HashMap::new()),
        }
    }
}

/// One open stream, counted against its token until dropped.
struct Slot {
    hub: Arc<EventHub>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.hub.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl EventHub {
    /// Counts a stream against its token; `None` past the cap.
    fn take_slot(self: &Arc<Self>, key: String, cap: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            hub: self.clone(),
            key,
        })
    }

    /// Streams open now (for `/metrics` and tests).
    pub fn streams(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// A receiver of new events and the id it starts after; starts the tail if it is not
    /// running.
    async fn subscribe(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
    ) -> Result<(broadcast::Receiver<Arc<Event>>, i64)> {
        let start_tail = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let was = *running;
            *running = true;
            !was
        };
        if start_tail {
            // Where the log ends now: the tail and this stream start after it.
            match newest(store).await {
                Ok(id) => self.last.store(id, Ordering::SeqCst),
                Err(e) => {
                    *self.running.lock().unwrap_or_else(|p| p.into_inner()) = false;
                    return Err(e);
                }
            }
        }
        let rx = {
            let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            self.tx.subscribe()
        };
        if start_tail {
            tokio::spawn(tail(self.clone(), store.clone()));
        }
        Ok((rx, self.last.load(Ordering::SeqCst)))
    }
}

async fn newest(store: &Arc<dyn Store>) -> Result<i64> {
    let q = EventQuery {
        visible: None,
        model: None,
        action: None,
        after: None,
        limit: 1,
        newest: true,
    };
    Ok(store
        .list_events(&q)
        .await?
        .items
        .last()
        .map_or(0, |e| e.event_id))
}

/// Reads new events as they commit and hands them to the streams, until none is left.
async fn tail(hub: Arc<EventHub>, store: Arc<dyn Store>) {
    let mut signal = match store.outbox_signal().await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "the event stream's tail polls: no commit signal");
            None
        }
    };
    loop {
        {
            let mut running = hub.running.lock().unwrap_or_else(|p| p.into_inner());
            if hub.tx.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        let wait = async {
            match signal.as_mut() {
                Some(s) => s.changed().await,
                None => std::future::pending().await,
            }
        };
        let _ = tokio::time::timeout(POLL, wait).await;
        loop {
            let q = EventQuery {
                visible: None,
                model: None,
                action: None,
                after: Some(hub.last.load(Ordering::SeqCst)),
                limit: PAGE,
                newest: false,
            };
            match store.list_events(&q).await {
                Ok(page) => {
                    let full = page.items.len() >= PAGE as usize;
                    for e in page.items {
                        hub.last.store(e.event_id, Ordering::SeqCst);
                        // No receiver right now is not an error: the next loop stops.
                        let _ = hub.tx.send(Arc::new(e));
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(code = %e.code, "the event stream's tail could not read the log; retrying");
                    tokio::time::sleep(POLL).await;
                    break;
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct StreamParams {
    model: Option<String>,
    action: Option<String>,
    /// Start after this event id (`Last-Event-ID` wins when both are given); without either,
    /// the stream starts with the next event.
    after: Option<String>,
}

/// What one stream shows: its filters and the token's models.
struct Filter {
    model: Option<String>,
    action: Option<String>,
    principal: Principal,
}

impl Filter {
    fn shows(&self, e: &Event) -> bool {
        let visible = match (&self.principal.models, &e.model) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(m)) => self.principal.sees_model(m),
        };
        visible
            && self
                .model
                .as_ref()
                .is_none_or(|m| e.model.as_ref() == Some(m))
            && self.action.as_ref().is_none_or(|a| e.action == *a)
    }
}

fn event_id(raw: &str, field: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Error::bad_request(
                "invalid_query_parameter",
                format!("{field} {raw:?} is not an event id"),
            )
            .with_field(field)
        })
}

fn sse_event(e: &Event) -> Result<axum::response::sse::Event, axum::Error> {
    axum::response::sse::Event::default()
        .id(e.event_id.to_string())
        .event(&e.action)
        .json_data(e)
}

async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<axum::response::sse::Event, axum::Error>>>> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(event_id(v.to_str().unwrap_or("not text"), "Last-Event-ID")?),
        None => p
            .after
            .as_deref()
            .map(|a| event_id(a, "after"))
            .transpose()?,
    };
    let model = p
        .model
        .map(|m| ModelName::parse("model", &m).map_err(query_error))
        .transpose()?
        .map(|m| m.as_str().to_owned());
    if let Some(a) = &p.action
        && !super::events::is_action(a)
    {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("action {a:?} is not an event action such as stage.promoted"),
        )
        .with_field("action"));
    }
    let key = principal
        .actor
        .token_id
        .map_or_else(|| principal.actor.name.clone(), |id| id.to_string());
    let cap = state.config.event_streams_per_token;
    let Some(slot) = state.events.take_slot(key, cap) else {
        return Err(Error::new(
            Kind::TooManyRequests,
            "too_many_streams",
            format!(
                "this token has {cap} event streams open already (MODELREG_EVENT_STREAMS_PER_TOKEN)"
            ),
        ));
    };
    let (mut rx, live_from) = state.events.subscribe(&state.store).await?;
    let filter = Filter {
        model,
        action: p.action,
        principal,
    };
    let store = state.store.clone();
    let events = async_stream(move |mut send| async move {
        let _slot = slot;
        // Caught up from the log first, then live: nothing lost, nothing twice. Without a
        // position, the stream starts where the log ended when it subscribed.
        let mut sent = resume.unwrap_or(live_from);
        if resume.is_some() {
            loop {
                let q = EventQuery {
                    visible: filter.principal.like_patterns(),
                    model: filter.model.clone(),
                    action: filter.action.clone(),
                    after: Some(sent),
                    limit: PAGE,
                    newest: false,
                };
                let page = match store.list_events(&q).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(code = %e.code, "an event stream could not catch up; closed");
                        return;
                    }
                };
                let done = page.items.len() < PAGE as usize;
                for e in &page.items {
                    if !send.send(sse_event(e)).await {
                        return;
                    }
                    sent = sent.max(e.event_id);
                }
                // Every event the tail broadcast before this stream subscribed is in the log
                // already, so what the log held is all sent; the live ones after it follow.
                if done {
                    break;
                }
            }
        }
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if e.event_id <= sent {
                        continue;
                    }
                    sent = e.event_id;
                    if filter.shows(&e) && !send.send(sse_event(&e)).await {
                        return;
                    }
                }
                // Too far behind: cut, so that the reader reconnects with Last-Event-ID.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}

type Item = Result<axum::response::sse::Event, axum::Error>;

/// A stream fed by a task through a channel of one: the task waits while the client does not
/// read, so nothing piles up per connection.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Item>
where
    F: FnOnce(Sender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(1);
    let task = tokio::spawn(body(Sender(tx)));
    Guarded {
        rx: tokio_stream::wrappers::ReceiverStream::new(rx),
        task,
    }
}

/// Hands one item to the stream; `false` once the client has gone.
struct Sender(tokio::sync::mpsc::Sender<Item>);

impl Sender {
    async fn send(&mut self, item: Item) -> bool {
        self.0.send(item).await.is_ok()
    }
}

/// The stream, which stops its task when the response is dropped.
struct Guarded {
    rx: tokio_stream::wrappers::ReceiverStream<Item>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Guarded {
    type Item = Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Item>> {
        std::pin::Pin::new(&mut self.rx).poll_next(cx)
    }
}
