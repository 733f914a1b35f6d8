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
    const ROWS_KEEP_NEGATIVE_ZERO: bool = false;
    const ROW_LOCKS: bool = false;
    // The write lock is taken before any statement runs: the time the flow read is after it.
    fn clock(now: &str, _manual: bool) -> String {
        now.to_owned()
    }

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

    fn json_key_arg(key: &str) -> Arg {
        Arg::from(format!("$.\"{key}\""))
    }

    fn json_text(column: &str, param: &str) -> String {
        format!("json_extract({column}, {param})")
    }

    fn json_path_arg(members: &[String]) -> Arg {
        let path: String = members.iter().map(|m| format!(".\"{m}\"")).collect();
        Arg::from(format!("${path}"))
    }

    fn json_path_number(column: &str, param: &str) -> String {
        format!(
            "(case when json_type({column}, {param}) in ('integer', 'real') \
              then json_extract({column}, {param}) end)"
        )
    }

    fn json_path_text(column: &str, param: &str) -> String {
        format!(
            "(case when json_type({column}, {param}) = 'text' \
              then json_extract({column}, {param}) end)"
        )
    }

    fn numeric(param: &str) -> String {
        param.to_owned()
    }

    // SQLite's LIKE ignores ASCII case: a case-sensitive match is a GLOB.
    fn like(expr: &str, param: &str) -> String {
        format!("{expr} glob {param}")
    }

    fn like_arg(pattern: &str) -> Arg {
        Arg::from(crate::domain::logged_model::like_to_glob(pattern))
    }

    fn ilike(expr: &str, param: &str) -> String {
        format!("{expr} like {param}")
    }
});
