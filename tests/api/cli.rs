//! The `modelreg` binary as an operator's client against a real server, on both backends:
//! every command's happy path, its refusals with the documented exit codes (0 ok, 1 refused
//! by a rule, 2 usage, 3 not found, 4 auth, 5 unavailable), `--json` for scripts, and 50 MiB
//! through upload and download with the checksum checked and a cut download resumed.

use crate::cli_support::{Cli, Proxy, admin, noise, promote, sha256_hex, token, version_with};
use crate::helpers::{Setup, TestApp};
use reqwest::Method;
use serde_json::json;

crate::backend_tests!(with super::AUTH;
    reads_print_tables_and_json,
    promote_and_rollback_check_what_the_operator_saw,
    policies_and_requests_from_the_command_line,
    tokens_login_and_exit_codes,
    fifty_mib_up_and_down_with_checksums_and_resume
);

const AUTH: Setup = Setup {
    auth: true,
    ..Setup::PLAIN
};

async fn metric(app: &TestApp, model: &str, v: i64, key: &str, value: f64) {
    admin(
        app,
        Method::POST,
        &format!("/api/v1/models/{model}/versions/{v}/metrics"),
        Some(json!({"points": [{"key": key, "step": 1, "value": value}]})),
    )
    .await
    .ok(200);
}

async fn reads_print_tables_and_json(app: &TestApp) {
    let cli = Cli::new(app);
    admin(
        app,
        Method::PUT,
        "/api/v1/models/fraud",
        Some(json!({"description": "card fraud", "tags": {"team": "risk"}})),
    )
    .await;
    for i in 1..=3 {
        let v = admin(
            app,
            Method::POST,
            "/api/v1/models/fraud/versions",
            Some(json!({"config": {"lr": i as f64 / 10.0}, "tags": {"ds": format!("v{i}")}, "finalize": true})),
        )
        .await
        .ok(201)["version"]
            .as_i64()
            .unwrap();
        metric(app, "fraud", v, "acc", 0.5 + i as f64 / 10.0).await;
    }
    promote(app, "fraud", "production", 2).await;

    let out = cli.run(&["models"]).await;
    out.code(0);
    assert!(out.stdout.starts_with("NAME"), "{}", out.stdout);
    assert!(out.stdout.contains("production=2"), "{}", out.stdout);
    let models = cli.run(&["models", "--json"]).await;
    assert_eq!(models.code(0).json()["items"][0]["name"], "fraud");

    let out = cli
        .run(&[
            "versions",
            "fraud",
            "--metrics",
            "acc",
            "--filter",
            "metric.acc > 0.65",
        ])
        .await;
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and versions 3 and 2: {}",
        out.stdout
    );
    assert!(lines[0].contains("ACC"), "{}", lines[0]);
    assert!(
        lines[1].starts_with('3') && lines[1].contains("0.8"),
        "{}",
        lines[1]
    );
    let out = cli
        .run(&[
            "versions",
            "fraud",
            "--order-by",
            "metric.acc:asc",
            "--json",
        ])
        .await;
    let items = out.code(0).json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 3);
    assert_eq!(items[0]["version"], 1);

    let out = cli.run(&["show", "fraud"]).await;
    assert!(out.code(0).stdout.contains("card fraud"), "{}", out.stdout);
    let out = cli.run(&["show", "fraud@production", "--json"]).await;
    assert_eq!(out.code(0).json()["version"], 2);
    let out = cli.run(&["show", "fraud/3"]).await;
    assert!(out.code(0).stdout.contains("acc"), "{}", out.stdout);
    assert!(out.stdout.contains("ds=v3"), "{}", out.stdout);

    let out = cli.run(&["diff", "fraud", "1", "3"]).await;
    out.code(0);
    assert!(out.stdout.contains("/lr"), "{}", out.stdout);
    assert!(
        out.stdout.contains("0.1") && out.stdout.contains("0.3"),
        "{}",
        out.stdout
    );
    let out = cli.run(&["diff", "fraud", "1", "3", "--json"]).await;
    assert_eq!(out.code(0).json()["versions"], json!([1, 3]));

    let out = cli.run(&["stages", "fraud", "--json"]).await;
    assert_eq!(out.code(0).json()["items"][0]["version"], 2);
    let out = cli.run(&["history", "fraud", "production"]).await;
    assert!(
        out.code(0).stdout.contains("stage.promoted"),
        "{}",
        out.stdout
    );
    let out = cli
        .run(&[
            "events",
            "--model",
            "fraud",
            "--action",
            "stage.promoted",
            "--json",
        ])
        .await;
    let events = out.code(0).json()["items"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["stage"], "production");

    // --follow: new events as they happen, one JSON object per line, from after a given
    // event (the one promote so far is before it).
    let after = events[0]["event_id"].as_i64().unwrap().to_string();
    let mut c = cli.command(&[
        "events", "--follow", "--json", "--model", "fraud", "--after", &after,
    ]);
    c.stdout(std::process::Stdio::piped());
    let mut follower = c.spawn().unwrap();
    let stdout = follower.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    promote(app, "fraud", "production", 3).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .expect("the new promote, live")
        .unwrap()
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(
        (event["action"].as_str(), event["version"].as_i64()),
        (Some("stage.promoted"), Some(3))
    );
    follower.kill().await.unwrap();

    // Not found (3), usage (2), the server's bad-input answers (2).
    for (args, code) in [
        (vec!["show", "nope"], 3),
        (vec!["show", "fraud/9"], 3),
        (vec!["show", "fraud@staging"], 3),
        (vec!["history", "nope", "production"], 3),
        (vec!["show", "Bad-Name"], 2),
        (vec!["diff", "fraud", "1"], 2),
        (vec!["versions", "fraud", "--filter", "metric.acc >"], 2),
        (vec!["no-such-command"], 2),
    ] {
        let out = cli.run(&args).await;
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error"), "{args:?}: {}", out.stderr);
    }
    // A problem is one readable line with its code; with --json its body is on stdout.
    let out = cli.run(&["show", "nope", "--json"]).await;
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["code"], "model_not_found");
    assert!(out.stderr.contains("[model_not_found]"), "{}", out.stderr);
    let out = cli
        .run(&["versions", "fraud", "--filter", "metric.acc >"])
        .await;
    assert!(out.stderr.contains("[invalid_filter]"), "{}", out.stderr);
}

