//! Metrics: the ingestion flow and every read, written once. Reads use only portable SQL
//! (window functions, `cast`, `$n` parameters); the bulk writes of points and rollups are
//! each backend's own (`COPY` and `unnest` on Postgres, `json_each` on SQLite).

pub(crate) use super::rollup_work::{RollupWork, appends_only};
use super::sql::{Arg, Conn, Stmt};
use super::{Backend, SqlStore, versions};
use crate::domain::ModelName;
use crate::domain::downsample::BucketPlan;
use crate::domain::metrics::{Point, SeriesBatch};
use crate::error::{Error, Result};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use std::collections::HashMap;
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait MetricStore {
    /// Writes a validated, deduplicated batch atomically; points already there are replaced.
    async fn write_metrics(
        &self,
        model: &ModelName,
        version: i64,
        batches: &[SeriesBatch],
    ) -> Result<()>;
    /// Per-key summaries of a version's metrics.
    async fn metric_summaries(&self, model: &ModelName, version: i64)
    -> Result<Vec<MetricSummary>>;
    /// The series of a key; `Ok(None)` when the version exists but has no such key.
    async fn find_series(
        &self,
        model: &ModelName,
        version: i64,
        key: &str,
    ) -> Result<Option<SeriesInfo>>;
    /// Downsampled buckets of a series, in bucket order, empty buckets left out.
    async fn read_buckets(&self, series_id: i64, plan: &BucketPlan) -> Result<Vec<BucketRow>>;
    /// Raw points of `from..=to`, streamed in chunks so that long series never sit in memory.
    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream;
}

/// Summary of one metric of a version.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct MetricSummary {
    pub key: String,
    pub count: i64,
    pub first_step: i64,
    pub last_step: i64,
    pub min: f64,
    pub max: f64,
    /// The value at `last_step`.
    pub last: f64,
}

/// Where a series is and how far it extends.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct SeriesInfo {
    pub id: i64,
    pub count: i64,
    pub first_step: i64,
    pub last_step: i64,
}

/// One bucket of a downsampled read, as stored aggregates (the API adds the step range).
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct BucketRow {
    pub bucket: i64,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    /// Sum of the values scaled by [`crate::domain::metrics::SUM_SCALE`].
    pub scaled_sum: f64,
    pub last: f64,
}

/// Raw points of a range, in step order, a chunk at a time.
pub type PointStream = BoxStream<'static, Result<Vec<Point>>>;

/// Rows of a streamed read are fetched and handed over in chunks of this many points (one
/// query each; about 1.3 MB of JSON).
pub const STREAM_CHUNK: usize = 16_384;

pub(crate) const SUMMARIES: &str = "\
    select key, cast(sum(count) as bigint) as count, min(first_step) as first_step, \
           max(last_step) as last_step, min(min) as min, max(max) as max, max(lastv) as last \
    from (select s.key, r.count, r.first_step, r.last_step, r.min, r.max, \
                 first_value(r.last) over (partition by s.id order by r.last_step desc) as lastv \
          from metric_series s join metric_rollups r on r.series_id = s.id and r.level = 3 \
          where s.version_id = $1) x \
    group by key order by key";

pub(crate) const SERIES: &str = "\
    select s.id, cast(coalesce(sum(r.count), 0) as bigint) as count, \
           coalesce(min(r.first_step), 0) as first_step, coalesce(max(r.last_step), -1) as last_step \
    from metric_series s left join metric_rollups r on r.series_id = s.id and r.level = 3 \
    where s.version_id = $1 and s.key = $2 group by s.id";

/// Buckets from full rollup blocks plus the raw points of partial edge blocks (whose values
/// are scaled as rollup sums are: `$12` is the scale, `$13` the floor below which a value
/// counts as 0, see [`crate::domain::metrics::scaled`]).
pub(crate) const BUCKETS: &str = "\
    select bucket, cast(sum(count) as bigint) as count, min(min) as min, max(max) as max, \
           sum(scaled_sum) as scaled_sum, max(lastv) as last \
    from (select (s - $9) / $10 as bucket, count, min, max, scaled_sum, \
                 first_value(last) over (partition by (s - $9) / $10 order by last_step desc) as lastv \
          from (select block * $11 as s, count, min, max, scaled_sum, last_step, last \
                  from metric_rollups \
                  where series_id = $1 and level = $2 and block >= $3 and block <= $4 \
                union all \
                select step, 1, value, value, case when abs(value) < $13 then 0 else value * $12 end, step, value \
                  from metric_points \
                  where series_id = $1 and ((step >= $5 and step < $6) or (step > $7 and step <= $8))) parts) b \
    group by bucket order by bucket";

