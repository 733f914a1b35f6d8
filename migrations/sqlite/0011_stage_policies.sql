-- Stage policies (see the Postgres migration of the same name).

create table stage_policies (
    model_id      blob not null constraint stage_policies_model_fk references models (id),
    stage         text not null,
    require       text,
    no_regression text not null,
    after_stage   text,
    min_soak      integer,
    approvals     integer not null,
    updated_at    text not null,
    updated_by    text not null,
    constraint stage_policies_pkey primary key (model_id, stage)
);
