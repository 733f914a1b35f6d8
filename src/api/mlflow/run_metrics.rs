//! MLflow metric logging and history: `log-metric`, `log-batch` (metrics, params and tags of
//! a run at once, within MLflow's own limits) and `metrics/get-history` in pages, over the
//! version's metric series. A point is keyed by (key, step), as everywhere in modelreg: a
//! value logged again at the same step replaces the earlier one.

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::runs::{check_param_keys, model_of, params_ended, run_version};
use super::{Empty, KeyValue, logged_models};
use crate::AppState;
use crate::domain::TagPatch;
use crate::domain::access::{Principal, Scope};
use crate::domain::metrics::{RawPoint, group};
use crate::domain::time;
use crate::error::{Error, Result};
use crate::store::{Actor, LoggedMetric, RunBatch};
use axum::extract::State;
use axum::http::Method;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub fn endpoints() -> Vec<Endpoint> {
    const LOG_METRIC: &str = "/api/2.0/mlflow/runs/log-metric";
    const LOG_BATCH: &str = "/api/2.0/mlflow/runs/log-batch";
    const HISTORY: &str = "/api/2.0/mlflow/metrics/get-history";
    const BULK: &str = "/api/2.0/mlflow/metrics/get-history-bulk-interval";
    vec![
        Endpoint::new(Method::POST, LOG_METRIC, Scope::Write, log_metric).confined(),
        Endpoint::new(Method::POST, LOG_BATCH, Scope::Write, log_batch).confined(),
        Endpoint::new(Method::GET, HISTORY, Scope::Read, history).confined(),
        Endpoint::new(Method::GET, BULK, Scope::Read, bulk_interval).confined(),
    ]
}

/// MLflow's limits on one `log-batch`.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
/// Points per `get-history` page (what MLflow's client asks for).
const HISTORY_PAGE: usize = 25_000;

#[derive(Deserialize)]
struct MetricBody {
    key: String,
    value: f64,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    step: Option<i64>,
    /// MLflow 3: the logged model the point is also about, and the dataset it was measured on.
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    dataset_name: Option<String>,
    #[serde(default)]
    dataset_digest: Option<String>,
}

impl MetricBody {
    /// The point as a logged model's metric, when it names one.
    fn logged(&self, run: uuid::Uuid) -> Option<(String, LoggedMetric)> {
        let id = self.model_id.as_deref().filter(|m| !m.is_empty())?;
        Some((
            id.to_owned(),
            LoggedMetric {
                key: self.key.clone(),
                value: self.value,
                step: self.step.unwrap_or(0),
                timestamp_ms: self
                    .timestamp
                    .unwrap_or_else(|| time::now().timestamp_millis()),
                run_id: Some(run),
                dataset_name: self.dataset_name.clone().filter(|d| !d.is_empty()),
                dataset_digest: self.dataset_digest.clone().filter(|d| !d.is_empty()),
            },
        ))
    }

    fn point(self) -> Result<RawPoint> {
        let at = match self.timestamp {
            None => None,
            Some(ms) => Some(
                chrono::DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| Error::validation("timestamp", "timestamp is out of range"))?,
            ),
        };
        Ok(RawPoint {
            key: self.key,
            step: self.step.unwrap_or(0),
            value: self.value,
            at,
        })
    }
}

#[derive(Deserialize)]
struct LogMetricBody {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(flatten)]
    metric: MetricBody,
}

fn run_id(run_id: Option<String>, run_uuid: Option<String>) -> Result<String> {
    run_id
        .or(run_uuid)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::validation("run_id", "Missing value for required parameter 'run_id'"))
}

async fn write(state: &AppState, v: &crate::store::Version, points: Vec<RawPoint>) -> Result<()> {
    let batches = group(points, time::now())?;
    if !batches.is_empty() {
        state
            .store
            .write_metrics(&model_of(v)?, v.version, &batches)
            .await?;
    }
    Ok(())
}