async fn promote_and_rollback_check_what_the_operator_saw(app: &TestApp) {
    let cli = Cli::new(app);
    app.send(
        app.client
            .post(app.url("/api/v1/models"))
            .bearer_auth(app.root_token())
            .json(&json!({"name": "m"})),
    )
    .await
    .ok(201);
    for _ in 0..4 {
        version_with(app, "m", &[]).await;
    }
    let out = cli
        .run(&[
            "promote",
            "m",
            "production",
            "1",
            "--reason",
            "first",
            "--json",
        ])
        .await;
    let answer = out.code(0).json();
    assert_eq!(answer["version"], 1);
    assert_eq!(answer["previous_version"], json!(null));
    let out = cli.run(&["promote", "m", "production", "2"]).await;
    assert!(out.code(0).stdout.contains("1 → 2"), "{}", out.stdout);
    let out = cli.run(&["promote", "m", "production", "2"]).await;
    assert!(
        out.code(0).stdout.contains("nothing changed"),
        "{}",
        out.stdout
    );

    // A stale --expect: refused (1), nothing changes.
    let out = cli
        .run(&["promote", "m", "production", "3", "--expect", "1", "--json"])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.json()["code"], "stage_conflict");
    let out = cli
        .run(&["promote", "m", "canary", "3", "--expect", "none"])
        .await;
    out.code(0);

    // Without --expect, someone else's promote between the client's read and its write is
    // a conflict, not an overwrite.
    let proxy = Proxy::start(app).await;
    *proxy.faults.race_promote.lock().unwrap() = Some(json!({"version": 4}));
    let through = Cli::at(proxy.url(), app.root.clone());
    let out = through.run(&["promote", "m", "production", "3"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[stage_conflict]"), "{}", out.stderr);
    let now = cli.run(&["show", "m@production", "--json"]).await;
    assert_eq!(now.code(0).json()["version"], 4, "the other promote stands");

    // Rollback reads the stage too: two operators rolling back at once pop one version.
    *proxy.faults.race_promote.lock().unwrap() = None;
    let out = cli
        .run(&["rollback", "m", "production", "--reason", "bad"])
        .await;
    assert!(out.code(0).stdout.contains("4 → 2"), "{}", out.stdout);
    let out = cli
        .run(&["rollback", "m", "production", "--expect", "4"])
        .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("[stage_conflict]"), "{}", out.stderr);
    let out = cli
        .run(&["rollback", "m", "production", "--to", "1", "--json"])
        .await;
    assert_eq!(out.code(0).json()["version"], 1);
    let out = cli.run(&["rollback", "m", "production"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("[nothing_to_roll_back]"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["promote", "m", "production", "9"]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out = cli.run(&["history", "m", "production", "--json"]).await;
    let history = out.code(0).json()["items"].clone();
    assert_eq!(history[0]["action"], "stage.rolled_back");
    assert_eq!(history[1]["reason"], "bad");

    // A stage's guard, shown and re-armed; the stages table says which stages have one.
    admin(
        app,
        Method::PUT,
        "/api/v1/models/m/stages/production/guard",
        Some(
            json!({"conditions": [{"metric": "prod/err", "aggregate": "mean",
            "window": "PT5M", "op": ">", "threshold": 0.1}], "action": "notify"}),
        ),
    )
    .await
    .ok(200);
    let out = cli.run(&["stages", "m"]).await;
    assert!(out.code(0).stdout.contains("GUARD"), "{}", out.stdout);
    assert!(out.stdout.contains("insufficient_data"), "{}", out.stdout);
    let out = cli.run(&["guard", "m", "production", "--json"]).await;
    assert_eq!(out.code(0).json()["action"], "notify");
    let out = cli.run(&["guard", "m", "production", "--rearm"]).await;
    assert!(out.code(0).stdout.contains("prod/err"), "{}", out.stdout);
    let out = cli.run(&["guard", "m", "canary"]).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("[guard_not_found]"), "{}", out.stderr);
}

async fn policies_and_requests_from_the_command_line(app: &TestApp) {
    let cli = Cli::new(app);
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "p"})),
    )
    .await;
    let v1 = version_with(app, "p", &[]).await;
    let v2 = version_with(app, "p", &[]).await;
    metric(app, "p", v1, "acc", 0.9).await;
    metric(app, "p", v2, "acc", 0.8).await;
    admin(
        app,
        Method::PUT,
        "/api/v1/models/p/stages/production/policy",
        Some(json!({"no_regression": [{"metric": "acc", "higher_is_better": true}]})),
    )
    .await
    .ok(200);
    promote(app, "p", "production", v1).await;
    // A failing check: refused (1) with the check named.
    let out = cli.run(&["promote", "p", "production", "2"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[policy_violation]"), "{}", out.stderr);
    assert!(
        out.stderr.contains("failed check no_regression:acc"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&["promote", "p", "production", "2", "--dry-run", "--json"])
        .await;
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["allowed"], false);
    // Forced by an admin, with a reason.
    let out = cli
        .run(&[
            "promote",
            "p",
            "production",
            "2",
            "--force",
            "--reason",
            "hotfix",
        ])
        .await;
    out.code(0);

    // A stage that needs an approval: the promote opens a request (1: the stage did not change).
    admin(
        app,
        Method::PUT,
        "/api/v1/models/p/stages/staging/policy",
        Some(json!({"approvals": 1})),
    )
    .await
    .ok(200);
    let alice = token(app, "alice", &["read", "promote"], None).await;
    let bob = token(app, "bob", &["promote"], None).await;
    let as_alice = cli.with_token(Some(&alice));
    // A promote-only token cannot read the stage: it says how to go on.
    let out = cli
        .with_token(Some(&bob))
        .run(&["promote", "p", "staging", "1"])
        .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("--expect"), "{}", out.stderr);
    let out = as_alice
        .run(&["promote", "p", "staging", "1", "--json"])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let opened = out.json();
    assert_eq!(opened["status"], "pending");
    let id = opened["request_id"].as_str().unwrap().to_owned();
    let out = cli.run(&["requests", "p", "--status", "pending"]).await;
    assert!(out.code(0).stdout.contains(&id), "{}", out.stdout);
    // Nobody approves their own request (4: the token may not).
    let out = as_alice.run(&["approve", "p", &id]).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("[self_approval]"), "{}", out.stderr);
    let out = cli
        .with_token(Some(&bob))
        .run(&["approve", "p", &id, "--comment", "ok", "--json"])
        .await;
    assert_eq!(out.code(0).json()["status"], "approved");
    let out = cli.run(&["show", "p@staging", "--json"]).await;
    assert_eq!(out.code(0).json()["version"], 1);
    // Reject another; an unknown request is not found.
    let out = as_alice
        .run(&["promote", "p", "staging", "2", "--json"])
        .await;
    let id = out.json()["request_id"].as_str().unwrap().to_owned();
    let out = cli.with_token(Some(&bob)).run(&["reject", "p", &id]).await;
    assert!(out.code(0).stdout.contains("rejected"), "{}", out.stdout);
    let out = cli
        .run(&["approve", "p", "01a250f3-ec2f-75c6-ad5e-a0cf52413651"])
        .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
}

