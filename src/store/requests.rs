//! Promotion requests: a promote onto a stage whose policy asks for approvals, waiting for
//! them. The request row is locked (Postgres) by each approval, so concurrent approvals are
//! counted one after the other and exactly one of them promotes, in its own transaction, with
//! the policy's checks evaluated again under the stage lock.

use super::request_types::*;
use super::sql::{Conn, Stmt};
use super::{
    Actor, Approval, Backend, NewEvent, SqlStore, StageOp, StageRequest, events, models,
    stage_change,
};
use crate::clock::Clock;
use crate::domain::policy::Check;
use crate::domain::stage::Expected;
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, Reason, StageName};
use crate::error::{Error, Kind, Result};
use async_trait::async_trait;
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// A request to open, from a promote.
pub(crate) struct Open<'a> {
    pub model_id: Uuid,
    pub model: &'a ModelName,
    pub stage: &'a StageName,
    pub version: i64,
    pub expected: Expected,
    pub reason: Option<&'a str>,
    pub needed: i64,
    pub checks: Vec<Check>,
    pub now: Timestamp,
    pub ttl: std::time::Duration,
}

/// Opens a request (in the promote's transaction, under the stage's lock) and records
/// `promotion.requested`; or answers the request for the same stage and candidate that is
/// still pending: one at a time, however often a promote is sent.
pub(crate) async fn open<C: Conn>(conn: &mut C, o: Open<'_>, actor: &Actor) -> Result<Uuid> {
    let pending = Stmt::new(
        "select id from promotion_requests \
          where model_id = $1 and stage = $2 and version = $3 and status = 'pending' \
            and expires_at > $4 \
          order by created_at limit 1",
    )
    .bind(o.model_id)
    .bind(o.stage)
    .bind(o.version)
    .bind(o.now);
    if let Some((id,)) = conn.fetch_optional::<(Uuid,)>(pending).await? {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    let ttl = chrono::Duration::from_std(o.ttl).unwrap_or_else(|_| chrono::Duration::days(7));
    let stmt = Stmt::new(
        "insert into promotion_requests (id, model_id, stage, version, expected_given, \
             expected_version, reason, requested_by, requested_by_token, status, approvals_needed, \
             approvals, checks, created_at, updated_at, expires_at, requested_by_subject) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $13, $14, $15)",
    )
    .bind(id)
    .bind(o.model_id)
    .bind(o.stage)
    .bind(o.version)
    .bind(o.expected.is_some())
    .bind(o.expected.flatten())
    .bind(o.reason)
    .bind(&actor.name)
    .bind(actor.token_id)
    .bind(o.needed)
    .json(&Vec::<Approver>::new())
    .json(&o.checks)
    .bind(o.now)
    .bind(o.now + ttl)
    .bind(&actor.subject);
    conn.execute(stmt).await?;
    let mut event = NewEvent::model("promotion.requested", o.model_id, o.model.as_str(), o.now);
    // The stage is named in the details: an event's `stage` column is for stage changes (the
    // stage's history and its time travel read it).
    event.version = Some(o.version);
    event.details = json!({"request_id": id, "stage": o.stage.as_str(),
                           "approvals_needed": o.needed, "reason": o.reason, "checks": o.checks});
    events::record(conn, event, actor).await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    stage: String,
    version: i64,
    expected_given: bool,
    expected_version: Option<i64>,
    reason: Option<String>,
    requested_by: String,
    requested_by_token: Option<Uuid>,
    requested_by_subject: Option<String>,
    status: String,
    approvals_needed: i64,
    approvals: Json<Vec<Approver>>,
    checks: Json<Vec<Check>>,
    decided_by: Option<String>,
    decision_comment: Option<String>,
    event_id: Option<i64>,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Timestamp,
}

const COLUMNS: &str = "select id, stage, version, expected_given, expected_version, reason, \
    requested_by, requested_by_token, requested_by_subject, status, approvals_needed, approvals, checks, decided_by, \
    decision_comment, event_id, created_at, updated_at, expires_at from promotion_requests";

impl Row {
    /// A pending request past its time is shown, and treated, as expired.
    fn status(&self, now: Timestamp) -> &str {
        if self.status == "pending" && self.expires_at <= now {
            "expired"
        } else {
            &self.status
        }
    }

    fn shown(self, model: &ModelName, now: Timestamp) -> PromotionRequest {
        let status = self.status(now).to_owned();
        let requested_by_subject = self.requester_subject().to_owned();
        PromotionRequest {
            id: self.id,
            model: model.as_str().to_owned(),
            stage: self.stage,
            version: self.version,
            expected_version: self.expected_version,
            reason: self.reason,
            requested_by: self.requested_by,
            requested_by_subject,
            status,
            approvals_needed: self.approvals_needed,
            approvals: self.approvals.0,
            checks: self.checks.0,
            decided_by: self.decided_by,
            decision_comment: self.decision_comment,
            event_id: self.event_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        }
    }

    fn requester_subject(&self) -> &str {
        self.requested_by_subject
            .as_deref()
            .unwrap_or(&self.requested_by)
    }

    /// Whether `actor` is the person who asked (with this token or another of theirs).
    fn asked_by(&self, actor: &Actor) -> bool {
        same_person(self.requester_subject(), actor)
    }
}

/// Ends a pending request as rejected or cancelled (by `actor`), with its event.
async fn close<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    model_id: Uuid,
    r: &mut Row,
    status: &'static str,
    now: Timestamp,
    actor: &Actor,
) -> Result<()> {
    r.status = status.into();
    r.decided_by = Some(actor.name.clone());
    save(conn, r, now).await?;
    let action = if status == "cancelled" {
        "promotion.cancelled"
    } else {
        "promotion.rejected"
    };
    record(conn, action, model_id, model, r, now, actor).await
}

