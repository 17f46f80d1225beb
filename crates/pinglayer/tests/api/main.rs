//! Integration tests over real HTTP, each against SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL. One test binary, one module per area.

mod helpers;

mod admin;
mod api_keys;
mod auth;
mod campaigns;
mod contacts;
mod conventions;
mod imports;
mod segments;
mod users;
mod whatsapp;
