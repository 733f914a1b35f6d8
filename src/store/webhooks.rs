//! Webhooks as stored: the subscriptions an admin manages, and their delivery log. The
//! deliveries themselves are derived from the event log, through a cursor per webhook, and
//! worked off by the dispatcher through [`super::deliveries`].

use super::sql::{Arg, Conn, Stmt};
use super::webhook_types::*;
use super::{Actor, Backend, NewEvent, Page, SqlStore, events, page};
use crate::domain::access::Glob;
use crate::domain::time::{self, Timestamp};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

#[async_trait]
pub trait WebhookStore {
    /// Stores a webhook and records `webhook.created`.
    async fn create_webhook(&self, w: &NewWebhook, actor: &Actor) -> Result<Webhook>;
    async fn list_webhooks(&self, owner: WebhookOwner) -> Result<Vec<Webhook>>;
    /// One webhook with its delivery counts; 404 `webhook_not_found`.
    async fn webhook(&self, id: Uuid, owner: WebhookOwner) -> Result<(Webhook, DeliveryStats)>;
    async fn update_webhook(
        &self,
        id: Uuid,
        patch: &WebhookPatch,
        owner: WebhookOwner,
        actor: &Actor,
    ) -> Result<Webhook>;
    /// Removes it and its delivery log (pending deliveries are dropped).
    async fn delete_webhook(&self, id: Uuid, owner: WebhookOwner, actor: &Actor) -> Result<()>;
    /// Replaces the secret; the old one keeps signing too until `keep_old_until`.
    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        keep_old_until: Timestamp,
        owner: WebhookOwner,
        actor: &Actor,
    ) -> Result<()>;
    /// Queues a `webhook.ping` delivery; returns its id.
    async fn ping_webhook(&self, id: Uuid, owner: WebhookOwner) -> Result<i64>;
    async fn list_deliveries(
        &self,
        id: Uuid,
        query: &DeliveryQuery,
        owner: WebhookOwner,
    ) -> Result<Page<Delivery>>;
    /// Queues a delivery again, afresh (attempts from zero, due now).
    async fn redeliver(&self, id: Uuid, delivery: i64, owner: WebhookOwner) -> Result<()>;
}

const WEBHOOK_COLUMNS: &str = "select id, url, description, events, models, enabled, disabled_reason, \
     previous_secret_until, created_at, created_by, updated_at from webhooks ";

fn not_found(id: Uuid) -> Error {
    Error::not_found("webhook_not_found", format!("no webhook {id}"))
}

fn globs(g: &Option<Vec<Glob>>) -> Option<Vec<&str>> {
    g.as_ref().map(|g| g.iter().map(Glob::as_str).collect())
}

fn likes(g: &Option<Vec<Glob>>) -> Option<Vec<String>> {
    g.as_ref().map(|g| g.iter().map(Glob::to_like).collect())
}

/// Binds an optional JSON document (SQL null for `None`).
fn json_or_null<T: Serialize>(stmt: Stmt, value: &Option<T>) -> Stmt {
    match value {
        Some(v) => stmt.json(v),
        None => stmt.bind(Arg::Json(None)),
    }
}

/// What an event about a webhook records: never its URL (it may carry a credential in its
/// path) nor its secret, since events are readable with the read scope.
fn details(w: &Webhook) -> serde_json::Value {
    serde_json::json!({"id": w.id, "events": w.events, "models": w.models, "enabled": w.enabled})
}

async fn find<C: Conn>(conn: &mut C, id: Uuid, owner: WebhookOwner) -> Result<Webhook> {
    let sql = format!(
        "{WEBHOOK_COLUMNS}where id = $1 and (cast($2 as uuid) is null or owner_token_id = $2)"
    );
    let stmt = Stmt::new(sql).bind(id).bind(owner.token());
    conn.fetch_optional(stmt)
        .await?
        .ok_or_else(|| not_found(id))
}

async fn insert<C: Conn>(conn: &mut C, w: &NewWebhook, actor: &Actor) -> Result<Webhook> {
    if let Some(token) = w.owner_token_id {
        let stmt = Stmt::new("select count(*) from webhooks where owner_token_id = $1").bind(token);
        let owned: i64 = conn.scalar(stmt).await?;
        if owned >= i64::from(w.owner_limit) {
            return Err(Error::conflict(
                "webhook_limit",
                format!(
                    "this token owns {owned} webhooks, the most one token may own \
                     (MODELREG_WEBHOOK_MAX_PER_TOKEN); delete one first"
                ),
            ));
        }
    }
    let events: Vec<&str> = w.events.iter().map(Glob::as_str).collect();
    let event_likes: Vec<String> = w.events.iter().map(Glob::to_like).collect();
    let stmt = Stmt::new(
        "insert into webhooks (id, url, description, events, event_likes, models, model_likes, \
             owner_models, owner_likes, owner_token_id, enabled, secret, created_at, created_by, updated_at, \
             event_cursor) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13, \
             (select coalesce(max(id), 0) from events))",
    )
    .bind(w.id)
    .bind(&w.url)
    .bind(&w.description)
    .json(&events)
    .json(&event_likes);
    let stmt = json_or_null(stmt, &globs(&w.models));
    let stmt = json_or_null(stmt, &likes(&w.models));
    let stmt = json_or_null(stmt, &globs(&w.owner_models));
    let stmt = json_or_null(stmt, &likes(&w.owner_models))
        .bind(w.owner_token_id)
        .bind(w.enabled)
        .bind(&w.secret)
        .bind(w.at)
        .bind(&actor.name);
    conn.execute(stmt).await?;
    let created = find(conn, w.id, WebhookOwner::Any).await?;
    let event = NewEvent::global("webhook.created", w.at, details(&created));
    events::record(conn, event, actor).await?;
    Ok(created)
}

