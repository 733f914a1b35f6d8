//! The store's records as clients see them, and the requests that change them.

use crate::domain::filter::{After, Filter, OrderBy};
use crate::domain::stage::Expected;
use crate::domain::time::Timestamp;
use crate::domain::{Description, ModelName, Reason, TagFilter, Tags, VersionStatus};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

pub use super::metrics::MetricSummary;
pub use crate::domain::access::Actor;
pub use crate::domain::change::Patch;
pub use crate::domain::token::TokenRecord;

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
    /// When an erased version was erased, and by whom (its reason is `status_reason`).
    #[serde(
        with = "crate::domain::time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub erased_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_by: Option<String>,
    /// A ready (or archived) version's digest: `sha256:` of its manifest (the README says
    /// how to compute it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The trusted key of its first verified signature (`…/signatures` has them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The last value of each metric asked for with `?metrics=` on a list (absent: no points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_metrics: Option<BTreeMap<String, f64>>,
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
    /// The person or system holding that token (`null` for events recorded before tokens
    /// had subjects).
    pub subject: Option<String>,
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
    pub description: Option<Description>,
    pub tags: Tags,
}

/// `PUT` semantics: fields given replace the stored ones; fields left out stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PutModel {
    pub description: Option<Description>,
    pub tags: Option<Tags>,
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
    pub description: Option<Description>,
    pub tags: Tags,
    pub config: Map<String, Value>,
    pub source: Map<String, Value>,
    pub finalize: bool,
    /// Artifacts whose objects are already stored, recorded with the version (an MLflow
    /// registration from another model's run carries copies of the run's model files).
    pub artifacts: Vec<Artifact>,
    /// What it was made from, in order (checked by `domain::inputs::to_add`).
    pub inputs: Vec<crate::domain::inputs::Input>,
    /// The version it copies (an MLflow registration of a run's model): recorded as a
    /// `copied_from` input, with the datasets that version used.
    pub copied_from: Option<(ModelName, i64)>,
    /// Its interface schema, when declared.
    pub schema: Option<crate::domain::schema::Schema>,
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
    /// Metric keys whose last values each listed version carries (`?metrics=`).
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EventQuery {
    pub model: Option<String>,
    /// SQL LIKE patterns the model must match one of (a token's model globs).
    pub visible: Option<Vec<String>>,
    pub action: Option<String>,
    pub after: Option<i64>,
    pub limit: u32,
    /// The `limit` newest matching events instead of the oldest (still oldest first).
    pub newest: bool,
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
            description: new.description.map(|d| d.as_str().to_owned()),
            config: raw(&new.config)?,
            source: raw(&new.source)?,
            tags: new.tags,
            status_reason: None,
            created_at: now,
            updated_at: now,
            created_by: actor.name.clone(),
            erased_at: None,
            erased_by: None,
            digest: None,
            signed_by: None,
            last_metrics: None,
        };
        Ok(Self {
            version,
            created: true,
        })
    }
}

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
    /// The checks of the stage's policy, when it has one (a promote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<crate::domain::policy::Check>>,
    /// Promoted past failing checks by an admin.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// The promotion request opened instead of promoting (the stage needs approvals).
    #[serde(skip)]
    pub request: Option<Uuid>,
    /// A promote onto a stage whose guard was holding after a trip: what it held on (the
    /// promote ends the hold; the guard judges the new version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::store::Trip>,
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
    /// The person or system holding the actor's token.
    pub subject: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub at: Timestamp,
    /// The checks of the stage's policy the promote passed (or, forced, failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// The promotion request the promote came from: its id, requester and approvers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
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
            checks: e.details.get("checks").cloned(),
            forced: e.details.get("forced").and_then(Value::as_bool) == Some(true),
            request: e.details.get("request").filter(|r| !r.is_null()).cloned(),
            action: e.action,
            actor: e.actor,
            actor_token_id: e.actor_token_id,
            subject: e.subject,
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
    pub reason: Option<Reason>,
    pub expected: Expected,
    /// Evaluate (a promote: every check of the stage's policy) and change nothing.
    pub dry_run: bool,
    /// Promote past the policy's checks (admin; recorded as forced).
    pub force: bool,
    /// A promote only: how a stage whose policy asks for approvals is treated.
    pub approval: Option<Approval>,
    /// The app's clock: the time the change records and judges (soak, expiry) by.
    pub clock: crate::clock::Clock,
}

/// A promote onto a stage whose policy asks for approvals.
#[derive(Debug, Clone)]
pub enum Approval {
    /// A caller's promote opens a promotion request, which expires after this long.
    Request { ttl: std::time::Duration },
    /// A request's approvals reached its count: promote (the checks evaluated again).
    Granted {
        request_id: Uuid,
        /// The requester's subject.
        requested_by: String,
        /// The approvers' subjects.
        approvers: Vec<String>,
    },
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
    /// What it was made from, in order.
    pub inputs: Vec<crate::domain::inputs::Input>,
    /// What it accepts and answers, when declared.
    pub schema: Option<crate::domain::schema::Schema>,
}

/// Database connections, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

/// How long idempotency keys are honoured, at least.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// What one MLflow `log-batch` writes to a run (see `VersionStore::log_batch`).
#[derive(Debug, Clone, Default)]
pub struct RunBatch {
    /// Params to add to the config.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub tags: crate::domain::TagPatch,
    pub metrics: Vec<crate::domain::metrics::SeriesBatch>,
    /// Points logged against logged models.
    pub logged: Vec<(uuid::Uuid, crate::store::LoggedMetric)>,
}
