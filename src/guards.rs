//! The stage guards' evaluator: every second it judges the guards that are due (each every
//! `period`), in bounded passes, on whichever replica gets to them first (a guard is judged
//! by one at a time; `for update skip locked`). Time is the app's clock, so that tests
//! advance it instead of sleeping. `MODELREG_GUARDS=false` turns it off.

use crate::clock::Clock;
use crate::domain::guard::State;
use crate::error::Result;
use crate::store::{GuardPass, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Guards judged per pass at most; a full pass is followed by another at once.
pub const PASS: u32 = 256;
const TICK: Duration = Duration::from_secs(1);

/// Judges the guards due now (at most [`PASS`]).
pub async fn pass(store: &dyn Store, clock: &Clock) -> Result<Vec<GuardPass>> {
    let done = store.evaluate_guards(clock.now(), PASS).await?;
    for p in done.iter().filter(|p| p.state == State::Tripped) {
        metrics::counter!("modelreg_guard_trips_total").increment(1);
        tracing::warn!(
            model = %p.model,
            stage = %p.stage,
            rollback_event_id = ?p.rollback_event_id,
            "stage guard tripped"
        );
    }
    Ok(done)
}

/// Starts the evaluator; it stops when `stop` turns true, after the guard in hand.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = match pass(store.as_ref(), &clock).await {
                Ok(done) if done.len() == PASS as usize => Duration::ZERO,
                Ok(_) => TICK,
                Err(e) => {
                    tracing::warn!(error = %e, "stage guards could not be judged; retrying");
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
