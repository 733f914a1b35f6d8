//! A version's inputs as stored: one row each, in order, kept whole as JSON with the fields
//! lineage reads look up by beside it. Added while the version is pending (under its row
//! lock), never after.

use super::sql::{Conn, Stmt};
use super::{Actor, NewEvent, events, models, versions};
use crate::domain::ModelName;
use crate::domain::VersionStatus;
use crate::domain::inputs::{self, Input};
use crate::domain::time;
use crate::error::{Error, Result};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// A version's inputs, in order.
pub(crate) async fn of<C: Conn>(conn: &mut C, version_id: Uuid) -> Result<Vec<Input>> {
    let stmt = Stmt::new("select body from version_inputs where version_id = $1 order by position")
        .bind(version_id);
    let rows: Vec<(Json<Input>,)> = conn.fetch_all(stmt).await?;
    Ok(rows.into_iter().map(|(Json(i),)| i).collect())
}

/// Adds inputs to a pending version (those it holds already are left out), records
/// `version.inputs_added`; answers every input it holds.
pub(crate) async fn add<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    new: Vec<Input>,
    actor: &Actor,
) -> Result<Vec<Input>> {
    let row = versions::row(conn, model, version, true).await?;
    let status = VersionStatus::from_stored(&row.status)?;
    if status != VersionStatus::Pending {
        return Err(Error::conflict(
            "version_immutable",
            format!(
                "version {version} of '{model}' is {}: its inputs are final",
                status.as_str()
            ),
        ));
    }
    let mut held = of(conn, row.id).await?;
    let added = inputs::to_add(&held, new)?;
    if added.is_empty() {
        return Ok(held);
    }
    let now = time::now();
    let first = i64::try_from(held.len()).map_err(Error::internal)?;
    for (i, input) in added.iter().enumerate() {
        let (name, digest) = input.keys();
        let stmt = Stmt::new(
            "insert into version_inputs (version_id, position, kind, name, digest, body, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(first + i64::try_from(i).map_err(Error::internal)?)
        .bind(input.kind())
        .bind(name.map(str::to_owned))
        .bind(digest.map(str::to_owned))
        .json(input)
        .bind(now);
        conn.execute(stmt).await?;
    }
    let model_id = models::row(conn, model, false).await?.id;
    let event = NewEvent::model("version.inputs_added", model_id, model.as_str(), now)
        .version(version)
        .details(json!({"inputs": added}));
    events::record(conn, event, actor).await?;
    held.extend(added);
    Ok(held)
}
