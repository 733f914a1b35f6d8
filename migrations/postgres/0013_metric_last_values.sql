-- Each series' last value, kept by the ingestion transaction that writes its points, beside
-- the series' model: the version list's `order_by=metric.<key>` with a limit walks the index
-- (model_id, key, last_value) instead of reading every version's rollups, and
-- `filter=metric.<key> …` reads one row per candidate (or the index range).

alter table metric_series
    add column model_id   uuid,
    add column last_step  bigint,
    add column last_value double precision;

update metric_series s set model_id = v.model_id from versions v where v.id = s.version_id;

update metric_series s set (last_step, last_value) = (
    select r.last_step, r.last from metric_rollups r
    where r.series_id = s.id and r.level = 3
    order by r.block desc limit 1
);

alter table metric_series alter column model_id set not null;

create index metric_series_last_value on metric_series (model_id, key, last_value);
