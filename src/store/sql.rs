//! The statement layer both backends share: a statement is SQL text and a list of [`Arg`]s,
//! run on a [`Conn`]. Business flows are written once, generic over `Conn`.
//!
//! # The dialect seam
//! Everything that differs between Postgres and SQLite goes through one of three places:
//! - **[`Conn`]** (`postgres/conn.rs`, `sqlite/conn.rs`): how arguments bind (a time is
//!   `timestamptz` on Postgres and fixed-width RFC 3339 text on SQLite; a list is an array on
//!   Postgres and a JSON array on SQLite), whether reads take row locks, whether float
//!   columns keep -0.0, and the SQL
//!   *fragments* that differ — the clock a statement records ([`Conn::clock`]), list and
//!   pattern predicates, tag containment, JSON members and paths, case-sensitive LIKE. A
//!   flow builds its statement from these and never names a dialect.
//! - **[`Conn`]'s overridable statements**, where Postgres has a faster whole statement: the
//!   stage change in one round trip ([`Conn::write_stage_change`]) and the event log's
//!   horizon ([`Conn::event_horizon`], which only Postgres' concurrent writers need). The
//!   portable default is the behaviour; the override must answer the same.
//! - **`Backend`** (`store/mod.rs`): pools, transactions (SQLite's `BEGIN IMMEDIATE`), the
//!   full-disk probe, and the fast paths that pay on Postgres (COPY ingestion, one-statement
//!   registration, one-query version detail), each with a portable default.
//!
//! What is left checks [`Conn::DIALECT`] for the Postgres planner only (an `offset 0` fence,
//! `fetch first … with ties`, a float8-typed null): hints that change a plan, never a
//! result.

use crate::domain::time::Timestamp;
use crate::domain::{Description, ModelName, Reason, StageName};
use crate::error::{Error, Result};
use crate::store::Actor;
use crate::store::metrics::MetricWrites;
use crate::store::stage_change::StageWrite;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// Which SQL a backend speaks, for the few statements built at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// A bound parameter. `None` binds a typed SQL null.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Uuid(Option<Uuid>),
    I16(i16),
    I64(Option<i64>),
    F64(Option<f64>),
    Bool(Option<bool>),
    Text(Option<String>),
    /// A list of strings: a `text[]` on Postgres, a JSON array on SQLite.
    TextList(Option<Vec<String>>),
    /// A list of integers: a `bigint[]` on Postgres, a JSON array on SQLite.
    I64List(Vec<i64>),
    Time(Option<Timestamp>),
    /// A JSON document, serialized once: `jsonb` on Postgres, text on SQLite.
    Json(Option<Box<RawValue>>),
    /// Bytes: `bytea` on Postgres, a blob on SQLite.
    Bytes(Vec<u8>),
}

macro_rules! arg_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Arg::$variant(Some(v.into()))
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(v: Option<$t>) -> Self {
                Arg::$variant(v.map(Into::into))
            }
        }
    )*};
}

arg_from!(Uuid => Uuid, i64 => I64, f64 => F64, String => Text, Timestamp => Time, Vec<String> => TextList);

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(Some(v))
    }
}

impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Self {
        Arg::Bool(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<&ModelName> for Arg {
    fn from(v: &ModelName) -> Self {
        Arg::Text(Some(v.as_str().to_owned()))
    }
}

impl From<&Option<Description>> for Arg {
    fn from(v: &Option<Description>) -> Self {
        Arg::Text(v.as_ref().map(|d| d.as_str().to_owned()))
    }
}

impl From<&Option<Reason>> for Arg {
    fn from(v: &Option<Reason>) -> Self {
        Arg::Text(v.as_ref().map(|r| r.as_str().to_owned()))
    }
}

impl From<&StageName> for Arg {
    fn from(v: &StageName) -> Self {
        Arg::Text(Some(v.as_str().to_owned()))
    }
}

/// One statement: SQL with `$n` placeholders and its arguments in order.
#[derive(Debug)]
pub(crate) struct Stmt {
    pub sql: Cow<'static, str>,
    pub args: Vec<Arg>,
    /// A value that could not be serialized: running the statement fails with it.
    pub error: Option<serde_json::Error>,
}

impl Stmt {
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
            error: None,
        }
    }

    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Binds a value as a JSON document.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => self.args.push(Arg::Json(Some(raw))),
            Err(e) => {
                self.args.push(Arg::Json(None));
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// The arguments, or the serialization error one of them hit.
    pub fn into_parts(self) -> Result<(Cow<'static, str>, Vec<Arg>)> {
        match self.error {
            Some(e) => Err(Error::internal(e)),
            None => Ok((self.sql, self.args)),
        }
    }
}

/// A row type both backends can decode (every `#[derive(sqlx::FromRow)]` whose fields decode
/// on both, and tuples of such fields).
pub(crate) trait Record:
    for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + Send
    + Unpin
{
}

impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin
{
}

/// Implements [`Conn`] for a sqlx connection type. Running statements is the same for every
/// driver; what differs is given: the driver's argument type, how it encodes lists and times
/// (match arms over [`Arg`], adding to `$out`), and the dialect's own items.
macro_rules! impl_conn {
    ($conn:ty, $args:ty, |$out:ident| { $($encode:tt)* } { $($items:tt)* }) => {
        fn arguments(args: Vec<Arg>) -> Result<$args> {
            use sqlx::Arguments;
            let mut $out = <$args>::default();
            for arg in args {
                match arg {
                    Arg::Uuid(v) => $out.add(v),
                    Arg::I16(v) => $out.add(v),
                    Arg::I64(v) => $out.add(v),
                    Arg::F64(v) => $out.add(v),
                    Arg::Bool(v) => $out.add(v),
                    Arg::Text(v) => $out.add(v),
                    Arg::Json(v) => $out.add(v.map(sqlx::types::Json)),
                    Arg::Bytes(v) => $out.add(v),
                    $($encode)*
                }
                .map_err(Error::internal)?;
            }
            Ok($out)
        }

        type Sql = sqlx::AssertSqlSafe<std::borrow::Cow<'static, str>>;

        fn prepare(stmt: Stmt) -> Result<(Sql, $args)> {
            let (sql, args) = stmt.into_parts()?;
            Ok((sqlx::AssertSqlSafe(sql), arguments(args)?))
        }

        #[async_trait::async_trait]
        impl Conn for $conn {
            async fn execute(&mut self, stmt: Stmt) -> Result<u64> {
                let (sql, args) = prepare(stmt)?;
                let done = sqlx::query_with(sql, args).execute(&mut *self).await?;
                Ok(done.rows_affected())
            }

            async fn fetch_all<R: Record>(&mut self, stmt: Stmt) -> Result<Vec<R>> {
                let (sql, args) = prepare(stmt)?;
                Ok(sqlx::query_as_with::<_, R, _>(sql, args)
                    .fetch_all(&mut *self)
                    .await?)
            }

            async fn fetch_optional<R: Record>(&mut self, stmt: Stmt) -> Result<Option<R>> {
                let (sql, args) = prepare(stmt)?;
                Ok(sqlx::query_as_with::<_, R, _>(sql, args)
                    .fetch_optional(&mut *self)
                    .await?)
            }

            fn fetch<'c, R: Record + 'c>(
                &'c mut self,
                stmt: Stmt,
            ) -> futures::stream::BoxStream<'c, Result<R>> {
                use futures::{StreamExt, TryStreamExt};
                match prepare(stmt) {
                    Ok((sql, args)) => sqlx::query_as_with::<_, R, _>(sql, args)
                        .fetch(self)
                        .map_err(Error::from)
                        .boxed(),
                    Err(e) => futures::stream::once(async { Err(e) }).boxed(),
                }
            }

            $($items)*
        }
    };
}
pub(crate) use impl_conn;

