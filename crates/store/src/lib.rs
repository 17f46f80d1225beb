//! Storage for PingLayer, on SQLite or PostgreSQL.
//!
//! The design: one [`Db`] enum over a native pool per backend, and queries written **once** with
//! `$N` placeholders (which both drivers accept). The [`on_db!`]/[`on_tx!`] macros compile the
//! same query code for each backend's native driver, so row types, binds and business rules
//! exist once. Where the SQL itself must differ (locking, bulk paths), a method picks it
//! explicitly with [`Db::backend`]; those places are rare and commented.
//!
//! Every method on tenant-owned data takes a `TenantId` and puts it in the `WHERE` clause: there
//! is no unscoped query for tenant data.

pub mod analytics;
pub mod api_keys;
pub mod billing;
pub mod campaigns;
pub mod changes;
pub mod contacts;
mod db;
pub mod housekeeping;
pub mod imports;
pub mod inbox;
pub mod links;
pub mod messages;
pub mod numbers;
pub mod otp;
pub mod segments;
pub mod sessions;
pub mod templates;
pub mod tenants;
pub mod users;
pub mod webhook_events;

pub use db::{Backend, ChangeListener, Db, Tx};

/// What callers need to tell apart; everything else is `Other` and becomes a logged 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write (duplicate email, phone, …).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Other(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            e => StoreError::Other(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique violation (same `kind()` on both backends; SQLite names no constraint) to
/// `Conflict(what)`, and any other error through `From`.
pub(crate) fn conflict_on_unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(what)
        }
        _ => e.into(),
    }
}
