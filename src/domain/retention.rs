//! Retention policies: which of a model's versions it keeps, and what happens to the rest.
//!
//! A policy has keep rules and action rules. The action rules, each by the version's age
//! (the time since it was registered):
//! - `fail_pending_after`: a pending version that old is failed (an upload that never
//!   finished);
//! - `archive_after`: a ready version that old is archived;
//! - `erase_after`: an archived or failed version that old is erased (a ready version never
//!   is: it is archived first).
//!
//! The keep rules protect ready and archived versions from the last two: the last N
//! (`keep_last`, by number), the best K by an `order_by` (`keep_best`), and those on a stage
//! within a period (`keep_staged_within`). Whatever the policy says, a version live on a
//! stage, or beneath in a stage's stack (a rollback target), is never archived or erased by
//! it.
//!
//! [`Retention::plan`] decides from [`Facts`] read in one transaction; the store applies
//! the plan and the preview shows it, so the two cannot differ.

use super::VersionStatus;
use super::order::{OrderBy, SortKey};
use super::policy::{format_duration, parse_duration_up_to};
use super::time::Timestamp;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The longest duration a rule takes: 100 years.
const MAX_DURATION: i64 = 100 * 366 * 86_400;
/// The most versions a count rule names.
const MAX_COUNT: i64 = 1_000_000;

/// A policy as clients send it (and as it is stored).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_staged_within: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_best: Vec<KeepBestBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erase_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_pending_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeepBestBody {
    pub order_by: String,
    pub n: i64,
}

/// A validated policy; durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_staged_within: Option<i64>,
    pub keep_best: Vec<KeepBest>,
    pub archive_after: Option<i64>,
    pub erase_after: Option<i64>,
    pub fail_pending_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeepBest {
    pub order_by: OrderBy,
    pub n: u32,
}

fn duration(field: &str, raw: Option<&String>) -> Result<Option<i64>> {
    raw.map(|r| {
        let s = parse_duration_up_to(r, MAX_DURATION).map_err(|e| e.with_field(field))?;
        if s == 0 {
            return Err(Error::validation(field, "must be longer than zero"));
        }
        Ok(s)
    })
    .transpose()
}

fn count(field: &str, n: i64) -> Result<u32> {
    if !(1..=MAX_COUNT).contains(&n) {
        return Err(Error::validation(
            field,
            format!("must be between 1 and {MAX_COUNT}"),
        ));
    }
    u32::try_from(n).map_err(|_| Error::validation(field, "out of range"))
}

