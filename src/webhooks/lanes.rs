//! The dispatcher's two lanes of attempt slots: prompt receivers and slow ones (see the
//! module above), and the runs that moved from the first to the second while waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The slots of the two lanes, and the runs that left the prompt lane for the slow one
/// after they were started (bounded: at most [`MOVED_PER_SLOT`] per slot of a lane).
pub(super) struct Lanes {
    pub prompt: Arc<Semaphore>,
    pub slow: Arc<Semaphore>,
    moved: AtomicUsize,
    moved_cap: usize,
    /// Wakes the dispatcher when a prompt slot is given back by a run that became slow.
    pub freed: Notify,
}

const MOVED_PER_SLOT: usize = 4;

impl Lanes {
    pub fn new(slots: usize) -> Self {
        Self {
            prompt: Arc::new(Semaphore::new(slots)),
            slow: Arc::new(Semaphore::new(slots)),
            moved: AtomicUsize::new(0),
            moved_cap: slots * MOVED_PER_SLOT,
            freed: Notify::new(),
        }
    }

    /// A slot of the prompt lane (`prompt`) or the slow one, else of the other; whether it
    /// is a prompt one.
    pub fn take(&self, prompt: bool) -> Option<(OwnedSemaphorePermit, bool)> {
        let (first, second) = if prompt {
            (&self.prompt, &self.slow)
        } else {
            (&self.slow, &self.prompt)
        };
        if let Ok(slot) = first.clone().try_acquire_owned() {
            return Some((slot, prompt));
        }
        second
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|s| (s, !prompt))
    }

    /// A run past `slow_after` in the prompt lane: gives its slot back (when the slow lane's
    /// overflow has room), so a prompt receiver's run can start.
    pub fn leave_prompt(&self, slot: &mut Option<OwnedSemaphorePermit>) {
        let moved = self.moved.fetch_add(1, Ordering::SeqCst);
        if moved >= self.moved_cap {
            self.moved.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        *slot = None;
        metrics::counter!("modelreg_webhook_runs_moved_to_slow_lane_total").increment(1);
        self.freed.notify_one();
    }

    pub fn moved_done(&self) {
        self.moved.fetch_sub(1, Ordering::SeqCst);
    }
}
