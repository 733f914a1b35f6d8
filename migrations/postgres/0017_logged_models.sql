-- MLflow 3's logged models: a model's files and facts as a training run produced them, before
-- (and apart from) any registered version. Each belongs to the model its experiment stands
-- for, optionally names the run (version) that produced it, holds write-once files while
-- pending, and is registered by copying its files into a new version. Tags, params and
-- metrics are rows, so searches filter and order on them in SQL.

create table logged_models (
    id              uuid primary key,
    model_id        uuid not null constraint logged_models_model_fk references models (id),
    name            text not null,
    source_version  uuid constraint logged_models_source_fk references versions (id),
    status          text not null constraint logged_models_status check (status in ('pending', 'ready', 'failed')),
    status_message  text,
    model_type      text,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    created_by      text not null,
    deleted_at      timestamptz
);

create index logged_models_model on logged_models (model_id, created_at desc, id);
create index logged_models_source on logged_models (source_version) where source_version is not null;

create table logged_model_tags (
    logged_model_id uuid not null constraint logged_model_tags_fk references logged_models (id),
    key             text collate "C" not null,
    value           text not null,
    constraint logged_model_tags_pkey primary key (logged_model_id, key)
);

create table logged_model_params (
    logged_model_id uuid not null constraint logged_model_params_fk references logged_models (id),
    key             text collate "C" not null,
    value           text not null,
    constraint logged_model_params_pkey primary key (logged_model_id, key)
);

-- Every metric point logged against the model (MLflow keeps them all, each with the dataset it
-- was measured on); `position` orders them as logged.
create table logged_model_metrics (
    logged_model_id uuid not null constraint logged_model_metrics_fk references logged_models (id),
    position        bigint not null,
    key             text collate "C" not null,
    value           double precision not null,
    step            bigint not null,
    timestamp_ms    bigint not null,
    run_id          uuid,
    dataset_name    text,
    dataset_digest  text,
    constraint logged_model_metrics_pkey primary key (logged_model_id, position)
);

create index logged_model_metrics_key on logged_model_metrics (logged_model_id, key, step);

create table logged_model_files (
    logged_model_id uuid not null constraint logged_model_files_fk references logged_models (id),
    path            text collate "C" not null,
    object_key      text not null constraint logged_model_files_object_key_key unique,
    size            bigint not null,
    sha256          text not null,
    content_type    text not null,
    created_at      timestamptz not null,
    created_by      text not null,
    constraint logged_model_files_pkey primary key (logged_model_id, path)
);

-- A run's logged models: those it produced (`output`, at a step) and those it used (`input`).
create table run_models (
    version_id      uuid not null constraint run_models_version_fk references versions (id),
    logged_model_id uuid not null constraint run_models_logged_model_fk references logged_models (id),
    direction       text not null constraint run_models_direction check (direction in ('input', 'output')),
    step            bigint not null,
    constraint run_models_pkey primary key (version_id, direction, logged_model_id)
);
