//! What a slow or idle client can hold: headers, bodies, uploads and
//! responses run out of time, connections are capped, and a reader that stalls holds no
//! database connection. What touches the database runs on both backends; the connection
//! layer's own cases once.

use crate::helpers::{Setup, TestApp, into_resp};
use modelreg::config::Config;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits, so that each case takes seconds.
fn short(c: &mut Config) {
    c.header_timeout = Duration::from_secs(1);
    c.first_byte_timeout = Duration::from_secs(1);
    c.request_timeout = Duration::from_secs(2);
    c.idle_timeout = Duration::from_secs(2);
    c.connection_limit = 8;
    c.shutdown_timeout = Duration::from_secs(2);
}

const SETUP: Setup = Setup {
    adjust: short,
    ..Setup::PLAIN
};

/// The short limits, but an idle keep-alive connection kept 10 s: the case's own client
/// connection must outlive its setup of stalled readers on a loaded machine, or it is closed
/// as idle and its next request may race the close.
fn short_but_patient(c: &mut Config) {
    short(c);
    c.header_timeout = Duration::from_secs(10);
}

const PATIENT: Setup = Setup {
    adjust: short_but_patient,
    ..Setup::PLAIN
};

crate::backend_tests!(with super::SETUP;
    a_body_that_does_not_arrive_is_408,
    a_stalled_upload_is_abandoned_leaving_nothing,
);

crate::http_layer_tests!(with super::SETUP;
    partial_headers_and_idle_connections_are_closed,
    idle_connections_give_way_busy_ones_do_not,
);

/// The header timeout is long (30 s, the default): only the first-byte timeout (1 s) can
/// close a silent connection in time.
fn long_headers(c: &mut Config) {
    short(c);
    c.header_timeout = Duration::from_secs(30);
}

const LONG_HEADERS: Setup = Setup {
    adjust: long_headers,
    ..Setup::PLAIN
};

crate::http_layer_tests!(with super::LONG_HEADERS; a_silent_connection_is_closed_after_the_first_byte_timeout);

crate::backend_tests!(with super::PATIENT; slow_readers_hold_no_database_connection);

/// Shutting down, a connection that has sent nothing yet (a client pool's spare) is closed
/// at once: the server does not wait out its first-byte timeout, nor the shutdown deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_connections_that_asked_nothing() {
    let db = crate::helpers::TestDb::create(crate::helpers::Backend::Sqlite).await;
    let app = TestApp::spawn(db.url.clone(), |c| {
        c.first_byte_timeout = Duration::from_secs(30);
        c.shutdown_timeout = Duration::from_secs(30);
    })
    .await;
    app.get("/healthz").await.ok(200);
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // Time for the server to accept it and wait for its first byte.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(
        until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "the silent connection was left open"
    );
    db.drop_db().await;
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn partial_headers_and_idle_connections_are_closed(app: &TestApp) {
    // Half a request, then nothing: closed after the header timeout (1 s here).
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(reply.is_some(), "a partial header is held open");
    // A connection that never says anything, and one kept alive after an answer.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut kept, Duration::from_secs(10))
        .await
        .expect("an idle kept-alive connection is closed");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

async fn a_body_that_does_not_arrive_is_408(app: &TestApp) {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"name\": ",
    )
    .await
    .unwrap();
    let reply = until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("the request is answered");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    app.get("/api/v1/models").await.ok(200);
}

async fn a_stalled_upload_is_abandoned_leaving_nothing(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(
        b"PUT /api/v1/models/m/versions/1/artifacts/w.bin HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1048576\r\n\r\n",
    )
    .await
    .unwrap();
    tcp.write_all(&[7u8; 4096]).await.unwrap();
    // Then nothing, for longer than the idle timeout (2 s here).
    let reply = until_closed(&mut tcp, Duration::from_secs(15))
        .await
        .expect("the upload is given up");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    let list = app.get("/api/v1/models/m/versions/1/artifacts").await;
    assert!(list.ok(200)["items"].as_array().unwrap().is_empty());
    use futures::TryStreamExt;
    let objects: Vec<_> = app.state.blobs.list().try_collect().await.unwrap();
    assert!(objects.is_empty(), "{objects:?}");
}

