//! Stage guards: conditions on the live version's production metrics over a recent
//! wall-clock window, and the verdict the evaluator acts on (roll back, or record).
//!
//! A condition is absolute (`mean of prod/error_rate over PT10M > 0.05`) or relative to the
//! version beneath on the stage, over the same window just before it was replaced (`p95
//! latency worse than the previous version's by 20 %`). A window with fewer than
//! `min_points` points decides nothing. The guard trips when any condition is breached.

use super::metrics::check_key;
use super::policy::{format_duration, parse_duration};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Mean,
    Max,
    Min,
    Last,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => observed > threshold,
            Op::Ge => observed >= threshold,
            Op::Lt => observed < threshold,
            Op::Le => observed <= threshold,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Rollback,
    Notify,
}

/// One condition, as stored and shown: `window` in seconds inside, ISO 8601 outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub metric: String,
    pub aggregate: Aggregate,
    /// Seconds.
    #[serde(with = "iso_seconds")]
    pub window: i64,
    #[serde(flatten)]
    pub test: Test,
}

/// What a condition compares the observed value with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Test {
    /// Breached when `observed op threshold`.
    Absolute { op: Op, threshold: f64 },
    /// Breached when the observed value is worse than the previous version's by more than
    /// this fraction of it (0.2: 20 % worse).
    Relative {
        worse_than_previous_by: f64,
        higher_is_better: bool,
    },
}

mod iso_seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_duration(&raw).map_err(|e| serde::de::Error::custom(e.detail))
    }
}

/// A guard as set on a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guard {
    pub conditions: Vec<Condition>,
    pub min_points: i64,
    /// Seconds after a promote before the guard judges the new version.
    pub grace: i64,
    /// Seconds between evaluations.
    pub period: i64,
    pub action: Action,
}

/// The body of `PUT …/guard`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardBody {
    pub conditions: Vec<serde_json::Value>,
    pub min_points: Option<i64>,
    pub grace: Option<String>,
    pub period: Option<String>,
    pub action: Action,
}

pub const MAX_CONDITIONS: usize = 16;
/// Longest window: a guard reads at most this far back.
pub const MAX_WINDOW: i64 = 7 * 86_400;
const DEFAULT_PERIOD: i64 = 15;
const MIN_PERIOD: i64 = 1;
const MAX_PERIOD: i64 = 3_600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionBody {
    metric: String,
    aggregate: Aggregate,
    window: String,
    op: Option<Op>,
    threshold: Option<f64>,
    worse_than_previous_by: Option<f64>,
    higher_is_better: Option<bool>,
}

fn span(field: &str, raw: &str, min: i64, max: i64) -> Result<i64> {
    let s = parse_duration(raw).map_err(|e| {
        Error::validation(
            field,
            e.detail.replace("min_soak", field), // the parser names its usual field
        )
    })?;
    if !(min..=max).contains(&s) {
        return Err(Error::validation(
            field,
            format!(
                "{raw} is out of range: from {} to {}",
                format_duration(min),
                format_duration(max)
            ),
        ));
    }
    Ok(s)
}

