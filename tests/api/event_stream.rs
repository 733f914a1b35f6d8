//! `GET /api/v1/events/stream`: new events as Server-Sent Events, in order; resumed with
//! `Last-Event-ID` (or `?after=`) on another server of the same database without a loss or a
//! repeat; filters and a token's model globs as the event list has them; capped per token.
//! Both backends.

use crate::helpers::{Setup, TestApp};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

crate::backend_tests!(
    the_stream_follows_and_resumes_without_loss_or_repeat,
    streams_are_capped_per_token,
    an_open_stream_is_busy_not_idle_at_the_connection_cap,
    a_stalled_reader_is_cut_not_buffered
);

crate::backend_tests!(with super::AUTH; a_token_streams_only_its_models);

const AUTH: Setup = Setup {
    auth: true,
    ..Setup::PLAIN
};

/// An open stream and what it has sent so far.
struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Stream {
    async fn open(
        app: &TestApp,
        query: &str,
        last: Option<i64>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = app
            .client
            .get(app.url(&format!("/api/v1/events/stream{query}")));
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn new(app: &TestApp, query: &str, last: Option<i64>, token: Option<&str>) -> Self {
        let r = Self::open(app, query, last, token).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            body: r.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next `n` events (id, action, model), within 10 s.
    async fn next(&mut self, n: usize) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while out.len() < n {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    assert_eq!(data["event_id"], id);
                    out.push((
                        id,
                        data["action"].as_str().unwrap().to_owned(),
                        data["model"].as_str().map(str::to_owned),
                    ));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} events came: {out:?}", out.len()))
                .expect("the stream ended")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        out
    }

    /// Nothing more within a moment.
    async fn quiet(&mut self) {
        let more = tokio::time::timeout(Duration::from_millis(1500), self.next(1)).await;
        assert!(more.is_err(), "unexpected: {more:?}");
    }
}

async fn the_stream_follows_and_resumes_without_loss_or_repeat(app: &TestApp) {
    app.model("before").await;
    // Without a position: only what happens from now on.
    let mut live = Stream::new(app, "", None, None).await;
    app.model("a").await;
    app.version("a", json!({})).await;
    let got = live.next(2).await;
    assert_eq!(
        got.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["model.created", "version.created"]
    );
    assert!(got[0].0 < got[1].0);
    let filtered_first = got[0].0;
    // A filtered stream and another from a position, while more happens.
    let mut only_b = Stream::new(app, "?model=b", None, None).await;
    app.model("b").await;
    app.version("a", json!({})).await;
    app.version("b", json!({})).await;
    let rest = live.next(3).await;
    let b = only_b.next(2).await;
    assert!(b.iter().all(|e| e.2.as_deref() == Some("b")), "{b:?}");
    // Resumed from the first event on another server of the same database: the four after
    // it, in order, once each; then live ones.
    let other = TestApp::spawn(app.db_url.clone(), |_| {}).await;
    let mut resumed = Stream::new(&other, "", Some(filtered_first), None).await;
    let caught_up = resumed.next(4).await;
    let want: Vec<i64> = std::iter::once(got[1].0)
        .chain(rest.iter().map(|e| e.0))
        .collect();
    assert_eq!(caught_up.iter().map(|e| e.0).collect::<Vec<_>>(), want);
    app.model("c").await;
    let next = resumed.next(1).await;
    assert_eq!(next[0].1, "model.created");
    assert_eq!(next[0].2.as_deref(), Some("c"));
    assert!(next[0].0 > *want.last().unwrap());
    resumed.quiet().await;
    // ?after= is the same position; action filters.
    let mut after = Stream::new(
        &other,
        &format!("?after={filtered_first}&action=model.created"),
        None,
        None,
    )
    .await;
    let models: Vec<Option<String>> = after.next(2).await.into_iter().map(|e| e.2).collect();
    assert_eq!(models, [Some("b".to_owned()), Some("c".to_owned())]);
    // Bad positions and filters.
    for (query, last) in [
        ("", Some(-1)),
        ("?after=x", None),
        ("?action=Bad!", None),
        ("?model=Bad Name", None),
    ] {
        let r = Stream::open(app, query, last, None).await;
        assert_eq!(r.status(), 400, "{query} {last:?}");
    }
    other.stop().await;
}

async fn streams_are_capped_per_token(app: &TestApp) {
    let capped = TestApp::spawn(app.db_url.clone(), |c| c.event_streams_per_token = 2).await;
    let one = Stream::new(&capped, "", None, None).await;
    let _two = Stream::new(&capped, "", None, None).await;
    let r = Stream::open(&capped, "", None, None).await;
    assert_eq!(r.status(), 429);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_streams");
    // A closed stream frees its place.
    drop(one);
    let mut opened = false;
    for _ in 0..50 {
        let r = Stream::open(&capped, "", None, None).await;
        if r.status() == 200 {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "the closed stream's place was not freed");
    capped.stop().await;
}

async fn a_token_streams_only_its_models(app: &TestApp) {
    let root = app.root_token().to_owned();
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/tokens"))
                .bearer_auth(&root)
                .json(&json!({"name": "fraud-reader", "scopes": ["read"], "models": ["fraud*"]})),
        )
        .await;
    let token = r.ok(201)["token"].as_str().unwrap().to_owned();
    let mut scoped = Stream::new(app, "", None, Some(&token)).await;
    let mut all = Stream::new(app, "", None, Some(&root)).await;
    for m in ["churn", "fraud-eu"] {
        app.send(
            app.client
                .post(app.url("/api/v1/models"))
                .bearer_auth(&root)
                .json(&json!({"name": m})),
        )
        .await
        .ok(201);
    }
    let seen = scoped.next(1).await;
    assert_eq!(seen[0].2.as_deref(), Some("fraud-eu"));
    scoped.quiet().await;
    assert_eq!(all.next(2).await.len(), 2);
    // Without a token: 401, as every route.
    let r = Stream::open(app, "", None, None).await;
    assert_eq!(r.status(), 401);
}

/// At the connection cap a newcomer takes the slot of the connection idle longest: an open
/// stream is a request in progress, never that one, even when it is the oldest.
async fn an_open_stream_is_busy_not_idle_at_the_connection_cap(app: &TestApp) {
    let capped = TestApp::spawn(app.db_url.clone(), |c| c.connection_limit = 3).await;
    let mut first = Stream::new(&capped, "", None, None).await;
    let mut second = Stream::new(&capped, "", None, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let silent = tokio::net::TcpStream::connect(capped.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fourth connection: the silent one gives way, not a stream.
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = quick
        .post(capped.url("/api/v1/models"))
        .json(&json!({"name": "after-cap"}))
        .send()
        .await;
    assert_eq!(r.expect("served at the cap").status(), 201);
    for s in [&mut first, &mut second] {
        let got = s.next(1).await;
        assert_eq!(got[0].2.as_deref(), Some("after-cap"));
    }
    drop(silent);
    capped.stop().await;
}

/// A reader that stops reading is disconnected once its writes make no progress for the idle
/// timeout; what it did not read was never held for it (it gets less than was written, then
/// the end of the connection).
async fn a_stalled_reader_is_cut_not_buffered(app: &TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stalling = TestApp::spawn(app.db_url.clone(), |c| {
        c.idle_timeout = Duration::from_millis(500)
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(stalling.addr).await.unwrap();
    let request = format!(
        "GET /api/v1/events/stream HTTP/1.1\r\nhost: {}\r\n\r\n",
        stalling.addr
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    // About 16 MiB of events while the reader reads nothing: far more than the socket
    // buffers hold.
    let tags: serde_json::Map<String, Value> = (0..200)
        .map(|i| (format!("k{i}"), json!("x".repeat(1000))))
        .collect();
    let mut written = 0usize;
    for i in 0..80 {
        let body = json!({"name": format!("stall-{i}"), "tags": tags});
        written += body.to_string().len();
        let r = stalling
            .client
            .post(stalling.url("/api/v1/models"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Longer than the idle timeout with every write blocked: the server gives up on it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled stream was not closed");
    assert!(
        received < written / 2,
        "the reader got {received} of {written} bytes: the rest was not held for it"
    );
    stalling.stop().await;
}
