-- Trusted public keys (see the Postgres migration of the same name).

create table trusted_keys (
    name        text primary key,
    algorithm   text not null,
    bits        integer not null,
    spki        blob not null,
    fingerprint text not null,
    models      text,
    created_at  text not null,
    created_by  text not null,
    updated_at  text not null,
    updated_by  text not null
);
