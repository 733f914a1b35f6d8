//! `modelreg sync` as a process against a real server, on both backends: the first sync,
//! promote and rollback mirrored on disk within 2 s (a rollback without a download), the
//! `--exec` hook, `--once`, `--keep`; a download cut mid-way (the server gone) leaves
//! `current` on the old version and completes when the server is back; bytes that do not
//! match their sha256 never become `current`; a stage that requires a signature is
//! downloaded and synced only with a signature that lists exactly the files fetched.

use crate::cli_support::{
    Agent, Cli, Proxy, admin, current, noise, promote, version_with, wait_current,
};
use crate::helpers::{Setup, TestApp};
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

crate::backend_tests!(with super::AUTH;
    sync_follows_promote_and_rollback,
    sync_survives_a_cut_download_and_refuses_bad_bytes,
    a_guard_trip_reaches_the_agent,
    download_and_sync_check_the_signed_digests
);

const AUTH: Setup = Setup {
    auth: true,
    ..Setup::PLAIN
};

const SWITCH_LIMIT: Duration = Duration::from_secs(2);

async fn sync_follows_promote_and_rollback(app: &TestApp) {
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "m"})),
    )
    .await;
    let v1 = version_with(
        app,
        "m",
        &[("model.txt", b"one"), ("data/w.bin", &noise(4096, 1))],
    )
    .await;
    let v2 = version_with(
        app,
        "m",
        &[("model.txt", b"two"), ("data/w.bin", &noise(4096, 2))],
    )
    .await;
    let v3 = version_with(app, "m", &[("model.txt", b"three")]).await;
    promote(app, "m", "production", v1).await;
    let (_keep, dir) = crate::cli_support::scratch();
    let dest = dir.join("serve");
    // A reader token is enough; it goes through a proxy that counts downloads.
    let proxy = Proxy::start(app).await;
    let reader = crate::cli_support::token(app, "agent", &["read"], Some(&["m"])).await;
    let cli = Cli::at(proxy.url(), Some(reader));

    // --once: exits 0 with the files in place (an init container).
    let out = cli
        .run(&["sync", "m@production", dest.to_str().unwrap(), "--once"])
        .await;
    out.code(0);
    assert_eq!(current(&dest).as_deref(), Some("versions/1"));
    assert_eq!(
        std::fs::read_to_string(dest.join("current/model.txt")).unwrap(),
        "one"
    );
    assert!(dest.join("current/data/w.bin").is_file());
    // --once on an empty stage: not found (3), nothing switched.
    let out = cli
        .run(&[
            "sync",
            "m@staging",
            dir.join("empty").to_str().unwrap(),
            "--once",
        ])
        .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(current(&dir.join("empty")), None);

    let hook_log = dir.join("hook.log");
    let hook = format!(
        "echo \"$MODELREG_MODEL $MODELREG_STAGE $MODELREG_VERSION $MODELREG_PREVIOUS_VERSION $(cat \"$MODELREG_PATH/model.txt\")\" >> {}",
        hook_log.display()
    );
    let agent = Agent::start(
        &cli,
        "m@production",
        &dest,
        &["--exec", &hook, "--keep", "2"],
    )
    .await;
    // `version` is what is on disk from the start; `stage_version` once the agent has read
    // the stage (the stream may open before that read is done).
    let state = agent
        .wait_state(Duration::from_secs(10), |s| {
            s["version"] == 1 && s["following"] == "stream" && s["stage_version"] == 1
        })
        .await;
    assert_eq!(state["stage_version"], 1);
    assert_eq!(agent.state("/readyz").await.0, 200);

    // Promote: switched within 2 s.
    promote(app, "m", "production", v2).await;
    let took = wait_current(&dest, v2, SWITCH_LIMIT).await;
    assert!(
        took.is_some(),
        "not switched to 2 within 2 s:\n{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("current/model.txt")).unwrap(),
        "two"
    );
    let downloads = proxy.faults.artifact_gets.load(Ordering::SeqCst);

    // Rollback: switched within 2 s, from disk, without a download.
    admin(
        app,
        Method::POST,
        "/api/v1/models/m/stages/production/rollback",
        Some(json!({})),
    )
    .await
    .ok(200);
    let took = wait_current(&dest, v1, SWITCH_LIMIT).await;
    assert!(
        took.is_some(),
        "not rolled back within 2 s:\n{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("current/model.txt")).unwrap(),
        "one"
    );
    assert_eq!(
        proxy.faults.artifact_gets.load(Ordering::SeqCst),
        downloads,
        "a rollback to a version on disk downloads nothing"
    );

    // --keep 2: after 3 the least recently current (2) goes; 1 stays for a rollback.
    promote(app, "m", "production", v3).await;
    assert!(
        wait_current(&dest, v3, SWITCH_LIMIT).await.is_some(),
        "{}",
        agent.log()
    );
    agent.wait_state(SWITCH_LIMIT, |s| s["version"] == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut kept: Vec<String> = std::fs::read_dir(dest.join("versions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["1", "3"]);

    // The hook ran after each switch, with the version in its environment and the files in
    // place.
    let hooks = std::fs::read_to_string(&hook_log).unwrap_or_default();
    let lines: Vec<&str> = hooks.lines().collect();
    assert_eq!(
        lines,
        [
            "m production 2 1 two",
            "m production 1 2 one",
            "m production 3 1 three"
        ],
        "{}",
        agent.log()
    );
    // The token never reaches the log.
    assert!(!agent.log().contains(cli.token.as_deref().unwrap()));
}

async fn sync_survives_a_cut_download_and_refuses_bad_bytes(app: &TestApp) {
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "m"})),
    )
    .await;
    let big = noise(24 << 20, 5);
    let v1 = version_with(app, "m", &[("model.txt", b"one")]).await;
    let v2 = version_with(app, "m", &[("model.txt", b"two"), ("weights.bin", &big)]).await;
    let v3 = version_with(app, "m", &[("model.txt", b"three")]).await;
    promote(app, "m", "production", v1).await;
    let (_keep, dir) = crate::cli_support::scratch();
    let dest = dir.join("serve");
    let proxy = Proxy::start(app).await;
    let cli = Cli::at(proxy.url(), app.root.clone());
    let agent = Agent::start(&cli, "m@production", &dest, &[]).await;
    assert!(
        wait_current(&dest, v1, Duration::from_secs(10))
            .await
            .is_some(),
        "{}",
        agent.log()
    );

    // The server goes away 8 MiB into the download of 2.
    *proxy.faults.cut_after.lock().unwrap() = Some(8 << 20);
    promote(app, "m", "production", v2).await;
    let faults = proxy.faults.clone();
    for _ in 0..500 {
        if faults.down.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(faults.down.load(Ordering::SeqCst), "the download was cut");
    // While it is away: still serving 1, whole, and saying what is wrong.
    let state = agent
        .wait_state(Duration::from_secs(10), |s| !s["last_error"].is_null())
        .await;
    assert_eq!(state["version"], 1, "{state}");
    assert_eq!(current(&dest).as_deref(), Some("versions/1"));
    assert_eq!(
        std::fs::read_to_string(dest.join("current/model.txt")).unwrap(),
        "one"
    );
    assert!(
        !dest.join("versions/2").exists(),
        "no partial version in versions/"
    );
    // Back: the download completes (resumed) and 2 becomes current.
    faults.set_down(false);
    assert!(
        wait_current(&dest, v2, Duration::from_secs(30))
            .await
            .is_some(),
        "not switched after the server came back:\n{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read(dest.join("current/weights.bin")).unwrap(),
        big
    );
    let state = agent
        .wait_state(Duration::from_secs(5), |s| s["last_error"].is_null())
        .await;
    assert_eq!(state["version"], 2);

    // Bytes that do not match their sha256: refused, current unchanged.
    faults.corrupt.store(true, Ordering::SeqCst);
    promote(app, "m", "production", v3).await;
    let state = agent
        .wait_state(Duration::from_secs(10), |s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("checksum_mismatch"))
        })
        .await;
    assert_eq!(state["version"], 2, "{state}");
    assert_eq!(current(&dest).as_deref(), Some("versions/2"));
    assert!(!dest.join("versions/3").exists());
    // Once the bytes are right again it catches up by itself.
    faults.corrupt.store(false, Ordering::SeqCst);
    assert!(
        wait_current(&dest, v3, Duration::from_secs(30))
            .await
            .is_some(),
        "{}",
        agent.log()
    );
}

