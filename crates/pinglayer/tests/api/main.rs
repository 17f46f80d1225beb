//! Integration tests over real HTTP, each against SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL. One test binary, one module per area.

mod helpers;

mod admin;
mod analytics;
mod api_keys;
mod auth;
mod billing;
mod campaigns;
mod contacts;
mod conventions;
mod imports;
mod links;
mod segments;
mod users;
mod whatsapp;
