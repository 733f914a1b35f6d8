-- Metric time series. See the Postgres migration of the same name for the design: keys stored
-- once per series, points keyed by (series_id, step), rollups per block of steps at three
-- levels (64, 1,024, 16,384 steps) maintained in the same transaction as the points.

create table metric_series (
    id         integer primary key,
    version_id blob not null constraint metric_series_version_fk references versions (id),
    key        text not null,
    created_at text not null,
    constraint metric_series_key unique (version_id, key)
);

create table metric_points (
    series_id integer not null,
    step      integer not null,
    value     real not null,
    at        integer not null,
    constraint metric_points_pkey primary key (series_id, step)
) without rowid;

create table metric_rollups (
    series_id  integer not null,
    level      integer not null,
    block      integer not null,
    count      integer not null,
    min        real not null,
    max        real not null,
    sum        real not null,
    first_step integer not null,
    last_step  integer not null,
    last       real not null,
    constraint metric_rollups_pkey primary key (series_id, level, block)
) without rowid;
