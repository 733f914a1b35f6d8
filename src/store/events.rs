//! The audit log: every change appends an event in its own transaction; readers tail it.

use super::rows::EventRow;
use super::sql::{Conn, Stmt};
use super::{Actor, Backend, Event, EventQuery, Page, SqlStore, page};
use crate::domain::time::Timestamp;
use crate::error::Result;
use async_trait::async_trait;
use serde_json::{Map, Value};
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait EventStore {
    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>>;
}

/// An event to append to the audit log, in the transaction of the change it records.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent<'a> {
    pub action: &'static str,
    pub model_id: Option<Uuid>,
    pub model: Option<&'a str>,
    pub version: Option<i64>,
    pub stage: Option<&'a str>,
    pub details: Value,
    pub at: Timestamp,
}

impl<'a> NewEvent<'a> {
    pub fn model(action: &'static str, model_id: Uuid, model: &'a str, at: Timestamp) -> Self {
        Self {
            action,
            model_id: Some(model_id),
            model: Some(model),
            version: None,
            stage: None,
            details: Value::Object(Map::new()),
            at,
        }
    }

    /// An event about no model (tokens).
    pub fn global(action: &'static str, at: Timestamp, details: Value) -> Self {
        Self {
            action,
            model_id: None,
            model: None,
            version: None,
            stage: None,
            details,
            at,
        }
    }

    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

pub(crate) const INSERT_EVENT: &str = "insert into events \
    (at, action, model_id, model, version, stage, actor, actor_token_id, details, actor_subject) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id";

/// Appends an event; returns its id.
pub(crate) async fn record<C: Conn>(conn: &mut C, e: NewEvent<'_>, actor: &Actor) -> Result<i64> {
    let stmt = Stmt::new(INSERT_EVENT)
        .bind(e.at)
        .bind(e.action)
        .bind(e.model_id)
        .bind(e.model)
        .bind(e.version)
        .bind(e.stage)
        .bind(&actor.name)
        .bind(actor.token_id)
        .json(&e.details)
        .bind(&actor.subject);
    conn.scalar(stmt).await
}

pub(crate) const EVENT_COLUMNS: &str = "select id, action, model, version, stage, actor, actor_token_id, actor_subject, at, details \
     from events ";

async fn list<C: Conn>(conn: &mut C, q: &EventQuery) -> Result<Page<Event>> {
    let horizon = conn.event_horizon().await?;
    let sql = format!(
        "{EVENT_COLUMNS}where (cast($1 as bigint) is null or id > $1) \
           and (cast($2 as text) is null or model = $2) \
           and (cast($3 as text) is null or action = $3) \
           and ($5 is null or {}) \
           and (cast($6 as bigint) is null or id <= $6) \
         order by id {} limit $4",
        C::like_any("model", "$5"),
        if q.newest { "desc" } else { "asc" }
    );
    let stmt = Stmt::new(sql)
        .bind(q.after)
        .bind(q.model.clone())
        .bind(q.action.clone())
        .bind(i64::from(q.limit) + 1)
        .bind(q.visible.clone())
        .bind(horizon);
    let rows: Vec<EventRow> = conn.fetch_all(stmt).await?;
    let mut items: Vec<Event> = rows.into_iter().map(Event::from).collect();
    if q.newest {
        // The newest `limit`, oldest first; the cursor follows on from the newest.
        items.truncate(q.limit as usize);
        items.reverse();
        let next_cursor = items.last().map(|e| e.event_id.to_string());
        return Ok(Page { items, next_cursor });
    }
    Ok(page(items, q.limit, |e| e.event_id.to_string()))
}

#[async_trait]
impl<B: Backend> EventStore for SqlStore<B> {
    #[instrument(skip_all)]
    async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let mut conn = self.db.read().await?;
        list(&mut *conn, q).await
    }
}
