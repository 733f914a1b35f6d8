//! `GET /api/v1/models/{model}/compare?versions=3,5`: what differs between versions.

use super::Endpoint;
use super::extract::{ModelPath, Query};
use super::overlay::parse_version_list;
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::compare::{self, MetricSide, Side};
use crate::error::{Error, Result};
use crate::store::MetricSummary;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::GET,
        "/api/v1/models/{model}/compare",
        Scope::Read,
        compare_versions,
    )]
}

#[derive(Deserialize)]
struct Params {
    versions: String,
}

async fn compare_versions(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    Query(p): Query<Params>,
) -> Result<axum::Json<compare::Comparison>> {
    let numbers = parse_version_list(&p.versions, 2, 10)?;
    let mut details = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        details.push(state.store.version_detail(&model, n).await?);
    }
    let mut sides = Vec::with_capacity(details.len());
    for d in &details {
        sides.push(Side {
            version: d.version.version,
            config: serde_json::from_str(d.version.config.get()).map_err(Error::internal)?,
            tags: &d.version.tags,
            metrics: d.metrics.iter().map(|s| (s.key.clone(), side(s))).collect(),
            artifacts: d
                .artifacts
                .iter()
                .map(|a| (a.path.as_str(), a.sha256.as_str()))
                .collect(),
            schema: d.schema.as_ref(),
            signed_by: d.version.signed_by.as_deref(),
        });
    }
    Ok(axum::Json(compare::compare(sides)))
}

fn side(s: &MetricSummary) -> MetricSide {
    MetricSide {
        last: s.last,
        min: s.min,
        max: s.max,
        count: s.count,
        last_step: s.last_step,
    }
}
