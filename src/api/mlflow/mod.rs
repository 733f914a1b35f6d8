//! `/api/2.0/mlflow/…`: the part of MLflow's REST API its Python client uses, mapped onto
//! modelreg's own flows (an experiment is a model; see API.md § MLflow compatibility). Request
//! and response shapes are MLflow's (from its `service.proto`); errors are MLflow's
//! `{"error_code", "message"}`: every problem+json answer on these paths, from a handler, an
//! extractor or the route guard, is rewritten by [`translate_errors`].

pub mod artifacts;
pub mod experiment_search;
pub mod experiments;
pub mod logged_models;
pub mod model_versions;
pub mod names;
pub mod registry;
pub mod registry_changes;
pub mod run_inputs;
pub mod run_metrics;
pub mod run_search;
pub mod run_view;
pub mod runs;
pub mod server_info;
pub mod version_changes;

use super::Endpoint;
use crate::AppState;
use crate::domain::access::Principal;
use crate::domain::{Description, Tags};
use crate::error::{Error, Kind, Result};
use crate::store::{Actor, Model, NewModel};
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The paths whose errors are MLflow's: the tracking and registry API and the artifact proxy.
pub const PREFIXES: [&str; 2] = ["/api/2.0/mlflow/", "/api/2.0/mlflow-artifacts/"];

pub fn endpoints() -> Vec<Endpoint> {
    [
        artifacts::endpoints(),
        experiments::endpoints(),
        experiment_search::endpoints(),
        logged_models::endpoints(),
        runs::endpoints(),
        run_inputs::endpoints(),
        run_metrics::endpoints(),
        run_search::endpoints(),
        registry::endpoints(),
        model_versions::endpoints(),
        registry_changes::endpoints(),
        server_info::endpoints(),
        version_changes::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// An MLflow error: its code and the HTTP status MLflow's server answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlflowCode {
    pub status: StatusCode,
    pub error_code: &'static str,
}

const fn code(status: u16, error_code: &'static str) -> MlflowCode {
    match StatusCode::from_u16(status) {
        Ok(status) => MlflowCode { status, error_code },
        Err(_) => MlflowCode {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_code: "INTERNAL_ERROR",
        },
    }
}

/// The MLflow error for a modelreg problem (its status and code), as MLflow's own server
/// answers the same situation: a duplicate is 400 `RESOURCE_ALREADY_EXISTS`, anything missing
/// 404 `RESOURCE_DOES_NOT_EXIST`, a bad value (or a state that refuses it) 400
/// `INVALID_PARAMETER_VALUE`.
pub fn mlflow_code(status: StatusCode, problem_code: &str) -> MlflowCode {
    match (status.as_u16(), problem_code) {
        (_, "model_exists") => code(400, "RESOURCE_ALREADY_EXISTS"),
        (_, "route_not_found") => code(404, "ENDPOINT_NOT_FOUND"),
        (401, _) => code(401, "UNAUTHENTICATED"),
        (403, _) => code(403, "PERMISSION_DENIED"),
        (404, _) => code(404, "RESOURCE_DOES_NOT_EXIST"),
        (429, _) => code(429, "REQUEST_LIMIT_EXCEEDED"),
        (400 | 409 | 413 | 422, _) => code(400, "INVALID_PARAMETER_VALUE"),
        // What the HTTP layer refuses (method, media type, sizes) keeps its status.
        (s @ 400..=499, _) => code(s, "BAD_REQUEST"),
        (503, _) => code(503, "TEMPORARILY_UNAVAILABLE"),
        (504, _) => code(504, "DEADLINE_EXCEEDED"),
        _ => code(500, "INTERNAL_ERROR"),
    }
}

#[derive(Serialize)]
struct MlflowError<'a> {
    error_code: &'a str,
    message: &'a str,
}

/// The largest problem+json body read back for rewriting (problems are a few hundred bytes).
const PROBLEM_BYTES: usize = 64 * 1024;

/// Rewrites problem+json answers under [`PREFIXES`] into MLflow's error shape.
pub async fn translate_errors(req: Request, next: Next) -> Response {
    let mlflow = PREFIXES.iter().any(|p| req.uri().path().starts_with(p));
    let response = next.run(req).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !mlflow || !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let problem: serde_json::Value = match to_bytes(body, PROBLEM_BYTES).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let text = |k: &str| problem.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let c = mlflow_code(parts.status, text("code"));
    let message = match text("detail") {
        "" => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned(),
        d => d.to_owned(),
    };
    let body = serde_json::to_vec(&MlflowError {
        error_code: c.error_code,
        message: &message,
    })
    .unwrap_or_default();
    parts.status = c.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body)).into_response()
}

/// MLflow's times: milliseconds since the Unix epoch.
pub fn millis(t: crate::domain::time::Timestamp) -> i64 {
    t.timestamp_millis()
}

/// The empty object MLflow answers a write with.
#[derive(Serialize)]
pub struct Empty {}

