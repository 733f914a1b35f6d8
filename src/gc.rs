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
