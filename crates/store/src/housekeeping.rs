//! Deleting what has expired, so auth tables stay small.

use chrono::{DateTime, Duration, Utc};

use crate::{Db, Result, on_db};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub otp_codes: u64,
}

impl Db {
    /// Removes ended sessions (after a week, for audit), expired refresh tokens and old codes.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Purged> {
        let week_ago = now - Duration::days(7);
        let refresh_tokens = on_db!(self, p => sqlx::query(
            "delete from refresh_tokens where expires_at < $1",
        )
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        let sessions = on_db!(self, p => sqlx::query(
            "delete from sessions where expires_at < $1 or revoked_at < $2",
        )
        .bind(now)
        .bind(week_ago)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        let otp_codes = on_db!(self, p => sqlx::query(
            "delete from otp_codes where expires_at < $1",
        )
        .bind(now - Duration::days(1))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(Purged {
            sessions,
            refresh_tokens,
            otp_codes,
        })
    }
}
