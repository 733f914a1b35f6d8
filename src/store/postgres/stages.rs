//! Stages on Postgres: the statements behind [`StageTx`] and the stage reads.

use super::PgStore;
use crate::domain::stage::stage_empty;
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName};
use crate::error::Result;
use crate::store::rows::EventRow;
use crate::store::stages::{StageLock, StageTx, StageWrite};
use crate::store::{Actor, HistoryEntry, Page, StageEntry, page};
use async_trait::async_trait;
use sqlx::{PgConnection, query_as, query_scalar};
use uuid::Uuid;

pub(super) struct PgStageTx<'c>(pub &'c mut PgConnection);

#[derive(sqlx::FromRow)]
struct LockRow {
    model_id: Uuid,
    version: Option<i64>,
    depth: i64,
    event_id: Option<i64>,
    since: Option<Timestamp>,
    now: Timestamp,
}

#[async_trait]
impl StageTx for PgStageTx<'_> {
    async fn lock_stage(
        &mut self,
        model: &ModelName,
        stage: &StageName,
    ) -> Result<Option<StageLock>> {
        // The upsert takes the row lock whether or not the row existed: concurrent changes to
        // one stage queue here, across every server process. The clock is read after the lock.
        let row = query_as::<_, LockRow>(
            "insert into stages (model_id, name, depth, updated_at) \
             select id, $2, 0, clock_timestamp() from models where name = $1 \
             on conflict (model_id, name) do update set updated_at = stages.updated_at \
             returning model_id, version, depth, event_id, since, date_trunc('microseconds', clock_timestamp()) as now",
        )
        .bind(model.as_str())
        .bind(stage.as_str())
        .fetch_optional(&mut *self.0)
        .await?;
        Ok(row.map(|r| StageLock {
            model_id: r.model_id,
            version: r.version,
            depth: r.depth,
            event_id: r.event_id,
            since: r.since,
            now: r.now,
        }))
    }

    async fn version_status(&mut self, model_id: Uuid, version: i64) -> Result<Option<String>> {
        Ok(query_scalar(
            "select status from versions where model_id = $1 and version = $2 for share",
        )
        .bind(model_id)
        .bind(version)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn entry_below(
        &mut self,
        model_id: Uuid,
        stage: &StageName,
        depth: i64,
        to: Option<i64>,
    ) -> Result<Option<(i64, i64)>> {
        Ok(query_as(
            "select position, version from stage_stack \
             where model_id = $1 and stage = $2 and position < $3 and ($4::bigint is null or version = $4) \
             order by position desc limit 1",
        )
        .bind(model_id)
        .bind(stage.as_str())
        .bind(depth)
        .bind(to)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn write_change(&mut self, w: StageWrite<'_>, actor: &Actor) -> Result<i64> {
        // One statement: trim the stack, push, record the event, move the pointer.
        let e = &w.event;
        let (push_at, push_version) = w.push.unzip();
        let event_id: i64 = query_scalar(
            "with trimmed as (delete from stage_stack \
                              where $3::bigint is not null and model_id = $1 and stage = $2 and position > $3), \
                  pushed as (insert into stage_stack (model_id, stage, position, version) \
                             select $1, $2, $4, $5 where $4::bigint is not null), \
                  event as (insert into events (at, action, model_id, model, version, stage, actor, actor_token_id, details) \
                            values ($6, $7, $1, $8, $9, $2, $10, $13, $11) returning id) \
             update stages set version = $9, depth = $12, event_id = (select id from event), since = $6, updated_at = $6 \
             where model_id = $1 and name = $2 returning event_id",
        )
        .bind(w.model_id)
        .bind(w.stage.as_str())
        .bind(w.keep)
        .bind(push_at)
        .bind(push_version)
        .bind(e.at)
        .bind(e.action)
        .bind(e.model)
        .bind(w.version)
        .bind(&actor.name)
        .bind(sqlx::types::Json(&e.details))
        .bind(w.depth)
        .bind(actor.token_id)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(event_id)
    }
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    stage: String,
    version: Option<i64>,
    since: Option<Timestamp>,
}

impl PgStore {
    pub(super) async fn stage_entries(
        conn: &mut PgConnection,
        model_id: Uuid,
    ) -> Result<Vec<StageEntry>> {
        let rows = query_as::<_, EntryRow>(
            "select name as stage, version, since from stages \
             where model_id = $1 and version is not null order by name",
        )
        .bind(model_id)
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().filter_map(entry).collect())
    }

    pub(super) async fn read_stage(
        conn: &mut PgConnection,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry> {
        let model_id = Self::model_row(conn, model, false).await?.id;
        let row = match at {
            None => {
                query_as::<_, EntryRow>("select name as stage, version, since from stages where model_id = $1 and name = $2")
                    .bind(model_id)
                    .bind(stage.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
            }
            Some(at) => {
                query_as::<_, EntryRow>(
                    "select stage, version, at as since from events \
                     where model_id = $1 and stage = $2 and at <= $3 order by id desc limit 1",
                )
                .bind(model_id)
                .bind(stage.as_str())
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        row.and_then(entry)
            .ok_or_else(|| stage_empty(stage.as_str()))
    }

    pub(super) async fn read_history(
        conn: &mut PgConnection,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>> {
        let model_id = Self::model_row(conn, model, false).await?.id;
        let rows = query_as::<_, EventRow>(
            "select id, action, model, version, stage, actor, actor_token_id, at, details from events \
             where model_id = $1 and stage = $2 and ($3::bigint is null or id < $3) \
             order by id desc limit $4",
        )
        .bind(model_id)
        .bind(stage.as_str())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| HistoryEntry::from(crate::store::Event::from(r)))
            .collect();
        Ok(page(items, limit, |h: &HistoryEntry| {
            crate::domain::cursor::encode("h", &h.event_id.to_string())
        }))
    }

    /// The stages a version is on (to refuse archiving it).
    pub(super) async fn stages_holding(
        conn: &mut PgConnection,
        version_id: Uuid,
    ) -> Result<Vec<String>> {
        Ok(query_scalar(
            "select s.name from stages s join versions v on v.model_id = s.model_id and v.version = s.version \
             where v.id = $1 order by s.name",
        )
        .bind(version_id)
        .fetch_all(conn)
        .await?)
    }
}

fn entry(r: EntryRow) -> Option<StageEntry> {
    Some(StageEntry {
        stage: r.stage,
        version: r.version?,
        since: r.since?,
    })
}
