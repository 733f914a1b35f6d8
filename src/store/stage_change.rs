//! One promote, rollback or clear, written once for both backends; the stage's row lock
//! (Postgres) or the database's write lock (SQLite) serializes changes to one stage.
//!
//! Order of checks, under the lock: the model exists; `expected_version` matches (before
//! anything else, so a stale caller always gets 409); then the operation's own rules, decided
//! by `domain::stage` from what was read under the lock.

use super::policies::{self, Candidate};
use super::sql::{Conn, Stmt};
use super::{Actor, Approval, NewEvent, StageChange, StageOp, StageRequest, events, requests};
use crate::clock::Clock;
use crate::domain::VersionStatus;
use crate::domain::stage::{self, Evaluated, Held, PromoteAsk, PromoteDecision, check_expected};
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName};
use crate::error::{Error, Result};
use serde_json::json;
use uuid::Uuid;

/// The locked stage row. Locking creates the row on first use of a stage name.
pub(crate) struct StageLock {
    pub model_id: Uuid,
    pub version: Option<i64>,
    pub depth: i64,
    pub event_id: Option<i64>,
    pub since: Option<Timestamp>,
    /// The time to record, taken after the lock so that one stage's history is in time order.
    pub now: Timestamp,
}

/// Everything one stage change writes.
pub(crate) struct StageWrite<'a> {
    pub model_id: Uuid,
    pub stage: &'a StageName,
    /// Stack entries above this position are removed first (rollback, clear).
    pub keep: Option<i64>,
    /// A new top entry `(position, version)` (promote).
    pub push: Option<(i64, i64)>,
    /// The stage's new version and stack depth.
    pub version: Option<i64>,
    pub depth: i64,
    pub event: NewEvent<'a>,
}

#[derive(sqlx::FromRow)]
struct LockRow {
    model_id: Uuid,
    version: Option<i64>,
    depth: i64,
    event_id: Option<i64>,
    since: Option<Timestamp>,
    now: Timestamp,
}

/// Locks (creating if needed) the stage's row and reads the clock after the lock; `None`
/// when the model does not exist. The upsert takes the row lock whether or not the row
/// existed, so concurrent changes to one stage queue here across every server process (on
/// SQLite the transaction holds the database's write lock already).
async fn lock<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    stage: &StageName,
    app_clock: &Clock,
) -> Result<Option<StageLock>> {
    let clock = C::clock("$3", app_clock.is_manual());
    let sql = format!(
        "insert into stages (model_id, name, depth, updated_at) \
         select id, $2, 0, {clock} from models where name = $1 \
         on conflict (model_id, name) do update set updated_at = stages.updated_at \
         returning model_id, version, depth, event_id, since, {clock} as now"
    );
    let stmt = Stmt::new(sql).bind(model).bind(stage).bind(app_clock.now());
    let row: Option<LockRow> = conn.fetch_optional(stmt).await?;
    Ok(row.map(|r| StageLock {
        model_id: r.model_id,
        version: r.version,
        depth: r.depth,
        event_id: r.event_id,
        since: r.since,
        now: r.now,
    }))
}

/// The status of a version, locked against concurrent archiving until commit.
async fn version_status<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    version: i64,
) -> Result<Option<String>> {
    let sql = if C::ROW_LOCKS {
        "select status from versions where model_id = $1 and version = $2 for share"
    } else {
        "select status from versions where model_id = $1 and version = $2"
    };
    let row: Option<(String,)> = conn
        .fetch_optional(Stmt::new(sql).bind(model_id).bind(version))
        .await?;
    Ok(row.map(|(s,)| s))
}

/// The highest stack entry below `depth` (holding `to` when given): `(position, version)`.
async fn entry_below<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    stage: &StageName,
    depth: i64,
    to: Option<i64>,
) -> Result<Option<(i64, i64)>> {
    let stmt = Stmt::new(
        "select position, version from stage_stack \
         where model_id = $1 and stage = $2 and position < $3 \
           and (cast($4 as bigint) is null or version = $4) \
         order by position desc limit 1",
    )
    .bind(model_id)
    .bind(stage)
    .bind(depth)
    .bind(to);
    conn.fetch_optional(stmt).await
}

