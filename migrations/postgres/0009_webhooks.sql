-- Webhooks and their deliveries: a transactional outbox.
--
-- A delivery row is written by a trigger on `events`, so it commits or rolls back with the
-- change and its event, whichever statement wrote the event (the portable flows and the
-- single-statement fast paths alike): nothing is sent for a rolled-back change, and nothing
-- committed is lost when the process dies right after the commit. The dispatcher (in
-- `modelreg serve`) claims due rows with `for update skip locked` and a lease, so any number
-- of server processes share the work.
--
-- Patterns are matched in SQL as LIKE patterns, stored beside the globs they come from:
-- `events` (action globs, `stage.*`), `models` (name globs; null: every model) and
-- `owner_models` (the globs of the glob-limited token that made the webhook; null: none).

create table webhooks (
    id                    uuid primary key,
    url                   text not null,
    description           text,
    events                jsonb not null,
    event_likes           jsonb not null,
    models                jsonb,
    model_likes           jsonb,
    owner_models          jsonb,
    owner_likes           jsonb,
    owner_token_id        uuid,
    enabled               boolean not null,
    disabled_reason       text,
    -- The signing secret must be kept as is to sign; it never leaves the server but once.
    secret                text not null,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_at            timestamptz not null,
    created_by            text not null,
    updated_at            timestamptz not null
);

create table webhook_deliveries (
    id               bigint generated always as identity primary key,
    -- No foreign keys: their checks would run for every delivery of every event (the trigger
    -- writes both from rows it has just read); deleting a webhook deletes its deliveries.
    webhook_id       uuid not null,
    -- Null for pings.
    event_id         bigint,
    type             text not null,
    -- The model of the event ('' for events about no model): deliveries of one webhook and
    -- key go out in event order.
    ordering_key     text not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'succeeded', 'failed')),
    attempts         bigint not null default 0,
    last_status_code bigint,
    last_error       text,
    last_attempt_at  timestamptz,
    last_failure_at  timestamptz,
    next_attempt_at  timestamptz not null,
    -- When the delivery was (re)queued: retries stop about a day after it.
    queued_at        timestamptz not null,
    delivered_at     timestamptz,
    -- The claim of the process making an attempt, and until when it holds.
    lease_id         uuid,
    lease_until      timestamptz
);

create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_order_idx on webhook_deliveries (webhook_id, ordering_key, event_id)
    where status = 'pending';
create index webhook_deliveries_log_idx on webhook_deliveries (webhook_id, id);
create index webhook_deliveries_prune_idx on webhook_deliveries (delivered_at)
    where status = 'succeeded';

create function webhook_outbox() returns trigger
language plpgsql as $$
begin
    insert into webhook_deliveries (webhook_id, event_id, type, ordering_key, next_attempt_at, queued_at)
    select w.id, new.id, new.action, coalesce(new.model, ''),
           -- Behind an earlier delivery of the same webhook and model, a delivery is parked
           -- (due at the end of time) until that one is done: the dispatcher's look for due
           -- deliveries then only ever meets the head of each queue. (A lateral probe per
           -- webhook: the planner would otherwise hash every pending delivery of the model.)
           case when ahead.one is null then new.at else '9999-12-31 23:59:59+00' end,
           new.at
      from webhooks w
      left join lateral (
           select 1 as one from webhook_deliveries p
            where p.webhook_id = w.id and p.ordering_key = coalesce(new.model, '')
              and p.status = 'pending'
            limit 1) ahead on true
     where w.enabled
       and exists (select 1 from jsonb_array_elements_text(w.event_likes) p(v) where new.action like p.v)
       and (w.model_likes is null or exists (
               select 1 from jsonb_array_elements_text(w.model_likes) p(v) where new.model like p.v))
       and (w.owner_likes is null or exists (
               select 1 from jsonb_array_elements_text(w.owner_likes) p(v) where new.model like p.v));
    if found then
        -- Delivered to listening dispatchers when (and only if) the transaction commits.
        perform pg_notify('modelreg_webhooks', '');
    end if;
    return null;
end
$$;

create trigger events_webhook_outbox after insert on events
    for each row execute function webhook_outbox();
