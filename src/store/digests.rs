//! Version digests as stored: fixed when a version becomes ready (from its config and
//! artifact rows, in the same transaction), filled in at start-up for versions made ready
//! before digests existed, and checked again by `verify`.

use super::sql::{Conn, Stmt};
use super::verify::Finding;
use crate::domain::digest::{self, ManifestFile};
use crate::error::Result;
use sqlx::types::Json;
use uuid::Uuid;

/// A version's digest from its rows now.
async fn compute<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    model: &str,
    number: i64,
) -> Result<String> {
    let (config,): (Json<serde_json::Value>,) = conn
        .fetch_one(Stmt::new("select config from versions where id = $1").bind(version_id))
        .await?;
    let files: Vec<(String, String, i64)> = conn
        .fetch_all(
            Stmt::new("select path, sha256, size from artifacts where version_id = $1")
                .bind(version_id),
        )
        .await?;
    let files: Vec<ManifestFile> = files
        .into_iter()
        .map(|(path, sha256, size)| ManifestFile { path, sha256, size })
        .collect();
    Ok(digest::version_digest(model, number, &config.0, &files))
}

/// Fixes a version's digest as it becomes ready; returns it.
pub(crate) async fn fix<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    model: &str,
    number: i64,
) -> Result<String> {
    let d = compute(conn, version_id, model, number).await?;
    conn.execute(
        Stmt::new("update versions set digest = $2 where id = $1")
            .bind(version_id)
            .bind(d.as_str()),
    )
    .await?;
    Ok(d)
}

/// Ready or archived versions without a digest (made ready before digests existed), at
/// most `limit`.
pub(crate) async fn missing<C: Conn>(conn: &mut C, limit: i64) -> Result<Vec<(Uuid, String, i64)>> {
    conn.fetch_all(
        Stmt::new(
            "select v.id, m.name, v.version from versions v join models m on m.id = v.model_id \
             where v.digest is null and v.status in ('ready', 'archived') limit $1",
        )
        .bind(limit),
    )
    .await
}

/// Ready and archived versions whose stored digest is not what their rows give now (at most
/// `max` findings).
pub(crate) async fn findings<C: Conn>(conn: &mut C, max: usize) -> Result<Vec<Finding>> {
    let versions: Vec<(Uuid, String, i64, Option<String>)> = conn
        .fetch_all(Stmt::new(
            "select v.id, m.name, v.version, v.digest from versions v \
             join models m on m.id = v.model_id where v.status in ('ready', 'archived') \
             order by m.name, v.version",
        ))
        .await?;
    let mut out = Vec::new();
    for (id, model, number, stored) in versions {
        if out.len() >= max {
            break;
        }
        let now = compute(conn, id, &model, number).await?;
        match stored {
            Some(s) if s == now => {}
            Some(s) => out.push(Finding {
                check: "version_digest",
                detail: format!(
                    "{model} v{number}: its digest is {s}, its config and artifact rows give {now}"
                ),
            }),
            None => out.push(Finding {
                check: "version_digest",
                detail: format!("{model} v{number} is ready without a digest"),
            }),
        }
    }
    Ok(out)
}
