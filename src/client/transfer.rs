//! Moving artifacts: uploads streamed with their sha256 (the server checks it, and the
//! client checks the server's answer), downloads streamed to a `.part` file that a retry
//! resumes with `Range`, renamed into place only once its sha256 and size are right.

use super::http::{Api, chain, ok};
use super::print::{self, bytes};
use super::{Conn, Exit, Failure, Target, resolve_version, signed};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    pub version: i64,
    /// Files, or folders whose files are uploaded with their paths below the folder.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Put the artifacts under this path (`model/` → `model/weights.bin`).
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// MODEL/VERSION or MODEL@STAGE.
    pub target: Target,
    /// The folder to write the artifacts into (created when missing).
    pub dest: PathBuf,
    #[command(flatten)]
    pub keys: super::signed::KeyArgs,
}

/// One artifact as the server lists it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Remote {
    pub fn from_json(v: &Value) -> Result<Self, Failure> {
        let path = v["path"].as_str().unwrap_or_default().to_owned();
        let size = v["size"].as_u64();
        let sha256 = v["sha256"].as_str().map(str::to_ascii_lowercase);
        match (safe_relative(&path), size, sha256) {
            (true, Some(size), Some(sha256)) => Ok(Self { path, size, sha256 }),
            _ => Err(Failure::refused(format!(
                "the server listed an artifact this client will not write: {path:?}"
            ))),
        }
    }
}

/// A path that stays inside the folder it is joined to.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

pub fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub async fn list(api: &Api, model: &str, version: i64) -> Result<Vec<Remote>, Failure> {
    let v = version.to_string();
    api.list(
        &["models", model, "versions", &v, "artifacts"],
        &[],
        usize::MAX,
    )
    .await?
    .iter()
    .map(Remote::from_json)
    .collect()
}

pub async fn download(args: DownloadArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let (model, version) = resolve_version(&api, &args.target).await?;
    let remotes = list(&api, &model, version).await?;
    let stage = match &args.target {
        Target::Stage(_, s) => Some(s.as_str()),
        _ => None,
    };
    let covered = match signed::requirement(&api, &model, stage, &args.keys).await? {
        Some(req) => Some(signed::check(&api, &model, version, &req, &remotes).await?),
        None => None,
    };
    if let Some(c) = &covered
        && !args.conn.json
    {
        println!("{model}/{version} is {}", c.describe());
    }
    let bar = progress(remotes.iter().map(|r| r.size).sum(), args.conn.json);
    let mut files = Vec::new();
    for remote in &remotes {
        let fetched = fetch(&api, &model, version, remote, &args.dest, &bar, ATTEMPTS).await?;
        if !args.conn.json {
            bar.suspend(|| {
                println!(
                    "{:<10} {}  {}  sha256 {}",
                    if fetched { "downloaded" } else { "unchanged" },
                    remote.path,
                    bytes(remote.size),
                    &remote.sha256[..12.min(remote.sha256.len())]
                )
            });
        }
        files.push(
            json!({"path": remote.path, "size": remote.size, "sha256": remote.sha256,
            "status": if fetched { "downloaded" } else { "unchanged" }}),
        );
    }
    bar.finish_and_clear();
    if args.conn.json {
        print::json(&json!({"model": model, "version": version,
            "dest": args.dest.display().to_string(), "files": files,
            "signature": covered.as_ref().map(signed::Covered::to_json)}));
    } else if remotes.is_empty() {
        println!("{model}/{version} has no artifacts");
    }
    Ok(Exit::Ok)
}

/// Attempts at one artifact when the connection breaks (each resumes where the last
/// stopped), for a person waiting at a terminal.
pub const ATTEMPTS: u32 = 5;

/// Fetches one artifact into `dest/path`, unless a file with its sha256 is already there,
/// trying up to `attempts` times. `true` when it was downloaded.
pub async fn fetch(
    api: &Api,
    model: &str,
    version: i64,
    remote: &Remote,
    dest: &Path,
    bar: &ProgressBar,
    attempts: u32,
) -> Result<bool, Failure> {
    let target = dest.join(&remote.path);
    let local = target.clone();
    let expected = (remote.size, remote.sha256.clone());
    let already = tokio::task::spawn_blocking(move || {
        matches!(hash_file(&local), Ok((size, sha)) if (size, sha.as_str()) == (expected.0, expected.1.as_str()))
    })
    .await
    .unwrap_or(false);
    if already {
        bar.inc(remote.size);
        return Ok(false);
    }
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_failure(dir, &e))?;
    }
    let part = part_path(&target);
    bar.set_message(remote.path.clone());
    let mut attempt = 0;
    let mut restarted = false;
    let base = bar.position();
    loop {
        attempt += 1;
        match fetch_once(api, model, version, remote, &part, bar, base).await {
            Ok(()) => break,
            Err(Fetch::Mismatch(why)) => {
                let _ = tokio::fs::remove_file(&part).await;
                // A resumed file whose start was wrong: once more from the first byte.
                if !restarted {
                    restarted = true;
                    continue;
                }
                return Err(Failure::refused(format!(
                    "{}: {why}; nothing was written [checksum_mismatch]",
                    remote.path
                )));
            }
            Err(Fetch::Broken(why)) if attempt < attempts => {
                bar.suspend(|| eprintln!("{}: {why}; resuming", remote.path));
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            Err(Fetch::Broken(why)) => {
                return Err(Failure::new(
                    Exit::Unavailable,
                    format!(
                        "{}: {why} (after {attempts} attempts; run again to resume)",
                        remote.path
                    ),
                ));
            }
            Err(Fetch::Refused(f)) => return Err(f),
        }
    }
    tokio::fs::rename(&part, &target)
        .await
        .map_err(|e| io_failure(&target, &e))?;
    Ok(true)
}

