//! The dispatcher's side of the outbox: claim due deliveries under a lease, record each
//! attempt's outcome, prune the log.
//!
//! A claim is one statement: due, unleased deliveries of enabled webhooks whose earlier
//! deliveries (same webhook, same model) are all done, oldest first; on Postgres with
//! `for update skip locked`, so concurrent dispatchers in several processes each take other
//! rows. The lease (a claim id and an expiry) is what an attempt's outcome is recorded
//! against: a process that dies mid-attempt leaves the delivery to whichever claims it once
//! the lease has run out, and a late outcome of a lost lease is not recorded over another's.

use super::rows::EventRow;
use super::sql::{Conn, Stmt};
use super::{Actor, Backend, Event, NewEvent, SqlStore, events};
use crate::domain::time::Timestamp;
use crate::error::Result;
use async_trait::async_trait;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// A claimed delivery with what its attempt needs: where to send it, how to sign it, and the
/// event it carries (`None` for a ping).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub lease_id: Uuid,
    pub webhook_id: Uuid,
    /// Its queue: the event's model ('' for events about no model and pings).
    pub ordering_key: String,
    pub kind: String,
    pub attempts: i64,
    pub queued_at: Timestamp,
    pub url: String,
    /// The secrets that sign it: the current one, and the previous one during a rotation.
    pub secrets: Vec<String>,
    pub event: Option<Event>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Failed; tried again then.
    Retry(Timestamp),
    /// Failed for good: retries ran out.
    Failed,
    /// The receiver answered 410 Gone: the delivery fails and the webhook is disabled.
    Gone,
}

/// One attempt, to record.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery: i64,
    pub lease_id: Uuid,
    pub webhook_id: Uuid,
    pub ordering_key: String,
    pub at: Timestamp,
    pub status_code: Option<u16>,
    /// What went wrong, cut to 1 KiB; never a secret or a body.
    pub error: Option<String>,
    pub outcome: Outcome,
}

