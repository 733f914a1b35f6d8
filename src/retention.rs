//! The retention job: every second it applies the retention policies that are due, a
//! bounded part of each plan per run, on whichever replica takes a policy first (`for update
//! skip locked`). Objects of the artifacts it erased are deleted after each commit (and
//! retried in the background when the store cannot be reached). Time is the app's clock.
//! `MODELREG_RETENTION=false` turns it off.

use crate::blob::BlobStore;
use crate::clock::Clock;
use crate::domain::retention::Action;
use crate::error::Result;
use crate::store::{RetentionRun, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs per pass at most (a run is one model's transaction); a full pass is followed by
/// another at once.
pub const PASS: u32 = 16;
const TICK: Duration = Duration::from_secs(1);

/// Applies the policies due now (at most [`PASS`] runs), then deletes the erased objects.
pub async fn pass(
    store: &dyn Store,
    blobs: &BlobStore,
    clock: &Clock,
    interval: Duration,
) -> Result<Vec<RetentionRun>> {
    let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    let runs = store.apply_retention(clock.now(), interval, PASS).await?;
    for run in &runs {
        for action in [Action::Fail, Action::Archive, Action::Erase] {
            let n = run.done.iter().filter(|d| d.action == action).count();
            if n > 0 {
                let name = match action {
                    Action::Fail => "fail",
                    Action::Archive => "archive",
                    Action::Erase => "erase",
                };
                metrics::counter!("modelreg_retention_actions_total", "action" => name)
                    .increment(n as u64);
            }
        }
        if !run.done.is_empty() {
            tracing::info!(model = %run.model, actions = run.done.len(), left = run.left, "retention applied");
        }
        if !run.objects.is_empty() {
            crate::gc::delete_erased(store, blobs, run.objects.clone()).await;
        }
    }
    Ok(runs)
}

/// Starts the job; it stops when `stop` turns true, after the run in hand.
pub fn spawn(
    store: Arc<dyn Store>,
    blobs: BlobStore,
    clock: Clock,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = match pass(store.as_ref(), &blobs, &clock, interval).await {
                Ok(runs) if runs.len() == PASS as usize => Duration::ZERO,
                Ok(_) => TICK,
                Err(e) => {
                    tracing::warn!(error = %e, "retention policies could not be applied; retrying");
                    TICK
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    })
}
