-- Whose numbers phones written without `+` are, when a request or an import names no country.
alter table tenants add column default_country text;
