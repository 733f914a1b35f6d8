//! Stage rules: the optimistic-concurrency check, what a promote, rollback or clear decides
//! from the stage as locked and the facts read under the lock, and the stack that promote
//! pushes onto and rollback pops from.
//!
//! The store locks the stage, reads, calls the decision here, and writes what it says;
//! [`StageStack`] is the reference model of the same semantics, used by tests to replay the
//! history.

use super::policy::Check;
use super::version::VersionStatus;
use crate::error::Error;

/// `expected_version` as sent: absent (no check), `null` (expect empty), or a number.
pub type Expected = Option<Option<i64>>;

/// Refuses the change when the caller's idea of the current version is stale. Checked before
/// anything else, so a stale caller gets 409 even where the change would be a no-op.
pub fn check_expected(stage: &str, current: Option<i64>, expected: Expected) -> Result<(), Error> {
    match expected {
        Some(e) if e != current => Err(Error::conflict(
            "stage_conflict",
            format!(
                "stage '{stage}' holds {}, not {} as expected; nothing was changed",
                describe(current),
                describe(e)
            ),
        )
        .with_field("expected_version")),
        _ => Ok(()),
    }
}

fn describe(v: Option<i64>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "nothing".to_owned(),
    }
}

pub fn nothing_to_roll_back(stage: &str) -> Error {
    Error::conflict(
        "nothing_to_roll_back",
        format!("stage '{stage}' has no earlier version to roll back to"),
    )
}

pub fn not_in_history(stage: &str, version: i64) -> Error {
    Error::conflict(
        "not_in_history",
        format!(
            "version {version} is not beneath the current version on the stack of stage '{stage}'"
        ),
    )
    .with_field("to_version")
}

pub fn version_not_ready(version: i64, status: &str) -> Error {
    Error::conflict(
        "version_not_ready",
        format!("version {version} is {status}; only ready versions can be put on a stage"),
    )
}

/// Refuses to archive a version that a stage points at.
pub fn in_stage(version: i64, stages: &[String]) -> Error {
    Error::conflict(
        "version_in_stage",
        format!(
            "version {version} is on stage {}; promote another version or clear the stage first",
            stages.join(", ")
        ),
    )
}

pub fn stage_empty(stage: &str) -> Error {
    Error::not_found("stage_empty", format!("stage '{stage}' holds no version"))
}

/// A stage as its locked row holds it: the current version and the stack's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub version: Option<i64>,
    pub depth: i64,
}

/// A version a stage would hold must exist and be ready.
fn check_ready(
    model: &str,
    version: i64,
    status: Option<VersionStatus>,
    field: &str,
) -> Result<(), Error> {
    match status {
        None => Err(Error::version_not_found(model, version).with_field(field)),
        Some(VersionStatus::Ready) => Ok(()),
        Some(s) => Err(version_not_ready(version, s.as_str())),
    }
}

/// The first step of a promote: the candidate must be ready; promoting the version the stage
/// holds changes nothing (`Ok(false)`: nothing to evaluate or record). `Ok(true)`: evaluate
/// the stage's policy and [`decide_promote`].
pub fn promote_target(
    model: &str,
    held: Held,
    version: i64,
    status: Option<VersionStatus>,
) -> Result<bool, Error> {
    check_ready(model, version, status, "version")?;
    Ok(held.version != Some(version))
}

/// How a promote is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromoteAsk {
    /// Evaluate and change nothing.
    pub dry_run: bool,
    /// Promote past failing checks and approvals (admin).
    pub force: bool,
    /// Approvals the policy asks for open a promotion request (a caller's promote, not a
    /// granted request's).
    pub opens_request: bool,
}

/// The stage's policy, evaluated for the candidate: its checks and the approvals it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub checks: Vec<Check>,
    pub approvals: i64,
}

/// What a promote that would change the stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum PromoteDecision {
    /// A dry run: the checks (with the approvals a promote would ask for), nothing written.
    DryRun { checks: Option<Vec<Check>> },
    /// The policy asks for approvals: open a promotion request for them, with these checks.
    OpenRequest { approvals: i64, checks: Vec<Check> },
    /// Push the version onto the stack at `position`; `forced` when checks failed and the
    /// caller forced it.
    Push {
        position: i64,
        checks: Option<Vec<Check>>,
        forced: bool,
    },
}