/// A stage guard's rollback (the server's own evaluator, period 1 s) reaches the files: the
/// agent switches back within two periods and 2 s of the breaching points.
async fn a_guard_trip_reaches_the_agent(app: &TestApp) {
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "m"})),
    )
    .await;
    let v1 = version_with(app, "m", &[("model.txt", b"one")]).await;
    let v2 = version_with(app, "m", &[("model.txt", b"two")]).await;
    promote(app, "m", "production", v1).await;
    promote(app, "m", "production", v2).await;
    admin(
        app,
        Method::PUT,
        "/api/v1/models/m/stages/production/guard",
        Some(
            json!({"conditions": [{"metric": "prod/error_rate", "aggregate": "mean",
            "window": "PT1M", "op": ">", "threshold": 0.05}],
            "min_points": 3, "period": "PT1S", "action": "rollback"}),
        ),
    )
    .await
    .ok(200);
    let (_keep, dir) = crate::cli_support::scratch();
    let dest = dir.join("serve");
    let cli = Cli::new(app);
    let agent = Agent::start(&cli, "m@production", &dest, &[]).await;
    assert!(
        wait_current(&dest, v2, Duration::from_secs(10))
            .await
            .is_some(),
        "{}",
        agent.log()
    );
    let now = modelreg::domain::time::rfc3339::format(&modelreg::domain::time::now());
    let points: Vec<serde_json::Value> = (0..5)
        .map(|i| json!({"key": "prod/error_rate", "step": i, "value": 0.5, "timestamp": now}))
        .collect();
    admin(
        app,
        Method::POST,
        &format!("/api/v1/models/m/versions/{v2}/metrics"),
        Some(json!({"points": points})),
    )
    .await
    .ok(200);
    let took = wait_current(&dest, v1, Duration::from_secs(4)).await;
    assert!(
        took.is_some(),
        "the guard's rollback did not reach the files within 2 periods + 2 s:\n{}",
        agent.log()
    );
    let history = admin(
        app,
        Method::GET,
        "/api/v1/models/m/stages/production/history",
        None,
    )
    .await;
    assert_eq!(history.ok(200)["items"][0]["actor"], "guard");
}

