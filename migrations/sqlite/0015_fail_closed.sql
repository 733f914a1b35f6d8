-- Fail closed, round 2 (see the Postgres migration of the same name).

alter table tokens add column subject text;
update tokens set subject = name;

alter table events add column actor_subject text;
alter table promotion_requests add column requested_by_subject text;
update promotion_requests set requested_by_subject = requested_by;

create table webhook_speeds (
    webhook_id blob primary key,
    attempt_ms integer not null,
    updated_at text not null
);

create index webhook_deliveries_leased_idx on webhook_deliveries (webhook_id)
    where lease_id is not null;
create index webhook_deliveries_failed_idx on webhook_deliveries (last_attempt_at)
    where status = 'failed';

alter table metric_series add column compact_error text;
alter table metric_series add column compact_retry_at text;
create index metric_series_compact_error on metric_series (id) where compact_error is not null;
