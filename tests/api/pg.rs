//! Which Postgres the suite runs on, chosen once per test run and said in one line:
//!
//! 1. `MODELREG_TEST_PG_URL` when set: an explicit choice, never replaced (unreachable, every
//!    Postgres case fails saying so);
//! 2. else a server on 127.0.0.1:5432 that accepts `postgres` without a password;
//! 3. else a throwaway cluster of the suite's own (`initdb` in a temporary folder, a free
//!    port, run as `postgres` under root), shared by the whole run; a watcher in a session
//!    of its own stops it and removes its folder when the test process ends, however it ends
//!    (a panic, Ctrl-C, a kill);
//! 4. else the run fails with the three ways to fix it.
//!
//! Postgres cases are never skipped.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where the Postgres cases run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// `MODELREG_TEST_PG_URL`, as given.
    Given(String),
    /// The server already listening on 127.0.0.1:5432.
    Running,
    /// A cluster of the suite's own, made with these server binaries.
    Own(PathBuf),
    /// Nothing to run on.
    Nothing,
}

/// The choice, from what the machine offers (kept pure for its unit test).
pub fn choose(given: Option<String>, default_answers: bool, binaries: Option<PathBuf>) -> Choice {
    match (
        given.filter(|u| !u.trim().is_empty()),
        default_answers,
        binaries,
    ) {
        (Some(url), _, _) => Choice::Given(url),
        (None, true, _) => Choice::Running,
        (None, false, Some(bin)) => Choice::Own(bin),
        (None, false, None) => Choice::Nothing,
    }
}

pub const HOW_TO_FIX: &str = "the Postgres cases need a Postgres server, and none was found: \
    install the server package (its initdb and pg_ctl are used to run a throwaway cluster), \
    start a server on 127.0.0.1:5432 that lets `postgres` in without a password, or set \
    MODELREG_TEST_PG_URL=postgres://user@host:port/database";

/// The admin URL of the Postgres the suite runs on (the first call decides).
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let choice = choose(
            std::env::var("MODELREG_TEST_PG_URL").ok(),
            answers(DEFAULT),
            server_binaries(),
        );
        let url = match &choice {
            Choice::Given(url) => url.clone(),
            Choice::Running => DEFAULT.to_owned(),
            Choice::Own(bin) => start_own(bin),
            Choice::Nothing => panic!("{HOW_TO_FIX}"),
        };
        say(&match choice {
            Choice::Given(_) => format!(
                "postgres for the tests: MODELREG_TEST_PG_URL ({})",
                redact(&url)
            ),
            Choice::Running => format!("postgres for the tests: the server at {DEFAULT}"),
            Choice::Own(bin) => format!(
                "postgres for the tests: no server at 127.0.0.1:5432; a throwaway cluster at {url} ({})",
                bin.display()
            ),
            Choice::Nothing => unreachable!(),
        });
        url
    })
    .clone()
}

/// One line on the terminal, past the test harness's capture.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or(user);
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Whether a server at `url` lets the harness in (checked on a thread of its own: this may
/// run inside a test's runtime).
fn answers(url: &str) -> bool {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            use sqlx::Connection;
            let connect = sqlx::PgConnection::connect(&url);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Some(())
                }
                _ => None,
            }
        })
    })
    .join()
    .ok()
    .flatten()
    .is_some()
}

/// The folder of `initdb` and `pg_ctl`: `pg_config --bindir`, Debian's
/// `/usr/lib/postgresql/*/bin` (newest first), or `PATH`.
pub fn server_binaries() -> Option<PathBuf> {
    let has = |dir: &std::path::Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&dir) {
            return Some(dir);
        }
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    debian.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = debian.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| has(d))
}

/// Starts the suite's own cluster and the watcher that removes it; its admin URL.
fn start_own(bin: &std::path::Path) -> String {
    let cluster = crate::cluster::Cluster::init_with(
        bin.to_owned(),
        "max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
        &[],
    );
    cluster.start();
    let url = cluster.url("");
    let (dir, stop) = cluster.detach();
    // The watcher: its own session (Ctrl-C in the terminal does not reach it), waiting for
    // this process to end, then stopping the cluster and removing its folder.
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
    );
    let spawned = std::process::Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        spawned.is_ok_and(|s| s.success()),
        "cannot start the watcher that removes the test cluster (setsid)"
    );
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_follows_the_documented_order() {
        let bin = Some(PathBuf::from("/usr/lib/postgresql/15/bin"));
        let given = Some("postgres://u@h:1/d".to_owned());
        // An explicit URL wins, reachable or not.
        assert_eq!(
            choose(given.clone(), true, bin.clone()),
            Choice::Given("postgres://u@h:1/d".into())
        );
        assert_eq!(
            choose(given, false, None),
            Choice::Given("postgres://u@h:1/d".into())
        );
        // Then a running server, then a cluster of our own, then nothing.
        assert_eq!(choose(None, true, bin.clone()), Choice::Running);
        assert_eq!(
            choose(Some("  ".into()), false, bin.clone()),
            Choice::Own(PathBuf::from("/usr/lib/postgresql/15/bin"))
        );
        assert_eq!(choose(None, false, None), Choice::Nothing);
        assert!(
            HOW_TO_FIX.contains("install")
                && HOW_TO_FIX.contains("start a server")
                && HOW_TO_FIX.contains("MODELREG_TEST_PG_URL")
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("postgres://u:secret@h:5/d"), "postgres://u@h:5/d");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    }
}
