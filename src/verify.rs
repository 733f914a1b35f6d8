//! `modelreg verify`: checks a registry's integrity. The database's own rules (gapless
//! versions, an event for every change, stage pointers that agree with their stacks and
//! histories, rollups that agree with their points) and, for every artifact row, its object:
//! there, with the recorded size, and with `deep` the recorded sha256.

use crate::blob::BlobStore;
use crate::store::{ArtifactRecord, Finding, Store};
use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub artifacts_checked: usize,
    /// Bytes read to check digests (`deep` only).
    pub bytes_hashed: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the database and every artifact's object.
pub async fn run(store: &dyn Store, blobs: &BlobStore, deep: bool) -> anyhow::Result<Report> {
    let mut report = Report {
        findings: store.integrity_findings().await?,
        ..Report::default()
    };
    for record in store.artifact_records().await? {
        report.artifacts_checked += 1;
        if let Some(finding) = check_object(blobs, &record, deep, &mut report.bytes_hashed).await? {
            report.findings.push(finding);
        }
    }
    Ok(report)
}

async fn check_object(
    blobs: &BlobStore,
    a: &ArtifactRecord,
    deep: bool,
    hashed: &mut u64,
) -> anyhow::Result<Option<Finding>> {
    let at = format!("{} v{} artifact {}", a.model, a.version, a.path);
    let Some(meta) = blobs.head(&a.object_key).await? else {
        return Ok(Some(Finding {
            check: "artifact_missing",
            detail: format!("{at}: no object {}", a.object_key),
        }));
    };
    if i64::try_from(meta.size).ok() != Some(a.size) {
        return Ok(Some(Finding {
            check: "artifact_size",
            detail: format!("{at}: {} bytes recorded, {} stored", a.size, meta.size),
        }));
    }
    if !deep {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let mut chunks = blobs.get(&a.object_key, None).await?;
    while let Some(chunk) = chunks.try_next().await? {
        *hashed += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let stored = hex::encode(hasher.finalize());
    Ok((stored != a.sha256).then(|| Finding {
        check: "artifact_checksum",
        detail: format!("{at}: sha256 {} recorded, {stored} stored", a.sha256),
    }))
}
