//! How database errors reach clients: connection trouble is a 503, a full disk a 503
//! `storage_full`, anything else a 500 whose cause is logged, never shown.

use crate::error::{Error, Kind};

impl From<sqlx::Error> for Error {
    /// Database errors not handled at the call site: connection trouble is a 503, anything
    /// else a 500. Expected conflicts (unique violations) are mapped where they can occur.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Error::unavailable("database", e),
            sqlx::Error::Database(ref db) if is_storage_full(db.code().as_deref()) => Error::new(
                Kind::StorageFull,
                "storage_full",
                "the database's storage is full; nothing was written, try again once space is freed",
            )
            .caused_by(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_503_and_others_500() {
        let e: Error = sqlx::Error::PoolTimedOut.into();
        assert_eq!(e.kind, Kind::Unavailable);
        let e: Error = sqlx::Error::RowNotFound.into();
        assert_eq!(e.kind, Kind::Internal);
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
