//! Promotion requests as the API shows them, and the store's trait (see [`super::requests`]).

use crate::clock::Clock;
use crate::domain::ModelName;
use crate::domain::policy::Check;
use crate::domain::time::Timestamp;
use crate::error::Result;
use crate::store::Actor;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One approval of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approver {
    pub actor: String,
    #[serde(default)]
    pub token_id: Option<Uuid>,
    /// Who holds the approving token (approvals count distinct subjects). Approvals recorded
    /// before tokens had subjects have none: their actor name stands for it.
    #[serde(default)]
    pub subject: Option<String>,
    pub comment: Option<String>,
    #[serde(serialize_with = "crate::domain::time::rfc3339::serialize")]
    pub at: Timestamp,
}

/// A promotion request as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionRequest {
    pub id: Uuid,
    pub model: String,
    pub stage: String,
    pub version: i64,
    pub expected_version: Option<i64>,
    pub reason: Option<String>,
    pub requested_by: String,
    /// The person or system holding the requester's token.
    pub requested_by_subject: String,
    /// pending, approved, rejected, cancelled or expired.
    pub status: String,
    pub approvals_needed: i64,
    pub approvals: Vec<Approver>,
    /// The checks of the last evaluation (at the request, then at the final approval).
    pub checks: Vec<Check>,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    /// The stage change the final approval made.
    pub event_id: Option<i64>,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "crate::domain::time::rfc3339")]
    pub expires_at: Timestamp,
}

/// What a caller does to a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    Cancel,
}

#[async_trait]
pub trait PromotionStore {
    /// The model's requests, newest first (at most `limit`), of one status if given.
    /// A request past its time is shown expired by the app's clock.
    async fn list_requests(
        &self,
        model: &ModelName,
        status: Option<&str>,
        limit: u32,
        clock: &Clock,
    ) -> Result<Vec<PromotionRequest>>;
    async fn get_request(
        &self,
        model: &ModelName,
        id: Uuid,
        clock: &Clock,
    ) -> Result<PromotionRequest>;
    /// Approves, rejects or cancels a pending request; an approval that reaches the count
    /// promotes (or, the checks failing now, rejects the request with them).
    async fn decide_request(
        &self,
        model: &ModelName,
        id: Uuid,
        decision: Decision,
        comment: Option<&str>,
        actor: &Actor,
        clock: &Clock,
    ) -> Result<PromotionRequest>;
}

/// Whether `actor` is the person recorded as `subject`: people hold several tokens, so the
/// two-person rule is decided by subject, never by token.
pub(super) fn same_person(subject: &str, actor: &Actor) -> bool {
    actor.same_subject(subject)
}