async fn tokens_login_and_exit_codes(app: &TestApp) {
    let cli = Cli::new(app);
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "fraud-a"})),
    )
    .await;
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "other"})),
    )
    .await;
    // No token, a bad token: 4.
    let out = cli.with_token(None).run(&["models"]).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    let out = cli.with_token(Some("mr_nope")).run(&["models"]).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    // A read token may not promote: 4.
    let reader = token(app, "reader", &["read"], Some(&["fraud-*"])).await;
    version_with(app, "fraud-a", &[]).await;
    let as_reader = cli.with_token(Some(&reader));
    let out = as_reader
        .run(&["promote", "fraud-a", "production", "1"])
        .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    let out = as_reader.run(&["models", "--json"]).await;
    let names: Vec<String> = out.code(0).json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["fraud-a"],
        "a glob-limited token sees its models only"
    );
    // No server: 5.
    let gone = Cli::at("http://127.0.0.1:9".into(), app.root.clone());
    let out = gone.run(&["models"]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);

    // login checks the token with whoami and saves it readable by its owner alone; later
    // commands need no MODELREG_TOKEN.
    let fresh = cli.with_token(None);
    let mut c = fresh.command(&["login", "--server", &cli.server]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{reader}\n").as_bytes())
            .await
            .unwrap();
    }
    let done = child.wait_with_output().await.unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let file = fresh.home.path().join("credentials.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let logged = Cli {
        server: String::new(),
        token: None,
        home: tempfile::tempdir().unwrap(),
    };
    // The saved server and token, from the file alone.
    let mut c = logged.command(&["whoami", "--json"]);
    c.env_remove("MODELREG_URL")
        .env("MODELREG_CONFIG_DIR", fresh.home.path());
    let out = logged.run_with(c).await;
    assert_eq!(out.code(0).json()["name"], "reader");
    // A file others may read is refused.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = fresh.run(&["models"]).await;
    assert_eq!(out.code, 4);
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    // A bad token is not saved.
    let other = cli.with_token(None);
    let token_file = other.home.path().join("t");
    std::fs::write(&token_file, "mr_bad").unwrap();
    let out = other
        .run(&[
            "login",
            "--server",
            &cli.server,
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(!other.home.path().join("credentials.json").exists());

    // Completion scripts for the three shells.
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.run(&["completion", shell]).await;
        assert!(out.code(0).stdout.contains("promote"), "{shell}");
    }
}