/// When a delivery queued behind another is due: never, until the one before it is done (see
/// the outbox trigger, which writes the same time).
pub(crate) fn parked() -> Timestamp {
    chrono::DateTime::from_timestamp(253_402_300_799, 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Wakes a dispatcher when deliveries may have become due.
#[async_trait]
pub trait OutboxSignal: Send {
    /// Resolves at the next signal (or after a failure to listen, so that the caller polls).
    async fn changed(&mut self);
}

#[async_trait]
pub trait DeliveryStore {
    /// Leases up to `limit` due deliveries until `lease_until`.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Claimed>>;
    /// Records an attempt; `false` when the lease had been lost (nothing is written).
    async fn record_attempt(&self, attempt: &Attempt) -> Result<bool>;
    /// Whether any delivery is due and unleased at `now` (a read, to skip needless claims).
    async fn deliveries_due(&self, now: Timestamp) -> Result<bool>;
    /// The earliest retry scheduled after `now`.
    async fn next_retry_at(&self, now: Timestamp) -> Result<Option<Timestamp>>;
    /// Deletes succeeded deliveries delivered before `before`; how many.
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64>;
    /// Deliveries waiting to be made.
    async fn pending_deliveries(&self) -> Result<i64>;
    /// Makes due the parked deliveries of queues with nothing ahead of them any more (a
    /// safety net: finishing a delivery makes the next one due in the same transaction).
    async fn unpark_orphans(&self, now: Timestamp) -> Result<u64>;
    /// A signal that fires when deliveries are queued (by this process or another).
    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>>;
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    lease_id: Uuid,
    webhook_id: Uuid,
    ordering_key: String,
    event_id: Option<i64>,
    kind: String,
    attempts: i64,
    queued_at: Timestamp,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<Timestamp>,
    action: Option<String>,
    model: Option<String>,
    version: Option<i64>,
    stage: Option<String>,
    actor: Option<String>,
    actor_token_id: Option<Uuid>,
    at: Option<Timestamp>,
    details: Option<Json<Value>>,
}

impl ClaimRow {
    fn into_claimed(self, now: Timestamp) -> Claimed {
        let event = match (self.event_id, self.action, self.actor, self.at) {
            (Some(id), Some(action), Some(actor), Some(at)) => Some(Event::from(EventRow {
                id,
                action,
                model: self.model,
                version: self.version,
                stage: self.stage,
                actor,
                actor_token_id: self.actor_token_id,
                at,
                details: self.details.unwrap_or(Json(Value::Null)),
            })),
            _ => None,
        };
        let mut secrets = vec![self.secret];
        if let (Some(old), Some(until)) = (self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(old);
        }
        Claimed {
            id: self.id,
            lease_id: self.lease_id,
            webhook_id: self.webhook_id,
            ordering_key: self.ordering_key,
            kind: self.kind,
            attempts: self.attempts,
            queued_at: self.queued_at,
            url: self.url,
            secrets,
            event,
        }
    }
}

/// Claims due deliveries of events up to `horizon` (see `claim_deliveries`).
async fn claim<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
    horizon: Option<i64>,
) -> Result<Vec<Claimed>> {
    let lock = if C::ROW_LOCKS {
        " for update of d skip locked"
    } else {
        ""
    };
    let lease_id = Uuid::now_v7();
    let sql = format!(
        "update webhook_deliveries set lease_id = $2, lease_until = $3 where id in ( \
           select d.id from webhook_deliveries d join webhooks w on w.id = d.webhook_id \
            where d.status = 'pending' and w.enabled and d.next_attempt_at <= $1 \
              and (d.lease_until is null or d.lease_until <= $1) \
              and (d.event_id is null or cast($5 as bigint) is null or d.event_id <= $5) \
              and (d.event_id is null or not exists ( \
                    select 1 from webhook_deliveries p \
                     where p.webhook_id = d.webhook_id and p.ordering_key = d.ordering_key \
                       and p.status = 'pending' and p.event_id < d.event_id)) \
            order by d.next_attempt_at, d.id limit $4{lock}) \
         returning id"
    );
    let stmt = Stmt::new(sql)
        .bind(now)
        .bind(lease_id)
        .bind(lease_until)
        .bind(i64::from(limit))
        .bind(horizon);
    let ids: Vec<(i64,)> = conn.fetch_all(stmt).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select d.id, d.lease_id, d.webhook_id, d.ordering_key, d.event_id, d.type as kind, d.attempts, d.queued_at, \
                w.url, w.secret, w.previous_secret, w.previous_secret_until, \
                e.action, e.model, e.version, e.stage, e.actor, e.actor_token_id, e.at, e.details \
           from webhook_deliveries d join webhooks w on w.id = d.webhook_id \
           left join events e on e.id = d.event_id \
          where {} order by d.next_attempt_at, d.id",
        C::in_list("d.id", "$1")
    );
    let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    let stmt = Stmt::new(sql).bind(super::sql::Arg::I64List(ids));
    let rows: Vec<ClaimRow> = conn.fetch_all(stmt).await?;
    Ok(rows.into_iter().map(|r| r.into_claimed(now)).collect())
}

