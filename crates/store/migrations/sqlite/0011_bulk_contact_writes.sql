-- PostgreSQL's migration 0011 drops the foreign keys of contacts and contact tags, whose
-- per-row checks dominated its bulk imports. SQLite checks them cheaply within its own
-- process (and would have to rebuild both tables to drop them): nothing to change.
select 1;
