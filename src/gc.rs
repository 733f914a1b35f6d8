//! `modelreg gc`: removes what crashes leave in the artifact store, once it is older than a
//! grace period: objects that no artifact row refers to (a crash between writing an object
//! and recording it), and uploads that never finished (a process killed midway: the folder
//! store's staging files, S3's incomplete multipart uploads).

use crate::blob::BlobStore;
use crate::store::Store;
use futures::TryStreamExt;
use std::collections::HashSet;

/// What a collection found (and, unless a dry run, deleted).
#[derive(Debug, Default)]
pub struct Report {
    pub scanned: usize,
    pub orphans: Vec<(String, u64)>,
    /// Uploads that never finished.
    pub abandoned: Vec<crate::blob::Leftover>,
    /// Objects of erased artifacts deleted from the queue the server could not finish.
    pub erased: usize,
}

/// Objects younger than `grace` are left alone: they may be uploads still in flight.
pub async fn collect(
    store: &dyn Store,
    blobs: &BlobStore,
    grace: chrono::Duration,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let grace_std = grace.to_std().unwrap_or_default();
    let mut report = Report {
        abandoned: blobs.abandoned_uploads(grace_std, dry_run).await?,
        ..Report::default()
    };
    // Objects of erased artifacts first: deleted whatever their age (they were meant to go
    // at once; the store was away then).
    if !dry_run {
        report.erased = retry_erased(store, blobs, 100_000).await?;
    }
    let mut referenced: HashSet<String> = store.artifact_keys().await?.into_iter().collect();
    referenced.extend(store.logged_file_keys().await?);
    let cutoff = chrono::Utc::now() - grace;
    let objects: Vec<_> = blobs.list().try_collect().await?;
    for meta in objects {
        report.scanned += 1;
        let key = meta.location.to_string();
        if referenced.contains(&key) || meta.last_modified > cutoff {
            continue;
        }
        if !dry_run {
            blobs.delete(&key).await?;
        }
        report.orphans.push((key, meta.size));
    }
    Ok(report)
}

/// Deletes objects of erased artifacts and forgets those deleted; what the store refuses now
/// stays queued for the background retry ([`retry_erased`]).
pub async fn delete_erased(store: &dyn Store, blobs: &BlobStore, keys: Vec<String>) -> usize {
    let mut gone = Vec::with_capacity(keys.len());
    let mut refused = Vec::new();
    for key in keys {
        match blobs.delete(&key).await {
            Ok(()) => gone.push(key),
            Err(e) => {
                tracing::warn!(code = %e.code, "an erased artifact's object could not be deleted yet; retried later");
                refused.push(key);
            }
        }
    }
    let n = gone.len();
    if let Err(e) = store.forget_object_deletions(&gone).await {
        tracing::warn!(code = %e.code, "deleted objects could not be unqueued; deleted again later");
    }
    if let Err(e) = store.postpone_object_deletions(&refused).await {
        tracing::warn!(code = %e.code, "refused object deletions could not be moved back in the queue");
    }
    n
}

/// One retry pass over the queued deletions (at most `limit`); how many went.
pub async fn retry_erased(
    store: &dyn Store,
    blobs: &BlobStore,
    limit: u32,
) -> crate::error::Result<usize> {
    let keys = store.queued_object_deletions(limit).await?;
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(delete_erased(store, blobs, keys).await)
}
