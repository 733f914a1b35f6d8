-- A stage policy's signed_by check: the trusted keys (and the signed directory) a version's
-- signature must come from before it may be promoted onto the stage.
alter table stage_policies add column signed_by jsonb;
