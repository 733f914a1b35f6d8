//! `GET /api/v1/models/{model}/compare?versions=3,5`: what differs between versions.

use super::Endpoint;
use super::extract::{ModelPath, Query};
use super::metrics::parse_version_list;
use crate::AppState;
use crate::domain::access::Scope;
use crate::domain::diff::differing_paths;
use crate::error::{Error, Result};
use crate::store::{Artifact, MetricSummary, Version};
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::GET,
        "/api/v1/models/{model}/compare",
        Scope::Read,
        compare,
    )]
}

#[derive(Deserialize)]
struct Params {
    versions: String,
}

#[derive(Serialize)]
struct ConfigDiff {
    path: String,
    /// Version number → value; versions where the path is missing are left out.
    values: BTreeMap<String, Value>,
}

#[derive(Serialize)]
struct TagDiff {
    key: String,
    values: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct MetricSide {
    last: f64,
    min: f64,
    max: f64,
    count: i64,
    last_step: i64,
}

#[derive(Serialize)]
struct ArtifactDiff {
    path: String,
    sha256: BTreeMap<String, String>,
    same: bool,
}

/// Most differing config paths one comparison lists.
const MAX_CONFIG_DIFFS: usize = 1000;

#[derive(Serialize)]
struct Comparison {
    versions: Vec<i64>,
    config: Vec<ConfigDiff>,
    /// More config paths differ than are listed (the first 1,000, depth first).
    config_truncated: bool,
    metrics: BTreeMap<String, BTreeMap<String, MetricSide>>,
    tags: Vec<TagDiff>,
    artifacts: Vec<ArtifactDiff>,
}

fn config_diff(versions: &[Version]) -> Result<(Vec<ConfigDiff>, bool)> {
    let parsed = versions
        .iter()
        .map(|v| serde_json::from_str::<Map<String, Value>>(v.config.get()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::internal)?;
    let configs: Vec<_> = parsed.iter().collect();
    let (paths, truncated) = differing_paths(&configs, MAX_CONFIG_DIFFS);
    let diffs = paths
        .into_iter()
        .map(|(path, values)| ConfigDiff {
            path,
            values: versions
                .iter()
                .zip(values)
                .filter_map(|(v, val)| val.map(|val| (v.version.to_string(), val.clone())))
                .collect(),
        })
        .collect();
    Ok((diffs, truncated))
}

fn tag_diff(versions: &[Version]) -> Vec<TagDiff> {
    let mut keys: Vec<&String> = versions
        .iter()
        .flat_map(|v| v.tags.as_map().keys())
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<Option<&String>> =
                versions.iter().map(|v| v.tags.as_map().get(k)).collect();
            let same = values.windows(2).all(|w| w[0] == w[1]);
            (!same).then(|| TagDiff {
                key: k.clone(),
                values: versions
                    .iter()
                    .zip(values)
                    .filter_map(|(v, val)| val.map(|val| (v.version.to_string(), val.clone())))
                    .collect(),
            })
        })
        .collect()
}

fn metric_sides(
    numbers: &[i64],
    summaries: Vec<Vec<MetricSummary>>,
) -> BTreeMap<String, BTreeMap<String, MetricSide>> {
    let mut out: BTreeMap<String, BTreeMap<String, MetricSide>> = BTreeMap::new();
    for (v, list) in numbers.iter().zip(summaries) {
        for s in list {
            let side = MetricSide {
                last: s.last,
                min: s.min,
                max: s.max,
                count: s.count,
                last_step: s.last_step,
            };
            out.entry(s.key).or_default().insert(v.to_string(), side);
        }
    }
    out
}

/// Every artifact path of any version, with each version's digest; `same` when every version
/// has it with one digest.
fn artifact_diff(numbers: &[i64], lists: &[Vec<Artifact>]) -> Vec<ArtifactDiff> {
    let mut by_path: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (n, list) in numbers.iter().zip(lists) {
        for a in list {
            by_path
                .entry(&a.path)
                .or_default()
                .insert(n.to_string(), a.sha256.clone());
        }
    }
    by_path
        .into_iter()
        .map(|(path, sha256)| {
            let mut digests = sha256.values();
            let first = digests.next();
            let same = sha256.len() == numbers.len() && digests.all(|d| Some(d) == first);
            ArtifactDiff {
                path: path.to_owned(),
                sha256,
                same,
            }
        })
        .collect()
}

async fn compare(
    State(state): State<AppState>,
    ModelPath(model): ModelPath,
    Query(p): Query<Params>,
) -> Result<axum::Json<Comparison>> {
    let numbers = parse_version_list(&p.versions, 2, 10)?;
    let mut versions = Vec::with_capacity(numbers.len());
    let mut summaries = Vec::with_capacity(numbers.len());
    let mut artifacts = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        versions.push(state.store.get_version(&model, n).await?);
        summaries.push(state.store.metric_summaries(&model, n).await?);
        artifacts.push(state.store.list_artifacts(&model, n).await?);
    }
    let (config, config_truncated) = config_diff(&versions)?;
    Ok(axum::Json(Comparison {
        config,
        config_truncated,
        tags: tag_diff(&versions),
        metrics: metric_sides(&numbers, summaries),
        artifacts: artifact_diff(&numbers, &artifacts),
        versions: numbers,
    }))
}
