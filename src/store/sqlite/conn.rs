//! The SQLite dialect: binds (times as fixed-width RFC 3339 text, lists as JSON arrays),
//! fragments over `json_each`, and the stage lock, which the database's write lock already is.

use super::ts;
use crate::domain::metrics::SeriesBatch;
use crate::domain::{ModelName, StageName, time};
use crate::error::{Error, Result};
use crate::store::metrics::RollupWork;
use crate::store::sql::{Arg, Conn, Dialect, Record, Stmt};
use crate::store::stages::StageLock;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, SqliteConnection, query, query_as};
use uuid::Uuid;

fn arguments(args: Vec<Arg>) -> Result<SqliteArguments> {
    let mut out = SqliteArguments::default();
    for arg in args {
        match arg {
            Arg::Uuid(v) => out.add(v),
            Arg::I16(v) => out.add(v),
            Arg::I64(v) => out.add(v),
            Arg::F64(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Text(v) => out.add(v),
            Arg::TextList(v) => out.add(v.map(sqlx::types::Json)),
            Arg::I64List(v) => out.add(sqlx::types::Json(v)),
            Arg::Time(v) => out.add(v.map(ts)),
            Arg::Json(v) => out.add(v.map(sqlx::types::Json)),
        }
        .map_err(Error::internal)?;
    }
    Ok(out)
}

fn prepare(
    stmt: Stmt,
) -> Result<(
    AssertSqlSafe<std::borrow::Cow<'static, str>>,
    SqliteArguments,
)> {
    let (sql, args) = stmt.into_parts()?;
    Ok((AssertSqlSafe(sql), arguments(args)?))
}

#[derive(sqlx::FromRow)]
struct LockRow {
    model_id: Uuid,
    version: Option<i64>,
    depth: i64,
    event_id: Option<i64>,
    since: Option<time::Timestamp>,
}

#[async_trait]
impl Conn for SqliteConnection {
    const DIALECT: Dialect = Dialect::Sqlite;
    const ROW_LOCKS: bool = false;

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
        format!(
            "exists (select 1 from json_each({param}) g where {column} like g.value escape '\\')"
        )
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} in (select value from json_each({param}))")
    }

    fn contains_tags(column: &str, param: &str) -> String {
        format!(
            "not exists (select 1 from json_each({param}) f \
             where json_extract({column}, '$.\"' || f.key || '\"') is not f.value)"
        )
    }

    fn starts_with(column: &str, param: &str) -> String {
        format!("substr({column}, 1, length({param})) = {param}")
    }

    async fn lock_stage(
        &mut self,
        model: &ModelName,
        stage: &StageName,
    ) -> Result<Option<StageLock>> {
        // The transaction already holds SQLite's write lock (BEGIN IMMEDIATE): changes are
        // serialized; the upsert only makes sure the row exists. The clock is read after the lock.
        let now = time::now();
        let row = query_as::<_, LockRow>(
            "insert into stages (model_id, name, depth, updated_at) \
             select id, $2, 0, $3 from models where name = $1 \
             on conflict (model_id, name) do update set updated_at = stages.updated_at \
             returning model_id, version, depth, event_id, since",
        )
        .bind(model.as_str())
        .bind(stage.as_str())
        .bind(ts(now))
        .fetch_optional(&mut *self)
        .await?;
        Ok(row.map(|r| StageLock {
            model_id: r.model_id,
            version: r.version,
            depth: r.depth,
            event_id: r.event_id,
            since: r.since,
            now,
        }))
    }

    async fn lock_series(
        &mut self,
        version_id: Uuid,
        keys: Vec<String>,
    ) -> Result<Vec<(i64, String)>> {
        // The write lock is held: no other writer touches these series until commit.
        let keys = sqlx::types::Json(keys);
        query(
            "insert into metric_series (version_id, key, created_at) \
             select $1, value, $3 from json_each($2) where true \
             on conflict (version_id, key) do nothing",
        )
        .bind(version_id)
        .bind(&keys)
        .bind(ts(time::now()))
        .execute(&mut *self)
        .await?;
        Ok(query_as(
            "select id, key from metric_series \
             where version_id = $1 and key in (select value from json_each($2)) order by key",
        )
        .bind(version_id)
        .bind(&keys)
        .fetch_all(&mut *self)
        .await?)
    }

    async fn write_points(
        &mut self,
        appends: &[&(i64, &SeriesBatch)],
        overwrites: &[&(i64, &SeriesBatch)],
    ) -> Result<()> {
        super::metrics::upsert_points(self, appends.iter().chain(overwrites)).await
    }

    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()> {
        super::metrics::merge_rollups(self, work).await
    }

    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()> {
        super::metrics::recompute_rollups(self, work).await
    }
}
