-- Consent keywords may name their language, and a tenant may write its own confirmation of a
-- consent change per language. A confirmation goes out in the contact's language, else the
-- keyword's, else English; the tenant's text wins over the built-in one.
alter table consent_keywords add column language text;

create table consent_replies (
    tenant_id  blob not null references tenants (id) on delete cascade,
    language   text not null,
    consent    text not null check (consent in ('opted_in', 'opted_out')),
    body       text not null,
    created_at text not null,
    primary key (tenant_id, language, consent)
);
