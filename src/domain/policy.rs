//! Stage policies: what a promote onto a stage must pass, and the checks that say whether it
//! did. The rules here are pure: the store reads the candidate's and the holder's values under
//! the stage lock and hands them to these functions, which decide and explain.

use super::filter::Filter;
use super::schema::{self, Change, Schema};
use super::time::Timestamp;
use super::{StageName, filter};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Approvals a policy may ask for, at most.
pub const MAX_APPROVALS: i64 = 5;
/// Metrics a `no_regression` list may name, at most.
pub const MAX_NO_REGRESSION: usize = 20;

/// One metric that must not get worse than on the version now on the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRegression {
    pub metric: String,
    pub higher_is_better: bool,
    /// How much worse the candidate may be, in the metric's unit.
    #[serde(default)]
    pub tolerance: f64,
}

/// A stage's policy, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A `filter` expression the candidate must satisfy, as written.
    pub require: Option<String>,
    pub no_regression: Vec<NoRegression>,
    pub after_stage: Option<StageName>,
    /// Seconds the candidate must have been on `after_stage`.
    pub min_soak: Option<i64>,
    pub approvals: i64,
    /// The candidate's schema must not break the one of the version on this stage (or on
    /// another named stage).
    pub schema_compatible: Option<SchemaCompatible>,
    /// The candidate's files must carry a valid signature by one of the named trusted keys.
    pub signed_by: Option<SignedBy>,
}

/// Keys a `signed_by` list may name, at most.
pub const MAX_SIGNED_BY: usize = 20;

/// `signed_by`: a signature by one of these trusted keys must cover the candidate's
/// artifacts under `path` (`""`: every artifact).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedBy {
    pub keys: Vec<String>,
    pub path: String,
}

/// A verified signature on the candidate, as recorded: the key that verified it then (its
/// name and fingerprint) and the signed directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub key: String,
    pub fingerprint: String,
    pub path: String,
}

/// A trusted key as it stands at the promote: its fingerprint now, and whether it may sign
/// the model's versions.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyNow {
    pub fingerprint: String,
    pub covers_model: bool,
}

impl SignedBy {
    /// `["key", …]`, or `{"keys": ["key", …], "path": "model/"}`; `null`: no check.
    pub fn parse(value: Option<Value>) -> Result<Option<Self>> {
        let bad = || {
            Error::validation(
                "signed_by",
                "signed_by is a list of trusted key names, or {\"keys\": [...], \"path\": \"model/\"}",
            )
        };
        let (keys, path) = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(keys)) => (keys, String::new()),
            Some(Value::Object(mut o)) => {
                if o.keys().any(|k| k != "keys" && k != "path") {
                    return Err(bad());
                }
                let keys = match o.remove("keys") {
                    Some(Value::Array(keys)) => keys,
                    _ => return Err(bad()),
                };
                let path = match o.remove("path") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(p)) => super::signature::parse_prefix("signed_by.path", &p)?,
                    Some(_) => return Err(bad()),
                };
                (keys, path)
            }
            Some(_) => return Err(bad()),
        };
        if keys.is_empty() || keys.len() > MAX_SIGNED_BY {
            return Err(Error::validation(
                "signed_by.keys",
                format!("name 1 to {MAX_SIGNED_BY} trusted keys"),
            ));
        }
        let mut names: Vec<String> = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let field = format!("signed_by.keys[{i}]");
            let name = k
                .as_str()
                .ok_or_else(|| Error::validation(&field, "a trusted key's name"))?;
            let name = super::trust::parse_name(&field, name)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(Some(Self { keys: names, path }))
    }

    /// As the API shows it and the store keeps it: the list alone when every artifact must
    /// be signed.
    pub fn to_json(&self) -> Value {
        if self.path.is_empty() {
            json!(self.keys)
        } else {
            json!({"keys": self.keys, "path": self.path})
        }
    }

    fn scope(&self) -> String {
        if self.path.is_empty() {
            "every artifact".to_owned()
        } else {
            format!("the artifacts under {}", self.path)
        }
    }
}

