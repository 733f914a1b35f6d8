-- Deliveries are derived from the event log by the dispatcher, through a cursor per webhook,
-- instead of a trigger on `events` (see the Postgres migration of the same name).

drop trigger events_webhook_outbox;

alter table webhooks add column event_cursor integer not null default 0;
-- The trigger has written the deliveries of every event so far.
update webhooks set event_cursor = coalesce((select max(id) from events), 0);