impl Guard {
    /// Validates a `PUT` body: every field named in the error that refuses it.
    pub fn from_body(body: GuardBody) -> Result<Self> {
        if body.conditions.is_empty() || body.conditions.len() > MAX_CONDITIONS {
            return Err(Error::validation(
                "conditions",
                format!("give 1 to {MAX_CONDITIONS} conditions"),
            ));
        }
        let mut conditions = Vec::with_capacity(body.conditions.len());
        for (i, raw) in body.conditions.into_iter().enumerate() {
            let field = |name: &str| format!("conditions[{i}].{name}");
            let c: ConditionBody = serde_json::from_value(raw)
                .map_err(|e| Error::validation(format!("conditions[{i}]"), e.to_string()))?;
            check_key(&field("metric"), &c.metric)?;
            let window = span(&field("window"), &c.window, 1, MAX_WINDOW)?;
            let test = match (
                c.op,
                c.threshold,
                c.worse_than_previous_by,
                c.higher_is_better,
            ) {
                (Some(op), Some(threshold), None, None) => {
                    if !threshold.is_finite() {
                        return Err(Error::validation(
                            field("threshold"),
                            "must be a finite number",
                        ));
                    }
                    Test::Absolute { op, threshold }
                }
                (None, None, Some(by), Some(higher_is_better)) => {
                    if !(by.is_finite() && by >= 0.0) {
                        return Err(Error::validation(
                            field("worse_than_previous_by"),
                            "must be a number from 0 (a fraction: 0.2 is 20 % worse)",
                        ));
                    }
                    Test::Relative {
                        worse_than_previous_by: by,
                        higher_is_better,
                    }
                }
                _ => {
                    return Err(Error::validation(
                        format!("conditions[{i}]"),
                        "give either op and threshold, or worse_than_previous_by and higher_is_better",
                    ));
                }
            };
            conditions.push(Condition {
                metric: c.metric,
                aggregate: c.aggregate,
                window,
                test,
            });
        }
        let min_points = body.min_points.unwrap_or(1);
        if !(1..=1_000_000).contains(&min_points) {
            return Err(Error::validation("min_points", "must be from 1 to 1000000"));
        }
        let grace = match body.grace.as_deref() {
            Some(g) => span("grace", g, 0, MAX_WINDOW)?,
            None => 0,
        };
        let period = match body.period.as_deref() {
            Some(p) => span("period", p, MIN_PERIOD, MAX_PERIOD)?,
            None => DEFAULT_PERIOD,
        };
        Ok(Self {
            conditions,
            min_points,
            grace,
            period,
            action: body.action,
        })
    }
}

/// The points of one window, summarised as a condition reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The value with the latest timestamp (the highest step among equals).
    pub last: Option<(i64, i64, f64)>,
}

impl Window {
    /// Adds a point `(at, step, value)`.
    pub fn add(&mut self, at: i64, step: i64, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
        if self.last.is_none_or(|(a, s, _)| (at, step) >= (a, s)) {
            self.last = Some((at, step, value));
        }
    }

    /// The aggregate, `None` for a window without points (a count is 0 then).
    pub fn value(&self, aggregate: Aggregate) -> Option<f64> {
        if aggregate == Aggregate::Count {
            return Some(self.count as f64);
        }
        if self.count == 0 {
            return None;
        }
        Some(match aggregate {
            Aggregate::Mean => self.sum / self.count as f64,
            Aggregate::Max => self.max,
            Aggregate::Min => self.min,
            Aggregate::Last => self.last.map_or(f64::NAN, |l| l.2),
            Aggregate::Count => self.count as f64,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Tripped,
    Holding,
    InsufficientData,
}

/// One condition's verdict, as `GET …/guard` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub metric: String,
    pub state: State,
    pub observed: Option<f64>,
    pub points: i64,
    /// The previous version's value over its window (relative conditions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_points: Option<i64>,
    /// The value past which the condition is breached.
    pub limit: Option<f64>,
    pub detail: String,
}

/// Judges one condition: the live version's window, and for a relative condition the
/// previous version's (`None`: there is none beneath on the stage).
pub fn judge(c: &Condition, min_points: i64, live: &Window, previous: Option<&Window>) -> Verdict {
    let what = format!(
        "{} of {} over {}",
        aggregate_name(c.aggregate),
        c.metric,
        format_duration(c.window)
    );
    let mut v = Verdict {
        metric: c.metric.clone(),
        state: State::InsufficientData,
        observed: live.value(c.aggregate),
        points: live.count,
        baseline: None,
        baseline_points: None,
        limit: None,
        detail: String::new(),
    };
    // A count is judged whatever the number of points: "fewer than 10 requests in 5
    // minutes" is the condition itself.
    if c.aggregate != Aggregate::Count && live.count < min_points {
        v.detail = format!("{what}: {} points, {min_points} needed", live.count);
        return v;
    }
    let observed = v.observed.unwrap_or(f64::NAN);
    let (breached, limit, symbol) = match &c.test {
        Test::Absolute { op, threshold } => {
            (op.holds(observed, *threshold), *threshold, op.symbol())
        }
        Test::Relative {
            worse_than_previous_by,
            higher_is_better,
        } => {
            let Some(prev) = previous else {
                v.detail = format!("{what}: no previous version on the stage to compare with");
                return v;
            };
            v.baseline = prev.value(c.aggregate);
            v.baseline_points = Some(prev.count);
            if c.aggregate != Aggregate::Count && prev.count < min_points {
                v.detail = format!(
                    "{what}: the previous version has {} points in its window, {min_points} needed",
                    prev.count
                );
                return v;
            }
            let base = v.baseline.unwrap_or(f64::NAN);
            let margin = base.abs() * worse_than_previous_by;
            if *higher_is_better {
                let limit = base - margin;
                (observed < limit, limit, "<")
            } else {
                let limit = base + margin;
                (observed > limit, limit, ">")
            }
        }
    };
    v.limit = Some(limit);
    v.state = if breached { State::Tripped } else { State::Ok };
    v.detail = if breached {
        format!(
            "{what} is {} ({symbol} {}), {} points",
            fmt(observed),
            fmt(limit),
            live.count
        )
    } else {
        format!(
            "{what} is {}; breached when {symbol} {}",
            fmt(observed),
            fmt(limit)
        )
    };
    v
}

/// The guard's verdict: tripped when any condition is breached; else waiting for data when
/// any condition has too little; else ok.
pub fn overall(verdicts: &[Verdict]) -> State {
    if verdicts.iter().any(|v| v.state == State::Tripped) {
        State::Tripped
    } else if verdicts.iter().any(|v| v.state == State::InsufficientData) {
        State::InsufficientData
    } else {
        State::Ok
    }
}

/// The reason a trip records: every breached condition.
pub fn reason(verdicts: &[Verdict]) -> String {
    let breached: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.state == State::Tripped)
        .map(|v| v.detail.as_str())
        .collect();
    format!("guard: {}", breached.join("; "))
}

fn aggregate_name(a: Aggregate) -> &'static str {
    match a {
        Aggregate::Mean => "mean",
        Aggregate::Max => "max",
        Aggregate::Min => "min",
        Aggregate::Last => "last",
        Aggregate::Count => "count",
    }
}

