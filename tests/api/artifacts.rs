//! Artifact tests, each run on {SQLite, Postgres} × {local folder, in-process S3 server}.

use crate::blobs::Blobs;
use crate::helpers::{Backend, Setup, TestApp, TestDb};
use futures::TryStreamExt;
use modelreg::blob::BlobStore;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::io::AsyncWriteExt;

const SETUP: Setup = Setup {
    blobs: &[Blobs::Folder, Blobs::S3],
    ..Setup::PLAIN
};

crate::backend_tests!(with super::SETUP;
    large_upload_round_trips_with_ranges,
    checksum_mismatch_leaves_nothing,
    disconnect_mid_upload_leaves_nothing,
    bad_paths_are_refused,
    write_once_and_immutable_after_finalize,
    presigned_urls,
    gc_removes_orphans,
    long_paths_and_huge_ranges_are_client_errors,
    artifacts_are_served_as_downloads_never_as_pages,
);

const BASE: &str = "/api/v1/models/m/versions";

/// Deterministic bytes that do not compress.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::helpers::Rng::new(seed);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn setup(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
}

async fn put(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    sha256: Option<&str>,
) -> crate::helpers::Resp {
    let mut req = app
        .client
        .put(app.url(&format!("{BASE}/1/artifacts/{path}")))
        .body(body);
    if let Some(s) = sha256 {
        req = req.header("x-content-sha256", s);
    }
    app.send(req).await
}

/// Every object the store lists, plus every file under the test's folder (to catch staging files).
async fn leftovers(app: &TestApp, kind: Blobs, dir: &Path) -> (Vec<String>, Vec<String>) {
    let objects: Vec<String> = app
        .state
        .blobs
        .list()
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let mut files = vec![];
    if kind == Blobs::Folder {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    files.push(p.display().to_string())
                }
            }
        }
    }
    (objects, files)
}

async fn assert_nothing_stored(app: &TestApp, kind: Blobs, dir: &Path) {
    let (objects, files) = leftovers(app, kind, dir).await;
    assert!(objects.is_empty(), "objects left: {objects:?}");
    assert!(files.is_empty(), "files left: {files:?}");
    let list = app.get(&format!("{BASE}/1/artifacts")).await;
    assert!(list.ok(200)["items"].as_array().unwrap().is_empty());
}

