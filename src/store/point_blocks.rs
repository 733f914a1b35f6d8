//! Compressed point blocks on the write side. The points of a completed block of
//! [`BLOCK_STEPS`] steps live as one `metric_blocks` row, encoded by
//! [`crate::domain::point_block`]. A series' open tail (the block of its last step) is packed
//! too when a batch brings it enough points ([`PACK_TAIL_FROM`]); small batches add
//! `metric_points` rows to it, moved into the block when it completes. A block is held in one
//! form only, never split between the two.
//!
//! A batch, under its series locks, packs every block it completes or touches below the
//! series' new tail: a stored block is decoded, merged (the batch wins a step) and encoded
//! again; the rows of a block that completes are moved out of `metric_points` with one
//! `delete … returning` and packed with the batch's points. What is left (the batch's part in
//! the new tail) is written as rows. Rollups do not care which form a point has, so appends
//! merge their aggregates as before; for overwrites, the level-1 blocks inside packed blocks are
//! recomputed here from the merged contents (SQL cannot read the encoded points).

use super::sql::{Arg, Conn, Stmt};
use crate::domain::metrics::{Agg, LEVELS, Point, SeriesBatch};
use crate::domain::point_block;
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};

/// Steps per compressed block: the level-2 rollup block.
pub(crate) const BLOCK_STEPS: i64 = LEVELS[1].1;

/// A batch bringing this many points to a series' open tail block packs that block too (its
/// rows, if any, moved in): rewriting a block of up to 1,024 points (about 8 KB) then costs
/// less than writing the points as rows and moving them again when the block completes. A
/// smaller batch adds rows, unless the block is packed already.
const PACK_TAIL_FROM: usize = 64;

/// Rows per multi-row statement (up to ten parameters each: within both backends' limits).
const ROWS_PER_STATEMENT: usize = 500;

/// What is left of a batch once its completed blocks are packed.
#[derive(Debug, Default)]
pub(crate) struct Packed<'b> {
    /// The points still written as rows: each series' part in its open tail block.
    pub plain: Vec<(i64, &'b [Point])>,
    /// Level-1 rollup blocks recomputed from packed contents for the series that overwrote,
    /// `(series_id, block, aggregate)`: SQL recomputes the others from the rows.
    pub exact: Vec<(i64, i64, Agg)>,
}

/// The points of `points` (sorted by step) in block `block`.
fn in_block(points: &[Point], block: i64) -> &[Point] {
    let lo = points.partition_point(|p| p.step < block * BLOCK_STEPS);
    let hi = points.partition_point(|p| p.step < (block + 1) * BLOCK_STEPS);
    &points[lo..hi]
}

