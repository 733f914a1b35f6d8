//! Signatures over a version's files, on both backends, with a bundle the real
//! `model_signing sign key` (model-signing 1.1.1) wrote for `tests/fixtures/signing/model`:
//! verified against the trusted key and matched to the artifacts under the signed path,
//! kept as posted; an untrusted key, a file changed, added or missing, a malformed bundle,
//! a payload of another type, a changed payload, and versions that cannot be signed are
//! each refused with their code; a stage policy's `signed_by` refuses an unsigned version (on
//! the REST and the MLflow alias paths) and accepts the signed one.

use crate::helpers::TestApp;
use serde_json::{Value, json};
use std::path::PathBuf;

crate::backend_tests!(
    a_model_signing_bundle_is_checked_and_kept,
    bad_signatures_are_refused,
    a_stage_can_require_a_signature
);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing")
        .join(name)
}

fn bundle() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("model.sig")).unwrap()).unwrap()
}

async fn trust(app: &TestApp, name: &str, file: &str) {
    let key = std::fs::read_to_string(fixture(file)).unwrap();
    app.put(
        &format!("/api/v1/trust/keys/{name}"),
        json!({"public_key": key}),
    )
    .await
    .ok(201);
}

/// A ready version of `model` with the fixture's files under `model/`, changed as asked:
/// `(path, Some(bytes))` replaces or adds a file, `(path, None)` leaves it out.
async fn signed_files(app: &TestApp, model: &str, changes: &[(&str, Option<&[u8]>)]) -> i64 {
    let v = app.version(model, json!({})).await;
    let mut files: Vec<(String, Vec<u8>)> = ["config.json", "weights.bin", "tokenizer/vocab.txt"]
        .iter()
        .map(|f| {
            (
                format!("model/{f}"),
                std::fs::read(fixture(&format!("model/{f}"))).unwrap(),
            )
        })
        .collect();
    files.push(("README.md".into(), b"# not signed".to_vec()));
    for (path, change) in changes {
        files.retain(|(p, _)| p != path);
        if let Some(bytes) = change {
            files.push(((*path).to_owned(), bytes.to_vec()));
        }
    }
    for (path, bytes) in files {
        app.send(
            app.client
                .put(app.url(&format!(
                    "/api/v1/models/{model}/versions/{v}/artifacts/{path}"
                )))
                .body(bytes),
        )
        .await
        .ok(201);
    }
    app.post_empty(&format!("/api/v1/models/{model}/versions/{v}/finalize"))
        .await
        .ok(200);
    v
}

async fn post(app: &TestApp, model: &str, v: i64, body: Value) -> crate::helpers::Resp {
    app.post(
        &format!("/api/v1/models/{model}/versions/{v}/signatures"),
        body,
    )
    .await
}

async fn a_model_signing_bundle_is_checked_and_kept(app: &TestApp) {
    trust(app, "ci-2026", "key.pub").await;
    app.model("fraud").await;
    let v = signed_files(app, "fraud", &[]).await;
    let r = post(
        app,
        "fraud",
        v,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await;
    let signed = r.ok(201).clone();
    assert_eq!(signed["key"], "ci-2026");
    assert_eq!(signed["verified"], true);
    assert_eq!(signed["files"], 3);
    assert_eq!(signed["path"], "model/");
    assert!(
        signed["key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // Posted again (a retry): the same signature, nothing new.
    let again = post(
        app,
        "fraud",
        v,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await;
    assert_eq!(again.ok(200)["id"], signed["id"]);
    let listed = app
        .get(&format!("/api/v1/models/fraud/versions/{v}/signatures"))
        .await;
    let items = listed.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["bundle"], bundle(), "kept as posted");
    let events = app
        .get("/api/v1/events?model=fraud&action=version.signed")
        .await;
    let events = events.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["details"]["key"], "ci-2026");
    // The version, its list entry and a comparison name the signer.
    let unsigned = signed_files(app, "fraud", &[]).await;
    let shown = app.get(&format!("/api/v1/models/fraud/versions/{v}")).await;
    assert_eq!(shown.ok(200)["signed_by"], "ci-2026");
    let listed = app.get("/api/v1/models/fraud/versions").await;
    let by_number: Vec<(i64, Value)> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["version"].as_i64().unwrap(), i["signed_by"].clone()))
        .collect();
    assert!(by_number.contains(&(v, json!("ci-2026"))), "{by_number:?}");
    assert!(
        by_number.contains(&(unsigned, Value::Null)),
        "{by_number:?}"
    );
    let compared = app
        .get(&format!(
            "/api/v1/models/fraud/compare?versions={v},{unsigned}"
        ))
        .await;
    assert_eq!(
        compared.ok(200)["signed_by"],
        json!({ v.to_string(): "ci-2026" })
    );
    // Over every artifact, README.md is not covered.
    let r = post(app, "fraud", v, json!({"bundle": bundle(), "path": ""})).await;
    let p = r.problem(422, "signature_mismatch");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("artifacts the signature does not cover: README.md"),
        "{p}"
    );
    // Erased, the version's signatures go with its files.
    app.post_empty(&format!("/api/v1/models/fraud/versions/{v}/archive"))
        .await
        .ok(200);
    app.delete(&format!("/api/v1/models/fraud/versions/{v}"))
        .await
        .ok(200);
    let listed = app
        .get(&format!("/api/v1/models/fraud/versions/{v}/signatures"))
        .await;
    assert_eq!(listed.ok(200)["items"], json!([]));
    let shown = app.get(&format!("/api/v1/models/fraud/versions/{v}")).await;
    assert_eq!(shown.ok(200).get("signed_by"), None);
    post(
        app,
        "fraud",
        v,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await
    .problem(409, "version_erased");
}

