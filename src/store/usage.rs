//! Storage accounting: what each model holds (versions by status, artifact and logged-model
//! file bytes, metric series, points and their encoded bytes), read by grouped queries over
//! the rows themselves, so that it is never out of step with them.

use super::sql::{Conn, Stmt};
use super::{Backend, SqlStore, models};
use crate::domain::ModelName;
use crate::error::Result;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Bytes a metric point takes while it is still a row (step, value, time and its series'
/// id, 8 bytes each), before the database's own per-row and index overhead.
pub const ROW_POINT_BYTES: i64 = 32;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counted {
    pub count: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MetricUsage {
    pub series: i64,
    /// Points stored, packed or not.
    pub points: i64,
    pub points_in_blocks: i64,
    pub points_in_rows: i64,
    /// Packed blocks' bytes plus [`ROW_POINT_BYTES`] per point still in rows.
    pub bytes: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Versions by status (`pending`, `ready`, `failed`, `archived`, `erased`) and `total`.
    pub versions: BTreeMap<String, i64>,
    pub artifacts: Counted,
    /// Files of MLflow logged models (not yet registered as a version's artifacts).
    pub logged_model_files: Counted,
    pub metrics: MetricUsage,
    /// Artifact, logged-model file and metric bytes together.
    pub total_bytes: i64,
}

impl Usage {
    fn empty() -> Self {
        let mut u = Self::default();
        for s in ["pending", "ready", "failed", "archived", "erased", "total"] {
            u.versions.insert(s.to_owned(), 0);
        }
        u
    }

    /// Nothing stored.
    fn none() -> Self {
        let mut u = Self::empty();
        u.finish();
        u
    }

    fn finish(&mut self) {
        let total = self
            .versions
            .iter()
            .filter(|(k, _)| k.as_str() != "total")
            .map(|(_, n)| n)
            .sum();
        self.versions.insert("total".to_owned(), total);
        let m = &mut self.metrics;
        m.points = m.points_in_blocks + m.points_in_rows;
        self.total_bytes = self.artifacts.bytes + self.logged_model_files.bytes + m.bytes;
    }

    fn add(&mut self, other: &Usage) {
        for (k, n) in &other.versions {
            *self.versions.entry(k.clone()).or_default() += n;
        }
        self.artifacts.count += other.artifacts.count;
        self.artifacts.bytes += other.artifacts.bytes;
        self.logged_model_files.count += other.logged_model_files.count;
        self.logged_model_files.bytes += other.logged_model_files.bytes;
        let (m, o) = (&mut self.metrics, &other.metrics);
        m.series += o.series;
        m.points += o.points;
        m.points_in_blocks += o.points_in_blocks;
        m.points_in_rows += o.points_in_rows;
        m.bytes += o.bytes;
        self.total_bytes += other.total_bytes;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelUsage {
    pub model: String,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    pub totals: Usage,
    /// Every model, most bytes first.
    pub models: Vec<ModelUsage>,
}

impl UsageReport {
    /// The report of the models `keep` keeps, with their totals.
    pub fn only(self, keep: impl Fn(&str) -> bool) -> Self {
        let models: Vec<ModelUsage> = self.models.into_iter().filter(|m| keep(&m.model)).collect();
        let mut totals = Usage::none();
        for m in &models {
            totals.add(&m.usage);
        }
        Self { totals, models }
    }
}

#[async_trait]
pub trait UsageStore {
    async fn model_usage(&self, model: &ModelName) -> Result<ModelUsage>;
    async fn usage(&self) -> Result<UsageReport>;
}

/// Usage by model id, of one model or of all.
async fn by_model<C: Conn>(conn: &mut C, only: Option<Uuid>) -> Result<BTreeMap<Uuid, Usage>> {
    let filter = |col: &str| match only {
        Some(_) => format!(" where {col} = $1"),
        None => String::new(),
    };
    let stmt = |sql: String| match only {
        Some(id) => Stmt::new(sql).bind(id),
        None => Stmt::new(sql),
    };
    let mut out: BTreeMap<Uuid, Usage> = BTreeMap::new();
    let versions: Vec<(Uuid, String, i64)> = conn
        .fetch_all(stmt(format!(
            "select model_id, status, count(*) from versions{} group by model_id, status",
            filter("model_id")
        )))
        .await?;
    let artifacts: Vec<(Uuid, i64, i64)> = conn
        .fetch_all(stmt(format!(
            "select v.model_id, count(*), cast(coalesce(sum(a.size), 0) as bigint) \
             from artifacts a join versions v on v.id = a.version_id{} group by v.model_id",
            filter("v.model_id")
        )))
        .await?;
    let files: Vec<(Uuid, i64, i64)> = conn
        .fetch_all(stmt(format!(
            "select l.model_id, count(*), cast(coalesce(sum(f.size), 0) as bigint) \
             from logged_model_files f join logged_models l on l.id = f.logged_model_id{} \
             group by l.model_id",
            filter("l.model_id")
        )))
        .await?;
    let series: Vec<(Uuid, i64)> = conn
        .fetch_all(stmt(format!(
            "select model_id, count(*) from metric_series{} group by model_id",
            filter("model_id")
        )))
        .await?;
    let rows: Vec<(Uuid, i64)> = conn
        .fetch_all(stmt(format!(
            "select s.model_id, count(*) from metric_points p \
             join metric_series s on s.id = p.series_id{} group by s.model_id",
            filter("s.model_id")
        )))
        .await?;
    let blocks: Vec<(Uuid, i64, i64)> = conn
        .fetch_all(stmt(format!(
            "select s.model_id, cast(coalesce(sum(b.count), 0) as bigint), \
                 cast(coalesce(sum(length(b.data)), 0) as bigint) \
             from metric_blocks b join metric_series s on s.id = b.series_id{} group by s.model_id",
            filter("s.model_id")
        )))
        .await?;
    for (id, status, n) in versions {
        out.entry(id)
            .or_insert_with(Usage::empty)
            .versions
            .insert(status, n);
    }
    for (id, n, bytes) in artifacts {
        out.entry(id).or_insert_with(Usage::empty).artifacts = Counted { count: n, bytes };
    }
    for (id, n, bytes) in files {
        out.entry(id)
            .or_insert_with(Usage::empty)
            .logged_model_files = Counted { count: n, bytes };
    }
    for (id, n) in series {
        out.entry(id).or_insert_with(Usage::empty).metrics.series = n;
    }
    for (id, n) in rows {
        let m = &mut out.entry(id).or_insert_with(Usage::empty).metrics;
        m.points_in_rows = n;
        m.bytes += n * ROW_POINT_BYTES;
    }
    for (id, n, bytes) in blocks {
        let m = &mut out.entry(id).or_insert_with(Usage::empty).metrics;
        m.points_in_blocks = n;
        m.bytes += bytes;
    }
    for u in out.values_mut() {
        u.finish();
    }
    Ok(out)
}

#[async_trait]
impl<B: Backend> UsageStore for SqlStore<B> {
    async fn model_usage(&self, model: &ModelName) -> Result<ModelUsage> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        let usage = by_model(&mut *conn, Some(m.id))
            .await?
            .remove(&m.id)
            .unwrap_or_else(Usage::none);
        Ok(ModelUsage {
            model: model.to_string(),
            usage,
        })
    }

    async fn usage(&self) -> Result<UsageReport> {
        let mut conn = self.db.read().await?;
        let names: Vec<(Uuid, String)> = conn
            .fetch_all(Stmt::new("select id, name from models order by name"))
            .await?;
        let mut used = by_model(&mut *conn, None).await?;
        let mut totals = Usage::none();
        let mut models = Vec::with_capacity(names.len());
        for (id, name) in names {
            let usage = used.remove(&id).unwrap_or_else(Usage::none);
            totals.add(&usage);
            models.push(ModelUsage { model: name, usage });
        }
        models.sort_by_key(|m| std::cmp::Reverse(m.usage.total_bytes));
        Ok(UsageReport { totals, models })
    }
}
