//! One promote, rollback or clear, written once for both backends; the stage's row lock
//! (Postgres) or the database's write lock (SQLite) serializes changes to one stage.
//!
//! Order of checks, under the lock: the model exists; `expected_version` matches (before
//! anything else, so a stale caller always gets 409); then the operation's own rules.

use super::policies::{self, Candidate};
use super::sql::{Conn, Stmt};
use super::{Actor, Approval, NewEvent, StageChange, StageOp, StageRequest, events, requests};
use crate::domain::stage::{
    check_expected, not_in_history, nothing_to_roll_back, version_not_ready,
};
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
) -> Result<Option<StageLock>> {
    let clock = C::CLOCK;
    let sql = format!(
        "insert into stages (model_id, name, depth, updated_at) \
         select id, $2, 0, {clock} from models where name = $1 \
         on conflict (model_id, name) do update set updated_at = stages.updated_at \
         returning model_id, version, depth, event_id, since, {clock} as now"
    );
    let stmt = Stmt::new(sql)
        .bind(model)
        .bind(stage)
        .bind(crate::domain::time::now());
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

async fn ready_version<C: Conn>(
    tx: &mut C,
    model: &ModelName,
    model_id: Uuid,
    version: i64,
) -> Result<()> {
    match version_status(tx, model_id, version).await?.as_deref() {
        None => Err(Error::version_not_found(model.as_str(), version).with_field("version")),
        Some("ready") => Ok(()),
        Some(status) => Err(version_not_ready(version, status)),
    }
}

/// Applies one promote, rollback or clear. The caller commits the transaction when this
/// returns Ok (also for no-ops: the lock may have created the stage row).
pub(crate) async fn apply<C: Conn>(
    tx: &mut C,
    model: &ModelName,
    stage: &StageName,
    req: StageRequest,
    actor: &Actor,
) -> Result<StageChange> {
    let lock = lock(tx, model, stage)
        .await?
        .ok_or_else(|| Error::model_not_found(model.as_str()))?;
    check_expected(stage.as_str(), lock.version, req.expected)?;
    let mut checks = None;
    let mut forced = false;
    let mut granted = None;
    let (action, to, depth, keep, push) = match req.op {
        StageOp::Promote { version } => {
            ready_version(tx, model, lock.model_id, version).await?;
            if lock.version == Some(version) {
                // Already there: record nothing, answer with the assignment in force.
                return Ok(StageChange {
                    stage: stage.as_str().to_owned(),
                    version: Some(version),
                    previous_version: Some(version),
                    event_id: lock.event_id,
                    at: lock.since.unwrap_or(lock.now),
                    checks: None,
                    forced: false,
                    request: None,
                });
            }
            let candidate = Candidate {
                model_id: lock.model_id,
                stage,
                version,
                holder: lock.version,
                now: lock.now,
            };
            let evaluation = policies::evaluate(tx, &candidate).await?;
            let needed = evaluation.as_ref().map_or(0, |e| e.approvals);
            checks = evaluation.map(|e| e.checks);
            let passed = checks.iter().flatten().all(|c| c.ok);
            let asks = needed > 0 && !req.force;
            if req.dry_run {
                let mut checks = checks;
                if asks {
                    checks.get_or_insert_default().push(approvals_check(needed));
                }
                return Ok(StageChange {
                    stage: stage.as_str().to_owned(),
                    version: Some(version),
                    previous_version: lock.version,
                    event_id: None,
                    at: lock.now,
                    checks,
                    forced: false,
                    request: None,
                });
            }
            if !passed {
                if !req.force {
                    return Err(Error::policy_violation(
                        stage.as_str(),
                        checks.unwrap_or_default(),
                    ));
                }
                forced = true;
            }
            if asks && let Some(Approval::Request { ttl }) = &req.approval {
                let open = requests::Open {
                    model_id: lock.model_id,
                    model,
                    stage,
                    version,
                    expected: req.expected,
                    reason: req.reason.as_ref().map(|r| r.as_str()),
                    needed,
                    checks: checks.clone().unwrap_or_default(),
                    now: lock.now,
                    ttl: *ttl,
                };
                let id = requests::open(tx, open, actor).await?;
                return Ok(StageChange {
                    stage: stage.as_str().to_owned(),
                    version: lock.version,
                    previous_version: lock.version,
                    event_id: None,
                    at: lock.now,
                    checks,
                    forced: false,
                    request: Some(id),
                });
            }
            if let Some(Approval::Granted {
                request_id,
                requested_by,
                approvers,
            }) = &req.approval
            {
                granted = Some(json!({
                    "request_id": request_id,
                    "requested_by": requested_by,
                    "approvers": approvers,
                }));
            }
            (
                "stage.promoted",
                Some(version),
                lock.depth + 1,
                None,
                Some((lock.depth + 1, version)),
            )
        }
        StageOp::Rollback { to } => {
            if lock.depth < 2 {
                return Err(nothing_to_roll_back(stage.as_str()));
            }
            let (position, target) =
                match entry_below(tx, lock.model_id, stage, lock.depth, to).await? {
                    Some(entry) => entry,
                    None => {
                        return Err(match to {
                            Some(v) => not_in_history(stage.as_str(), v),
                            None => nothing_to_roll_back(stage.as_str()),
                        });
                    }
                };
            ready_version(tx, model, lock.model_id, target).await?;
            (
                "stage.rolled_back",
                Some(target),
                position,
                Some(position),
                None,
            )
        }
        StageOp::Clear => {
            if lock.version.is_none() && lock.depth == 0 {
                return Ok(StageChange {
                    stage: stage.as_str().to_owned(),
                    version: None,
                    previous_version: None,
                    event_id: None,
                    at: lock.now,
                    checks: None,
                    forced: false,
                    request: None,
                });
            }
            ("stage.cleared", None, 0, Some(0), None)
        }
    };
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
    })
}

/// The approvals a policy asks for, as a check a dry run shows (a promote would open a
/// request).
fn approvals_check(needed: i64) -> crate::domain::policy::Check {
    crate::domain::policy::Check {
        check: "approvals".into(),
        ok: false,
        detail: format!("{needed} approvals needed: a promote opens a promotion request"),
        expected: Some(json!(needed)),
        observed: Some(json!(0)),
    }
}
