//! What browsers and dashboards rely on: CORS for configured origins, and compressed answers
//! for clients that ask (never for artifacts).

use crate::helpers::{Backend, TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;

const DASH: &str = "https://dash.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_configured_origins_only() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::create(backend).await;
        let app = TestApp::spawn(db.url.clone(), |c| {
            c.cors_origins = vec![DASH.to_owned(), "http://localhost:3000".to_owned()];
        })
        .await;
        app.model("m").await;

        // A preflight for a retried registration: answered before authentication.
        let r = app
            .client
            .request(Method::OPTIONS, app.url("/api/v1/models/m/versions"))
            .header("origin", DASH)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], DASH);
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        let allowed = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        for name in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(h["access-control-max-age"], "3600");

        // A simple request from an allowed origin: the answer says so and exposes our headers.
        let r = app
            .client
            .get(app.url("/api/v1/models/m"))
            .header("origin", DASH)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["access-control-allow-origin"], DASH);
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        for name in ["etag", "location", "x-request-id", "idempotent-replayed"] {
            assert!(exposed.contains(name), "{exposed}");
        }

        // Another origin gets no CORS headers (the browser then withholds the answer).
        let r = app
            .client
            .get(app.url("/api/v1/models/m"))
            .header("origin", "https://evil.example.com")
            .send()
            .await
            .unwrap();
        assert!(!r.headers().contains_key("access-control-allow-origin"));
        app.stop().await;
        db.drop_db().await;
    }

    // Off by default: no CORS headers at all.
    let db = TestDb::create(Backend::Sqlite).await;
    let app = TestApp::spawn(db.url.clone(), |_| {}).await;
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .header("origin", DASH)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    app.stop().await;
    db.drop_db().await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_compressed_for_clients_that_ask_but_artifacts_never() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::create(backend).await;
        let app = TestApp::spawn(db.url.clone(), |_| {}).await;
        app.model("m").await;
        app.version("m", json!({})).await;
        let points: Vec<Value> = (0..2_000)
            .map(|s| json!({"key": "loss", "step": s, "value": 1.0 / (s as f64 + 1.0)}))
            .collect();
        app.post(
            "/api/v1/models/m/versions/1/metrics",
            json!({ "points": points }),
        )
        .await
        .ok(200);
        let series = app.url("/api/v1/models/m/versions/1/metrics/loss");

        // A streamed series (no length known up front): gzip when asked, identical content.
        let plain = app.client.get(&series).send().await.unwrap();
        assert!(!plain.headers().contains_key("content-encoding"));
        let plain = plain.bytes().await.unwrap();
        let r = app
            .client
            .get(&series)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let zipped = r.bytes().await.unwrap();
        assert!(
            zipped.len() * 3 < plain.len(),
            "{} vs {}",
            zipped.len(),
            plain.len()
        );
        let a: Value = serde_json::from_slice(&gunzip(&zipped)).unwrap();
        let b: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(a, b);

        // Small answers are not worth it.
        let r = app
            .client
            .get(app.url("/healthz"))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert!(!r.headers().contains_key("content-encoding"));

        // Artifacts are served byte for byte, whatever their type, ranges included.
        let body = "{\"weights\": [".to_owned() + &"0.5, ".repeat(4_000) + "0.5]}";
        let r = app
            .client
            .put(app.url("/api/v1/models/m/versions/1/artifacts/model.json"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let url = app.url("/api/v1/models/m/versions/1/artifacts/model.json");
        let r = app
            .client
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("content-encoding"));
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes());
        let r = app
            .client
            .get(&url)
            .header("accept-encoding", "gzip")
            .header("range", "bytes=0-99")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert!(!r.headers().contains_key("content-encoding"));
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes()[..100]);
        app.stop().await;
        db.drop_db().await;
    }
}

crate::backend_tests!(pages_cannot_drive_a_server_without_authentication);

/// With authentication off (the default, on loopback), a web page in the user's browser must
/// not be able to change the registry: not by a cross-origin "simple" request, not by DNS
/// rebinding. The server's own pages, curl and pipelines are unaffected.
async fn pages_cannot_drive_a_server_without_authentication(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"finalize": true})).await;
    let promote = "/api/v1/models/m/stages/production/promote";
    // The attack: a form-like text/plain POST from another origin.
    let r = app
        .send(
            app.client
                .post(app.url(promote))
                .header("origin", "https://evil.example")
                .header("content-type", "text/plain")
                .body(r#"{"version": 1}"#),
        )
        .await;
    r.problem(403, "cross_origin_refused");
    // Even as JSON, and for reads: another origin is refused outright.
    for method in [Method::POST, Method::GET] {
        let mut req = app
            .client
            .request(method.clone(), app.url(promote))
            .header("origin", "https://evil.example");
        if method == Method::POST {
            req = req.json(&json!({"version": 1}));
        }
        app.send(req).await.problem(403, "cross_origin_refused");
    }
    app.send(
        app.client
            .get(app.url("/api/v1/models"))
            .header("origin", "null"),
    )
    .await
    .problem(403, "cross_origin_refused");
    // DNS rebinding: the page's own name, pointed at 127.0.0.1.
    let port = app.addr.port();
    let r = app
        .send(
            app.client
                .post(app.url(promote))
                .header("host", format!("evil.example:{port}"))
                .header("origin", format!("http://evil.example:{port}"))
                .json(&json!({"version": 1})),
        )
        .await;
    r.problem(403, "host_not_allowed");
    assert!(
        app.get("/api/v1/models/m/stages").await.ok(200)["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was promoted"
    );
    // The server's own origin, loopback names, and clients that send no Origin are fine.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("ui.localhost:{port}"),
    ] {
        let r = app
            .send(
                app.client
                    .get(app.url("/api/v1/models"))
                    .header("host", host.clone())
                    .header("origin", format!("http://{host}")),
            )
            .await;
        r.ok(200);
    }
    app.post(promote, json!({"version": 1})).await.ok(200);
}

/// With authentication on, a proxy's or container network's Host and any Origin pass (a page
/// cannot attach a token cross-site without a preflight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_proxies_and_origins_pass() {
    use modelreg::config::AuthMode;
    let db = TestDb::create(Backend::Sqlite).await;
    let app = TestApp::spawn(db.url.clone(), |c| c.auth = AuthMode::Required).await;
    let body = modelreg::domain::token::TokenRequest {
        name: "root".into(),
        subject: None,
        scopes: vec!["admin".into()],
        models: None,
        expires_at: None,
    };
    let actor = modelreg::store::Actor::named("cli");
    let (record, root) = modelreg::domain::token::issue(body, &actor).unwrap();
    app.state.store.create_token(&record, &actor).await.unwrap();
    let r = app
        .send(
            app.client
                .get(app.url("/api/v1/models"))
                .bearer_auth(&root)
                .header("host", "modelreg.internal:8080")
                .header("origin", "https://dash.example"),
        )
        .await;
    r.ok(200);
    app.stop().await;
    db.drop_db().await;
}
