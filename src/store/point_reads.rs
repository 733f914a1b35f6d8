//! Reads of raw points over both forms they are stored in: packed blocks (`metric_blocks`,
//! decoded here) and the rows of open tails (`metric_points`). Each read is one statement, a
//! `union all` of the two forms (and, for buckets, the rollups), so it sees one snapshot: a
//! block packed by a concurrent batch is seen either as rows or as a block, never both or
//! neither.

use super::metrics::BucketRow;
use super::point_blocks::{BLOCK_STEPS, decode};
use super::sql::{Arg, Conn, Stmt};
use crate::domain::downsample::BucketPlan;
use crate::domain::metrics::{Agg, Point};
use crate::error::{Error, Result};
use futures::TryStreamExt;
use std::collections::BTreeMap;

/// At most `$4` packed blocks of blocks `$2..=$3` and `$7` rows of steps `$5..=$6`.
const CHUNK: &str = "\
    select * from (select block as k, data, cast(null as double precision) as value, \
                          cast(null as bigint) as at \
                   from metric_blocks where series_id = $1 and block >= $2 and block <= $3 \
                   order by block limit $4) b \
    union all \
    select * from (select step, cast(null as bytea), value, at from metric_points \
                   where series_id = $1 and step >= $5 and step <= $6 order by step limit $7) p";

/// A packed block (`k` its number, `data`) or a row (`k` its step, `value`, `at`).
type ChunkRow = (i64, Option<Vec<u8>>, Option<f64>, Option<i64>);

/// A chunk of the raw points of `first..=to`, in step order, with where the next chunk
/// starts (`None` at the end). Up to `limit` rows and `limit / BLOCK_STEPS` blocks are read;
/// the chunk ends where either source may have more, so that chunks never skip a point.
pub(crate) async fn chunk<C: Conn>(
    conn: &mut C,
    series_id: i64,
    first: i64,
    to: i64,
    limit: usize,
) -> Result<(Vec<Point>, Option<i64>)> {
    let max_blocks = (limit as i64 / BLOCK_STEPS).max(1);
    let stmt = Stmt::new(CHUNK)
        .bind(series_id)
        .bind(first / BLOCK_STEPS)
        .bind(to / BLOCK_STEPS)
        .bind(max_blocks)
        .bind(first)
        .bind(to)
        .bind(limit as i64);
    let rows: Vec<ChunkRow> = conn.fetch_all(stmt).await?;
    let (mut packed, mut plain) = (Vec::new(), Vec::new());
    let (mut blocks, mut last_block) = (0, 0);
    for (k, data, value, at) in rows {
        match (data, value, at) {
            (Some(data), _, _) => {
                blocks += 1;
                last_block = k;
                let points = decode(series_id, k, &data)?;
                packed.extend(
                    points
                        .into_iter()
                        .filter(|p| p.step >= first && p.step <= to),
                );
            }
            (None, Some(value), Some(at)) => plain.push(Point { step: k, value, at }),
            _ => return Err(Error::internal("a point row without a value")),
        }
    }
    let mut cutoff = to;
    if blocks == max_blocks {
        cutoff = cutoff.min((last_block + 1) * BLOCK_STEPS - 1);
    }
    if plain.len() == limit {
        cutoff = cutoff.min(plain.last().map_or(to, |p| p.step));
    }
    let mut points = merge_sorted(packed, plain);
    points.retain(|p| p.step <= cutoff);
    Ok((points, (cutoff < to).then_some(cutoff + 1)))
}

/// Merges two step-sorted runs of disjoint steps.
fn merge_sorted(a: Vec<Point>, b: Vec<Point>) -> Vec<Point> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for p in a {
        while let Some(q) = b.next_if(|q| q.step < p.step) {
            out.push(q);
        }
        out.push(p);
    }
    out.extend(b);
    out
}

/// Buckets from full rollup blocks (grouped in SQL, kind 0), plus the raw points of the
/// partial edge ranges: packed blocks (kind 1) and rows (kind 2), folded here.
const BUCKETS: &str = "\
    select cast(0 as bigint) as kind, bucket as k, cast(sum(count) as bigint) as count, \
           min(min) as min, max(max) as max, sum(scaled_sum) as scaled_sum, \
           max(last_step) as last_step, max(lastv) as last, cast(null as bytea) as data \
    from (select (block * $11 - $9) / $10 as bucket, count, min, max, scaled_sum, last_step, \
                 first_value(last) over (partition by (block * $11 - $9) / $10 \
                                         order by last_step desc) as lastv \
          from metric_rollups \
          where series_id = $1 and level = $2 and block >= $3 and block <= $4) r \
    group by bucket \
    union all \
    select cast(1 as bigint), block, cast(0 as bigint), cast(0 as double precision), \
           cast(0 as double precision), cast(0 as double precision), cast(0 as bigint), \
           cast(0 as double precision), data \
    from metric_blocks \
    where series_id = $1 and ((block >= $12 and block <= $13) or (block >= $14 and block <= $15)) \
    union all \
    select cast(2 as bigint), step, at, value, value, cast(0 as double precision), \
           cast(0 as bigint), cast(0 as double precision), cast(null as bytea) \
    from metric_points \
    where series_id = $1 and ((step >= $5 and step < $6) or (step > $7 and step <= $8))";