enum Fetch {
    /// The bytes are not the artifact's: the `.part` is dropped.
    Mismatch(String),
    /// The connection broke: the `.part` is kept to resume.
    Broken(String),
    /// The server refused (not found, no access): retrying will not help.
    Refused(Failure),
}

pub fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    target.with_file_name(name)
}

async fn fetch_once(
    api: &Api,
    model: &str,
    version: i64,
    remote: &Remote,
    part: &Path,
    bar: &ProgressBar,
    base: u64,
) -> Result<(), Fetch> {
    // What an earlier attempt left: hashed again, and asked for from where it stops.
    let existing = {
        let part = part.to_owned();
        tokio::task::spawn_blocking(move || hash_prefix(&part))
            .await
            .unwrap_or_else(|_| Ok((0, Sha256::new())))
            .unwrap_or((0, Sha256::new()))
    };
    let (mut have, mut hasher) = if existing.0 <= remote.size {
        existing
    } else {
        (0, Sha256::new())
    };
    let mut segments = vec!["models", model, "versions"];
    let v = version.to_string();
    segments.push(&v);
    segments.push("artifacts");
    segments.extend(remote.path.split('/'));
    let mut req = api.request(Method::GET, api.url(&segments));
    if have > 0 && have < remote.size {
        req = req.header("range", format!("bytes={have}-"));
    }
    if have < remote.size || remote.size == 0 {
        let resp = req.send().await.map_err(|e| Fetch::Broken(chain(&e)))?;
        let resp = match ok(resp).await {
            Ok(r) => r,
            Err(f) if f.exit == Exit::Unavailable => return Err(Fetch::Broken(f.message)),
            Err(f) => return Err(Fetch::Refused(f)),
        };
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim_matches('"').to_ascii_lowercase());
        if etag.as_deref().is_some_and(|t| t != remote.sha256) {
            return Err(Fetch::Mismatch(
                "the server now has other content at this path".to_owned(),
            ));
        }
        let mut file = tokio::fs::OpenOptions::new();
        file.create(true).write(true);
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            file.append(true);
        } else {
            // The whole body: whatever was there goes.
            file.truncate(true);
            have = 0;
            hasher = Sha256::new();
        }
        bar.set_position(base + have);
        let mut file = file
            .open(part)
            .await
            .map_err(|e| Fetch::Refused(io_failure(part, &e)))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Fetch::Broken(chain(&e)))?;
            hasher.update(&chunk);
            have += chunk.len() as u64;
            if have > remote.size {
                return Err(Fetch::Mismatch(format!(
                    "the server sent more than the {} bytes listed",
                    remote.size
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| Fetch::Refused(io_failure(part, &e)))?;
            bar.set_position(base + have);
        }
        file.flush()
            .await
            .map_err(|e| Fetch::Refused(io_failure(part, &e)))?;
        file.sync_all()
            .await
            .map_err(|e| Fetch::Refused(io_failure(part, &e)))?;
    } else {
        bar.set_position(base + have);
    }
    if have < remote.size {
        return Err(Fetch::Broken(format!(
            "the connection ended after {have} of {} bytes",
            remote.size
        )));
    }
    let sha = hex::encode(hasher.finalize());
    if sha != remote.sha256 {
        return Err(Fetch::Mismatch(format!(
            "sha256 {sha} is not the listed {}",
            remote.sha256
        )));
    }
    Ok(())
}

fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    Failure::refused(format!("{}: {e}", path.display()))
}

/// The size and sha256 of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let (size, hasher) = hash_prefix(path)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// A file's bytes read into a hasher, for resuming its sha256 where it stops.
fn hash_prefix(path: &Path) -> std::io::Result<(u64, Sha256)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hasher));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// The files to upload, each with its artifact path.
fn gather(paths: &[PathBuf], prefix: Option<&str>) -> Result<Vec<(PathBuf, String)>, Failure> {
    let prefix = prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty());
    let join = |rel: &str| match prefix {
        Some(p) => format!("{p}/{rel}"),
        None => rel.to_owned(),
    };
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        if meta.is_file() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Failure::usage(format!("{}: not a UTF-8 name", path.display())))?;
            out.push((path.clone(), join(name)));
        } else if meta.is_dir() {
            walk(path, path, &mut |file, rel| out.push((file, join(&rel))))?;
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    if let Some(w) = out.windows(2).find(|w| w[0].1 == w[1].1) {
        return Err(Failure::usage(format!(
            "two files would be uploaded as {}",
            w[0].1
        )));
    }
    for (_, rel) in &out {
        if !safe_relative(rel) {
            return Err(Failure::usage(format!("{rel:?} is not an artifact path")));
        }
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, found: &mut dyn FnMut(PathBuf, String)) -> Result<(), Failure> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(root, &path, found)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .ok()
                .and_then(|r| {
                    r.components()
                        .map(|c| c.as_os_str().to_str())
                        .collect::<Option<Vec<_>>>()
                })
                .map(|parts| parts.join("/"))
                .ok_or_else(|| Failure::usage(format!("{}: not a UTF-8 name", path.display())))?;
            found(path, rel);
        }
    }
    Ok(())
}