fn not_found(id: Uuid) -> Error {
    Error::not_found(
        "request_not_found",
        format!("no promotion request {id} for this model"),
    )
}

async fn find<C: Conn>(conn: &mut C, model_id: Uuid, id: Uuid, lock: bool) -> Result<Row> {
    let lock = if lock && C::ROW_LOCKS {
        " for update"
    } else {
        ""
    };
    let stmt = Stmt::new(format!("{COLUMNS} where id = $1 and model_id = $2{lock}"))
        .bind(id)
        .bind(model_id);
    conn.fetch_optional(stmt)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Writes a request's new state.
async fn save<C: Conn>(conn: &mut C, r: &Row, now: Timestamp) -> Result<()> {
    let stmt = Stmt::new(
        "update promotion_requests set status = $2, approvals = $3, checks = $4, \
             decided_by = $5, decision_comment = $6, event_id = $7, updated_at = $8 \
         where id = $1",
    )
    .bind(r.id)
    .bind(r.status.as_str())
    .json(&r.approvals.0)
    .json(&r.checks.0)
    .bind(r.decided_by.clone())
    .bind(r.decision_comment.clone())
    .bind(r.event_id)
    .bind(now);
    conn.execute(stmt).await?;
    Ok(())
}

async fn record<C: Conn>(
    conn: &mut C,
    action: &'static str,
    model_id: Uuid,
    model: &ModelName,
    r: &Row,
    now: Timestamp,
    actor: &Actor,
) -> Result<()> {
    let mut event = NewEvent::model(action, model_id, model.as_str(), now);
    event.version = Some(r.version);
    event.details = json!({
        "request_id": r.id,
        "stage": r.stage,
        "approvals": r.approvals.0.iter().map(|a| &a.actor).collect::<Vec<_>>(),
        "approvers": r.approvals.0.iter()
            .map(|a| a.subject.as_deref().unwrap_or(&a.actor))
            .collect::<Vec<_>>(),
        "requested_by_subject": r.requester_subject(),
        "approvals_needed": r.approvals_needed,
        "comment": r.decision_comment,
        "checks": r.checks.0,
    });
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn decide<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    id: Uuid,
    decision: Decision,
    comment: Option<&str>,
    actor: &Actor,
    clock: &Clock,
) -> Result<PromotionRequest> {
    let m = models::row(conn, model, false).await?;
    let mut r = find(conn, m.id, id, true).await?;
    let now = clock.now();
    let status = r.status(now).to_owned();
    if status != "pending" {
        return Err(Error::conflict(
            "request_not_pending",
            format!("promotion request {id} is {status}; only a pending one can be decided"),
        ));
    }
    match decision {
        Decision::Cancel => {
            if !r.asked_by(actor) {
                return Err(Error::new(
                    Kind::Forbidden,
                    "not_requester",
                    "only the requester may cancel a promotion request",
                ));
            }
            r.decision_comment = comment.map(str::to_owned);
            close(conn, model, m.id, &mut r, "cancelled", now, actor).await?;
        }
        Decision::Reject => {
            r.decision_comment = comment.map(str::to_owned);
            close(conn, model, m.id, &mut r, "rejected", now, actor).await?;
        }
        Decision::Approve => {
            if r.asked_by(actor) {
                return Err(Error::new(
                    Kind::Forbidden,
                    "self_approval",
                    "a promotion request needs approvals by others than its requester \
                     (the same person with another token included)",
                ));
            }
            let again = r
                .approvals
                .0
                .iter()
                .any(|a| same_person(a.subject.as_deref().unwrap_or(&a.actor), actor));
            if !again {
                r.approvals.0.push(Approver {
                    actor: actor.name.clone(),
                    token_id: actor.token_id,
                    subject: Some(actor.subject.clone()),
                    comment: comment.map(str::to_owned),
                    at: now,
                });
            }
            if (r.approvals.0.len() as i64) < r.approvals_needed {
                save(conn, &r, now).await?;
                if !again {
                    record(conn, "promotion.approved", m.id, model, &r, now, actor).await?;
                }
            } else {
                grant(conn, model, m.id, &mut r, now, actor, clock).await?;
            }
        }
    }
    let r = find(conn, m.id, id, false).await?;
    Ok(r.shown(model, now))
}

/// The approval that reaches the count: promote now, under the stage lock with the checks
/// evaluated again; a candidate that no longer passes (a check, archived, the stage moved
/// away from `expected_version`) rejects the request with what failed.
async fn grant<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    model_id: Uuid,
    r: &mut Row,
    now: Timestamp,
    actor: &Actor,
    clock: &Clock,
) -> Result<()> {
    let stage = StageName::parse("stage", &r.stage)?;
    let req = StageRequest {
        op: StageOp::Promote { version: r.version },
        reason: Reason::parse_opt("reason", r.reason.clone())?,
        expected: r.expected_given.then_some(r.expected_version),
        dry_run: false,
        force: false,
        approval: Some(Approval::Granted {
            request_id: r.id,
            requested_by: r.requester_subject().to_owned(),
            approvers: r
                .approvals
                .0
                .iter()
                .map(|a| a.subject.clone().unwrap_or_else(|| a.actor.clone()))
                .collect(),
        }),
        clock: clock.clone(),
    };
    // The promote is the requester's, approved: its history names both.
    let requester = Actor {
        name: r.requested_by.clone(),
        token_id: r.requested_by_token,
        subject: r.requester_subject().to_owned(),
    };
    match stage_change::apply(conn, model, &stage, req, &requester).await {
        Ok(change) => {
            r.status = "approved".into();
            r.decided_by = Some(actor.name.clone());
            r.event_id = change.event_id;
            if let Some(checks) = change.checks {
                r.checks = Json(checks);
            }
            save(conn, r, now).await?;
            record(conn, "promotion.approved", model_id, model, r, now, actor).await
        }
        Err(e) if e.kind == Kind::Conflict => {
            r.checks = Json(match e.checks {
                Some(checks) => *checks,
                None => vec![Check {
                    check: e.code.to_owned(),
                    ok: false,
                    detail: e.detail,
                    expected: None,
                    observed: None,
                }],
            });
            r.decision_comment = Some("the checks failed at the final approval".into());
            close(conn, model, model_id, r, "rejected", now, actor).await
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl<B: Backend> PromotionStore for SqlStore<B> {
    async fn list_requests(
        &self,
        model: &ModelName,
        status: Option<&str>,
        limit: u32,
        clock: &Clock,
    ) -> Result<Vec<PromotionRequest>> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        let now = clock.now();
        // A pending request past its time is expired: the status column alone cannot say.
        let which = match status {
            None => "true",
            Some("pending") => "status = 'pending' and expires_at > $3",
            Some("expired") => "status = 'pending' and expires_at <= $3",
            Some(_) => "status = $4",
        };
        let stmt = Stmt::new(format!(
            "{COLUMNS} where model_id = $1 and {which} \
             order by created_at desc, id desc limit $2"
        ))
        .bind(m.id)
        .bind(i64::from(limit))
        .bind(now)
        .bind(status.unwrap_or(""));
        let rows: Vec<Row> = conn.fetch_all(stmt).await?;
        Ok(rows.into_iter().map(|r| r.shown(model, now)).collect())
    }

    async fn get_request(
        &self,
        model: &ModelName,
        id: Uuid,
        clock: &Clock,
    ) -> Result<PromotionRequest> {
        let mut conn = self.db.read().await?;
        let m = models::row(&mut *conn, model, false).await?;
        Ok(find(&mut *conn, m.id, id, false)
            .await?
            .shown(model, clock.now()))
    }

    async fn decide_request(
        &self,
        model: &ModelName,
        id: Uuid,
        decision: Decision,
        comment: Option<&str>,
        actor: &Actor,
        clock: &Clock,
    ) -> Result<PromotionRequest> {
        transaction!(self.db, |c| decide(
            c, model, id, decision, comment, actor, clock
        ))
    }
}
