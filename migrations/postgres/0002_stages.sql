-- Stages: a named pointer per model to at most one version, and the stack of assignments
-- that promote pushes onto and rollback pops from. The history is the events table
-- (stage.promoted / stage.rolled_back / stage.cleared), written in the same transaction.

create table stages (
    model_id   uuid not null constraint stages_model_fk references models (id),
    name       text collate "C" not null,
    -- The current version (the top of the stack); null when the stage is empty.
    version    bigint,
    -- Entries on the stack: positions 1..depth.
    depth      bigint not null default 0,
    -- The event that put the current version there, and when.
    event_id   bigint,
    since      timestamptz,
    updated_at timestamptz not null,
    constraint stages_pkey primary key (model_id, name),
    constraint stages_version_fk foreign key (model_id, version) references versions (model_id, version)
);
-- "Is this version on any stage?" when archiving.
create index stages_version_idx on stages (model_id, version) where version is not null;

create table stage_stack (
    model_id uuid not null,
    stage    text collate "C" not null,
    position bigint not null,
    version  bigint not null,
    constraint stage_stack_pkey primary key (model_id, stage, position),
    constraint stage_stack_stage_fk foreign key (model_id, stage) references stages (model_id, name),
    constraint stage_stack_version_fk foreign key (model_id, version) references versions (model_id, version)
);

-- History of one stage, newest first, and "what did it hold at T".
create index events_stage_idx on events (model_id, stage, id) where stage is not null;
