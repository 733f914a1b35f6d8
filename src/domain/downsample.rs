//! Downsampled reads: which rollup level and which raw edges answer a read of at most
//! `max_points` buckets, and whether buckets are worth it at all (a range that holds no more
//! points than asked for is answered with the points themselves).

use super::metrics::LEVELS;

/// How to answer a bucketed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketPlan {
    /// Rollup level read, or 0 for raw points only.
    pub level: i16,
    /// Block size of that level (1 for raw).
    pub block: i64,
    /// First step of bucket 0 (aligned to a block).
    pub origin: i64,
    /// Bucket width in steps: a whole number of blocks.
    pub width: i64,
    /// Blocks `full_lo..=full_hi` are read from rollups (empty when `full_lo > full_hi`).
    pub full_lo: i64,
    pub full_hi: i64,
    /// Steps `from..=to` actually covered; raw points fill the edges outside the full blocks.
    pub from: i64,
    pub to: i64,
}

impl BucketPlan {
    /// The first raw range `[lo, hi)` and the second `(lo, hi]`, around the full blocks.
    pub fn raw_edges(&self) -> ((i64, i64), (i64, i64)) {
        if self.full_lo > self.full_hi {
            return ((self.from, self.to + 1), (self.to, self.to));
        }
        let head = (self.from, (self.full_lo * self.block).min(self.to + 1));
        let tail = (
            ((self.full_hi + 1) * self.block - 1).max(self.from - 1),
            self.to,
        );
        (head, tail)
    }

    /// The step range of bucket `b`, clipped to the covered range.
    pub fn bucket_range(&self, b: i64) -> (i64, i64) {
        let start = self.origin + b * self.width;
        (start.max(self.from), (start + self.width - 1).min(self.to))
    }
}

/// Plans ≤ `max_points` equal-width buckets over `[from, to]` of a series whose points span
/// `[first, last]`; `None` when the ranges do not meet.
pub fn plan_buckets(
    first: i64,
    last: i64,
    from: Option<i64>,
    to: Option<i64>,
    max_points: u32,
) -> Option<BucketPlan> {
    let n = i64::from(max_points.max(1));
    let from_eff = from.map_or(first, |f| f.max(first));
    let to_eff = to.map_or(last, |t| t.min(last));
    if from_eff > to_eff {
        return None;
    }
    let blocks_at = |size: i64| to_eff / size - from_eff / size + 1;
    let (level, size) = LEVELS
        .iter()
        .rev()
        .copied()
        .find(|&(_, size)| blocks_at(size) * 2 >= n)
        .unwrap_or((0, 1));
    let k = (blocks_at(size) + n - 1) / n;
    let (full_lo, full_hi) = if level == 0 {
        (1, 0)
    } else {
        // A partial block at an edge is exact when no points lie outside the range there.
        let lo = if from_eff == first {
            from_eff / size
        } else {
            (from_eff + size - 1) / size
        };
        let hi = if to_eff == last {
            to_eff / size
        } else {
            (to_eff + 1) / size - 1
        };
        (lo, hi)
    };
    Some(BucketPlan {
        level,
        block: size,
        origin: from_eff / size * size,
        width: k * size,
        full_lo,
        full_hi,
        from: from_eff,
        to: to_eff,
    })
}

/// The extent of a stored series.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub first_step: i64,
    pub last_step: i64,
    pub count: i64,
}

/// What a read of `from..=to` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The range holds no points.
    Empty,
    /// The raw points of this (non-empty, clamped) range.
    Points { from: i64, to: i64 },
    /// Buckets planned so; see [`worth_bucketing`] once they are read.
    Buckets(BucketPlan),
}

/// Decides a read: raw points without `max_points`, or when the whole series fits in it;
/// otherwise a bucket plan.
pub fn plan_read(s: Extent, from: Option<i64>, to: Option<i64>, max_points: Option<u32>) -> Read {
    let from_eff = from.map_or(s.first_step, |f| f.max(s.first_step));
    let to_eff = to.map_or(s.last_step, |t| t.min(s.last_step));
    if from_eff > to_eff {
        return Read::Empty;
    }
    let points = Read::Points {
        from: from_eff,
        to: to_eff,
    };
    let Some(n) = max_points else {
        return points;
    };
    let whole = from_eff == s.first_step && to_eff == s.last_step;
    if whole && s.count <= i64::from(n) {
        return points;
    }
    match plan_buckets(s.first_step, s.last_step, from, to, n) {
        Some(plan) => Read::Buckets(plan),
        None => Read::Empty,
    }
}

/// Whether buckets holding `total` points answer a read of at most `max_points` better than
/// the points themselves (they do not when the range holds no more points than asked for).
pub fn worth_bucketing(total: i64, max_points: u32) -> bool {
    total > i64::from(max_points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_stay_within_max_points() {
        for (first, last, from, to, n) in [
            (0, 999_999, None, None, 1000),
            (0, 999_999, Some(12_345), Some(876_543), 1000),
            (5, 100, None, None, 10),
            (0, 10_000_000, None, None, 7),
            (0, 1_000_000, Some(500), Some(501), 1000),
            (3, 3, None, None, 1),
        ] {
            let p = plan_buckets(first, last, from, to, n).unwrap();
            let buckets = (p.to - p.origin) / p.width + 1;
            assert!(buckets <= i64::from(n), "{p:?} gives {buckets} buckets");
            assert_eq!(p.width % p.block, 0);
            assert_eq!(p.origin % p.block, 0);
        }
        // A million steps into 1,000 buckets reads 1,024-step rollups: ~977 rows.
        let p = plan_buckets(0, 999_999, None, None, 1000).unwrap();
        assert_eq!((p.level, p.width, p.full_lo, p.full_hi), (2, 1024, 0, 976));
        let ((h0, h1), (t0, t1)) = p.raw_edges();
        assert!(
            h0 >= h1 && t0 >= t1,
            "no raw edges when the range is the whole series"
        );
        assert!(plan_buckets(0, 10, Some(20), None, 5).is_none());
    }

    #[test]
    fn partial_edge_blocks_are_read_raw() {
        let p = plan_buckets(0, 999_999, Some(100), Some(900_000), 1000).unwrap();
        let ((h0, h1), (t0, t1)) = p.raw_edges();
        assert_eq!(h0, 100);
        assert_eq!(h1, p.full_lo * p.block);
        assert_eq!(t0, (p.full_hi + 1) * p.block - 1);
        assert_eq!(t1, 900_000);
        assert_eq!(p.bucket_range(0).0, 100);
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    const SERIES: Extent = Extent {
        first_step: 0,
        last_step: 9_999,
        count: 10_000,
    };

    #[test]
    fn raw_without_max_points_or_when_the_series_fits() {
        assert_eq!(
            plan_read(SERIES, Some(10), Some(20), None),
            Read::Points { from: 10, to: 20 }
        );
        assert_eq!(
            plan_read(SERIES, None, None, Some(10_000)),
            Read::Points { from: 0, to: 9_999 }
        );
        assert_eq!(plan_read(SERIES, Some(20_000), None, Some(5)), Read::Empty);
        assert!(matches!(
            plan_read(SERIES, None, None, Some(100)),
            Read::Buckets(_)
        ));
        // A sub-range is bucketed; whether that pays is known once its buckets are counted.
        assert!(matches!(
            plan_read(SERIES, Some(0), Some(50), Some(100)),
            Read::Buckets(_)
        ));
        assert!(!worth_bucketing(51, 100));
        assert!(worth_bucketing(101, 100));
    }
}
