//! The Postgres dialect: binds, fragments and the statements only Postgres has (row-lock
//! upserts, the stage change as one statement, the event log's horizon).

use crate::error::{Error, Result};
use crate::store::Actor;
use crate::store::sql::{Arg, Conn, Dialect, Record, Stmt, impl_conn};
use crate::store::stage_change::StageWrite;
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, query_as, query_scalar};
use std::time::Duration;

/// How long an event log read waits for the transactions that may still commit events below
/// the log's current end.
const EVENT_WAIT: Duration = Duration::from_secs(2);
/// The longest pause between two looks at the transactions in progress.
const EVENT_POLL_MAX: Duration = Duration::from_millis(100);

impl_conn!(PgConnection, PgArguments, |out| {
    Arg::TextList(v) => out.add(v),
    Arg::I64List(v) => out.add(v),
    Arg::Time(v) => out.add(v),
} {
    const DIALECT: Dialect = Dialect::Postgres;
    const ROWS_KEEP_NEGATIVE_ZERO: bool = true;
    const ROW_LOCKS: bool = true;
    // The database's clock, read when the statement gets to it (after a row lock): one
    // clock for every server process. A manual clock is the tests' and is taken as read.
    fn clock(now: &str, manual: bool) -> String {
        if manual {
            now.to_owned()
        } else {
            "date_trunc('microseconds', clock_timestamp())".to_owned()
        }
    }

    fn like_any(column: &str, param: &str) -> String {
        format!("{column} like any({param})")
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} = any({param})")
    }

    fn contains_tags(column: &str, param: &str) -> String {
        format!("{column} @> {param}")
    }

    fn elements(param: &str) -> String {
        format!("unnest({param}) as t(value)")
    }

    fn starts_with(column: &str, param: &str) -> String {
        format!("starts_with({column}, {param})")
    }

    fn like_json_any(value: &str, patterns: &str) -> String {
        format!("exists (select 1 from jsonb_array_elements_text({patterns}) p(v) where {value} like p.v)")
    }

    fn json_key_arg(key: &str) -> Arg {
        Arg::from(key)
    }

    fn json_text(column: &str, param: &str) -> String {
        format!("{column} ->> {param}")
    }

    fn json_path_arg(members: &[String]) -> Arg {
        Arg::from(members.to_vec())
    }

    // numeric, not float8: a JSON number may be beyond float8's range.
    fn json_path_number(column: &str, param: &str) -> String {
        format!(
            "(case when jsonb_typeof({column} #> {param}) = 'number' \
              then ({column} #> {param})::numeric end)"
        )
    }

    fn json_path_text(column: &str, param: &str) -> String {
        format!(
            "(case when jsonb_typeof({column} #> {param}) = 'string' \
              then {column} #>> {param} end)"
        )
    }

    fn numeric(param: &str) -> String {
        format!("cast({param} as numeric)")
    }

    fn like(expr: &str, param: &str) -> String {
        format!("{expr} like {param}")
    }

    fn like_arg(pattern: &str) -> Arg {
        Arg::from(pattern)
    }

    fn ilike(expr: &str, param: &str) -> String {
        format!("{expr} ilike {param}")
    }

    async fn write_stage_change(&mut self, w: StageWrite<'_>, actor: &Actor) -> Result<i64> {
        stage_change(self, w, actor).await
    }

    async fn event_horizon(&mut self) -> Result<Option<i64>> {
        event_horizon(self).await
    }
});

/// The stage change in one statement, one round trip: trim the stack, push, record the
/// event, move the pointer (the portable flow does it in four).
async fn stage_change(conn: &mut PgConnection, w: StageWrite<'_>, actor: &Actor) -> Result<i64> {
    // One statement, one round trip: trim the stack, push, record the event, move the pointer.
    let e = &w.event;
    let (push_at, push_version) = w.push.unzip();
    let event_id: i64 = query_scalar(
        "with trimmed as (delete from stage_stack \
                          where $3::bigint is not null and model_id = $1 and stage = $2 and position > $3), \
              pushed as (insert into stage_stack (model_id, stage, position, version) \
                         select $1, $2, $4, $5 where $4::bigint is not null), \
              event as (insert into events (at, action, model_id, model, version, stage, actor, actor_token_id, details, actor_subject) \
                        values ($6, $7, $1, $8, $9, $2, $10, $13, $11, $14) returning id) \
         update stages set version = $9, depth = $12, event_id = (select id from event), since = $6, updated_at = $6 \
         where model_id = $1 and name = $2 returning event_id",
    )
    .bind(w.model_id)
    .bind(w.stage.as_str())
    .bind(w.keep)
    .bind(push_at)
    .bind(push_version)
    .bind(e.at)
    .bind(e.action)
    .bind(e.model)
    .bind(w.version)
    .bind(&actor.name)
    .bind(sqlx::types::Json(&e.details))
    .bind(w.depth)
    .bind(actor.token_id)
    .bind(&actor.subject)
    .fetch_one(&mut *conn)
    .await?;
    Ok(event_id)
}

/// The highest event id up to which the log is final: every event with an id up to it has
/// committed or rolled back, so a reader tailing with `after=` never moves past an event
/// that commits later. Event ids are drawn only once their transaction has an xid
/// (migration 0006), so the transactions that may hold ids up to the sequence's value are
/// among those in progress right after it is read; this waits for them (writes here last
/// milliseconds) and never delays a writer. `pg_stat_activity` shows every session's xid,
/// whatever role reads it. Only client sessions can write events: an autovacuum worker
/// analyzing a large table holds an xid for as long as that takes, and is not waited for.
async fn event_horizon(conn: &mut PgConnection) -> Result<Option<i64>> {
    let (last, called): (i64, bool) = query_as("select last_value, is_called from event_ids")
        .fetch_one(&mut *conn)
        .await?;
    let horizon = if called { last } else { last - 1 };
    let mut in_flight: Vec<String> = query_scalar(
        "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
         where datname = current_database() and backend_xid is not null \
           and backend_type = 'client backend' and pid <> pg_backend_pid()",
    )
    .fetch_one(&mut *conn)
    .await?;
    let deadline = std::time::Instant::now() + EVENT_WAIT;
    // A bounded backoff, not a spin: writes commit in milliseconds, so the first looks
    // come soon; a transaction that stays open is looked at ever less often.
    let mut pause = Duration::from_millis(1);
    while !in_flight.is_empty() {
        if std::time::Instant::now() >= deadline {
            // A transaction open this long is not one of ours; answer rather than hang.
            tracing::warn!(
                transactions = in_flight.len(),
                "event log read gave up waiting for transactions in progress"
            );
            break;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(EVENT_POLL_MAX);
        in_flight = query_scalar(
            "select coalesce(array_agg(backend_xid::text), '{}') from pg_stat_activity \
             where datname = current_database() and backend_xid::text = any($1)",
        )
        .bind(&in_flight)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(Some(horizon))
}