fn signing_fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing")
        .join(name)
}

async fn download_and_sync_check_the_signed_digests(app: &TestApp) {
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "m"})),
    )
    .await;
    let key = std::fs::read_to_string(signing_fixture("key.pub")).unwrap();
    admin(
        app,
        Method::PUT,
        "/api/v1/trust/keys/ci-2026",
        Some(json!({"public_key": key})),
    )
    .await
    .ok(201);
    let files: Vec<(String, Vec<u8>)> = ["config.json", "weights.bin", "tokenizer/vocab.txt"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(signing_fixture(&format!("model/{f}"))).unwrap();
            (format!("model/{f}"), bytes)
        })
        .collect();
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let signed = version_with(app, "m", &files).await;
    let unsigned = version_with(app, "m", &files).await;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(signing_fixture("model.sig")).unwrap()).unwrap();
    admin(
        app,
        Method::POST,
        &format!("/api/v1/models/m/versions/{signed}/signatures"),
        Some(json!({"bundle": bundle, "path": "model/"})),
    )
    .await
    .ok(201);
    admin(
        app,
        Method::PUT,
        "/api/v1/models/m/stages/production/policy",
        Some(json!({"signed_by": {"keys": ["ci-2026"], "path": "model/"}})),
    )
    .await
    .ok(200);
    promote(app, "m", "production", signed).await;
    let (_keep, dir) = crate::cli_support::scratch();
    let reader = crate::cli_support::token(app, "agent", &["read"], Some(&["m"])).await;
    let cli = Cli::at(format!("http://{}", app.addr), Some(reader));
    let at = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let key_pub = signing_fixture("key.pub").to_str().unwrap().to_owned();
    let other_pub = signing_fixture("other.pub").to_str().unwrap().to_owned();

    // The stage asks for a signature: the listing is checked against it before any fetch.
    let out = cli
        .run(&["download", "m@production", &at("a"), "--json"])
        .await;
    let report = out.code(0).json();
    assert_eq!(report["signature"]["key"], "ci-2026");
    assert_eq!(report["signature"]["files"], 3);
    assert_eq!(report["signature"]["verified_here"], false);
    // With the signer's key the signature is verified here too; with another it is refused.
    let out = cli
        .run(&[
            "download",
            "m@production",
            &at("b"),
            "--public-key",
            &key_pub,
            "--json",
        ])
        .await;
    assert_eq!(out.code(0).json()["signature"]["verified_here"], true);
    let out = cli
        .run(&[
            "download",
            "m@production",
            &at("c"),
            "--public-key",
            &other_pub,
        ])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not verify with the given keys"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("c/model/weights.bin").exists(), "nothing fetched");
    // A version by number needs a signature only when keys are given.
    let plain = format!("m/{unsigned}");
    cli.run(&["download", &plain, &at("d")]).await.code(0);
    let out = cli
        .run(&["download", &plain, &at("e"), "--public-key", &key_pub])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("[signature_required]"),
        "{}",
        out.stderr
    );

    // sync: the signed version goes in, with the signature in its record.
    let dest = dir.join("serve");
    cli.run(&["sync", "m@production", dest.to_str().unwrap(), "--once"])
        .await
        .code(0);
    assert_eq!(current(&dest), Some(format!("versions/{signed}")));
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dest.join(format!("versions/{signed}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["signature"]["key"], "ci-2026");
    // An unsigned version forced onto the stage is not deployed: the agent keeps what it has.
    admin(
        app,
        Method::POST,
        "/api/v1/models/m/stages/production/promote",
        Some(json!({"version": unsigned, "force": true, "reason": "incident drill"})),
    )
    .await
    .ok(200);
    let out = cli
        .run(&["sync", "m@production", dest.to_str().unwrap(), "--once"])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("[signature_required]"),
        "{}",
        out.stderr
    );
    assert_eq!(current(&dest), Some(format!("versions/{signed}")));
    assert!(!dest.join(format!("versions/{unsigned}")).exists());
}
