-- Bearer tokens. Only a sha256 of the secret is kept; the secret is shown once, at creation.

create table tokens (
    id          blob primary key,
    name        text not null,
    secret_hash text not null,
    scopes      text not null,
    models      text,
    expires_at  text,
    revoked_at  text,
    created_at  text not null,
    created_by  text not null
);