impl Retention {
    pub fn from_body(b: &RetentionBody) -> Result<Self> {
        let keep_best = b
            .keep_best
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let order_by = OrderBy::parse(&k.order_by)
                    .map_err(|e| e.with_field(format!("keep_best[{i}].order_by")))?;
                Ok(KeepBest {
                    order_by,
                    n: count(&format!("keep_best[{i}].n"), k.n)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let policy = Self {
            keep_last: b.keep_last.map(|n| count("keep_last", n)).transpose()?,
            keep_staged_within: duration("keep_staged_within", b.keep_staged_within.as_ref())?,
            keep_best,
            archive_after: duration("archive_after", b.archive_after.as_ref())?,
            erase_after: duration("erase_after", b.erase_after.as_ref())?,
            fail_pending_after: duration("fail_pending_after", b.fail_pending_after.as_ref())?,
        };
        if policy.archive_after.is_none()
            && policy.erase_after.is_none()
            && policy.fail_pending_after.is_none()
        {
            return Err(Error::validation(
                "archive_after",
                "a policy needs at least one of archive_after, erase_after and fail_pending_after: keep rules alone do nothing",
            ));
        }
        Ok(policy)
    }

    /// The policy as clients send it: durations in ISO 8601, orders in their canonical
    /// spelling.
    pub fn to_body(&self) -> RetentionBody {
        RetentionBody {
            keep_last: self.keep_last.map(i64::from),
            keep_staged_within: self.keep_staged_within.map(format_duration),
            keep_best: self
                .keep_best
                .iter()
                .map(|k| KeepBestBody {
                    order_by: k.order_by.canonical(),
                    n: i64::from(k.n),
                })
                .collect(),
            archive_after: self.archive_after.map(format_duration),
            erase_after: self.erase_after.map(format_duration),
            fail_pending_after: self.fail_pending_after.map(format_duration),
        }
    }

    /// The metrics the keep rules rank by (their last values are read for [`Facts`]).
    pub fn ranked_metrics(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keep_best
            .iter()
            .filter_map(|k| match &k.order_by.key {
                SortKey::Metric(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// A version the policy may act on (erased ones are not).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: i64,
    pub status: VersionStatus,
    pub created_at: Timestamp,
}

/// What a plan is decided from, read in one transaction.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: Timestamp,
    pub versions: Vec<Candidate>,
    /// Version → the stages it is live on.
    pub live: BTreeMap<i64, Vec<String>>,
    /// Version → the stages in whose stack it lies beneath the top.
    pub stacked: BTreeMap<i64, Vec<String>>,
    /// Versions a stage held at some time within `keep_staged_within` (from the stages'
    /// history).
    pub staged_recently: BTreeSet<i64>,
    /// Metric key → version → the metric's last value.
    pub metrics: BTreeMap<String, BTreeMap<i64, f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Fail,
    Archive,
    Erase,
}

/// One action of a plan: what, to which version, by which rule and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub version: i64,
    pub action: Action,
    pub rule: String,
    pub reason: String,
}

/// A version an action rule would have taken, and the rule that keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub version: i64,
    pub action: Action,
    pub kept_by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub actions: Vec<Planned>,
    pub kept: Vec<Kept>,
}

fn age(now: Timestamp, created: Timestamp) -> i64 {
    (now - created).num_seconds()
}

fn days(seconds: i64) -> String {
    if seconds >= 2 * 86_400 {
        format!("{} days", seconds / 86_400)
    } else {
        format_duration(seconds.max(0))
    }
}

impl Retention {
    /// The versions the keep rules protect, each with the first rule that does.
    fn keeps(&self, f: &Facts) -> BTreeMap<i64, (String, String)> {
        let mut kept: BTreeMap<i64, (String, String)> = BTreeMap::new();
        let mut keep = |v: i64, rule: String, why: String| {
            kept.entry(v).or_insert((rule, why));
        };
        for (v, stages) in &f.live {
            keep(*v, "live".into(), format!("live on {}", stages.join(", ")));
        }
        for (v, stages) in &f.stacked {
            keep(
                *v,
                "rollback_target".into(),
                format!("a rollback target beneath {}", stages.join(", ")),
            );
        }
        // Keep rules rank ready and archived versions only: failed ones are never kept.
        let keepable: Vec<&Candidate> = f
            .versions
            .iter()
            .filter(|c| matches!(c.status, VersionStatus::Ready | VersionStatus::Archived))
            .collect();
        if let Some(n) = self.keep_last {
            let mut newest: Vec<i64> = keepable.iter().map(|c| c.version).collect();
            newest.sort_unstable_by(|a, b| b.cmp(a));
            for v in newest.into_iter().take(n as usize) {
                keep(
                    v,
                    "keep_last".into(),
                    format!("among the last {n} versions"),
                );
            }
        }
        if let Some(within) = self.keep_staged_within {
            for v in &f.staged_recently {
                keep(
                    *v,
                    "keep_staged_within".into(),
                    format!("on a stage within {}", format_duration(within)),
                );
            }
        }
        for k in &self.keep_best {
            let rule = format!("keep_best {} {}", k.order_by.canonical(), k.n);
            let mut ranked: Vec<(f64, i64)> = keepable
                .iter()
                .filter_map(|c| {
                    let value = match &k.order_by.key {
                        SortKey::Metric(m) => *f.metrics.get(m)?.get(&c.version)?,
                        SortKey::Version => c.version as f64,
                        SortKey::CreatedAt => super::time::to_micros(c.created_at) as f64,
                    };
                    (!value.is_nan()).then_some((value, c.version))
                })
                .collect();
            // Best first; ties go to the newer version.
            ranked.sort_by(|a, b| {
                let by = if k.order_by.descending {
                    b.0.total_cmp(&a.0)
                } else {
                    a.0.total_cmp(&b.0)
                };
                by.then(b.1.cmp(&a.1))
            });
            for (rank, (value, v)) in ranked.into_iter().take(k.n as usize).enumerate() {
                keep(
                    v,
                    rule.clone(),
                    format!("rank {} by {} ({value})", rank + 1, k.order_by.canonical()),
                );
            }
        }
        kept
    }

    /// What the policy does now, oldest version first.
    pub fn plan(&self, f: &Facts) -> Plan {
        let kept = self.keeps(f);
        let mut plan = Plan::default();
        let mut versions: Vec<&Candidate> = f.versions.iter().collect();
        versions.sort_by_key(|c| c.version);
        for c in versions {
            let old = age(f.now, c.created_at);
            let due = |rule: Option<i64>| rule.filter(|d| old >= *d);
            let (action, rule, limit) = match c.status {
                VersionStatus::Pending => match due(self.fail_pending_after) {
                    Some(d) => (Action::Fail, "fail_pending_after", d),
                    None => continue,
                },
                VersionStatus::Ready => match due(self.archive_after) {
                    Some(d) => (Action::Archive, "archive_after", d),
                    None => continue,
                },
                VersionStatus::Archived | VersionStatus::Failed => match due(self.erase_after) {
                    Some(d) => (Action::Erase, "erase_after", d),
                    None => continue,
                },
                VersionStatus::Erased => continue,
            };
            let reason = format!(
                "{}, registered {} ago ({rule} {})",
                c.status.as_str(),
                days(old),
                format_duration(limit)
            );
            // A pending version is never live nor ranked: failing it is not kept from.
            match kept.get(&c.version).filter(|_| action != Action::Fail) {
                Some((by, why)) => plan.kept.push(Kept {
                    version: c.version,
                    action,
                    kept_by: by.clone(),
                    reason: format!("{reason}; kept: {why}"),
                }),
                None => plan.actions.push(Planned {
                    version: c.version,
                    action,
                    rule: rule.to_owned(),
                    reason,
                }),
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time;
    use VersionStatus::*;

    const DAY: i64 = 86_400;

    fn policy(json: serde_json::Value) -> Retention {
        Retention::from_body(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn facts(now_days: i64, versions: &[(i64, VersionStatus, i64)]) -> Facts {
        let t = |d: i64| time::from_micros(d * DAY * 1_000_000);
        Facts {
            now: t(now_days),
            versions: versions
                .iter()
                .map(|&(version, status, day)| Candidate {
                    version,
                    status,
                    created_at: t(day),
                })
                .collect(),
            live: BTreeMap::new(),
            stacked: BTreeMap::new(),
            staged_recently: BTreeSet::new(),
            metrics: BTreeMap::new(),
        }
    }

    fn acted(plan: &Plan) -> Vec<(i64, Action)> {
        plan.actions.iter().map(|a| (a.version, a.action)).collect()
    }

    #[test]
    fn bodies_are_validated_and_round_trip() {
        let p = policy(
            serde_json::json!({"keep_last": 3, "keep_best": [{"order_by": "metric.acc:desc", "n": 2}],
            "archive_after": "P30D", "erase_after": "P400D"}),
        );
        assert_eq!(p.erase_after, Some(400 * DAY));
        let again = Retention::from_body(&p.to_body()).unwrap();
        assert_eq!(again, p);
        for (body, field) in [
            (serde_json::json!({"keep_last": 3}), "archive_after"),
            (
                serde_json::json!({"keep_last": 0, "archive_after": "P1D"}),
                "keep_last",
            ),
            (
                serde_json::json!({"archive_after": "PT0S"}),
                "archive_after",
            ),
            (serde_json::json!({"erase_after": "30 days"}), "erase_after"),
            (
                serde_json::json!({"archive_after": "P1D", "keep_best": [{"order_by": "metric.", "n": 1}]}),
                "keep_best[0].order_by",
            ),
            (
                serde_json::json!({"archive_after": "P1D", "keep_best": [{"order_by": "version", "n": -1}]}),
                "keep_best[0].n",
            ),
        ] {
            let b: RetentionBody = serde_json::from_value(body.clone()).unwrap();
            let e = Retention::from_body(&b).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{body}");
        }
        assert!(serde_json::from_value::<RetentionBody>(serde_json::json!({"keep": 1})).is_err());
    }

    #[test]
    fn each_action_rule_takes_its_status_by_age() {
        let p = policy(
            serde_json::json!({"archive_after": "P30D", "erase_after": "P60D", "fail_pending_after": "P2D"}),
        );
        let f = facts(
            100,
            &[
                (1, Ready, 10),    // 90 days: archived
                (2, Ready, 80),    // 20 days: too young
                (3, Archived, 30), // 70 days: erased
                (4, Archived, 50), // 50 days: too young to erase
                (5, Failed, 0),    // erased
                (6, Pending, 97),  // 3 days: failed
                (7, Pending, 99),  // 1 day
            ],
        );
        assert_eq!(
            acted(&p.plan(&f)),
            vec![
                (1, Action::Archive),
                (3, Action::Erase),
                (5, Action::Erase),
                (6, Action::Fail)
            ]
        );
        let first = &p.plan(&f).actions[0];
        assert_eq!(first.rule, "archive_after");
        assert!(first.reason.contains("90 days"), "{}", first.reason);
    }

    #[test]
    fn a_ready_version_is_never_erased_directly() {
        let p = policy(serde_json::json!({"erase_after": "P1D"}));
        assert!(acted(&p.plan(&facts(100, &[(1, Ready, 0)]))).is_empty());
    }

    #[test]
    fn keep_last_counts_ready_and_archived_versions_only() {
        let p = policy(
            serde_json::json!({"keep_last": 2, "archive_after": "P1D", "erase_after": "P1D"}),
        );
        let f = facts(
            100,
            &[
                (1, Ready, 0),
                (2, Archived, 0),
                (3, Ready, 0),
                (4, Failed, 0),
                (5, Failed, 0),
            ],
        );
        let plan = p.plan(&f);
        // 2 and 3 are the last two that count; failed 4 and 5 are erased.
        assert_eq!(
            acted(&plan),
            vec![(1, Action::Archive), (4, Action::Erase), (5, Action::Erase)]
        );
        let kept: Vec<(i64, &str)> = plan
            .kept
            .iter()
            .map(|k| (k.version, k.kept_by.as_str()))
            .collect();
        assert_eq!(kept, vec![(2, "keep_last"), (3, "keep_last")]);
    }

    #[test]
    fn live_and_stacked_versions_are_always_kept() {
        let p = policy(serde_json::json!({"archive_after": "P1D", "erase_after": "P1D"}));
        let mut f = facts(100, &[(1, Archived, 0), (2, Ready, 0), (3, Ready, 0)]);
        f.live.insert(2, vec!["production".into()]);
        f.stacked.insert(1, vec!["production".into()]);
        let plan = p.plan(&f);
        assert_eq!(acted(&plan), vec![(3, Action::Archive)]);
        assert_eq!(plan.kept[0].kept_by, "rollback_target");
        assert_eq!(plan.kept[1].kept_by, "live");
        assert!(plan.kept[1].reason.contains("live on production"));
    }

    #[test]
    fn staged_within_keeps_what_a_stage_held_recently() {
        let p = policy(serde_json::json!({"keep_staged_within": "P90D", "archive_after": "P1D"}));
        let mut f = facts(100, &[(1, Ready, 0), (2, Ready, 0)]);
        f.staged_recently.insert(1);
        assert_eq!(acted(&p.plan(&f)), vec![(2, Action::Archive)]);
        // Without the rule, having been on a stage keeps nothing.
        let p = policy(serde_json::json!({"archive_after": "P1D"}));
        assert_eq!(acted(&p.plan(&f)).len(), 2);
    }

    #[test]
    fn keep_best_ranks_by_the_order_and_skips_versions_without_the_metric() {
        let p = policy(serde_json::json!({"archive_after": "P1D",
            "keep_best": [{"order_by": "metric.acc:desc", "n": 2}, {"order_by": "metric.loss", "n": 1}]}));
        let mut f = facts(
            100,
            &[
                (1, Ready, 0),
                (2, Ready, 0),
                (3, Ready, 0),
                (4, Ready, 0),
                (5, Ready, 0),
            ],
        );
        f.metrics.insert(
            "acc".into(),
            BTreeMap::from([(1, 0.9), (2, 0.7), (3, 0.95), (4, f64::NAN)]),
        );
        f.metrics
            .insert("loss".into(), BTreeMap::from([(2, 0.5), (4, 0.1)]));
        let plan = p.plan(&f);
        // acc keeps 3 and 1; loss (ascending) keeps 4; 2 and 5 go.
        assert_eq!(
            acted(&plan),
            vec![(2, Action::Archive), (5, Action::Archive)]
        );
        assert_eq!(
            p.ranked_metrics(),
            vec!["acc".to_owned(), "loss".to_owned()]
        );
    }

    #[test]
    fn keep_rules_never_keep_a_pending_version_from_failing() {
        let p = policy(serde_json::json!({"keep_last": 5, "fail_pending_after": "P1D"}));
        let mut f = facts(100, &[(1, Pending, 0)]);
        f.staged_recently.insert(1);
        assert_eq!(acted(&p.plan(&f)), vec![(1, Action::Fail)]);
    }
}