async fn update<C: Conn>(
    conn: &mut C,
    id: Uuid,
    patch: &WebhookPatch,
    owner: WebhookOwner,
    actor: &Actor,
) -> Result<Webhook> {
    let current = find(conn, id, owner).await?;
    let now = time::now();
    let mut stmt = Stmt::new(
        "update webhooks set url = coalesce($2, url), \
             description = case when $3 then $4 else description end, \
             events = coalesce($5, events), event_likes = coalesce($6, event_likes), \
             models = case when $7 then $8 else models end, \
             model_likes = case when $7 then $9 else model_likes end, \
             enabled = coalesce($10, enabled), \
             event_cursor = case when $10 and not enabled \
                 then (select coalesce(max(id), 0) from events) else event_cursor end, \
             disabled_reason = case when coalesce($10, false) then null else disabled_reason end, \
             updated_at = $11 \
         where id = $1",
    )
    .bind(id)
    .bind(patch.url.clone())
    .bind(patch.description.is_some())
    .bind(patch.description.clone().flatten());
    let events: Option<Vec<&str>> = patch
        .events
        .as_ref()
        .map(|e| e.iter().map(Glob::as_str).collect());
    let event_likes: Option<Vec<String>> = patch
        .events
        .as_ref()
        .map(|e| e.iter().map(Glob::to_like).collect());
    stmt = json_or_null(stmt, &events);
    stmt = json_or_null(stmt, &event_likes);
    stmt = stmt.bind(patch.models.is_some());
    let models = patch.models.clone().flatten();
    stmt = json_or_null(stmt, &globs(&models));
    stmt = json_or_null(stmt, &likes(&models));
    stmt = stmt.bind(patch.enabled).bind(now);
    conn.execute(stmt).await?;
    let updated = find(conn, id, owner).await?;
    let changed = (
        &updated.url,
        &updated.description,
        &updated.events,
        &updated.models,
        updated.enabled,
    ) != (
        &current.url,
        &current.description,
        &current.events,
        &current.models,
        current.enabled,
    );
    if changed {
        let event = NewEvent::global("webhook.updated", now, details(&updated));
        events::record(conn, event, actor).await?;
    }
    Ok(updated)
}

