//! The webhook dispatcher: a task inside `modelreg serve` that works off the outbox.
//!
//! It claims due deliveries from the database under a lease (so several processes share the
//! queue and each attempt is made by one of them): runs of up to [`RUN`] deliveries of one
//! webhook and model, each run sent in order by a task of its own (at most `concurrency` at
//! once), and records the outcomes together: delivered, retried later with exponential
//! backoff, failed for good, or, on 410, failed with the webhook disabled. A run stops at its
//! first failure, so that nothing overtakes a delivery that is retried. It wakes when this
//! process commits a write, when another process says it did (Postgres `LISTEN`), when a run
//! ends, when a retry falls due, and at least every poll interval.
//! Deliveries are at least once: a process that dies mid-attempt leaves the delivery to
//! another once its lease runs out, which sends it again with the same `webhook-id`.

pub mod sender;

use crate::config::WebhookConfig;
use crate::domain::time::{self, Timestamp};
use crate::domain::webhook::{RetryPolicy, signature_header};
use crate::store::{Attempt, Claimed, Outcome, Store};
use sender::{Answer, Sender};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How often the queue-depth gauge is refreshed, and old deliveries pruned.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Deliveries of one queue claimed and sent together, at most.
const RUN: u32 = 64;
/// Claims are this far apart at least: a stream of commits (metric batches, say) wakes the
/// dispatcher for each, and each wake-up costs a read.
const CLAIM_GAP: Duration = Duration::from_millis(5);