/// Decides a promote (after [`promote_target`]): a dry run answers the checks; failing checks
/// refuse it (409 `policy_violation`) unless forced; approvals asked for open a request
/// unless forced or already granted; otherwise the version is pushed.
pub fn decide_promote(
    stage: &str,
    held: Held,
    ask: PromoteAsk,
    evaluated: Option<Evaluated>,
) -> Result<PromoteDecision, Error> {
    let approvals = evaluated.as_ref().map_or(0, |e| e.approvals);
    let checks = evaluated.map(|e| e.checks);
    let passed = checks.iter().flatten().all(|c| c.ok);
    let asks = approvals > 0 && !ask.force;
    if ask.dry_run {
        let mut checks = checks;
        if asks {
            checks
                .get_or_insert_default()
                .push(super::policy::approvals_check(approvals));
        }
        return Ok(PromoteDecision::DryRun { checks });
    }
    let forced = !passed;
    if forced && !ask.force {
        return Err(Error::policy_violation(stage, checks.unwrap_or_default()));
    }
    if asks && ask.opens_request {
        return Ok(PromoteDecision::OpenRequest {
            approvals,
            checks: checks.unwrap_or_default(),
        });
    }
    Ok(PromoteDecision::Push {
        position: held.depth + 1,
        checks,
        forced,
    })
}

/// Where a rollback lands, from the stage as held, the highest stack entry below its top
/// (holding `to` when given) as `(position, version)`, and that version's status: the
/// entry becomes the top.
pub fn decide_rollback(
    model: &str,
    stage: &str,
    held: Held,
    to: Option<i64>,
    entry_below: Option<(i64, i64)>,
    status: Option<VersionStatus>,
) -> Result<(i64, i64), Error> {
    if held.depth < 2 {
        return Err(nothing_to_roll_back(stage));
    }
    let Some((position, version)) = entry_below else {
        return Err(match to {
            Some(v) => not_in_history(stage, v),
            None => nothing_to_roll_back(stage),
        });
    };
    check_ready(model, version, status, "version")?;
    Ok((position, version))
}

/// Whether a clear changes anything: an empty stage with no history stays as it is.
pub fn clear_changes(held: Held) -> bool {
    held.version.is_some() || held.depth > 0
}

/// The stack of one stage, bottom first; the top is the current version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStack(Vec<i64>);

