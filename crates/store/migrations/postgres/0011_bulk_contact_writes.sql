-- A foreign key costs a query per inserted row (PostgreSQL checks each one on its own, with a
-- row lock): for contacts and their tags, the two checks were 37% of the database's time in a
-- million-row import. Neither protects anything the code does not already guarantee:
-- tenants are never deleted, and contacts are never deleted either (erasure anonymises the
-- row in place and removes its tags itself); a tag is only written for a contact the same
-- statement or transaction has just found or created. Every read of tags joins contacts.
-- The tables that hang off contacts (messages, conversations, consent events) keep theirs:
-- they are written a row at a time, where the check costs little.
alter table contacts drop constraint if exists contacts_tenant_id_fkey;
alter table contact_tags drop constraint if exists contact_tags_tenant_id_contact_id_fkey;
