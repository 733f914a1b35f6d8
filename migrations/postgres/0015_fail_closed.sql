-- Fail closed, round 2.
--
-- Tokens name the person (or system) that holds them: several tokens may share a subject, and
-- the two-person rule of promotion requests counts subjects, not tokens. Existing tokens are
-- held by their name. Events and requests keep the subject of the actor.
alter table tokens add column subject text;
update tokens set subject = name;
alter table tokens alter column subject set not null;

alter table events add column actor_subject text;
alter table promotion_requests add column requested_by_subject text;
update promotion_requests set requested_by_subject = requested_by;

-- How long each webhook's receiver takes to answer (a moving average of its runs), so the
-- dispatcher serves prompt receivers first and keeps slow ones to their own share. A table of
-- its own: the attempt's outcome is recorded under a share lock of the webhook's row.
create table webhook_speeds (
    webhook_id uuid primary key,
    attempt_ms bigint not null,
    updated_at timestamptz not null
);

-- The deliveries leased right now, per webhook (attempts in flight are capped per webhook).
create index webhook_deliveries_leased_idx on webhook_deliveries (webhook_id)
    where lease_id is not null;
-- Failed deliveries are pruned after their retention too.
create index webhook_deliveries_failed_idx on webhook_deliveries (last_attempt_at)
    where status = 'failed';

-- A series the compactor could not pack: skipped (retried after a while), counted, reported.
alter table metric_series add column compact_error text;
alter table metric_series add column compact_retry_at timestamptz;
create index metric_series_compact_error on metric_series (id) where compact_error is not null;
