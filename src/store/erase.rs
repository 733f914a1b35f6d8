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
    /// Deletes a model with every version (each erased as above), its logged models, stages,
    /// policies, guards and requests; the model's events stay. Refused while a stage holds
    /// a version (409 `model_in_use`) unless `force`, which clears those stages first (each
    /// recorded with the reason). The objects to delete.
    async fn delete_model_cascade(
        &self,
        model: &ModelName,
        force: bool,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Vec<String>>;
    /// Objects of erased artifacts that the store has not deleted yet, oldest first.
    async fn queued_object_deletions(&self, limit: u32) -> Result<Vec<String>>;
    /// Forgets objects the store has deleted.
    async fn forget_object_deletions(&self, keys: &[String]) -> Result<()>;
    /// Moves objects the store refused to delete to the back of the queue, so that a few
    /// that keep failing never hold back the others.
    async fn postpone_object_deletions(&self, keys: &[String]) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct Target {
    id: Uuid,
    status: String,
}

pub(super) async fn erase<C: Conn>(
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
    lock_stages(conn, m.id).await?;
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
    queue_deletions(conn, &objects, now).await?;
    for sql in [
        "delete from artifacts where version_id = $1",
        "delete from metric_points where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_rollups where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_blocks where series_id in (select id from metric_series where version_id = $1)",
        "delete from metric_series where version_id = $1",
        "delete from version_inputs where version_id = $1",
        "delete from version_signatures where version_id = $1",
    ] {
        conn.execute(Stmt::new(sql).bind(version_id)).await?;
    }
    let stmt = Stmt::new(
        "update versions set status = 'erased', description = null, config = $2, source = $2, \
             tags = $2, card = null, interface_schema = null, digest = null, signed_by = null, status_reason = $3, \
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

async fn delete_cascade<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    force: bool,
    reason: Option<Reason>,
    actor: &Actor,
) -> Result<Vec<String>> {
    let m = models::row(conn, model, true).await?;
    let live = lock_stages(conn, m.id).await?;
    let live: Vec<String> = live
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(s, _)| s)
        .collect();
    if !live.is_empty() {
        if !force {
            return Err(Error::conflict(
                "model_in_use",
                format!(
                    "model '{model}' is live on {}: roll back or clear them, or delete with force=true and a reason",
                    live.join(", ")
                ),
            ));
        }
        if reason.is_none() {
            return Err(Error::validation(
                "reason",
                "a forced delete needs a reason, recorded in the history of the stages it clears",
            ));
        }
        for stage in &live {
            let stage = crate::domain::StageName::parse("stage", stage)?;
            let req = super::StageRequest {
                op: super::StageOp::Clear,
                reason: reason.clone(),
                expected: None,
                dry_run: false,
                force: false,
                approval: None,
                clock: Default::default(),
            };
            super::stage_change::apply(conn, model, &stage, req, actor).await?;
        }
    }
    let versions: Vec<(Uuid, i64)> = conn
        .fetch_all(
            Stmt::new(
                "select id, version from versions where model_id = $1 and status <> 'erased' \
                 order by version",
            )
            .bind(m.id),
        )
        .await?;
    let mut objects = Vec::new();
    for (id, version) in &versions {
        objects.extend(wipe(conn, m.id, model, *id, *version, reason.as_ref(), actor).await?);
    }
    // MLflow's logged models of the model, their files' objects queued as artifacts' are.
    let files: Vec<(String,)> = conn
        .fetch_all(
            Stmt::new(
                "select f.object_key from logged_model_files f \
                 join logged_models l on l.id = f.logged_model_id where l.model_id = $1",
            )
            .bind(m.id),
        )
        .await?;
    let now = time::now();
    let files: Vec<String> = files.into_iter().map(|f| f.0).collect();
    queue_deletions(conn, &files, now).await?;
    objects.extend(files);
    for sql in [
        "delete from run_models where logged_model_id in (select id from logged_models where model_id = $1) \
            or version_id in (select id from versions where model_id = $1)",
        "delete from logged_model_files where logged_model_id in (select id from logged_models where model_id = $1)",
        "delete from logged_model_tags where logged_model_id in (select id from logged_models where model_id = $1)",
        "delete from logged_model_params where logged_model_id in (select id from logged_models where model_id = $1)",
        "delete from logged_model_metrics where logged_model_id in (select id from logged_models where model_id = $1)",
        "delete from logged_models where model_id = $1",
        "delete from idempotency_keys where model_id = $1",
        "delete from promotion_requests where model_id = $1",
        "delete from stage_stack where model_id = $1",
        "delete from stages where model_id = $1",
        "delete from stage_guards where model_id = $1",
        "delete from retention_policies where model_id = $1",
        "delete from stage_policies where model_id = $1",
        "delete from versions where model_id = $1",
        "delete from models where id = $1",
    ] {
        conn.execute(Stmt::new(sql).bind(m.id)).await?;
    }
    let mut event = NewEvent::model("model.deleted", m.id, model.as_str(), now);
    event.details = serde_json::json!({"cascade": true, "versions": versions.len(),
        "forced": !live.is_empty(), "reason": reason.as_ref().map(Reason::as_str)});
    events::record(conn, event, actor).await?;
    Ok(objects)
}

/// Locks the model's stage rows, in name order (the order a promote takes one in); what
/// each holds.
pub(super) async fn lock_stages<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
) -> Result<Vec<(String, Option<i64>)>> {
    let lock = if C::ROW_LOCKS { " for update" } else { "" };
    conn.fetch_all(
        Stmt::new(format!(
            "select name, version from stages where model_id = $1 order by name{lock}"
        ))
        .bind(model_id),
    )
    .await
}

/// Queues objects for deletion once the transaction commits (retried until the store has
/// deleted them).
async fn queue_deletions<C: Conn>(
    conn: &mut C,
    keys: &[String],
    now: crate::domain::time::Timestamp,
) -> Result<()> {
    for key in keys {
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
    Ok(())
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

    async fn delete_model_cascade(
        &self,
        model: &ModelName,
        force: bool,
        reason: Option<Reason>,
        actor: &Actor,
    ) -> Result<Vec<String>> {
        transaction!(self.db, |c| delete_cascade(
            c,
            model,
            force,
            reason.clone(),
            actor
        ))
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

    async fn postpone_object_deletions(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        transaction!(self.db, |c| postpone(c, keys))
    }
}

async fn postpone<C: Conn>(conn: &mut C, keys: &[String]) -> Result<()> {
    let sql = format!(
        "update object_deletions set queued_at = $2 where {}",
        C::in_list("object_key", "$1")
    );
    conn.execute(
        Stmt::new(sql)
            .bind(Arg::TextList(Some(keys.to_vec())))
            .bind(time::now()),
    )
    .await?;
    Ok(())
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
