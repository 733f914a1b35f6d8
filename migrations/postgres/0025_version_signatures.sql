-- Signatures over a version's files: OpenSSF model-signing bundles as posted, with the
-- trusted key that verified each (none: a keyless bundle, kept but not verified) and the
-- artifact path they cover. The same bundle posted twice for one path is kept once.

create table version_signatures (
    id              uuid primary key,
    version_id      uuid not null constraint version_signatures_version_fk references versions (id),
    bundle_sha256   text not null,
    bundle          jsonb not null,
    path            text not null,
    files           bigint not null,
    verified        boolean not null,
    key_name        text,
    key_fingerprint text,
    created_at      timestamptz not null,
    created_by      text not null,
    constraint version_signatures_bundle unique (version_id, bundle_sha256, path)
);
