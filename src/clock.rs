//! The time background work judges by: the system's, or a manual one that tests set and
//! advance, so that a guard's window or grace is tested without sleeping.

use crate::domain::time::{self, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// A clock that stands still at `start` until advanced.
    pub fn manual(start: Timestamp) -> Self {
        Self(Some(Arc::new(AtomicI64::new(time::to_micros(start)))))
    }

    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Some(us) => time::from_micros(us.load(Ordering::SeqCst)),
            None => time::now(),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(us) = &self.0 {
            us.fetch_add(
                i64::try_from(by.as_micros()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_manual() { "manual" } else { "system" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = time::from_micros(1_000_000);
        let c = Clock::manual(start);
        assert_eq!(c.now(), start);
        c.clone().advance(std::time::Duration::from_secs(2));
        assert_eq!(time::to_micros(c.now()), 3_000_000);
        assert!(Clock::default().now() > start);
    }
}
