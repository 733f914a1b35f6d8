//! Claims: the heads of the outbox's queues, leased, and the runs of deliveries behind them.

use super::Event;
use super::deliveries::{ClaimLimits, Claimed, parked};
use super::rows::EventRow;
use super::sql::{Arg, Conn, Stmt};
use crate::domain::time::Timestamp;
use crate::error::Result;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    webhook_id: Uuid,
    ordering_key: String,
    event_id: Option<i64>,
    kind: String,
    attempts: i64,
    next_attempt_at: Timestamp,
    queued_at: Timestamp,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<Timestamp>,
    action: Option<String>,
    model: Option<String>,
    version: Option<i64>,
    stage: Option<String>,
    actor: Option<String>,
    actor_token_id: Option<Uuid>,
    actor_subject: Option<String>,
    at: Option<Timestamp>,
    details: Option<Json<Value>>,
    attempt_ms: Option<i64>,
}

impl ClaimRow {
    fn into_claimed(self, now: Timestamp, lease_id: Uuid, slow_ms: i64) -> Claimed {
        let event = match (self.event_id, self.action, self.actor, self.at) {
            (Some(id), Some(action), Some(actor), Some(at)) => Some(Event::from(EventRow {
                id,
                action,
                model: self.model,
                version: self.version,
                stage: self.stage,
                actor,
                actor_token_id: self.actor_token_id,
                actor_subject: self.actor_subject,
                at,
                details: self.details.unwrap_or(Json(Value::Null)),
            })),
            _ => None,
        };
        let mut secrets = vec![self.secret];
        if let (Some(old), Some(until)) = (self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(old);
        }
        Claimed {
            id: self.id,
            lease_id,
            webhook_id: self.webhook_id,
            ordering_key: self.ordering_key,
            event_id: self.event_id,
            kind: self.kind,
            attempts: self.attempts,
            parked: self.next_attempt_at >= parked(),
            slow: self.attempt_ms.is_some_and(|ms| ms >= slow_ms),
            queued_at: self.queued_at,
            url: self.url,
            secrets,
            event,
        }
    }
}

/// Leases queue heads and reads their runs (see `claim_deliveries`).
///
/// Fair between webhooks: a webhook has at most `per_webhook` heads leased at once (counting
/// those other processes hold), and heads are taken round by round (every webhook's first due
/// head before any webhook's second), the webhooks whose receivers answer fastest first. Each
/// lane is filled on its own: prompt receivers (and those not timed yet) up to `prompt`
/// heads, slow ones (a moving average of `slow_ms` or more) up to `slow`.
pub(super) async fn claim<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    lease_until: Timestamp,
    limits: &ClaimLimits,
) -> Result<Vec<Vec<Claimed>>> {
    let lock = if C::ROW_LOCKS {
        " for update skip locked"
    } else {
        ""
    };
    let lease_id = Uuid::now_v7();
    let sql = format!(
        "update webhook_deliveries set lease_id = $2, lease_until = $3 where id in ( \
           select id from webhook_deliveries where id in ( \
             select q.id from ( \
               select c.id, c.slow, row_number() over ( \
                        partition by c.slow order by c.round, c.speed, c.next_attempt_at, c.id) as place \
                 from ( \
                   select d.id, d.next_attempt_at, \
                          case when s.attempt_ms >= $6 then 1 else 0 end as slow, \
                          coalesce(s.attempt_ms, $7) as speed, \
                          coalesce(l.n, 0) + row_number() over ( \
                            partition by d.webhook_id order by d.next_attempt_at, d.id) as round \
                     from webhook_deliveries d join webhooks w on w.id = d.webhook_id \
                     left join webhook_speeds s on s.webhook_id = d.webhook_id \
                     left join (select webhook_id, count(*) as n from webhook_deliveries \
                                 where lease_id is not null and lease_until > $1 \
                                 group by webhook_id) l on l.webhook_id = d.webhook_id \
                    where d.status = 'pending' and w.enabled and d.next_attempt_at <= $1 \
                      and (d.lease_until is null or d.lease_until <= $1) \
                      and (d.event_id is null or not exists ( \
                            select 1 from webhook_deliveries p \
                             where p.webhook_id = d.webhook_id and p.ordering_key = d.ordering_key \
                               and p.status = 'pending' and p.event_id < d.event_id))) c \
                where c.round <= $5) q \
              where (q.slow = 0 and q.place <= $4) or (q.slow = 1 and q.place <= $8)) \
             and status = 'pending' and (lease_until is null or lease_until <= $1){lock}) \
         returning id"
    );
    let stmt = Stmt::new(sql)
        .bind(now)
        .bind(lease_id)
        .bind(lease_until)
        .bind(i64::from(limits.prompt))
        .bind(i64::from(limits.per_webhook))
        .bind(limits.slow_ms)
        .bind(limits.slow_ms / 2)
        .bind(i64::from(limits.slow));
    let heads: Vec<(i64,)> = conn.fetch_all(stmt).await?;
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let heads: Vec<i64> = heads.into_iter().map(|(id,)| id).collect();
    // Behind each head of an event, the next deliveries of its queue. Not leased: nothing is
    // claimed behind a pending head, which the lease holds.
    let mut ids = heads.clone();
    let run = limits.run;
    if run > 1 {
        let sql = format!(
            "select id from ( \
               select f.id, row_number() over ( \
                        partition by f.webhook_id, f.ordering_key order by f.event_id) as n \
                 from webhook_deliveries h join webhook_deliveries f \
                   on f.webhook_id = h.webhook_id and f.ordering_key = h.ordering_key \
                  and f.status = 'pending' and f.event_id > h.event_id \
                where {}) q \
              where q.n < $2",
            C::in_list("h.id", "$1")
        );
        let stmt = Stmt::new(sql)
            .bind(Arg::I64List(heads.clone()))
            .bind(i64::from(run));
        let followers: Vec<(i64,)> = conn.fetch_all(stmt).await?;
        ids.extend(followers.into_iter().map(|(id,)| id));
    }
    let sql = format!(
        "select d.id, d.webhook_id, d.ordering_key, d.event_id, d.type as kind, d.attempts, \
                d.next_attempt_at, d.queued_at, w.url, w.secret, w.previous_secret, w.previous_secret_until, \
                e.action, e.model, e.version, e.stage, e.actor, e.actor_token_id, e.actor_subject, \
                e.at, e.details, s.attempt_ms \
           from webhook_deliveries d join webhooks w on w.id = d.webhook_id \
           left join events e on e.id = d.event_id \
           left join webhook_speeds s on s.webhook_id = d.webhook_id \
          where {}",
        C::in_list("d.id", "$1")
    );
    let rows: Vec<ClaimRow> = conn
        .fetch_all(Stmt::new(sql).bind(Arg::I64List(ids)))
        .await?;
    Ok(runs(
        rows.into_iter()
            .map(|r| r.into_claimed(now, lease_id, limits.slow_ms)),
        &heads,
    ))
}

