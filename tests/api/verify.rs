//! `modelreg verify`: a sound registry reports nothing; each kind of damage, made on purpose,
//! is found. On both backends, with artifacts in a folder. And `modelreg backup`: a copy taken
//! while the registry serves restores into a registry that verifies and reads as before.

use crate::blobs::Blobs;
use crate::helpers::{Backend, Setup, TestApp, run_case};
use modelreg::verify;
use serde_json::json;

const SETUP: Setup = Setup {
    blobs: &[Blobs::Folder],
    ..Setup::PLAIN
};

crate::backend_tests!(with super::SETUP; finds_each_kind_of_damage, extreme_values_verify_clean);

/// Values at the ends of the f64 range (accepted by metric writes) verify clean: the checks'
/// own arithmetic never overflows, and SQLite's rollups keep them exactly.
async fn extreme_values_verify_clean(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let values = [
        1.7e308,
        -1.7e308,
        f64::MAX,
        f64::MIN,
        -1e-300,
        5e-324,
        1.0 / 3.0,
    ];
    let points: Vec<_> = (0..3000)
        .map(|i| json!({"key": "x", "step": i, "value": values[i % values.len()]}))
        .collect();
    app.post(
        "/api/v1/models/m/versions/1/metrics",
        json!({"points": points}),
    )
    .await
    .ok(200);
    let few: Vec<_> = (0..7)
        .map(|i| json!({"key": "y", "step": i, "value": values[i]}))
        .collect();
    app.post(
        "/api/v1/models/m/versions/1/metrics",
        json!({"points": few}),
    )
    .await
    .ok(200);
    let report = verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .expect("verify reports, whatever the values");
    assert!(report.is_clean(), "{:#?}", report.findings);
}

/// A model with two versions, artifacts, metrics (appended, then partly overwritten) and a
/// stage that was promoted twice and rolled back.
async fn fill(app: &TestApp) {
    app.post("/api/v1/models", json!({"name": "m"}))
        .await
        .ok(201);
    for v in 1..=2 {
        app.post("/api/v1/models/m/versions", json!({"config": {"lr": v}}))
            .await
            .ok(201);
        for (path, bytes) in [
            ("model.bin", vec![v as u8; 3000]),
            ("card.md", b"# card".to_vec()),
        ] {
            let r = app
                .send(
                    app.client
                        .put(app.url(&format!("/api/v1/models/m/versions/{v}/artifacts/{path}")))
                        .body(bytes),
                )
                .await;
            r.ok(201);
        }
        let points: Vec<_> = (0..2000)
            .map(|s| json!({"key": "loss", "step": s, "value": 1.0 / (s as f64 + 1.0)}))
            .collect();
        app.post(
            &format!("/api/v1/models/m/versions/{v}/metrics"),
            json!({"points": points}),
        )
        .await
        .ok(200);
        let again: Vec<_> = (100..200)
            .map(|s| json!({"key": "loss", "step": s, "value": -(s as f64)}))
            .collect();
        app.post(
            &format!("/api/v1/models/m/versions/{v}/metrics"),
            json!({"points": again}),
        )
        .await
        .ok(200);
        app.post_empty(&format!("/api/v1/models/m/versions/{v}/finalize"))
            .await
            .ok(200);
    }
    for v in [1, 2] {
        app.post(
            "/api/v1/models/m/stages/production/promote",
            json!({"version": v}),
        )
        .await
        .ok(200);
    }
    app.post_empty("/api/v1/models/m/stages/production/rollback")
        .await
        .ok(200);
}

/// The `modelreg` binary with these arguments, pointed at the case's registry (its database
/// and its artifact folder), as an operator runs it.
fn modelreg<S: AsRef<std::ffi::OsStr>>(
    app: &TestApp,
    dir: &std::path::Path,
    args: impl IntoIterator<Item = S>,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelreg"));
    command
        .args(args)
        .env("MODELREG_DATABASE_URL", &app.db_url)
        .env(
            "MODELREG_ARTIFACTS_URL",
            format!("file://{}", dir.display()),
        );
    command
}

