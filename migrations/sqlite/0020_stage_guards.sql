-- Stage guards (see the Postgres migration of the same name).

create table stage_guards (
    model_id          blob not null constraint stage_guards_model_fk references models (id),
    stage             text not null,
    conditions        text not null,
    min_points        integer not null,
    grace             integer not null,
    period            integer not null,
    action            text not null,
    next_check_at     integer not null,
    judged_event_id   integer,
    rollback_event_id integer,
    tripped_version   integer,
    tripped_at        integer,
    trip_reason       text,
    updated_at        text not null,
    updated_by        text not null,
    constraint stage_guards_pkey primary key (model_id, stage)
);

create index stage_guards_due on stage_guards (next_check_at);

-- The time span of each packed block, so that a guard's window reads the blocks it
-- overlaps and no others. Blocks packed before this migration have none (read always).
alter table metric_blocks add column first_at integer;
alter table metric_blocks add column last_at integer;
create index metric_blocks_last_at on metric_blocks (series_id, last_at);
