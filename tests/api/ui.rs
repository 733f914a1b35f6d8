//! The web pages' files: served from the binary with a strict Content-Security-Policy, no
//! sniffing or framing, fingerprinted assets cached for a year and revalidated by ETag.

use crate::helpers::TestApp;
use modelreg::api::ui::CONTENT_SECURITY_POLICY;
use reqwest::header;

crate::backend_tests!(pages_are_served_locked_down);

async fn pages_are_served_locked_down(app: &TestApp) {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let home = no_redirects.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()[header::LOCATION], "/ui/");

    let page = app.client.get(app.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let html = page.text().await.unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page names its script")
        .to_owned();
    assert!(script.starts_with("app.js?v="), "{script}");

    let js = app
        .client
        .get(app.url(&format!("/ui/{script}")))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let etag = js.headers()[header::ETAG].clone();
    // Without the fingerprint, or an old one: revalidate.
    let plain = app
        .client
        .get(app.url("/ui/app.js?v=old"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
    let again = app
        .client
        .get(app.url("/ui/app.js"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(
        again
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
    );

    let missing = app.get("/ui/nope.js").await;
    missing.problem(404, "ui_file_not_found");
    assert_eq!(
        missing.headers[header::CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY
    );
}
