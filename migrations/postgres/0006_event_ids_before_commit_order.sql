-- Readers tailing the event log with `after=<id>` must never skip an event. Ids come from a
-- sequence when the event row is written, but transactions commit in their own order, so a
-- reader could see id 11 committed while id 10 is still in flight and then move past it.
--
-- The fix has two halves. Here: an event id is drawn only after its transaction has a
-- transaction id (xid), so any transaction holding an id up to the sequence's current value
-- is visible as in progress in pg_stat_activity. In the store: a reader notes the sequence's
-- value, waits until the transactions in progress at that moment have ended, and returns
-- events up to that value only. Writers never wait for readers.

create sequence event_ids as bigint;
select setval('event_ids', coalesce((select max(id) from events), 0) + 1, false);

alter table events alter column id drop identity;

create function next_event_id() returns bigint
language plpgsql volatile as $$
begin
    perform pg_current_xact_id();
    return nextval('event_ids');
end
$$;

alter table events alter column id set default next_event_id();
alter sequence event_ids owned by events.id;
