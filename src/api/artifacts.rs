//! `…/versions/{version}/artifacts`: streamed, checksummed, write-once uploads; downloads
//! with ETag and Range; presigned URLs where the store can sign.

use super::Endpoint;
use super::Items;
use super::extract::{Query, VersionPath};
use crate::AppState;
use crate::blob::{ByteRange, Unsatisfiable, parse_range};
use crate::domain::ModelName;
use crate::domain::access::Scope;
use crate::domain::artifact::{ArtifactPath, parse_sha256};
use crate::domain::time;
use crate::error::{Error, Kind, Result};
use crate::store::{Actor, Artifact, LoggedModel};
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub fn endpoints() -> Vec<Endpoint> {
    const ONE: &str = "/api/v1/models/{model}/versions/{version}/artifacts/{*path}";
    vec![
        // Artifact bodies are streamed: no JSON body limit here.
        Endpoint::new(Method::PUT, ONE, Scope::Write, upload).streaming(),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/versions/{version}/artifacts",
            Scope::Read,
            list,
        ),
        Endpoint::new(Method::GET, ONE, Scope::Read, download),
        Endpoint::new(Method::DELETE, ONE, Scope::Write, delete),
    ]
}

/// Longest lifetime of a presigned URL.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize)]
struct DownloadParams {
    presign: Option<bool>,
    /// Seconds the presigned URL stays valid (default 3600).
    expires_in: Option<u64>,
}

#[derive(Serialize)]
struct Presigned {
    url: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    expires_at: time::Timestamp,
}

fn path_param(params: &RawPathParams) -> Result<ArtifactPath> {
    let raw = params
        .iter()
        .find(|(k, _)| *k == "path")
        .map(|(_, v)| v)
        .ok_or_else(|| Error::internal("route has no path parameter"))?;
    ArtifactPath::parse(raw)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The upload's declared media type, recorded and listed as the client gave it (downloads
/// never let a browser render it, see [`download`]): `type/subtype` and parameters, ≤ 255
/// visible characters; `application/octet-stream` when absent.
fn content_type(headers: &HeaderMap) -> Result<String> {
    let Some(raw) = headers.get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".to_owned());
    };
    let ok = raw.to_str().ok().filter(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim();
        v.len() <= 255
            && essence.split_once('/').is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                token(t) && token(s)
            })
    });
    ok.map(str::to_owned).ok_or_else(|| {
        Error::bad_request(
            "invalid_content_type",
            "content-type must be a media type such as application/octet-stream",
        )
        .with_field("content-type")
    })
}

/// `attachment` with the path's last segment as the file name (an ASCII fallback and the
/// exact name in RFC 5987 form).
fn attachment(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn upload(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    params: RawPathParams,
    actor: Actor,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<Artifact>)> {
    let path = path_param(&params)?;
    let artifact = store_upload(&state, &model, version, &path, &actor, &headers, body).await?;
    Ok((StatusCode::CREATED, axum::Json(artifact)))
}

/// An upload's expected sha256 (`x-content-sha256`) and content type.
fn upload_headers(headers: &HeaderMap) -> Result<(Option<String>, String)> {
    let expected = header_str(headers, "x-content-sha256")
        .map(parse_sha256)
        .transpose()?;
    Ok((expected, content_type(headers)?))
}

/// Streams an upload into the object store and records it (the native and MLflow uploads).
pub(crate) async fn store_upload(
    state: &AppState,
    model: &ModelName,
    version: i64,
    path: &ArtifactPath,
    actor: &Actor,
    headers: &HeaderMap,
    body: Body,
) -> Result<Artifact> {
    let (expected, content_type) = upload_headers(headers)?;
    // Refuse before reading the body when the upload cannot be recorded anyway.
    state
        .store
        .check_upload(model, version, path.as_str())
        .await?;
    let key = state.blobs.new_key(model.as_str(), version, path.as_str());
    let artifact = receive(state, &key, path, expected, content_type, body).await?;
    let recorded = state
        .store
        .add_artifact(model, version, artifact, actor)
        .await;
    settle(state, &key, recorded).await
}

/// Streams an upload of a logged model's file into the object store and records it.
pub(crate) async fn store_logged_upload(
    state: &AppState,
    model: &LoggedModel,
    path: &ArtifactPath,
    actor: &Actor,
    headers: &HeaderMap,
    body: Body,
) -> Result<Artifact> {
    let (expected, content_type) = upload_headers(headers)?;
    state
        .store
        .check_logged_upload(model.id, path.as_str())
        .await?;
    let holder = format!("m-{}", model.id.simple());
    let key = state.blobs.new_key_in(&model.model, &holder, path.as_str());
    let artifact = receive(state, &key, path, expected, content_type, body).await?;
    let recorded = state.store.add_logged_file(model.id, artifact, actor).await;
    settle(state, &key, recorded).await
}

/// Writes the body to `key`, checksummed and bounded: the artifact it makes, not recorded yet.
async fn receive(
    state: &AppState,
    key: &object_store::path::Path,
    path: &ArtifactPath,
    expected: Option<String>,
    content_type: String,
    body: Body,
) -> Result<Artifact> {
    let stream = idle_limited(body, state.config.idle_timeout);
    let written = state
        .blobs
        .upload(
            key,
            stream,
            expected.as_deref(),
            state.config.max_artifact_size,
        )
        .await?;
    Ok(Artifact {
        path: path.as_str().to_owned(),
        size: written.size,
        sha256: written.sha256,
        content_type,
        created_at: time::now(),
        object_key: written.key,
    })
}

/// Counts a recorded upload, or deletes the object of one that lost a race (finalized
/// meanwhile, or the same path won by another upload).
async fn settle(
    state: &AppState,
    key: &object_store::path::Path,
    recorded: Result<Artifact>,
) -> Result<Artifact> {
    match recorded {
        Ok(a) => {
            metrics::counter!("modelreg_artifact_bytes_in_total").increment(a.size as u64);
            Ok(a)
        }
        Err(e) => {
            if let Err(cleanup) = state.blobs.delete(key.as_ref()).await {
                tracing::warn!(error = ?cleanup, "could not delete an unrecorded upload; `modelreg gc` will");
            }
            Err(e)
        }
    }
}

/// The upload body, failing when the client sends nothing for `idle` (the upload is then
/// aborted: no object, no row) or breaks off.
fn idle_limited(
    body: Body,
    idle: Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes>> + Unpin {
    let chunks = body.into_data_stream();
    Box::pin(futures::stream::unfold(
        Some(chunks),
        move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, futures::StreamExt::next(&mut chunks)).await {
                Ok(None) => None,
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(e))) => Some((
                    Err(Error::bad_request(
                        "upload_interrupted",
                        format!("the upload was interrupted: {e}"),
                    )),
                    None,
                )),
                Err(_) => Some((
                    Err(Error::new(
                        Kind::RequestTimeout,
                        "upload_timeout",
                        format!(
                            "no data arrived for {}s; the upload was abandoned",
                            idle.as_secs_f64()
                        ),
                    )),
                    None,
                )),
            }
        },
    ))
}