/// `signed_by`: passes when one of the candidate's verified signatures is by a named key
/// that is still trusted (same fingerprint, still allowed to sign the model) and covers the
/// policy's path (signed over that directory or one above it).
pub fn signed_by_check(
    rule: &SignedBy,
    signatures: &[Signature],
    keys: &BTreeMap<String, KeyNow>,
) -> Check {
    let mut seen = Vec::new();
    for s in signatures.iter().filter(|s| rule.keys.contains(&s.key)) {
        let refused = match keys.get(&s.key) {
            None => Some(format!("key {} is no longer trusted", s.key)),
            Some(k) if k.fingerprint != s.fingerprint => Some(format!(
                "key {} was replaced after it signed (it signed as {}, it is {} now)",
                s.key, s.fingerprint, k.fingerprint
            )),
            Some(k) if !k.covers_model => {
                Some(format!("key {} may no longer sign this model", s.key))
            }
            Some(_) if !rule.path.starts_with(&s.path) => Some(format!(
                "key {}'s signature covers only the artifacts under {}",
                s.key, s.path
            )),
            Some(_) => None,
        };
        match refused {
            None => {
                let over = if s.path.is_empty() {
                    "every artifact".to_owned()
                } else {
                    format!("the artifacts under {}", s.path)
                };
                return Check {
                    check: "signed_by".into(),
                    ok: true,
                    detail: format!("signed by trusted key {} over {over}", s.key),
                    expected: Some(rule.to_json()),
                    observed: Some(json!({"key": s.key, "fingerprint": s.fingerprint,
                                          "path": s.path})),
                };
            }
            Some(why) => seen.push(json!({"key": s.key, "path": s.path, "refused": why})),
        }
    }
    let why: Vec<&str> = seen
        .iter()
        .filter_map(|s| s.get("refused").and_then(Value::as_str))
        .collect();
    let detail = if why.is_empty() {
        format!(
            "no signature by {} over {}: sign the files and POST the bundle to …/signatures",
            rule.keys.join(" or "),
            rule.scope()
        )
    } else {
        format!(
            "no valid signature by {} over {}: {}",
            rule.keys.join(" or "),
            rule.scope(),
            why.join("; ")
        )
    };
    Check {
        check: "signed_by".into(),
        ok: false,
        detail,
        expected: Some(rule.to_json()),
        observed: Some(json!({"signatures": seen})),
    }
}

/// Which version a candidate's schema is checked against: the one on the policy's own stage,
/// or the one on another stage.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaCompatible {
    ThisStage,
    WithStage(StageName),
}

impl SchemaCompatible {
    /// `true`, or `{"with_stage": "…"}`; `false` or `null`: no check.
    pub fn parse(value: Option<Value>) -> Result<Option<Self>> {
        let bad = || {
            Error::validation(
                "schema_compatible",
                "schema_compatible is true, false or {\"with_stage\": \"<stage>\"}",
            )
        };
        match value {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
            Some(Value::Bool(true)) => Ok(Some(Self::ThisStage)),
            Some(Value::Object(o)) if o.len() == 1 => {
                let stage = o
                    .get("with_stage")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                Ok(Some(Self::WithStage(StageName::parse(
                    "schema_compatible.with_stage",
                    stage,
                )?)))
            }
            Some(_) => Err(bad()),
        }
    }

    /// As the API shows it and the store keeps it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::ThisStage => Value::Bool(true),
            Self::WithStage(s) => json!({"with_stage": s.as_str()}),
        }
    }
}

