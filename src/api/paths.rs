//! Path parameters as domain types: `{model}`, `{version}` and `{stage}` are parsed once, and
//! a bad one is a 400 `invalid_path_parameter` naming it.

use crate::domain::{ModelName, StageName};
use crate::error::Error;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

fn path_error(name: &str, detail: impl Into<String>) -> Error {
    Error::bad_request("invalid_path_parameter", detail).with_field(name)
}

async fn raw_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, Error> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| path_error("path", "a path parameter is not valid UTF-8"))?;
    Ok(params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, Error> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| Error::internal(format!("route has no {name} parameter")))
}

fn model_param(params: &[(String, String)]) -> Result<ModelName, Error> {
    ModelName::parse("model", param(params, "model")?).map_err(|e| path_error("model", e.detail))
}

fn version_param(params: &[(String, String)]) -> Result<i64, Error> {
    let raw = param(params, "version")?;
    match raw.parse::<i64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(path_error(
            "version",
            format!("version {raw:?} is not a version number (an integer from 1)"),
        )),
    }
}

/// `{model}` in the path.
pub struct ModelPath(pub ModelName);

/// `{model}/versions/{version}` in the path.
pub struct VersionPath(pub ModelName, pub i64);

/// `{model}/stages/{stage}` in the path.
pub struct StagePath(pub ModelName, pub StageName);

impl<S: Send + Sync> FromRequestParts<S> for ModelPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let params = raw_params(parts, state).await?;
        Ok(Self(model_param(&params)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let params = raw_params(parts, state).await?;
        Ok(Self(model_param(&params)?, version_param(&params)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StagePath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let params = raw_params(parts, state).await?;
        let stage = StageName::parse("stage", param(&params, "stage")?)
            .map_err(|e| path_error("stage", e.detail))?;
        Ok(Self(model_param(&params)?, stage))
    }
}

/// `{model}/promotion-requests/{id}` in the path.
pub struct RequestPath(pub ModelName, pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RequestPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let params = raw_params(parts, state).await?;
        let raw = param(&params, "id")?;
        let id = uuid::Uuid::try_parse(raw)
            .map_err(|_| path_error("id", format!("{raw:?} is not a promotion request id")))?;
        Ok(Self(model_param(&params)?, id))
    }
}

/// `trust/keys/{name}` in the path.
pub struct KeyPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let params = raw_params(parts, state).await?;
        let name = crate::domain::trust::parse_name("name", param(&params, "name")?)
            .map_err(|e| path_error("name", e.detail))?;
        Ok(Self(name))
    }
}
