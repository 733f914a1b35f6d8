//! Property tests of the domain's parsers and rules, each against a statement of what must
//! hold for every input (or a naive reference), not a list of examples.

use super::artifact::{ArtifactPath, MAX_PATH_BYTES, MAX_SEGMENT_BYTES};
use super::filter::{Filter, OrderBy};
use super::metrics::{Agg, LEVELS, Point, block_aggs, scaled};
use super::names::{ModelName, StageName};
use super::stage::StageStack;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Text that looks like a filter often enough to reach deep into the parser: its words,
/// operators, quotes and escapes, numbers, and anything else.
fn filter_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("metric.".to_owned()),
        Just("tag.".to_owned()),
        Just("config.".to_owned()),
        Just("status".to_owned()),
        Just(" and ".to_owned()),
        Just("and".to_owned()),
        prop_oneof![
            Just("="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just(">="),
            Just("!"),
            Just("=<")
        ]
        .prop_map(str::to_owned),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        "[a-z_/.:-]{1,8}",
        "-?[0-9]{0,4}(\\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
        any::<char>().prop_map(String::from),
        Just(" ".to_owned()),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

fn points() -> impl Strategy<Value = Vec<Point>> {
    prop::collection::btree_map(0i64..40_000, -1e6f64..1e6, 1..300).prop_map(|m| {
        m.into_iter()
            .map(|(step, value)| Point { step, value, at: 0 })
            .collect()
    })
}

/// `(count, min, max, first step, last step, last value)`.
type Plain = (i64, f64, f64, i64, i64, f64);

/// Aggregates per `(level, block)` computed the plain way.
fn naive(points: &[Point]) -> BTreeMap<(i16, i64), Plain> {
    let mut out = BTreeMap::new();
    for (level, size) in LEVELS {
        for p in points {
            let e = out.entry((level, p.step / size)).or_insert((
                0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                i64::MAX,
                i64::MIN,
                0.0,
            ));
            e.0 += 1;
            e.1 = e.1.min(p.value);
            e.2 = e.2.max(p.value);
            e.3 = e.3.min(p.step);
            if p.step > e.4 {
                e.4 = p.step;
                e.5 = p.value;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The filter parser never panics, and an error names a position inside the input.
    #[test]
    fn filters_never_panic_and_errors_point_inside(input in filter_like()) {
        if let Err(e) = Filter::parse(&input) {
            prop_assert_eq!(e.code, "invalid_filter");
            let position = e.position.expect("a filter error carries its position");
            prop_assert!(position <= input.chars().count(), "{} > {:?}", position, input);
        }
        let _ = OrderBy::parse(&input);
    }

    /// Arbitrary text is no harder: never a panic, positions inside.
    #[test]
    fn any_text_as_a_filter(input in "\\PC{0,80}") {
        if let Err(e) = Filter::parse(&input) {
            let position = e.position.expect("a filter error carries its position");
            prop_assert!(position <= input.chars().count());
        }
    }

    /// A model or stage name is accepted exactly when it follows its documented pattern.
    #[test]
    fn names_follow_their_patterns(s in "[a-z0-9._ A-Z/-]{0,130}") {
        let model_ok = !s.is_empty() && s.len() <= 128
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
        prop_assert_eq!(ModelName::parse("name", &s).is_ok(), model_ok);
        let stage_ok = !s.is_empty() && s.len() <= 63
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
        prop_assert_eq!(StageName::parse("stage", &s).is_ok(), stage_ok);
    }

    /// An accepted artifact path can never name anything outside its version's folder or
    /// decode into something else.
    #[test]
    fn artifact_paths_stay_inside(raw in "(\\PC|/|\\.|%|\\\\){0,40}") {
        if let Ok(p) = ArtifactPath::parse(&raw) {
            prop_assert!(!raw.is_empty() && raw.len() <= MAX_PATH_BYTES && !raw.starts_with('/'));
            for segment in p.segments() {
                prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
                prop_assert!(segment.len() <= MAX_SEGMENT_BYTES);
            }
            prop_assert!(!raw.chars().any(|c| c.is_control() || c == '\\' || c == '%'));
        }
    }

    /// Rollup aggregates of a batch agree with a plain computation, and aggregates of two
    /// consecutive batches merged (as appends are) agree with those of the whole.
    #[test]
    fn rollups_agree_with_a_naive_computation(all in points(), cut in 0usize..300) {
        let reference = naive(&all);
        let whole: BTreeMap<(i16, i64), Agg> =
            block_aggs(&all).into_iter().map(|(l, b, a)| ((l, b), a)).collect();
        prop_assert_eq!(whole.len(), reference.len());
        for (key, agg) in &whole {
            let (count, min, max, first, last_step, last) = reference[key];
            prop_assert_eq!((agg.count, agg.min, agg.max), (count, min, max));
            prop_assert_eq!((agg.first_step, agg.last_step, agg.last), (first, last_step, last));
        }
        let cut = cut.min(all.len());
        let mut merged: BTreeMap<(i16, i64), Agg> = BTreeMap::new();
        for part in [&all[..cut], &all[cut..]] {
            for (l, b, a) in block_aggs(part) {
                merged
                    .entry((l, b))
                    .and_modify(|m| *m = m.then(a))
                    .or_insert(a);
            }
        }
        prop_assert_eq!(merged.len(), whole.len());
        for (key, m) in &merged {
            let w = whole[key];
            prop_assert_eq!((m.count, m.min, m.max, m.first_step, m.last_step, m.last),
                (w.count, w.min, w.max, w.first_step, w.last_step, w.last));
            let bound = 1e-12 * w.count as f64 * scaled(1e6);
            prop_assert!((m.scaled_sum - w.scaled_sum).abs() <= bound);
        }
    }

    /// The stage stack against the plainest reference: the list of promotions, a rollback
    /// dropping entries from the top.
    #[test]
    fn the_stage_stack_is_a_list_of_promotions(ops in prop::collection::vec((0u8..3, 1i64..5), 0..40)) {
        let mut stack = StageStack::default();
        let mut reference: Vec<i64> = Vec::new();
        for (op, v) in ops {
            match op {
                0 => {
                    let changed = stack.promote(v);
                    prop_assert_eq!(changed, reference.last() != Some(&v));
                    if changed {
                        reference.push(v);
                    }
                }
                1 => {
                    let below = reference.len().checked_sub(1).map(|top| &reference[..top]);
                    let target = below.and_then(|b| b.iter().rposition(|&x| x == v));
                    match stack.rollback("s", Some(v)) {
                        Ok(now) => {
                            let p = target.expect("rolled back to a version beneath the top");
                            reference.truncate(p + 1);
                            prop_assert_eq!(now, v);
                        }
                        Err(_) => prop_assert!(target.is_none()),
                    }
                }
                _ => {
                    let result = stack.rollback("s", None);
                    if reference.len() >= 2 {
                        reference.pop();
                        prop_assert_eq!(result.ok(), reference.last().copied());
                    } else {
                        prop_assert!(result.is_err());
                    }
                }
            }
            prop_assert_eq!(stack.current(), reference.last().copied());
            prop_assert_eq!(stack.depth(), reference.len());
        }
    }
}
