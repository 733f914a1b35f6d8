//! Persistence: the `Store` trait and its Postgres and SQLite implementations.
//!
//! Every operation is one transaction. Rules that must hold across server replicas (gapless
//! version numbers, idempotency keys, serialized stage changes) are enforced here by the
//! database, never by in-process locks.

/// The columns of [`rows::VersionRow`], from `versions v` joined to `models m`, ready for a
/// `where`. Both dialects read versions the same way.
macro_rules! version_select {
    () => {
        "select v.id, m.name as model, v.version, v.status, v.description, v.config, v.source, \
         v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by \
         from versions v join models m on m.id = v.model_id "
    };
}

mod artifacts;
pub(crate) mod metrics;
mod postgres;
mod rows;
mod sqlite;
mod stages;
mod version_list;

pub use metrics::{BucketRow, MetricSummary, PointStream, STREAM_CHUNK, SeriesInfo};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::filter::{After, Filter, OrderBy};
use crate::domain::metrics::{BucketPlan, SeriesBatch};
use crate::domain::stage::Expected;
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName, TagFilter, TagPatch, Tags, Transition, VersionStatus};
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// A model as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tags: Tags,
    /// The highest version number registered, whatever its status.
    pub latest_version: Option<i64>,
    /// `{stage: version}` for every stage that holds a version.
    pub stages: BTreeMap<String, i64>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
    pub created_by: String,
}

/// A version as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub id: Uuid,
    pub model: String,
    pub version: i64,
    pub status: VersionStatus,
    pub description: Option<String>,
    /// The stored JSON text, passed through as it is: read paths never parse it (a list of
    /// versions costs the size of the configs, not several times that).
    pub config: Box<RawValue>,
    pub source: Box<RawValue>,
    pub tags: Tags,
    /// Why the version failed, when it did.
    pub status_reason: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
    pub created_by: String,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event_id: i64,
    pub action: String,
    pub model: Option<String>,
    pub version: Option<i64>,
    pub stage: Option<String>,
    pub actor: String,
    /// The token that made the change (token names are not unique); `null` without one.
    pub actor_token_id: Option<Uuid>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub at: Timestamp,
    pub details: Value,
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewModel {
    pub name: ModelName,
    pub description: Option<String>,
    pub tags: Tags,
}

/// `PUT` semantics: fields given replace the stored ones; fields left out stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PutModel {
    pub description: Option<String>,
    pub tags: Option<Tags>,
}

/// `PATCH` semantics: `description: Some(None)` clears it; tags are merged.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub description: Option<Option<String>>,
    pub tags: TagPatch,
}

#[derive(Debug, Clone)]
pub struct ModelQuery {
    pub prefix: Option<String>,
    /// SQL LIKE patterns the names must match one of (a token's model globs).
    pub visible: Option<Vec<String>>,
    pub tags: TagFilter,
    pub limit: u32,
    /// Name of the last model of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewVersion {
    pub description: Option<String>,
    pub tags: Tags,
    pub config: Map<String, Value>,
    pub source: Map<String, Value>,
    pub finalize: bool,
}

/// An `Idempotency-Key` and the fingerprint of the request body it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct VersionQuery {
    pub status: Option<VersionStatus>,
    pub tags: TagFilter,
    pub filter: Option<Filter>,
    pub order: OrderBy,
    /// The position of the last item of the previous page.
    pub after: Option<After>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct EventQuery {
    pub model: Option<String>,
    /// SQL LIKE patterns the model must match one of (a token's model globs).
    pub visible: Option<Vec<String>>,
    pub action: Option<String>,
    pub after: Option<i64>,
    pub limit: u32,
}

/// The result of registering a version: `created` is false for an idempotent replay.
#[derive(Debug, Clone)]
pub struct Registered {
    pub version: Version,
    pub created: bool,
}

impl Registered {
    /// A version just registered, as the registering transaction wrote it.
    pub(crate) fn new(
        id: Uuid,
        model: &ModelName,
        number: i64,
        status: VersionStatus,
        new: NewVersion,
        now: Timestamp,
        actor: &Actor,
    ) -> Result<Self> {
        let raw =
            |m: &Map<String, Value>| serde_json::value::to_raw_value(m).map_err(Error::internal);
        let version = Version {
            id,
            model: model.as_str().to_owned(),
            version: number,
            status,
            description: new.description,
            config: raw(&new.config)?,
            source: raw(&new.source)?,
            tags: new.tags,
            status_reason: None,
            created_at: now,
            updated_at: now,
            created_by: actor.name.clone(),
        };
        Ok(Self {
            version,
            created: true,
        })
    }
}

pub use crate::domain::access::Actor;

/// A stage and the version it holds.
#[derive(Debug, Clone, Serialize)]
pub struct StageEntry {
    pub stage: String,
    pub version: i64,
    /// When the version was put there.
    #[serde(with = "crate::domain::time::rfc3339")]
    pub since: Timestamp,
}