async fn large_upload_round_trips_with_ranges(app: &TestApp) {
    setup(app).await;
    let data = bytes(64 << 20, 7);
    let digest = sha(&data);
    let r = put(app, "weights/model.bin", data.clone(), Some(&digest)).await;
    let a = r.ok(201);
    assert_eq!(a["path"], "weights/model.bin");
    assert_eq!(a["size"], 64 << 20);
    assert_eq!(a["sha256"], digest.as_str());

    let resp = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/weights/model.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], format!("\"{digest}\""));
    assert_eq!(resp.headers()["content-length"], (64 << 20).to_string());
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(sha(&got), digest);

    let resp = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/weights/model.bin")))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{}", 64 << 20)
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], &data[1000..2000]);
    let resp = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/weights/model.bin")))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(&resp.bytes().await.unwrap()[..], &data[data.len() - 10..]);
    let r = app
        .send(
            app.client
                .get(app.url(&format!("{BASE}/1/artifacts/weights/model.bin")))
                .header("range", "bytes=999999999-"),
        )
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.body["code"], "range_not_satisfiable");
    let r = app
        .send(
            app.client
                .get(app.url(&format!("{BASE}/1/artifacts/weights/model.bin")))
                .header("if-none-match", format!("\"{digest}\"")),
        )
        .await;
    assert_eq!(r.status, 304);

    // Small artifacts, listed and shown on the version and in compare.
    put(app, "config.json", b"{}".to_vec(), None).await.ok(201);
    let list = app.get(&format!("{BASE}/1/artifacts")).await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(
        items
            .iter()
            .map(|a| a["path"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["config.json", "weights/model.bin"]
    );
    assert!(items[0]["created_at"].as_str().is_some());
    let v = app.get(&format!("{BASE}/1")).await;
    assert_eq!(v.ok(200)["artifacts"].as_array().unwrap().len(), 2);
    app.post_empty(&format!("{BASE}/1/finalize")).await.ok(200);
    app.version("m", json!({"finalize": true})).await;
    let c = app.get("/api/v1/models/m/compare?versions=1,2").await;
    assert_eq!(c.ok(200)["artifacts"][1]["sha256"]["1"], digest.as_str());
    assert_eq!(c.body["artifacts"][1]["same"], false);
    let events = app.get("/api/v1/events?action=artifact.uploaded").await;
    assert_eq!(events.ok(200)["items"].as_array().unwrap().len(), 2);
}

async fn checksum_mismatch_leaves_nothing(app: &TestApp) {
    let (kind, dir) = app.artifact_store();
    setup(app).await;
    let data = bytes(12 << 20, 3);
    let r = put(app, "model.bin", data, Some(&"0".repeat(64))).await;
    assert_eq!(
        r.problem(422, "checksum_mismatch")["field"],
        "x-content-sha256"
    );
    // Refused before the body is read; a small body so that the client sees the answer.
    put(app, "model.bin", b"x".to_vec(), Some("nothex"))
        .await
        .problem(400, "invalid_checksum");
    assert_nothing_stored(app, kind, dir).await;
    let events = app.get("/api/v1/events?action=artifact.uploaded").await;
    assert!(events.ok(200)["items"].as_array().unwrap().is_empty());
}

async fn disconnect_mid_upload_leaves_nothing(app: &TestApp) {
    let (kind, dir) = app.artifact_store();
    setup(app).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "PUT {BASE}/1/artifacts/partial.bin HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        40 << 20
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&bytes(20 << 20, 5)).await.unwrap();
    tcp.flush().await.unwrap();
    drop(tcp);
    // The server notices, aborts the upload and records nothing.
    let mut clean = false;
    for _ in 0..100 {
        let (objects, files) = leftovers(app, kind, dir).await;
        if objects.is_empty() && files.is_empty() {
            clean = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        clean,
        "an abandoned upload left objects behind: {:?}",
        leftovers(app, kind, dir).await
    );
    assert_nothing_stored(app, kind, dir).await;
}

async fn bad_paths_are_refused(app: &TestApp) {
    let (kind, dir) = app.artifact_store();
    setup(app).await;
    // Sent by hand: HTTP clients normalise dot segments before sending.
    let long = "a".repeat(1025);
    for path in [
        "a//b",
        "a/./b",
        "a/../b",
        "../x",
        "%2e%2e/x",
        "a/%2E%2E/b",
        "a%2F..%2Fb",
        "a/",
        "a%5Cb",
        "a%00b",
        "x%25",
        "/abs",
        long.as_str(),
    ] {
        let head = format!(
            "PUT {BASE}/1/artifacts/{path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1\r\nconnection: close\r\n\r\n"
        );
        let reply = crate::helpers::raw_exchange(app, &head, b"x").await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(reply.contains("invalid_artifact_path"), "{path}: {reply}");
    }
    assert_nothing_stored(app, kind, dir).await;
}

async fn write_once_and_immutable_after_finalize(app: &TestApp) {
    setup(app).await;
    put(app, "model.onnx", b"one".to_vec(), None).await.ok(201);
    put(app, "model.onnx", b"two".to_vec(), None)
        .await
        .problem(409, "artifact_exists");
    app.delete(&format!("{BASE}/1/artifacts/model.onnx"))
        .await
        .ok(204);
    app.get(&format!("{BASE}/1/artifacts/model.onnx"))
        .await
        .problem(404, "artifact_not_found");
    put(app, "model.onnx", b"two".to_vec(), None).await.ok(201);
    let got = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/model.onnx")))
        .send()
        .await
        .unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], b"two");
    app.post_empty(&format!("{BASE}/1/finalize")).await.ok(200);
    put(app, "late.bin", b"x".to_vec(), None)
        .await
        .problem(409, "version_immutable");
    app.delete(&format!("{BASE}/1/artifacts/model.onnx"))
        .await
        .problem(409, "version_immutable");
    put(app, "x", b"x".to_vec(), None)
        .await
        .problem(409, "version_immutable");
    app.delete(&format!("{BASE}/1/artifacts/nope"))
        .await
        .problem(409, "version_immutable");
    let r = app
        .send(
            app.client
                .put(app.url("/api/v1/models/m/versions/7/artifacts/x"))
                .body("x"),
        )
        .await;
    r.problem(404, "version_not_found");
}

