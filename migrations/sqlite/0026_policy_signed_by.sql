-- A stage policy's signed_by check (see the Postgres migration of the same name).
alter table stage_policies add column signed_by text;