type BucketPart = (i64, i64, i64, f64, f64, f64, i64, f64, Option<Vec<u8>>);

/// Buckets from full rollup blocks only, grouped and ordered in SQL: a read with no partial
/// edge (a whole series, or a range aligned to the level's blocks) reads no point, so it
/// needs neither the union with the raw forms nor the fold (a narrower row per bucket).
const ROLLUP_BUCKETS: &str = "\
    select bucket, cast(sum(count) as bigint) as count, min(min) as min, max(max) as max, \
           sum(scaled_sum) as scaled_sum, max(lastv) as last \
    from (select (block * $5 - $3) / $4 as bucket, count, min, max, scaled_sum, \
                 first_value(last) over (partition by (block * $5 - $3) / $4 \
                                         order by last_step desc) as lastv \
          from metric_rollups \
          where series_id = $1 and level = $2 and block >= $6 and block <= $7) r \
    group by bucket order by bucket";

/// The buckets of a plan, in bucket order, empty buckets left out.
pub(crate) async fn buckets<C: Conn>(
    conn: &mut C,
    series_id: i64,
    plan: &BucketPlan,
) -> Result<Vec<BucketRow>> {
    let ((h0, h1), (t0, t1)) = plan.raw_edges();
    if h0 >= h1 && t0 >= t1 {
        let stmt = Stmt::new(ROLLUP_BUCKETS)
            .bind(series_id)
            .bind(Arg::I16(plan.level))
            .bind(plan.origin)
            .bind(plan.width)
            .bind(plan.block)
            .bind(plan.full_lo)
            .bind(plan.full_hi);
        return conn.fetch_all(stmt).await;
    }
    // Packed blocks that hold steps of `[h0, h1)` and `(t0, t1]`; (1, 0) is none.
    let head = if h0 < h1 {
        (h0 / BLOCK_STEPS, (h1 - 1) / BLOCK_STEPS)
    } else {
        (1, 0)
    };
    let tail = if t0 < t1 {
        ((t0 + 1) / BLOCK_STEPS, t1 / BLOCK_STEPS)
    } else {
        (1, 0)
    };
    let stmt = Stmt::new(BUCKETS)
        .bind(series_id)
        .bind(Arg::I16(plan.level))
        .bind(plan.full_lo)
        .bind(plan.full_hi)
        .bind(h0)
        .bind(h1)
        .bind(t0)
        .bind(t1)
        .bind(plan.origin)
        .bind(plan.width)
        .bind(plan.block)
        .bind(head.0)
        .bind(head.1)
        .bind(tail.0)
        .bind(tail.1);
    let in_edges = |step: i64| (h0 <= step && step < h1) || (t0 < step && step <= t1);
    let mut acc: BTreeMap<i64, Agg> = BTreeMap::new();
    let mut add = |bucket: i64, agg: Agg| {
        acc.entry(bucket)
            .and_modify(|a| *a = a.then(agg))
            .or_insert(agg);
    };
    let bucket_of = |step: i64| (step - plan.origin) / plan.width;
    let mut rows = conn.fetch::<BucketPart>(stmt);
    while let Some((kind, k, count, min, max, scaled_sum, last_step, last, data)) =
        rows.try_next().await?
    {
        match (kind, data) {
            (0, _) => add(
                k,
                Agg {
                    count,
                    min,
                    max,
                    scaled_sum,
                    first_step: last_step,
                    last_step,
                    last,
                },
            ),
            (1, Some(data)) => {
                for p in decode(series_id, k, &data)? {
                    if in_edges(p.step) {
                        add(bucket_of(p.step), Agg::of(&p));
                    }
                }
            }
            (2, _) => {
                let p = Point {
                    step: k,
                    value: min,
                    at: count,
                };
                add(bucket_of(p.step), Agg::of(&p));
            }
            _ => return Err(Error::internal("a bucket read part of no known kind")),
        }
    }
    Ok(acc
        .into_iter()
        .map(|(bucket, a)| BucketRow {
            bucket,
            count: a.count,
            min: a.min,
            max: a.max,
            scaled_sum: a.scaled_sum,
            last: a.last,
        })
        .collect())
}
