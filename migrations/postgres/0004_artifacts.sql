-- Artifacts: a row exists only once its object is completely written and its checksum
-- verified. Each upload has its own object key, so racing uploads of one path never share
-- an object: the unique constraint picks the winner and the loser deletes its object.

create table artifacts (
    id           uuid primary key,
    version_id   uuid not null constraint artifacts_version_fk references versions (id),
    path         text collate "C" not null,
    object_key   text not null constraint artifacts_object_key_key unique,
    size         bigint not null,
    sha256       text not null,
    content_type text not null,
    created_at   timestamptz not null,
    created_by   text not null,
    constraint artifacts_version_path_key unique (version_id, path)
);
