//! What uploads leave behind when the process dies midway: the folder store's staging files
//! (`<name>#<n>` beside where the object would have been, hidden from its listings, and the
//! folders made for them) and S3's incomplete multipart uploads (named by their markers, see
//! `upload`). `modelreg gc` removes those older than its grace period.

use super::upload::{MARKERS, Marker, abort_s3};
use super::{BlobStore, store_error};
use crate::error::Error;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// One abandoned upload: where it was and how many bytes it holds (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub what: String,
    pub bytes: u64,
}

impl BlobStore {
    /// Abandoned uploads older than `grace`, removed unless `dry_run`.
    pub async fn abandoned_uploads(
        &self,
        grace: Duration,
        dry_run: bool,
    ) -> Result<Vec<Leftover>, Error> {
        let cutoff = SystemTime::now() - grace;
        match (&self.root, &self.signer) {
            (Some(root), _) => {
                let root = PathBuf::clone(root);
                tokio::task::spawn_blocking(move || staging_files(&root, cutoff, dry_run))
                    .await
                    .map_err(Error::internal)?
                    .map_err(|e| Error::unavailable("artifact store", e))
            }
            (None, Some(s3)) => {
                let markers: Vec<_> = self
                    .store
                    .list(Some(&(*self.prefix).clone().join(MARKERS)))
                    .try_collect()
                    .await
                    .map_err(store_error)?;
                let mut out = Vec::new();
                for meta in markers {
                    if SystemTime::from(meta.last_modified) > cutoff {
                        continue;
                    }
                    let note = self
                        .store
                        .get(&meta.location)
                        .await
                        .map_err(store_error)?
                        .bytes()
                        .await
                        .map_err(store_error)?;
                    let what = match serde_json::from_slice::<Marker>(&note) {
                        Ok(m) => {
                            if !dry_run {
                                let key = Path::parse(&m.key).map_err(Error::internal)?;
                                abort_s3(s3, &key, &m.upload_id, &meta.location).await;
                            }
                            format!("{} (incomplete upload {})", m.key, m.upload_id)
                        }
                        // Not one of ours: a marker this version cannot read is left alone.
                        Err(_) => continue,
                    };
                    out.push(Leftover { what, bytes: 0 });
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Staging files under `root` last written before `cutoff`, and the folders that are empty
/// once they are gone.
fn staging_files(
    root: &std::path::Path,
    cutoff: SystemTime,
    dry_run: bool,
) -> std::io::Result<Vec<Leftover>> {
    let mut out = Vec::new();
    visit(root, root, cutoff, dry_run, &mut out)?;
    Ok(out)
}

/// Returns whether `dir` is empty when done (and may go too).
fn visit(
    root: &std::path::Path,
    dir: &std::path::Path,
    cutoff: SystemTime,
    dry_run: bool,
    out: &mut Vec<Leftover>,
) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        let old = meta.modified().is_ok_and(|m| m < cutoff);
        if meta.is_dir() {
            if visit(root, &path, cutoff, dry_run, out)? && old {
                if !dry_run {
                    std::fs::remove_dir(&path)?;
                }
                continue;
            }
            empty = false;
        } else if old && entry.file_name().to_string_lossy().contains('#') {
            out.push(Leftover {
                what: path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
                bytes: meta.len(),
            });
            if !dry_run {
                std::fs::remove_file(&path)?;
            }
        } else {
            empty = false;
        }
    }
    Ok(empty)
}
