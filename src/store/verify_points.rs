//! The checks of stored points that SQL cannot make, one series at a time: packed blocks
//! decode, hold only their own steps and the count they record, and no block is held both
//! packed and as rows; level-1 rollups summarise exactly the points (decoded or rows); the
//! last value kept for the series is its last point's.

use super::point_blocks::BLOCK_STEPS;
use super::sql::{Conn, Stmt};
use super::verify::Finding;
use crate::domain::metrics::{Agg, LEVELS, Point, SUM_SCALE};
use crate::domain::point_block;
use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};

type RollupRow = (i64, i64, f64, f64, f64, i64, i64, f64);

/// Findings about points, at most `max`.
pub(crate) async fn findings<C: Conn>(conn: &mut C, max: usize) -> Result<Vec<Finding>> {
    let series: Vec<(i64, String, Option<i64>, Option<f64>)> = conn
        .fetch_all(Stmt::new(
            "select s.id, m.name || ' v' || cast(v.version as text) || ' ' || s.key, \
                    s.last_step, s.last_value \
             from metric_series s join versions v on v.id = s.version_id \
             join models m on m.id = v.model_id order by s.id",
        ))
        .await?;
    let mut out = Vec::new();
    for (id, name, last_step, last_value) in series {
        if out.len() >= max {
            break;
        }
        let mut found = |check: &'static str, detail: String| {
            out.push(Finding {
                check,
                detail: format!("{name}: {detail}"),
            })
        };
        let blocks: Vec<(i64, i64, Vec<u8>)> = conn
            .fetch_all(
                Stmt::new(
                    "select block, count, data from metric_blocks where series_id = $1 \
                     order by block",
                )
                .bind(id),
            )
            .await?;
        let rows: Vec<(i64, f64, i64)> = conn
            .fetch_all(
                Stmt::new(
                    "select step, value, at from metric_points where series_id = $1 \
                     order by step",
                )
                .bind(id),
            )
            .await?;
        let mut points: BTreeMap<i64, Point> = BTreeMap::new();
        let mut packed = BTreeSet::new();
        for (block, count, data) in blocks {
            packed.insert(block);
            match point_block::decode(&data) {
                Err(e) => found("metric_block", format!("block {block}: {e}")),
                Ok(decoded) => {
                    if decoded.len() as i64 != count
                        || decoded.iter().any(|p| p.step / BLOCK_STEPS != block)
                    {
                        found(
                            "metric_block",
                            format!("block {block} holds other points than it records"),
                        );
                    }
                    points.extend(decoded.into_iter().map(|p| (p.step, p)));
                }
            }
        }
        let split: BTreeSet<i64> = rows
            .iter()
            .map(|r| r.0 / BLOCK_STEPS)
            .filter(|b| packed.contains(b))
            .collect();
        for block in split {
            found(
                "metric_block",
                format!("block {block} is held both packed and as rows"),
            );
        }
        points.extend(
            rows.into_iter()
                .map(|(step, value, at)| (step, Point { step, value, at })),
        );
        let last = points.values().next_back();
        if last.map(|p| p.step) != last_step || last.map(|p| p.value) != last_value {
            found(
                "metric_last_value",
                "the last value kept for the series is not its last point".to_owned(),
            );
        }
        let mut aggs: BTreeMap<i64, Agg> = BTreeMap::new();
        for p in points.values() {
            let agg = Agg::of(p);
            aggs.entry(p.step / LEVELS[0].1)
                .and_modify(|a| *a = a.then(agg))
                .or_insert(agg);
        }
        let stored: Vec<RollupRow> = conn
            .fetch_all(
                Stmt::new(
                    "select block, count, min, max, scaled_sum, first_step, last_step, last \
                     from metric_rollups where series_id = $1 and level = 1 order by block",
                )
                .bind(id),
            )
            .await?;
        for (block, count, min, max, scaled_sum, first_step, last_step, last) in stored {
            let Some(a) = aggs.remove(&block) else {
                found(
                    "rollup",
                    format!("level 1 block {block} summarises no points"),
                );
                continue;
            };
            // Halves first: |min| + |max| overflows for values near f64::MAX.
            let bound = 1e-9 * SUM_SCALE * count as f64 * (min.abs() * 0.5 + max.abs() * 0.5) * 2.0
                + 1e-300;
            if a.count != count
                || a.min != min
                || a.max != max
                || a.first_step != first_step
                || a.last_step != last_step
                || a.last != last
                || (a.scaled_sum - scaled_sum).abs() > bound
            {
                found(
                    "rollup",
                    format!("level 1 block {block} disagrees with what it summarizes"),
                );
            }
        }
        for block in aggs.keys() {
            found("rollup", format!("level 1 block {block} is missing"));
        }
    }
    out.truncate(max);
    Ok(out)
}
