//! Packs metric points left in rows into compressed blocks, in the background: points stored
//! before blocks existed (after an upgrade), and the open tails of versions that are no longer
//! pending. Each series is packed in short, bounded transactions under its lock (skipped when
//! another replica holds it), so ingestion and reads go on meanwhile and several replicas may
//! run this at once. A series that cannot be packed is set aside with its error (the gauge
//! `modelreg_compactor_failed_series`, and `modelreg verify`), never retried first forever.
//! `MODELREG_COMPACTOR=false` turns it off.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Series packed per pass.
const PASS: i64 = 64;
/// Pause between passes that found less than a full pass of work.
const IDLE: Duration = Duration::from_secs(10);

/// Starts the compactor; it stops when `stop` turns true, after the series in hand.
pub fn spawn(
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut packed = 0usize;
        loop {
            let pass = store.compact_pending(PASS).await;
            if let Ok(n) = store.compaction_failures().await {
                metrics::gauge!("modelreg_compactor_failed_series").set(n as f64);
            }
            let wait = match pass {
                Ok(n) if n as i64 == PASS => {
                    packed += n;
                    Duration::ZERO
                }
                Ok(n) => {
                    packed += n;
                    if packed > 0 {
                        tracing::info!(series = packed, "metric points packed into blocks");
                        packed = 0;
                    }
                    IDLE
                }
                Err(e) => {
                    tracing::warn!(error = %e, "packing metric points failed; retrying later");
                    IDLE
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    })
}
