-- The trusted key of a version's first verified signature, for lists and pages that show a
-- signed badge without reading the signatures (kept with them; cleared when erased).
alter table versions add column signed_by text;
update versions v set signed_by = (
    select s.key_name from version_signatures s
     where s.version_id = v.id and s.verified and s.key_name is not null
     order by s.created_at, s.id limit 1);