async fn bad_signatures_are_refused(app: &TestApp) {
    app.model("fraud").await;
    let good = signed_files(app, "fraud", &[]).await;
    // Only another key is trusted.
    trust(app, "other", "other.pub").await;
    let r = post(
        app,
        "fraud",
        good,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await;
    r.problem(422, "untrusted_key");
    trust(app, "ci", "key.pub").await;
    // A file changed, one missing, one added.
    for (changes, says) in [
        (
            vec![("model/weights.bin", Some(&b"other weights"[..]))],
            "different from what was signed: model/weights.bin",
        ),
        (
            vec![("model/tokenizer/vocab.txt", None)],
            "signed but not among the version's artifacts: model/tokenizer/vocab.txt",
        ),
        (
            vec![("model/extra.bin", Some(&b"x"[..]))],
            "artifacts the signature does not cover: model/extra.bin",
        ),
    ] {
        let v = signed_files(app, "fraud", &changes).await;
        let r = post(
            app,
            "fraud",
            v,
            json!({"bundle": bundle(), "path": "model/"}),
        )
        .await;
        let p = r.problem(422, "signature_mismatch");
        assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
    }
    // The payload's type changed: the signature (over the type too) no longer verifies.
    let mut other_type = bundle();
    other_type["dsseEnvelope"]["payloadType"] = json!("application/json");
    post(
        app,
        "fraud",
        good,
        json!({"bundle": other_type, "path": "model/"}),
    )
    .await
    .problem(422, "signature_invalid");
    // The payload changed: likewise.
    let mut changed = bundle();
    let mut payload = changed["dsseEnvelope"]["payload"]
        .as_str()
        .unwrap()
        .to_owned();
    // One base64 character of the middle swapped for another.
    let at = payload.len() / 2;
    let swapped = if &payload[at..=at] == "A" { "B" } else { "A" };
    payload.replace_range(at..=at, swapped);
    changed["dsseEnvelope"]["payload"] = json!(payload);
    let r = post(
        app,
        "fraud",
        good,
        json!({"bundle": changed, "path": "model/"}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        matches!(r.body["code"].as_str(), Some("signature_invalid")),
        "{}",
        r.body
    );
    // Malformed.
    for bad in [
        json!({}),
        json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}),
    ] {
        post(app, "fraud", good, json!({"bundle": bad}))
            .await
            .problem(422, "signature_invalid");
    }
    let p = post(app, "fraud", good, json!({"bundle": "text"})).await;
    assert_eq!(p.problem(422, "validation_failed")["field"], "bundle");
    let p = post(
        app,
        "fraud",
        good,
        json!({"bundle": bundle(), "path": "../model/"}),
    )
    .await;
    assert_eq!(p.problem(422, "validation_failed")["field"], "path");
    // Versions whose files are not fixed.
    let pending = app.version("fraud", json!({})).await;
    post(
        app,
        "fraud",
        pending,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await
    .problem(409, "version_not_ready");
    post(app, "fraud", 99, json!({"bundle": bundle()}))
        .await
        .problem(404, "version_not_found");
    // Nothing was recorded by any of these.
    let listed = app
        .get(&format!("/api/v1/models/fraud/versions/{good}/signatures"))
        .await;
    assert_eq!(listed.ok(200)["items"], json!([]));
}

fn signed_by_check(body: &Value) -> Value {
    body["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "signed_by"))
        .cloned()
        .unwrap_or_else(|| panic!("no signed_by check in {body}"))
}

async fn a_stage_can_require_a_signature(app: &TestApp) {
    const POLICY: &str = "/api/v1/models/fraud/stages/production/policy";
    const PROMOTE: &str = "/api/v1/models/fraud/stages/production/promote";
    trust(app, "ci-2026", "key.pub").await;
    trust(app, "other", "other.pub").await;
    app.model("fraud").await;
    let signed = signed_files(app, "fraud", &[]).await;
    let unsigned = signed_files(app, "fraud", &[]).await;
    // A key nobody trusts, or a malformed rule, is refused when the policy is set.
    for (bad, field) in [
        (json!(["ci-2025"]), "signed_by.keys[0]"),
        (json!([]), "signed_by.keys"),
        (
            json!({"keys": ["ci-2026"], "path": "model"}),
            "signed_by.path",
        ),
        (json!("ci-2026"), "signed_by"),
    ] {
        let r = app.put(POLICY, json!({"signed_by": bad})).await;
        assert_eq!(r.problem(422, "validation_failed")["field"], field, "{bad}");
    }
    let r = app
        .put(
            POLICY,
            json!({"signed_by": {"keys": ["other", "ci-2026"], "path": "model/"}}),
        )
        .await;
    assert_eq!(
        r.ok(200)["signed_by"],
        json!({"keys": ["other", "ci-2026"], "path": "model/"})
    );
    // Not signed yet: the dry run says what is missing, the promote is refused.
    let r = app
        .post(PROMOTE, json!({"version": signed, "dry_run": true}))
        .await;
    let c = signed_by_check(r.ok(200));
    assert_eq!(c["ok"], false);
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .starts_with("no signature by other or ci-2026 over the artifacts under model/"),
        "{c}"
    );
    app.post(PROMOTE, json!({"version": signed}))
        .await
        .problem(409, "policy_violation");
    // Through MLflow: setting the alias is the same promote.
    let r = app
        .post(
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": "fraud", "alias": "production", "version": unsigned.to_string()}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        r.body["message"].as_str().unwrap().contains("signed_by"),
        "{}",
        r.body
    );
    // Signed: the check passes, naming the key, and the promote goes through.
    post(
        app,
        "fraud",
        signed,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await
    .ok(201);
    let r = app
        .post(PROMOTE, json!({"version": signed, "dry_run": true}))
        .await;
    let d = r.ok(200);
    assert_eq!(d["allowed"], true, "{d}");
    let c = signed_by_check(d);
    assert_eq!(
        c["detail"],
        "signed by trusted key ci-2026 over the artifacts under model/"
    );
    assert_eq!(c["observed"]["key"], "ci-2026");
    let r = app.post(PROMOTE, json!({"version": signed})).await;
    assert_eq!(r.ok(200)["version"], signed);
    // The unsigned version stays out.
    let r = app.post(PROMOTE, json!({"version": unsigned})).await;
    let e = r.problem(409, "policy_violation");
    assert_eq!(signed_by_check(e)["ok"], false);
    // Asked over every artifact, a signature over model/ does not cover README.md.
    let also_signed = signed_files(app, "fraud", &[]).await;
    post(
        app,
        "fraud",
        also_signed,
        json!({"bundle": bundle(), "path": "model/"}),
    )
    .await
    .ok(201);
    app.put(POLICY, json!({"signed_by": ["ci-2026"]}))
        .await
        .ok(200);
    let r = app
        .post(PROMOTE, json!({"version": also_signed, "dry_run": true}))
        .await;
    let c = signed_by_check(r.ok(200));
    assert_eq!(c["ok"], false);
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("key ci-2026's signature covers only the artifacts under model/"),
        "{c}"
    );
    // A signing key replaced or removed no longer vouches for what it signed.
    app.put(
        POLICY,
        json!({"signed_by": {"keys": ["ci-2026"], "path": "model/"}}),
    )
    .await
    .ok(200);
    let other = std::fs::read_to_string(fixture("other.pub")).unwrap();
    app.put("/api/v1/trust/keys/ci-2026", json!({"public_key": other}))
        .await
        .ok(200);
    let r = app
        .post(PROMOTE, json!({"version": also_signed, "dry_run": true}))
        .await;
    let c = signed_by_check(r.ok(200));
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("key ci-2026 was replaced after it signed"),
        "{c}"
    );
    app.delete("/api/v1/trust/keys/ci-2026").await.ok(204);
    let r = app
        .post(PROMOTE, json!({"version": also_signed, "dry_run": true}))
        .await;
    let c = signed_by_check(r.ok(200));
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("key ci-2026 is no longer trusted"),
        "{c}"
    );
}
