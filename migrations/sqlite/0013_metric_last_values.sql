-- Each series' last value and its model (see the Postgres migration of the same name).

alter table metric_series add column model_id blob;
alter table metric_series add column last_step integer;
alter table metric_series add column last_value real;

update metric_series set model_id = (select v.model_id from versions v where v.id = metric_series.version_id);

update metric_series set (last_step, last_value) = (
    select r.last_step, r.last from metric_rollups r
    where r.series_id = metric_series.id and r.level = 3
    order by r.block desc limit 1
);

create index metric_series_last_value on metric_series (model_id, key, last_value);