pub async fn upload(args: UploadArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let files = gather(&args.paths, args.prefix.as_deref())?;
    let mut sizes = Vec::new();
    for (path, _) in &files {
        let size = std::fs::metadata(path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
            .len();
        sizes.push(size);
    }
    let v = args.version.to_string();
    // Only a pending version takes artifacts: said before any byte is sent (a server that
    // refuses a body it has not read may close the connection under it).
    let version = api
        .get(&["models", &args.model, "versions", &v], &[])
        .await?;
    if version["status"] != "pending" {
        return Err(Failure::refused(format!(
            "{}/{v} is {}; artifacts can only be added while a version is pending [version_immutable]",
            args.model,
            print::cell(&version["status"])
        )));
    }
    let bar = progress(sizes.iter().sum(), args.conn.json);
    let mut results = Vec::new();
    for (path, rel) in &files {
        bar.set_message(rel.clone());
        let local = path.clone();
        let (size, sha) = tokio::task::spawn_blocking(move || hash_file(&local))
            .await
            .map_err(|e| Failure::refused(e.to_string()))?
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        let mut segments = vec!["models", args.model.as_str(), "versions", &v, "artifacts"];
        segments.extend(rel.split('/'));
        let url = api.url(&segments);
        // Uploaded by an earlier run? The server answers 304 to its own ETag without
        // sending the bytes: a retried upload of a folder sends only what is missing.
        let there = api
            .send(
                api.request(Method::GET, url.clone())
                    .header("if-none-match", format!("\"{sha}\"")),
            )
            .await?;
        match there.status() {
            StatusCode::NOT_MODIFIED => {
                bar.inc(size);
                report(&args.conn, &bar, "unchanged", rel, size, &sha);
                results
                    .push(json!({"path": rel, "size": size, "sha256": sha, "status": "unchanged"}));
                continue;
            }
            StatusCode::OK => {
                return Err(Failure::refused(format!(
                    "{rel} is already uploaded with other content [artifact_exists]"
                )));
            }
            StatusCode::NOT_FOUND => {
                // The artifact is not there (or the version is not): the PUT says which.
                let _ = there.bytes().await;
            }
            _ => {
                ok(there).await?;
            }
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        let counted = bar.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
                if let Ok(c) = chunk {
                    counted.inc(c.len() as u64);
                }
            });
        let req = api
            .request(Method::PUT, url.clone())
            .header("x-content-sha256", &sha)
            .header("content-length", size)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        let answer: Value = ok(api.send(req).await?)
            .await?
            .json()
            .await
            .map_err(|e| Failure::new(Exit::Unavailable, chain(&e)))?;
        if answer["sha256"].as_str() != Some(sha.as_str()) {
            return Err(Failure::refused(format!(
                "{rel}: the server stored sha256 {} but the file is {sha} [checksum_mismatch]",
                print::cell(&answer["sha256"])
            )));
        }
        let status = "uploaded";
        report(&args.conn, &bar, status, rel, size, &sha);
        results.push(json!({"path": rel, "size": size, "sha256": sha, "status": status}));
    }
    bar.finish_and_clear();
    if args.conn.json {
        print::json(&json!({"model": args.model, "version": args.version, "files": results}));
    }
    Ok(Exit::Ok)
}

fn report(conn: &Conn, bar: &ProgressBar, status: &str, rel: &str, size: u64, sha: &str) {
    if !conn.json {
        bar.suspend(|| println!("{status:<9} {rel}  {}  sha256 {}", bytes(size), &sha[..12]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_folder_are_written() {
        for ok in ["a", "a/b.bin", "model/MLmodel"] {
            assert!(safe_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }

    #[test]
    fn folders_upload_with_their_relative_paths() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let root = dir.path().join("model");
        std::fs::create_dir_all(root.join("data")).unwrap_or_else(|_| unreachable!());
        std::fs::write(root.join("MLmodel"), "x").unwrap_or_else(|_| unreachable!());
        std::fs::write(root.join("data/w.bin"), "y").unwrap_or_else(|_| unreachable!());
        let files = gather(std::slice::from_ref(&root), Some("m/")).unwrap_or_default();
        let rels: Vec<&str> = files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(rels, ["m/MLmodel", "m/data/w.bin"]);
    }
}