/// A `{key, value}` pair, as MLflow lists tags and params.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    /// Tags as MLflow lists them.
    pub fn list(tags: &Tags) -> Vec<KeyValue> {
        tags.as_map()
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// MLflow's pairs as tags (by MLflow's tag rule, see `Tags::parse_mlflow`).
    pub fn tags(pairs: Vec<KeyValue>) -> Result<Tags> {
        Tags::parse_mlflow(
            "tags",
            pairs.into_iter().map(|t| (t.key, t.value)).collect(),
        )
    }
}

/// MLflow's `order_by` (one `<field> [ASC|DESC]`) as a modelreg order: `key_of` names the
/// sort key of a field (`None`: not one this search orders by, which `what` lists); none is
/// newest first, MLflow's default.
pub fn order_by(
    order_by: &[String],
    key_of: impl Fn(&str) -> Option<crate::domain::order::SortKey>,
    what: &str,
) -> Result<crate::domain::order::OrderBy> {
    use crate::domain::order::OrderBy;
    let bad = |d: String| Error::validation("order_by", d);
    match order_by {
        [] => Ok(OrderBy::newest_first()),
        [one] => {
            let mut words = one.split_whitespace();
            let name = words.next().unwrap_or_default();
            let key = key_of(name).ok_or_else(|| bad(format!("{what}, not {one:?}")))?;
            let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(other) => return Err(bad(format!("unknown direction {other:?}"))),
            };
            Ok(OrderBy { key, descending })
        }
        _ => Err(bad("order by one key".to_owned())),
    }
}

/// The query of MLflow's searches by GET (registered models, model versions).
#[derive(serde::Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub order_by: Vec<String>,
    #[serde(default)]
    pub page_token: Option<String>,
}

/// The page size for MLflow's `max_results`: at most the server's largest page (a client
/// asking for more, as MLflow's does by default, gets a page and a `next_page_token`); below 1
/// is INVALID_PARAMETER_VALUE.
pub fn page_limit(max_results: Option<i64>, max_page: u32) -> Result<u32> {
    match max_results {
        None => Ok(max_page),
        Some(n) if n >= 1 => Ok(n.min(i64::from(max_page)) as u32),
        Some(n) => Err(Error::validation(
            "max_results",
            format!("max_results {n} must be at least 1"),
        )),
    }
}

/// Creates the model an MLflow experiment or registered model stands for, within the
/// caller's model globs.
pub async fn create_model(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    name: &str,
    description: Option<String>,
    tags: Vec<KeyValue>,
) -> Result<Model> {
    let (model, kept) = names::new_model(name)?;
    if !principal.sees_model(model.as_str()) {
        return Err(Error::new(
            Kind::Forbidden,
            "model_forbidden",
            format!("this token may not create '{name}'"),
        ));
    }
    let mut tags = tags;
    tags.retain(|t| t.key != names::NAME_TAG);
    if let Some(original) = kept {
        if names::find(state, &Principal::anonymous(), &original)
            .await?
            .is_some()
        {
            return Err(Error::conflict(
                "model_exists",
                format!("'{original}' already exists"),
            ));
        }
        tags.push(KeyValue {
            key: names::NAME_TAG.to_owned(),
            value: original,
        });
    }
    let new = NewModel {
        name: model,
        description: Description::parse_opt("description", description.filter(|d| !d.is_empty()))?,
        tags: KeyValue::tags(tags)?,
    };
    state.store.create_model(new, actor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_to_what_mlflow_answers() {
        let c = |s: u16, p: &str| {
            let m = mlflow_code(StatusCode::from_u16(s).unwrap(), p);
            (m.status.as_u16(), m.error_code)
        };
        assert_eq!(c(409, "model_exists"), (400, "RESOURCE_ALREADY_EXISTS"));
        assert_eq!(c(404, "model_not_found"), (404, "RESOURCE_DOES_NOT_EXIST"));
        assert_eq!(c(404, "route_not_found"), (404, "ENDPOINT_NOT_FOUND"));
        assert_eq!(
            c(400, "validation_failed"),
            (400, "INVALID_PARAMETER_VALUE")
        );
        assert_eq!(
            c(409, "version_immutable"),
            (400, "INVALID_PARAMETER_VALUE")
        );
        assert_eq!(c(413, "too_many_points"), (400, "INVALID_PARAMETER_VALUE"));
        assert_eq!(c(415, "unsupported_media_type"), (415, "BAD_REQUEST"));
        assert_eq!(c(405, "method_not_allowed"), (405, "BAD_REQUEST"));
        assert_eq!(c(401, "unauthorized"), (401, "UNAUTHENTICATED"));
        assert_eq!(c(403, "insufficient_scope"), (403, "PERMISSION_DENIED"));
        assert_eq!(
            c(503, "database_unavailable"),
            (503, "TEMPORARILY_UNAVAILABLE")
        );
        assert_eq!(c(500, "internal"), (500, "INTERNAL_ERROR"));
    }
}
