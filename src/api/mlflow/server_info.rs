//! `GET /api/3.0/mlflow/server-info`: what MLflow's client asks a server before it calls it
//! (how artifacts may be uploaded, whether workspaces are on). Public, as on MLflow's server:
//! it says nothing about the registry's contents. modelreg advertises none of MLflow's
//! optional mechanisms (multipart or presigned uploads, workspaces, trace archival, the AI
//! gateway), so the client uses the plain artifact proxy.

use super::super::Endpoint;
use crate::domain::access::Scope;
use axum::http::Method;
use serde_json::{Value, json};

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(
        Method::GET,
        "/api/3.0/mlflow/server-info",
        Scope::Public,
        server_info,
    )]
}

async fn server_info() -> axum::Json<Value> {
    axum::Json(json!({
        // Neither of MLflow's own stores ("FileStore", "SqlStore"): MLflow answers null then.
        "store_type": null,
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false},
    }))
}