/// `modelreg verify --deep`: its exit status and what it printed.
fn cli(app: &TestApp, dir: &std::path::Path) -> (bool, String) {
    let out = modelreg(app, dir, ["verify", "--deep"])
        .output()
        .expect("run modelreg verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn checks(app: &TestApp, deep: bool) -> Vec<&'static str> {
    let report = verify::run(app.state.store.as_ref(), &app.state.blobs, deep)
        .await
        .unwrap();
    let mut checks: Vec<_> = report.findings.iter().map(|f| f.check).collect();
    checks.dedup();
    checks
}

async fn finds_each_kind_of_damage(app: &TestApp) {
    fill(app).await;
    let report = verify::run(app.state.store.as_ref(), &app.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.artifacts_checked, 4);
    assert_eq!(report.bytes_hashed, 2 * (3000 + 6));

    let (_, dir) = app.artifact_store();
    let (ok, printed) = cli(app, dir);
    assert!(ok, "{printed}");
    // A mistyped SQLite path is no registry, not an empty sound one.
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("verify")
        .env("MODELREG_DATABASE_URL", "sqlite:///nonexistent/typo.db")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("there is no registry"));
    assert!(
        printed.contains("4 artifacts checked (6012 bytes hashed), 0 problems"),
        "{printed}"
    );
    let records = app.state.store.artifact_records().await.unwrap();
    let file = |model_bin: bool, version: i64| {
        let r = records
            .iter()
            .find(|r| r.version == version && (r.path == "model.bin") == model_bin)
            .unwrap();
        let file = dir.join(&r.object_key);
        assert!(file.is_file(), "{}", file.display());
        file
    };

    // Same size, other bytes: only a deep check reads them.
    std::fs::write(file(true, 1), vec![9u8; 3000]).unwrap();
    assert_eq!(checks(app, false).await, Vec::<&str>::new());
    assert_eq!(checks(app, true).await, vec!["artifact_checksum"]);
    let (ok, printed) = cli(app, dir);
    assert!(
        !ok && printed.contains("artifact_checksum: m v1 artifact model.bin"),
        "{printed}"
    );

    // Truncated: the size gives it away.
    std::fs::write(file(true, 2), vec![2u8; 10]).unwrap();
    assert_eq!(checks(app, false).await, vec!["artifact_size"]);

    // Deleted.
    std::fs::remove_file(file(false, 1)).unwrap();
    let found = checks(app, false).await;
    assert!(found.contains(&"artifact_missing"), "{found:?}");

    // A rollup that no longer agrees with its points.
    app.exec("update metric_rollups set max = max + 1 where level = 2")
        .await;
    let found = checks(app, false).await;
    assert!(found.contains(&"rollup"), "{found:?}");

    // A series' last value that is not its last point's.
    assert!(!found.contains(&"metric_last_value"), "{found:?}");
    app.exec("update metric_series set last_value = last_value + 1")
        .await;
    let found = checks(app, false).await;
    assert!(found.contains(&"metric_last_value"), "{found:?}");

    // A stage pointer moved behind its history's back.
    app.exec("update stages set version = 2").await;
    let found = checks(app, false).await;
    assert!(found.contains(&"stage_stack"), "{found:?}");
    assert!(found.contains(&"stage_history"), "{found:?}");

    // A version row gone: the numbering has a gap.
    app.exec(
        "delete from idempotency_keys; delete from stage_stack; delete from stages; \
         delete from artifacts; delete from metric_points; delete from metric_rollups; \
         delete from metric_series; delete from versions where version = 1",
    )
    .await;
    let found = checks(app, false).await;
    assert!(found.contains(&"versions_gapless"), "{found:?}");
}

