//! `GET /api/v1/models/{model}/metrics/{*key}?versions=…`: one metric of several versions,
//! each downsampled the same way, for charts that overlay them.

use super::Endpoint;
use super::extract::{ModelPath, Query};
use super::metrics::{Bucket, Shape, check_range, key_param, shape};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::access::Scope;
use crate::domain::metrics::Point;
use crate::domain::time::{self, Timestamp};
use crate::error::{Error, Result};
use axum::extract::{RawPathParams, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::GET,
        "/api/v1/models/{model}/metrics/{*key}",
        Scope::Read,
        overlay,
    )]
}

/// Buckets per version of an overlay when the request names no `max_points`.
const DEFAULT_OVERLAY_POINTS: u32 = 1000;
/// Versions one overlay may name.
const MAX_OVERLAY_VERSIONS: usize = 20;
/// Largest `max_points` of an overlay, per version: an overlay is held whole before it is
/// sent, so it stays at most 20 × 10,000 points.
const MAX_OVERLAY_POINTS: u32 = 10_000;

#[derive(Deserialize)]
struct OverlayParams {
    versions: String,
    from_step: Option<i64>,
    to_step: Option<i64>,
    max_points: Option<u32>,
}

/// `versions=1,2,5`: 1 to 20 distinct version numbers, in the order given.
fn parse_versions(raw: &str, max: usize) -> Result<Vec<i64>> {
    let bad = |d: String| Error::bad_request("invalid_query_parameter", d).with_field("versions");
    let mut out: Vec<i64> = Vec::new();
    for part in raw.split(',').map(str::trim) {
        let v: i64 = part
            .parse()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| bad(format!("{part:?} is not a version number")))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() || out.len() > max {
        return Err(bad(format!("name 1 to {max} versions")));
    }
    Ok(out)
}

pub(crate) fn parse_version_list(raw: &str, min: usize, max: usize) -> Result<Vec<i64>> {
    let out = parse_versions(raw, max)?;
    if out.len() < min {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("name {min} to {max} distinct versions"),
        )
        .with_field("versions"));
    }
    Ok(out)
}

#[derive(Serialize)]
struct OverlaySeries {
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<Vec<PointOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buckets: Option<Vec<Bucket>>,
}

#[derive(Serialize)]
struct PointOut {
    step: i64,
    value: f64,
    #[serde(with = "crate::domain::time::rfc3339")]
    timestamp: Timestamp,
}

async fn overlay_one(
    state: &AppState,
    model: &ModelName,
    version: i64,
    key: &str,
    p: &OverlayParams,
) -> Result<OverlaySeries> {
    let n = p.max_points.unwrap_or(DEFAULT_OVERLAY_POINTS);
    let mut out = OverlaySeries {
        version,
        points: None,
        buckets: None,
    };
    let Some(info) = state.store.find_series(model, version, key).await? else {
        out.points = Some(vec![]);
        return Ok(out);
    };
    match shape(state, info, p.from_step, p.to_step, Some(n)).await? {
        None => out.points = Some(vec![]),
        Some(Shape::Buckets(b)) => out.buckets = Some(b),
        Some(Shape::Points { from, to }) => {
            let chunks: Vec<Vec<Point>> = state
                .store
                .stream_points(info.id, from, to)
                .try_collect()
                .await?;
            let points = chunks
                .into_iter()
                .flatten()
                .map(|p| PointOut {
                    step: p.step,
                    value: p.value,
                    timestamp: time::from_micros(p.at),
                })
                .collect();
            out.points = Some(points);
        }
    }
    Ok(out)
}

async fn overlay(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    params: RawPathParams,
    Query(p): Query<OverlayParams>,
) -> Result<Response> {
    let key = key_param(&params)?;
    check_range(p.from_step, p.to_step, p.max_points)?;
    if let Some(n) = p.max_points.filter(|n| *n > MAX_OVERLAY_POINTS) {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("max_points {n} is out of range for an overlay: use 1 to {MAX_OVERLAY_POINTS}"),
        )
        .with_field("max_points"));
    }
    let versions = parse_versions(&p.versions, MAX_OVERLAY_VERSIONS)?;
    let mut series = Vec::with_capacity(versions.len());
    for v in versions {
        series.push(overlay_one(&state, &model, v, &key, &p).await?);
    }
    #[derive(Serialize)]
    struct Out<'a> {
        key: &'a str,
        series: Vec<OverlaySeries>,
    }
    Ok(axum::Json(Out { key: &key, series }).into_response())
}
