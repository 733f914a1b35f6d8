//! Metric writes on SQLite: each batch is a few statements fed by one JSON array each
//! (`json_each`), never a statement per point.

use crate::domain::metrics::{LEVEL_FACTOR, LEVELS, Point, SUM_FLOOR, SUM_SCALE};
use crate::error::{Error, Result};
use crate::store::metrics::{MetricWrites, RollupWork};
use async_trait::async_trait;
use sqlx::{SqliteConnection, query};

#[async_trait]
impl MetricWrites for SqliteConnection {
    /// Appends and overwrites alike, in one upsert.
    async fn write_points(
        &mut self,
        appends: &[(i64, &[Point])],
        overwrites: &[(i64, &[Point])],
    ) -> Result<()> {
        upsert_points(self, appends.iter().chain(overwrites)).await
    }

    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()> {
        merge(self, work).await
    }

    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()> {
        recompute(self, work).await
    }
}

/// Rows per insert: four bound parameters each, within SQLite's 32,766.
const ROWS_PER_INSERT: usize = 8_000;

/// Inserts or replaces points, a statement per 8,000. Values are bound, not written as JSON
/// text: SQLite's own text-to-float conversion is not exact for every f64.
async fn upsert_points<'a>(
    conn: &mut SqliteConnection,
    series: impl Iterator<Item = &'a (i64, &'a [Point])>,
) -> Result<()> {
    let rows: Vec<(i64, &Point)> = series
        .flat_map(|(id, points)| points.iter().map(move |p| (*id, p)))
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql =
            String::from("insert into metric_points (series_id, step, value, at) values ");
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?)"
            });
        }
        sql.push_str(
            " on conflict (series_id, step) do update set value = excluded.value, at = excluded.at",
        );
        let mut q = query(sqlx::AssertSqlSafe(sql));
        for (id, p) in chunk {
            q = q.bind(*id).bind(p.step).bind(p.value).bind(p.at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rollup rows per merge statement: ten bound parameters each, within SQLite's 32,766.
const ROLLUPS_PER_MERGE: usize = 3_000;

/// Merges a batch's aggregates into the rollups. Values are bound, not passed as JSON text,
/// so min, max and last stay exact for every f64 (`verify` compares them bit for bit).
async fn merge(conn: &mut SqliteConnection, work: &RollupWork) -> Result<()> {
    for chunk in work.merge.chunks(ROLLUPS_PER_MERGE) {
        let mut sql = String::from(
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, \
             first_step, last_step, last) values ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "" } else { ", " });
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        sql.push_str(
            " on conflict (series_id, level, block) do update set \
               count = count + excluded.count, min = min(min, excluded.min), max = max(max, excluded.max), \
               scaled_sum = scaled_sum + excluded.scaled_sum, first_step = min(first_step, excluded.first_step), \
               last = case when excluded.last_step > last_step then excluded.last else last end, \
               last_step = max(last_step, excluded.last_step)",
        );
        let mut q = query(sqlx::AssertSqlSafe(sql));
        for (sid, level, block, a) in chunk {
            q = q
                .bind(*sid)
                .bind(*level)
                .bind(*block)
                .bind(a.count)
                .bind(a.min)
                .bind(a.max)
                .bind(a.scaled_sum)
                .bind(a.first_step)
                .bind(a.last_step)
                .bind(a.last);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn recompute(conn: &mut SqliteConnection, work: &RollupWork) -> Result<()> {
    for (i, blocks) in work.recompute.iter().enumerate() {
        if blocks.is_empty() {
            continue;
        }
        let json = serde_json::to_string(blocks).map_err(Error::internal)?;
        let (level, size) = LEVELS[i];
        let sql = if i == 0 {
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last) \
             select sid, $2, blk, count(*), min(v), max(v), sum(case when abs(v) < $5 then 0 else v * $4 end), \
                    min(step), max(step), max(lastv) from ( \
               select t.value ->> 0 as sid, t.value ->> 1 as blk, p.step, p.value as v, \
                      first_value(p.value) over (partition by p.series_id, p.step / $3 order by p.step desc) as lastv \
               from json_each($1) t join metric_points p on p.series_id = t.value ->> 0 \
                 and p.step >= (t.value ->> 1) * $3 and p.step < ((t.value ->> 1) + 1) * $3) x \
             where true group by sid, blk \
             on conflict (series_id, level, block) do update set count = excluded.count, min = excluded.min, \
               max = excluded.max, scaled_sum = excluded.scaled_sum, first_step = excluded.first_step, \
               last_step = excluded.last_step, last = excluded.last"
        } else {
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last) \
             select sid, $2, blk, sum(c), min(mn), max(mx), sum(sm), min(fs), max(ls), max(lastv) from ( \
               select t.value ->> 0 as sid, t.value ->> 1 as blk, r.count as c, r.min as mn, r.max as mx, r.scaled_sum as sm, \
                      r.first_step as fs, r.last_step as ls, \
                      first_value(r.last) over (partition by r.series_id, r.block / $3 order by r.last_step desc) as lastv \
               from json_each($1) t join metric_rollups r on r.series_id = t.value ->> 0 and r.level = $2 - 1 \
                 and r.block >= (t.value ->> 1) * $3 and r.block < ((t.value ->> 1) + 1) * $3) x \
             where true group by sid, blk \
             on conflict (series_id, level, block) do update set count = excluded.count, min = excluded.min, \
               max = excluded.max, scaled_sum = excluded.scaled_sum, first_step = excluded.first_step, \
               last_step = excluded.last_step, last = excluded.last"
        };
        let factor = if i == 0 { size } else { LEVEL_FACTOR };
        let mut q = query(sql).bind(&json).bind(level).bind(factor);
        if i == 0 {
            q = q.bind(SUM_SCALE).bind(SUM_FLOOR);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
