//! Metric writes on Postgres: every batch is a handful of set-based statements (`COPY`,
//! `unnest` arrays), never a statement per point.

use crate::domain::metrics::{LEVEL_FACTOR, LEVELS, Point, SUM_FLOOR, SUM_SCALE};
use crate::error::Result;
use crate::store::metrics::{MetricWrites, RollupWork};
use async_trait::async_trait;
use sqlx::{PgConnection, query};
use std::fmt::Write;

/// The smallest number of appended points written by COPY rather than one `unnest` insert.
const COPY_FROM_POINTS: usize = 1_000;

#[async_trait]
impl MetricWrites for PgConnection {
    async fn write_points(
        &mut self,
        appends: &[(i64, &[Point])],
        overwrites: &[(i64, &[Point])],
    ) -> Result<()> {
        // Appends cannot conflict with stored points: a large batch goes in by COPY. A small
        // one goes in with the overwrites, in one statement: COPY ends with two writes in a
        // row (the data, then CopyDone), and on a socket without TCP_NODELAY (sqlx sets none)
        // the second waits for the server's delayed ACK of the first, about 40 ms.
        let appended: usize = appends.iter().map(|(_, p)| p.len()).sum();
        if appended >= COPY_FROM_POINTS {
            copy_points(self, appends).await?;
            upsert_points(self, overwrites).await
        } else {
            let all: Vec<(i64, &[Point])> = appends.iter().chain(overwrites).copied().collect();
            upsert_points(self, &all).await
        }
    }

    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()> {
        merge(self, work).await
    }

    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()> {
        recompute(self, work).await
    }
}

async fn copy_points(conn: &mut PgConnection, series: &[(i64, &[Point])]) -> Result<()> {
    if series.is_empty() {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw("copy metric_points (series_id, step, value, at) from stdin")
        .await?;
    let mut buf = String::with_capacity(256 * 1024);
    let mut num = ryu::Buffer::new();
    for (id, b) in series {
        for p in *b {
            let _ = writeln!(
                buf,
                "{id}\t{}\t{}\t{}",
                p.step,
                num.format_finite(p.value),
                p.at
            );
            if buf.len() > 240 * 1024 {
                copy.send(buf.as_bytes()).await?;
                buf.clear();
            }
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

async fn upsert_points(conn: &mut PgConnection, series: &[(i64, &[Point])]) -> Result<()> {
    if series.is_empty() {
        return Ok(());
    }
    let n: usize = series.iter().map(|(_, p)| p.len()).sum();
    let (mut sid, mut step, mut value, mut at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (id, b) in series {
        for p in *b {
            sid.push(*id);
            step.push(p.step);
            value.push(p.value);
            at.push(p.at);
        }
    }
    query(
        "insert into metric_points (series_id, step, value, at) \
         select * from unnest($1::bigint[], $2::bigint[], $3::float8[], $4::bigint[]) \
         on conflict (series_id, step) do update set value = excluded.value, at = excluded.at",
    )
    .bind(&sid)
    .bind(&step)
    .bind(&value)
    .bind(&at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends: block aggregates of the new points combined with what the rows hold.
async fn merge(conn: &mut PgConnection, work: &RollupWork) -> Result<()> {
    if work.merge.is_empty() {
        return Ok(());
    }
    let m = &work.merge;
    let col = |f: fn(&(i64, i16, i64, crate::domain::metrics::Agg)) -> i64| {
        m.iter().map(f).collect::<Vec<i64>>()
    };
    let colf = |f: fn(&(i64, i16, i64, crate::domain::metrics::Agg)) -> f64| {
        m.iter().map(f).collect::<Vec<f64>>()
    };
    let levels: Vec<i16> = m.iter().map(|r| r.1).collect();
    query(
        "insert into metric_rollups as r (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last) \
         select * from unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[], $5::float8[], $6::float8[], \
                              $7::float8[], $8::bigint[], $9::bigint[], $10::float8[]) \
         on conflict (series_id, level, block) do update set \
           count = r.count + excluded.count, min = least(r.min, excluded.min), \
           max = greatest(r.max, excluded.max), scaled_sum = r.scaled_sum + excluded.scaled_sum, \
           first_step = least(r.first_step, excluded.first_step), \
           last_step = greatest(r.last_step, excluded.last_step), \
           last = case when excluded.last_step > r.last_step then excluded.last else r.last end",
    )
    .bind(col(|r| r.0))
    .bind(levels)
    .bind(col(|r| r.2))
    .bind(col(|r| r.3.count))
    .bind(colf(|r| r.3.min))
    .bind(colf(|r| r.3.max))
    .bind(colf(|r| r.3.scaled_sum))
    .bind(col(|r| r.3.first_step))
    .bind(col(|r| r.3.last_step))
    .bind(colf(|r| r.3.last))
    .execute(conn)
    .await?;
    Ok(())
}

/// Overwrites: touched blocks recomputed, level 1 from the points, each level above from
/// the one below.
async fn recompute(conn: &mut PgConnection, work: &RollupWork) -> Result<()> {
    for (i, blocks) in work.recompute.iter().enumerate() {
        if blocks.is_empty() {
            continue;
        }
        let sids: Vec<i64> = blocks.iter().map(|b| b.0).collect();
        let nums: Vec<i64> = blocks.iter().map(|b| b.1).collect();
        let (level, size) = LEVELS[i];
        let sql = if i == 0 {
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last) \
             select t.series_id, $3, t.block, count(*), min(p.value), max(p.value), \
                    sum(case when abs(p.value) < $6 then 0 else p.value * $5 end), min(p.step), max(p.step), \
                    (array_agg(p.value order by p.step desc))[1] \
             from unnest($1::bigint[], $2::bigint[]) as t(series_id, block) \
             join metric_points p on p.series_id = t.series_id and p.step >= t.block * $4 and p.step < (t.block + 1) * $4 \
             group by t.series_id, t.block \
             on conflict (series_id, level, block) do update set count = excluded.count, min = excluded.min, \
               max = excluded.max, scaled_sum = excluded.scaled_sum, first_step = excluded.first_step, \
               last_step = excluded.last_step, last = excluded.last"
        } else {
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, first_step, last_step, last) \
             select t.series_id, $3, t.block, sum(r.count)::bigint, min(r.min), max(r.max), sum(r.scaled_sum), \
                    min(r.first_step), max(r.last_step), (array_agg(r.last order by r.last_step desc))[1] \
             from unnest($1::bigint[], $2::bigint[]) as t(series_id, block) \
             join metric_rollups r on r.series_id = t.series_id and r.level = $3 - 1 \
               and r.block >= t.block * $4 and r.block < (t.block + 1) * $4 \
             group by t.series_id, t.block \
             on conflict (series_id, level, block) do update set count = excluded.count, min = excluded.min, \
               max = excluded.max, scaled_sum = excluded.scaled_sum, first_step = excluded.first_step, \
               last_step = excluded.last_step, last = excluded.last"
        };
        let factor = if i == 0 { size } else { LEVEL_FACTOR };
        let mut q = query(sql).bind(&sids).bind(&nums).bind(level).bind(factor);
        if i == 0 {
            q = q.bind(SUM_SCALE).bind(SUM_FLOOR);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
