//! Every bad input named in the API conventions gets the right 4xx problem+json.

use crate::helpers::TestApp;
use crate::helpers::raw_exchange;
use reqwest::Method;
use serde_json::json;

crate::backend_tests!(
    malformed_json_is_400,
    wrong_shapes_are_422_naming_the_field,
    invalid_names_and_tags_are_422,
    bad_path_parameters_are_400,
    bad_query_parameters_are_400,
    bad_filters_are_400_with_the_position,
);

crate::http_layer_tests!(
    oversize_bodies_are_413,
    oversize_targets_and_headers_are_414_and_431,
    unknown_routes_and_methods,
);

async fn malformed_json_is_400(app: &TestApp) {
    for body in [
        "{",
        "not json",
        r#"{"name": NaN}"#,
        r#"{"name": "a"} trailing"#,
        "",
        "   ",
    ] {
        let r = app.raw(Method::POST, "/api/v1/models", body).await;
        r.problem(400, "malformed_json");
    }
    app.model("m").await;
    let r = app
        .raw(
            Method::POST,
            "/api/v1/models/m/versions",
            r#"{"config": {"lr": NaN}}"#,
        )
        .await;
    r.problem(400, "malformed_json");
    // JSON must say so: without a JSON content type, 415 (a web page can make a browser send
    // text/plain or a form anywhere without asking first, never application/json).
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut req = app
            .client
            .post(app.url("/api/v1/models"))
            .body(r#"{"name": "no-ct"}"#);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = app.send(req).await;
        assert_eq!(
            r.problem(415, "unsupported_media_type")["field"],
            "content-type",
            "{content_type:?}"
        );
    }
    app.get("/api/v1/models/no-ct")
        .await
        .problem(404, "model_not_found");
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ] {
        let r = app
            .send(
                app.client
                    .put(app.url("/api/v1/models/with-ct"))
                    .header("content-type", ct)
                    .body("{}"),
            )
            .await;
        assert!(r.status.is_success(), "{ct}: {}", r.body);
    }
    // An action whose body is optional needs no content type when it has no body.
    app.version("with-ct", json!({"finalize": true})).await;
    app.post_empty("/api/v1/models/with-ct/versions/1/archive")
        .await
        .ok(200);
    let r = app
        .send(
            app.client
                .post(app.url("/api/v1/models/with-ct/stages/production/rollback"))
                .header("content-type", "text/plain")
                .body(r#"{"reason": "x"}"#),
        )
        .await;
    r.problem(415, "unsupported_media_type");
}

async fn wrong_shapes_are_422_naming_the_field(app: &TestApp) {
    let cases = [
        (json!({"name": 5}), "name"),
        (json!({"name": "a", "tags": ["x"]}), "tags"),
        (json!({"name": "a", "tags": {"k": 1}}), "tags.k"),
        (json!({"name": "a", "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/models", body.clone()).await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            field,
            "{body}"
        );
    }
    app.post("/api/v1/models", json!([1, 2]))
        .await
        .problem(422, "validation_failed");
    let r = app.post("/api/v1/models", json!({})).await;
    assert!(
        r.problem(422, "validation_failed")["detail"]
            .as_str()
            .unwrap()
            .contains("name")
    );

    app.model("m").await;
    let cases = [
        (json!({"config": [1]}), "config"),
        (json!({"source": "git"}), "source"),
        (json!({"finalize": "yes"}), "finalize"),
        (json!({"config": {}, "extra": 1}), "extra"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/models/m/versions", body.clone()).await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            field,
            "{body}"
        );
    }
    let r = app
        .patch("/api/v1/models/m", json!({"tags": {"k": 5}}))
        .await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "tags.k");
    app.version("m", json!({})).await;
    let r = app
        .post("/api/v1/models/m/versions/1/fail", json!({"reason": 3}))
        .await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "reason");
}

async fn invalid_names_and_tags_are_422(app: &TestApp) {
    for name in ["", "Upper", "-lead", "has space", "a/b", &"x".repeat(129)] {
        let r = app.post("/api/v1/models", json!({"name": name})).await;
        assert_eq!(
            r.problem(422, "validation_failed")["field"],
            "name",
            "{name:?}"
        );
    }
    let r = app
        .post(
            "/api/v1/models",
            json!({"name": "ok", "tags": {"bad key": "v"}}),
        )
        .await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "tags.bad key");
    let r = app
        .post(
            "/api/v1/models",
            json!({"name": "ok", "tags": {"k": "v".repeat(1025)}}),
        )
        .await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "tags.k");
    let r = app
        .post(
            "/api/v1/models",
            json!({"name": "ok", "description": "d".repeat(10_001)}),
        )
        .await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "description");
    // Nothing was created by any of these.
    let list = app.get("/api/v1/models").await;
    assert!(list.ok(200)["items"].as_array().unwrap().is_empty());
}

async fn bad_path_parameters_are_400(app: &TestApp) {
    app.model("m").await;
    for path in [
        "/api/v1/models/m/versions/abc",
        "/api/v1/models/m/versions/0",
        "/api/v1/models/m/versions/-1",
        "/api/v1/models/m/versions/1.5",
        "/api/v1/models/m/versions/99999999999999999999",
    ] {
        let r = app.get(path).await;
        assert_eq!(
            r.problem(400, "invalid_path_parameter")["field"],
            "version",
            "{path}"
        );
    }
    let r = app.get("/api/v1/models/Not%20Valid").await;
    assert_eq!(r.problem(400, "invalid_path_parameter")["field"], "model");
    let r = app.put("/api/v1/models/UPPER", json!({})).await;
    assert_eq!(r.problem(400, "invalid_path_parameter")["field"], "model");
    let r = app.post_empty("/api/v1/models/m/versions/x/finalize").await;
    r.problem(400, "invalid_path_parameter");
}

