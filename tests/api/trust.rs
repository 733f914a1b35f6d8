//! Trusted keys, on both backends: added, shown, replaced (a rotation keeps both names),
//! limited to model globs, removed, each change an event; keys of unsupported kinds and
//! malformed bodies refused with the field named.

use crate::helpers::TestApp;
use serde_json::json;

crate::backend_tests!(keys_are_added_rotated_and_removed, bad_keys_are_refused);

/// A public key PEM made by `openssl genpkey` with these arguments.
pub fn public_pem(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let mut all = vec!["genpkey", "-out", key.to_str().unwrap()];
    all.extend_from_slice(args);
    let made = std::process::Command::new("openssl")
        .args(&all)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl genpkey {args:?}");
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-in", key.to_str().unwrap(), "-pubout"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const ED25519: &[&str] = &["-algorithm", "ED25519"];

async fn keys_are_added_rotated_and_removed(app: &TestApp) {
    let first = public_pem(P256);
    let r = app
        .put("/api/v1/trust/keys/ci-2026", json!({"public_key": first}))
        .await;
    let shown = r.ok(201).clone();
    assert_eq!(shown["name"], "ci-2026");
    assert_eq!(shown["algorithm"], "ecdsa-p256");
    assert_eq!(shown["bits"], 256);
    assert_eq!(shown["models"], json!(null));
    assert_eq!(shown["created_by"], "anonymous");
    assert_eq!(
        shown["public_key"], first,
        "shown as PEM, as openssl writes it"
    );
    let fingerprint = shown["fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 71);
    // The same key again: nothing changes, no event.
    let again = app
        .put("/api/v1/trust/keys/ci-2026", json!({"public_key": first}))
        .await;
    assert_eq!(again.ok(200)["fingerprint"], fingerprint);
    // Rotation: the new key under a new name, both trusted, then the old one removed.
    let second = public_pem(ED25519);
    let r = app
        .put(
            "/api/v1/trust/keys/ci-2027",
            json!({"public_key": second, "models": ["fraud-*", "churn"]}),
        )
        .await;
    let rotated = r.ok(201).clone();
    assert_eq!(rotated["algorithm"], "ed25519");
    assert_eq!(rotated["models"], json!(["fraud-*", "churn"]));
    let listed = app.get("/api/v1/trust/keys").await;
    let names: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ci-2026", "ci-2027"]);
    assert_eq!(app.delete("/api/v1/trust/keys/ci-2026").await.status, 204);
    app.get("/api/v1/trust/keys/ci-2026")
        .await
        .problem(404, "key_not_found");
    app.delete("/api/v1/trust/keys/ci-2026")
        .await
        .problem(404, "key_not_found");
    // A key replaced under its name: the event names both fingerprints.
    let third = public_pem(P256);
    let r = app
        .put("/api/v1/trust/keys/ci-2027", json!({"public_key": third}))
        .await;
    assert_eq!(r.ok(200)["models"], json!(null));
    let events = app.get("/api/v1/events?limit=50").await;
    let events = events.ok(200)["items"].as_array().unwrap().clone();
    let trust: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("trust."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["details"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trust,
        vec![
            ("trust.key_added", "ci-2026"),
            ("trust.key_added", "ci-2027"),
            ("trust.key_removed", "ci-2026"),
            ("trust.key_changed", "ci-2027")
        ]
    );
    let changed = events
        .iter()
        .find(|e| e["action"] == "trust.key_changed")
        .unwrap();
    assert_eq!(
        changed["details"]["previous_fingerprint"],
        rotated["fingerprint"]
    );
}

async fn bad_keys_are_refused(app: &TestApp) {
    let rsa1024 = public_pem(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let good = public_pem(P256);
    for (body, field) in [
        (json!({"public_key": "not a key"}), "public_key"),
        (json!({"public_key": rsa1024}), "public_key"),
        (json!({"public_key": good, "models": []}), "models"),
        (
            json!({"public_key": good, "models": ["Fraud Team"]}),
            "models[0]",
        ),
        (json!({"public_key": good, "extra": 1}), "extra"),
        (json!({"models": ["a"]}), ""),
    ] {
        let r = app.put("/api/v1/trust/keys/k", body.clone()).await;
        let p = r.problem(422, "validation_failed");
        if !field.is_empty() {
            assert_eq!(p["field"], field, "{body}");
        }
    }
    app.put("/api/v1/trust/keys/a%20b", json!({"public_key": good}))
        .await
        .problem(400, "invalid_path_parameter");
    app.get("/api/v1/trust/keys/nope")
        .await
        .problem(404, "key_not_found");
    assert_eq!(
        app.get("/api/v1/trust/keys").await.ok(200)["items"],
        json!([])
    );
}
