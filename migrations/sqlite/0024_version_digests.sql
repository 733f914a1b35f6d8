-- Version digests (see the Postgres migration of the same name).

alter table versions add column digest text;