async fn log_metric(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<LogMetricBody>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &run_id(body.run_id, body.run_uuid)?).await?;
    let logged = logged_points(&state, &principal, &v, std::slice::from_ref(&body.metric)).await?;
    write(&state, &v, vec![body.metric.point()?]).await?;
    state.store.log_logged_model_metrics(logged).await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize)]
struct LogBatchBody {
    run_id: String,
    #[serde(default)]
    metrics: Vec<MetricBody>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

fn limit(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(Error::validation(
            field,
            format!("A batch logging request can contain at most {max} {field}; got {n}"),
        ));
    }
    Ok(())
}

async fn log_batch(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<LogBatchBody>,
) -> Result<axum::Json<Empty>> {
    limit("metrics", body.metrics.len(), MAX_BATCH_METRICS)?;
    limit("params", body.params.len(), MAX_BATCH_PARAMS)?;
    limit("tags", body.tags.len(), MAX_BATCH_TAGS)?;
    let v = run_version(&state, &principal, &body.run_id).await?;
    let logged = logged_points(&state, &principal, &v, &body.metrics).await?;
    // Checked before anything is written, so that a bad point leaves the params and tags too.
    let points = body
        .metrics
        .into_iter()
        .map(MetricBody::point)
        .collect::<Result<Vec<_>>>()?;
    let metrics = group(points, time::now())?;
    let params: Map<String, Value> = body
        .params
        .into_iter()
        .map(|p| (p.key, Value::String(p.value)))
        .collect();
    check_param_keys(&params)?;
    let tags = body
        .tags
        .into_iter()
        .map(|t| (t.key, Some(t.value)))
        .collect();
    let batch = RunBatch {
        params,
        tags: TagPatch::parse_mlflow("tags", tags)?,
        metrics,
        logged,
    };
    // Params, tags and points together: one transaction, one event.
    let written = state
        .store
        .log_batch(&model_of(&v)?, v.version, batch, &actor)
        .await;
    params_ended(&v, written)?;
    Ok(axum::Json(Empty {}))
}

/// The points of a batch that name a logged model, as its metrics: each logged model named
/// must be one the caller sees; its value must be a number MLflow can compare.
async fn logged_points(
    state: &AppState,
    principal: &Principal,
    v: &crate::store::Version,
    metrics: &[MetricBody],
) -> Result<Vec<(uuid::Uuid, LoggedMetric)>> {
    let mut ids: std::collections::HashMap<String, uuid::Uuid> = Default::default();
    let mut out = Vec::new();
    for m in metrics {
        let Some((id, metric)) = m.logged(v.id) else {
            continue;
        };
        if !metric.value.is_finite() {
            return Err(Error::validation(
                "metrics",
                format!(
                    "{:?}: a logged model's metric is a finite number",
                    metric.key
                ),
            ));
        }
        let uuid = match ids.get(&id) {
            Some(u) => *u,
            None => {
                let u = logged_models::visible(state, principal, &id).await?.id;
                ids.insert(id, u);
                u
            }
        };
        out.push((uuid, metric));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct HistoryParams {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    metric_key: String,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
}

#[derive(Serialize)]
struct HistoryPoint<'a> {
    key: &'a str,
    value: f64,
    timestamp: i64,
    step: i64,
}

#[derive(Serialize)]
struct History<'a> {
    metrics: Vec<HistoryPoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<HistoryParams>,
) -> Result<axum::response::Response> {
    let v = run_version(&state, &principal, &run_id(p.run_id, p.run_uuid)?).await?;
    let page = match p.max_results {
        None => HISTORY_PAGE,
        Some(n) if (1..=HISTORY_PAGE as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(Error::validation(
                "max_results",
                format!("max_results {n} is out of range 1..={HISTORY_PAGE}"),
            ));
        }
    };
    // The page token is the first step of the next page.
    let from = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .ok()
                .filter(|s| *s >= 0)
                .ok_or_else(|| Error::validation("page_token", "page_token was not made here"))?,
        ),
    };
    let key = p.metric_key.as_str();
    let Some(series) = state
        .store
        .find_series(&model_of(&v)?, v.version, key)
        .await?
    else {
        return Ok(axum::response::IntoResponse::into_response(axum::Json(
            History {
                metrics: Vec::new(),
                next_page_token: None,
            },
        )));
    };
    let from = from.unwrap_or(series.first_step);
    let mut points = Vec::with_capacity(page.min(series.count.max(0) as usize));
    let mut next = None;
    let mut stream = state.store.stream_points(series.id, from, series.last_step);
    'read: while let Some(chunk) = stream.try_next().await? {
        for pt in chunk {
            if points.len() == page {
                next = Some(pt.step.to_string());
                break 'read;
            }
            points.push(HistoryPoint {
                key,
                value: pt.value,
                timestamp: pt.at.div_euclid(1000),
                step: pt.step,
            });
        }
    }
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        History {
            metrics: points,
            next_page_token: next,
        },
    )))
}