/// One chunk of a raw read: at most `$4` points of `$2..=$3`, from `$2` on.
pub(crate) const POINTS_CHUNK: &str = "select step, value, at from metric_points \
    where series_id = $1 and step >= $2 and step <= $3 order by step limit $4";

/// Streams the points of `from..=to`, a chunk of [`STREAM_CHUNK`] at a time. Each chunk is one
/// query (`fetch(first_step)`) on a connection taken from the pool and given back before the
/// chunk is handed on: a reader that stalls holds no database connection, only the chunks
/// buffered for it. Each chunk is consistent; a write that commits between two chunks shows
/// in the later one if it lands there. Stops when the reader goes away.
pub(crate) fn chunked_points<F, Fut>(from: i64, to: i64, fetch: F) -> PointStream
where
    F: Fn(i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<(i64, f64, i64)>>> + Send,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Point>>>(2);
    tokio::spawn(async move {
        let mut next = from;
        while next <= to {
            let rows = match fetch(next).await {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let full = rows.len() == STREAM_CHUNK;
            let Some(&(last, _, _)) = rows.last() else {
                return;
            };
            next = last + 1;
            let chunk = rows
                .into_iter()
                .map(|(step, value, at)| Point { step, value, at })
                .collect();
            if tx.send(Ok(chunk)).await.is_err() || !full {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// The bulk writes of a batch, each backend's own (`COPY` and `unnest` arrays on Postgres,
/// `json_each` on SQLite): a statement or two per batch, never one per point.
#[async_trait]
pub(crate) trait MetricWrites {
    /// Writes points: `appends` lie after everything their series holds, `overwrites` may
    /// replace stored points.
    async fn write_points(
        &mut self,
        appends: &[&(i64, &SeriesBatch)],
        overwrites: &[&(i64, &SeriesBatch)],
    ) -> Result<()>;
    /// Merges appended block aggregates into the rollups.
    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()>;
    /// Recomputes the rollup blocks overwrites touched, finest level first.
    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()>;
}

/// Ids of a version's series by key, created if missing and locked against concurrent
/// writers of the same series in key order, so that their rollups stay exact and two
/// batches never wait on each other in a cycle (on SQLite the write lock is held already).
async fn lock_series<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    keys: Vec<String>,
) -> Result<Vec<(i64, String)>> {
    let create = format!(
        "insert into metric_series (version_id, key, created_at, model_id) \
         select $1, value, $3, (select model_id from versions where id = $1) \
         from {} where true on conflict (version_id, key) do nothing",
        C::elements("$2")
    );
    let now = crate::domain::time::now();
    conn.execute(
        Stmt::new(create)
            .bind(version_id)
            .bind(keys.clone())
            .bind(now),
    )
    .await?;
    let lock = if C::ROW_LOCKS { " for update" } else { "" };
    let select = format!(
        "select id, key from metric_series where version_id = $1 and {} order by key{lock}",
        C::in_list("key", "$2")
    );
    conn.fetch_all(Stmt::new(select).bind(version_id).bind(keys))
        .await
}

/// Writes a batch: series created and locked, points written, rollups merged (appends) or
/// recomputed (overwrites).
async fn write<C: Conn>(conn: &mut C, version_id: Uuid, batches: &[SeriesBatch]) -> Result<()> {
    let keys = batches.iter().map(|b| b.key.clone()).collect();
    let ids = lock_series(conn, version_id, keys).await?;
    let ids: HashMap<&str, i64> = ids.iter().map(|(id, k)| (k.as_str(), *id)).collect();
    let mut series = Vec::with_capacity(batches.len());
    for b in batches {
        let id = ids
            .get(b.key.as_str())
            .ok_or_else(|| Error::internal("metric series vanished in its transaction"))?;
        series.push((*id, b));
    }
    let sql = format!(
        "select series_id, max(last_step) from metric_rollups \
         where level = 3 and {} group by series_id",
        C::in_list("series_id", "$1")
    );
    let sids = series.iter().map(|(id, _)| *id).collect();
    let last_steps: HashMap<i64, i64> = conn
        .fetch_all::<(i64, i64)>(Stmt::new(sql).bind(Arg::I64List(sids)))
        .await?
        .into_iter()
        .collect();
    // Under the series locks, a series whose new points all lie after its last step cannot
    // conflict with stored points.
    let (appends, overwrites): (Vec<_>, Vec<_>) = series
        .iter()
        .partition(|(id, b)| appends_only(&last_steps, *id, b));
    conn.write_points(&appends, &overwrites).await?;
    let work = RollupWork::plan(&series, &last_steps);
    conn.merge_rollups(&work).await?;
    conn.recompute_rollups(&work).await?;
    update_last_values(conn, &series, &last_steps).await
}

/// Moves the last value of each series the batch wrote at or after its last step: one
/// statement for the whole batch, the values taken from the batch itself.
async fn update_last_values<C: Conn>(
    conn: &mut C,
    series: &[(i64, &SeriesBatch)],
    last_steps: &HashMap<i64, i64>,
) -> Result<()> {
    let moved: Vec<(i64, &Point)> = series
        .iter()
        .filter_map(|(id, b)| b.points.last().map(|p| (*id, p)))
        .filter(|(id, p)| last_steps.get(id).is_none_or(|stored| p.step >= *stored))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let mut steps = String::new();
    let mut values = String::new();
    let mut ids = Vec::with_capacity(moved.len());
    let mut stmt = Stmt::new(String::new());
    for (i, (id, p)) in moved.iter().enumerate() {
        let n = 3 * i;
        steps.push_str(&format!(" when ${} then cast(${} as bigint)", n + 1, n + 2));
        values.push_str(&format!(
            " when ${} then cast(${} as double precision)",
            n + 1,
            n + 3
        ));
        ids.push(format!("${}", n + 1));
        stmt = stmt.bind(*id).bind(p.step).bind(p.value);
    }
    stmt.sql = format!(
        "update metric_series set last_step = case id{steps} end, \
         last_value = case id{values} end where id in ({})",
        ids.join(", ")
    )
    .into();
    conn.execute(stmt).await?;
    Ok(())
}

async fn series<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    key: &str,
) -> Result<Option<SeriesInfo>> {
    let version_id = versions::id(conn, model, version).await?;
    let found: Option<SeriesInfo> = conn
        .fetch_optional(Stmt::new(SERIES).bind(version_id).bind(key))
        .await?;
    Ok(found.filter(|s| s.count > 0))
}

#[async_trait]
impl<B: Backend> MetricStore for SqlStore<B> {
    #[instrument(skip_all, fields(model = %model, version, series = batches.len()))]
    async fn write_metrics(
        &self,
        model: &ModelName,
        version: i64,
        batches: &[SeriesBatch],
    ) -> Result<()> {
        transaction!(self.db, |c| async {
            let version_id = versions::id(&mut *c, model, version).await?;
            write(c, version_id, batches).await
        })
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn metric_summaries(
        &self,
        model: &ModelName,
        version: i64,
    ) -> Result<Vec<MetricSummary>> {
        let mut conn = self.db.read().await?;
        let version_id = versions::id(&mut *conn, model, version).await?;
        conn.fetch_all(Stmt::new(SUMMARIES).bind(version_id)).await
    }

    #[instrument(skip_all, fields(model = %model, version))]
    async fn find_series(
        &self,
        model: &ModelName,
        version: i64,
        key: &str,
    ) -> Result<Option<SeriesInfo>> {
        let mut conn = self.db.read().await?;
        series(&mut *conn, model, version, key).await
    }

    #[instrument(skip_all, fields(series_id, level = plan.level))]
    async fn read_buckets(&self, series_id: i64, plan: &BucketPlan) -> Result<Vec<BucketRow>> {
        let mut stmt = Stmt::new(BUCKETS);
        for (i, b) in bucket_binds(series_id, plan).into_iter().enumerate() {
            // $2 is the rollup level, a smallint column.
            stmt = match i {
                1 => stmt.bind(Arg::I16(b as i16)),
                _ => stmt.bind(b),
            };
        }
        let stmt = stmt
            .bind(crate::domain::metrics::SUM_SCALE)
            .bind(crate::domain::metrics::SUM_FLOOR);
        let mut conn = self.db.read().await?;
        conn.fetch_all(stmt).await
    }

    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream {
        let db = self.db.clone();
        chunked_points(from, to, move |first| {
            let db = db.clone();
            async move {
                let mut conn = db.read().await?;
                let stmt = Stmt::new(POINTS_CHUNK)
                    .bind(series_id)
                    .bind(first)
                    .bind(to)
                    .bind(STREAM_CHUNK as i64);
                conn.fetch_all(stmt).await
            }
        })
    }
}

/// Binds of the bucket query in order `$1..$11`.
pub(crate) fn bucket_binds(series_id: i64, plan: &BucketPlan) -> [i64; 11] {
    let ((h0, h1), (t0, t1)) = plan.raw_edges();
    [
        series_id,
        i64::from(plan.level),
        plan.full_lo,
        plan.full_hi,
        h0,
        h1,
        t0,
        t1,
        plan.origin,
        plan.width,
        plan.block,
    ]
}