/// Groups claimed deliveries into runs: each head (in claim order) with the deliveries of its
/// queue behind it in event order, up to the first that is not parked (a retry waiting for
/// its time, or a queue whose order broke: it is not sent before its time).
fn runs(claimed: impl Iterator<Item = Claimed>, heads: &[i64]) -> Vec<Vec<Claimed>> {
    let mut runs: Vec<Vec<Claimed>> = Vec::with_capacity(heads.len());
    let mut followers: Vec<Claimed> = Vec::new();
    let mut by_id: std::collections::HashMap<i64, Claimed> = std::collections::HashMap::new();
    for c in claimed {
        if heads.contains(&c.id) {
            by_id.insert(c.id, c);
        } else {
            followers.push(c);
        }
    }
    followers.sort_by_key(|c| c.event_id);
    for head in heads {
        let Some(head) = by_id.remove(head) else {
            continue;
        };
        let mut run = vec![head];
        if let Some(after) = run[0].event_id {
            let queue = (run[0].webhook_id, run[0].ordering_key.clone());
            run.extend(
                followers
                    .iter()
                    .filter(|f| {
                        (f.webhook_id, &f.ordering_key) == (queue.0, &queue.1)
                            && f.event_id > Some(after)
                    })
                    .take_while(|f| f.parked)
                    .cloned(),
            );
        }
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: i64, hook: u128, key: &str, event: Option<i64>, parked: bool) -> Claimed {
        Claimed {
            id,
            lease_id: Uuid::nil(),
            webhook_id: Uuid::from_u128(hook),
            ordering_key: key.into(),
            event_id: event,
            kind: "stage.promoted".into(),
            attempts: 0,
            parked,
            slow: false,
            queued_at: Timestamp::default(),
            url: String::new(),
            secrets: Vec::new(),
            event: None,
        }
    }

    fn ids(runs: &[Vec<Claimed>]) -> Vec<Vec<i64>> {
        runs.iter()
            .map(|r| r.iter().map(|d| d.id).collect())
            .collect()
    }

    #[test]
    fn a_run_is_its_head_and_the_parked_deliveries_of_its_queue_in_event_order() {
        let claimed = vec![
            delivery(7, 1, "b", Some(70), true),
            delivery(1, 1, "a", Some(10), false),
            delivery(5, 1, "a", Some(50), true),
            delivery(3, 1, "a", Some(30), true),
            delivery(2, 1, "b", Some(20), false),
            delivery(4, 2, "a", Some(40), true),
            delivery(9, 1, "", None, false),
        ];
        let runs = runs(claimed.into_iter(), &[2, 1, 9]);
        assert_eq!(ids(&runs), vec![vec![2, 7], vec![1, 3, 5], vec![9]]);
    }

    #[test]
    fn a_run_stops_before_a_delivery_that_waits_for_its_own_time() {
        let claimed = vec![
            delivery(1, 1, "a", Some(10), false),
            delivery(2, 1, "a", Some(20), true),
            delivery(3, 1, "a", Some(30), false),
            delivery(4, 1, "a", Some(40), true),
        ];
        assert_eq!(ids(&runs(claimed.into_iter(), &[1])), vec![vec![1, 2]]);
    }

    #[test]
    fn a_head_lost_between_the_claim_and_the_read_makes_no_run() {
        let claimed = vec![delivery(2, 1, "a", Some(20), true)];
        assert!(runs(claimed.into_iter(), &[1]).is_empty());
    }
}
