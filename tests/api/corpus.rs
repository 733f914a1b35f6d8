//! The bad-input corpus: malformed requests to every endpoint, each with the status and code
//! it must get, on both backends. After every case the server must still answer `/readyz`, and
//! nothing may ever be a 5xx. Cases are lines of `tests/api/corpus.txt`:
//!
//! ```text
//! METHOD PATH [; header: value]... | BODY | STATUS CODE
//! ```
//!
//! BODY is `-` for none, `json:TEXT` (sent as `application/json`), `text:TEXT` (as
//! `text/plain`) or `bytes:TEXT` (no content type); `\xHH` in TEXT is a raw byte, `{N*S}` is S
//! repeated N times (`«` and `»` in S stand for braces).

use crate::helpers::TestApp;
use serde_json::json;

crate::backend_tests!(every_bad_input_gets_its_answer);

struct Case {
    line: usize,
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<(Option<&'static str>, Vec<u8>)>,
    status: u16,
    code: String,
}

/// Expands `{N*S}` repetitions and `\xHH` bytes.
fn expand(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('{')
            && let Some(end) = inner.find('}')
            && let Some((n, s)) = inner[..end].split_once('*')
            && let Ok(n) = n.parse::<usize>()
        {
            out.extend(s.repeat(n).replace('«', "{").replace('»', "}").into_bytes());
            rest = &inner[end + 1..];
        } else if let Some(hex) = rest.strip_prefix("\\x")
            && hex.len() >= 2
            && let Ok(b) = u8::from_str_radix(&hex[..2], 16)
        {
            out.push(b);
            rest = &hex[2..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, line) in include_str!("corpus.txt").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.rsplitn(3, " | ").collect();
        let [expect, body, request] = parts[..] else {
            panic!("corpus.txt:{}: want `REQUEST | BODY | STATUS CODE`", n + 1);
        };
        let mut segments = request.split(" ; ");
        let (method, path) = segments
            .next()
            .and_then(|s| s.split_once(' '))
            .expect("METHOD PATH");
        let method = method.parse().unwrap();
        let path = String::from_utf8(expand(path)).unwrap();
        let headers = segments
            .map(|h| {
                let (k, v) = h.split_once(':').expect("header: value");
                let v = v.strip_prefix(' ').unwrap_or(v);
                (k.to_owned(), expand(v))
            })
            .collect();
        let body = match body.split_once(':') {
            _ if body == "-" => None,
            Some(("json", t)) => Some((Some("application/json"), expand(t))),
            Some(("text", t)) => Some((Some("text/plain"), expand(t))),
            Some(("bytes", t)) => Some((None, expand(t))),
            _ => panic!("corpus.txt:{}: bad body {body:?}", n + 1),
        };
        let (status, code) = expect.split_once(' ').expect("STATUS CODE");
        out.push(Case {
            line: n + 1,
            method,
            path,
            headers,
            body,
            status: status.parse().unwrap(),
            code: code.to_owned(),
        });
    }
    out
}

/// Something for every endpoint to find: model `m` (v1 pending with an artifact and a metric,
/// v2 ready and on `production`), an empty model `e`.
async fn fixture(app: &TestApp) {
    app.post(
        "/api/v1/models",
        json!({"name": "m", "tags": {"team": "x"}}),
    )
    .await
    .ok(201);
    app.post("/api/v1/models", json!({"name": "e"}))
        .await
        .ok(201);
    app.post("/api/v1/models/m/versions", json!({"config": {"lr": 0.1}}))
        .await
        .ok(201);
    app.post("/api/v1/models/m/versions", json!({"finalize": true}))
        .await
        .ok(201);
    let put = app
        .client
        .put(app.url("/api/v1/models/m/versions/1/artifacts/a.bin"))
        .body("hello");
    app.send(put).await.ok(201);
    let points: Vec<_> = (0..100)
        .map(|s| json!({"key": "loss", "step": s, "value": s}))
        .collect();
    app.post(
        "/api/v1/models/m/versions/1/metrics",
        json!({"points": points}),
    )
    .await
    .ok(200);
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": 2}),
    )
    .await
    .ok(200);
}

async fn every_bad_input_gets_its_answer(app: &TestApp) {
    fixture(app).await;
    let cases = cases();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let mut req = app.client.request(case.method.clone(), app.url(&case.path));
        for (k, v) in &case.headers {
            let value = reqwest::header::HeaderValue::from_bytes(v).expect("a sendable header");
            req = req.header(k.as_str(), value);
        }
        if let Some((content_type, bytes)) = &case.body {
            if let Some(ct) = content_type {
                req = req.header("content-type", *ct);
            }
            req = req.body(bytes.clone());
        }
        let r = app.send(req).await;
        let code = r.body["code"].as_str().unwrap_or_default();
        let problem = r
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        if r.status.as_u16() != case.status || code != case.code || !problem {
            wrong.push(format!(
                "corpus.txt:{}: {} {} → {} {code} (want {} {}): {}",
                case.line, case.method, case.path, r.status, case.status, case.code, r.body
            ));
        }
        assert!(
            r.status.as_u16() < 500,
            "corpus.txt:{}: {}",
            case.line,
            r.body
        );
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, 200, "after corpus.txt:{}", case.line);
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // Nothing of the corpus was written.
    let m = app.get("/api/v1/models/m").await;
    assert_eq!(m.ok(200)["latest_version"], 2);
    assert_eq!(m.ok(200)["tags"], json!({"team": "x"}));
    let models = app.get("/api/v1/models").await;
    assert_eq!(models.ok(200)["items"].as_array().unwrap().len(), 2);
}

crate::http_layer_tests!(requests_that_are_not_http_are_refused_and_closed);

/// Bytes no HTTP request may hold never reach the API: invalid UTF-8 or control bytes in the
/// request line, a broken request line. The protocol layer answers 400 and closes the
/// connection, and the server serves the next client as before.
async fn requests_that_are_not_http_are_refused_and_closed(app: &TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let raw: [&[u8]; 6] = [
        b"GET /api/v1/models/\xff\xfe HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"GET /api/v1/models/m\x7f HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"GET /api/v1/models/m\x00 HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"GET /api/v1/mod els HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /api/v1/models HTTP/9.9\r\nhost: localhost\r\n\r\n",
    ];
    for request in raw {
        let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "the connection was closed: {request:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 505"),
            "{request:?} → {answer:?}"
        );
        app.get("/readyz").await.ok(200);
    }
}
