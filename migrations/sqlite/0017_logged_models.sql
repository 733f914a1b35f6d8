-- MLflow 3's logged models (see the Postgres migration of the same name).

create table logged_models (
    id              blob primary key,
    model_id        blob not null constraint logged_models_model_fk references models (id),
    name            text not null,
    source_version  blob constraint logged_models_source_fk references versions (id),
    status          text not null constraint logged_models_status check (status in ('pending', 'ready', 'failed')),
    status_message  text,
    model_type      text,
    created_at      text not null,
    updated_at      text not null,
    created_by      text not null,
    deleted_at      text
);

create index logged_models_model on logged_models (model_id, created_at desc, id);
create index logged_models_source on logged_models (source_version) where source_version is not null;

create table logged_model_tags (
    logged_model_id blob not null constraint logged_model_tags_fk references logged_models (id),
    key             text not null,
    value           text not null,
    constraint logged_model_tags_pkey primary key (logged_model_id, key)
);

create table logged_model_params (
    logged_model_id blob not null constraint logged_model_params_fk references logged_models (id),
    key             text not null,
    value           text not null,
    constraint logged_model_params_pkey primary key (logged_model_id, key)
);

create table logged_model_metrics (
    logged_model_id blob not null constraint logged_model_metrics_fk references logged_models (id),
    position        integer not null,
    key             text not null,
    value           real not null,
    step            integer not null,
    timestamp_ms    integer not null,
    run_id          blob,
    dataset_name    text,
    dataset_digest  text,
    constraint logged_model_metrics_pkey primary key (logged_model_id, position)
);

create index logged_model_metrics_key on logged_model_metrics (logged_model_id, key, step);

create table logged_model_files (
    logged_model_id blob not null constraint logged_model_files_fk references logged_models (id),
    path            text not null,
    object_key      text not null constraint logged_model_files_object_key_key unique,
    size            integer not null,
    sha256          text not null,
    content_type    text not null,
    created_at      text not null,
    created_by      text not null,
    constraint logged_model_files_pkey primary key (logged_model_id, path)
);

create table run_models (
    version_id      blob not null constraint run_models_version_fk references versions (id),
    logged_model_id blob not null constraint run_models_logged_model_fk references logged_models (id),
    direction       text not null constraint run_models_direction check (direction in ('input', 'output')),
    step            integer not null,
    constraint run_models_pkey primary key (version_id, direction, logged_model_id)
);
