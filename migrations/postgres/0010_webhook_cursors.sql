-- Deliveries are derived from the event log by the dispatcher, not written by a trigger.
--
-- Each webhook keeps a cursor: the last event id whose deliveries it has. The dispatcher locks
-- the webhooks behind the log, writes the deliveries of the events after their cursors up to
-- the log's horizon (below which no event can still commit), and advances the cursors, all in
-- one transaction. So nothing committed is lost (the events are the record, and a cursor only
-- moves with the deliveries it covers), nothing is sent for a rolled-back change (its event
-- never commits), and the writes of the registry pay nothing per subscribed webhook: the
-- trigger wrote ten rows into every promote's transaction when ten webhooks were subscribed.

drop trigger events_webhook_outbox on events;
drop function webhook_outbox();

alter table webhooks add column event_cursor bigint not null default 0;
-- The trigger has written the deliveries of every event so far.
update webhooks set event_cursor = coalesce((select max(id) from events), 0);