/// The portable stage write: trim, push, record, move the pointer.
pub(crate) async fn write_change<C: Conn>(
    conn: &mut C,
    w: StageWrite<'_>,
    actor: &Actor,
) -> Result<i64> {
    if let Some(keep) = w.keep {
        let trim = Stmt::new(
            "delete from stage_stack where model_id = $1 and stage = $2 and position > $3",
        )
        .bind(w.model_id)
        .bind(w.stage)
        .bind(keep);
        conn.execute(trim).await?;
    }
    if let Some((position, version)) = w.push {
        let push = Stmt::new(
            "insert into stage_stack (model_id, stage, position, version) values ($1, $2, $3, $4)",
        )
        .bind(w.model_id)
        .bind(w.stage)
        .bind(position)
        .bind(version);
        conn.execute(push).await?;
    }
    let at = w.event.at;
    let event_id = events::record(conn, w.event, actor).await?;
    let point = Stmt::new(
        "update stages set version = $3, depth = $4, event_id = $5, since = $6, updated_at = $6 \
         where model_id = $1 and name = $2",
    )
    .bind(w.model_id)
    .bind(w.stage)
    .bind(w.version)
    .bind(w.depth)
    .bind(event_id)
    .bind(at);
    conn.execute(point).await?;
    Ok(event_id)
}

/// The status of a version as the domain reads it (`None`: no such version).
async fn status_of<C: Conn>(
    tx: &mut C,
    model_id: Uuid,
    version: i64,
) -> Result<Option<VersionStatus>> {
    version_status(tx, model_id, version)
        .await?
        .map(|s| VersionStatus::from_stored(&s))
        .transpose()
}

/// The answer to a change that writes nothing.
fn unchanged(stage: &StageName, version: Option<i64>, lock: &StageLock) -> StageChange {
    StageChange {
        stage: stage.as_str().to_owned(),
        version,
        previous_version: version,
        event_id: lock.event_id,
        at: lock.since.unwrap_or(lock.now),
        checks: None,
        forced: false,
        request: None,
        guard: None,
    }
}

/// What one change writes, as decided.
struct Decided {
    action: &'static str,
    to: Option<i64>,
    depth: i64,
    keep: Option<i64>,
    push: Option<(i64, i64)>,
    checks: Option<Vec<crate::domain::policy::Check>>,
    forced: bool,
    granted: Option<serde_json::Value>,
}

