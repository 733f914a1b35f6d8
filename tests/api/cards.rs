//! Model and version cards: set whole or field by field, bounded, a version's fields over its
//! model's, every change an event naming the fields (the readme by size and digest). Both
//! backends.

use crate::helpers::TestApp;
use serde_json::{Value, json};

crate::backend_tests!(
    a_model_card_is_put_patched_and_recorded,
    a_version_card_extends_its_models
);

const CARD: &str = "/api/v1/models/m/card";

async fn a_model_card_is_put_patched_and_recorded(app: &TestApp) {
    app.model("m").await;
    // Never set: empty, without a date.
    let r = app.get(CARD).await;
    assert_eq!(r.ok(200), &json!({"card": {}}));
    let readme = "# Fraud detector\n\n<script>alert(1)</script>\n\n- scores card payments";
    let r = app
        .put(
            CARD,
            json!({"readme": readme, "license": "Apache-2.0", "owners": ["ana", "risk-team"],
                   "intended_use": "scoring card payments", "limitations": "not for ACH"}),
        )
        .await;
    let v = r.ok(200);
    assert_eq!(
        v["card"]["readme"], readme,
        "kept as written: pages render it as text"
    );
    assert_eq!(v["updated_by"], "anonymous");
    assert!(v["updated_at"].is_string());
    let r = app
        .patch(
            CARD,
            json!({"license": null, "limitations": "not for ACH or wires"}),
        )
        .await;
    let card = r.ok(200)["card"].clone();
    assert!(card.get("license").is_none());
    assert_eq!(card["limitations"], "not for ACH or wires");
    assert_eq!(card["owners"], json!(["ana", "risk-team"]));
    assert_eq!(app.get(CARD).await.ok(200)["card"], card);
    // The same again changes nothing and records nothing.
    app.patch(CARD, json!({"limitations": "not for ACH or wires"}))
        .await
        .ok(200);
    let events = app
        .get("/api/v1/events?model=m&action=model.card_updated")
        .await;
    let items = events.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    let first = items
        .iter()
        .find(|e| e["details"]["changed"].get("readme").is_some())
        .unwrap();
    assert_eq!(
        first["details"]["changed"]["readme"]["bytes"],
        readme.len(),
        "{first}"
    );
    assert!(
        first["details"]["changed"]["readme"]
            .get("sha256")
            .is_some()
    );
    let second = items.iter().find(|e| e != &first).unwrap();
    assert_eq!(
        second["details"]["changed"],
        json!({"license": null, "limitations": "not for ACH or wires"})
    );
    // Bounded, named fields only; 404 for a model that is not there.
    for (bad, field) in [
        (json!({"readme": "x".repeat(65537)}), "card.readme"),
        (json!({"owners": vec!["o"; 21]}), "card.owners"),
        (json!({"license": "a\nb"}), "card.license"),
        (json!({"colour": "red"}), "card"),
        (json!(["readme"]), "card"),
    ] {
        let r = app.put(CARD, bad.clone()).await;
        assert_eq!(r.problem(422, "validation_failed")["field"], field, "{bad}");
    }
    let r = app.patch(CARD, json!({"colour": "red"})).await;
    assert_eq!(r.problem(422, "validation_failed")["field"], "card.colour");
    app.patch(CARD, json!("readme"))
        .await
        .problem(422, "validation_failed");
    app.get("/api/v1/models/nope/card")
        .await
        .problem(404, "model_not_found");
}

async fn a_version_card_extends_its_models(app: &TestApp) {
    app.model("m").await;
    app.version("m", json!({"finalize": true})).await;
    app.put(
        CARD,
        json!({"license": "MIT", "intended_use": "fraud scoring"}),
    )
    .await
    .ok(200);
    let path = "/api/v1/models/m/versions/1/card";
    let r = app.get(path).await;
    assert_eq!(
        r.ok(200),
        &json!({"card": {}, "effective": {"license": "MIT", "intended_use": "fraud scoring"}})
    );
    // A ready version's card still changes: it describes the version.
    let r = app
        .patch(
            path,
            json!({"evaluation": "AUC 0.93 on November", "license": "Apache-2.0"}),
        )
        .await;
    let v: Value = r.ok(200).clone();
    assert_eq!(
        v["card"],
        json!({"evaluation": "AUC 0.93 on November", "license": "Apache-2.0"})
    );
    assert_eq!(v["effective"]["license"], "Apache-2.0");
    assert_eq!(v["effective"]["intended_use"], "fraud scoring");
    let events = app
        .get("/api/v1/events?model=m&action=version.card_updated")
        .await;
    let items = events.ok(200)["items"].clone();
    assert_eq!(items[0]["version"], 1);
    assert_eq!(
        items[0]["details"]["changed"]["evaluation"],
        "AUC 0.93 on November"
    );
    app.put(path, json!({})).await.ok(200);
    let r = app.get(path).await;
    assert_eq!(r.ok(200)["effective"]["license"], "MIT");
    app.get("/api/v1/models/m/versions/7/card")
        .await
        .problem(404, "version_not_found");
}
