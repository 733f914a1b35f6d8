-- Stage policies: what every promote onto a stage must pass, checked inside the promote's
-- transaction under the stage's lock. `require` is a version-list filter expression as
-- written; `no_regression` a JSON array of {metric, higher_is_better, tolerance};
-- `min_soak` seconds on `after_stage`.

create table stage_policies (
    model_id      uuid not null constraint stage_policies_model_fk references models (id),
    stage         text not null,
    require       text,
    no_regression jsonb not null,
    after_stage   text,
    min_soak      bigint,
    approvals     bigint not null,
    updated_at    timestamptz not null,
    updated_by    text not null,
    constraint stage_policies_pkey primary key (model_id, stage)
);
