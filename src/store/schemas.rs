//! A version's interface schema as stored: set while the version is pending (by the client,
//! or read from its `MLmodel` file at finalize), immutable once it is ready, like its config.

use super::sql::{Conn, Stmt};
use super::{Actor, NewEvent, events, models, versions};
use crate::domain::ModelName;
use crate::domain::schema::Schema;
use crate::domain::time;
use crate::error::Result;
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// A version's schema, if it has one.
pub(crate) async fn of<C: Conn>(conn: &mut C, version_id: Uuid) -> Result<Option<Schema>> {
    let stmt = Stmt::new("select interface_schema from versions where id = $1").bind(version_id);
    let row: Option<(Option<Json<Schema>>,)> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(s,)| s).map(|Json(s)| s))
}

/// The schema of a version by number (`None` when it has none).
pub(crate) async fn of_number<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    version: i64,
) -> Result<Option<Schema>> {
    let stmt =
        Stmt::new("select interface_schema from versions where model_id = $1 and version = $2")
            .bind(model_id)
            .bind(version);
    let row: Option<(Option<Json<Schema>>,)> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(s,)| s).map(|Json(s)| s))
}

/// Writes a schema on a version row (registration, inside its transaction).
pub(crate) async fn write<C: Conn>(conn: &mut C, version_id: Uuid, schema: &Schema) -> Result<()> {
    let stmt = Stmt::new("update versions set interface_schema = $1 where id = $2")
        .json(schema)
        .bind(version_id);
    conn.execute(stmt).await?;
    Ok(())
}

/// Sets a pending version's schema (409 `version_immutable` once it is not pending) and
/// records `version.schema_set`. With `keep`, a version that has one already keeps it (the
/// schema an `MLmodel` file declares does not replace the one the client set). Answers the
/// schema the version holds.
pub(crate) async fn set<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    schema: Schema,
    keep: bool,
    actor: &Actor,
) -> Result<Schema> {
    let row = versions::pending_row(conn, model, version, "schema is").await?;
    let held = of(conn, row.id).await?;
    if let Some(held) = held.filter(|h| keep || *h == schema) {
        return Ok(held);
    }
    write(conn, row.id, &schema).await?;
    let now = time::now();
    let model_id = models::row(conn, model, false).await?.id;
    let event = NewEvent::model("version.schema_set", model_id, model.as_str(), now)
        .version(version)
        .details(json!({
            "inputs": schema.inputs.len(),
            "outputs": schema.outputs.len(),
            "params": schema.params.len(),
        }));
    events::record(conn, event, actor).await?;
    Ok(schema)
}
