-- A tenant's own consent keywords (in any language), on top of the built-in STOP/START lists.
create table consent_keywords (
    tenant_id  blob not null references tenants (id) on delete cascade,
    -- Normalised: trimmed, lower-case, without trailing punctuation.
    keyword    text not null,
    consent    text not null check (consent in ('opted_in', 'opted_out')),
    created_at text not null,
    primary key (tenant_id, keyword)
);