/// The answer to promote, rollback and clear.
#[derive(Debug, Clone, Serialize)]
pub struct StageChange {
    pub stage: String,
    pub version: Option<i64>,
    pub previous_version: Option<i64>,
    /// The event recording the change; for a no-op promote, the one of the assignment in force.
    pub event_id: Option<i64>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub at: Timestamp,
}

/// One entry of a stage's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub event_id: i64,
    pub action: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub reason: Option<String>,
    pub actor: String,
    pub actor_token_id: Option<Uuid>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub at: Timestamp,
}

impl From<Event> for HistoryEntry {
    fn from(e: Event) -> Self {
        let int = |k: &str| e.details.get(k).and_then(Value::as_i64);
        HistoryEntry {
            event_id: e.event_id,
            from_version: int("from_version"),
            to_version: int("to_version"),
            reason: e
                .details
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            action: e.action,
            actor: e.actor,
            actor_token_id: e.actor_token_id,
            at: e.at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOp {
    Promote { version: i64 },
    Rollback { to: Option<i64> },
    Clear,
}

#[derive(Debug, Clone)]
pub struct StageRequest {
    pub op: StageOp,
    pub reason: Option<String>,
    pub expected: Expected,
}

/// An artifact of a version.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Artifact {
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    #[serde(serialize_with = "crate::domain::time::rfc3339::serialize")]
    pub created_at: Timestamp,
    /// Where the bytes are in the object store.
    #[serde(skip_serializing)]
    pub object_key: String,
}

/// A version with its artifacts and metric summaries: what `GET …/versions/{version}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDetail {
    #[serde(flatten)]
    pub version: Version,
    pub artifacts: Vec<Artifact>,
    pub metrics: Vec<MetricSummary>,
}

/// A bearer token as stored (the secret itself never is).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Vec<crate::domain::access::Scope>,
    pub models: Option<Vec<crate::domain::access::Glob>>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// Database connections, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

/// How long idempotency keys are honoured, at least.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;
    /// Connections open and idle, for `/metrics`.
    fn pool_stats(&self) -> PoolStats;

    async fn create_model(&self, new: NewModel, actor: &Actor) -> Result<Model>;
    /// Creates or updates; the flag says whether it was created.
    async fn put_model(
        &self,
        name: &ModelName,
        put: PutModel,
        actor: &Actor,
    ) -> Result<(Model, bool)>;
    async fn get_model(&self, name: &ModelName) -> Result<Model>;
    async fn list_models(&self, query: &ModelQuery) -> Result<Page<Model>>;
    async fn update_model(&self, name: &ModelName, patch: Patch, actor: &Actor) -> Result<Model>;
    async fn delete_model(&self, name: &ModelName, actor: &Actor) -> Result<()>;

    async fn register_version(
        &self,
        model: &ModelName,
        new: NewVersion,
        idempotency: Option<Idempotency>,
        actor: &Actor,
    ) -> Result<Registered>;
    async fn get_version(&self, model: &ModelName, version: i64) -> Result<Version>;
    /// A version with its artifacts and metric summaries, read together.
    async fn version_detail(&self, model: &ModelName, version: i64) -> Result<VersionDetail>;
    async fn list_versions(&self, model: &ModelName, query: &VersionQuery)
    -> Result<Page<Version>>;
    async fn update_version(
        &self,
        model: &ModelName,
        version: i64,
        patch: Patch,
        actor: &Actor,
    ) -> Result<Version>;
    async fn transition_version(
        &self,
        model: &ModelName,
        version: i64,
        transition: Transition,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<Version>;

    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>>;

    /// Writes a validated, deduplicated batch atomically; points already there are replaced.
    async fn write_metrics(
        &self,
        model: &ModelName,
        version: i64,
        batches: &[SeriesBatch],
    ) -> Result<()>;
    /// Per-key summaries of a version's metrics.
    async fn metric_summaries(&self, model: &ModelName, version: i64)
    -> Result<Vec<MetricSummary>>;
    /// The series of a key; `Ok(None)` when the version exists but has no such key.
    async fn find_series(
        &self,
        model: &ModelName,
        version: i64,
        key: &str,
    ) -> Result<Option<SeriesInfo>>;
    /// Downsampled buckets of a series, in bucket order, empty buckets left out.
    async fn read_buckets(&self, series_id: i64, plan: &BucketPlan) -> Result<Vec<BucketRow>>;
    /// Raw points of `from..=to`, streamed in chunks so that long series never sit in memory.
    fn stream_points(&self, series_id: i64, from: i64, to: i64) -> PointStream;

    /// The status of a version, to refuse an upload before reading its body.
    async fn version_status(&self, model: &ModelName, version: i64) -> Result<VersionStatus>;
    /// Records an uploaded artifact: only while the version is pending, once per path.
    async fn add_artifact(
        &self,
        model: &ModelName,
        version: i64,
        artifact: Artifact,
        actor: &Actor,
    ) -> Result<Artifact>;
    async fn list_artifacts(&self, model: &ModelName, version: i64) -> Result<Vec<Artifact>>;
    async fn get_artifact(&self, model: &ModelName, version: i64, path: &str) -> Result<Artifact>;
    /// Removes an artifact's row (only while pending); the caller deletes the object after.
    async fn delete_artifact(
        &self,
        model: &ModelName,
        version: i64,
        path: &str,
        actor: &Actor,
    ) -> Result<Artifact>;
    /// Every object key an artifact row refers to (for `gc`).
    async fn artifact_keys(&self) -> Result<Vec<String>>;

    /// Stores a new token (its hash) and records `token.created`.
    async fn create_token(&self, token: &TokenRecord, actor: &Actor) -> Result<()>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn find_token(&self, id: Uuid) -> Result<Option<TokenRecord>>;
    /// Marks a token revoked (effective at the next request); 404 `token_not_found`.
    async fn revoke_token(&self, id: Uuid, actor: &Actor) -> Result<()>;

    /// Stages that hold a version, by name.
    async fn list_stages(&self, model: &ModelName) -> Result<Vec<StageEntry>>;
    /// What the stage holds now, or held at `at` (from the history).
    async fn get_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        at: Option<Timestamp>,
    ) -> Result<StageEntry>;
    /// Promote, roll back or clear: one transaction with its history event.
    async fn change_stage(
        &self,
        model: &ModelName,
        stage: &StageName,
        req: StageRequest,
        actor: &Actor,
    ) -> Result<StageChange>;
    /// The stage's history, newest first; `before` is the event id of the previous page's last entry.
    async fn stage_history(
        &self,
        model: &ModelName,
        stage: &StageName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Page<HistoryEntry>>;
}

/// Connects to the database named by the URL: `postgres://…` or `sqlite://…`.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, anyhow::Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!("unsupported database URL scheme; use postgres://… or sqlite://…")
    }
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says that more exist.
pub(crate) fn page<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(cursor) } else { None };
    Page { items, next_cursor }
}

