//! `modelreg sync MODEL@STAGE DEST`: the deployment agent.
//!
//! ```text
//! DEST/current -> versions/7        the stage's version: a symlink, swapped by rename
//! DEST/versions/7/…                 every artifact, each sha256-checked
//! DEST/versions/7.json              what it holds, and when it was last made current
//! DEST/.incoming/8/…                a download in progress (resumed after a restart)
//! ```
//!
//! A version enters `versions/` only whole (its folder is renamed in once every file is
//! verified), so `current` never points at a partial download. It follows the stage through
//! the event stream (and polls as a fallback), keeps serving what it has while the server
//! is away, and keeps the last `--keep` versions so that a rollback is a switch.

use super::http::Api;
use super::sse::{EventStream, Frame};
use super::transfer::{self, Remote};
use super::{Conn, Exit, Failure, Target, signed};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// MODEL@STAGE: the stage to follow.
    pub target: Target,
    /// The folder to keep in step: DEST/current is the stage's version.
    pub dest: PathBuf,
    /// Sync once and exit (0 with the files in place): for an init container.
    #[arg(long)]
    pub once: bool,
    /// Run this (with `sh -c`) after each switch; it gets MODELREG_MODEL, MODELREG_STAGE,
    /// MODELREG_VERSION, MODELREG_PREVIOUS_VERSION and MODELREG_PATH in its environment.
    #[arg(long)]
    pub exec: Option<String>,
    /// How many versions to keep on disk (the current one included), for rollbacks
    /// without a download.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Serve the agent's state on this address: /healthz (alive), /readyz (200 once a
    /// version is in place).
    #[arg(long)]
    pub health: Option<SocketAddr>,
    /// How often to read the stage even when the event stream is quiet (a safety net; the
    /// stream normally says at once).
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    pub poll: Duration,
    #[command(flatten)]
    pub keys: signed::KeyArgs,
}

/// What the agent reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct State {
    pub model: String,
    pub stage: String,
    /// The version `current` points at.
    pub version: Option<i64>,
    pub path: Option<String>,
    /// What the stage held when last read (`null`: empty or not read yet).
    pub stage_version: Option<i64>,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// `stream` while the event stream is open, `polling` while it is not.
    pub following: &'static str,
}

/// A version folder's record, beside it.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    model: String,
    version: i64,
    artifacts: Vec<ManifestEntry>,
    /// The signature the files were checked against, when one was required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<Value>,
    downloaded_at: String,
    last_current_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    path: String,
    size: u64,
    sha256: String,
}

