//! Metric points and their rollups: validation, in-batch deduplication, block aggregates,
//! and the plan of a bucketed (downsampled) read.
//!
//! Rollups summarise each series per block of steps at three levels (64, 1,024 and 16,384
//! steps). A bucketed read picks the coarsest level that still gives at least half the
//! requested buckets, so it reads at most ~8×`max_points` rollup rows however long the series.

use super::names::is_key_char;
use super::time::Timestamp;
use crate::error::Error;
use std::collections::HashMap;

/// `(level, block size in steps)`, finest first. Each level is 16× the one below.
pub const LEVELS: [(i16, i64); 3] = [(1, 64), (2, 1024), (3, 16384)];
pub const LEVEL_FACTOR: i64 = 16;

/// The largest step: 2^53 − 1. Steps stay exact in every JSON client (JavaScript numbers
/// included) and block arithmetic (`(block + 1) × block size`) stays far inside 64 bits.
pub const MAX_STEP: i64 = (1 << 53) - 1;

/// Rollups keep sums of values multiplied by 2^-64: a series holds at most 2^53 points of at
/// most f64::MAX each, so a scaled sum is at most 2^-11 × f64::MAX and no addition can
/// overflow, on either database, whatever the values. Scaling by a power of two is exact for
/// every value of magnitude 2^-958 (about 4e-289) or more; smaller ones count as 0 in sums
/// (their scaled form would be subnormal, and Postgres refuses a product that underflows),
/// which only the mean of such values notices, and a mean is always clamped into its
/// bucket's [min, max].
pub const SUM_SCALE: f64 = 1.0 / 18_446_744_073_709_551_616.0;
/// Values below this magnitude (2^-958) count as 0 in scaled sums.
pub const SUM_FLOOR: f64 = 4.1045368012983762e-289;

/// A value's contribution to a scaled sum.
pub fn scaled(value: f64) -> f64 {
    if value.abs() < SUM_FLOOR {
        0.0
    } else {
        value * SUM_SCALE
    }
}

/// The mean of `count` values with this scaled sum, always finite and within `[min, max]`.
pub fn mean(scaled_sum: f64, count: i64, min: f64, max: f64) -> f64 {
    let m = (scaled_sum / count.max(1) as f64) / SUM_SCALE;
    if m.is_nan() { min } else { m.clamp(min, max) }
}

/// A point as received, before validation.
#[derive(Debug, Clone)]
pub struct RawPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
    pub at: Option<Timestamp>,
}

/// A validated point of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub step: i64,
    pub value: f64,
    /// Microseconds since the Unix epoch.
    pub at: i64,
}

/// The points of one key in a batch: sorted by step, one per step (the last one sent wins).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    pub key: String,
    pub points: Vec<Point>,
}

pub fn check_key(field: &str, key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > 250 || !key.bytes().all(is_key_char) {
        return Err(Error::validation(
            field,
            format!("invalid metric key {key:?}: use 1-250 of A-Z a-z 0-9 _ . : / -"),
        ));
    }
    Ok(())
}

/// A key for new points: a valid key whose `/`-separated segments are neither empty nor `.`
/// nor `..` (the web pages put keys in URL paths, where such segments name other paths).
/// Keys stored before this rule keep working for reads, which use [`check_key`].
pub fn check_new_key(field: &str, key: &str) -> Result<(), Error> {
    check_key(field, key)?;
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(Error::validation(
            field,
            format!(
                "invalid metric key {key:?}: no empty, \".\" or \"..\" segments between slashes"
            ),
        ));
    }
    Ok(())
}

