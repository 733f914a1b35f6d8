//! Generated operation sequences against the real server, checked against the domain's
//! reference model after every step. On both backends.

use crate::helpers::TestApp;
use modelreg::domain::stage::StageStack;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;

crate::backend_tests!(stage_changes_follow_the_reference_stack);

#[derive(Debug, Clone, Copy)]
enum Op {
    Promote(i64),
    Rollback,
    RollbackTo(i64),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..5).prop_map(Op::Promote),
        2 => Just(Op::Rollback),
        2 => (1i64..5).prop_map(Op::RollbackTo),
        1 => Just(Op::Clear),
    ]
}

/// 24 generated sequences of up to 25 promotes, rollbacks and clears, each on a stage of its
/// own, applied over HTTP and to [`StageStack`]: after every step the answer (version or
/// error code) and the stage read back agree with the reference.
async fn stage_changes_follow_the_reference_stack(app: &TestApp) {
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    for _ in 1..=4 {
        app.post("/api/v1/models/m/versions", json!({"finalize": true}))
            .await
            .ok(201);
    }
    let mut runner = TestRunner::deterministic();
    let sequences = prop::collection::vec(op(), 1..25);
    for case in 0..24 {
        let ops = sequences.new_tree(&mut runner).unwrap().current();
        let stage = format!("s{case}");
        let base = format!("/api/v1/models/m/stages/{stage}");
        let mut reference = StageStack::default();
        for (i, op) in ops.iter().enumerate() {
            let (answer, expected) = match *op {
                Op::Promote(v) => {
                    reference.promote(v);
                    let r = app
                        .post(&format!("{base}/promote"), json!({"version": v}))
                        .await;
                    (r, Ok(Some(v)))
                }
                Op::Rollback | Op::RollbackTo(_) => {
                    let to = match *op {
                        Op::RollbackTo(v) => Some(v),
                        _ => None,
                    };
                    let expected = reference.rollback(&stage, to).map(Some).map_err(|e| e.code);
                    let body = to.map_or(json!({}), |v| json!({"to_version": v}));
                    (app.post(&format!("{base}/rollback"), body).await, expected)
                }
                Op::Clear => {
                    reference = StageStack::default();
                    (app.delete(&base).await, Ok(None))
                }
            };
            let context = format!("{stage}, step {i} of {ops:?}");
            match expected {
                Ok(version) => assert_eq!(answer.ok(200)["version"], json!(version), "{context}"),
                Err(code) => {
                    answer.problem(409, code);
                }
            }
            let now = app.get(&base).await;
            match reference.current() {
                Some(v) => assert_eq!(now.ok(200)["version"], v, "{context}"),
                None => {
                    now.problem(404, "stage_empty");
                }
            }
        }
    }
}