async fn record<C: Conn>(conn: &mut C, a: &Attempt) -> Result<bool> {
    let (status, next, delivered) = match a.outcome {
        Outcome::Delivered => ("succeeded", None, Some(a.at)),
        Outcome::Retry(next) => ("pending", Some(next), None),
        Outcome::Failed | Outcome::Gone => ("failed", None, None),
    };
    let stmt = Stmt::new(
        "update webhook_deliveries set attempts = attempts + 1, last_status_code = $3, \
             last_error = $4, last_attempt_at = $5, status = $6, \
             next_attempt_at = coalesce($7, next_attempt_at), delivered_at = $8, \
             last_failure_at = case when $6 = 'succeeded' then last_failure_at else $5 end, \
             lease_id = null, lease_until = null \
         where id = $1 and lease_id = $2",
    )
    .bind(a.delivery)
    .bind(a.lease_id)
    .bind(a.status_code.map(i64::from))
    .bind(a.error.clone())
    .bind(a.at)
    .bind(status)
    .bind(next)
    .bind(delivered);
    if conn.execute(stmt).await? == 0 {
        return Ok(false);
    }
    if !matches!(a.outcome, Outcome::Retry(_)) {
        // Done for good: the next delivery of its queue, parked behind it, is due now.
        let stmt = Stmt::new(
            "update webhook_deliveries set next_attempt_at = $3 where id = ( \
               select id from webhook_deliveries \
                where webhook_id = $1 and ordering_key = $2 and status = 'pending' \
                  and next_attempt_at >= $4 \
                order by event_id limit 1)",
        )
        .bind(a.webhook_id)
        .bind(a.ordering_key.as_str())
        .bind(a.at)
        .bind(parked());
        conn.execute(stmt).await?;
    }
    if a.outcome == Outcome::Gone {
        let stmt = Stmt::new(
            "update webhooks set enabled = false, \
                 disabled_reason = 'the receiver answered 410 Gone', updated_at = $2 \
             where id = $1 and enabled",
        )
        .bind(a.webhook_id)
        .bind(a.at);
        if conn.execute(stmt).await? > 0 {
            let details = serde_json::json!({"id": a.webhook_id, "reason": "410 Gone"});
            let event = NewEvent::global("webhook.disabled", a.at, details);
            events::record(conn, event, &Actor::named("dispatcher")).await?;
        }
    }
    Ok(true)
}

#[async_trait]
impl<B: Backend> DeliveryStore for SqlStore<B> {
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        // Events still committing may hold lower ids than ones already visible: deliveries
        // past the log's horizon wait, so that one model's events go out in id order. Read
        // outside the claim's transaction, whose view of the sessions in progress would not
        // change while it waits.
        let horizon = self.db.read().await?.event_horizon().await?;
        transaction!(self.db, |c| claim(c, now, lease_until, limit, horizon))
    }

    async fn record_attempt(&self, attempt: &Attempt) -> Result<bool> {
        transaction!(self.db, |c| record(c, attempt))
    }

    async fn deliveries_due(&self, now: Timestamp) -> Result<bool> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(
            "select count(*) from (select 1 from webhook_deliveries \
              where status = 'pending' and next_attempt_at <= $1 \
                and (lease_until is null or lease_until <= $1) limit 1) due",
        )
        .bind(now);
        Ok(conn.scalar::<i64>(stmt).await? > 0)
    }

    async fn next_retry_at(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(
            "select next_attempt_at from webhook_deliveries \
              where status = 'pending' and next_attempt_at > $1 and next_attempt_at < $2 \
              order by next_attempt_at limit 1",
        )
        .bind(now)
        .bind(parked());
        Ok(conn
            .fetch_optional::<(Timestamp,)>(stmt)
            .await?
            .map(|r| r.0))
    }

    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
        let stmt = Stmt::new(
            "delete from webhook_deliveries where status = 'succeeded' and delivered_at < $1",
        )
        .bind(before);
        transaction!(self.db, |c| c.execute(stmt))
    }

    async fn pending_deliveries(&self) -> Result<i64> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new("select count(*) from webhook_deliveries where status = 'pending'");
        conn.scalar(stmt).await
    }

    async fn unpark_orphans(&self, now: Timestamp) -> Result<u64> {
        let stmt = Stmt::new(
            "update webhook_deliveries set next_attempt_at = $1 \
              where status = 'pending' and next_attempt_at >= $2 and not exists ( \
                select 1 from webhook_deliveries p \
                 where p.webhook_id = webhook_deliveries.webhook_id \
                   and p.ordering_key = webhook_deliveries.ordering_key \
                   and p.status = 'pending' and p.next_attempt_at < $2)",
        )
        .bind(now)
        .bind(parked());
        transaction!(self.db, |c| c.execute(stmt))
    }

    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>> {
        self.db.outbox_signal().await
    }
}
