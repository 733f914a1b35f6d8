//! openapi.yaml and the router describe the same endpoints.

use std::collections::BTreeSet;

fn spec() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

/// `{*path}` in the router is `{path}` in OpenAPI.
fn normalise(path: &str) -> String {
    path.replace("{*", "{")
}

#[test]
fn every_route_is_in_the_spec_and_the_reverse() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let m = method.as_str().unwrap();
            if ["get", "put", "post", "patch", "delete"].contains(&m) {
                documented.insert((m.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = modelreg::api::endpoints()
        .iter()
        .map(|e| (e.method.to_string(), normalise(e.path)))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml documents routes the router lacks: {extra:?}"
    );
}

/// Any request can be refused by the HTTP layer for an oversize target (414) or headers (431),
/// and, with authentication off, for coming from another origin's web page (403), so every
/// operation lists them; every JSON body can be refused for its content type (415).
#[test]
fn every_operation_documents_the_http_layer_refusals() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            if method.as_str() == Some("parameters") {
                continue;
            }
            let responses = op["responses"].as_mapping().unwrap();
            for status in ["403", "414", "431"] {
                assert!(
                    responses.contains_key(status),
                    "{method:?} {path:?} does not document {status}"
                );
            }
            let json_body = !op["requestBody"]["content"]["application/json"].is_null();
            assert_eq!(
                responses.contains_key("415"),
                json_body,
                "{method:?} {path:?}: 415 goes with JSON bodies"
            );
        }
    }
}

#[test]
fn every_problem_code_used_is_documented() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    for code in [
        "model_exists",
        "model_not_empty",
        "invalid_transition",
        "version_in_stage",
        "version_not_ready",
        "stage_conflict",
        "nothing_to_roll_back",
        "not_in_history",
        "version_immutable",
        "artifact_exists",
        "artifact_missing",
        "payload_too_large",
        "too_many_points",
        "validation_failed",
        "idempotency_key_reused",
        "checksum_mismatch",
        "range_not_satisfiable",
        "model_not_found",
        "version_not_found",
        "stage_empty",
        "metric_not_found",
        "artifact_not_found",
        "token_not_found",
        "invalid_filter",
        "invalid_order_by",
        "invalid_cursor",
        "invalid_query_parameter",
        "invalid_artifact_path",
        "invalid_content_type",
        "unsupported_media_type",
        "cross_origin_refused",
        "host_not_allowed",
        "storage_full",
        "request_timeout",
        "upload_timeout",
        "webhook_not_found",
        "delivery_not_found",
        "webhook_url_not_allowed",
    ] {
        assert!(text.contains(code), "{code} is not in openapi.yaml");
    }
}

/// No Docker engine runs the compose file in CI; this at least holds it to its promises.
#[test]
fn compose_file_wires_postgres_minio_and_modelreg() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    let services = compose["services"].as_mapping().unwrap();
    for name in ["postgres", "minio", "minio-init", "modelreg"] {
        assert!(services.contains_key(name), "service {name}");
    }
    for name in ["postgres", "minio", "modelreg"] {
        assert!(
            compose["services"][name]["healthcheck"]["test"].is_sequence(),
            "{name} has a health check"
        );
    }
    let env = &compose["services"]["modelreg"]["environment"];
    for key in [
        "MODELREG_DATABASE_URL",
        "MODELREG_ARTIFACTS_URL",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "MODELREG_AUTH",
    ] {
        assert!(env[key].is_string(), "modelreg gets {key}");
    }
    assert_eq!(env["MODELREG_AUTH"], "required");
    assert_eq!(compose["services"]["modelreg"]["env_file"], ".env");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    assert!(example.contains("MODELREG_BOOTSTRAP_TOKEN="));
    let docker =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    for needle in [
        "--locked",
        "USER modelreg",
        "HEALTHCHECK",
        "/healthz",
        "--mount=type=cache",
    ] {
        assert!(docker.contains(needle), "Dockerfile: {needle}");
    }
    // The build context carries the patched dependency but not the local build output.
    let ignore =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim_end_matches('/') == "target"));
    assert!(!ignore.contains("vendor"), "vendor/ is needed to build");
}
