//! MLflow experiments: an experiment is the model of the same name.
//!
//! Names: MLflow allows any string; a modelreg model name is 1–128 of `a-z 0-9 . _ -`,
//! starting with a letter or digit. The rule is the identity, with one exception: MLflow's
//! `Default` experiment (id `"0"`, where runs go when none is set) is the model `default`. Any
//! other name that is not a model name is refused with `INVALID_PARAMETER_VALUE` saying so,
//! rather than changed into one (a changed name could collide, and could not be turned back).
//! Ids: `"0"` for `default`, else the model's id (32 hex digits).

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::{KeyValue, millis};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::access::{Principal, Scope};
use crate::error::{Error, Result};
use crate::store::{Actor, Model};
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/create",
            Scope::Write,
            create,
        )
        .confined(),
        Endpoint::new(
            Method::GET,
            "/api/2.0/mlflow/experiments/get",
            Scope::Read,
            get,
        )
        .confined(),
        Endpoint::new(
            Method::GET,
            "/api/2.0/mlflow/experiments/get-by-name",
            Scope::Read,
            get_by_name,
        )
        .confined(),
    ]
}

pub const DEFAULT_EXPERIMENT: &str = "Default";
pub const DEFAULT_MODEL: &str = "default";
pub const DEFAULT_ID: &str = "0";

/// The model an experiment name stands for.
pub fn model_name(experiment: &str) -> Result<ModelName> {
    let name = if experiment == DEFAULT_EXPERIMENT {
        DEFAULT_MODEL
    } else {
        experiment
    };
    ModelName::parse("name", name).map_err(|_| {
        Error::validation(
            "name",
            format!(
                "experiment name {experiment:?} is not a modelreg model name: use 1-128 of \
                 a-z 0-9 . _ -, starting with a letter or digit (an experiment is the model \
                 of the same name)"
            ),
        )
    })
}

/// The experiment name of a model.
pub fn experiment_name(model: &str) -> &str {
    if model == DEFAULT_MODEL {
        DEFAULT_EXPERIMENT
    } else {
        model
    }
}

pub fn experiment_id(model: &Model) -> String {
    if model.name == DEFAULT_MODEL {
        DEFAULT_ID.to_owned()
    } else {
        model.id.simple().to_string()
    }
}

pub(super) fn not_found(what: String) -> Error {
    Error::not_found("experiment_not_found", what)
}

/// The model behind an experiment id, if the caller may see it (else it does not exist).
pub async fn model_by_id(state: &AppState, principal: &Principal, id: &str) -> Result<Model> {
    let missing = || not_found(format!("no experiment with id {id:?}"));
    let model = if id == DEFAULT_ID {
        let name = ModelName::parse("experiment_id", DEFAULT_MODEL)?;
        state.store.get_model(&name).await
    } else {
        let uuid = Uuid::try_parse(id).map_err(|_| missing())?;
        state.store.get_model_by_id(uuid).await
    };
    match model {
        Ok(m) if principal.sees_model(&m.name) => Ok(m),
        Ok(_) => Err(missing()),
        Err(e) if e.code == "model_not_found" => Err(missing()),
        Err(e) => Err(e),
    }
}

#[derive(Serialize)]
pub struct Experiment {
    experiment_id: String,
    name: String,
    artifact_location: String,
    lifecycle_stage: &'static str,
    creation_time: i64,
    last_update_time: i64,
    tags: Vec<KeyValue>,
}

impl From<&Model> for Experiment {
    fn from(m: &Model) -> Self {
        let id = experiment_id(m);
        Experiment {
            artifact_location: format!("mlflow-artifacts:/{id}"),
            experiment_id: id,
            name: experiment_name(&m.name).to_owned(),
            lifecycle_stage: "active",
            creation_time: millis(m.created_at),
            last_update_time: millis(m.updated_at),
            tags: KeyValue::list(&m.tags),
        }
    }
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

#[derive(Serialize)]
struct Created {
    experiment_id: String,
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<axum::Json<Created>> {
    if body
        .artifact_location
        .as_deref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(Error::validation(
            "artifact_location",
            "artifact_location is not supported: artifacts are kept in modelreg's artifact store",
        ));
    }
    let model =
        super::create_model(&state, &principal, &actor, &body.name, None, body.tags).await?;
    Ok(axum::Json(Created {
        experiment_id: experiment_id(&model),
    }))
}

#[derive(Serialize)]
struct One {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct GetParams {
    experiment_id: String,
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<GetParams>,
) -> Result<axum::Json<One>> {
    let model = model_by_id(&state, &principal, &p.experiment_id).await?;
    Ok(axum::Json(One {
        experiment: Experiment::from(&model),
    }))
}

#[derive(Deserialize)]
struct ByNameParams {
    experiment_name: String,
}

async fn get_by_name(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ByNameParams>,
) -> Result<axum::Json<One>> {
    let missing = || {
        not_found(format!(
            "Could not find experiment with name '{}'",
            p.experiment_name
        ))
    };
    // A name that cannot be a model's names no experiment.
    let name = model_name(&p.experiment_name).map_err(|_| missing())?;
    if !principal.sees_model(name.as_str()) {
        return Err(missing());
    }
    match state.store.get_model(&name).await {
        Ok(model) => Ok(axum::Json(One {
            experiment: Experiment::from(&model),
        })),
        Err(e) if e.code == "model_not_found" => Err(missing()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_one_to_one_and_default_is_default() {
        assert_eq!(model_name("Default").unwrap().as_str(), "default");
        assert_eq!(experiment_name("default"), "Default");
        assert_eq!(model_name("fraud-v2").unwrap().as_str(), "fraud-v2");
        assert_eq!(experiment_name("fraud-v2"), "fraud-v2");
        for bad in ["My Experiment", "Fraud", "", "/abs"] {
            let e = model_name(bad).unwrap_err();
            assert!(e.detail.contains("not a modelreg model name"), "{bad}");
        }
    }
}
