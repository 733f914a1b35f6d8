//! Metric series: batched ingestion, summaries, raw and downsampled reads (the
//! multi-version overlay that dashboards chart is `overlay.rs`).

use super::Endpoint;
use super::Items;
use super::extract::{Json, Query, VersionPath};
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::downsample::{BucketPlan, Extent, Read, plan_read, worth_bucketing};
use crate::domain::metrics::{Point, RawPoint, check_key, group, mean};
use crate::domain::time::{self, Timestamp};
use crate::error::{Error, Kind, Result};
use crate::store::{BucketRow, MetricSummary, SeriesInfo};
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

pub fn endpoints() -> Vec<Endpoint> {
    const VERSION_METRICS: &str = "/api/v1/models/{model}/versions/{version}/metrics";
    vec![
        Endpoint::new(Method::POST, VERSION_METRICS, Scope::Write, ingest),
        Endpoint::new(Method::GET, VERSION_METRICS, Scope::Read, summaries),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/versions/{version}/metrics/{*key}",
            Scope::Read,
            series,
        ),
    ]
}

/// Largest `max_points` a read may ask for.
const MAX_BUCKETS: u32 = 100_000;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestBody {
    points: Vec<PointBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointBody {
    key: String,
    step: i64,
    value: f64,
    timestamp: Option<Timestamp>,
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

#[derive(Deserialize)]
struct SeriesParams {
    from_step: Option<i64>,
    to_step: Option<i64>,
    max_points: Option<u32>,
}

/// One downsampled bucket.
#[derive(Debug, Serialize)]
pub struct Bucket {
    pub step_start: i64,
    pub step_end: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    pub count: i64,
}

async fn ingest(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    Json(body): Json<IngestBody>,
) -> Result<axum::Json<Accepted>> {
    let n = body.points.len();
    let limit = state.config.max_metric_points;
    if n > limit {
        return Err(Error::new(
            Kind::PayloadTooLarge,
            "too_many_points",
            format!(
                "{n} points in one request; at most {limit} are accepted (send several batches)"
            ),
        )
        .with_field("points"));
    }
    let raw = body
        .points
        .into_iter()
        .map(|p| RawPoint {
            key: p.key,
            step: p.step,
            value: p.value,
            at: p.timestamp,
        })
        .collect();
    let batches = group(raw, time::now())?;
    if !batches.is_empty() {
        state.store.write_metrics(&model, version, &batches).await?;
        metrics::counter!("modelreg_metric_points_ingested_total").increment(n as u64);
    }
    Ok(axum::Json(Accepted { accepted: n }))
}

async fn summaries(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<Items<MetricSummary>>> {
    let items = state.store.metric_summaries(&model, version).await?;
    Ok(axum::Json(Items { items }))
}

pub(super) fn key_param(params: &RawPathParams) -> Result<String> {
    let key = params
        .iter()
        .find(|(k, _)| *k == "key")
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| Error::internal("route has no key parameter"))?;
    check_key("key", &key)
        .map_err(|e| Error::bad_request("invalid_path_parameter", e.detail).with_field("key"))?;
    Ok(key)
}

pub(super) fn check_range(
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<u32>,
) -> Result<()> {
    let bad = |field: &str, detail: String| {
        Error::bad_request("invalid_query_parameter", detail).with_field(field)
    };
    if let Some(f) = from.filter(|f| *f < 0) {
        return Err(bad("from_step", format!("from_step {f} is negative")));
    }
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err(bad(
            "to_step",
            format!("to_step {t} is before from_step {f}"),
        ));
    }
    if let Some(n) = max_points.filter(|n| !(1..=MAX_BUCKETS).contains(n)) {
        return Err(bad(
            "max_points",
            format!("max_points {n} is out of range: use 1 to {MAX_BUCKETS}"),
        ));
    }
    Ok(())
}

fn metric_not_found(key: &str, version: i64) -> Error {
    Error::not_found(
        "metric_not_found",
        format!("version {version} has no points for metric '{key}'"),
    )
}

fn to_buckets(plan: &BucketPlan, rows: Vec<BucketRow>) -> Vec<Bucket> {
    rows.into_iter()
        .map(|r| {
            let (step_start, step_end) = plan.bucket_range(r.bucket);
            Bucket {
                step_start,
                step_end,
                min: r.min,
                max: r.max,
                mean: mean(r.scaled_sum, r.count, r.min, r.max),
                last: r.last,
                count: r.count,
            }
        })
        .collect()
}

/// What a read answers: the raw range, or buckets when there are more points than asked for.
pub(super) enum Shape {
    Points { from: i64, to: i64 },
    Buckets(Vec<Bucket>),
}

pub(super) async fn shape(
    state: &AppState,
    info: SeriesInfo,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<u32>,
) -> Result<Option<Shape>> {
    let extent = Extent {
        first_step: info.first_step,
        last_step: info.last_step,
        count: info.count,
    };
    let plan = match plan_read(extent, from, to, max_points) {
        Read::Empty => return Ok(None),
        Read::Points { from, to } => return Ok(Some(Shape::Points { from, to })),
        Read::Buckets(plan) => plan,
    };
    let rows = state.store.read_buckets(info.id, &plan).await?;
    let total: i64 = rows.iter().map(|r| r.count).sum();
    if !worth_bucketing(total, max_points.unwrap_or(u32::MAX)) {
        // The range holds no more points than asked for: the points themselves.
        let (from, to) = (plan.from, plan.to);
        return Ok(Some(Shape::Points { from, to }));
    }
    Ok(Some(Shape::Buckets(to_buckets(&plan, rows))))
}

/// Writes points as JSON objects, comma-separated (values are finite by construction).
fn write_points(out: &mut String, points: &[Point], first: &mut bool) {
    let mut num = ryu::Buffer::new();
    for p in points {
        if !*first {
            out.push(',');
        }
        *first = false;
        out.push_str("{\"step\":");
        let _ = write!(out, "{}", p.step);
        out.push_str(",\"value\":");
        out.push_str(num.format_finite(p.value));
        out.push_str(",\"timestamp\":\"");
        time::write_rfc3339_micros(out, p.at);
        out.push_str("\"}");
    }
}

fn json_response(body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

async fn series(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    params: RawPathParams,
    Query(p): Query<SeriesParams>,
) -> Result<Response> {
    let key = key_param(&params)?;
    check_range(p.from_step, p.to_step, p.max_points)?;
    let info = state
        .store
        .find_series(&model, version, &key)
        .await?
        .ok_or_else(|| metric_not_found(&key, version))?;
    let key_json = serde_json::to_string(&key).map_err(Error::internal)?;
    match shape(&state, info, p.from_step, p.to_step, p.max_points).await? {
        None => Ok(json_response(format!(
            "{{\"key\":{key_json},\"points\":[]}}"
        ))),
        Some(Shape::Buckets(buckets)) => {
            #[derive(Serialize)]
            struct Out<'a> {
                key: &'a str,
                buckets: Vec<Bucket>,
            }
            Ok(axum::Json(Out { key: &key, buckets }).into_response())
        }
        Some(Shape::Points { from, to }) => {
            // Streamed: a million points never sit in memory at once.
            let head = futures::stream::once(async move {
                Ok::<_, Error>(format!("{{\"key\":{key_json},\"points\":["))
            });
            let mut first = true;
            let body = state
                .store
                .stream_points(info.id, from, to)
                .map_ok(move |chunk| {
                    let mut out = String::with_capacity(chunk.len() * 80);
                    write_points(&mut out, &chunk, &mut first);
                    out
                });
            let tail = futures::stream::once(async { Ok::<_, Error>("]}".to_owned()) });
            Ok(json_response(Body::from_stream(
                head.chain(body).chain(tail),
            )))
        }
    }
}
