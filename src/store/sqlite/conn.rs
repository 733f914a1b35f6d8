//! The SQLite dialect: binds (times as fixed-width RFC 3339 text, lists as JSON arrays),
//! fragments over `json_each`, and the stage lock, which the database's write lock already is.

use super::ts;
use crate::domain::metrics::SeriesBatch;
use crate::domain::time;
use crate::error::{Error, Result};
use crate::store::metrics::RollupWork;
use crate::store::sql::{Arg, Conn, Dialect, Record, Stmt, impl_conn};
use sqlx::sqlite::SqliteArguments;
use sqlx::{SqliteConnection, query, query_as};
use uuid::Uuid;

impl_conn!(SqliteConnection, SqliteArguments, |out| {
            Arg::TextList(v) => out.add(v.map(sqlx::types::Json)),
            Arg::I64List(v) => out.add(sqlx::types::Json(v)),
            Arg::Time(v) => out.add(v.map(ts)),
} {
    const DIALECT: Dialect = Dialect::Sqlite;
    const ROW_LOCKS: bool = false;
    // The write lock is taken before any statement runs: the time the flow read is after it.
    const CLOCK: &'static str = "$3";

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
});
