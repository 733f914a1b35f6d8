-- Bearer tokens. Only a sha256 of the secret is kept; the secret is shown once, at creation.
-- Every request looks its token up here (no cache), so a revocation holds at once in every
-- server process.

create table tokens (
    id          uuid primary key,
    name        text not null,
    secret_hash text not null,
    -- JSON arrays: scopes (read, write, promote, admin) and model-name globs (null: all models).
    scopes      jsonb not null,
    models      jsonb,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz not null,
    created_by  text not null
);
