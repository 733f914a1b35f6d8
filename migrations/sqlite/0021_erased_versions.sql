-- no-transaction
-- Erased versions (see the Postgres migration of the same name). SQLite cannot change a
-- check constraint in place: the table is rebuilt, with foreign keys off while it is (the
-- tables that refer to `versions` refer to it by name, and find the new one).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE versions_new (
    id            blob primary key,
    model_id      blob not null constraint versions_model_fk references models (id),
    version       integer not null,
    status        text not null constraint versions_status_check
                  check (status in ('pending', 'ready', 'failed', 'archived', 'erased')),
    description   text,
    config        text not null default '{}',
    source        text not null default '{}',
    tags          text not null default '{}',
    status_reason text,
    created_at    text not null,
    updated_at    text not null,
    created_by    text not null,
    interface_schema text,
    card          text,
    erased_at     text,
    erased_by     text,
    constraint versions_model_version_key unique (model_id, version)
);
INSERT INTO versions_new (id, model_id, version, status, description, config, source, tags,
                          status_reason, created_at, updated_at, created_by, interface_schema, card)
SELECT id, model_id, version, status, description, config, source, tags,
       status_reason, created_at, updated_at, created_by, interface_schema, card
  FROM versions;
DROP TABLE versions;
ALTER TABLE versions_new RENAME TO versions;
CREATE TABLE object_deletions (
    object_key text primary key,
    queued_at  text not null
);
COMMIT;
PRAGMA foreign_keys = ON;
