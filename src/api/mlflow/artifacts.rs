//! MLflow's artifact proxy, `/api/2.0/mlflow-artifacts/artifacts/…` (list, get, put), over
//! modelreg's artifacts. A run's artifact URI is `mlflow-artifacts:/<experiment id>/<run
//! id>/artifacts`; the client resolves it to these paths, so `mlflow.log_artifact(s)`,
//! `register_model("runs:/…")` and `download_artifacts("models:/…")` reach the version's
//! artifacts: write-once while the run is running, checksummed, streamed.

use super::super::Endpoint;
use super::super::artifacts::{send, store_logged_upload, store_upload};
use super::super::extract::Query;
use super::run_view::experiment_id_of;
use super::runs::{model_of, run_version};
use super::{Empty, logged_models};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::artifact::ArtifactPath;
use crate::domain::{ModelName, time};
use crate::error::{Error, Result};
use crate::store::{Actor, Artifact, LoggedModel, Version};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const ROOT: &str = "/api/2.0/mlflow-artifacts/artifacts";
const ONE: &str = "/api/2.0/mlflow-artifacts/artifacts/{*path}";

/// The scheme of run artifact URIs.
pub const SCHEME: &str = "mlflow-artifacts:/";

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, ROOT, Scope::Read, list).confined(),
        Endpoint::new(Method::GET, ONE, Scope::Read, download).confined(),
        Endpoint::new(Method::PUT, ONE, Scope::Write, upload)
            .streaming()
            .confined(),
    ]
}

/// The artifact URI of a version (as a run): `mlflow-artifacts:/<experiment>/<run>/artifacts`.
pub fn run_artifact_uri(experiment_id: &str, v: &Version) -> String {
    format!("{SCHEME}{experiment_id}/{}/artifacts", v.id.simple())
}

/// Whose files a place is among: a run's (a version's artifacts) or a logged model's.
pub enum Holder {
    Run(Version),
    Logged(LoggedModel),
}

/// A place among a run's or a logged model's files: the holder and the path under it ("" for
/// its root).
pub struct Location {
    pub holder: Holder,
    pub path: String,
}

impl Location {
    /// Every file of the holder.
    pub async fn files(&self, state: &AppState) -> Result<Vec<Artifact>> {
        match &self.holder {
            Holder::Run(v) => state.store.list_artifacts(&model_of(v)?, v.version).await,
            Holder::Logged(m) => state.store.logged_files(m.id).await,
        }
    }

    async fn file(&self, state: &AppState) -> Result<Artifact> {
        match &self.holder {
            Holder::Run(v) => {
                state
                    .store
                    .get_artifact(&model_of(v)?, v.version, &self.path)
                    .await
            }
            Holder::Logged(m) => state.store.logged_file(m.id, &self.path).await,
        }
    }
}

/// Resolves `<experiment id>/<run id>/artifacts[/<path>]` (a run's files) or
/// `<experiment id>/models/<model id>/artifacts[/<path>]` (a logged model's) to a holder the
/// caller may see.
pub async fn locate(state: &AppState, principal: &Principal, raw: &str) -> Result<Location> {
    let missing = || {
        Error::not_found(
            "artifact_not_found",
            format!(
                "no artifacts at {raw:?} (expected <experiment id>/<run id>/artifacts/… or \
                 <experiment id>/models/<model id>/artifacts/…)"
            ),
        )
    };
    let raw = raw.trim_matches('/');
    let (experiment, rest) = raw.split_once('/').ok_or_else(missing)?;
    if let Some(rest) = rest.strip_prefix("models/") {
        let mut parts = rest.splitn(3, '/');
        let (Some(id), Some("artifacts")) = (parts.next(), parts.next()) else {
            return Err(missing());
        };
        let path = parts.next().unwrap_or_default().trim_end_matches('/');
        let model = logged_models::visible(state, principal, id).await?;
        if logged_models::experiment_of(&model) != experiment {
            return Err(missing());
        }
        return Ok(Location {
            holder: Holder::Logged(model),
            path: path.to_owned(),
        });
    }
    let mut parts = rest.splitn(3, '/');
    let (Some(run), Some("artifacts")) = (parts.next(), parts.next()) else {
        return Err(missing());
    };
    let path = parts.next().unwrap_or_default().trim_end_matches('/');
    let version = run_version(state, principal, run).await?;
    if experiment_id_of(state, &version).await? != experiment {
        return Err(missing());
    }
    Ok(Location {
        holder: Holder::Run(version),
        path: path.to_owned(),
    })
}