/// Merges two step-sorted runs; `newer` wins a step both hold.
fn merge(older: Vec<Point>, newer: &[Point]) -> Vec<Point> {
    if older.is_empty() {
        return newer.to_vec();
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut old = older.into_iter().peekable();
    for p in newer {
        while let Some(o) = old.next_if(|o| o.step < p.step) {
            out.push(o);
        }
        old.next_if(|o| o.step == p.step);
        out.push(*p);
    }
    out.extend(old);
    out
}

/// Level-1 aggregates of `points` (sorted) over the level-1 blocks that `touched` lies in.
fn level1_aggs(points: &[Point], touched: &[Point]) -> Vec<(i64, Agg)> {
    let size = LEVELS[0].1;
    let wanted: BTreeSet<i64> = touched.iter().map(|p| p.step / size).collect();
    let mut out: Vec<(i64, Agg)> = Vec::new();
    for p in points.iter().filter(|p| wanted.contains(&(p.step / size))) {
        match out.last_mut() {
            Some((b, agg)) if *b == p.step / size => *agg = agg.then(Agg::of(p)),
            _ => out.push((p.step / size, Agg::of(p))),
        }
    }
    out
}

/// One packed block to store.
struct BlockRow {
    series_id: i64,
    block: i64,
    points: Vec<Point>,
}

/// Packs what a batch completes or touches below each series' new tail (see the module
/// comment); the caller holds the series locks and knows each series' stored last step.
pub(crate) async fn pack<'b, C: Conn>(
    conn: &mut C,
    series: &[(i64, &'b SeriesBatch)],
    last_steps: &HashMap<i64, i64>,
) -> Result<Packed<'b>> {
    // Blocks of each series that must be packed, and whether they may already be.
    let mut plans = Vec::with_capacity(series.len());
    let mut candidates = Vec::new();
    for (sid, batch) in series {
        let tail = last_steps.get(sid).map(|last| last / BLOCK_STEPS);
        let Some(batch_tail) = batch.points.last().map(|p| p.step / BLOCK_STEPS) else {
            continue;
        };
        let new_tail = tail.map_or(batch_tail, |t| t.max(batch_tail));
        let mut blocks: BTreeSet<i64> = batch
            .points
            .iter()
            .map(|p| p.step / BLOCK_STEPS)
            .filter(|b| tail.is_some_and(|t| *b <= t))
            .collect();
        if let Some(t) = tail.filter(|t| *t < new_tail) {
            blocks.insert(t);
        }
        candidates.extend(blocks.iter().map(|b| (*sid, *b)));
        plans.push((*sid, *batch, tail, new_tail));
    }
    let mut stored = fetch_blocks(conn, &candidates).await?;
    // A database whose rows lose -0.0 (SQLite stores an integral REAL as an integer): a tail
    // holding one is packed whatever its size.
    let rows_lose =
        |p: &Point| !C::ROWS_KEEP_NEGATIVE_ZERO && p.value == 0.0 && p.value.is_sign_negative();

    let mut packs: Vec<(i64, &'b SeriesBatch, Vec<i64>)> = Vec::with_capacity(plans.len());
    let mut pull = Vec::new();
    let mut out = Packed::default();
    for (sid, batch, tail, new_tail) in plans {
        let tail_points = in_block(&batch.points, new_tail);
        let pack_tail = tail_points.len() >= PACK_TAIL_FROM || tail_points.iter().any(rows_lose);
        let mut blocks: BTreeSet<i64> = batch
            .points
            .iter()
            .map(|p| p.step / BLOCK_STEPS)
            .filter(|b| *b < new_tail || pack_tail || stored.contains_key(&(sid, *b)))
            .collect();
        if let Some(t) = tail.filter(|t| *t < new_tail) {
            blocks.insert(t);
        }
        // Rows can lie only in blocks up to the stored tail, and not in those packed already.
        for b in &blocks {
            if tail.is_some_and(|t| *b <= t) && !stored.contains_key(&(sid, *b)) {
                match pull.last_mut() {
                    Some((s, _, hi)) if *s == sid && *hi + 1 == *b => *hi = *b,
                    _ => pull.push((sid, *b, *b)),
                }
            }
        }
        if !blocks.contains(&new_tail) {
            let at = batch
                .points
                .partition_point(|p| p.step < new_tail * BLOCK_STEPS);
            out.plain.push((sid, &batch.points[at..]));
        }
        packs.push((sid, batch, blocks.into_iter().collect()));
    }
    let mut pulled = pull_rows(conn, &pull).await?;

    let mut rows = Vec::new();
    for (sid, batch, blocks) in packs {
        let overwrites = !super::rollup_work::appends_only(last_steps, sid, batch);
        for block in blocks {
            let new = in_block(&batch.points, block);
            let (older, moved) = match stored.remove(&(sid, block)) {
                Some(points) => (points, false),
                None => (pulled.remove(&(sid, block)).unwrap_or_default(), true),
            };
            if new.is_empty() && !moved {
                continue;
            }
            let points = merge(older, new);
            if overwrites {
                let aggs = level1_aggs(&points, new);
                out.exact
                    .extend(aggs.into_iter().map(|(b, agg)| (sid, b, agg)));
            }
            if !points.is_empty() {
                rows.push(BlockRow {
                    series_id: sid,
                    block,
                    points,
                });
            }
        }
    }
    store_blocks(conn, rows).await?;
    Ok(out)
}

/// Decodes a stored block, or reports it corrupt as an internal error.
pub(crate) fn decode(series_id: i64, block: i64, data: &[u8]) -> Result<Vec<Point>> {
    point_block::decode(data)
        .map_err(|e| Error::internal(format!("series {series_id} block {block}: {e}")))
}

/// The stored packed blocks among `wanted` `(series_id, block)` pairs, decoded.
async fn fetch_blocks<C: Conn>(
    conn: &mut C,
    wanted: &[(i64, i64)],
) -> Result<HashMap<(i64, i64), Vec<Point>>> {
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let sids: BTreeSet<i64> = wanted.iter().map(|w| w.0).collect();
    let blocks: BTreeSet<i64> = wanted.iter().map(|w| w.1).collect();
    let sql = format!(
        "select series_id, block, data from metric_blocks where {} and {}",
        C::in_list("series_id", "$1"),
        C::in_list("block", "$2")
    );
    let stmt = Stmt::new(sql)
        .bind(Arg::I64List(sids.into_iter().collect()))
        .bind(Arg::I64List(blocks.into_iter().collect()));
    let wanted: BTreeSet<&(i64, i64)> = wanted.iter().collect();
    for (sid, block, data) in conn.fetch_all::<(i64, i64, Vec<u8>)>(stmt).await? {
        if wanted.contains(&(sid, block)) {
            out.insert((sid, block), decode(sid, block, &data)?);
        }
    }
    Ok(out)
}

/// Moves the rows of runs of blocks `(series_id, first block, last block)` out of
/// `metric_points`, grouped by block in step order.
async fn pull_rows<C: Conn>(
    conn: &mut C,
    runs: &[(i64, i64, i64)],
) -> Result<HashMap<(i64, i64), Vec<Point>>> {
    let mut out: HashMap<(i64, i64), Vec<Point>> = HashMap::new();
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let mut conds = Vec::with_capacity(chunk.len());
        let mut stmt = Stmt::new(String::new());
        for (i, (sid, lo, hi)) in chunk.iter().enumerate() {
            let n = 3 * i;
            conds.push(format!(
                "(series_id = ${} and step >= ${} and step < ${})",
                n + 1,
                n + 2,
                n + 3
            ));
            stmt = stmt
                .bind(*sid)
                .bind(lo * BLOCK_STEPS)
                .bind((hi + 1) * BLOCK_STEPS);
        }
        stmt.sql = format!(
            "delete from metric_points where {} returning series_id, step, value, at",
            conds.join(" or ")
        )
        .into();
        for (sid, step, value, at) in conn.fetch_all::<(i64, i64, f64, i64)>(stmt).await? {
            out.entry((sid, step / BLOCK_STEPS))
                .or_default()
                .push(Point { step, value, at });
        }
    }
    for points in out.values_mut() {
        points.sort_unstable_by_key(|p| p.step);
    }
    Ok(out)
}

/// Writes packed blocks, replacing those stored.
async fn store_blocks<C: Conn>(conn: &mut C, rows: Vec<BlockRow>) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut stmt = Stmt::new(String::new());
        for (i, row) in chunk.iter().enumerate() {
            let n = 6 * i;
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6
            ));
            // The block's time span, for reads by time (a stage guard's window).
            let first_at = row.points.iter().map(|p| p.at).min();
            let last_at = row.points.iter().map(|p| p.at).max();
            stmt = stmt
                .bind(row.series_id)
                .bind(row.block)
                .bind(row.points.len() as i64)
                .bind(point_block::encode(&row.points))
                .bind(first_at)
                .bind(last_at);
        }
        stmt.sql = format!(
            "insert into metric_blocks (series_id, block, count, data, first_at, last_at) values {} \
             on conflict (series_id, block) do update set count = excluded.count, data = excluded.data, \
                 first_at = excluded.first_at, last_at = excluded.last_at",
            values.join(", ")
        )
        .into();
        conn.execute(stmt).await?;
    }
    Ok(())
}

