-- Retention policies (see the Postgres migration of the same name).

create table retention_policies (
    model_id    blob primary key constraint retention_policies_model_fk references models (id),
    policy      text not null,
    next_run_at integer not null,
    last_run_at integer,
    last_error  text,
    updated_at  text not null,
    updated_by  text not null
);

create index retention_policies_due on retention_policies (next_run_at);
