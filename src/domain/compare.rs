//! What differs between versions: config paths, tags, metric summaries and artifact digests,
//! side by side. Pure: the API reads the versions and hands them over as [`Side`]s.

use super::Tags;
use super::diff::differing_paths;
use super::schema::{self, Change, Schema};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One version as the comparison sees it.
pub struct Side<'a> {
    pub version: i64,
    pub config: Map<String, Value>,
    pub tags: &'a Tags,
    /// `(key, summary)` for each metric.
    pub metrics: Vec<(String, MetricSide)>,
    /// `(path, sha256)` for each artifact.
    pub artifacts: Vec<(&'a str, &'a str)>,
    pub schema: Option<&'a Schema>,
    /// The trusted key of its first verified signature.
    pub signed_by: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ConfigDiff {
    pub path: String,
    /// Version number → value; versions where the path is missing are left out.
    pub values: BTreeMap<String, Value>,
}

#[derive(Serialize)]
pub struct TagDiff {
    pub key: String,
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSide {
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
    pub last_step: i64,
}

#[derive(Serialize)]
pub struct ArtifactDiff {
    pub path: String,
    pub sha256: BTreeMap<String, String>,
    pub same: bool,
}

/// Most differing config paths one comparison lists.
const MAX_CONFIG_DIFFS: usize = 1000;

#[derive(Serialize)]
pub struct Comparison {
    pub versions: Vec<i64>,
    pub config: Vec<ConfigDiff>,
    /// More config paths differ than are listed (the first 1,000, depth first).
    pub config_truncated: bool,
    pub metrics: BTreeMap<String, BTreeMap<String, MetricSide>>,
    pub tags: Vec<TagDiff>,
    pub artifacts: Vec<ArtifactDiff>,
    /// Each later version's schema against the first's.
    pub schema_diff: Vec<SchemaDiff>,
    /// Version number → the trusted key that signed it; unsigned versions are left out.
    pub signed_by: BTreeMap<String, String>,
}

/// How a version's schema differs from another's, each change classified.
#[derive(Serialize)]
pub struct SchemaDiff {
    pub from: i64,
    pub to: i64,
    /// No change breaks callers of `from`.
    pub compatible: bool,
    pub changes: Vec<Change>,
}

fn schema_diffs(sides: &[Side<'_>]) -> Vec<SchemaDiff> {
    let Some((first, rest)) = sides.split_first() else {
        return Vec::new();
    };
    rest.iter()
        .map(|s| {
            let changes = schema::diff(first.schema, s.schema);
            SchemaDiff {
                from: first.version,
                to: s.version,
                compatible: changes.iter().all(|c| c.compatible),
                changes,
            }
        })
        .collect()
}

/// Compares two or more versions.
pub fn compare(sides: Vec<Side<'_>>) -> Comparison {
    let (config, config_truncated) = config_diff(&sides);
    Comparison {
        config,
        config_truncated,
        tags: tag_diff(&sides),
        artifacts: artifact_diff(&sides),
        schema_diff: schema_diffs(&sides),
        signed_by: sides
            .iter()
            .filter_map(|s| Some((s.version.to_string(), s.signed_by?.to_owned())))
            .collect(),
        versions: sides.iter().map(|s| s.version).collect(),
        metrics: metric_sides(sides),
    }
}

fn config_diff(sides: &[Side<'_>]) -> (Vec<ConfigDiff>, bool) {
    let configs: Vec<_> = sides.iter().map(|s| &s.config).collect();
    let (paths, truncated) = differing_paths(&configs, MAX_CONFIG_DIFFS);
    let diffs = paths
        .into_iter()
        .map(|(path, values)| ConfigDiff {
            path,
            values: sides
                .iter()
                .zip(values)
                .filter_map(|(s, val)| val.map(|val| (s.version.to_string(), val.clone())))
                .collect(),
        })
        .collect();
    (diffs, truncated)
}

fn tag_diff(sides: &[Side<'_>]) -> Vec<TagDiff> {
    let mut keys: Vec<&String> = sides.iter().flat_map(|s| s.tags.as_map().keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<Option<&String>> =
                sides.iter().map(|s| s.tags.as_map().get(k)).collect();
            let same = values.windows(2).all(|w| w[0] == w[1]);
            (!same).then(|| TagDiff {
                key: k.clone(),
                values: sides
                    .iter()
                    .zip(values)
                    .filter_map(|(s, val)| val.map(|val| (s.version.to_string(), val.clone())))
                    .collect(),
            })
        })
        .collect()
}

fn metric_sides(sides: Vec<Side<'_>>) -> BTreeMap<String, BTreeMap<String, MetricSide>> {
    let mut out: BTreeMap<String, BTreeMap<String, MetricSide>> = BTreeMap::new();
    for side in sides {
        for (key, summary) in side.metrics {
            out.entry(key)
                .or_default()
                .insert(side.version.to_string(), summary);
        }
    }
    out
}

/// Every artifact path of any version, with each version's digest; `same` when every version
/// has it with one digest.
fn artifact_diff(sides: &[Side<'_>]) -> Vec<ArtifactDiff> {
    let mut by_path: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for side in sides {
        for (path, sha256) in &side.artifacts {
            by_path
                .entry(path)
                .or_default()
                .insert(side.version.to_string(), (*sha256).to_owned());
        }
    }
    by_path
        .into_iter()
        .map(|(path, sha256)| {
            let mut digests = sha256.values();
            let first = digests.next();
            let same = sha256.len() == sides.len() && digests.all(|d| Some(d) == first);
            ArtifactDiff {
                path: path.to_owned(),
                sha256,
                same,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        Tags::from_stored(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn metric(last: f64) -> MetricSide {
        MetricSide {
            last,
            min: 0.0,
            max: 1.0,
            count: 3,
            last_step: 2,
        }
    }

    #[test]
    fn lists_only_what_differs_and_keeps_every_metric() {
        let (t3, t5) = (
            tags(&[("team", "a"), ("x", "1")]),
            tags(&[("team", "b"), ("x", "1")]),
        );
        let side = |version, lr: f64, t, artifacts| Side {
            version,
            config: json!({"lr": lr, "layers": 4}).as_object().unwrap().clone(),
            tags: t,
            metrics: vec![("acc".to_owned(), metric(lr))],
            artifacts,
            schema: None,
            signed_by: None,
        };
        let c = compare(vec![
            side(3, 0.1, &t3, vec![("model.bin", "aa"), ("vocab.txt", "cc")]),
            side(5, 0.2, &t5, vec![("model.bin", "bb"), ("vocab.txt", "cc")]),
        ]);
        assert_eq!(c.versions, vec![3, 5]);
        assert_eq!(c.config.len(), 1);
        assert_eq!(c.config[0].path, "/lr");
        assert!(!c.config_truncated);
        assert_eq!(c.tags.len(), 1);
        assert_eq!(c.tags[0].key, "team");
        assert_eq!(c.metrics["acc"]["5"], metric(0.2));
        let same: Vec<bool> = c.artifacts.iter().map(|a| a.same).collect();
        assert_eq!(same, vec![false, true]);
    }

    #[test]
    fn an_artifact_one_version_lacks_is_not_the_same() {
        let t = tags(&[]);
        let side = |version, artifacts| Side {
            version,
            config: Map::new(),
            tags: &t,
            metrics: Vec::new(),
            artifacts,
            schema: None,
            signed_by: None,
        };
        let c = compare(vec![side(1, vec![("a", "x")]), side(2, vec![])]);
        assert_eq!(c.artifacts.len(), 1);
        assert!(!c.artifacts[0].same);
        assert!(c.config.is_empty() && c.tags.is_empty() && c.metrics.is_empty());
    }

    #[test]
    fn each_later_schema_is_diffed_against_the_first() {
        let t = tags(&[]);
        let schema =
            |inputs: serde_json::Value| Schema::parse("schema", json!({"inputs": inputs})).unwrap();
        let (a, b, c) = (
            schema(json!([{"name": "x", "type": "long"}])),
            schema(
                json!([{"name": "x", "type": "long"}, {"name": "y", "type": "double", "required": false}]),
            ),
            schema(json!([{"name": "x", "type": "string"}])),
        );
        let side = |version, schema| Side {
            version,
            config: Map::new(),
            tags: &t,
            metrics: Vec::new(),
            artifacts: Vec::new(),
            schema,
            signed_by: (version == 2).then_some("ci-2026"),
        };
        let cmp = compare(vec![
            side(1, Some(&a)),
            side(2, Some(&b)),
            side(3, Some(&c)),
            side(4, None),
        ]);
        let verdicts: Vec<(i64, i64, bool, usize)> = cmp
            .schema_diff
            .iter()
            .map(|d| (d.from, d.to, d.compatible, d.changes.len()))
            .collect();
        assert_eq!(
            verdicts,
            [(1, 2, true, 1), (1, 3, false, 1), (1, 4, false, 1)]
        );
        assert_eq!(cmp.schema_diff[1].changes[0].change, "retyped");
        assert_eq!(
            cmp.signed_by,
            BTreeMap::from([("2".to_owned(), "ci-2026".to_owned())]),
            "only signed versions are listed"
        );
    }
}
