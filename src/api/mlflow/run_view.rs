//! How a version looks as an MLflow run: its info (status, times, name) and data (params from
//! the config, tags, the last value of each metric).

use super::artifacts::run_artifact_uri;
use super::experiments;
use super::logged_models::model_id;
use super::runs::{RUN_NAME_TAG, model_of};
use super::{KeyValue, millis};
use crate::AppState;
use crate::domain::VersionStatus;
use crate::error::Result;
use crate::store::{RunModelLink, Version, VersionDetail};
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Serialize)]
pub struct RunInfo {
    run_id: String,
    run_uuid: String,
    run_name: String,
    experiment_id: String,
    user_id: String,
    status: &'static str,
    start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    artifact_uri: String,
    lifecycle_stage: &'static str,
}

#[derive(Serialize)]
pub struct RunData {
    metrics: Vec<Value>,
    params: Vec<KeyValue>,
    tags: Vec<KeyValue>,
}

#[derive(Serialize)]
pub struct Run {
    info: RunInfo,
    data: RunData,
    inputs: Value,
    outputs: Value,
}

fn status_of(v: &Version) -> &'static str {
    match v.status {
        VersionStatus::Pending => "RUNNING",
        VersionStatus::Failed if v.status_reason.as_deref() == Some("KILLED") => "KILLED",
        VersionStatus::Failed | VersionStatus::Erased => "FAILED",
        VersionStatus::Ready | VersionStatus::Archived => "FINISHED",
    }
}

/// A param's value: strings as they are, anything else as its JSON text.
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn experiment_id_of(state: &AppState, v: &Version) -> Result<String> {
    let model = state.store.get_model(&model_of(v)?).await?;
    Ok(experiments::experiment_id(&model))
}

pub async fn run_info(state: &AppState, v: &Version) -> Result<RunInfo> {
    Ok(info_in(experiment_id_of(state, v).await?, v))
}

/// A run's info, its experiment's id known.
pub fn info_in(experiment_id: String, v: &Version) -> RunInfo {
    let source: Map<String, Value> = serde_json::from_str(v.source.get()).unwrap_or_default();
    let mlflow = source.get("mlflow_run").cloned().unwrap_or(Value::Null);
    let run_id = v.id.simple().to_string();
    RunInfo {
        run_uuid: run_id.clone(),
        run_name: v
            .tags
            .as_map()
            .get(RUN_NAME_TAG)
            .cloned()
            .unwrap_or_else(|| format!("v{}", v.version)),
        user_id: mlflow["user_id"]
            .as_str()
            .map_or_else(|| v.created_by.clone(), str::to_owned),
        status: status_of(v),
        start_time: mlflow["start_time"]
            .as_i64()
            .unwrap_or_else(|| millis(v.created_at)),
        end_time: (v.status != VersionStatus::Pending).then(|| millis(v.updated_at)),
        artifact_uri: run_artifact_uri(&experiment_id, v),
        experiment_id,
        run_id,
        lifecycle_stage: if matches!(v.status, VersionStatus::Archived | VersionStatus::Erased) {
            "deleted"
        } else {
            "active"
        },
    }
}

pub async fn run_of(state: &AppState, d: VersionDetail) -> Result<Run> {
    let links = state.store.run_models(&[d.version.id]).await?;
    Ok(run_in(
        experiment_id_of(state, &d.version).await?,
        d,
        &links,
    ))
}

/// A version as a run, its experiment's id known; `links` holds (at least) its logged models.
pub fn run_in(experiment_id: String, d: VersionDetail, links: &[RunModelLink]) -> Run {
    let mine = links.iter().filter(|l| l.version_id == d.version.id);
    let (outputs, inputs): (Vec<&RunModelLink>, Vec<&RunModelLink>) = mine.partition(|l| l.output);
    let v = &d.version;
    let config: Map<String, Value> = serde_json::from_str(v.config.get()).unwrap_or_default();
    let at = millis(v.updated_at);
    Run {
        info: info_in(experiment_id, v),
        data: RunData {
            metrics: d
                .metrics
                .iter()
                .map(|m| json!({"key": m.key, "value": m.last, "timestamp": at, "step": m.last_step}))
                .collect(),
            params: config
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: param_text(value),
                })
                .collect(),
            tags: KeyValue::list(&v.tags),
        },
        inputs: super::run_inputs::run_inputs(&d.inputs, &inputs),
        outputs: json!({
            "model_outputs": outputs
                .iter()
                .map(|l| json!({"model_id": model_id(l.logged_model_id), "step": l.step}))
                .collect::<Vec<_>>(),
        }),
    }
}