fn fmt(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard(body: serde_json::Value) -> Result<Guard> {
        Guard::from_body(
            serde_json::from_value(body).map_err(|e| Error::validation("body", e.to_string()))?,
        )
    }

    fn window(values: &[f64]) -> Window {
        let mut w = Window::default();
        for (i, v) in values.iter().enumerate() {
            w.add(i as i64, i as i64, *v);
        }
        w
    }

    #[test]
    fn bodies_are_validated_field_by_field() {
        let g = guard(json!({"conditions": [
            {"metric": "prod/error_rate", "aggregate": "mean", "window": "PT10M", "op": ">", "threshold": 0.05},
            {"metric": "prod/auc", "aggregate": "last", "window": "PT1H", "worse_than_previous_by": 0.1, "higher_is_better": true}],
            "min_points": 20, "grace": "PT5M", "action": "rollback"}))
        .unwrap_or_else(|e| panic!("{}", e.detail));
        assert_eq!(g.conditions[0].window, 600);
        assert_eq!((g.min_points, g.grace, g.period), (20, 300, 15));
        let shown = serde_json::to_value(&g.conditions[0]).unwrap_or_default();
        assert_eq!(shown["window"], "PT10M");
        assert_eq!(shown["op"], ">");
        for (body, field) in [
            (
                json!({"conditions": [], "action": "rollback"}),
                "conditions",
            ),
            (
                json!({"conditions": [{"metric": "a b", "aggregate": "mean", "window": "PT1M", "op": ">", "threshold": 1}], "action": "notify"}),
                "conditions[0].metric",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "1m", "op": ">", "threshold": 1}], "action": "notify"}),
                "conditions[0].window",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "P30D", "op": ">", "threshold": 1}], "action": "notify"}),
                "conditions[0].window",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "PT1M", "op": ">"}], "action": "notify"}),
                "conditions[0]",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "p99", "window": "PT1M", "op": ">", "threshold": 1}], "action": "notify"}),
                "conditions[0]",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "PT1M", "worse_than_previous_by": -1, "higher_is_better": true}], "action": "notify"}),
                "conditions[0].worse_than_previous_by",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "PT1M", "op": ">", "threshold": 1}], "action": "notify", "min_points": 0}),
                "min_points",
            ),
            (
                json!({"conditions": [{"metric": "a", "aggregate": "mean", "window": "PT1M", "op": ">", "threshold": 1}], "action": "notify", "period": "PT0S"}),
                "period",
            ),
        ] {
            let e = guard(body)
                .err()
                .unwrap_or_else(|| panic!("{field} accepted"));
            assert_eq!(e.field.as_deref(), Some(field), "{}", e.detail);
        }
    }

    #[test]
    fn absolute_conditions_trip_past_their_threshold() {
        let c = Condition {
            metric: "err".into(),
            aggregate: Aggregate::Mean,
            window: 600,
            test: Test::Absolute {
                op: Op::Gt,
                threshold: 0.05,
            },
        };
        let v = judge(&c, 3, &window(&[0.01, 0.02, 0.03]), None);
        assert_eq!(v.state, State::Ok);
        let v = judge(&c, 3, &window(&[0.1, 0.2, 0.03]), None);
        assert_eq!(v.state, State::Tripped);
        assert!(
            v.detail
                .contains("mean of err over PT10M is 0.11 (> 0.05), 3 points"),
            "{}",
            v.detail
        );
        // Too few points decide nothing, however bad they are.
        let v = judge(&c, 3, &window(&[9.0, 9.0]), None);
        assert_eq!(v.state, State::InsufficientData);
        // A count is judged even for an empty window: no traffic is what it watches for.
        let count = Condition {
            aggregate: Aggregate::Count,
            test: Test::Absolute {
                op: Op::Lt,
                threshold: 1.0,
            },
            ..c
        };
        assert_eq!(
            judge(&count, 5, &Window::default(), None).state,
            State::Tripped
        );
    }

    #[test]
    fn relative_conditions_compare_with_the_previous_version() {
        let c = Condition {
            metric: "auc".into(),
            aggregate: Aggregate::Mean,
            window: 60,
            test: Test::Relative {
                worse_than_previous_by: 0.1,
                higher_is_better: true,
            },
        };
        let prev = window(&[0.9, 0.9]);
        assert_eq!(
            judge(&c, 2, &window(&[0.85, 0.85]), Some(&prev)).state,
            State::Ok
        );
        let v = judge(&c, 2, &window(&[0.7, 0.8]), Some(&prev));
        assert_eq!(v.state, State::Tripped);
        assert_eq!(v.baseline, Some(0.9));
        assert!((v.limit.unwrap_or_default() - 0.81).abs() < 1e-12);
        assert_eq!(
            judge(&c, 2, &window(&[0.1, 0.1]), None).state,
            State::InsufficientData
        );
        assert_eq!(
            judge(&c, 2, &window(&[0.1, 0.1]), Some(&window(&[0.9]))).state,
            State::InsufficientData
        );
        let lower = Condition {
            test: Test::Relative {
                worse_than_previous_by: 0.5,
                higher_is_better: false,
            },
            ..c
        };
        assert_eq!(
            judge(&lower, 1, &window(&[1.4]), Some(&window(&[1.0]))).state,
            State::Ok
        );
        assert_eq!(
            judge(&lower, 1, &window(&[1.6]), Some(&window(&[1.0]))).state,
            State::Tripped
        );
    }

    #[test]
    fn windows_summarise_by_time() {
        let mut w = Window::default();
        w.add(30, 1, 5.0);
        w.add(10, 9, 1.0);
        w.add(30, 2, 7.0);
        assert_eq!(w.value(Aggregate::Last), Some(7.0));
        assert_eq!(w.value(Aggregate::Min), Some(1.0));
        assert_eq!(w.value(Aggregate::Max), Some(7.0));
        assert_eq!(w.value(Aggregate::Count), Some(3.0));
        assert!((w.value(Aggregate::Mean).unwrap_or_default() - 13.0 / 3.0).abs() < 1e-12);
        let states = |s: &[State]| -> Vec<Verdict> {
            s.iter()
                .map(|&state| Verdict {
                    metric: String::new(),
                    state,
                    observed: None,
                    points: 0,
                    baseline: None,
                    baseline_points: None,
                    limit: None,
                    detail: "d".into(),
                })
                .collect()
        };
        assert_eq!(
            overall(&states(&[State::Ok, State::InsufficientData])),
            State::InsufficientData
        );
        assert_eq!(
            overall(&states(&[State::InsufficientData, State::Tripped])),
            State::Tripped
        );
        assert_eq!(overall(&states(&[State::Ok, State::Ok])), State::Ok);
    }
}
