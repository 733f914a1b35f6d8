//! Stage changes, written once for both backends over [`StageTx`], the handful of statements
//! each backend provides inside its transaction.
//!
//! Order of checks, under the stage's row lock: the model exists; `expected_version` matches
//! (before anything else, so a stale caller always gets 409); then the operation's own rules.

use super::{Actor, NewEvent, StageChange, StageOp, StageRequest};
use crate::domain::stage::{
    check_expected, not_in_history, nothing_to_roll_back, version_not_ready,
};
use crate::domain::time::Timestamp;
use crate::domain::{ModelName, StageName};
use crate::error::{Error, Result};
use async_trait::async_trait;
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

#[async_trait]
pub(crate) trait StageTx: Send {
    /// Locks (creating if needed) the stage row; `None` when the model does not exist.
    async fn lock_stage(
        &mut self,
        model: &ModelName,
        stage: &StageName,
    ) -> Result<Option<StageLock>>;
    /// The status of a version, locked against concurrent archiving until commit.
    async fn version_status(&mut self, model_id: Uuid, version: i64) -> Result<Option<String>>;
    /// The highest stack entry below `depth` (holding `to` when given): `(position, version)`.
    async fn entry_below(
        &mut self,
        model_id: Uuid,
        stage: &StageName,
        depth: i64,
        to: Option<i64>,
    ) -> Result<Option<(i64, i64)>>;
    /// Writes a change: trims the stack, pushes onto it, records the event and moves the
    /// pointer; returns the event id.
    async fn write_change(&mut self, change: StageWrite<'_>, actor: &Actor) -> Result<i64>;
}

async fn ready_version<T: StageTx>(
    tx: &mut T,
    model: &ModelName,
    model_id: Uuid,
    version: i64,
) -> Result<()> {
    match tx.version_status(model_id, version).await?.as_deref() {
        None => Err(Error::version_not_found(model.as_str(), version).with_field("version")),
        Some("ready") => Ok(()),
        Some(status) => Err(version_not_ready(version, status)),
    }
}

/// Applies one promote, rollback or clear. The caller commits the transaction when this
/// returns Ok (also for no-ops: the lock may have created the stage row).
pub(crate) async fn change_stage<T: StageTx>(
    tx: &mut T,
    model: &ModelName,
    stage: &StageName,
    req: StageRequest,
    actor: &Actor,
) -> Result<StageChange> {
    let lock = tx
        .lock_stage(model, stage)
        .await?
        .ok_or_else(|| Error::model_not_found(model.as_str()))?;
    check_expected(stage.as_str(), lock.version, req.expected)?;
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
                });
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
                match tx.entry_below(lock.model_id, stage, lock.depth, to).await? {
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
        details: json!({"from_version": lock.version, "to_version": to, "reason": req.reason}),
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
    let event_id = tx.write_change(write, actor).await?;
    Ok(StageChange {
        stage: stage.as_str().to_owned(),
        version: to,
        previous_version: lock.version,
        event_id: Some(event_id),
        at: lock.now,
    })
}

/// Refuses to archive a version that a stage points at.
pub(crate) fn in_stage_error(version: i64, stages: &[String]) -> Error {
    Error::conflict(
        "version_in_stage",
        format!(
            "version {version} is on stage {}; promote another version or clear the stage first",
            stages.join(", ")
        ),
    )
}
