-- Metric time series.
--
-- The key text is stored once per (version, key) in metric_series; each point refers to its
-- series by a bigint, so a point row is four fixed-width columns (series, step, value, time)
-- and the primary key (series_id, step) is both the upsert target (a point is keyed by
-- version, key and step: writing it again replaces it) and the index of every range read.
-- Keyed by series first, the table can be hash-partitioned or distributed by series_id.
--
-- metric_rollups keeps min/max/sum/count/first/last per block of steps at three levels
-- (1: 64 steps, 2: 1,024, 3: 16,384), written in the same transaction as the points they
-- summarise. A bucketed chart read groups at most a few thousand rollup rows instead of the
-- raw series, and the level-3 rows give each series' summary.

create table metric_series (
    id         bigint generated always as identity primary key,
    version_id uuid not null constraint metric_series_version_fk references versions (id),
    key        text collate "C" not null,
    created_at timestamptz not null,
    constraint metric_series_key unique (version_id, key)
);

create table metric_points (
    series_id bigint not null,
    step      bigint not null,
    value     double precision not null,
    -- Microseconds since the Unix epoch (the point's own timestamp).
    at        bigint not null,
    constraint metric_points_pkey primary key (series_id, step)
);

create table metric_rollups (
    series_id  bigint not null,
    level      smallint not null,
    block      bigint not null,
    count      bigint not null,
    min        double precision not null,
    max        double precision not null,
    sum        double precision not null,
    first_step bigint not null,
    last_step  bigint not null,
    -- The value at last_step.
    last       double precision not null,
    constraint metric_rollups_pkey primary key (series_id, level, block)
);
