-- Saved segments: named filters over contacts, evaluated when used.
create table segments (
    tenant_id  uuid not null references tenants (id) on delete cascade,
    id         uuid not null,
    name       text not null,
    filter     text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    primary key (tenant_id, id)
);
create unique index segments_name_key on segments (tenant_id, name);