/// `schema_compatible`: no change from the schema of the version on `stage` (`holder`: its
/// number and schema, when the stage holds one) to the candidate's breaks that version's
/// callers.
pub fn schema_compatible_check(
    stage: &str,
    candidate: Option<&Schema>,
    holder: Option<(i64, Option<&Schema>)>,
) -> Check {
    let pass = |detail: String| Check {
        check: "schema_compatible".into(),
        ok: true,
        detail,
        expected: None,
        observed: None,
    };
    let (version, held) = match holder {
        None => return pass(format!("{stage} holds no version to compare with")),
        Some((v, None)) => return pass(format!("version {v} on {stage} declares no schema")),
        Some((v, Some(s))) => (v, s),
    };
    let breaking: Vec<Change> = schema::diff(Some(held), candidate)
        .into_iter()
        .filter(|c| !c.compatible)
        .collect();
    let detail = if breaking.is_empty() {
        format!("no change breaks the callers of version {version} on {stage}")
    } else {
        let each: Vec<&str> = breaking.iter().map(|c| c.detail.as_str()).collect();
        format!(
            "{} change{} would break the callers of version {version} on {stage}: {}",
            breaking.len(),
            if breaking.len() == 1 { "" } else { "s" },
            each.join("; ")
        )
    };
    Check {
        check: "schema_compatible".into(),
        ok: breaking.is_empty(),
        detail,
        expected: Some(json!({"compatible_with": format!("{stage}:{version}")})),
        observed: (!breaking.is_empty()).then(|| json!({"breaking": breaking})),
    }
}

impl Policy {
    /// Adds the `schema_compatible` check.
    pub fn with_schema_compatible(mut self, check: Option<SchemaCompatible>) -> Self {
        self.schema_compatible = check;
        self
    }

    /// Adds the `signed_by` check.
    pub fn with_signed_by(mut self, check: Option<SignedBy>) -> Self {
        self.signed_by = check;
        self
    }

    /// Checks a policy as sent: a `require` that parses (its error, with the position, is the
    /// filter parser's), metric keys, tolerances, a soak only with a stage to soak on, and
    /// 0 to [`MAX_APPROVALS`] approvals.
    pub fn new(
        require: Option<String>,
        no_regression: Vec<NoRegression>,
        after_stage: Option<StageName>,
        min_soak: Option<&str>,
        approvals: i64,
    ) -> Result<Self> {
        if let Some(r) = &require {
            Filter::parse(r).map_err(|e| e.with_field("require"))?;
        }
        if no_regression.len() > MAX_NO_REGRESSION {
            return Err(Error::validation(
                "no_regression",
                format!("at most {MAX_NO_REGRESSION} metrics"),
            ));
        }
        for (i, rule) in no_regression.iter().enumerate() {
            if !filter::is_metric_key(&rule.metric) {
                return Err(Error::validation(
                    format!("no_regression[{i}].metric"),
                    "a metric key: 1 to 250 letters, digits and _ . : / -",
                ));
            }
            if !(rule.tolerance.is_finite() && rule.tolerance >= 0.0) {
                return Err(Error::validation(
                    format!("no_regression[{i}].tolerance"),
                    "a tolerance is a finite number from 0",
                ));
            }
        }
        let min_soak = min_soak.map(parse_duration).transpose()?;
        if min_soak.is_some() && after_stage.is_none() {
            return Err(Error::validation(
                "min_soak",
                "min_soak is the time on after_stage: name after_stage too",
            ));
        }
        if !(0..=MAX_APPROVALS).contains(&approvals) {
            return Err(Error::validation(
                "approvals",
                format!("approvals is from 0 to {MAX_APPROVALS}"),
            ));
        }
        Ok(Self {
            require,
            no_regression,
            after_stage,
            min_soak,
            approvals,
            schema_compatible: None,
            signed_by: None,
        })
    }
}

/// One check of a promote against a policy: what was expected, what was observed, and
/// whether that passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Value>,
}

