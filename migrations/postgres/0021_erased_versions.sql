-- Erased versions: a tombstone keeps the number (numbers stay gapless and are never reused),
-- who erased it, when and why; everything else of the version is deleted. Objects of erased
-- artifacts wait in object_deletions until the store has deleted them (retried in the
-- background while the store is unreachable); no artifact row points at them any more.

alter table versions drop constraint versions_status_check;
alter table versions add constraint versions_status_check
    check (status in ('pending', 'ready', 'failed', 'archived', 'erased'));
alter table versions add column erased_at timestamptz;
alter table versions add column erased_by text;

create table object_deletions (
    object_key text primary key,
    queued_at  timestamptz not null
);
