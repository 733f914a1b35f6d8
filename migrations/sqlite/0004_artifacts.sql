-- Artifacts: a row exists only once its object is completely written and its checksum
-- verified. Each upload has its own object key (see the Postgres migration).

create table artifacts (
    id           blob primary key,
    version_id   blob not null constraint artifacts_version_fk references versions (id),
    path         text not null,
    object_key   text not null constraint artifacts_object_key_key unique,
    size         integer not null,
    sha256       text not null,
    content_type text not null,
    created_at   text not null,
    created_by   text not null,
    constraint artifacts_version_path_key unique (version_id, path)
);
