-- Rows that repeated a phone already seen earlier in the same file, merged into its contact
-- (the later row's fields win): total = created + updated + skipped + failed + merged.
alter table imports add column merged bigint not null default 0;