/// The location an `mlflow-artifacts:` URI names, if it is one.
pub async fn locate_uri(
    state: &AppState,
    principal: &Principal,
    uri: &str,
) -> Result<Option<Location>> {
    match uri.strip_prefix(SCHEME) {
        Some(rest) => locate(state, principal, rest).await.map(Some),
        None => Ok(None),
    }
}

/// A version's artifacts under `dir` ("" for all), keyed by their path below it.
pub fn under<'a>(artifacts: &'a [Artifact], dir: &str) -> Vec<(&'a str, &'a Artifact)> {
    artifacts
        .iter()
        .filter_map(|a| match dir {
            "" => Some((a.path.as_str(), a)),
            d => a
                .path
                .strip_prefix(d)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| (rest, a)),
        })
        .collect()
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Serialize)]
struct FileInfo {
    path: String,
    is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_size: Option<i64>,
}

#[derive(Serialize)]
struct Files {
    files: Vec<FileInfo>,
}

/// The entries directly in a directory of artifacts (a file's path lists that file).
fn children(artifacts: &[Artifact], dir: &str) -> Vec<FileInfo> {
    if let Some(file) = artifacts.iter().find(|a| a.path == dir) {
        let name = dir.rsplit('/').next().unwrap_or(dir);
        return vec![FileInfo {
            path: name.to_owned(),
            is_dir: false,
            file_size: Some(file.size),
        }];
    }
    let mut entries: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for (rest, a) in under(artifacts, dir) {
        match rest.split_once('/') {
            Some((sub, _)) => entries.insert(sub, None),
            None => entries.insert(rest, Some(a.size)),
        };
    }
    entries
        .into_iter()
        .map(|(name, size)| FileInfo {
            path: name.to_owned(),
            is_dir: size.is_none(),
            file_size: size,
        })
        .collect()
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Files>> {
    let at = locate(&state, &principal, p.path.as_deref().unwrap_or_default()).await?;
    let artifacts = at.files(&state).await?;
    Ok(axum::Json(Files {
        files: children(&artifacts, &at.path),
    }))
}

async fn download(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let at = locate(&state, &principal, &path).await?;
    let artifact = at.file(&state).await?;
    send(&state, &artifact, &headers).await
}

async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    actor: Actor,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Empty>> {
    let at = locate(&state, &principal, &path).await?;
    let path = ArtifactPath::parse(&at.path)?;
    match at.holder {
        Holder::Run(version) => {
            let stored = store_upload(
                &state,
                &model_of(&version)?,
                version.version,
                &path,
                &actor,
                &headers,
                body,
            )
            .await;
            match stored {
                Err(e) if e.code == "version_immutable" => Err(Error::conflict(
                    "version_immutable",
                    format!(
                        "run {} has ended ({}): modelreg keeps a run's artifacts immutable once \
                         it ends; log artifacts before the run ends, or start a new run",
                        version.id.simple(),
                        version.status.as_str()
                    ),
                )),
                other => other.map(|_| axum::Json(Empty {})),
            }
        }
        Holder::Logged(model) => {
            store_logged_upload(&state, &model, &path, &actor, &headers, body).await?;
            Ok(axum::Json(Empty {}))
        }
    }
}

/// Copies of the model files at `source` (a run's or a logged model's `mlflow-artifacts:`
/// directory), for a new
/// version of `model`: their paths relative to that directory, their objects copied to keys
/// of their own (server-side on S3), so each version's artifacts stay independent. `number`
/// is the version number the registration is expected to take (for the keys' readability
/// only). Nothing to copy when the source is not one of this server's run directories.
pub async fn copy_model_files(
    state: &AppState,
    principal: &Principal,
    source: &str,
    model: &ModelName,
    number: i64,
) -> Result<Vec<Artifact>> {
    let Some(at) = locate_uri(state, principal, source).await? else {
        return Ok(Vec::new());
    };
    copy_files(state, &at, model, number).await
}

/// Copies of the files under a location, for a new version of `model` (see
/// [`copy_model_files`]).
pub async fn copy_files(
    state: &AppState,
    at: &Location,
    model: &ModelName,
    number: i64,
) -> Result<Vec<Artifact>> {
    let artifacts = at.files(state).await?;
    let mut copies = Vec::new();
    for (rest, a) in under(&artifacts, &at.path) {
        let key = state.blobs.new_key(model.as_str(), number, rest);
        state.blobs.copy(&a.object_key, &key).await?;
        copies.push(Artifact {
            path: rest.to_owned(),
            object_key: key.to_string(),
            created_at: time::now(),
            ..a.clone()
        });
    }
    Ok(copies)
}

/// Deletes the objects of copies a registration did not record.
pub async fn discard(state: &AppState, copies: &[Artifact]) {
    for c in copies {
        if let Err(e) = state.blobs.delete(&c.object_key).await {
            tracing::warn!(error = ?e, "could not delete an unrecorded copy; `modelreg gc` will");
        }
    }
}

/// Where MLflow's client downloads a model version from: the directory of its `MLmodel`
/// file among its artifacts (a run logs its model under a directory such as `model/`; a
/// version registered from another model's run holds the files at its root); its source
/// when it has no artifacts and names files elsewhere.
pub fn download_uri(experiment_id: &str, v: &Version, artifacts: &[Artifact]) -> String {
    let root = run_artifact_uri(experiment_id, v);
    if artifacts.is_empty() {
        let source: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(v.source.get()).unwrap_or_default();
        if let Some(s) = source.get("mlflow_source").and_then(|s| s.as_str())
            && !s.is_empty()
        {
            return s.to_owned();
        }
    }
    let mut dirs = artifacts
        .iter()
        .filter_map(|a| a.path.strip_suffix("MLmodel"))
        .filter(|d| d.is_empty() || d.ends_with('/'));
    match (dirs.next(), dirs.next()) {
        (Some(dir), None) if !dir.is_empty() => format!("{root}/{}", dir.trim_end_matches('/')),
        _ => root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &str, size: i64) -> Artifact {
        Artifact {
            path: path.to_owned(),
            size,
            sha256: String::new(),
            content_type: "application/octet-stream".into(),
            created_at: time::now(),
            object_key: String::new(),
        }
    }

    #[test]
    fn listing_shows_one_level() {
        let all = [
            artifact("model/MLmodel", 10),
            artifact("model/data/weights.bin", 20),
            artifact("notes.txt", 3),
        ];
        let names = |dir: &str| -> Vec<(String, bool, Option<i64>)> {
            children(&all, dir)
                .into_iter()
                .map(|f| (f.path, f.is_dir, f.file_size))
                .collect()
        };
        assert_eq!(
            names(""),
            vec![
                ("model".into(), true, None),
                ("notes.txt".into(), false, Some(3))
            ]
        );
        assert_eq!(
            names("model"),
            vec![
                ("MLmodel".into(), false, Some(10)),
                ("data".into(), true, None)
            ]
        );
        assert_eq!(names("model/data/weights.bin").len(), 1);
        assert!(
            names("mod").is_empty(),
            "a prefix of a name is not a directory"
        );
        assert!(names("missing").is_empty());
    }
}
