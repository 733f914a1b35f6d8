//! Webhooks and their delivery log as the API shows them, and what it asks to store.

use crate::domain::access::Glob;
use crate::domain::time::Timestamp;
use serde::Serialize;
use uuid::Uuid;

/// Which webhooks a caller may see: every one, or those a glob-limited token made.
#[derive(Debug, Clone, Copy)]
pub enum WebhookOwner {
    Any,
    Token(Uuid),
}

impl WebhookOwner {
    pub(crate) fn token(self) -> Option<Uuid> {
        match self {
            Self::Any => None,
            Self::Token(id) => Some(id),
        }
    }
}

/// A webhook to store.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<Glob>,
    pub models: Option<Vec<Glob>>,
    pub enabled: bool,
    pub secret: String,
    /// The globs of the glob-limited token that makes it (its deliveries stay within them).
    pub owner_models: Option<Vec<Glob>>,
    pub owner_token_id: Option<Uuid>,
    /// Webhooks the making token may own at once (409 `webhook_limit` past it).
    pub owner_limit: u32,
    pub at: Timestamp,
}

/// A webhook as shown: never its secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    #[sqlx(json)]
    pub events: Vec<String>,
    #[sqlx(json(nullable))]
    pub models: Option<Vec<String>>,
    pub enabled: bool,
    /// Why the server turned it off (the receiver answered 410), if it did.
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs too, after a rotation.
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub previous_secret_until: Option<Timestamp>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    pub created_by: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
}

/// What a `PATCH` changes; fields left out stay.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub events: Option<Vec<Glob>>,
    pub models: Option<Option<Vec<Glob>>>,
    pub enabled: Option<bool>,
}

/// Delivery counts and the last outcomes of one webhook.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryStats {
    pub delivered: i64,
    pub failed: i64,
    pub pending: i64,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub last_success_at: Option<Timestamp>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub last_failure_at: Option<Timestamp>,
}

/// One entry of a webhook's delivery log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub event_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due; `null` once delivered or failed.
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub queued_at: Timestamp,
    #[serde(with = "crate::domain::time::rfc3339::option")]
    pub delivered_at: Option<Timestamp>,
}

/// A page of a delivery log: newest first, optionally one status only.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub status: Option<&'static str>,
    pub before: Option<i64>,
    pub limit: u32,
}