/// `require`: the clauses of the expression the candidate does not satisfy (none: it passes).
pub fn require_check(expression: &str, failing: &[String]) -> Check {
    Check {
        check: "require".into(),
        ok: failing.is_empty(),
        detail: if failing.is_empty() {
            format!("the version satisfies {expression}")
        } else {
            format!("the version does not satisfy {}", failing.join(" and "))
        },
        expected: Some(json!(expression)),
        observed: (!failing.is_empty()).then(|| json!({"failing": failing})),
    }
}

/// `no_regression` for one metric: the candidate's last value against the holder's, when the
/// stage holds a version (`holder`: its number and last value, if it has the metric).
pub fn no_regression_check(
    rule: &NoRegression,
    stage: &str,
    candidate: Option<f64>,
    holder: Option<(i64, Option<f64>)>,
) -> Check {
    let name = format!("no_regression:{}", rule.metric);
    let pass = |detail: String| Check {
        check: name.clone(),
        ok: true,
        detail,
        expected: None,
        observed: candidate.map(|c| json!(c)),
    };
    let (holder_version, holder_value) = match holder {
        None => return pass(format!("{stage} holds no version to compare with")),
        Some((v, None)) => {
            return pass(format!(
                "version {v} on {stage} has no metric {}",
                rule.metric
            ));
        }
        Some((v, Some(value))) => (v, value),
    };
    let (bound, ok, word) = if rule.higher_is_better {
        let bound = holder_value - rule.tolerance;
        (bound, candidate.is_some_and(|c| c >= bound), "at least")
    } else {
        let bound = holder_value + rule.tolerance;
        (bound, candidate.is_some_and(|c| c <= bound), "at most")
    };
    let detail = match candidate {
        None => format!("the version has no metric {}", rule.metric),
        Some(c) => format!(
            "{} is {c}; {word} {bound} needed (version {holder_version} on {stage} has \
             {holder_value}, tolerance {})",
            rule.metric, rule.tolerance
        ),
    };
    Check {
        check: name,
        ok,
        detail,
        expected: Some(json!({ if rule.higher_is_better { "min" } else { "max" }: bound })),
        observed: Some(candidate.map_or(Value::Null, |c| json!(c))),
    }
}

/// `after_stage`: the candidate is on that stage now (`since`: when it got there, if it is).
pub fn after_stage_check(stage: &str, version: i64, since: Option<Timestamp>) -> Check {
    Check {
        check: "after_stage".into(),
        ok: since.is_some(),
        detail: if since.is_some() {
            format!("version {version} is on {stage}")
        } else {
            format!("version {version} is not on {stage}")
        },
        expected: Some(json!(stage)),
        observed: None,
    }
}

