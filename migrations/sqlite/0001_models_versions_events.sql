-- Models, versions, idempotency keys and the audit log.
-- Timestamps are fixed-width RFC 3339 UTC text (2026-01-02T03:04:05.123456Z), so that text
-- order is time order. JSON columns are text holding JSON.

create table models (
    id           blob primary key,
    name         text not null constraint models_name_key unique,
    description  text,
    tags         text not null default '{}',
    -- Highest version number handed out; bumped inside the registering transaction, which
    -- holds SQLite's write lock (BEGIN IMMEDIATE), so numbers are gapless and unique.
    last_version integer not null default 0,
    created_at   text not null,
    updated_at   text not null,
    created_by   text not null
);

create table versions (
    id            blob primary key,
    model_id      blob not null constraint versions_model_fk references models (id),
    version       integer not null,
    status        text not null constraint versions_status_check
                  check (status in ('pending', 'ready', 'failed', 'archived')),
    description   text,
    config        text not null default '{}',
    source        text not null default '{}',
    tags          text not null default '{}',
    status_reason text,
    created_at    text not null,
    updated_at    text not null,
    created_by    text not null,
    constraint versions_model_version_key unique (model_id, version)
);

create table idempotency_keys (
    model_id     blob not null constraint idempotency_keys_model_fk references models (id),
    key          text not null,
    request_hash text not null,
    version_id   blob not null constraint idempotency_keys_version_fk references versions (id),
    created_at   text not null,
    constraint idempotency_keys_pkey primary key (model_id, key)
);

create table events (
    id       integer primary key autoincrement,
    at       text not null,
    action   text not null,
    model_id blob,
    model    text,
    version  integer,
    stage    text,
    actor    text not null,
    details  text not null default '{}'
);
create index events_model_idx on events (model, id);
create index events_action_idx on events (action, id);