/// Maps a unique violation to the given conflict; any other error passes through.
pub(crate) fn on_unique(e: sqlx::Error, conflict: impl FnOnce() -> Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => conflict(),
        _ => e.into(),
    }
}

/// An event to append to the audit log, in the transaction of the change it records.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent<'a> {
    pub action: &'static str,
    pub model_id: Option<Uuid>,
    pub model: Option<&'a str>,
    pub version: Option<i64>,
    pub stage: Option<&'a str>,
    pub details: Value,
    pub at: Timestamp,
}

impl<'a> NewEvent<'a> {
    pub fn model(action: &'static str, model_id: Uuid, model: &'a str, at: Timestamp) -> Self {
        Self {
            action,
            model_id: Some(model_id),
            model: Some(model),
            version: None,
            stage: None,
            details: Value::Object(Map::new()),
            at,
        }
    }

    /// An event about no model (tokens).
    pub fn global(action: &'static str, at: Timestamp, details: Value) -> Self {
        Self {
            action,
            model_id: None,
            model: None,
            version: None,
            stage: None,
            details,
            at,
        }
    }

    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// What a `PUT` changes on an existing model, or `None` when it changes nothing (a retry).
pub(crate) fn put_changes(model: &Model, put: &PutModel) -> Option<(Option<String>, Tags, Value)> {
    let description = put
        .description
        .clone()
        .or_else(|| model.description.clone());
    let tags = put.tags.clone().unwrap_or_else(|| model.tags.clone());
    if description == model.description && tags == model.tags {
        return None;
    }
    let details = serde_json::json!({"description": description, "tags": tags});
    Some((description, tags, details))
}

/// Applies a `PATCH` to description and tags; `None` when it changes nothing.
pub(crate) fn patch_changes(
    description: &Option<String>,
    tags: &Tags,
    patch: &Patch,
) -> Result<Option<(Option<String>, Tags, Value)>> {
    let new_description = match &patch.description {
        Some(d) => d.clone(),
        None => description.clone(),
    };
    let new_tags = tags.merge(&patch.tags)?;
    if &new_description == description && &new_tags == tags {
        return Ok(None);
    }
    let details = serde_json::json!({"description": new_description, "tags": new_tags});
    Ok(Some((new_description, new_tags, details)))
}

/// Whether a stored idempotency key is still honoured.
pub(crate) fn idempotency_cutoff(now: Timestamp) -> Timestamp {
    now - chrono::Duration::hours(IDEMPOTENCY_TTL_HOURS)
}

/// The answer to a request whose `Idempotency-Key` was seen before.
pub(crate) fn idempotent_replay(
    model: &ModelName,
    stored_hash: &str,
    idem: &Idempotency,
    version: i64,
) -> Result<i64> {
    if stored_hash == idem.request_hash {
        Ok(version)
    } else {
        Err(Error::new(
            crate::error::Kind::Unprocessable,
            "idempotency_key_reused",
            format!(
                "Idempotency-Key {:?} was used for another request body on model '{model}' (version {version})",
                idem.key
            ),
        )
        .with_field("Idempotency-Key"))
    }
}
