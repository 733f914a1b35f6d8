//! `modelreg backup DEST`: a consistent copy of an embedded registry (SQLite and an artifact
//! folder) taken while it serves. Postgres and S3 have their own tools; docs/operators.md
//! gives the procedure and its order.
//!
//! Order: the database first (`VACUUM INTO`, one consistent snapshot), then the objects its
//! artifact rows name. Objects are written before their rows, so every row of the snapshot
//! had its object when the snapshot was taken; only an artifact deleted since (a pending
//! version's) can have lost it, and such a row is dropped from the copy, as if the delete
//! had come just before the snapshot.

use anyhow::{Context, bail};
use sqlx::{Connection, SqliteConnection};
use std::path::{Path, PathBuf};

/// What a backup holds.
#[derive(Debug, Default)]
pub struct Report {
    pub database: PathBuf,
    pub artifacts: usize,
    pub bytes: u64,
    /// Artifacts deleted while the backup ran, left out of it.
    pub deleted_meanwhile: Vec<String>,
}

/// The folder of a `file://` artifact URL.
fn folder(artifacts_url: &str) -> anyhow::Result<PathBuf> {
    match artifacts_url.strip_prefix("file://") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!(
            "backup copies an artifact folder (file://…); for S3, use the bucket's versioning or \
             replication (see \"Backup and restore\" in docs/operators.md)"
        ),
    }
}

/// Copies the registry at `database_url` (SQLite) and `artifacts_url` (a folder) into `dest`,
/// which must not exist yet or be empty: `dest/modelreg.db` and `dest/artifacts/`.
pub async fn run(database_url: &str, artifacts_url: &str, dest: &Path) -> anyhow::Result<Report> {
    if !database_url.starts_with("sqlite:") {
        bail!(
            "backup copies an SQLite registry; for Postgres, use pg_dump (see \"Backup and \
             restore\" in docs/operators.md)"
        );
    }
    let source = folder(artifacts_url)?;
    if dest.exists() && std::fs::read_dir(dest)?.next().is_some() {
        bail!("{} is not empty", dest.display());
    }
    std::fs::create_dir_all(dest.join("artifacts"))
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let database = dest.join("modelreg.db");
    let target = database
        .to_str()
        .context("the destination path is not UTF-8")?
        .to_owned();

    let mut live = SqliteConnection::connect(database_url).await?;
    sqlx::query("vacuum into $1")
        .bind(&target)
        .execute(&mut live)
        .await
        .context("cannot snapshot the database")?;
    live.close().await?;

    let mut copy = SqliteConnection::connect(&format!("sqlite://{target}")).await?;
    // Version artifacts and logged models' files.
    let keys: Vec<(String, bool)> = sqlx::query_as(
        "select object_key, true from artifacts \
         union all select object_key, false from logged_model_files",
    )
    .fetch_all(&mut copy)
    .await?;
    let mut report = Report {
        database,
        ..Report::default()
    };
    for (key, version_artifact) in keys {
        let from = source.join(&key);
        let to = dest.join("artifacts").join(&key);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::copy(&from, &to) {
            Ok(bytes) => {
                std::fs::File::open(&to)?.sync_all()?;
                report.artifacts += 1;
                report.bytes += bytes;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let table = if version_artifact {
                    "delete from artifacts where object_key = $1"
                } else {
                    "delete from logged_model_files where object_key = $1"
                };
                sqlx::query(table).bind(&key).execute(&mut copy).await?;
                report.deleted_meanwhile.push(key);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot copy {}", from.display()));
            }
        }
    }
    copy.close().await?;
    std::fs::File::open(&report.database)?.sync_all()?;
    Ok(report)
}
