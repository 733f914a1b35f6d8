//! The webhook dispatcher: a task inside `modelreg serve` that works off the outbox.
//!
//! It claims due deliveries from the database under a lease (so several processes share the
//! queue and each attempt is made by one of them): runs of up to [`RUN`] deliveries of one
//! webhook and model, each run sent in order by a task of its own, and records the outcomes
//! together: delivered, retried later with exponential backoff, failed for good, or, on 410,
//! failed with the webhook disabled. A run stops at its first failure, so that nothing
//! overtakes a delivery that is retried. It wakes when this process commits a write, when
//! another process says it did (Postgres `LISTEN`), when a run ends or leaves the prompt
//! lane, when a retry falls due, and at least every poll interval.
//!
//! Fair between webhooks, so that a slow or hostile receiver delays only its own queue:
//! - two lanes of `concurrency` slots each: prompt receivers (and those not timed yet) and
//!   slow ones, whose runs take `slow_after` or more on average. A run still waiting after
//!   `slow_after` gives its prompt slot back and finishes in the slow lane, so a wave of new
//!   receivers that never answer holds the prompt lane for `slow_after`, not the timeout;
//! - each claim takes every webhook's first due queue before any webhook's second, fastest
//!   receivers first, and at most `per_webhook` runs of one webhook are in flight in all
//!   processes together;
//! - a token owns at most `max_per_token` webhooks, and a webhook has one ping pending at most.
//!
//! Deliveries are at least once: a process that dies mid-attempt leaves the delivery to
//! another once its lease runs out, which sends it again with the same `webhook-id`.

mod lanes;
pub mod sender;

use crate::config::WebhookConfig;
use crate::domain::time::{self, Timestamp};
use crate::domain::webhook::{RetryPolicy, signature_header};
use crate::store::{Attempt, ClaimLimits, Claimed, Outcome, Store};
use lanes::Lanes;
use sender::{Answer, Sender};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

/// How often the queue-depth gauge is refreshed, and old deliveries pruned.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Deliveries deleted by one statement of a prune.
const PRUNE_BATCH: u64 = 5_000;
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
    let sender = Sender::new(
        settings.timeout,
        settings.connect_timeout,
        settings.allow_private,
    )?;
    let dispatcher = Dispatcher {
        store,
        sender,
        policy: RetryPolicy {
            base: settings.retry_base,
            cap: Duration::from_secs(2 * 3600),
            give_up_after: settings.retry_for,
        },
        lanes: Lanes::new(settings.concurrency as usize),
        settings,
    };
    Ok(tokio::spawn(dispatcher.run(stop)))
}

struct Dispatcher {
    store: Arc<dyn Store>,
    sender: Sender,
    policy: RetryPolicy,
    settings: WebhookConfig,
    lanes: Lanes,
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
            let prompt = this.lanes.prompt.available_permits();
            let slow = this.lanes.slow.available_permits();
            if prompt + slow > 0 {
                if let Some(gap) = claimed_at.and_then(|t| CLAIM_GAP.checked_sub(t.elapsed())) {
                    tokio::time::sleep(gap).await;
                }
                claimed_at = Some(Instant::now());
                for run in this.claim(prompt, slow).await {
                    let Some(first) = run.first() else { continue };
                    // A claim takes no more runs of a lane than it has free slots, and only
                    // this loop takes slots; a receiver whose speed was recorded between the
                    // claim's two reads may land in the other lane's free slot. With neither
                    // free (not expected), the run waits for its lease to run out.
                    let Some((slot, prompt)) = this.lanes.take(!first.slow) else {
                        continue;
                    };
                    let this = this.clone();
                    attempts.spawn(async move { this.send_in_lane(run, slot, prompt).await });
                }
            }
            let wait = this.wait().await;
            tokio::select! {
                () = signal.changed() => {}
                Some(_) = attempts.join_next() => {}
                () = this.lanes.freed.notified() => {}
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

    /// Sends a run holding a slot of its lane; a prompt one that is still waiting after
    /// `slow_after` finishes in the slow lane.
    async fn send_in_lane(&self, run: Vec<Claimed>, slot: OwnedSemaphorePermit, prompt: bool) {
        let slow = !prompt;
        let mut slot = Some(slot);
        let sending = self.send_run(run);
        let mut sending = std::pin::pin!(sending);
        if !slow {
            tokio::select! {
                () = &mut sending => return,
                () = tokio::time::sleep(self.settings.slow_after) => {
                    self.lanes.leave_prompt(&mut slot);
                }
            }
        }
        sending.await;
        if !slow && slot.is_none() {
            self.lanes.moved_done();
        }
    }

    /// Claims up to `prompt` runs of prompt receivers and `slow` of slow ones; none when
    /// nothing is due or the database fails (the next round tries again).
    async fn claim(&self, prompt: usize, slow: usize) -> Vec<Vec<Claimed>> {
        let now = time::now();
        match self.store.deliveries_due(now).await {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher cannot read the queue");
                return Vec::new();
            }
        }
        let limits = ClaimLimits {
            prompt: u32::try_from(prompt).unwrap_or(u32::MAX),
            slow: u32::try_from(slow).unwrap_or(u32::MAX),
            run: RUN,
            per_webhook: self.settings.per_webhook,
            slow_ms: i64::try_from(self.settings.slow_after.as_millis()).unwrap_or(i64::MAX),
        };
        match self
            .store
            .claim_deliveries(now, now + self.lease(), limits)
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

    /// Deletes succeeded and failed deliveries past their retention, a bounded batch a
    /// statement until none is left.
    async fn prune(&self) {
        let keep = |d: Duration, days| {
            chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::days(days))
        };
        let now = time::now();
        let succeeded = now - keep(self.settings.retention, 7);
        let failed = now - keep(self.settings.failed_retention, 30);
        let mut pruned = 0;
        loop {
            match self
                .store
                .prune_deliveries(succeeded, failed, PRUNE_BATCH)
                .await
            {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune webhook deliveries");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "pruned webhook deliveries past their retention");
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
        let took = started.elapsed();
        metrics::histogram!("modelreg_webhook_attempt_duration_seconds").record(took.as_secs_f64());
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
            took_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
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
