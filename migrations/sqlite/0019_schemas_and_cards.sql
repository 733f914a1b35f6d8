-- A version's interface schema (MLflow's signature model), its card and its model's card
-- (what it is for, where it fails), and a stage policy's schema_compatible check.
alter table versions add column interface_schema text;
alter table versions add column card text;
alter table models add column card text;
alter table stage_policies add column schema_compatible text;