async fn slow_readers_hold_no_database_connection(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({})).await;
    // About 20 MB of JSON: far more than socket buffers hold.
    for batch in 0..25 {
        let points: Vec<_> = (batch * 10_000..(batch + 1) * 10_000)
            .map(|s| json!({"key": "loss", "step": s, "value": s as f64 * 0.25}))
            .collect();
        app.post(
            "/api/v1/models/m/versions/1/metrics",
            json!({ "points": points }),
        )
        .await
        .ok(200);
    }
    // 16 readers (twice the pool) ask for the raw series and never read the answer.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(
            b"GET /api/v1/models/m/versions/1/metrics/loss HTTP/1.1\r\nhost: localhost\r\n\r\n",
        )
        .await
        .unwrap();
        stalled.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Everyone else is served, and the server is ready. At the cap the newcomers take the
    // slot of the client's idle keep-alive connection; a request sent on it as it closes is
    // sent again on a new one, as any client does (a registration with its Idempotency-Key).
    let served = |req: fn(&TestApp, usize) -> reqwest::RequestBuilder, i: usize| async move {
        for attempt in 0..3 {
            match req(app, i).send().await {
                Ok(r) => return into_resp(r).await,
                Err(e) if attempt < 2 && e.is_request() => continue,
                Err(e) => panic!("not served: {e}"),
            }
        }
        unreachable!()
    };
    for i in 0..10 {
        served(|app, _| app.client.get(app.url("/readyz")), i)
            .await
            .ok(200);
        served(
            |app, _| app.client.get(app.url("/api/v1/models/m/versions/1")),
            i,
        )
        .await
        .ok(200);
        let registered = served(
            |app, i| {
                app.client
                    .post(app.url("/api/v1/models/m/versions"))
                    .header("idempotency-key", format!("after-stall-{i}"))
                    .json(&json!({"tags": {"i": i.to_string()}}))
            },
            i,
        )
        .await;
        // 201, or 200 when a retry finds the registration its first attempt made.
        assert!(
            matches!(registered.status.as_u16(), 200 | 201),
            "{}",
            registered.body
        );
    }
    // The stalled responses are cut off after the idle timeout (2 s here).
    for mut tcp in stalled {
        assert!(
            until_closed(&mut tcp, Duration::from_secs(15))
                .await
                .is_some(),
            "a stalled reader keeps its connection"
        );
    }
    app.get("/readyz").await.ok(200);
}

/// At the cap (8 here), a new connection takes the slot of the one idle longest: silent
/// connections cannot keep a health check out. Connections busy with a request are never
/// closed for a newcomer, which then waits for a slot.
async fn idle_connections_give_way_busy_ones_do_not(app: &TestApp) {
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = quick.get(app.url("/readyz")).send().await;
        assert_eq!(
            r.expect("served while eight idle connections are open")
                .status(),
            200
        );
    }
    let closed = until_closed(&mut silent[0], Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "the longest-idle connection gave its slot"
    );
    drop(silent);
    // Eight requests in progress (their bodies arrive slowly): nobody is closed for a ninth.
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(
            b"POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        quick.get(app.url("/healthz")).send().await.is_err(),
        "a ninth connection is served while eight are busy"
    );
    // Once their request timeout (2 s) answers them, the next one is served.
    for tcp in &mut busy {
        let reply = until_closed(tcp, Duration::from_secs(10))
            .await
            .expect("answered");
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    }
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(into_resp(r).await.status, 200);
}

/// A connection that sends nothing is closed after the first-byte timeout (1 s here), long
/// before the header timeout.
async fn a_silent_connection_is_closed_after_the_first_byte_timeout(app: &TestApp) {
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    assert!(
        until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A connection that speaks at once is served as usual.
    app.get("/healthz").await.ok(200);
}
