//! The server's open connections, for one decision: at the connection cap, which one gives
//! its slot to a newcomer. The one idle longest (waiting for its first or next request) is
//! asked to close; a connection with a request in progress is never chosen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// Every open connection.
#[derive(Default)]
pub struct Connections {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Arc<Entry>>,
}

/// One connection: whether it is serving a request, since when it is idle, and how to ask
/// it to close.
pub struct Entry {
    pub id: u64,
    busy: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// Notified once when the connection should close (gracefully: it is idle).
    pub evict: Notify,
}

impl Entry {
    fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection, idle from now.
    pub fn add(&self) -> Arc<Entry> {
        let mut inner = self.lock();
        inner.next += 1;
        let entry = Arc::new(Entry {
            id: inner.next,
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        inner.open.insert(entry.id, entry.clone());
        entry
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Whether some connection is idle (and could be asked to close).
    pub fn any_idle(&self) -> bool {
        self.lock().open.values().any(|e| e.idle_since().is_some())
    }

    /// Asks the connection idle longest to close; whether there was one.
    pub fn evict_longest_idle(&self) -> bool {
        let mut inner = self.lock();
        let oldest = inner
            .open
            .values()
            .filter_map(|e| e.idle_since().map(|t| (t, e.id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(entry) = inner.open.remove(&id) {
            entry.evict.notify_one();
        }
        true
    }
}

/// Removes a connection from the registry when its task ends.
pub struct Registered<'a>(pub &'a Connections, pub u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Marks a connection busy while a request is handled; idle again (from now) when dropped.
pub struct Busy(Arc<Entry>);

impl Busy {
    pub fn new(entry: Arc<Entry>) -> Self {
        entry.busy.fetch_add(1, Ordering::SeqCst);
        Self(entry)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_is_evicted_and_a_busy_one_never() {
        let open = Connections::default();
        let first = open.add();
        let second = open.add();
        let third = open.add();
        let _busy = Busy::new(first.clone());
        // Second became idle again after a request: third has been idle longer.
        drop(Busy::new(second.clone()));
        assert!(open.evict_longest_idle());
        assert!(
            futures::FutureExt::now_or_never(third.evict.notified()).is_some(),
            "the connection idle longest was asked to close"
        );
        assert!(open.evict_longest_idle());
        assert!(futures::FutureExt::now_or_never(second.evict.notified()).is_some());
        assert!(!open.any_idle());
        assert!(
            !open.evict_longest_idle(),
            "a busy connection is never evicted"
        );
    }
}
