//! Metrics: the ingestion flow and every read, written once. Reads use only portable SQL
//! (window functions, `cast`, `$n` parameters); the bulk writes of points and rollups are
//! each backend's own (`COPY` and `unnest` on Postgres, `json_each` on SQLite).

pub(crate) use super::rollup_work::{RollupWork, appends_only};
use super::sql::{Conn, Stmt};
use super::{Backend, SqlStore, point_blocks, point_reads, versions};
use crate::domain::ModelName;
use crate::domain::downsample::BucketPlan;
use crate::domain::metrics::{Point, SeriesBatch};
use crate::domain::time;
use crate::error::{Error, Result};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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
    /// Packs the rows of up to `max_series` series marked for it (points stored before blocks
    /// existed, tails of finished versions), in bounded transactions; answers how many it
    /// took. A series that fails is set aside for an hour with its error (counted in
    /// `modelreg_compactor_failures_total`, reported by `verify`) and the others go on;
    /// a series another process is packing is skipped.
    async fn compact_pending(&self, max_series: i64) -> Result<usize>;
    /// Series set aside because they could not be packed.
    async fn compaction_failures(&self) -> Result<i64>;
}

/// How long a series that could not be packed is set aside before it is tried again.
const COMPACT_RETRY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Records that a series could not be packed: its error (without values) and when to try
/// again.
async fn set_aside<C: Conn>(conn: &mut C, series_id: i64, e: &Error) -> Result<()> {
    metrics::counter!("modelreg_compactor_failures_total").increment(1);
    tracing::warn!(series = series_id, error = %e, "cannot pack a metric series; set aside");
    let detail: String = e.to_string().chars().take(500).collect();
    let stmt = Stmt::new(
        "update metric_series set compact_error = $2, compact_retry_at = $3 where id = $1",
    )
    .bind(series_id)
    .bind(detail)
    .bind(time::now() + COMPACT_RETRY);
    conn.execute(stmt).await.map(|_| ())
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

/// Streams the points of `from..=to`, a chunk of about [`STREAM_CHUNK`] at a time. Each chunk
/// is one query (`fetch(first_step)`, answering the chunk and where the next one starts) on a
/// connection taken from the pool and given back before the
/// chunk is handed on: a reader that stalls holds no database connection, only the chunks
/// buffered for it. Each chunk is consistent; a write that commits between two chunks shows
/// in the later one if it lands there. Stops when the reader goes away.
pub(crate) fn chunked_points<F, Fut>(from: i64, to: i64, fetch: F) -> PointStream
where
    F: Fn(i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(Vec<Point>, Option<i64>)>> + Send,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Point>>>(2);
    tokio::spawn(async move {
        let mut next = Some(from);
        while let Some(first) = next.filter(|n| *n <= to) {
            let chunk = match fetch(first).await {
                Ok((chunk, after)) => {
                    next = after;
                    chunk
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
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
        appends: &[(i64, &[Point])],
        overwrites: &[(i64, &[Point])],
    ) -> Result<()>;
    /// Merges appended block aggregates into the rollups.
    async fn merge_rollups(&mut self, work: &RollupWork) -> Result<()>;
    /// Recomputes the rollup blocks overwrites touched, finest level first.
    async fn recompute_rollups(&mut self, work: &RollupWork) -> Result<()>;
}

/// A version's series by key (id, key, last step), created if missing and locked against
/// concurrent writers of the same series in key order, so that their rollups stay exact and
/// two batches never wait on each other in a cycle (on SQLite the write lock is held already).
async fn lock_series<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    keys: Vec<String>,
) -> Result<Vec<(i64, String, Option<i64>)>> {
    let create = format!(
        "insert into metric_series (version_id, key, created_at, model_id) \
         select $1, value, $3, (select model_id from versions where id = $1) \
         from {} where true on conflict (version_id, key) do nothing",
        C::elements("$2")
    );
    let now = time::now();
    conn.execute(
        Stmt::new(create)
            .bind(version_id)
            .bind(keys.clone())
            .bind(now),
    )
    .await?;
    let lock = if C::ROW_LOCKS { " for update" } else { "" };
    let select = format!(
        "select id, key, last_step from metric_series where version_id = $1 and {} \
         order by key{lock}",
        C::in_list("key", "$2")
    );
    conn.fetch_all(Stmt::new(select).bind(version_id).bind(keys))
        .await
}

/// Writes a batch: series created and locked, completed blocks packed and the rest written as
/// rows, rollups merged (appends) or recomputed (overwrites).
/// Writes points of a version within the caller's transaction.
pub(crate) async fn write_batches<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    batches: &[SeriesBatch],
) -> Result<()> {
    write(conn, version_id, batches).await
}

async fn write<C: Conn>(conn: &mut C, version_id: Uuid, batches: &[SeriesBatch]) -> Result<()> {
    let keys = batches.iter().map(|b| b.key.clone()).collect();
    let locked = lock_series(conn, version_id, keys).await?;
    let ids: HashMap<&str, i64> = locked.iter().map(|(id, k, _)| (k.as_str(), *id)).collect();
    let mut series = Vec::with_capacity(batches.len());
    for b in batches {
        let id = ids
            .get(b.key.as_str())
            .ok_or_else(|| Error::internal("metric series vanished in its transaction"))?;
        series.push((*id, b));
    }
    // Each series' last step, kept on its row by every batch (see `update_last_values`).
    let last_steps: HashMap<i64, i64> = locked
        .iter()
        .filter_map(|(id, _, last)| last.map(|last| (*id, last)))
        .collect();
    // Under the series locks, a series whose new points all lie after its last step cannot
    // conflict with stored points.
    let packed = point_blocks::pack(conn, &series, &last_steps).await?;
    let appending: HashSet<i64> = series
        .iter()
        .filter(|(id, b)| appends_only(&last_steps, *id, b))
        .map(|(id, _)| *id)
        .collect();
    let (appends, overwrites): (Vec<(i64, &[Point])>, Vec<_>) = packed
        .plain
        .iter()
        .copied()
        .partition(|(id, _)| appending.contains(id));
    conn.write_points(&appends, &overwrites).await?;
    let mut work = RollupWork::plan(&series, &last_steps);
    conn.merge_rollups(&work).await?;
    if !packed.exact.is_empty() {
        let exact: HashSet<(i64, i64)> = packed.exact.iter().map(|(s, b, _)| (*s, *b)).collect();
        work.recompute[0].retain(|key| !exact.contains(key));
        super::rollup_work::store_exact_rollups(conn, &packed.exact).await?;
    }
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
    // A statement per 1,000 series: three parameters each, well within Postgres's 65,535
    // however many keys a batch brings.
    for chunk in moved.chunks(LAST_VALUES_PER_STATEMENT) {
        set_last_values(conn, chunk).await?;
    }
    Ok(())
}

const LAST_VALUES_PER_STATEMENT: usize = 1_000;

async fn set_last_values<C: Conn>(conn: &mut C, moved: &[(i64, &Point)]) -> Result<()> {
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
        let mut conn = self.db.read().await?;
        point_reads::buckets(&mut *conn, series_id, plan).await
    }

    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream {
        let db = self.db.clone();
        chunked_points(from, to, move |first| {
            let db = db.clone();
            async move {
                let mut conn = db.read().await?;
                point_reads::chunk(&mut *conn, series_id, first, to, STREAM_CHUNK).await
            }
        })
    }

    #[instrument(skip_all)]
    async fn compact_pending(&self, max_series: i64) -> Result<usize> {
        let now = time::now();
        let ids: Vec<(i64,)> = {
            let mut conn = self.db.read().await?;
            let stmt = Stmt::new(
                "select id from metric_series where compact_pending \
                   and (compact_retry_at is null or compact_retry_at <= $2) \
                 order by id limit $1",
            )
            .bind(max_series)
            .bind(now);
            conn.fetch_all(stmt).await?
        };
        for (id,) in &ids {
            // One bounded transaction a step; a series that fails is set aside, not retried
            // first forever.
            loop {
                match transaction!(self.db, |c| point_blocks::compact_series(c, *id)) {
                    Ok(point_blocks::Compacted::More) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        transaction!(self.db, |c| set_aside(c, *id, &e))?;
                        break;
                    }
                }
            }
        }
        Ok(ids.len())
    }

    async fn compaction_failures(&self) -> Result<i64> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new("select count(*) from metric_series where compact_error is not null");
        conn.scalar(stmt).await
    }
}
