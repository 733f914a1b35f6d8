//! Erasing a version: one transaction deletes everything of it but a tombstone (its number,
//! who erased it, when and why) and queues its artifacts' objects for deletion; the objects
//! go after the commit, and whatever the store could not delete then is retried in the
//! background (`object_deletions`). No row ever points at a deleted object: the artifact rows
//! go first, in the transaction.
//!
//! Lock order, as a promote's: the model's stage rows (in name order), then the version's
//! row. A promote of the version waits for the erase and then finds it erased; an erase
//! waits for a promote of it and then finds it live (409).

use super::sql::{Arg, Conn, Stmt};
use super::{Actor, Backend, NewEvent, SqlStore, Version, events, models};
use crate::domain::time;
use crate::domain::{ModelName, Reason};
use crate::error::{Error, Result};
use async_trait::async_trait;
use uuid::Uuid;

/// What an erase did.
#[derive(Debug)]
pub struct Erased {
    /// The tombstone.
    pub version: Version,
    /// Objects to delete from the artifact store (queued in `object_deletions` until they
    /// are).
    pub objects: Vec<String>,
    /// It was erased already: nothing was done.
    pub already: bool,
}

#[async_trait]
pub trait EraseStore {
    async fn erase_version(
        &self,
        model: &ModelName,
        version: i64,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Erased>;
    /// Objects of erased artifacts that the store has not deleted yet, oldest first.
    async fn queued_object_deletions(&self, limit: u32) -> Result<Vec<String>>;
    /// Forgets objects the store has deleted.
    async fn forget_object_deletions(&self, keys: &[String]) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct Target {
    id: Uuid,
    status: String,
}

async fn erase<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    reason: Option<Reason>,
    actor: &Actor,
) -> Result<Erased> {
    let m = models::row(conn, model, false).await?;
    let lock = if C::ROW_LOCKS { " for update" } else { "" };
    // The stages first, as a promote takes them (held, not read: what holds the version is
    // read once the version's row is held too).
    let _held: Vec<(String, Option<i64>)> = conn
        .fetch_all(
            Stmt::new(format!(
                "select name, version from stages where model_id = $1 order by name{lock}"
            ))
            .bind(m.id),
        )
        .await?;
    let target: Option<Target> = conn
        .fetch_optional(
            Stmt::new(format!(
                "select id, status from versions where model_id = $1 and version = $2{lock}"
            ))
            .bind(m.id)
            .bind(version),
        )
        .await?;
    let target = target.ok_or_else(|| Error::version_not_found(model.as_str(), version))?;
    if target.status != "erased" {
        // Read again now that the version's row is held: a promote that held it first (and
        // made a stage row the lock above could not see) has committed by now.
        let live: Vec<(String,)> = conn
            .fetch_all(
                Stmt::new(
                    "select name from stages where model_id = $1 and version = $2 order by name",
                )
                .bind(m.id)
                .bind(version),
            )
            .await?;
        let live: Vec<String> = live.into_iter().map(|r| r.0).collect();
        if !live.is_empty() {
            return Err(Error::conflict(
                "version_in_stage",
                format!(
                    "version {version} is live on {}: promote or roll back first; an erased version cannot be restored",
                    live.join(", ")
                ),
            ));
        }
    }
    let already = target.status == "erased";
    let mut objects = Vec::new();
    if !already {
        objects = wipe(
            conn,
            m.id,
            model,
            target.id,
            version,
            reason.as_ref(),
            actor,
        )
        .await?;
    }
    let row = super::versions::row(conn, model, version, false).await?;
    Ok(Erased {
        version: row.into_version()?,
        objects,
        already,
    })
}

/// Deletes everything of the version but its tombstone; the objects to delete.
async fn wipe<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    model: &ModelName,
    version_id: Uuid,
    version: i64,
    reason: Option<&Reason>,
    actor: &Actor,
) -> Result<Vec<String>> {
    let now = time::now();
    // Out of every stack it lies in (beneath the top: the top was refused above), each
    // stage's history saying so.
    let stacked: Vec<(String, i64)> = conn
        .fetch_all(
            Stmt::new(
                "select stage, position from stage_stack where model_id = $1 and version = $2 \
                 order by stage, position desc",
            )
            .bind(model_id)
            .bind(version),
        )
        .await?;
    for (stage, position) in &stacked {
        unstack(conn, model_id, stage, *position).await?;
        let current: Option<i64> = conn
            .fetch_optional::<(Option<i64>,)>(
                Stmt::new("select version from stages where model_id = $1 and name = $2")
                    .bind(model_id)
                    .bind(stage.as_str()),
            )
            .await?
            .and_then(|r| r.0);
        let mut event = NewEvent::model("stage.version_erased", model_id, model.as_str(), now);
        event.stage = Some(stage);
        event.version = current;
        event.details = serde_json::json!({"erased_version": version,
            "reason": reason.map(Reason::as_str), "from_version": current, "to_version": current});
        events::record(conn, event, actor).await?;
    }
    let objects: Vec<(String,)> = conn
        .fetch_all(
            Stmt::new("select object_key from artifacts where version_id = $1").bind(version_id),
        )
        .await?;
    let objects: Vec<String> = objects.into_iter().map(|o| o.0).collect();
    for key in &objects {
        conn.execute(
            Stmt::new(
                "insert into object_deletions (object_key, queued_at) values ($1, $2) \
                 on conflict (object_key) do nothing",
            )
            .bind(key.as_str())
            .bind(now),
        )
        .await?;
    }
    for sql in [
        "delete from artifacts where version_id = $1",
        "delete from metric_points where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_rollups where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_blocks where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_series where version_id = $1",
        "delete from version_inputs where version_id = $1",
    ] {
        conn.execute(Stmt::new(sql).bind(version_id)).await?;
    }
    let stmt = Stmt::new(
        "update versions set status = 'erased', description = null, config = $2, source = $2, \
             tags = $2, card = null, interface_schema = null, status_reason = $3, \
             erased_at = $4, erased_by = $5, updated_at = $4 \
         where id = $1",
    )
    .bind(version_id)
    .bind(Arg::Json(
        serde_json::value::to_raw_value(&serde_json::json!({})).ok(),
    ))
    .bind(reason.map(|r| r.as_str().to_owned()))
    .bind(now)
    .bind(&actor.name);
    conn.execute(stmt).await?;
    let mut event = NewEvent::model("version.erased", model_id, model.as_str(), now);
    event.version = Some(version);
    event.details = serde_json::json!({"reason": reason.map(Reason::as_str),
        "artifacts": objects.len(), "stacks": stacked.iter().map(|s| &s.0).collect::<Vec<_>>()});
    events::record(conn, event, actor).await?;
    Ok(objects)
}