pub async fn run(args: SyncArgs) -> Result<Exit, Failure> {
    let Target::Stage(model, stage) = args.target.clone() else {
        return Err(Failure::usage("sync follows a stage: write MODEL@STAGE"));
    };
    if !args.conn.json {
        crate::telemetry::init(crate::config::LogFormat::Text);
    } else {
        crate::telemetry::init(crate::config::LogFormat::Json);
    }
    args.keys.load()?;
    let api = Arc::new(Api::connect(&args.conn)?);
    let disk = Disk::open(&args.dest)?;
    let state = Arc::new(Mutex::new(State {
        model: model.clone(),
        stage: stage.clone(),
        version: disk.current(),
        following: "polling",
        ..State::default()
    }));
    if let Some(v) = disk.current() {
        set(&state, |s| {
            s.path = Some(disk.version_dir(v).display().to_string())
        });
    }
    let agent = Agent {
        api: api.clone(),
        disk,
        model: model.clone(),
        stage: stage.clone(),
        exec: args.exec.clone(),
        keep: args.keep as usize,
        keys: args.keys.clone(),
        state: state.clone(),
    };
    if args.once {
        return match agent.reconcile().await {
            Ok(Some(v)) => {
                tracing::info!(model, stage, version = v, "in place");
                Ok(Exit::Ok)
            }
            Ok(None) => Err(Failure::new(
                Exit::NotFound,
                format!("{model}@{stage} holds no version [stage_empty]"),
            )),
            Err(f) => Err(f),
        };
    }
    if let Some(addr) = args.health {
        serve_health(addr, state.clone()).await?;
    }
    let kick = Arc::new(Notify::new());
    tokio::spawn(follow(
        api,
        model,
        stage.clone(),
        kick.clone(),
        state.clone(),
    ));
    let mut pause = Duration::from_secs(1);
    loop {
        let wait = match agent.reconcile().await {
            Ok(_) => {
                pause = Duration::from_secs(1);
                args.poll
            }
            Err(f) if f.exit == Exit::Auth || f.exit == Exit::Usage => {
                // A revoked token or a deleted model is not fixed by waiting: say so and
                // keep serving what is on disk, checking again now and then.
                tracing::error!(error = %f.message, "sync refused");
                args.poll
            }
            Err(f) => {
                tracing::warn!(error = %f.message, retry_in = ?pause, "sync failed; keeping the current version");
                let p = pause;
                pause = (pause * 2).min(Duration::from_secs(30));
                p.min(args.poll)
            }
        };
        tokio::select! {
            () = kick.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn set(state: &Mutex<State>, f: impl FnOnce(&mut State)) {
    if let Ok(mut s) = state.lock() {
        f(&mut s);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Reads the event stream and kicks the agent when the stage changes (and when the stream
/// opens again, since it may have missed something while it was cut).
async fn follow(
    api: Arc<Api>,
    model: String,
    stage: String,
    kick: Arc<Notify>,
    state: Arc<Mutex<State>>,
) {
    let mut stream = EventStream::new(&api, vec![("model", model)], None);
    loop {
        match stream.next().await {
            Ok(Frame::Connected) => {
                set(&state, |s| s.following = "stream");
                kick.notify_one();
            }
            Ok(Frame::Event(e)) => {
                let ours = e["stage"].as_str() == Some(stage.as_str())
                    && e["action"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("stage."));
                if ours {
                    tracing::info!(action = %e["action"], version = %e["version"], "stage changed");
                    kick.notify_one();
                }
            }
            Ok(Frame::Reconnecting(why)) => {
                set(&state, |s| s.following = "polling");
                tracing::debug!(reason = %why, "event stream cut; reconnecting");
            }
            Err(f) => {
                set(&state, |s| s.following = "polling");
                tracing::warn!(error = %f.message, "event stream refused; polling only");
                return;
            }
        }
    }
}

struct Agent {
    api: Arc<Api>,
    disk: Disk,
    model: String,
    stage: String,
    exec: Option<String>,
    keep: usize,
    keys: signed::KeyArgs,
    state: Arc<Mutex<State>>,
}

impl Agent {
    /// Makes `current` the stage's version: `Some(version)` in place, `None` when the stage
    /// is empty (what is on disk stays).
    async fn reconcile(&self) -> Result<Option<i64>, Failure> {
        let outcome = self.reconcile_once().await;
        match &outcome {
            Ok(v) => set(&self.state, |s| {
                s.last_sync = Some(now());
                s.stage_version = *v;
                s.last_error = None;
            }),
            Err(f) => set(&self.state, |s| {
                s.last_error = Some(f.message.clone());
                s.last_error_at = Some(now());
            }),
        }
        outcome
    }

    async fn reconcile_once(&self) -> Result<Option<i64>, Failure> {
        let held = match self
            .api
            .get(&["models", &self.model, "stages", &self.stage], &[])
            .await
        {
            Ok(s) => s["version"].as_i64(),
            Err(f)
                if f.problem
                    .as_ref()
                    .is_some_and(|p| p["code"] == "stage_empty") =>
            {
                None
            }
            Err(f) => return Err(f),
        };
        let Some(version) = held else {
            return Ok(None);
        };
        let previous = self.disk.current();
        if previous == Some(version) {
            return Ok(Some(version));
        }
        if !self.disk.has(version) {
            self.download(version).await?;
        } else {
            tracing::info!(version, "on disk already: switching without a download");
        }
        self.disk.switch(version)?;
        let path = self.disk.version_dir(version);
        tracing::info!(model = %self.model, stage = %self.stage, version, previous, "switched");
        set(&self.state, |s| {
            s.version = Some(version);
            s.path = Some(path.display().to_string());
        });
        if let Some(cmd) = &self.exec {
            self.run_hook(cmd, version, previous, &path).await;
        }
        self.disk.prune(self.keep, version);
        Ok(Some(version))
    }

    async fn download(&self, version: i64) -> Result<(), Failure> {
        let remotes = transfer::list(&self.api, &self.model, version).await?;
        // Asked at every download: the policy may have changed since the last one.
        let covered = match signed::requirement(
            &self.api,
            &self.model,
            Some(&self.stage),
            &self.keys,
        )
        .await?
        {
            Some(req) => {
                let c = signed::check(&self.api, &self.model, version, &req, &remotes).await?;
                tracing::info!(version, signature = %c.describe(), "the listing is what was signed");
                Some(c)
            }
            None => None,
        };
        let incoming = self.disk.incoming(version)?;
        let bar = indicatif::ProgressBar::hidden();
        let started = std::time::Instant::now();
        for remote in &remotes {
            // Two attempts each: the agent's own loop retries with backoff, and what was
            // fetched stays in .incoming for the next try.
            transfer::fetch(&self.api, &self.model, version, remote, &incoming, &bar, 2).await?;
        }
        let total: u64 = remotes.iter().map(|r| r.size).sum();
        tracing::info!(
            version,
            files = remotes.len(),
            bytes = total,
            seconds = started.elapsed().as_secs_f64(),
            "downloaded and verified"
        );
        let signature = covered.as_ref().map(signed::Covered::to_json);
        self.disk
            .accept(&self.model, version, &incoming, &remotes, signature)
    }

    async fn run_hook(&self, cmd: &str, version: i64, previous: Option<i64>, path: &Path) {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            .env("MODELREG_MODEL", &self.model)
            .env("MODELREG_STAGE", &self.stage)
            .env("MODELREG_VERSION", version.to_string())
            .env(
                "MODELREG_PREVIOUS_VERSION",
                previous.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env("MODELREG_PATH", path)
            .env_remove("MODELREG_TOKEN")
            .kill_on_drop(true);
        match command.status().await {
            Ok(s) if s.success() => tracing::info!(version, "--exec hook ran"),
            Ok(s) => {
                let message = format!("the --exec hook exited with {s}");
                tracing::warn!(version, "{message}");
                set(&self.state, |st| {
                    st.last_error = Some(message);
                    st.last_error_at = Some(now());
                });
            }
            Err(e) => tracing::warn!(version, error = %e, "the --exec hook did not start"),
        }
    }
}

/// The agent's folder.
struct Disk {
    root: PathBuf,
}

impl Disk {
    fn open(root: &Path) -> Result<Self, Failure> {
        for dir in [
            root.to_owned(),
            root.join("versions"),
            root.join(".incoming"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, &e))?;
        }
        // Absolute, so that the hook's MODELREG_PATH means the same from any directory.
        let root = &std::fs::canonicalize(root).map_err(|e| io(root, &e))?;
        let current = root.join("current");
        if let Ok(meta) = std::fs::symlink_metadata(&current)
            && !meta.file_type().is_symlink()
        {
            return Err(Failure::usage(format!(
                "{} exists and is not a symlink; sync will not replace it",
                current.display()
            )));
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn version_dir(&self, version: i64) -> PathBuf {
        self.root.join("versions").join(version.to_string())
    }

    fn manifest(&self, version: i64) -> PathBuf {
        self.root.join("versions").join(format!("{version}.json"))
    }

    /// The version `current` points at, when it points at a whole one.
    fn current(&self) -> Option<i64> {
        let target = std::fs::read_link(self.root.join("current")).ok()?;
        let name = target.strip_prefix("versions").ok()?.to_str()?;
        let version: i64 = name.parse().ok()?;
        self.has(version).then_some(version)
    }

    /// A version is on disk once its folder and its manifest are.
    fn has(&self, version: i64) -> bool {
        self.version_dir(version).is_dir() && self.manifest(version).is_file()
    }

    /// The folder a download of `version` goes to: kept across restarts, so a download
    /// that was cut resumes.
    fn incoming(&self, version: i64) -> Result<PathBuf, Failure> {
        let dir = self.root.join(".incoming").join(version.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, &e))?;
        Ok(dir)
    }

    /// Moves a verified download into `versions/`, with its manifest written last.
    fn accept(
        &self,
        model: &str,
        version: i64,
        incoming: &Path,
        remotes: &[Remote],
        signature: Option<Value>,
    ) -> Result<(), Failure> {
        let dir = self.version_dir(version);
        if dir.exists() {
            // Left by an agent that stopped between the rename and the manifest.
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, &e))?;
        }
        sync_dir(incoming);
        std::fs::rename(incoming, &dir).map_err(|e| io(&dir, &e))?;
        let manifest = Manifest {
            model: model.to_owned(),
            version,
            artifacts: remotes
                .iter()
                .map(|r| ManifestEntry {
                    path: r.path.clone(),
                    size: r.size,
                    sha256: r.sha256.clone(),
                })
                .collect(),
            signature,
            downloaded_at: now(),
            last_current_at: now(),
        };
        self.write_manifest(&manifest)?;
        sync_dir(&self.root.join("versions"));
        Ok(())
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), Failure> {
        let path = self.manifest(manifest.version);
        let tmp = path.with_extension("json.tmp");
        let text =
            serde_json::to_vec_pretty(manifest).map_err(|e| Failure::refused(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, &e))
    }

    fn read_manifest(&self, version: i64) -> Option<Manifest> {
        let text = std::fs::read(self.manifest(version)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Points `current` at a version: a new symlink renamed over the old one, so a reader
    /// sees the old version or the new one, never neither.
    fn switch(&self, version: i64) -> Result<(), Failure> {
        let link = self.root.join(".current.new");
        let _ = std::fs::remove_file(&link);
        let target = Path::new("versions").join(version.to_string());
        symlink(&target, &link).map_err(|e| io(&link, &e))?;
        let current = self.root.join("current");
        std::fs::rename(&link, &current).map_err(|e| io(&current, &e))?;
        sync_dir(&self.root);
        if let Some(mut m) = self.read_manifest(version) {
            m.last_current_at = now();
            let _ = self.write_manifest(&m);
        }
        Ok(())
    }

    /// Keeps the current version and the `keep - 1` most recently current others; removes
    /// downloads of versions no longer wanted.
    fn prune(&self, keep: usize, current: i64) {
        let mut others: Vec<(String, i64)> = self
            .versions()
            .into_iter()
            .filter(|v| *v != current)
            .map(|v| {
                let at = self
                    .read_manifest(v)
                    .map(|m| m.last_current_at)
                    .unwrap_or_default();
                (at, v)
            })
            .collect();
        others.sort();
        let surplus = others.len().saturating_sub(keep.saturating_sub(1));
        for (_, v) in others.into_iter().take(surplus) {
            let _ = std::fs::remove_file(self.manifest(v));
            if let Err(e) = std::fs::remove_dir_all(self.version_dir(v)) {
                tracing::warn!(version = v, error = %e, "cannot remove an old version");
            } else {
                tracing::info!(version = v, "removed (more than --keep versions on disk)");
            }
        }
        // Downloads of other versions that were cut and are no longer wanted.
        if let Ok(entries) = std::fs::read_dir(self.root.join(".incoming")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn versions(&self) -> Vec<i64> {
        std::fs::read_dir(self.root.join("versions"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("sync needs symlinks (unix)"))
}

/// Makes renames in a folder durable (best effort: not every filesystem allows it).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn io(path: &Path, e: &std::io::Error) -> Failure {
    Failure::refused(format!("{}: {e}", path.display()))
}

async fn serve_health(addr: SocketAddr, state: Arc<Mutex<State>>) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("--health {addr}: {e}")))?;
    let snapshot = |state: &Mutex<State>| -> Value {
        state
            .lock()
            .map(|s| json!(*s))
            .unwrap_or_else(|_| json!({"error": "state unavailable"}))
    };
    let live = state.clone();
    let ready = state;
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let body = snapshot(&live);
                async move { axum::Json(body) }
            }),
        )
        .route(
            "/readyz",
            axum::routing::get(move || {
                let body = snapshot(&ready);
                async move {
                    let status = if body["version"].is_i64() {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(body)).into_response()
                }
            }),
        );
    tracing::info!(%addr, "serving the agent's state on /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the health listener stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (tempfile::TempDir, Disk) {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let disk = Disk::open(dir.path()).unwrap_or_else(|_| unreachable!());
        (dir, disk)
    }

    fn put(disk: &Disk, v: i64) {
        let incoming = disk.incoming(v).unwrap_or_else(|_| unreachable!());
        std::fs::write(incoming.join("w.bin"), v.to_string()).unwrap_or_else(|_| unreachable!());
        disk.accept("m", v, &incoming, &[], None)
            .unwrap_or_else(|_| unreachable!());
    }

    #[test]
    fn current_moves_only_to_whole_versions() {
        let (_dir, disk) = disk();
        assert_eq!(disk.current(), None);
        put(&disk, 1);
        disk.switch(1).unwrap_or_else(|_| unreachable!());
        assert_eq!(disk.current(), Some(1));
        // A folder without its manifest (a crash between the two) is not a version.
        std::fs::create_dir_all(disk.version_dir(2)).unwrap_or_else(|_| unreachable!());
        assert!(!disk.has(2));
        put(&disk, 2);
        disk.switch(2).unwrap_or_else(|_| unreachable!());
        assert_eq!(disk.current(), Some(2));
        let text = std::fs::read_to_string(disk.root.join("current/w.bin")).unwrap_or_default();
        assert_eq!(text, "2");
    }

    #[test]
    fn prune_keeps_the_most_recently_current() {
        let (_dir, disk) = disk();
        for v in 1..=4 {
            put(&disk, v);
            disk.switch(v).unwrap_or_else(|_| unreachable!());
            std::thread::sleep(Duration::from_millis(5));
        }
        // Back to 1 (a rollback): 1 is now the most recent, 2 the oldest.
        disk.switch(1).unwrap_or_else(|_| unreachable!());
        disk.prune(3, 1);
        let mut left = disk.versions();
        left.sort_unstable();
        assert_eq!(left, [1, 3, 4]);
    }
}
