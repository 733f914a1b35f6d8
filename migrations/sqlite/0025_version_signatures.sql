-- Signatures over a version's files (see the Postgres migration of the same name).

create table version_signatures (
    id              blob primary key,
    version_id      blob not null constraint version_signatures_version_fk references versions (id),
    bundle_sha256   text not null,
    bundle          text not null,
    path            text not null,
    files           integer not null,
    verified        boolean not null,
    key_name        text,
    key_fingerprint text,
    created_at      text not null,
    created_by      text not null,
    constraint version_signatures_bundle unique (version_id, bundle_sha256, path)
);
