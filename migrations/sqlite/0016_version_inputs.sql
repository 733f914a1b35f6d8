-- What a version was made from (see the Postgres migration of the same name).

create table version_inputs (
    version_id blob not null constraint version_inputs_version_fk references versions (id),
    position   integer not null,
    kind       text not null constraint version_inputs_kind check (kind in ('dataset', 'version', 'code')),
    name       text,
    digest     text,
    body       text not null,
    created_at text not null,
    constraint version_inputs_pkey primary key (version_id, position)
);

create index version_inputs_dataset_digest on version_inputs (digest, version_id) where kind = 'dataset';
create index version_inputs_dataset_name on version_inputs (name, version_id) where kind = 'dataset';
