-- The trusted key of a version's first verified signature (see the Postgres migration of the
-- same name).
alter table versions add column signed_by text;
update versions set signed_by = (
    select s.key_name from version_signatures s
     where s.version_id = versions.id and s.verified and s.key_name is not null
     order by s.created_at, s.id limit 1);