/// A restored registry is sound (`verify --deep`), holds the 4 artifacts with the same bytes,
/// and answers these reads as the live one does.
async fn assert_restored(restored: &TestApp, live: &TestApp, paths: &[&str]) {
    let report = verify::run(restored.state.store.as_ref(), &restored.state.blobs, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.artifacts_checked, 4);
    for path in paths {
        let (copy, original) = (restored.get(path).await, live.get(path).await);
        assert_eq!(copy.ok(200), original.ok(200), "{path}");
    }
    let bytes = |a: &TestApp| {
        let url = a.url("/api/v1/models/m/versions/2/artifacts/model.bin");
        let client = a.client.clone();
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    assert_eq!(bytes(restored).await, bytes(live).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restores_sqlite() {
    run_case(Backend::Sqlite, SETUP, backup_restores).await
}

/// Backs up a serving registry (writes going on meanwhile), restores the copy into a new
/// server, and reads it back.
async fn backup_restores(app: &TestApp) {
    fill(app).await;
    let (_, dir) = app.artifact_store();
    let dest = tempfile::tempdir().unwrap();
    let backup_dir = dest.path().join("backup");
    let writes = async {
        for i in 0..20 {
            app.put(&format!("/api/v1/models/busy-{i}"), json!({}))
                .await
                .ok(201);
        }
    };
    let backup_args = [std::ffi::OsStr::new("backup"), backup_dir.as_os_str()];
    let mut command = modelreg(app, dir, backup_args);
    let backup = async {
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ((), printed) = tokio::join!(writes, backup);
    assert!(
        printed.contains("and 4 artifacts (6012 bytes)"),
        "{printed}"
    );

    let artifacts = format!("file://{}", backup_dir.join("artifacts").display());
    let restored = TestApp::spawn_with(
        format!("sqlite://{}", backup_dir.join("modelreg.db").display()),
        |_| {},
        Some(modelreg::blob::BlobStore::from_url(&artifacts).unwrap()),
    )
    .await;
    let paths = [
        "/api/v1/models/m",
        "/api/v1/models/m/versions",
        "/api/v1/models/m/stages/production",
        "/api/v1/models/m/stages/production/history",
        "/api/v1/models/m/versions/2/metrics/loss?max_points=50",
    ];
    assert_restored(&restored, app, &paths).await;
    restored.stop().await;

    // Into a folder that is not empty: refused.
    let again = modelreg(app, dir, backup_args).output().unwrap();
    let printed = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && printed.contains("is not empty"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_and_restore_postgres() {
    run_case(Backend::Postgres, SETUP, dump_and_restore).await
}

/// The Postgres procedure of docs/operators.md: `pg_dump` while serving, then the objects; restored with
/// `pg_restore` into a fresh database and a fresh folder, the registry verifies and reads as
/// before.
async fn dump_and_restore(app: &TestApp) {
    fill(app).await;
    let (_, dir) = app.artifact_store();
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("modelreg.dump");
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--file",
            dump.to_str().unwrap(),
            &app.db_url,
        ],
    );
    let objects = work.path().join("artifacts");
    run(
        "cp",
        &[
            "-a",
            &format!("{}/.", dir.display()),
            objects.to_str().unwrap(),
        ],
    );

    let fresh = crate::helpers::TestDb::create(Backend::Postgres).await;
    run(
        "pg_restore",
        &["--no-owner", "--dbname", &fresh.url, dump.to_str().unwrap()],
    );
    let store = format!("file://{}", objects.display());
    let restored = TestApp::spawn_with(
        fresh.url.clone(),
        |_| {},
        Some(modelreg::blob::BlobStore::from_url(&store).unwrap()),
    )
    .await;
    let paths = [
        "/api/v1/models/m",
        "/api/v1/models/m/versions",
        "/api/v1/models/m/stages/production/history",
        "/api/v1/models/m/versions/2/metrics/loss?max_points=50",
        "/api/v1/events",
    ];
    assert_restored(&restored, app, &paths).await;
    // Writes go on after a restore: the sequences came along.
    restored
        .post("/api/v1/models/m/versions", json!({}))
        .await
        .ok(201);
    restored
        .post("/api/v1/models", json!({"name": "after-restore"}))
        .await
        .ok(201);
    restored.stop().await;
    fresh.drop_db().await;
}