/// Applies one promote, rollback or clear: lock the stage, read what the operation needs,
/// let the domain decide (`domain::stage`), write what it decided. The caller commits the
/// transaction when this returns Ok (also for no-ops: the lock may have created the stage
/// row).
pub(crate) async fn apply<C: Conn>(
    tx: &mut C,
    model: &ModelName,
    stage: &StageName,
    req: StageRequest,
    actor: &Actor,
) -> Result<StageChange> {
    let lock = lock(tx, model, stage, &req.clock)
        .await?
        .ok_or_else(|| Error::model_not_found(model.as_str()))?;
    check_expected(stage.as_str(), lock.version, req.expected)?;
    let held = Held {
        version: lock.version,
        depth: lock.depth,
    };
    let decided = match req.op {
        StageOp::Promote { version } => {
            let status = status_of(tx, lock.model_id, version).await?;
            if !stage::promote_target(model.as_str(), held, version, status)? {
                // Already there: record nothing, answer with the assignment in force.
                return Ok(unchanged(stage, Some(version), &lock));
            }
            let candidate = Candidate {
                model_id: lock.model_id,
                model,
                stage,
                version,
                holder: lock.version,
                now: lock.now,
            };
            let evaluated = policies::evaluate(tx, &candidate)
                .await?
                .map(|e| Evaluated {
                    checks: e.checks,
                    approvals: e.approvals,
                });
            let ask = PromoteAsk {
                dry_run: req.dry_run,
                force: req.force,
                opens_request: matches!(req.approval, Some(Approval::Request { .. })),
            };
            match stage::decide_promote(stage.as_str(), held, ask, evaluated)? {
                PromoteDecision::DryRun { checks } => {
                    return Ok(StageChange {
                        stage: stage.as_str().to_owned(),
                        version: Some(version),
                        previous_version: lock.version,
                        event_id: None,
                        at: lock.now,
                        checks,
                        forced: false,
                        request: None,
                        guard: None,
                    });
                }
                PromoteDecision::OpenRequest { approvals, checks } => {
                    let ttl = match &req.approval {
                        Some(Approval::Request { ttl }) => *ttl,
                        _ => return Err(Error::internal("a request opened without a ttl")),
                    };
                    let open = requests::Open {
                        model_id: lock.model_id,
                        model,
                        stage,
                        version,
                        expected: req.expected,
                        reason: req.reason.as_ref().map(|r| r.as_str()),
                        needed: approvals,
                        checks: checks.clone(),
                        now: lock.now,
                        ttl,
                    };
                    let id = requests::open(tx, open, actor).await?;
                    return Ok(StageChange {
                        stage: stage.as_str().to_owned(),
                        version: lock.version,
                        previous_version: lock.version,
                        event_id: None,
                        at: lock.now,
                        checks: Some(checks),
                        forced: false,
                        request: Some(id),
                        guard: None,
                    });
                }
                PromoteDecision::Push {
                    position,
                    checks,
                    forced,
                } => Decided {
                    action: "stage.promoted",
                    to: Some(version),
                    depth: position,
                    keep: None,
                    push: Some((position, version)),
                    checks,
                    forced,
                    granted: match &req.approval {
                        Some(Approval::Granted {
                            request_id,
                            requested_by,
                            approvers,
                        }) => Some(json!({
                            "request_id": request_id,
                            "requested_by": requested_by,
                            "approvers": approvers,
                        })),
                        _ => None,
                    },
                },
            }
        }
        StageOp::Rollback { to } => {
            let entry = if held.depth < 2 {
                None
            } else {
                entry_below(tx, lock.model_id, stage, lock.depth, to).await?
            };
            let status = match entry {
                Some((_, v)) => status_of(tx, lock.model_id, v).await?,
                None => None,
            };
            let (position, target) =
                stage::decide_rollback(model.as_str(), stage.as_str(), held, to, entry, status)?;
            Decided {
                action: "stage.rolled_back",
                to: Some(target),
                depth: position,
                keep: Some(position),
                push: None,
                checks: None,
                forced: false,
                granted: None,
            }
        }
        StageOp::Clear => {
            if !stage::clear_changes(held) {
                return Ok(StageChange {
                    event_id: None,
                    at: lock.now,
                    ..unchanged(stage, None, &lock)
                });
            }
            Decided {
                action: "stage.cleared",
                to: None,
                depth: 0,
                keep: Some(0),
                push: None,
                checks: None,
                forced: false,
                granted: None,
            }
        }
    };
    let Decided {
        action,
        to,
        depth,
        keep,
        push,
        checks,
        forced,
        granted,
    } = decided;
    let event = NewEvent {
        action,
        model_id: Some(lock.model_id),
        model: Some(model.as_str()),
        version: to,
        stage: Some(stage.as_str()),
        details: if checks.is_some() || forced || granted.is_some() {
            json!({"from_version": lock.version, "to_version": to, "reason": req.reason,
                   "checks": checks, "forced": forced, "request": granted})
        } else {
            json!({"from_version": lock.version, "to_version": to, "reason": req.reason})
        },
        at: lock.now,
    };
    let write = StageWrite {
        model_id: lock.model_id,
        stage,
        keep,
        push,
        version: to,
        depth,
        event,
    };
    let guard = if action == "stage.promoted" {
        super::guards::held_by_trip(tx, lock.model_id, stage, lock.event_id).await?
    } else {
        None
    };
    let event_id = tx.write_stage_change(write, actor).await?;
    Ok(StageChange {
        stage: stage.as_str().to_owned(),
        version: to,
        previous_version: lock.version,
        event_id: Some(event_id),
        at: lock.now,
        checks,
        forced,
        request: None,
        guard,
    })
}
