-- Contacts in full: profile fields, free-form attributes, marketing consent with its history,
-- tags, and soft deletion.

alter table contacts add column email text;
alter table contacts add column language text;
-- ISO 8601: 'YYYY-MM-DD', or '--MM-DD' when the year is unknown.
alter table contacts add column birthday text;
alter table contacts add column attributes jsonb not null default '{}';
alter table contacts add column consent text check (consent in ('opted_in', 'opted_out'));
alter table contacts add column consent_at timestamptz;
alter table contacts add column consent_source text;
alter table contacts add column deleted_at timestamptz;
create index contacts_list on contacts (tenant_id, id) where deleted_at is null;

create table contact_tags (
    tenant_id  uuid not null,
    contact_id uuid not null,
    tag        text not null,
    created_at timestamptz not null,
    primary key (tenant_id, contact_id, tag),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id) on delete cascade
);
create index contact_tags_by_tag on contact_tags (tenant_id, tag, contact_id);

-- Every change of consent, with how it happened (api, inbound keyword, import…).
create table consent_events (
    tenant_id  uuid not null,
    id         uuid not null,
    contact_id uuid not null,
    consent    text not null,
    source     text not null,
    note       text,
    at         timestamptz not null,
    primary key (tenant_id, id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id) on delete cascade
);
create index consent_events_contact on consent_events (tenant_id, contact_id, id);
