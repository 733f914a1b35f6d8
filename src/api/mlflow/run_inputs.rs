//! MLflow's `runs/log-inputs` (what `mlflow.log_input`, autolog and `evaluate` send): the
//! datasets of a run become its version's `dataset` inputs (see `domain::inputs`), and a run
//! answers them back as MLflow's `inputs.dataset_inputs`. The context tag
//! (`mlflow.data.context`) is the input's context; a schema or profile that is JSON text is
//! kept as JSON. Logged models a run used (`models`) are linked to it and answered as its
//! `inputs.model_inputs`.

use super::super::Endpoint;
use super::super::extract::Json;
use super::runs::{RunParams, model_of, run_version};
use super::{Empty, KeyValue};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::inputs::{Dataset, Input};
use crate::error::{Error, Result};
use crate::store::{Actor, RunModelLink};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// MLflow's tag for what a dataset was used for.
const CONTEXT_TAG: &str = "mlflow.data.context";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/runs/log-inputs",
            Scope::Write,
            log_inputs,
        )
        .confined(),
    ]
}

#[derive(Deserialize)]
struct MlflowDataset {
    name: String,
    digest: String,
    #[serde(default)]
    source_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

#[derive(Deserialize)]
struct DatasetInput {
    #[serde(default)]
    tags: Vec<KeyValue>,
    dataset: MlflowDataset,
}

#[derive(Deserialize)]
struct ModelInput {
    #[serde(default)]
    model_id: String,
}

#[derive(Deserialize)]
struct LogInputsBody {
    #[serde(flatten)]
    run: RunParams,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
    #[serde(default)]
    models: Vec<ModelInput>,
}

/// JSON text as JSON (MLflow sends schemas and profiles as strings); other text as a string.
fn as_json(text: Option<String>) -> Option<Value> {
    let text = text.filter(|t| !t.is_empty())?;
    Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The JSON text MLflow expects back.
fn as_text(value: &Option<Value>) -> Option<String> {
    match value {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn input_of(d: DatasetInput) -> Input {
    let mut context = None;
    let mut tags = BTreeMap::new();
    for t in d.tags {
        if t.key == CONTEXT_TAG {
            context = Some(t.value);
        } else {
            tags.insert(t.key, t.value);
        }
    }
    let ds = d.dataset;
    let uri = serde_json::from_str::<Value>(&ds.source)
        .ok()
        .and_then(|s| s.get("uri").and_then(Value::as_str).map(str::to_owned));
    Input::Dataset(Dataset {
        name: ds.name,
        digest: ds.digest,
        uri,
        context,
        source_type: Some(ds.source_type).filter(|s| !s.is_empty()),
        source: Some(ds.source).filter(|s| !s.is_empty()),
        schema: as_json(ds.schema),
        profile: as_json(ds.profile),
        tags,
    })
}

async fn log_inputs(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<LogInputsBody>,
) -> Result<axum::Json<Empty>> {
    let v = run_version(&state, &principal, &body.run.id()?).await?;
    if !body.models.is_empty() {
        if v.status != crate::domain::VersionStatus::Pending {
            return Err(ended(&v));
        }
        let ids = body.models.into_iter().map(|m| m.model_id).collect();
        super::logged_models::link_inputs(&state, &principal, v.id, ids).await?;
    }
    if body.datasets.is_empty() {
        return Ok(axum::Json(Empty {}));
    }
    let inputs = body.datasets.into_iter().map(input_of).collect();
    match state
        .store
        .add_inputs(&model_of(&v)?, v.version, inputs, &actor)
        .await
    {
        Err(e) if e.code == "version_immutable" => Err(ended(&v)),
        other => other.map(|_| axum::Json(Empty {})),
    }
}

fn ended(v: &crate::store::Version) -> Error {
    Error::conflict(
        "version_immutable",
        format!(
            "run {} has ended ({}): modelreg keeps a run's inputs immutable once it ends; log \
             datasets and models it used before the run ends, or start a new run",
            v.id.simple(),
            v.status.as_str()
        ),
    )
}

/// A version's inputs as MLflow's `RunInputs`.
pub fn run_inputs(inputs: &[Input], models: &[&RunModelLink]) -> Value {
    let datasets: Vec<Value> = inputs
        .iter()
        .filter_map(|input| match input {
            Input::Dataset(d) => Some(d),
            _ => None,
        })
        .map(|d| {
            let mut tags: Vec<Value> = d
                .tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            if let Some(c) = &d.context {
                tags.insert(0, json!({"key": CONTEXT_TAG, "value": c}));
            }
            let mut dataset = json!({
                "name": d.name,
                "digest": d.digest,
                "source_type": d.source_type.clone().unwrap_or_default(),
                "source": d.source.clone().unwrap_or_default(),
            });
            if let Some(s) = as_text(&d.schema) {
                dataset["schema"] = Value::String(s);
            }
            if let Some(p) = as_text(&d.profile) {
                dataset["profile"] = Value::String(p);
            }
            json!({"tags": tags, "dataset": dataset})
        })
        .collect();
    let models: Vec<Value> = models
        .iter()
        .map(|l| json!({"model_id": super::logged_models::model_id(l.logged_model_id)}))
        .collect();
    json!({"dataset_inputs": datasets, "model_inputs": models})
}
