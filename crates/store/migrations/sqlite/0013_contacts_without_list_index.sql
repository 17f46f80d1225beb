-- PostgreSQL dropped `contacts_list` here. SQLite keeps it: without it, a tenant's count of its
-- contacts reads every row of the table. (Kept so both backends number their migrations alike.)
select 1;