async fn delete<C: Conn>(conn: &mut C, id: Uuid, owner: WebhookOwner, actor: &Actor) -> Result<()> {
    let current = find(conn, id, owner).await?;
    conn.execute(Stmt::new("delete from webhook_deliveries where webhook_id = $1").bind(id))
        .await?;
    conn.execute(Stmt::new("delete from webhook_speeds where webhook_id = $1").bind(id))
        .await?;
    conn.execute(Stmt::new("delete from webhooks where id = $1").bind(id))
        .await?;
    let event = NewEvent::global("webhook.deleted", time::now(), details(&current));
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn rotate<C: Conn>(
    conn: &mut C,
    id: Uuid,
    secret: &str,
    keep_old_until: Timestamp,
    owner: WebhookOwner,
    actor: &Actor,
) -> Result<()> {
    let current = find(conn, id, owner).await?;
    let now = time::now();
    let stmt = Stmt::new(
        "update webhooks set previous_secret = secret, previous_secret_until = $3, secret = $2, \
             updated_at = $4 where id = $1",
    )
    .bind(id)
    .bind(secret)
    .bind(keep_old_until)
    .bind(now);
    conn.execute(stmt).await?;
    let event = NewEvent::global("webhook.secret_rotated", now, details(&current));
    events::record(conn, event, actor).await?;
    Ok(())
}

/// Queues a ping, or answers the one still pending: a webhook has one pending ping at most.
async fn ping<C: Conn>(conn: &mut C, id: Uuid, owner: WebhookOwner) -> Result<i64> {
    find(conn, id, owner).await?;
    let pending = Stmt::new(
        "select id from webhook_deliveries \
          where webhook_id = $1 and status = 'pending' and event_id is null \
          order by id limit 1",
    )
    .bind(id);
    if let Some((delivery,)) = conn.fetch_optional::<(i64,)>(pending).await? {
        return Ok(delivery);
    }
    let now = time::now();
    let stmt = Stmt::new(
        "insert into webhook_deliveries (webhook_id, type, ordering_key, next_attempt_at, queued_at) \
         values ($1, 'webhook.ping', '', $2, $2) returning id",
    )
    .bind(id)
    .bind(now);
    conn.scalar(stmt).await
}

async fn redeliver<C: Conn>(
    conn: &mut C,
    id: Uuid,
    delivery: i64,
    owner: WebhookOwner,
) -> Result<()> {
    find(conn, id, owner).await?;
    let stmt = Stmt::new(
        "update webhook_deliveries set status = 'pending', attempts = 0, next_attempt_at = $3, \
             queued_at = $3, delivered_at = null \
         where webhook_id = $1 and id = $2",
    )
    .bind(id)
    .bind(delivery)
    .bind(time::now());
    if conn.execute(stmt).await? == 0 {
        return Err(Error::not_found(
            "delivery_not_found",
            format!("webhook {id} has no delivery {delivery}"),
        ));
    }
    Ok(())
}

const STATS: &str = "select \
        coalesce(sum(case when status = 'succeeded' then 1 else 0 end), 0) as delivered, \
        coalesce(sum(case when status = 'failed' then 1 else 0 end), 0) as failed, \
        coalesce(sum(case when status = 'pending' then 1 else 0 end), 0) as pending, \
        max(delivered_at) as last_success_at, max(last_failure_at) as last_failure_at \
     from webhook_deliveries where webhook_id = $1";

const DELIVERY_COLUMNS: &str = "select id, event_id, type as kind, status, attempts, last_status_code, \
        last_error, last_attempt_at, \
        case when status = 'pending' and next_attempt_at < $5 then next_attempt_at end \
            as next_attempt_at, \
        queued_at, delivered_at from webhook_deliveries ";

#[async_trait]
impl<B: Backend> WebhookStore for SqlStore<B> {
    async fn create_webhook(&self, w: &NewWebhook, actor: &Actor) -> Result<Webhook> {
        transaction!(self.db, |c| insert(c, w, actor))
    }

    async fn list_webhooks(&self, owner: WebhookOwner) -> Result<Vec<Webhook>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "{WEBHOOK_COLUMNS}where cast($1 as uuid) is null or owner_token_id = $1 \
             order by created_at, id"
        );
        conn.fetch_all(Stmt::new(sql).bind(owner.token())).await
    }

    async fn webhook(&self, id: Uuid, owner: WebhookOwner) -> Result<(Webhook, DeliveryStats)> {
        let mut conn = self.db.read().await?;
        let webhook = find(&mut *conn, id, owner).await?;
        let stats = conn.fetch_one(Stmt::new(STATS).bind(id)).await?;
        Ok((webhook, stats))
    }

    async fn update_webhook(
        &self,
        id: Uuid,
        patch: &WebhookPatch,
        owner: WebhookOwner,
        actor: &Actor,
    ) -> Result<Webhook> {
        transaction!(self.db, |c| update(c, id, patch, owner, actor))
    }

    async fn delete_webhook(&self, id: Uuid, owner: WebhookOwner, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| delete(c, id, owner, actor))
    }

    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        keep_old_until: Timestamp,
        owner: WebhookOwner,
        actor: &Actor,
    ) -> Result<()> {
        transaction!(self.db, |c| rotate(
            c,
            id,
            secret,
            keep_old_until,
            owner,
            actor
        ))
    }

    async fn ping_webhook(&self, id: Uuid, owner: WebhookOwner) -> Result<i64> {
        transaction!(self.db, |c| ping(c, id, owner))
    }

    async fn list_deliveries(
        &self,
        id: Uuid,
        q: &DeliveryQuery,
        owner: WebhookOwner,
    ) -> Result<Page<Delivery>> {
        let mut conn = self.db.read().await?;
        find(&mut *conn, id, owner).await?;
        let sql = format!(
            "{DELIVERY_COLUMNS}where webhook_id = $1 \
               and (cast($2 as text) is null or status = $2) \
               and (cast($3 as bigint) is null or id < $3) \
             order by id desc limit $4"
        );
        let stmt = Stmt::new(sql)
            .bind(id)
            .bind(q.status)
            .bind(q.before)
            .bind(i64::from(q.limit) + 1)
            .bind(super::deliveries::parked());
        let rows: Vec<Delivery> = conn.fetch_all(stmt).await?;
        Ok(page(rows, q.limit, |d| d.id.to_string()))
    }

    async fn redeliver(&self, id: Uuid, delivery: i64, owner: WebhookOwner) -> Result<()> {
        transaction!(self.db, |c| redeliver(c, id, delivery, owner))
    }
}