async fn bad_query_parameters_are_400(app: &TestApp) {
    app.model("m").await;
    for (path, field) in [
        ("/api/v1/models?limit=0", "limit"),
        ("/api/v1/models?limit=1001", "limit"),
        ("/api/v1/models?limit=ten", "limit"),
        ("/api/v1/models?tag=novalue", "tag"),
        ("/api/v1/models/m/versions?status=done", "status"),
        ("/api/v1/models/m/versions?limit=-1", "limit"),
        ("/api/v1/events?limit=5000", "limit"),
    ] {
        let r = app.get(path).await;
        assert_eq!(
            r.problem(400, "invalid_query_parameter")["field"],
            field,
            "{path}"
        );
    }
    app.get("/api/v1/models?cursor=bogus")
        .await
        .problem(400, "invalid_cursor");
    // A cursor from one list is refused by another.
    for i in 0..3 {
        app.model(&format!("n{i}")).await;
    }
    let models = app.get("/api/v1/models?limit=1").await;
    let cursor = models.ok(200)["next_cursor"].as_str().unwrap().to_owned();
    app.get(&format!("/api/v1/models/m/versions?cursor={cursor}"))
        .await
        .problem(400, "invalid_cursor");
}

async fn bad_filters_are_400_with_the_position(app: &TestApp) {
    app.model("m").await;
    for (filter, position) in [
        ("   ", 0),
        ("accuracy > 0.9", 0),
        ("metric.acc 0.9", 11),
        ("metric.acc > high", 13),
        ("metric.acc > 0.9 or status = ready", 17),
        (r#"tag.team < "a""#, 9),
        ("status = done", 9),
        (r#"config.arch = "vit"#, 14),
    ] {
        let r = app
            .send(
                app.client
                    .get(app.url("/api/v1/models/m/versions"))
                    .query(&[("filter", filter)]),
            )
            .await;
        let p = r.problem(400, "invalid_filter");
        assert_eq!(p["field"], "filter", "{filter}");
        assert_eq!(p["position"], position, "{filter}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("position {position}")),
            "{filter}: {p}"
        );
    }
    for order in ["accuracy:desc", "metric.:asc", "created_at:newest"] {
        let r = app
            .send(
                app.client
                    .get(app.url("/api/v1/models/m/versions"))
                    .query(&[("order_by", order)]),
            )
            .await;
        assert_eq!(r.problem(400, "invalid_order_by")["field"], "order_by");
    }
    // A cursor from another list or order, or none at all.
    for cursor in ["garbage", "dnM6eA"] {
        let r = app
            .send(
                app.client
                    .get(app.url("/api/v1/models/m/versions"))
                    .query(&[("order_by", "metric.a:asc"), ("cursor", cursor)]),
            )
            .await;
        r.problem(400, "invalid_cursor");
    }
}

async fn oversize_bodies_are_413(app: &TestApp) {
    let big = format!(
        r#"{{"name": "big", "description": "{}"}}"#,
        "x".repeat(9 << 20)
    );
    let head = format!(
        "POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    let reply = raw_exchange(app, &head, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply.contains("application/problem+json") && reply.contains("payload_too_large"),
        "{reply}"
    );

    // Without a Content-Length (chunked), the limit holds while reading.
    let head =
        "POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut chunked = Vec::new();
    for c in big.as_bytes().chunks(1 << 20) {
        chunked.extend(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend(c);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let reply = raw_exchange(app, head, &chunked).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");

    // A declared 1 GiB body is refused before any of it is sent.
    let head = "POST /api/v1/models HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
    let reply = raw_exchange(app, head, b"").await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");
    // Nothing was created.
    assert!(
        app.get("/api/v1/models").await.ok(200)["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// The HTTP layer refuses a request target over 64 KiB (414) and headers over about 400 KiB
/// (431) before routing, without a body; openapi.yaml documents both on every operation.
async fn oversize_targets_and_headers_are_414_and_431(app: &TestApp) {
    let target = format!("/api/v1/models?tag={}", "a".repeat(66 << 10));
    let reply = raw_exchange(
        app,
        &format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n\r\n"),
        b"",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 414"), "{reply}");

    let head = format!(
        "GET /api/v1/models HTTP/1.1\r\nhost: localhost\r\nx-padding: {}\r\n\r\n",
        "a".repeat(500 << 10)
    );
    let reply = raw_exchange(app, &head, b"").await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    // Just under the target limit, the request reaches the handler and gets its own 4xx.
    let target = format!("/api/v1/models?tag={}", "a".repeat(60 << 10));
    let reply = raw_exchange(
        app,
        &format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n\r\n"),
        b"",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("application/problem+json"), "{reply}");
}

async fn unknown_routes_and_methods(app: &TestApp) {
    app.get("/api/v1/nothing")
        .await
        .problem(404, "route_not_found");
    app.delete("/api/v1/events")
        .await
        .problem(405, "method_not_allowed");
}