async fn fifty_mib_up_and_down_with_checksums_and_resume(app: &TestApp) {
    let cli = Cli::new(app);
    admin(
        app,
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": "big"})),
    )
    .await;
    admin(
        app,
        Method::POST,
        "/api/v1/models/big/versions",
        Some(json!({})),
    )
    .await;
    let (_keep, dir) = crate::cli_support::scratch();
    let model = dir.join("model");
    std::fs::create_dir_all(model.join("data")).unwrap();
    let weights = noise(50 << 20, 7);
    std::fs::write(model.join("data/weights.bin"), &weights).unwrap();
    std::fs::write(model.join("MLmodel"), "flavors: {}\n").unwrap();
    let out = cli
        .run(&["upload", "big", "1", model.to_str().unwrap(), "--json"])
        .await;
    let files = out.code(0).json()["files"].clone();
    assert_eq!(files[1]["path"], "data/weights.bin");
    assert_eq!(files[1]["sha256"], sha256_hex(&weights));
    assert_eq!(files[1]["status"], "uploaded");
    // Again: already there with the same bytes, nothing sent twice.
    let out = cli
        .run(&["upload", "big", "1", model.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(out.code(0).json()["files"][1]["status"], "unchanged");
    // Other bytes under a path already uploaded: refused (1).
    std::fs::write(model.join("MLmodel"), "changed\n").unwrap();
    let out = cli
        .run(&["upload", "big", "1", model.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[artifact_exists]"), "{}", out.stderr);
    let out = cli
        .run(&[
            "upload",
            "big",
            "1",
            model.join("MLmodel").to_str().unwrap(),
            "--prefix",
            "extra",
        ])
        .await;
    out.code(0);
    admin(
        app,
        Method::POST,
        "/api/v1/models/big/versions/1/finalize",
        None,
    )
    .await
    .ok(200);
    // Once ready the version is immutable (1).
    let out = cli
        .run(&[
            "upload",
            "big",
            "1",
            model.join("MLmodel").to_str().unwrap(),
            "--prefix",
            "late",
        ])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[version_immutable]"), "{}", out.stderr);
    promote(app, "big", "production", 1).await;

    let dest = dir.join("down");
    let out = cli
        .run(&[
            "download",
            "big@production",
            dest.to_str().unwrap(),
            "--json",
        ])
        .await;
    let listed = out.code(0).json()["files"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(
        std::fs::read(dest.join("data/weights.bin")).unwrap(),
        weights
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("extra/MLmodel")).unwrap(),
        "changed\n"
    );

    // A download cut at 20 MiB leaves a .part; the next run resumes it with Range.
    let proxy = Proxy::start(app).await;
    *proxy.faults.cut_after.lock().unwrap() = Some(20 << 20);
    let through = Cli::at(proxy.url(), app.root.clone());
    let dest2 = dir.join("cut");
    let faults = proxy.faults.clone();
    // The proxy comes back up after a moment; the client's retries resume the download.
    let back = tokio::spawn(async move {
        faults
            .back_up_after(std::time::Duration::from_millis(600))
            .await;
    });
    let out = through
        .run(&["download", "big/1", dest2.to_str().unwrap()])
        .await;
    back.await.unwrap();
    out.code(0);
    assert!(out.stderr.contains("resuming"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(dest2.join("data/weights.bin")).unwrap(),
        weights
    );
    assert!(!dest2.join("data/weights.bin.part").exists());

    // A .part left by a killed run: resumed (its first bytes are right) or restarted (they
    // are not); either way the file that lands has the listed sha256.
    let dest3 = dir.join("resume");
    std::fs::create_dir_all(dest3.join("data")).unwrap();
    std::fs::write(dest3.join("data/weights.bin.part"), &weights[..10 << 20]).unwrap();
    let out = cli
        .run(&["download", "big/1", dest3.to_str().unwrap()])
        .await;
    out.code(0);
    assert_eq!(
        std::fs::read(dest3.join("data/weights.bin")).unwrap(),
        weights
    );
    let dest4 = dir.join("restart");
    std::fs::create_dir_all(dest4.join("data")).unwrap();
    std::fs::write(dest4.join("data/weights.bin.part"), noise(10 << 20, 99)).unwrap();
    let out = cli
        .run(&["download", "big/1", dest4.to_str().unwrap()])
        .await;
    out.code(0);
    assert_eq!(
        std::fs::read(dest4.join("data/weights.bin")).unwrap(),
        weights
    );

    // Bytes that are not the artifact's are refused (1) and nothing lands.
    proxy
        .faults
        .corrupt
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dest5 = dir.join("corrupt");
    let out = through
        .run(&["download", "big/1", dest5.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[checksum_mismatch]"), "{}", out.stderr);
    assert!(!dest5.join("data/weights.bin").exists());
    assert!(!dest5.join("MLmodel").exists());
}
