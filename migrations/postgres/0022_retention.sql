-- Retention policies: one per model, applied by a background job (on whichever replica
-- takes the row first: `for update skip locked`). `next_run_at` is microseconds since the
-- epoch, as the app's clock reads it; a pass that leaves work undone makes it due again at
-- once.

create table retention_policies (
    model_id    uuid primary key constraint retention_policies_model_fk references models (id),
    policy      jsonb not null,
    next_run_at bigint not null,
    last_run_at bigint,
    last_error  text,
    updated_at  timestamptz not null,
    updated_by  text not null
);

create index retention_policies_due on retention_policies (next_run_at);
