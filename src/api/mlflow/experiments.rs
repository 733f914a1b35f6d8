//! MLflow experiments: an experiment is a model (see [`super::names`] for how any MLflow
//! name finds its model). MLflow's `Default` experiment (id `"0"`, where runs go when none is
//! set) is the model `default`. Ids: `"0"` for `default`, else the model's id (32 hex
//! digits).

use super::super::Endpoint;
use super::super::extract::{Json, Query};
use super::{KeyValue, millis, names};
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
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/update",
            Scope::Write,
            update,
        )
        .confined(),
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/delete",
            Scope::Write,
            delete,
        )
        .confined(),
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/restore",
            Scope::Write,
            restore,
        )
        .confined(),
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/set-experiment-tag",
            Scope::Write,
            set_tag,
        )
        .confined(),
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/delete-experiment-tag",
            Scope::Write,
            delete_tag,
        )
        .confined(),
    ]
}

pub const DEFAULT_EXPERIMENT: &str = "Default";
pub const DEFAULT_MODEL: &str = "default";
pub const DEFAULT_ID: &str = "0";

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
            name: names::mlflow_name(m),
            lifecycle_stage: if names::is_deleted(m) {
                names::DELETED
            } else {
                "active"
            },
            creation_time: millis(m.created_at),
            last_update_time: millis(m.updated_at),
            tags: names::shown_tags(&m.tags),
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
    match names::find(&state, &principal, &p.experiment_name).await? {
        Some(model) => Ok(axum::Json(One {
            experiment: Experiment::from(&model),
        })),
        None => Err(missing()),
    }
}

#[derive(Deserialize)]
struct IdBody {
    experiment_id: String,
}

#[derive(Deserialize)]
struct UpdateBody {
    experiment_id: String,
    #[serde(default)]
    new_name: Option<String>,
}

/// Renames an experiment whose name is not a model name (see `names::rename`).
async fn update(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<UpdateBody>,
) -> Result<axum::Json<super::Empty>> {
    let model = model_by_id(&state, &principal, &body.experiment_id).await?;
    let new_name = body.new_name.unwrap_or_default();
    names::rename(&state, &actor, &model, &new_name).await?;
    Ok(axum::Json(super::Empty {}))
}

/// Sets (or, with `None`, removes) one tag of the experiment's model.
async fn retag(
    state: &AppState,
    actor: &Actor,
    model: &Model,
    key: String,
    value: Option<String>,
) -> Result<axum::Json<super::Empty>> {
    names::set_tag(state, actor, model, &key, value).await?;
    Ok(axum::Json(super::Empty {}))
}

/// Marks the experiment deleted: hidden from searches unless asked, no new runs; its model
/// and runs are kept, and `restore` brings it back. The `Default` experiment stays.
async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<IdBody>,
) -> Result<axum::Json<super::Empty>> {
    if body.experiment_id == DEFAULT_ID {
        return Err(Error::validation(
            "experiment_id",
            "the Default experiment cannot be deleted",
        ));
    }
    let model = model_by_id(&state, &principal, &body.experiment_id).await?;
    let mark = Some(names::DELETED.to_owned());
    retag(&state, &actor, &model, names::DELETED_TAG.to_owned(), mark).await
}

async fn restore(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<IdBody>,
) -> Result<axum::Json<super::Empty>> {
    let model = model_by_id(&state, &principal, &body.experiment_id).await?;
    retag(&state, &actor, &model, names::DELETED_TAG.to_owned(), None).await
}

#[derive(Deserialize)]
struct TagBody {
    experiment_id: String,
    key: String,
    #[serde(default)]
    value: String,
}

async fn set_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagBody>,
) -> Result<axum::Json<super::Empty>> {
    names::check_tag_key(&body.key)?;
    let model = model_by_id(&state, &principal, &body.experiment_id).await?;
    retag(&state, &actor, &model, body.key, Some(body.value)).await
}

#[derive(Deserialize)]
struct TagKeyBody {
    experiment_id: String,
    key: String,
}

async fn delete_tag(
    State(state): State<AppState>,
    actor: Actor,
    principal: Principal,
    Json(body): Json<TagKeyBody>,
) -> Result<axum::Json<super::Empty>> {
    names::check_tag_key(&body.key)?;
    let model = model_by_id(&state, &principal, &body.experiment_id).await?;
    retag(&state, &actor, &model, body.key, None).await
}
