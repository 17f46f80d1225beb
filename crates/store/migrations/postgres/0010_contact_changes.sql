-- Every process caching something derived from a tenant's contacts (the API's contact-list
-- pages) hears of changes made by other processes: each statement that writes contacts or
-- their tags sends the tenant's id on channel `pinglayer_contacts`, delivered at commit
-- (PostgreSQL folds identical notices of one transaction into one). Statement-level, so a
-- batch of 5,000 imported rows costs one notice, not 5,000.
create function pinglayer_contacts_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('pinglayer_contacts', t::text)
    from (select distinct tenant_id as t from changed) as tenants;
    return null;
end
$$;

create trigger contacts_inserted after insert on contacts
    referencing new table as changed for each statement execute function pinglayer_contacts_changed();
create trigger contacts_updated after update on contacts
    referencing new table as changed for each statement execute function pinglayer_contacts_changed();
create trigger contacts_deleted after delete on contacts
    referencing old table as changed for each statement execute function pinglayer_contacts_changed();
create trigger contact_tags_inserted after insert on contact_tags
    referencing new table as changed for each statement execute function pinglayer_contacts_changed();
create trigger contact_tags_deleted after delete on contact_tags
    referencing old table as changed for each statement execute function pinglayer_contacts_changed();
