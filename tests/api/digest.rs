//! Version digests, on both backends: fixed when a version becomes ready (by finalize, or
//! registered ready, with or without an idempotency key), equal to the manifest recomputed
//! here independently, in the version, its list and its `version.finalized` event; absent
//! while pending; `verify` finds a row changed behind the registry's back.

use crate::helpers::TestApp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

crate::backend_tests!(
    the_digest_is_fixed_at_finalize_and_recomputable,
    verify_finds_rows_changed_under_a_digest
);

/// The manifest's sha256, written out here on its own: members in name order (serde_json's
/// map is ordered, and these names are ASCII), no whitespace.
fn expected(model: &str, version: i64, config: &Value, files: &[(&str, &[u8])]) -> String {
    let hex = |b: &[u8]| hex::encode(Sha256::digest(b));
    let mut artifacts: Vec<Value> = files
        .iter()
        .map(|(p, body)| json!({"path": p, "sha256": hex(body), "size": body.len()}))
        .collect();
    artifacts.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let config_digest = format!(
        "sha256:{}",
        hex(serde_json::to_string(config).unwrap().as_bytes())
    );
    let manifest = json!({"artifacts": artifacts, "config": config_digest,
        "format": "modelreg.manifest/1", "model": model, "version": version});
    format!(
        "sha256:{}",
        hex(serde_json::to_string(&manifest).unwrap().as_bytes())
    )
}

async fn upload(app: &TestApp, model: &str, v: i64, path: &str, body: &'static [u8]) {
    app.send(
        app.client
            .put(app.url(&format!(
                "/api/v1/models/{model}/versions/{v}/artifacts/{path}"
            )))
            .body(body),
    )
    .await
    .ok(201);
}

async fn the_digest_is_fixed_at_finalize_and_recomputable(app: &TestApp) {
    app.model("fraud").await;
    let config =
        json!({"lr": 0.001, "layers": [64, 32], "name": "gbm", "nested": {"z": true, "a": null}});
    let r = app
        .post("/api/v1/models/fraud/versions", json!({"config": config}))
        .await;
    let pending = r.ok(201).clone();
    assert!(
        pending.get("digest").is_none(),
        "no digest while pending: {pending}"
    );
    let v = pending["version"].as_i64().unwrap();
    upload(app, "fraud", v, "model/weights.bin", b"weights").await;
    upload(app, "fraud", v, "README.md", b"# fraud").await;
    let ready = app
        .post_empty(&format!("/api/v1/models/fraud/versions/{v}/finalize"))
        .await
        .ok(200)
        .clone();
    let want = expected(
        "fraud",
        v,
        &config,
        &[("model/weights.bin", b"weights"), ("README.md", b"# fraud")],
    );
    assert_eq!(ready["digest"], want);
    let got = app.get(&format!("/api/v1/models/fraud/versions/{v}")).await;
    assert_eq!(got.ok(200)["digest"], want);
    let listed = app.get("/api/v1/models/fraud/versions").await;
    assert_eq!(listed.ok(200)["items"][0]["digest"], want);
    let events = app
        .get("/api/v1/events?model=fraud&action=version.finalized")
        .await;
    assert_eq!(events.ok(200)["items"][0]["details"]["digest"], want);

    // Registered ready in one request (no artifacts), and with an idempotency key.
    let config = json!({"seed": 7});
    let r = app
        .post(
            "/api/v1/models/fraud/versions",
            json!({"config": config, "finalize": true}),
        )
        .await;
    let answer = r.ok(201).clone();
    let v2 = answer["version"].as_i64().unwrap();
    let want = expected("fraud", v2, &config, &[]);
    assert_eq!(answer["digest"], want);
    let got = app
        .get(&format!("/api/v1/models/fraud/versions/{v2}"))
        .await;
    assert_eq!(got.ok(200)["digest"], want);
    let events = app
        .get("/api/v1/events?model=fraud&action=version.finalized")
        .await;
    assert_eq!(events.ok(200)["items"][1]["details"]["digest"], want);
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/models/fraud/versions"))
                .header("idempotency-key", "run-42")
                .json(&json!({"config": {}, "finalize": true})),
        )
        .await;
    let v3 = r.ok(201)["version"].as_i64().unwrap();
    assert_eq!(r.body["digest"], expected("fraud", v3, &json!({}), &[]));
    // Two versions with the same files and config differ by their number.
    assert_ne!(r.body["digest"], answer["digest"]);
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

async fn verify_finds_rows_changed_under_a_digest(app: &TestApp) {
    app.model("m").await;
    let v = app.version("m", json!({"config": {"a": 1}})).await;
    upload(app, "m", v, "model.bin", b"bytes").await;
    app.post_empty(&format!("/api/v1/models/m/versions/{v}/finalize"))
        .await
        .ok(200);
    // The row says other bytes now (the object too, so only the digest tells).
    app.exec("update artifacts set size = 6 where path = 'model.bin'")
        .await;
    let report = modelreg::verify::run(app.state.store.as_ref(), &app.state.blobs, false)
        .await
        .unwrap();
    let digest: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "version_digest")
        .collect();
    assert_eq!(digest.len(), 1, "{:#?}", report.findings);
    assert!(
        digest[0].detail.starts_with("m v1: its digest is sha256:"),
        "{}",
        digest[0].detail
    );
}
