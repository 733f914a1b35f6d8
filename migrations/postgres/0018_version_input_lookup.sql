-- Lineage read downwards: the versions that list a given version as an input (a `version`
-- input keeps its model in `name` and its number in `digest`).
create index version_inputs_version on version_inputs (name, digest, version_id) where kind = 'version';
