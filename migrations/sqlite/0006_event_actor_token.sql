-- The token that made a change, beside its name: token names are not unique, ids are.
-- Null for changes made without a token (authentication off, the command line).
alter table events add column actor_token_id blob;
