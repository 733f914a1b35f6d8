-- Stage guards: conditions on the live version's production metrics over a recent
-- wall-clock window; a background evaluator judges each guard every `period` and rolls the
-- stage back (or records) when one is breached.
--
-- Times the evaluator compares are microseconds since the epoch (`next_check_at`,
-- `tripped_at`), as metric point times are. A trip is remembered with the stage assignment
-- it judged (`judged_event_id`) and the rollback it made (`rollback_event_id`): the guard
-- holds while the stage is still at one of those, and judges again once the stage has
-- changed (a promote) or it is re-armed.

create table stage_guards (
    model_id          uuid not null constraint stage_guards_model_fk references models (id),
    stage             text not null,
    conditions        jsonb not null,
    min_points        bigint not null,
    grace             bigint not null,
    period            bigint not null,
    action            text not null,
    next_check_at     bigint not null,
    judged_event_id   bigint,
    rollback_event_id bigint,
    tripped_version   bigint,
    tripped_at        bigint,
    trip_reason       text,
    updated_at        timestamptz not null,
    updated_by        text not null,
    constraint stage_guards_pkey primary key (model_id, stage)
);

create index stage_guards_due on stage_guards (next_check_at);

-- The time span of each packed block, so that a guard's window reads the blocks it
-- overlaps and no others. Blocks packed before this migration have none (read always).
alter table metric_blocks add column first_at bigint;
alter table metric_blocks add column last_at bigint;
create index metric_blocks_last_at on metric_blocks (series_id, last_at);
