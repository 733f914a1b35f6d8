-- What a version was made from: an ordered list of inputs, each kept whole as the client gave
-- it (`body`), with the fields lineage reads looked up by (a dataset's name and digest) beside
-- it. Added while the version is pending, immutable once it is ready, as its config is.

create table version_inputs (
    version_id uuid not null constraint version_inputs_version_fk references versions (id),
    position   bigint not null,
    kind       text not null constraint version_inputs_kind check (kind in ('dataset', 'version', 'code')),
    name       text,
    digest     text,
    body       jsonb not null,
    created_at timestamptz not null,
    constraint version_inputs_pkey primary key (version_id, position)
);

-- "Which versions used this dataset": by digest or by name.
create index version_inputs_dataset_digest on version_inputs (digest, version_id) where kind = 'dataset';
create index version_inputs_dataset_name on version_inputs (name, version_id) where kind = 'dataset';
