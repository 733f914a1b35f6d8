//! The dispatcher's side of the outbox: claim due deliveries under a lease, record the
//! attempts' outcomes, prune the log.
//!
//! A claim first writes the deliveries of newly logged events (see [`super::outbox`]), then
//! leases the heads of queues: due, unleased deliveries of enabled webhooks whose earlier
//! deliveries (same webhook, same model) are all done, oldest first; on Postgres with
//! `for update skip locked`, so concurrent dispatchers in several processes each take other
//! rows. With each head come the deliveries parked behind it, in event order, to be sent one
//! after the other: a queue's run. The head's lease (a claim id and an expiry) covers the run:
//! nothing behind a pending head is claimed by anyone else, a process that dies mid-run leaves
//! the queue to whichever claims its head once the lease has run out (sending again, with the
//! same `webhook-id`s, what it had sent), and a late outcome of a lost lease is not recorded
//! over another's.

use super::sql::{Conn, Stmt};
use super::{Actor, Backend, Event, NewEvent, SqlStore, claims, events, outbox};
use crate::domain::time::Timestamp;
use crate::error::Result;
use async_trait::async_trait;
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
    pub event_id: Option<i64>,
    pub kind: String,
    pub attempts: i64,
    /// Waiting behind the delivery before it (every one of a run but its head).
    pub parked: bool,
    /// Its webhook's receiver answers slowly: the run takes a slot of the slow lane.
    pub slow: bool,
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

/// What one claim may take (see `claim_deliveries`).
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Runs of prompt receivers (and receivers not timed yet).
    pub prompt: u32,
    /// Runs of slow receivers.
    pub slow: u32,
    /// Deliveries of one queue sent together, at most.
    pub run: u32,
    /// Heads of one webhook leased at once, at most, in every process together.
    pub per_webhook: u32,
    /// A receiver whose runs take this long on average (milliseconds) is slow.
    pub slow_ms: i64,
}

/// One attempt, to record. The attempts of a run are recorded together, under its head's
/// lease.
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
    /// How long the attempt took, in milliseconds.
    pub took_ms: i64,
}

/// When a delivery queued behind another is due: never, until the one before it is done (see
/// the outbox, which writes it).
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
    /// Queues the deliveries of new events, then leases queue heads until `lease_until`,
    /// fairly between webhooks and within `limits`, each with up to `run - 1` deliveries
    /// parked behind it: runs, each in the order to send.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limits: ClaimLimits,
    ) -> Result<Vec<Vec<Claimed>>>;
    /// Records the attempts made of a run, in order (those after the last attempt stay
    /// queued); `false` when the run's lease had been lost (nothing is written).
    async fn record_attempts(&self, attempts: &[Attempt]) -> Result<bool>;
    /// Whether any delivery is due and unleased at `now`, or any event waits to be queued (a
    /// read, to skip needless claims).
    async fn deliveries_due(&self, now: Timestamp) -> Result<bool>;
    /// The earliest retry scheduled after `now`.
    async fn next_retry_at(&self, now: Timestamp) -> Result<Option<Timestamp>>;
    /// Deletes up to `batch` deliveries: succeeded ones delivered before `succeeded`, failed
    /// ones last tried before `failed`; how many.
    async fn prune_deliveries(
        &self,
        succeeded: Timestamp,
        failed: Timestamp,
        batch: u64,
    ) -> Result<u64>;
    /// Deliveries waiting to be made.
    async fn pending_deliveries(&self) -> Result<i64>;
    /// Makes due the parked deliveries of queues with nothing ahead of them any more (a
    /// safety net: finishing a delivery makes the next one due in the same transaction).
    async fn unpark_orphans(&self, now: Timestamp) -> Result<u64>;
    /// A signal that fires when deliveries are queued (by this process or another).
    async fn outbox_signal(&self) -> Result<Box<dyn OutboxSignal>>;
}