async fn list(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
) -> Result<axum::Json<Items<Artifact>>> {
    let items = state.store.list_artifacts(&model, version).await?;
    Ok(axum::Json(Items { items }))
}

async fn download(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    params: RawPathParams,
    Query(p): Query<DownloadParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let path = path_param(&params)?;
    let artifact = state
        .store
        .get_artifact(&model, version, path.as_str())
        .await?;
    if p.presign == Some(true) {
        let expires_in = Duration::from_secs(p.expires_in.unwrap_or(3600));
        if expires_in.is_zero() || expires_in > MAX_PRESIGN {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                "expires_in must be 1 to 604800 seconds",
            )
            .with_field("expires_in"));
        }
        let url = state
            .blobs
            .presign(&artifact.object_key, expires_in)
            .await?;
        let expires_at =
            time::now() + chrono::Duration::from_std(expires_in).map_err(Error::internal)?;
        return Ok(axum::Json(Presigned { url, expires_at }).into_response());
    }
    send(&state, &artifact, &headers).await
}

/// An artifact's bytes (or the range asked for), with ETag and `If-None-Match`, never to be
/// rendered by a browser.
pub(crate) async fn send(
    state: &AppState,
    artifact: &Artifact,
    headers: &HeaderMap,
) -> Result<Response> {
    let etag = format!("\"{}\"", artifact.sha256);
    if header_str(headers, "if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let size = artifact.size as u64;
    let range = match parse_range(header_str(headers, "range"), size) {
        Ok(r) => r,
        Err(Unsatisfiable) => {
            let mut resp = Error::new(
                Kind::RangeNotSatisfiable,
                "range_not_satisfiable",
                format!("the artifact has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let stream = state.blobs.get(&artifact.object_key, range).await?;
    let (status, length) = match range {
        Some(ByteRange { start, end }) => (StatusCode::PARTIAL_CONTENT, end - start),
        None => (StatusCode::OK, size),
    };
    metrics::counter!("modelreg_artifact_bytes_out_total").increment(length);
    let mut resp = Response::new(Body::from_stream(stream.map_err(std::io::Error::other)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    // Artifacts are whatever was uploaded: never rendered by a browser on this origin (a
    // `text/html` upload would otherwise run script with the registry's authority).
    for (name, value) in [
        (header::CONTENT_TYPE, artifact.content_type.clone()),
        (header::CONTENT_LENGTH, length.to_string()),
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::CONTENT_DISPOSITION, attachment(&artifact.path)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'".to_owned(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

async fn delete(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    params: RawPathParams,
    actor: Actor,
) -> Result<StatusCode> {
    let path = path_param(&params)?;
    let removed = state
        .store
        .delete_artifact(&model, version, path.as_str(), &actor)
        .await?;
    if let Err(e) = state.blobs.delete(&removed.object_key).await {
        tracing::warn!(error = ?e, "artifact row removed but its object was not; `modelreg gc` will remove it");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Checks that every recorded artifact of a version is in the store with its recorded size.
pub(crate) async fn check_artifacts_present(
    state: &AppState,
    artifacts: &[Artifact],
) -> Result<()> {
    for a in artifacts {
        match state.blobs.head(&a.object_key).await? {
            Some(meta) if meta.size == a.size as u64 => {}
            Some(meta) => {
                return Err(Error::conflict(
                    "artifact_missing",
                    format!(
                        "artifact '{}' has {} bytes in the store but {} were recorded",
                        a.path, meta.size, a.size
                    ),
                ));
            }
            None => {
                return Err(Error::conflict(
                    "artifact_missing",
                    format!("artifact '{}' is missing from the store", a.path),
                ));
            }
        }
    }
    Ok(())
}