/// A connection of either backend (in or out of a transaction): runs statements and provides
/// the statements that differ between the dialects.
#[async_trait]
pub(crate) trait Conn: Send + Sized + MetricWrites {
    const DIALECT: Dialect;
    /// Whether reads inside a write transaction take row locks (`for update`, `for share`).
    /// SQLite holds the database's write lock for the whole transaction instead.
    const ROW_LOCKS: bool;
    /// Whether a float column keeps -0.0 (SQLite stores an integral REAL as an integer, so
    /// -0.0 comes back as 0).
    const ROWS_KEEP_NEGATIVE_ZERO: bool;
    /// The time a statement records, as it sees it after the locks it takes; `now` is the
    /// parameter holding the time the flow read from the app's clock (SQLite, whose write lock
    /// is taken before the flow reads the time, records that). A `manual` clock (tests) is
    /// recorded as read on every backend.
    fn clock(now: &str, manual: bool) -> String;

    async fn execute(&mut self, stmt: Stmt) -> Result<u64>;
    async fn fetch_all<R: Record>(&mut self, stmt: Stmt) -> Result<Vec<R>>;
    async fn fetch_optional<R: Record>(&mut self, stmt: Stmt) -> Result<Option<R>>;
    /// Rows one at a time, for reads that may stop early.
    fn fetch<'c, R: Record + 'c>(&'c mut self, stmt: Stmt) -> BoxStream<'c, Result<R>>;

    async fn fetch_one<R: Record>(&mut self, stmt: Stmt) -> Result<R> {
        self.fetch_optional(stmt)
            .await?
            .ok_or_else(|| Error::internal("statement returned no row"))
    }

    async fn scalar<T>(&mut self, stmt: Stmt) -> Result<T>
    where
        (T,): Record,
        T: Send,
    {
        Ok(self.fetch_one::<(T,)>(stmt).await?.0)
    }

    /// `column` matches one of the LIKE patterns in the list parameter `param`.
    fn like_any(column: &str, param: &str) -> String;
    /// The JSON object `column` holds every member of the JSON object parameter `param`.
    fn contains_tags(column: &str, param: &str) -> String;
    /// `column` equals one of the strings in the list parameter `param`.
    fn in_list(column: &str, param: &str) -> String;
    /// A table of the list parameter `param`'s elements, in a column `value`.
    fn elements(param: &str) -> String;
    /// `column` starts with the text parameter `param`.
    fn starts_with(column: &str, param: &str) -> String;
    /// `value` matches one of the LIKE patterns of the JSON array in column `patterns`.
    fn like_json_any(value: &str, patterns: &str) -> String;
    /// What to bind to name a member of a JSON object (for [`Conn::json_text`]).
    fn json_key_arg(key: &str) -> Arg;
    /// The member named by `param` of the JSON object in `column`, as text.
    fn json_text(column: &str, param: &str) -> String;
    /// What to bind to name a nested member of a JSON object, outermost first.
    fn json_path_arg(members: &[String]) -> Arg;
    /// The member at `param` of the JSON in `column` when it is a number (else null), as a
    /// number compared with [`Conn::numeric`].
    fn json_path_number(column: &str, param: &str) -> String;
    /// The member at `param` of the JSON in `column` when it is a string (else null).
    fn json_path_text(column: &str, param: &str) -> String;
    /// A bound number as the type [`Conn::json_path_number`] compares with.
    fn numeric(param: &str) -> String;
    /// `expr` matches the LIKE pattern `param`, case-sensitively (bind
    /// [`Conn::like_arg`] of the pattern).
    fn like(expr: &str, param: &str) -> String;
    /// What to bind for a case-sensitive LIKE pattern.
    fn like_arg(pattern: &str) -> Arg;
    /// `expr` matches the LIKE pattern `param` (bound as it is), ignoring case.
    fn ilike(expr: &str, param: &str) -> String;

    /// Writes a stage change: trims the stack, pushes onto it, records the event and moves
    /// the pointer; returns the event id. Portable statements by default.
    async fn write_stage_change(&mut self, w: StageWrite<'_>, actor: &Actor) -> Result<i64> {
        crate::store::stage_change::write_change(self, w, actor).await
    }

    /// The id up to which the event log is final (no event below it can still commit), where
    /// concurrent writers make that differ from "everything committed"; `None` otherwise.
    async fn event_horizon(&mut self) -> Result<Option<i64>> {
        Ok(None)
    }
}