/// Starts the dispatcher; it stops when `stop` turns true, after in-flight attempts end (or
/// their timeout passes).
pub fn spawn(
    store: Arc<dyn Store>,
    settings: WebhookConfig,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, reqwest::Error> {
    let sender = Sender::new(settings.timeout, settings.allow_private)?;
    let dispatcher = Dispatcher {
        store,
        sender,
        policy: RetryPolicy {
            base: settings.retry_base,
            cap: Duration::from_secs(2 * 3600),
            give_up_after: settings.retry_for,
        },
        settings,
    };
    Ok(tokio::spawn(dispatcher.run(stop)))
}

struct Dispatcher {
    store: Arc<dyn Store>,
    sender: Sender,
    policy: RetryPolicy,
    settings: WebhookConfig,
}

impl Dispatcher {
    /// A lease outlasts an attempt's timeout, so that only a dead process loses one.
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.timeout * 2 + Duration::from_secs(5))
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // Listen before the first claim, so nothing queued in between goes unnoticed.
        let mut signal = loop {
            match this.store.outbox_signal().await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher cannot listen yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        let slots = Arc::new(Semaphore::new(this.settings.concurrency as usize));
        let mut attempts = JoinSet::new();
        let (mut gauged, mut pruned): (Option<Instant>, Option<Instant>) = (None, None);
        let mut claimed_at: Option<Instant> = None;
        tracing::info!(
            concurrency = this.settings.concurrency,
            "webhook dispatcher started"
        );
        while !*stop.borrow() {
            if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                this.prune().await;
                pruned = Some(Instant::now());
            }
            if gauged.is_none_or(|t| t.elapsed() >= GAUGE_EVERY) {
                this.check_queues().await;
                gauged = Some(Instant::now());
            }
            let free = slots.available_permits();
            if free > 0 {
                if let Some(gap) = claimed_at.and_then(|t| CLAIM_GAP.checked_sub(t.elapsed())) {
                    tokio::time::sleep(gap).await;
                }
                claimed_at = Some(Instant::now());
                for run in this.claim(free).await {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        break;
                    };
                    let this = this.clone();
                    attempts.spawn(async move {
                        this.send_run(run).await;
                        drop(slot);
                    });
                }
            }
            let wait = this.wait().await;
            tokio::select! {
                () = signal.changed() => {}
                Some(_) = attempts.join_next() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // Let attempts in flight finish and record their outcome.
        let grace = self_timeout(&this.settings);
        if tokio::time::timeout(grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            attempts.abort_all();
        }
        tracing::info!("webhook dispatcher stopped");
    }

    /// Claims the runs of up to `free` queues; none when nothing is due or the database
    /// fails (the next round tries again).
    async fn claim(&self, free: usize) -> Vec<Vec<Claimed>> {
        let now = time::now();
        match self.store.deliveries_due(now).await {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher cannot read the queue");
                return Vec::new();
            }
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        match self
            .store
            .claim_deliveries(now, now + self.lease(), limit, RUN)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher cannot claim deliveries");
                Vec::new()
            }
        }
    }

    /// How long to sleep when nothing wakes the dispatcher: until the next retry, at most
    /// the poll interval.
    async fn wait(&self) -> Duration {
        let now = time::now();
        let poll = self.settings.poll;
        match self.store.next_retry_at(now).await {
            Ok(Some(at)) => (at - now).to_std().unwrap_or_default().min(poll),
            _ => poll,
        }
    }

    async fn prune(&self) {
        let retention = chrono::Duration::from_std(self.settings.retention)
            .unwrap_or_else(|_| chrono::Duration::days(7));
        match self.store.prune_deliveries(time::now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned old succeeded webhook deliveries"),
            Err(e) => tracing::warn!(error = %e, "cannot prune webhook deliveries"),
        }
    }

    /// The queue-depth gauge, and the queues' safety net: a queue whose first delivery is
    /// parked behind nothing (a redelivery, or an outbox round and a run's end crossing where
    /// row locks do not order them) is made due here, at most a few seconds late.
    async fn check_queues(&self) {
        if let Ok(n) = self.store.pending_deliveries().await {
            metrics::gauge!("modelreg_webhook_queue_depth").set(n as f64);
        }
        match self.store.unpark_orphans(time::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deliveries = n, "parked webhook deliveries made due"),
            Err(e) => tracing::warn!(error = %e, "cannot check webhook delivery queues"),
        }
    }

    /// Sends a run in order, while each is delivered and the first attempt's timeout has not
    /// passed (so the last attempt ends within the lease), and records what was attempted.
    async fn send_run(&self, run: Vec<Claimed>) {
        let started = Instant::now();
        let mut attempts = Vec::with_capacity(run.len());
        for d in &run {
            let attempt = self.attempt(d).await;
            let go_on =
                attempt.outcome == Outcome::Delivered && started.elapsed() < self.settings.timeout;
            attempts.push(attempt);
            if !go_on {
                break;
            }
        }
        match self.store.record_attempts(&attempts).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery = run[0].id,
                "webhook run outlived its lease; another process owns the deliveries now"
            ),
            // The lease runs out and the run is sent again (with the same webhook-ids).
            Err(e) => {
                tracing::warn!(delivery = run[0].id, error = %e, "cannot record webhook attempts")
            }
        }
    }

    /// Makes one attempt; its outcome, to record.
    async fn attempt(&self, d: &Claimed) -> Attempt {
        let timestamp = time::now().timestamp();
        let id = d.id.to_string();
        let body = payload(d).to_string().into_bytes();
        let signature =
            signature_header(d.secrets.iter().map(String::as_str), &id, timestamp, &body);
        let started = Instant::now();
        let answer = self
            .sender
            .send(&d.url, &id, timestamp, &signature, body)
            .await;
        metrics::histogram!("modelreg_webhook_attempt_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let at = time::now();
        let outcome = self.outcome(d, &answer, at);
        let label = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Failed => "failed",
            Outcome::Gone => "gone",
        };
        metrics::counter!("modelreg_webhook_attempts_total", "outcome" => label).increment(1);
        let done = match outcome {
            Outcome::Delivered => Some("delivered"),
            Outcome::Failed | Outcome::Gone => Some("failed"),
            Outcome::Retry(_) => None,
        };
        if let Some(done) = done {
            metrics::counter!("modelreg_webhook_deliveries_total", "outcome" => done).increment(1);
        }
        tracing::info!(
            webhook = %d.webhook_id,
            delivery = d.id,
            attempt = d.attempts + 1,
            status = answer.status,
            outcome = label,
            "webhook attempt"
        );
        Attempt {
            delivery: d.id,
            lease_id: d.lease_id,
            webhook_id: d.webhook_id,
            ordering_key: d.ordering_key.clone(),
            at,
            status_code: answer.status,
            error: answer.error,
            outcome,
        }
    }

    fn outcome(&self, d: &Claimed, answer: &Answer, at: Timestamp) -> Outcome {
        match answer.status {
            Some(s) if (200..300).contains(&s) => Outcome::Delivered,
            Some(410) => Outcome::Gone,
            _ => {
                let attempts = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
                match self
                    .policy
                    .next_attempt(d.queued_at, at, attempts, jitter())
                {
                    Some(next) => Outcome::Retry(next),
                    None => Outcome::Failed,
                }
            }
        }
    }
}

fn self_timeout(settings: &WebhookConfig) -> Duration {
    settings.timeout + Duration::from_secs(1)
}

/// A uniform number in `[0, 1)`.
fn jitter() -> f64 {
    f64::from(getrandom::u32().unwrap_or(0)) / (f64::from(u32::MAX) + 1.0)
}

/// The request body: `{type, timestamp, data}`, `data` being the event (or, for a ping, the
/// webhook and delivery).
pub fn payload(d: &Claimed) -> Value {
    match &d.event {
        Some(e) => {
            let detail = |k: &str| e.details.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "type": e.action,
                "timestamp": time::rfc3339::format(&e.at),
                "data": {
                    "event_id": e.event_id,
                    "action": e.action,
                    "model": e.model,
                    "version": e.version,
                    "stage": e.stage,
                    "from_version": detail("from_version"),
                    "to_version": detail("to_version"),
                    "actor": e.actor,
                    "reason": detail("reason"),
                    "at": time::rfc3339::format(&e.at),
                    "details": e.details,
                }
            })
        }
        None => json!({
            "type": d.kind,
            "timestamp": time::rfc3339::format(&time::now()),
            "data": {"webhook_id": d.webhook_id, "delivery_id": d.id},
        }),
    }
}