/// `min_soak`: the candidate has been on the stage at least `seconds` by `now`.
pub fn min_soak_check(
    stage: &str,
    seconds: i64,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Check {
    let soaked = since.map(|s| (now - s).num_seconds().max(0));
    Check {
        check: "min_soak".into(),
        ok: soaked.is_some_and(|s| s >= seconds),
        detail: match soaked {
            Some(s) => format!(
                "on {stage} for {}, {} needed",
                format_duration(s),
                format_duration(seconds)
            ),
            None => format!("not on {stage}"),
        },
        expected: Some(json!(format_duration(seconds))),
        observed: soaked.map(|s| json!(format_duration(s))),
    }
}

/// Parses an ISO 8601 duration of days, hours, minutes and seconds (`PT1H`, `P2D`,
/// `P1DT12H`, `PT90M`, `P1W`) into seconds, up to a year.
pub fn parse_duration(raw: &str) -> Result<i64> {
    parse_duration_up_to(raw, 366 * 86_400)
}

/// As [`parse_duration`], up to `max` seconds.
pub fn parse_duration_up_to(raw: &str, max: i64) -> Result<i64> {
    let bad = || {
        Error::validation(
            "min_soak",
            format!("{raw:?} is not an ISO 8601 duration such as PT1H, P2D or P1DT12H"),
        )
    };
    let rest = raw.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, i64)]| -> Result<()> {
        let mut number = String::new();
        let mut last = 0;
        for ch in part.chars() {
            if ch.is_ascii_digit() {
                number.push(ch);
                continue;
            }
            let i = units.iter().position(|(u, _)| *u == ch).ok_or_else(bad)?;
            if number.is_empty() || i < last {
                return Err(bad());
            }
            let n: i64 = number.parse().map_err(|_| bad())?;
            let add = n.checked_mul(units[i].1).ok_or_else(bad)?;
            total = total.checked_add(add).ok_or_else(bad)?;
            number.clear();
            last = i + 1;
            any = true;
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    take(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
    if let Some(t) = time {
        take(t, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    if !any || total > max {
        return Err(bad());
    }
    Ok(total)
}

/// Seconds as an ISO 8601 duration: `P1DT2H`, `PT30M`, `PT0S`.
pub fn format_duration(seconds: i64) -> String {
    let (d, rest) = (seconds / 86_400, seconds % 86_400);
    let (h, m, s) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if rest > 0 || d == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || rest == 0 {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

/// The approvals a policy asks for, as a check a dry run shows (a promote would open a
/// request).
pub fn approvals_check(needed: i64) -> Check {
    Check {
        check: "approvals".into(),
        ok: false,
        detail: format!("{needed} approvals needed: a promote opens a promotion request"),
        expected: Some(serde_json::json!(needed)),
        observed: Some(serde_json::json!(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(higher: bool, tolerance: f64) -> NoRegression {
        NoRegression {
            metric: "val_acc".into(),
            higher_is_better: higher,
            tolerance,
        }
    }

    #[test]
    fn durations_parse_and_print_back() {
        for (raw, secs) in [
            ("PT1H", 3_600),
            ("P2D", 172_800),
            ("P1DT12H", 129_600),
            ("PT90M", 5_400),
            ("P1W", 604_800),
            ("PT1H30M15S", 5_415),
        ] {
            assert_eq!(parse_duration(raw).unwrap(), secs, "{raw}");
        }
        for bad in [
            "", "P", "PT", "1H", "PT1", "PTH", "P1H", "PT1S1H", "P-1D", "P400D", "pt1h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(3_600), "PT1H");
        assert_eq!(format_duration(129_600), "P1DT12H");
        assert_eq!(format_duration(0), "PT0S");
        assert_eq!(format_duration(5_415), "PT1H30M15S");
    }

    #[test]
    fn no_regression_compares_with_the_holder_within_the_tolerance() {
        let r = rule(true, 0.01);
        let c = no_regression_check(&r, "production", Some(0.925), Some((3, Some(0.93))));
        assert!(c.ok);
        assert_eq!(c.expected, Some(json!({"min": 0.93 - 0.01})));
        assert_eq!(c.observed, Some(json!(0.925)));
        let c = no_regression_check(&r, "production", Some(0.91), Some((3, Some(0.93))));
        assert!(!c.ok);
        assert!(
            c.detail.contains("version 3 on production has 0.93"),
            "{}",
            c.detail
        );
        let lower = rule(false, 0.0);
        assert!(no_regression_check(&lower, "p", Some(0.2), Some((1, Some(0.3)))).ok);
        assert!(!no_regression_check(&lower, "p", Some(0.31), Some((1, Some(0.3)))).ok);
        assert_eq!(
            no_regression_check(&lower, "p", Some(0.31), Some((1, Some(0.3)))).expected,
            Some(json!({"max": 0.3}))
        );
    }

    #[test]
    fn no_regression_passes_an_empty_stage_and_fails_a_candidate_without_the_metric() {
        let r = rule(true, 0.0);
        assert!(no_regression_check(&r, "p", None, None).ok);
        assert!(no_regression_check(&r, "p", Some(0.1), Some((2, None))).ok);
        let c = no_regression_check(&r, "p", None, Some((2, Some(0.5))));
        assert!(!c.ok);
        assert_eq!(c.observed, Some(Value::Null));
    }

    #[test]
    fn soak_counts_from_when_the_version_reached_the_stage() {
        let now = chrono::DateTime::from_timestamp(10_000, 0).unwrap();
        let since = chrono::DateTime::from_timestamp(10_000 - 3_599, 0).unwrap();
        let c = min_soak_check("staging", 3_600, Some(since), now);
        assert!(!c.ok);
        assert_eq!(c.observed, Some(json!("PT59M59S")));
        assert_eq!(c.expected, Some(json!("PT1H")));
        let since = chrono::DateTime::from_timestamp(10_000 - 3_600, 0).unwrap();
        assert!(min_soak_check("staging", 3_600, Some(since), now).ok);
        assert!(!min_soak_check("staging", 0, None, now).ok);
        assert!(!after_stage_check("staging", 4, None).ok);
    }

    #[test]
    fn policies_are_checked_when_set() {
        let ok = Policy::new(Some("metric.acc >= 0.9".into()), vec![], None, None, 2);
        assert!(ok.is_ok());
        let e = Policy::new(Some("metric.acc >=".into()), vec![], None, None, 0).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_filter", Some("require"))
        );
        assert!(e.position.is_some());
        let e = Policy::new(None, vec![], None, Some("PT1H"), 0).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("min_soak"));
        let e = Policy::new(None, vec![], None, None, 6).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("approvals"));
        let e = Policy::new(None, vec![rule(true, -1.0)], None, None, 0).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("no_regression[0].tolerance"));
    }

    #[test]
    fn schema_compatible_parses_and_judges() {
        assert_eq!(SchemaCompatible::parse(None).unwrap(), None);
        assert_eq!(SchemaCompatible::parse(Some(json!(false))).unwrap(), None);
        assert_eq!(
            SchemaCompatible::parse(Some(json!(true))).unwrap(),
            Some(SchemaCompatible::ThisStage)
        );
        let other = SchemaCompatible::parse(Some(json!({"with_stage": "staging"})))
            .unwrap()
            .unwrap();
        assert_eq!(other.to_json(), json!({"with_stage": "staging"}));
        for bad in [
            json!(1),
            json!("yes"),
            json!({"stage": "x"}),
            json!({"with_stage": "Bad Name"}),
        ] {
            assert!(SchemaCompatible::parse(Some(bad.clone())).is_err(), "{bad}");
        }
        let live =
            Schema::parse("s", json!({"inputs": [{"name": "age", "type": "long"}]})).unwrap();
        let widened = Schema::parse(
            "s",
            json!({"inputs": [{"name": "age", "type": "long"},
                {"name": "city", "type": "string", "required": false}]}),
        )
        .unwrap();
        let broken =
            Schema::parse("s", json!({"inputs": [{"name": "years", "type": "long"}]})).unwrap();
        assert!(schema_compatible_check("production", Some(&broken), None).ok);
        assert!(schema_compatible_check("production", Some(&broken), Some((3, None))).ok);
        assert!(schema_compatible_check("production", Some(&widened), Some((3, Some(&live)))).ok);
        let c = schema_compatible_check("production", Some(&broken), Some((3, Some(&live))));
        assert!(!c.ok);
        assert!(
            c.detail
                .starts_with("2 changes would break the callers of version 3 on production"),
            "{}",
            c.detail
        );
        assert_eq!(c.observed.unwrap()["breaking"].as_array().unwrap().len(), 2);
        let none = schema_compatible_check("production", None, Some((3, Some(&live))));
        assert!(
            !none.ok,
            "a candidate without a schema cannot be shown compatible"
        );
    }

    #[test]
    fn signed_by_parses_a_list_or_keys_with_a_path() {
        let list = SignedBy::parse(Some(json!(["release", "release", "ci-2026"])))
            .unwrap()
            .unwrap();
        assert_eq!(list.keys, ["release", "ci-2026"]);
        assert_eq!(list.path, "");
        assert_eq!(list.to_json(), json!(["release", "ci-2026"]));
        let with_path = SignedBy::parse(Some(json!({"keys": ["release"], "path": "model/"})))
            .unwrap()
            .unwrap();
        assert_eq!(with_path.path, "model/");
        assert_eq!(
            with_path.to_json(),
            json!({"keys": ["release"], "path": "model/"})
        );
        assert_eq!(SignedBy::parse(None).unwrap(), None);
        assert_eq!(SignedBy::parse(Some(Value::Null)).unwrap(), None);
        for bad in [
            json!([]),
            json!(true),
            json!("release"),
            json!([1]),
            json!(["bad name"]),
            json!({"keys": ["release"], "path": "model"}),
            json!({"keys": ["release"], "other": 1}),
            json!({"path": "model/"}),
            json!((0..21).map(|i| format!("k{i}")).collect::<Vec<_>>()),
        ] {
            assert!(SignedBy::parse(Some(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn signed_by_needs_a_named_key_still_trusted_over_the_path() {
        let rule = SignedBy {
            keys: vec!["release".into()],
            path: "model/".into(),
        };
        let sig = |key: &str, fp: &str, path: &str| Signature {
            key: key.into(),
            fingerprint: fp.into(),
            path: path.into(),
        };
        let trusted = |fp: &str, covers_model: bool| {
            BTreeMap::from([(
                "release".to_owned(),
                KeyNow {
                    fingerprint: fp.into(),
                    covers_model,
                },
            )])
        };
        let none = signed_by_check(&rule, &[], &trusted("aa", true));
        assert!(!none.ok);
        assert!(
            none.detail
                .starts_with("no signature by release over the artifacts under model/")
        );
        // Over the directory itself, or one above it.
        assert!(
            signed_by_check(
                &rule,
                &[sig("release", "aa", "model/")],
                &trusted("aa", true)
            )
            .ok
        );
        assert!(signed_by_check(&rule, &[sig("release", "aa", "")], &trusted("aa", true)).ok);
        let narrower = signed_by_check(
            &rule,
            &[sig("release", "aa", "model/weights/")],
            &trusted("aa", true),
        );
        assert!(!narrower.ok);
        assert!(
            narrower
                .detail
                .contains("covers only the artifacts under model/weights/")
        );
        // By another key, a key since removed, replaced, or no longer allowed on the model.
        assert!(!signed_by_check(&rule, &[sig("other", "aa", "model/")], &trusted("aa", true)).ok);
        let gone = signed_by_check(&rule, &[sig("release", "aa", "model/")], &BTreeMap::new());
        assert!(!gone.ok);
        assert!(gone.detail.contains("key release is no longer trusted"));
        let replaced = signed_by_check(
            &rule,
            &[sig("release", "aa", "model/")],
            &trusted("bb", true),
        );
        assert!(!replaced.ok);
        assert!(replaced.detail.contains("was replaced after it signed"));
        assert!(
            !signed_by_check(
                &rule,
                &[sig("release", "aa", "model/")],
                &trusted("aa", false)
            )
            .ok
        );
        // One good signature among refused ones passes.
        let mixed = signed_by_check(
            &rule,
            &[
                sig("release", "aa", "model/weights/"),
                sig("release", "aa", "model/"),
            ],
            &trusted("aa", true),
        );
        assert!(mixed.ok);
        assert_eq!(mixed.observed.unwrap()["path"], "model/");
        // Without a path, every artifact must be signed.
        let all = SignedBy {
            keys: vec!["release".into()],
            path: String::new(),
        };
        assert!(
            !signed_by_check(
                &all,
                &[sig("release", "aa", "model/")],
                &trusted("aa", true)
            )
            .ok
        );
        assert!(signed_by_check(&all, &[sig("release", "aa", "")], &trusted("aa", true)).ok);
    }
}
