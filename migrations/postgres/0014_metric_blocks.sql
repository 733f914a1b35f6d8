-- Compressed point blocks. The points of a completed block of 1,024 steps (step / 1024, the
-- level-2 rollup block) are kept as one row: their steps, values and timestamps encoded as
-- `domain::point_block` describes (after Gorilla: delta-of-delta steps and times, XOR-encoded
-- values), about 8 bytes a point instead of a 92-byte row and index entry. A series' open
-- tail stays in metric_points until its block completes; a block is held in one form only,
-- never split between the two tables.
--
-- Existing points are converted after this migration, by the server, one transaction per
-- series: compact_pending marks the series that still hold points of completed blocks (or,
-- once their version is no longer pending, a tail) in metric_points.

create table metric_blocks (
    series_id bigint not null,
    block     bigint not null,
    -- Points in the block, for statistics and checks (the data holds them).
    count     bigint not null,
    data      bytea not null,
    constraint metric_blocks_pkey primary key (series_id, block)
);

alter table metric_series add column compact_pending boolean not null default false;

update metric_series set compact_pending = true where last_step is not null;

create index metric_series_compact_pending on metric_series (id) where compact_pending;
