//! Stage rules: the optimistic-concurrency check, and the stack that promote pushes onto and
//! rollback pops from.
//!
//! The stores keep the stack as rows and apply these rules under a row lock; [`StageStack`]
//! is the reference model of the same semantics, used by tests to replay the history.

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