/// Most runs one bulk-interval read may name, and points per run (MLflow's own limits).
const BULK_RUNS: usize = 100;
const BULK_POINTS: i64 = 2500;

#[derive(Deserialize)]
struct BulkParams {
    #[serde(default)]
    run_ids: Vec<String>,
    metric_key: String,
    #[serde(default)]
    start_step: Option<i64>,
    #[serde(default)]
    end_step: Option<i64>,
    #[serde(default)]
    max_results: Option<i64>,
}

#[derive(Serialize)]
struct BulkPoint<'a> {
    key: &'a str,
    value: f64,
    timestamp: i64,
    step: i64,
    run_id: String,
}

#[derive(Serialize)]
struct Bulk<'a> {
    metrics: Vec<BulkPoint<'a>>,
}

/// MLflow's GetMetricHistoryBulkInterval, for charts: up to `max_results` points of each run
/// within the step range. Answered like the native series read: the points themselves when
/// there are no more than asked for, else one point per bucket from the rollups (the bucket's
/// last value, at its last step), so a million-point series costs what a thousand do.
async fn bulk_interval(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<BulkParams>,
) -> Result<axum::response::Response> {
    if p.run_ids.is_empty() || p.run_ids.len() > BULK_RUNS {
        return Err(Error::validation(
            "run_ids",
            format!("give 1 to {BULK_RUNS} run_ids"),
        ));
    }
    let max = p.max_results.unwrap_or(BULK_POINTS);
    if !(1..=BULK_POINTS).contains(&max) {
        return Err(Error::validation(
            "max_results",
            format!("max_results {max} is out of range 1..={BULK_POINTS}"),
        ));
    }
    super::super::metrics::check_range(p.start_step, p.end_step, Some(max as u32))?;
    let key = p.metric_key.as_str();
    let mut out = Vec::new();
    for run_id in &p.run_ids {
        let v = run_version(&state, &principal, run_id).await?;
        let Some(info) = state
            .store
            .find_series(&model_of(&v)?, v.version, key)
            .await?
        else {
            continue;
        };
        let run_id = v.id.simple().to_string();
        let shape =
            super::super::metrics::shape(&state, info, p.start_step, p.end_step, Some(max as u32))
                .await?;
        match shape {
            None => {}
            Some(super::super::metrics::Shape::Buckets(buckets)) => {
                let at = super::millis(v.updated_at);
                out.extend(buckets.into_iter().map(|b| BulkPoint {
                    key,
                    value: b.last,
                    timestamp: at,
                    step: b.step_end,
                    run_id: run_id.clone(),
                }));
            }
            Some(super::super::metrics::Shape::Points { from, to }) => {
                let mut stream = state.store.stream_points(info.id, from, to);
                while let Some(chunk) = stream.try_next().await? {
                    out.extend(chunk.into_iter().map(|pt| BulkPoint {
                        key,
                        value: pt.value,
                        timestamp: pt.at.div_euclid(1000),
                        step: pt.step,
                        run_id: run_id.clone(),
                    }));
                }
            }
        }
    }
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        Bulk { metrics: out },
    )))
}