/// Validates a batch (the first bad point's index is in the error) and groups it by key.
pub fn group(points: Vec<RawPoint>, now: Timestamp) -> Result<Vec<SeriesBatch>, Error> {
    let now = now.timestamp_micros();
    let mut by_key: HashMap<String, Vec<(Point, usize)>> = HashMap::new();
    for (i, p) in points.into_iter().enumerate() {
        check_new_key(&format!("points[{i}].key"), &p.key)?;
        if !(0..=MAX_STEP).contains(&p.step) {
            return Err(Error::validation(
                format!("points[{i}].step"),
                format!("step must be an integer from 0 to {MAX_STEP}"),
            ));
        }
        if !p.value.is_finite() {
            return Err(Error::validation(
                format!("points[{i}].value"),
                "value must be a finite number",
            ));
        }
        let at = p.at.map_or(now, |t| t.timestamp_micros());
        by_key.entry(p.key).or_default().push((
            Point {
                step: p.step,
                value: p.value,
                at,
            },
            i,
        ));
    }
    let mut out: Vec<SeriesBatch> = by_key
        .into_iter()
        .map(|(key, mut pts)| {
            // Stable order by (step, position in the batch); keep the last of each step.
            pts.sort_unstable_by_key(|(p, i)| (p.step, *i));
            let mut points: Vec<Point> = Vec::with_capacity(pts.len());
            for (p, _) in pts {
                match points.last_mut() {
                    Some(last) if last.step == p.step => *last = p,
                    _ => points.push(p),
                }
            }
            SeriesBatch { key, points }
        })
        .collect();
    // A fixed key order: series rows are locked in this order, so batches never deadlock.
    out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Aggregate of a run of points in step order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub count: i64,
    pub min: f64,
    pub max: f64,
    /// The sum of the values, scaled by [`SUM_SCALE`].
    pub scaled_sum: f64,
    pub first_step: i64,
    pub last_step: i64,
    pub last: f64,
}

impl Agg {
    pub fn of(p: &Point) -> Self {
        Self {
            count: 1,
            min: p.value,
            max: p.value,
            scaled_sum: scaled(p.value),
            first_step: p.step,
            last_step: p.step,
            last: p.value,
        }
    }

    /// Combines with an aggregate of later steps.
    pub fn then(self, later: Agg) -> Self {
        Self {
            count: self.count + later.count,
            min: self.min.min(later.min),
            max: self.max.max(later.max),
            scaled_sum: self.scaled_sum + later.scaled_sum,
            first_step: self.first_step.min(later.first_step),
            last_step: later.last_step.max(self.last_step),
            last: if later.last_step >= self.last_step {
                later.last
            } else {
                self.last
            },
        }
    }
}

/// Block aggregates of sorted points at every level: `(level, block, agg)`.
pub fn block_aggs(points: &[Point]) -> Vec<(i16, i64, Agg)> {
    let mut out = Vec::new();
    for (level, size) in LEVELS {
        let mut current: Option<(i64, Agg)> = None;
        for p in points {
            let block = p.step / size;
            current = match current {
                Some((b, agg)) if b == block => Some((b, agg.then(Agg::of(p)))),
                Some((b, agg)) => {
                    out.push((level, b, agg));
                    Some((block, Agg::of(p)))
                }
                None => Some((block, Agg::of(p))),
            };
        }
        if let Some((b, agg)) = current {
            out.push((level, b, agg));
        }
    }
    out
}

