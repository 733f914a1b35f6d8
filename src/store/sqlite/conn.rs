//! The SQLite dialect: binds (times as fixed-width RFC 3339 text, lists as JSON arrays),
//! fragments over `json_each`. Row locks are not needed: a write transaction holds the
//! database's write lock from its start.

use super::ts;
use crate::error::{Error, Result};
use crate::store::sql::{Arg, Conn, Dialect, Record, Stmt, impl_conn};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteArguments;

impl_conn!(SqliteConnection, SqliteArguments, |out| {
    Arg::TextList(v) => out.add(v.map(sqlx::types::Json)),
    Arg::I64List(v) => out.add(sqlx::types::Json(v)),
    Arg::Time(v) => out.add(v.map(ts)),
} {
    const DIALECT: Dialect = Dialect::Sqlite;
    const ROW_LOCKS: bool = false;
    // The write lock is taken before any statement runs: the time the flow read is after it.
    const CLOCK: &'static str = "$3";

    fn like_any(column: &str, param: &str) -> String {
        format!(
            "exists (select 1 from json_each({param}) g where {column} like g.value escape '\\')"
        )
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} in (select value from json_each({param}))")
    }

    fn contains_tags(column: &str, param: &str) -> String {
        format!(
            "not exists (select 1 from json_each({param}) f \
             where json_extract({column}, '$.\"' || f.key || '\"') is not f.value)"
        )
    }

    fn elements(param: &str) -> String {
        format!("json_each({param})")
    }

    fn starts_with(column: &str, param: &str) -> String {
        format!("substr({column}, 1, length({param})) = {param}")
    }

    fn like_json_any(value: &str, patterns: &str) -> String {
        format!(
            "exists (select 1 from json_each({patterns}) p where {value} like p.value escape '\\')"
        )
    }
});
