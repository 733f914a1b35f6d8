//! What a metric batch does to the rollups: merged block aggregates for appends, blocks to
//! recompute for overwrites.

use super::sql::{Arg, Conn, Stmt};
use crate::domain::metrics::{Agg, LEVEL_FACTOR, LEVELS, SeriesBatch, block_aggs, touched_blocks};
use crate::error::Result;
use std::collections::HashMap;

/// What a batch does to the rollups, once the series' current extents are known.
#[derive(Debug, Default)]
pub(crate) struct RollupWork {
    /// Appended points (all after the series' last step): block aggregates merged into the rows.
    pub merge: Vec<(i64, i16, i64, Agg)>,
    /// Overwrites or out-of-order points: `(series_id, block)` per level to recompute, finest first.
    pub recompute: [Vec<(i64, i64)>; 3],
}

/// Whether a batch only adds steps after everything the series holds (so it can conflict with
/// nothing stored, and its block aggregates can be merged rather than recomputed).
pub(crate) fn appends_only(
    last_steps: &HashMap<i64, i64>,
    series_id: i64,
    batch: &SeriesBatch,
) -> bool {
    match (last_steps.get(&series_id), batch.points.first()) {
        (Some(last), Some(first)) => first.step > *last,
        _ => true,
    }
}

impl RollupWork {
    /// Splits batches by whether they only append to their series.
    pub fn plan(batches: &[(i64, &SeriesBatch)], last_steps: &HashMap<i64, i64>) -> Self {
        let mut work = RollupWork::default();
        for (sid, batch) in batches {
            if appends_only(last_steps, *sid, batch) {
                work.merge.extend(
                    block_aggs(&batch.points)
                        .into_iter()
                        .map(|(l, b, a)| (*sid, l, b, a)),
                );
            } else {
                let l1 = touched_blocks(&batch.points, LEVELS[0].1);
                let l2 = dedup(l1.iter().map(|b| b / LEVEL_FACTOR));
                let l3 = dedup(l2.iter().map(|b| b / LEVEL_FACTOR));
                for (i, blocks) in [l1, l2, l3].into_iter().enumerate() {
                    work.recompute[i].extend(blocks.into_iter().map(|b| (*sid, b)));
                }
            }
        }
        work
    }
}

fn dedup(it: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut v: Vec<i64> = it.collect();
    v.dedup();
    v
}

/// Rows per statement of [`store_exact_rollups`] (ten parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// Sets level-1 rollup blocks to aggregates computed from packed contents.
pub(crate) async fn store_exact_rollups<C: Conn>(
    conn: &mut C,
    exact: &[(i64, i64, Agg)],
) -> Result<()> {
    for chunk in exact.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut stmt = Stmt::new(String::new());
        for (i, (sid, block, a)) in chunk.iter().enumerate() {
            let n = 10 * i;
            let p: Vec<String> = (1..=10).map(|k| format!("${}", n + k)).collect();
            values.push(format!("({})", p.join(", ")));
            stmt = stmt
                .bind(*sid)
                .bind(Arg::I16(LEVELS[0].0))
                .bind(*block)
                .bind(a.count)
                .bind(a.min)
                .bind(a.max)
                .bind(a.scaled_sum)
                .bind(a.first_step)
                .bind(a.last_step)
                .bind(a.last);
        }
        stmt.sql = format!(
            "insert into metric_rollups (series_id, level, block, count, min, max, scaled_sum, \
             first_step, last_step, last) values {} \
             on conflict (series_id, level, block) do update set count = excluded.count, \
             min = excluded.min, max = excluded.max, scaled_sum = excluded.scaled_sum, \
             first_step = excluded.first_step, last_step = excluded.last_step, last = excluded.last",
            values.join(", ")
        )
        .into();
        conn.execute(stmt).await?;
    }
    Ok(())
}