impl StageStack {
    pub fn current(&self) -> Option<i64> {
        self.0.last().copied()
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// Pushes `version`; promoting the current version changes nothing (returns false).
    pub fn promote(&mut self, version: i64) -> bool {
        if self.current() == Some(version) {
            return false;
        }
        self.0.push(version);
        true
    }

    /// Where a rollback lands: the position (0-based) of the entry that becomes the top.
    /// Without `to`, the entry beneath the top; with `to`, its highest occurrence beneath the top.
    pub fn rollback_position(&self, stage: &str, to: Option<i64>) -> Result<usize, Error> {
        let Some(top) = self.0.len().checked_sub(1) else {
            return Err(nothing_to_roll_back(stage));
        };
        if top == 0 {
            return Err(nothing_to_roll_back(stage));
        }
        match to {
            None => Ok(top - 1),
            Some(v) => self.0[..top]
                .iter()
                .rposition(|&x| x == v)
                .ok_or_else(|| not_in_history(stage, v)),
        }
    }

    /// Pops down to the rollback target and returns the new current version.
    pub fn rollback(&mut self, stage: &str, to: Option<i64>) -> Result<i64, Error> {
        let p = self.rollback_position(stage, to)?;
        self.0.truncate(p + 1);
        Ok(self.0[p])
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool) -> Check {
        Check {
            check: "require".into(),
            ok,
            detail: String::new(),
            expected: None,
            observed: None,
        }
    }

    const HELD: Held = Held {
        version: Some(2),
        depth: 3,
    };
    const ASK: PromoteAsk = PromoteAsk {
        dry_run: false,
        force: false,
        opens_request: true,
    };

    #[test]
    fn a_promote_needs_a_ready_version_and_a_change() {
        use VersionStatus::*;
        assert!(promote_target("m", HELD, 5, Some(Ready)).unwrap());
        assert!(!promote_target("m", HELD, 2, Some(Ready)).unwrap());
        assert_eq!(
            promote_target("m", HELD, 5, None).unwrap_err().code,
            "version_not_found"
        );
        for s in [Pending, Failed, Archived] {
            assert_eq!(
                promote_target("m", HELD, 2, Some(s)).unwrap_err().code,
                "version_not_ready",
                "even the version held: {s:?}"
            );
        }
    }

    #[test]
    fn a_promote_pushes_refuses_forces_or_asks() {
        let eval = |ok: bool, approvals: i64| {
            Some(Evaluated {
                checks: vec![check(ok)],
                approvals,
            })
        };
        assert_eq!(
            decide_promote("p", HELD, ASK, None).unwrap(),
            PromoteDecision::Push {
                position: 4,
                checks: None,
                forced: false
            }
        );
        assert_eq!(
            decide_promote("p", HELD, ASK, eval(false, 0))
                .unwrap_err()
                .code,
            "policy_violation"
        );
        let forced = PromoteAsk { force: true, ..ASK };
        assert!(matches!(
            decide_promote("p", HELD, forced, eval(false, 2)).unwrap(),
            PromoteDecision::Push { forced: true, .. }
        ));
        assert!(matches!(
            decide_promote("p", HELD, ASK, eval(true, 2)).unwrap(),
            PromoteDecision::OpenRequest { approvals: 2, .. }
        ));
        // A failing check refuses before a request is opened for approvals.
        assert!(decide_promote("p", HELD, ASK, eval(false, 2)).is_err());
        let granted = PromoteAsk {
            opens_request: false,
            ..ASK
        };
        assert!(matches!(
            decide_promote("p", HELD, granted, eval(true, 2)).unwrap(),
            PromoteDecision::Push { forced: false, .. }
        ));
        // A dry run answers the checks, the approvals included, and never refuses.
        let dry = PromoteAsk {
            dry_run: true,
            ..ASK
        };
        let PromoteDecision::DryRun { checks } =
            decide_promote("p", HELD, dry, eval(false, 2)).unwrap()
        else {
            panic!("a dry run")
        };
        let names: Vec<(String, bool)> = checks
            .unwrap()
            .into_iter()
            .map(|c| (c.check, c.ok))
            .collect();
        assert_eq!(
            names,
            [("require".into(), false), ("approvals".into(), false)]
        );
    }

    #[test]
    fn a_rollback_lands_on_a_ready_entry_below() {
        use VersionStatus::*;
        let at = |held, to, entry, status| decide_rollback("m", "p", held, to, entry, status);
        assert_eq!(at(HELD, None, Some((2, 1)), Some(Ready)).unwrap(), (2, 1));
        let shallow = Held {
            version: Some(1),
            depth: 1,
        };
        assert_eq!(
            at(shallow, None, None, None).unwrap_err().code,
            "nothing_to_roll_back"
        );
        assert_eq!(
            at(HELD, Some(9), None, None).unwrap_err().code,
            "not_in_history"
        );
        assert_eq!(
            at(HELD, None, None, None).unwrap_err().code,
            "nothing_to_roll_back"
        );
        assert_eq!(
            at(HELD, None, Some((2, 1)), Some(Archived))
                .unwrap_err()
                .code,
            "version_not_ready"
        );
    }

    #[test]
    fn a_clear_of_nothing_changes_nothing() {
        assert!(!clear_changes(Held {
            version: None,
            depth: 0
        }));
        assert!(clear_changes(Held {
            version: None,
            depth: 2
        }));
        assert!(clear_changes(HELD));
    }

    #[test]
    fn expected_version() {
        assert!(check_expected("p", Some(3), None).is_ok());
        assert!(check_expected("p", Some(3), Some(Some(3))).is_ok());
        assert!(check_expected("p", None, Some(None)).is_ok());
        assert_eq!(
            check_expected("p", Some(3), Some(Some(2)))
                .unwrap_err()
                .code,
            "stage_conflict"
        );
        assert_eq!(
            check_expected("p", Some(3), Some(None)).unwrap_err().code,
            "stage_conflict"
        );
        assert_eq!(
            check_expected("p", None, Some(Some(1))).unwrap_err().code,
            "stage_conflict"
        );
    }

    #[test]
    fn rollback_walks_back_one_at_a_time() {
        let mut s = StageStack::default();
        for v in [1, 2, 3] {
            assert!(s.promote(v));
        }
        assert_eq!(s.rollback("p", None).unwrap(), 2);
        assert_eq!(s.rollback("p", None).unwrap(), 1);
        assert_eq!(
            s.rollback("p", None).unwrap_err().code,
            "nothing_to_roll_back"
        );
        assert_eq!(s.current(), Some(1));
    }

    #[test]
    fn re_promote_is_a_no_op() {
        let mut s = StageStack::default();
        assert!(s.promote(1));
        assert!(!s.promote(1));
        assert_eq!(s.depth(), 1);
    }

    #[test]
    fn rollback_to_a_version() {
        let mut s = StageStack::default();
        for v in [1, 2, 1, 3, 4] {
            s.promote(v);
        }
        // The highest occurrence beneath the top.
        assert_eq!(s.rollback_position("p", Some(1)).unwrap(), 2);
        assert_eq!(
            s.rollback_position("p", Some(4)).unwrap_err().code,
            "not_in_history"
        );
        assert_eq!(
            s.rollback_position("p", Some(9)).unwrap_err().code,
            "not_in_history"
        );
        assert_eq!(s.rollback("p", Some(2)).unwrap(), 2);
        assert_eq!(s, StageStack(vec![1, 2]));
    }

    #[test]
    fn clear_empties_the_stack() {
        let mut s = StageStack::default();
        s.promote(1);
        s.promote(2);
        s.clear();
        assert_eq!(s.current(), None);
        assert_eq!(
            s.rollback("p", None).unwrap_err().code,
            "nothing_to_roll_back"
        );
        assert_eq!(
            StageStack::default().rollback("p", None).unwrap_err().code,
            "nothing_to_roll_back"
        );
    }
}
