//! The Postgres dialect: binds, fragments and the statements only Postgres has (row-lock
//! upserts, the stage change as one statement, the event log's horizon).

use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName};
use crate::error::{Error, Result};
use crate::store::Actor;
use crate::store::metrics::RollupWork;
use crate::store::sql::{Arg, Conn, Dialect, Record, Stmt};
use crate::store::stages::{StageLock, StageWrite};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe, PgConnection, query_as, query_scalar};
use std::time::Duration;
use uuid::Uuid;

/// How long an event log read waits for the transactions that may still commit events below
/// the log's current end.
const EVENT_WAIT: Duration = Duration::from_secs(2);

fn arguments(args: Vec<Arg>) -> Result<PgArguments> {
    let mut out = PgArguments::default();
    for arg in args {
        match arg {
            Arg::Uuid(v) => out.add(v),
            Arg::I16(v) => out.add(v),
            Arg::I64(v) => out.add(v),
            Arg::F64(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Text(v) => out.add(v),
            Arg::TextList(v) => out.add(v),
            Arg::I64List(v) => out.add(v),
            Arg::Time(v) => out.add(v),
            Arg::Json(v) => out.add(v.map(sqlx::types::Json)),
        }
        .map_err(Error::internal)?;
    }
    Ok(out)
}

fn prepare(stmt: Stmt) -> Result<(AssertSqlSafe<std::borrow::Cow<'static, str>>, PgArguments)> {
    let (sql, args) = stmt.into_parts()?;
    Ok((AssertSqlSafe(sql), arguments(args)?))
}

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
impl Conn for PgConnection {
    const DIALECT: Dialect = Dialect::Postgres;
    const ROW_LOCKS: bool = true;

    async fn execute(&mut self, stmt: Stmt) -> Result<u64> {
        let (sql, args) = prepare(stmt)?;
        let done = sqlx::query_with(sql, args).execute(&mut *self).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all<R: Record>(&mut self, stmt: Stmt) -> Result<Vec<R>> {
        let (sql, args) = prepare(stmt)?;
        Ok(sqlx::query_as_with::<_, R, _>(sql, args)
            .fetch_all(&mut *self)
            .await?)
    }

    async fn fetch_optional<R: Record>(&mut self, stmt: Stmt) -> Result<Option<R>> {
        let (sql, args) = prepare(stmt)?;
        Ok(sqlx::query_as_with::<_, R, _>(sql, args)
            .fetch_optional(&mut *self)
            .await?)
    }

    fn fetch<'c, R: Record + 'c>(&'c mut self, stmt: Stmt) -> BoxStream<'c, Result<R>> {
        match prepare(stmt) {
            Ok((sql, args)) => sqlx::query_as_with::<_, R, _>(sql, args)
                .fetch(self)
                .map_err(Error::from)
                .boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        }
    }

    fn like_any(column: &str, param: &str) -> String {
        format!("{column} like any({param})")
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} = any({param})")
    }

    fn contains_tags(column: &str, param: &str) -> String {
        format!("{column} @> {param}")
    }

    fn starts_with(column: &str, param: &str) -> String {
        format!("starts_with({column}, {param})")
    }

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
             returning model_id, version, depth, event_id, since, \
                       date_trunc('microseconds', clock_timestamp()) as now",
        )
        .bind(model.as_str())
        .bind(stage.as_str())
        .fetch_optional(&mut *self)
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

    async fn write_stage_change(&mut self, w: StageWrite<'_>, actor: &Actor) -> Result<i64> {
        // One statement, one round trip: trim the stack, push, record the event, move the pointer.
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
        .fetch_one(&mut *self)
        .await?;
        Ok(event_id)
    }

    /// The highest event id up to which the log is final: every event with an id up to it has
    /// committed or rolled back, so a reader tailing with `after=` never moves past an event
    /// that commits later. Event ids are drawn only once their transaction has an xid
    /// (migration 0006), so the transactions that may hold ids up to the sequence's value are
    /// among those in progress right after it is read; this waits for them (writes here last
    /// milliseconds) and never delays a writer. `pg_stat_activity` shows every session's xid,
    /// whatever role reads it.
    async fn event_horizon(&mut self) -> Result<Option<i64>> {
        let (last, called): (i64, bool) = query_as("select last_value, is_called from event_ids")
            .fetch_one(&mut *self)
            .await?;
        let horizon = if called { last } else { last - 1 };
        let mut in_flight: Vec<String> = query_scalar(
            "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
             where datname = current_database() and backend_xid is not null \
               and pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *self)
        .await?;
        let deadline = std::time::Instant::now() + EVENT_WAIT;
        while !in_flight.is_empty() {
            if std::time::Instant::now() >= deadline {
                // A transaction open this long is not one of ours; answer rather than hang.
                tracing::warn!(
                    transactions = in_flight.len(),
                    "event log read gave up waiting for transactions in progress"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            in_flight = query_scalar(
                "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
                 where datname = current_database() and backend_xid::text = any($1)",
            )
            .bind(&in_flight)
            .fetch_one(&mut *self)
            .await?;
        }
        Ok(Some(horizon))
    }

    async fn lock_series(
        &mut self,
        version_id: Uuid,
        keys: Vec<String>,
    ) -> Result<Vec<(i64, String)>> {
        sqlx::query(
            "insert into metric_series (version_id, key, created_at) \
             select $1, k, $3 from unnest($2::text[]) k on conflict (version_id, key) do nothing",
        )
        .bind(version_id)
        .bind(&keys)
        .bind(crate::domain::time::now())
        .execute(&mut *self)
        .await?;
        // Lock the series in key order: writers of one series are serialized (their rollups
        // stay exact) and two batches never wait on each other in a cycle.
        Ok(query_as(
            "select id, key from metric_series where version_id = $1 and key = any($2) \
             order by key for update",
        )
        .bind(version_id)
        .bind(&keys)
        .fetch_all(&mut *self)
        .await?)
    }

    async fn write_points(
        &mut self,
        appends: &[&(i64, &crate::domain::metrics::SeriesBatch)],
        overwrites: &[&(i64, &crate::domain::metrics::SeriesBatch)],
    ) -> Result<()> {
        // Appends cannot conflict with stored points: they go in by COPY.
        super::metrics::copy_points(self, appends).await?;
        super::metrics::upsert_points(self, overwrites).await
    }

    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()> {
        super::metrics::merge_rollups(self, work).await
    }

    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()> {
        super::metrics::recompute_rollups(self, work).await
    }
}
