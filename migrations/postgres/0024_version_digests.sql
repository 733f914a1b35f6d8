-- A ready version's digest: sha256 of its manifest (model, number, config digest and every
-- artifact's path, sha256 and size, in canonical JSON), fixed when it becomes ready. Versions
-- made ready before this migration get theirs when the server starts.

alter table versions add column digest text;