/// Blocks one compaction transaction packs at most (about a million points): a legacy
/// series of any length converts in bounded steps.
pub(crate) const COMPACT_BLOCKS: i64 = 1_024;

/// What one step of compacting a series did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compacted {
    /// Packed what it held in rows; its mark is cleared.
    Done,
    /// Packed a bounded part; the rest waits for the next step.
    More,
    /// Another process holds the series (its lock, skipped): not this pass's work.
    Busy,
}

/// Packs the rows of one series' completed blocks (and its tail too once its version is no
/// longer pending), in the caller's transaction: the conversion of points stored before
/// blocks existed, and the last block of a finished version. At most [`COMPACT_BLOCKS`]
/// blocks a call; clears the series' mark (and any earlier failure) when none is left.
pub(crate) async fn compact_series<C: Conn>(conn: &mut C, series_id: i64) -> Result<Compacted> {
    let lock = if C::ROW_LOCKS {
        " for update of s skip locked"
    } else {
        ""
    };
    let sql = format!(
        "select s.last_step, v.status from metric_series s join versions v on v.id = s.version_id \
         where s.id = $1{lock}"
    );
    let found: Option<(Option<i64>, String)> =
        conn.fetch_optional(Stmt::new(sql).bind(series_id)).await?;
    let Some((last, status)) = found else {
        return Ok(Compacted::Busy);
    };
    let mut done = true;
    if let Some(last) = last {
        let tail = last / BLOCK_STEPS;
        let upto = if status == "pending" { tail - 1 } else { tail };
        let first: Option<i64> = conn
            .fetch_optional::<(Option<i64>,)>(
                Stmt::new("select min(step) from metric_points where series_id = $1")
                    .bind(series_id),
            )
            .await?
            .and_then(|(s,)| s);
        if let Some(first) = first.map(|s| s / BLOCK_STEPS)
            && first <= upto
        {
            let hi = upto.min(first + COMPACT_BLOCKS - 1);
            done = hi == upto;
            let pulled = pull_rows(conn, &[(series_id, first, hi)]).await?;
            let keys: Vec<(i64, i64)> = pulled.keys().copied().collect();
            let mut stored = fetch_blocks(conn, &keys).await?;
            let rows = pulled
                .into_iter()
                .map(|((sid, block), rows)| BlockRow {
                    series_id: sid,
                    block,
                    points: merge(stored.remove(&(sid, block)).unwrap_or_default(), &rows),
                })
                .collect();
            store_blocks(conn, rows).await?;
        }
    }
    if !done {
        return Ok(Compacted::More);
    }
    let clear = Stmt::new(
        "update metric_series set compact_pending = $2, compact_error = null, \
             compact_retry_at = null where id = $1",
    )
    .bind(series_id)
    .bind(false);
    conn.execute(clear).await?;
    Ok(Compacted::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(step: i64, value: f64) -> Point {
        Point { step, value, at: 0 }
    }

    #[test]
    fn newer_points_win_a_step_and_order_holds() {
        let merged = merge(
            vec![p(1, 1.0), p(3, 3.0), p(5, 5.0)],
            &[p(0, 0.5), p(3, 30.0), p(6, 6.0)],
        );
        let got: Vec<(i64, f64)> = merged.iter().map(|p| (p.step, p.value)).collect();
        assert_eq!(
            got,
            [(0, 0.5), (1, 1.0), (3, 30.0), (5, 5.0), (6, 6.0)].to_vec()
        );
    }

    #[test]
    fn block_slices_cover_only_their_steps() {
        let pts = [p(0, 0.0), p(1023, 1.0), p(1024, 2.0), p(5000, 3.0)];
        assert_eq!(in_block(&pts, 0).len(), 2);
        assert_eq!(in_block(&pts, 1), &pts[2..3]);
        assert!(in_block(&pts, 2).is_empty());
        assert_eq!(in_block(&pts, 4), &pts[3..]);
    }

    #[test]
    fn level1_aggregates_cover_touched_blocks_whole() {
        let all: Vec<Point> = (0..200).map(|s| p(s, s as f64)).collect();
        let aggs = level1_aggs(&all, &[p(70, 0.0), p(100, 0.0)]);
        assert_eq!(aggs.len(), 1);
        let (b, a) = aggs[0];
        assert_eq!((b, a.count, a.first_step, a.last_step), (1, 64, 64, 127));
        assert_eq!((a.min, a.max, a.last), (64.0, 127.0, 127.0));
    }
}
