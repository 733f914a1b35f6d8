//! The one error type of the service, rendered as RFC 9457 `application/problem+json`.
//!
//! Every failure that reaches a client carries a stable snake_case `code`. 5xx bodies are
//! generic; their cause is logged inside the request span and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure this is; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    Unprocessable,
    Unavailable,
    Internal,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failure with a machine code, a human detail and, for input errors, the offending field.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
    /// For a parse error: the character position (0-based) in the field's value.
    pub position: Option<usize>,
    /// The underlying cause of a 5xx: logged, never rendered.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    pub fn new(kind: Kind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
            field: None,
            position: None,
            source: None,
        }
    }

    /// Names the request field (JSON path, query or path parameter) the error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Where in the field's value a parse error is.
    pub fn with_position(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }

    /// 422 `validation_failed` about one field.
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Kind::Unprocessable, "validation_failed", detail).with_field(field)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, code, detail)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::not_found("model_not_found", format!("model '{model}' does not exist"))
    }

    pub fn version_not_found(model: &str, version: i64) -> Self {
        Self::not_found(
            "version_not_found",
            format!("model '{model}' has no version {version}"),
        )
    }

    /// A 500 whose cause is logged but not shown.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(Kind::Internal, "internal_error", "internal server error")
        }
    }

    /// A 503: a dependency (database, object store) cannot be reached right now.
    pub fn unavailable(
        what: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(
                Kind::Unavailable,
                "service_unavailable",
                format!("the {what} is unavailable; try again shortly"),
            )
        }
    }

    /// Replaces the machine code, keeping kind, detail and cause.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl From<sqlx::Error> for Error {
    /// Database errors not handled at the call site: connection trouble is a 503, anything
    /// else a 500. Expected conflicts (unique violations) are mapped where they can occur.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Error::unavailable("database", e),
            sqlx::Error::Database(ref db) if is_storage_full(db.code().as_deref()) => Error {
                source: Some(Box::new(e)),
                ..Error::new(
                    Kind::Unavailable,
                    "storage_full",
                    "the database's storage is full; nothing was written, try again once space is freed",
                )
            },
            sqlx::Error::Database(ref db)
                if is_unavailable_code(db.code().as_deref()) || is_fatal(db.as_ref()) =>
            {
                Error::unavailable("database", e)
            }
            other => Error::internal(other),
        }
    }
}

/// SQLSTATE classes meaning "the database cannot serve you now" rather than "your query is bad":
/// 08 connection exceptions, 53 insufficient resources (too many connections), 57P01..57P03
/// shutdown / cannot connect now, 3D000 no such database, and SQLite's SQLITE_BUSY (5) and
/// SQLITE_LOCKED (6) when the busy timeout runs out.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(c, "57P01" | "57P02" | "57P03" | "3D000" | "5" | "6")
        }
        None => false,
    }
}

/// Out of space: SQLite's SQLITE_FULL (13, also when a database reaches its page limit) and
/// Postgres's disk_full (53100).
fn is_storage_full(code: Option<&str>) -> bool {
    matches!(code, Some("13" | "53100"))
}

/// A Postgres FATAL ends the session: the connection is gone (refused at start-up, terminated
/// by an administrator), whatever the SQLSTATE.
fn is_fatal(db: &dyn sqlx::error::DatabaseError) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    db.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // Inside the request span, so the request id is on this line.
            tracing::error!(code = self.code, error = ?self.source, "request failed");
        }
        let problem = Problem {
            kind: format!("urn:modelreg:problem:{}", self.code),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &self.detail,
            code: self.code,
            field: self.field.as_deref(),
            position: self.position,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_503_and_others_500() {
        let e: Error = sqlx::Error::PoolTimedOut.into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e: Error = sqlx::Error::RowNotFound.into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.detail, "internal server error");
    }

    #[test]
    fn sqlstate_classes() {
        assert!(is_unavailable_code(Some("08006")));
        assert!(is_unavailable_code(Some("57P01")));
        assert!(!is_unavailable_code(Some("23505")));
        assert!(!is_unavailable_code(None));
        assert!(is_storage_full(Some("13")) && is_storage_full(Some("53100")));
        assert!(!is_storage_full(Some("5")));
    }
}
