//! The outbox: deliveries derived from the event log.
//!
//! Each webhook keeps a cursor, the last event id whose deliveries it has. A round locks the
//! enabled webhooks behind the log, writes the deliveries of the events after their cursors
//! up to the log's horizon, and moves the cursors, in one transaction: a cursor only ever
//! moves with the deliveries it covers, so no committed event is lost whoever dies when, and
//! an event rolled back never reaches the log. Chosen over writing the deliveries from a
//! trigger in each change's transaction: that put one row per subscribed webhook into every
//! promote and registration (ten webhooks cost a registration a quarter of its rate), while
//! a round writes the deliveries of any number of events in one statement, off the request
//! path.

use super::deliveries::parked;
use super::sql::{Arg, Conn, Stmt};
use crate::error::Result;
use uuid::Uuid;

/// Events a round reads at most, past the furthest-behind cursor.
const BATCH: i64 = 5_000;

/// Writes the deliveries of events up to `horizon` (the whole log when `None`: one process
/// writes it), parking each behind the earlier pending deliveries of its queue; how many.
pub(super) async fn advance<C: Conn>(conn: &mut C, horizon: Option<i64>) -> Result<u64> {
    let horizon = match horizon {
        Some(h) => h,
        None => {
            conn.scalar(Stmt::new("select coalesce(max(id), 0) from events"))
                .await?
        }
    };
    // Locked in id order, so that rounds in several processes neither deadlock nor write
    // the same deliveries twice: a second round waits, then sees the cursors moved.
    let lock = if C::ROW_LOCKS {
        " order by id for update"
    } else {
        ""
    };
    let behind: Vec<(Uuid, i64)> = conn
        .fetch_all(
            Stmt::new(format!(
                "select id, event_cursor from webhooks where enabled and event_cursor < $1{lock}"
            ))
            .bind(horizon),
        )
        .await?;
    let Some(from) = behind.iter().map(|(_, cursor)| *cursor).min() else {
        return Ok(0);
    };
    let upto = horizon.min(from.saturating_add(BATCH));
    // The webhooks this round holds: those locked above (a webhook enabled since is left to
    // the next round); on SQLite the write lock keeps the set as it was read.
    let (which, held, ids) = if C::ROW_LOCKS {
        let ids = behind.iter().map(|(id, _)| id.to_string()).collect();
        let ids = Some(Arg::TextList(Some(ids)));
        (
            "w.id = any(cast($3 as uuid[]))",
            "id = any(cast($2 as uuid[]))",
            ids,
        )
    } else {
        ("w.enabled", "enabled", None)
    };
    let matches = |value: &str, patterns: &str| C::like_json_any(value, patterns);
    let sql = format!(
        "insert into webhook_deliveries (webhook_id, event_id, type, ordering_key, next_attempt_at, queued_at) \
         select f.webhook_id, f.event_id, f.action, f.ordering_key, \
                case when f.n = 1 and not exists ( \
                       select 1 from webhook_deliveries p \
                        where p.webhook_id = f.webhook_id and p.ordering_key = f.ordering_key \
                          and p.status = 'pending') \
                     then f.at else $2 end, \
                f.at \
           from (select w.id as webhook_id, e.id as event_id, e.action, \
                        coalesce(e.model, '') as ordering_key, e.at, \
                        row_number() over (partition by w.id, coalesce(e.model, '') order by e.id) as n \
                   from webhooks w join events e on e.id > w.event_cursor and e.id <= $1 \
                  where {which} and {events} \
                    and (w.model_likes is null or {models}) \
                    and (w.owner_likes is null or {owners})) f \
          order by f.event_id",
        events = matches("e.action", "w.event_likes"),
        models = matches("e.model", "w.model_likes"),
        owners = matches("e.model", "w.owner_likes"),
    );
    let mut insert = Stmt::new(sql).bind(upto).bind(parked());
    let mut update = Stmt::new(format!(
        "update webhooks set event_cursor = $1 where event_cursor < $1 and {held}"
    ))
    .bind(upto);
    if let Some(ids) = ids {
        insert = insert.bind(ids.clone());
        update = update.bind(ids);
    }
    let written = conn.execute(insert).await?;
    conn.execute(update).await?;
    Ok(written)
}