async fn presigned_urls(app: &TestApp) {
    let (kind, _) = app.artifact_store();
    setup(app).await;
    let data = bytes(100_000, 11);
    put(app, "model.bin", data.clone(), None).await.ok(201);
    let r = app
        .get(&format!("{BASE}/1/artifacts/model.bin?presign=true"))
        .await;
    match kind {
        Blobs::S3 => {
            let url = r.ok(200)["url"].as_str().unwrap().to_owned();
            assert!(r.body["expires_at"].as_str().is_some());
            // A plain HTTP client, no credentials.
            let got = reqwest::get(&url).await.unwrap();
            assert_eq!(got.status(), 200, "{url}");
            assert_eq!(&got.bytes().await.unwrap()[..], &data[..]);
        }
        Blobs::Folder => {
            r.problem(400, "presign_not_supported");
        }
    }
}

async fn gc_removes_orphans(app: &TestApp) {
    setup(app).await;
    put(app, "kept.bin", b"keep me".to_vec(), None)
        .await
        .ok(201);
    // An object that no row refers to, as a crash between write and record would leave.
    let key = app.state.blobs.new_key("m", 1, "orphan.bin");
    let stream = futures::stream::iter([Ok::<_, modelreg::error::Error>(
        bytes::Bytes::from_static(b"orphan"),
    )]);
    app.state
        .blobs
        .upload(&key, stream, None, None)
        .await
        .unwrap();
    let store = app.state.store.as_ref();
    let young = modelreg::gc::collect(store, &app.state.blobs, chrono::Duration::hours(1), true)
        .await
        .unwrap();
    assert!(young.orphans.is_empty(), "a young object is left alone");
    let dry = modelreg::gc::collect(store, &app.state.blobs, chrono::Duration::zero(), true)
        .await
        .unwrap();
    assert_eq!(
        dry.orphans.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
        [key.to_string()]
    );
    assert_eq!(dry.scanned, 2);
    let real = modelreg::gc::collect(store, &app.state.blobs, chrono::Duration::zero(), false)
        .await
        .unwrap();
    assert_eq!(real.orphans.len(), 1);
    let again = modelreg::gc::collect(store, &app.state.blobs, chrono::Duration::zero(), true)
        .await
        .unwrap();
    assert!(again.orphans.is_empty());
    assert_eq!(again.scanned, 1);
    let got = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/kept.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], b"keep me");
}

