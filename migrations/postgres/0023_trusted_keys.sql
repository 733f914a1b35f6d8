-- Trusted public keys: the keys whose signatures over a version's files the registry
-- accepts (each optionally limited to model-name globs). Several may be trusted at once, so
-- that a key is rotated by adding the new one before removing the old.

create table trusted_keys (
    name        text primary key,
    algorithm   text not null,
    bits        bigint not null,
    spki        bytea not null,
    fingerprint text not null,
    models      jsonb,
    created_at  timestamptz not null,
    created_by  text not null,
    updated_at  timestamptz not null,
    updated_by  text not null
);
