//! The one error type of the service: what went wrong, as a kind (which decides the HTTP
//! status, see `api::problem`), a stable snake_case `code`, a detail for people and, for a
//! 5xx, the cause to log. No HTTP and no SQL here: the API renders errors, the store maps
//! database errors into them.

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
    /// A per-caller cap reached (429).
    TooManyRequests,
    Unavailable,
    /// The database's disk (or its page limit) is full: a 503 until space is freed.
    StorageFull,
    Internal,
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
    /// For a promote a stage policy refused: every check, passing or not.
    pub checks: Option<Box<Vec<crate::domain::policy::Check>>>,
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
            checks: None,
            source: None,
        }
    }

    /// 409 `policy_violation`: a stage policy refused the promote; the checks say why.
    pub fn policy_violation(stage: &str, checks: Vec<crate::domain::policy::Check>) -> Self {
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect();
        let detail = format!(
            "the policy of {stage} refuses this promote: {} failed",
            failing.join(", ")
        );
        Self {
            checks: Some(Box::new(checks)),
            ..Self::conflict("policy_violation", detail)
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

    /// Keeps the underlying cause (logged for a 5xx, never rendered).
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The underlying cause, for the log.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}
