//! Stages: what each holds now, what it held at a time, its history, and its changes (the
//! change itself is `stage_change.rs`).

use super::rows::EventRow;
use super::sql::{Conn, Stmt};
use super::stage_change;
use super::{
    Actor, Backend, Event, HistoryEntry, Page, SqlStore, StageChange, StageEntry, StageRequest,
    events, models, page,
};
use crate::domain::stage::stage_empty;
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName, cursor};
use crate::error::Result;
use async_trait::async_trait;
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait StageStore {
    /// Stages that hold a version, by name.
    async fn list_stages(&self, model: &ModelName) -> Result<Vec<StageEntry>>;
    /// What the stage holds now, or held at `at` (from the history).
    async fn get_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry>;
    /// Promote, roll back or clear: one transaction with its history event.
    async fn change_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        req: StageRequest,
        actor: &Actor,
    ) -> Result<StageChange>;
    /// The stage's history, newest first; `before` is the event id of the previous page's last entry.
    async fn stage_history(
        &self,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>>;
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    stage: String,
    version: Option<i64>,
    since: Option<Timestamp>,
}

fn entry(r: EntryRow) -> Option<StageEntry> {
    Some(StageEntry {
        stage: r.stage,
        version: r.version?,
        since: r.since?,
    })
}

async fn entries<C: Conn>(conn: &mut C, model: &ModelName) -> Result<Vec<StageEntry>> {
    let model_id = models::row(conn, model, false).await?.id;
    let stmt = Stmt::new(
        "select name as stage, version, since from stages \
         where model_id = $1 and version is not null order by name",
    )
    .bind(model_id);
    let rows: Vec<EntryRow> = conn.fetch_all(stmt).await?;
    Ok(rows.into_iter().filter_map(entry).collect())
}

async fn read<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    at: Option<Timestamp>,
) -> Result<StageEntry> {
    let model_id = models::row(conn, model, false).await?.id;
    let stmt = match at {
        None => Stmt::new(
            "select name as stage, version, since from stages where model_id = $1 and name = $2",
        )
        .bind(model_id)
        .bind(stage),
        Some(at) => Stmt::new(
            "select stage, version, at as since from events \
             where model_id = $1 and stage = $2 and at <= $3 \
               and action in ('stage.promoted', 'stage.rolled_back', 'stage.cleared') \
             order by id desc limit 1",
        )
        .bind(model_id)
        .bind(stage)
        .bind(at),
    };
    conn.fetch_optional::<EntryRow>(stmt)
        .await?
        .and_then(entry)
        .ok_or_else(|| stage_empty(stage.as_str()))
}

async fn history<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    limit: u32,
    before: Option<i64>,
) -> Result<Page<HistoryEntry>> {
    let model_id = models::row(conn, model, false).await?.id;
    let sql = format!(
        "{}where model_id = $1 and stage = $2 and (cast($3 as bigint) is null or id < $3) \
         order by id desc limit $4",
        events::EVENT_COLUMNS
    );
    let stmt = Stmt::new(sql)
        .bind(model_id)
        .bind(stage)
        .bind(before)
        .bind(i64::from(limit) + 1);
    let rows: Vec<EventRow> = conn.fetch_all(stmt).await?;
    let items = rows
        .into_iter()
        .map(|r| HistoryEntry::from(Event::from(r)))
        .collect();
    Ok(page(items, limit, |h: &HistoryEntry| {
        cursor::encode("h", &h.event_id.to_string())
    }))
}

/// The stages a version is on (to refuse archiving it).
pub(crate) async fn holding<C: Conn>(conn: &mut C, version_id: Uuid) -> Result<Vec<String>> {
    let stmt = Stmt::new(
        "select s.name from stages s \
         join versions v on v.model_id = s.model_id and v.version = s.version \
         where v.id = $1 order by s.name",
    )
    .bind(version_id);
    let rows: Vec<(String,)> = conn.fetch_all(stmt).await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

#[async_trait]
impl<B: Backend> StageStore for SqlStore<B> {
    #[instrument(skip_all, fields(model = %model))]
    async fn list_stages(&self, model: &ModelName) -> Result<Vec<StageEntry>> {
        let mut conn = self.db.read().await?;
        entries(&mut *conn, model).await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn get_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry> {
        let mut conn = self.db.read().await?;
        read(&mut *conn, model, stage, at).await
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage, op = ?req.op))]
    async fn change_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        req: StageRequest,
        actor: &Actor,
    ) -> Result<StageChange> {
        if req.dry_run {
            // Evaluated under the lock like the real thing, then rolled back: nothing changes
            // (not even the stage row the lock creates on first use).
            let mut tx = self.db.begin().await?;
            let result = stage_change::apply(&mut *tx, model, stage, req, actor).await;
            self.db.rollback(tx, None).await;
            return result;
        }
        transaction!(self.db, |c| stage_change::apply(
            c, model, stage, req, actor
        ))
    }

    #[instrument(skip_all, fields(model = %model, stage = %stage))]
    async fn stage_history(
        &self,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>> {
        let mut conn = self.db.read().await?;
        history(&mut *conn, model, stage, limit, before).await
    }
}