/// Blocks touched by sorted points at one block size, deduplicated.
pub fn touched_blocks(points: &[Point], size: i64) -> Vec<i64> {
    let mut blocks: Vec<i64> = points.iter().map(|p| p.step / size).collect();
    blocks.dedup();
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_have_no_path_tricks() {
        for ok in ["loss", "val/loss", "a.b/c..d", "train/.hidden", "x:y"] {
            assert!(check_new_key("key", ok).is_ok(), "{ok}");
        }
        for bad in [".", "..", "a/../b", "a/./b", "a//b", "/a", "a/", "../etc"] {
            assert_eq!(
                check_new_key("key", bad).unwrap_err().field.as_deref(),
                Some("key"),
                "{bad}"
            );
            assert!(
                check_key("key", bad).is_ok() || bad.is_empty(),
                "reads still take {bad}"
            );
        }
    }

    fn raw(key: &str, step: i64, value: f64) -> RawPoint {
        RawPoint {
            key: key.to_owned(),
            step,
            value,
            at: None,
        }
    }

    #[test]
    fn last_point_of_a_step_wins_and_keys_are_sorted() {
        let batch = vec![
            raw("b", 2, 1.0),
            raw("a", 5, 1.0),
            raw("b", 1, 2.0),
            raw("b", 2, 3.0),
            raw("a", 5, 4.0),
        ];
        let out = group(batch, crate::domain::time::now()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, "a");
        assert_eq!(
            out[0]
                .points
                .iter()
                .map(|p| (p.step, p.value))
                .collect::<Vec<_>>(),
            [(5, 4.0)]
        );
        assert_eq!(
            out[1]
                .points
                .iter()
                .map(|p| (p.step, p.value))
                .collect::<Vec<_>>(),
            [(1, 2.0), (2, 3.0)]
        );
    }

    #[test]
    fn first_bad_point_is_named() {
        let now = crate::domain::time::now();
        let e = group(vec![raw("a", 1, 1.0), raw("a", -1, 1.0)], now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("points[1].step"));
        let e = group(vec![raw("a", 1, f64::INFINITY)], now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("points[0].value"));
        let e = group(vec![raw("a", 1, 1.0), raw("bad key", 1, 1.0)], now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("points[1].key"));
        assert!(group(vec![raw("val/loss:top-1_x.y", 0, 0.0)], now).is_ok());
        assert!(group(vec![raw(&"k".repeat(251), 0, 0.0)], now).is_err());
    }

    #[test]
    fn steps_are_bounded() {
        let now = crate::domain::time::now();
        assert!(group(vec![raw("a", MAX_STEP, 1.0)], now).is_ok());
        let e = group(vec![raw("a", MAX_STEP + 1, 1.0)], now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("points[0].step"));
        assert!(group(vec![raw("a", i64::MAX, 1.0)], now).is_err());
        // Block arithmetic at the largest step stays in range.
        let (_, size) = LEVELS[2];
        assert!((MAX_STEP / size + 1).checked_mul(size).is_some());
    }

    #[test]
    fn scaled_sums_never_overflow_and_means_stay_in_range() {
        let (max, min) = (f64::MAX, f64::MIN);
        // 2^53 points of f64::MAX: the scaled sum is finite.
        assert!((scaled(max) * 9_007_199_254_740_992.0).is_finite());
        let s = scaled(max) + scaled(max);
        assert_eq!(mean(s, 2, max, max), max);
        assert_eq!(mean(scaled(max) + scaled(min), 2, min, max), 0.0);
        assert_eq!(mean(scaled(0.25) + scaled(0.75), 2, 0.25, 0.75), 0.5);
        // Exact for ordinary values: scaling is by a power of two.
        for v in [SUM_FLOOR, -1e-280, 3.0e-12, 0.1, 7.0, 1e300, -2.5, f64::MAX] {
            assert_eq!(mean(scaled(v), 1, v, v), v);
            assert_eq!(scaled(v) / SUM_SCALE, v);
        }
        // Tiny values count as 0 in the sum; their mean is clamped into [min, max].
        let tiny = 5e-324;
        assert_eq!(scaled(tiny), 0.0);
        assert_eq!(mean(0.0, 3, tiny, 2.0 * tiny), tiny);
        assert_eq!(mean(scaled(1e-300), 1, 1e-300, 1e-300), 1e-300);
        assert_eq!(SUM_FLOOR, 2f64.powi(-958));
        assert_eq!(SUM_SCALE, 2f64.powi(-64));
    }

    #[test]
    fn block_aggregates() {
        let pts: Vec<Point> = (0..100)
            .map(|s| Point {
                step: s,
                value: (s % 7) as f64,
                at: 0,
            })
            .collect();
        let aggs = block_aggs(&pts);
        let l1: Vec<_> = aggs.iter().filter(|(l, _, _)| *l == 1).collect();
        assert_eq!(l1.len(), 2);
        assert_eq!(l1[0].2.count, 64);
        assert_eq!(l1[1].2.first_step, 64);
        assert_eq!(l1[1].2.last, (99 % 7) as f64);
        let l3: Vec<_> = aggs.iter().filter(|(l, _, _)| *l == 3).collect();
        assert_eq!(l3[0].2.count, 100);
        assert_eq!(l3[0].2.max, 6.0);
        assert_eq!(touched_blocks(&pts, 64), [0, 1]);
    }
}
