//! Access scopes of the endpoints.

/// What a caller must be allowed to do to call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Health and readiness: open to everyone.
    Public,
    Read,
    /// Register, patch, upload, log metrics, finalize, fail.
    Write,
    /// Stage changes.
    Promote,
    /// Tokens and deletes; implies every other scope.
    Admin,
}
