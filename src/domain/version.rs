//! The version lifecycle: `pending` → `ready` → `archived`; `pending` → `failed`.

use crate::error::Error;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    Pending,
    Ready,
    Failed,
    Archived,
    /// A tombstone: the number stays (never reused), everything else of the version is gone.
    Erased,
}

/// A lifecycle action requested by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Finalize,
    Fail,
    Archive,
    /// Archived back to ready (MLflow's `runs/restore` of a deleted run).
    Restore,
}

/// What applying a transition to a status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Move to this status (and record an event).
    Move(VersionStatus),
    /// Already there: a retried request; answer 200 and record nothing.
    AlreadyDone,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Archived => "archived",
            Self::Erased => "erased",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        Ok(match s {
            "pending" => Self::Pending,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            "archived" => Self::Archived,
            "erased" => Self::Erased,
            _ => {
                return Err(Error::validation(
                    field,
                    format!(
                        "unknown status {s:?}: one of pending, ready, failed, archived, erased"
                    ),
                ));
            }
        })
    }

    /// Stored values were written by this code; anything else is corruption.
    pub fn from_stored(s: &str) -> Result<Self, Error> {
        Self::parse("status", s).map_err(|_| Error::internal(format!("stored status {s:?}")))
    }

    /// Whether config, source and artifacts may still change.
    pub fn is_mutable(self) -> bool {
        self == Self::Pending
    }

    /// Applies a transition. Repeating one that already happened is not an error, so that a
    /// pipeline retrying `finalize` after a network failure gets its 200.
    pub fn apply(self, t: Transition) -> Result<Outcome, Error> {
        use VersionStatus::*;
        let target = t.target();
        match (self, t) {
            (Erased, t) => Err(Error::conflict(
                "version_erased",
                format!(
                    "cannot {} an erased version: nothing of it is left but its number",
                    t.verb()
                ),
            )),
            (s, _) if s == target => Ok(Outcome::AlreadyDone),
            (Pending, Transition::Finalize | Transition::Fail)
            | (Ready, Transition::Archive)
            | (Archived, Transition::Restore) => Ok(Outcome::Move(target)),
            (from, t) => Err(Error::conflict(
                "invalid_transition",
                format!(
                    "cannot {} a {} version: {}",
                    t.verb(),
                    from.as_str(),
                    t.rule()
                ),
            )),
        }
    }
}

impl Transition {
    pub fn target(self) -> VersionStatus {
        match self {
            Self::Finalize => VersionStatus::Ready,
            Self::Fail => VersionStatus::Failed,
            Self::Archive => VersionStatus::Archived,
            Self::Restore => VersionStatus::Ready,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Self::Finalize => "finalize",
            Self::Fail => "fail",
            Self::Archive => "archive",
            Self::Restore => "restore",
        }
    }

    /// The event recorded when the transition happens.
    pub fn event(self) -> &'static str {
        match self {
            Self::Finalize => "version.finalized",
            Self::Fail => "version.failed",
            Self::Archive => "version.archived",
            Self::Restore => "version.restored",
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Self::Finalize => "only pending versions can be finalized",
            Self::Fail => "only pending versions can be failed",
            Self::Archive => "only ready versions can be archived",
            Self::Restore => "only archived versions can be restored",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::*;
    use VersionStatus::*;

    #[test]
    fn lifecycle() {
        assert_eq!(Pending.apply(Finalize).unwrap(), Outcome::Move(Ready));
        assert_eq!(Pending.apply(Fail).unwrap(), Outcome::Move(Failed));
        assert_eq!(Ready.apply(Archive).unwrap(), Outcome::Move(Archived));
        assert_eq!(Archived.apply(Restore).unwrap(), Outcome::Move(Ready));
    }

    #[test]
    fn repeats_are_no_ops() {
        assert_eq!(Ready.apply(Finalize).unwrap(), Outcome::AlreadyDone);
        assert_eq!(Failed.apply(Fail).unwrap(), Outcome::AlreadyDone);
        assert_eq!(Archived.apply(Archive).unwrap(), Outcome::AlreadyDone);
        assert_eq!(Ready.apply(Restore).unwrap(), Outcome::AlreadyDone);
    }

    #[test]
    fn forbidden_moves() {
        for (s, t) in [
            (Pending, Archive),
            (Ready, Fail),
            (Failed, Finalize),
            (Failed, Archive),
            (Archived, Finalize),
            (Archived, Fail),
            (Pending, Restore),
            (Failed, Restore),
        ] {
            let e = s.apply(t).unwrap_err();
            assert_eq!(e.code, "invalid_transition", "{s:?} {t:?}");
        }
    }

    #[test]
    fn statuses_parse() {
        for s in [Pending, Ready, Failed, Archived] {
            assert_eq!(VersionStatus::parse("status", s.as_str()).unwrap(), s);
        }
        assert!(VersionStatus::parse("status", "done").is_err());
    }
}
