//! Row shapes shared by both backends and their conversion to API types.
//!
//! Both backends return the same column names and types: JSON columns decode through
//! `sqlx::types::Json` (jsonb on Postgres, text on SQLite) and timestamps through chrono
//! (timestamptz on Postgres, fixed-width RFC 3339 text on SQLite).

use super::{Event, Model, Version};
use crate::domain::Description;
use crate::domain::change::Described;
use crate::domain::time::Timestamp;
use crate::domain::{Tags, VersionStatus};
use crate::error::Result;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub(crate) struct ModelRow {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tags: Json<BTreeMap<String, String>>,
    pub last_version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
}

impl ModelRow {
    pub fn described(&self) -> Described {
        Described {
            description: self.description.clone().map(Description::from_stored),
            tags: Tags::from_stored(self.tags.0.clone()),
        }
    }

    pub fn into_model(self, stages: BTreeMap<String, i64>) -> Model {
        Model {
            id: self.id,
            name: self.name,
            description: self.description,
            tags: Tags::from_stored(self.tags.0),
            latest_version: (self.last_version > 0).then_some(self.last_version),
            stages,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    pub id: Uuid,
    pub model: String,
    pub version: i64,
    pub status: String,
    pub description: Option<String>,
    pub config: Json<Box<RawValue>>,
    pub source: Json<Box<RawValue>>,
    pub tags: Json<BTreeMap<String, String>>,
    pub status_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
    pub erased_at: Option<Timestamp>,
    pub erased_by: Option<String>,
    pub digest: Option<String>,
    pub signed_by: Option<String>,
}

/// A row of the version list: the version and the value it is sorted by (a metric's last
/// value; null for other orders and for versions without the metric).
#[derive(sqlx::FromRow)]
pub(crate) struct ListedVersionRow {
    #[sqlx(flatten)]
    pub row: VersionRow,
    pub sort_value: Option<f64>,
}

impl VersionRow {
    pub fn described(&self) -> Described {
        Described {
            description: self.description.clone().map(Description::from_stored),
            tags: Tags::from_stored(self.tags.0.clone()),
        }
    }

    pub fn into_version(self) -> Result<Version> {
        Ok(Version {
            id: self.id,
            model: self.model,
            version: self.version,
            status: VersionStatus::from_stored(&self.status)?,
            description: self.description,
            config: self.config.0,
            source: self.source.0,
            tags: Tags::from_stored(self.tags.0),
            status_reason: self.status_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            erased_at: self.erased_at,
            erased_by: self.erased_by,
            digest: self.digest,
            signed_by: self.signed_by,
            last_metrics: None,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub id: i64,
    pub action: String,
    pub model: Option<String>,
    pub version: Option<i64>,
    pub stage: Option<String>,
    pub actor: String,
    pub actor_token_id: Option<Uuid>,
    pub actor_subject: Option<String>,
    pub at: Timestamp,
    pub details: Json<Value>,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            event_id: r.id,
            action: r.action,
            model: r.model,
            version: r.version,
            stage: r.stage,
            actor: r.actor,
            actor_token_id: r.actor_token_id,
            subject: r.actor_subject,
            at: r.at,
            details: r.details.0,
        }
    }
}

/// Fingerprint of a stored idempotency key.
#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub request_hash: String,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Json<Vec<crate::domain::access::Scope>>,
    pub models: Option<Json<Vec<String>>>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub subject: String,
}

impl From<TokenRow> for super::TokenRecord {
    fn from(r: TokenRow) -> Self {
        super::TokenRecord {
            id: r.id,
            name: r.name,
            secret_hash: r.secret_hash,
            scopes: r.scopes.0,
            models: r.models.map(|m| {
                m.0.into_iter()
                    .map(crate::domain::access::Glob::from_stored)
                    .collect()
            }),
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            created_by: r.created_by,
            subject: r.subject,
        }
    }
}
