-- Models, versions, idempotency keys and the audit log.

create table models (
    id           uuid primary key,
    -- "C" collation: byte order, so that name prefixes and keyset cursors compare exactly.
    name         text collate "C" not null constraint models_name_key unique,
    description  text,
    tags         jsonb not null default '{}',
    -- Highest version number handed out. Bumped inside the registering transaction: the row
    -- lock serializes registrations per model across all server processes, and a rolled back
    -- registration gives its number back, so numbers are gapless.
    last_version bigint not null default 0,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    created_by   text not null
);
create index models_tags_idx on models using gin (tags jsonb_path_ops);

create table versions (
    id            uuid primary key,
    model_id      uuid not null constraint versions_model_fk references models (id),
    version       bigint not null,
    status        text not null constraint versions_status_check
                  check (status in ('pending', 'ready', 'failed', 'archived')),
    description   text,
    config        jsonb not null default '{}',
    source        jsonb not null default '{}',
    tags          jsonb not null default '{}',
    status_reason text,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    created_by    text not null,
    constraint versions_model_version_key unique (model_id, version)
);
create index versions_tags_idx on versions using gin (tags jsonb_path_ops);

create table idempotency_keys (
    model_id     uuid not null constraint idempotency_keys_model_fk references models (id),
    key          text not null,
    request_hash text not null,
    version_id   uuid not null constraint idempotency_keys_version_fk references versions (id),
    created_at   timestamptz not null,
    constraint idempotency_keys_pkey primary key (model_id, key)
);

create table events (
    id       bigint generated always as identity primary key,
    at       timestamptz not null,
    action   text not null,
    -- No foreign key: the log outlives what it describes.
    model_id uuid,
    model    text,
    version  bigint,
    stage    text,
    actor    text not null,
    details  jsonb not null default '{}'
);
create index events_model_idx on events (model, id);
create index events_action_idx on events (action, id);
