-- Compressed point blocks (see the Postgres migration of the same name).

create table metric_blocks (
    series_id integer not null,
    block     integer not null,
    count     integer not null,
    data      blob not null,
    constraint metric_blocks_pkey primary key (series_id, block)
) without rowid;

alter table metric_series add column compact_pending integer not null default 0;

update metric_series set compact_pending = 1 where last_step is not null;

create index metric_series_compact_pending on metric_series (id) where compact_pending;
