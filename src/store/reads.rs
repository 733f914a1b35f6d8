//! Where a read goes: a read replica or the primary.
//!
//! The HTTP layer decides per request: an endpoint marked as replica-safe runs its handler
//! inside [`on_replica`], with the commit position the caller must see (the
//! `Modelreg-Consistency` token it sent back, or its own last write); everything else (every
//! write, token checks, reads inside a write's transaction, background jobs) runs outside it
//! and reads from the primary. The Postgres backend honours the route in `read()`; SQLite has
//! no replicas and ignores it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    static ROUTE: Option<Arc<Route>>;
}

/// A request's read route.
#[derive(Debug, Default)]
pub struct Route {
    /// The commit position (a WAL position) a replica must have replayed to serve the reads.
    pub at_least: Option<u64>,
    /// Set once a replica served a connection to this request: a failure then may be the
    /// replica's, and the request is worth one more try on the primary.
    used_replica: AtomicBool,
}

impl Route {
    pub fn new(at_least: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            at_least,
            used_replica: AtomicBool::new(false),
        })
    }

    pub fn used_replica(&self) -> bool {
        self.used_replica.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_replica(&self) {
        self.used_replica.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` with its reads allowed on a replica that has replayed `route.at_least`.
pub async fn on_replica<F: Future>(route: Arc<Route>, f: F) -> F::Output {
    ROUTE.scope(Some(route), f).await
}

/// Runs `f` with every read on the primary, even inside [`on_replica`].
pub async fn on_primary<F: Future>(f: F) -> F::Output {
    ROUTE.scope(None, f).await
}

/// The route of the running task, when a replica may serve it.
pub(crate) fn current() -> Option<Arc<Route>> {
    ROUTE.try_with(Clone::clone).ok().flatten()
}

/// A commit position as clients see it: Postgres's own `pg_lsn` text (`16/B374D848`).
pub fn format_position(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Reads a position written by [`format_position`]; `None` for anything else.
pub fn parse_position(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    Some((hi << 32) | lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back() {
        for lsn in [0, 1, 0x16_B374_D848, u64::MAX] {
            assert_eq!(parse_position(&format_position(lsn)), Some(lsn));
        }
        assert_eq!(format_position(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_position("0/16B3748"), Some(0x16B_3748));
        for bad in ["", "/", "0/", "x/1", "1/2/3", "123456789/0", "-1/0", "0 /1"] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_route_is_scoped_to_the_task() {
        assert!(current().is_none());
        let route = Route::new(Some(7));
        on_replica(route.clone(), async {
            assert_eq!(current().and_then(|r| r.at_least), Some(7));
            on_primary(async { assert!(current().is_none()) }).await;
            current().unwrap().mark_replica();
        })
        .await;
        assert!(route.used_replica());
        assert!(current().is_none());
    }
}
