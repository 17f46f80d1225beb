-- PostgreSQL's migration 0010 adds triggers that tell other processes when a tenant's contacts
-- change. SQLite serves from one process, which announces its own changes: nothing to add.
select 1;
