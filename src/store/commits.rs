//! Commit notices: how a webhook dispatcher learns, without polling, that a write of its own
//! process may have logged events to deliver.

use super::OutboxSignal;
use async_trait::async_trait;
use tokio::sync::watch;

/// Counts the commits of one process's writes; every subscriber sees each change once,
/// however many commits it missed while busy.
#[derive(Debug)]
pub(crate) struct Commits(watch::Sender<u64>);

impl Default for Commits {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Commits {
    pub(crate) fn committed(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> Local {
        Local(self.0.subscribe())
    }
}

/// A subscription to [`Commits`].
pub(crate) struct Local(watch::Receiver<u64>);

impl Local {
    /// Resolves at the next commit; never once the store is gone.
    pub(crate) async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl OutboxSignal for Local {
    async fn changed(&mut self) {
        self.next().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn commits_missed_while_busy_wake_a_subscriber_once() {
        let commits = Commits::default();
        let mut local = commits.subscribe();
        commits.committed();
        commits.committed();
        tokio::time::timeout(Duration::from_secs(1), local.next())
            .await
            .expect("woken by the commits");
        let again = tokio::time::timeout(Duration::from_millis(20), local.next()).await;
        assert!(again.is_err(), "woken twice for commits seen once");
    }
}
