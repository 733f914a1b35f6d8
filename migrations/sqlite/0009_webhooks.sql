-- Webhooks and their deliveries: a transactional outbox (see the Postgres migration of the
-- same name for the design). A delivery row is written by a trigger on `events`, in the
-- transaction of the change; the dispatcher is woken in-process after each commit.
-- JSON columns hold arrays of LIKE patterns beside the globs they come from.

create table webhooks (
    id                    blob primary key,
    url                   text not null,
    description           text,
    events                text not null,
    event_likes           text not null,
    models                text,
    model_likes           text,
    owner_models          text,
    owner_likes           text,
    owner_token_id        blob,
    enabled               integer not null,
    disabled_reason       text,
    secret                text not null,
    previous_secret       text,
    previous_secret_until text,
    created_at            text not null,
    created_by            text not null,
    updated_at            text not null
);

create table webhook_deliveries (
    id               integer primary key autoincrement,
    webhook_id       blob not null,
    event_id         integer,
    type             text not null,
    ordering_key     text not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'succeeded', 'failed')),
    attempts         integer not null default 0,
    last_status_code integer,
    last_error       text,
    last_attempt_at  text,
    last_failure_at  text,
    next_attempt_at  text not null,
    queued_at        text not null,
    delivered_at     text,
    lease_id         blob,
    lease_until      text
);

create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_order_idx on webhook_deliveries (webhook_id, ordering_key, event_id)
    where status = 'pending';
create index webhook_deliveries_log_idx on webhook_deliveries (webhook_id, id);
create index webhook_deliveries_prune_idx on webhook_deliveries (delivered_at)
    where status = 'succeeded';

create trigger events_webhook_outbox after insert on events
begin
    insert into webhook_deliveries (webhook_id, event_id, type, ordering_key, next_attempt_at, queued_at)
    select w.id, new.id, new.action, coalesce(new.model, ''),
           -- Behind an earlier delivery of the same webhook and model, a delivery is parked
           -- (due at the end of time) until that one is done: the dispatcher's look for due
           -- deliveries then only ever meets the head of each queue.
           case when exists (select 1 from webhook_deliveries p
                              where p.webhook_id = w.id and p.ordering_key = coalesce(new.model, '')
                                and p.status = 'pending')
                then '9999-12-31T23:59:59.000000Z' else new.at end,
           new.at
      from webhooks w
     where w.enabled
       and exists (select 1 from json_each(w.event_likes) p where new.action like p.value escape '\')
       and (w.model_likes is null or exists (
               select 1 from json_each(w.model_likes) p where new.model like p.value escape '\'))
       and (w.owner_likes is null or exists (
               select 1 from json_each(w.owner_likes) p where new.model like p.value escape '\'));
end;