/// Takes the entry at `position` out of a stage's stack: the entries above move down one.
async fn unstack<C: Conn>(conn: &mut C, model_id: Uuid, stage: &str, position: i64) -> Result<()> {
    conn.execute(
        Stmt::new("delete from stage_stack where model_id = $1 and stage = $2 and position = $3")
            .bind(model_id)
            .bind(stage)
            .bind(position),
    )
    .await?;
    // Through negative positions: a key is never held twice within one statement.
    for sql in [
        "update stage_stack set position = -position where model_id = $1 and stage = $2 and position > $3",
        "update stage_stack set position = -position - 1 where model_id = $1 and stage = $2 and position < 0",
    ] {
        conn.execute(Stmt::new(sql).bind(model_id).bind(stage).bind(position))
            .await?;
    }
    conn.execute(
        Stmt::new("update stages set depth = depth - 1 where model_id = $1 and name = $2")
            .bind(model_id)
            .bind(stage),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> EraseStore for SqlStore<B> {
    async fn erase_version(
        &self,
        model: &ModelName,
        version: i64,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Erased> {
        transaction!(self.db, |c| erase(c, model, version, reason.clone(), actor))
    }

    async fn queued_object_deletions(&self, limit: u32) -> Result<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows: Vec<(String,)> = conn
            .fetch_all(
                Stmt::new(
                    "select object_key from object_deletions order by queued_at, object_key limit $1",
                )
                .bind(i64::from(limit)),
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn forget_object_deletions(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        transaction!(self.db, |c| forget(c, keys))
    }
}

async fn forget<C: Conn>(conn: &mut C, keys: &[String]) -> Result<()> {
    let sql = format!(
        "delete from object_deletions where {}",
        C::in_list("object_key", "$1")
    );
    conn.execute(Stmt::new(sql).bind(Arg::TextList(Some(keys.to_vec()))))
        .await?;
    Ok(())
}