/// Records a run's attempts (see `record_attempts`).
async fn record<C: Conn>(conn: &mut C, attempts: &[Attempt]) -> Result<bool> {
    let Some(head) = attempts.first() else {
        return Ok(true);
    };
    let gone = attempts.iter().any(|a| a.outcome == Outcome::Gone);
    if C::ROW_LOCKS {
        // Waits for an outbox round writing this webhook's deliveries, whose new ones then
        // are seen below when the queue's next delivery is made due.
        let mode = if gone { "no key update" } else { "share" };
        let stmt = Stmt::new(format!("select 1 from webhooks where id = $1 for {mode}"))
            .bind(head.webhook_id);
        conn.fetch_optional::<(i32,)>(stmt).await?;
    }
    for (i, a) in attempts.iter().enumerate() {
        let (status, next, delivered) = match a.outcome {
            Outcome::Delivered => ("succeeded", None, Some(a.at)),
            Outcome::Retry(next) => ("pending", Some(next), None),
            Outcome::Failed | Outcome::Gone => ("failed", None, None),
        };
        // The head holds the lease; those behind it were only ever claimed with it.
        let held = if i == 0 {
            "lease_id = $2"
        } else {
            "(lease_id is null or lease_id = $2) and status = 'pending'"
        };
        let stmt = Stmt::new(format!(
            "update webhook_deliveries set attempts = attempts + 1, last_status_code = $3, \
                 last_error = $4, last_attempt_at = $5, status = $6, \
                 next_attempt_at = coalesce($7, next_attempt_at), delivered_at = $8, \
                 last_failure_at = case when $6 = 'succeeded' then last_failure_at else $5 end, \
                 lease_id = null, lease_until = null \
             where id = $1 and {held}"
        ))
        .bind(a.delivery)
        .bind(a.lease_id)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.clone())
        .bind(a.at)
        .bind(status)
        .bind(next)
        .bind(delivered);
        if conn.execute(stmt).await? == 0 && i == 0 {
            return Ok(false);
        }
    }
    // The receiver's speed: a moving average of its runs' slowest attempts.
    let took = attempts.iter().map(|a| a.took_ms).max().unwrap_or(0);
    let stmt = Stmt::new(
        "insert into webhook_speeds (webhook_id, attempt_ms, updated_at) values ($1, $2, $3) \
         on conflict (webhook_id) do update \
            set attempt_ms = (webhook_speeds.attempt_ms + excluded.attempt_ms) / 2, \
                updated_at = excluded.updated_at",
    )
    .bind(head.webhook_id)
    .bind(took)
    .bind(head.at);
    conn.execute(stmt).await?;
    // The queue's first pending delivery is due now, if it was parked behind those done.
    let last = attempts.last().unwrap_or(head);
    let stmt = Stmt::new(
        "update webhook_deliveries set next_attempt_at = $3 where id = ( \
           select id from webhook_deliveries \
            where webhook_id = $1 and ordering_key = $2 and status = 'pending' \
              and event_id is not null \
            order by event_id limit 1) \
           and next_attempt_at >= $4",
    )
    .bind(head.webhook_id)
    .bind(head.ordering_key.as_str())
    .bind(last.at)
    .bind(parked());
    conn.execute(stmt).await?;
    if let Some(a) = attempts.iter().find(|a| a.outcome == Outcome::Gone) {
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
        limits: ClaimLimits,
    ) -> Result<Vec<Vec<Claimed>>> {
        // Events still committing may hold lower ids than ones already visible: the outbox
        // stops at the log's horizon, so that one model's events are queued, and go out, in
        // id order. Read outside the claim's transaction, whose view of the sessions in
        // progress would not change while it waits.
        let horizon = self.db.read().await?.event_horizon().await?;
        transaction!(self.db, |c| async move {
            outbox::advance(c, horizon).await?;
            claims::claim(c, now, lease_until, &limits).await
        })
    }

    async fn record_attempts(&self, attempts: &[Attempt]) -> Result<bool> {
        transaction!(self.db, |c| record(c, attempts))
    }

    async fn deliveries_due(&self, now: Timestamp) -> Result<bool> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(
            "select count(*) from (select 1 from webhook_deliveries \
              where status = 'pending' and next_attempt_at <= $1 \
                and (lease_until is null or lease_until <= $1) limit 1) due \
             union all \
             select count(*) from webhooks \
              where enabled and event_cursor < (select coalesce(max(id), 0) from events)",
        )
        .bind(now);
        let counts: Vec<(i64,)> = conn.fetch_all(stmt).await?;
        Ok(counts.iter().any(|(n,)| *n > 0))
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

    async fn prune_deliveries(
        &self,
        succeeded: Timestamp,
        failed: Timestamp,
        batch: u64,
    ) -> Result<u64> {
        let stmt = Stmt::new(
            "delete from webhook_deliveries where id in ( \
               select id from webhook_deliveries where status = 'succeeded' and delivered_at < $1 \
               union all \
               select id from webhook_deliveries where status = 'failed' and last_attempt_at < $2 \
               limit $3)",
        )
        .bind(succeeded)
        .bind(failed)
        .bind(i64::try_from(batch).unwrap_or(i64::MAX));
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