/// A segment longer than a file name may be is the client's mistake (400, nothing written, no
/// folder left behind), a path of the full 1,024 bytes is stored on every store (on S3 the
/// key would be too long with it, so the key leaves it out), and a range ending past 64 bits
/// is the rest of the object.
async fn long_paths_and_huge_ranges_are_client_errors(app: &TestApp) {
    let (kind, dir) = app.artifact_store();
    setup(app).await;
    let long_segment = format!("dir/{}/x.bin", "s".repeat(256));
    let r = put(app, &long_segment, b"x".to_vec(), None).await;
    assert_eq!(
        r.problem(400, "invalid_artifact_path")["field"],
        "path",
        "{}",
        r.body
    );
    assert_nothing_stored(app, kind, dir).await;
    let mut empty_dirs = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        empty_dirs.push(e.unwrap().path());
    }
    if kind == Blobs::Folder {
        assert!(empty_dirs.is_empty(), "folders left: {empty_dirs:?}");
    }

    let full: String = (0..5)
        .map(|i| format!("{i}{}", "p".repeat(199)))
        .collect::<Vec<_>>()
        .join("/")
        + "/"
        + &"x".repeat(15)
        + ".bin";
    let full = full.as_str();
    assert_eq!(full.len(), 1024);
    let data = bytes(1000, 3);
    put(app, full, data.clone(), Some(&sha(&data)))
        .await
        .ok(201);
    let got = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/{full}")))
        .header("range", "bytes=5-18446744073709551615")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(got.headers()["content-range"], "bytes 5-999/1000");
    assert_eq!(&got.bytes().await.unwrap()[..], &data[5..]);
    for range in [
        "bytes=0-99999999999999999999999",
        "bytes=-18446744073709551616",
    ] {
        let got = app
            .client
            .get(app.url(&format!("{BASE}/1/artifacts/{full}")))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 206, "{range}");
        assert_eq!(got.bytes().await.unwrap().len(), 1000, "{range}");
    }
    let r = app
        .send(
            app.client
                .get(app.url(&format!("{BASE}/1/artifacts/{full}")))
                .header("range", "bytes=18446744073709551615-"),
        )
        .await;
    r.problem(416, "range_not_satisfiable");
}

/// An upload sent as `text/html` keeps its declared type, but is served as a download that no
/// browser renders or sniffs on the registry's origin.
async fn artifacts_are_served_as_downloads_never_as_pages(app: &TestApp) {
    setup(app).await;
    let page = b"<script>alert(document.cookie)</script>".to_vec();
    let r = app
        .send(
            app.client
                .put(app.url(&format!("{BASE}/1/artifacts/reports/ünï page.html")))
                .header("content-type", "text/html; charset=utf-8")
                .body(page.clone()),
        )
        .await;
    assert_eq!(r.ok(201)["content_type"], "text/html; charset=utf-8");
    let got = app
        .client
        .get(app.url(&format!("{BASE}/1/artifacts/reports/ünï page.html")))
        .send()
        .await
        .unwrap();
    let h = got.headers().clone();
    assert_eq!(got.status(), 200, "{:?}", got.text().await);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"_n__page.html\"; filename*=UTF-8''%C3%BCn%C3%AF%20page.html"
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox"),
        "{h:?}"
    );
    for bad in ["html", "text/", "/html", "text/ht ml", "a/b/c"] {
        let r = app
            .send(
                app.client
                    .put(app.url(&format!("{BASE}/1/artifacts/bad.bin")))
                    .header("content-type", bad)
                    .body("x"),
            )
            .await;
        assert_eq!(
            r.problem(400, "invalid_content_type")["field"],
            "content-type",
            "{bad:?}"
        );
    }
    // Every other answer carries nosniff too.
    let r = app.get("/api/v1/models").await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}

/// An S3 store on a port where nothing listens: artifact calls are 503, the rest works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_is_503_for_artifacts_only() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let options = [
        ("aws_endpoint", format!("http://{addr}")),
        ("aws_access_key_id", "k".to_owned()),
        ("aws_secret_access_key", "s".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
        ("aws_allow_http", "true".to_owned()),
    ];
    let blobs = BlobStore::from_url_with(
        "s3://models",
        options.into_iter().map(|(k, v)| (k.to_owned(), v)),
    )
    .unwrap();
    let app = TestApp::spawn_unready(db.url.clone(), blobs).await;
    app.model("m").await;
    app.version("m", json!({})).await;
    let r = put(&app, "model.bin", b"x".to_vec(), None).await;
    r.problem(503, "artifact_store_unavailable");
    app.get("/api/v1/models/m/versions/1").await.ok(200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert_ne!(ready.body["checks"]["artifacts"], "ok");
    app.stop().await;
    db.drop_db().await;
}
