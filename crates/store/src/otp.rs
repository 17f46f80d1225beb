//! One-time sign-in codes: one live code per member, stored as a keyed hash.

use chrono::{DateTime, Utc};
use pinglayer_domain::{TenantId, UserId};

use crate::{Db, Result, on_db, on_tx};

#[derive(Debug, PartialEq, Eq)]
pub enum OtpOutcome {
    Accepted,
    Wrong,
    /// Too many wrong tries on this code: even the right one is refused now.
    Locked,
    /// No live code: never requested, expired or already used.
    Missing,
}

impl Db {
    /// Stores a new code for the member, replacing any earlier one (and its failed tries).
    pub async fn put_otp(
        &self,
        tenant: TenantId,
        user: UserId,
        code_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query(
            "insert into otp_codes (tenant_id, user_id, code_hash, created_at, expires_at, attempts)
             values ($1, $2, $3, $4, $5, 0)
             on conflict (tenant_id, user_id) do update
             set code_hash = excluded.code_hash, created_at = excluded.created_at,
                 expires_at = excluded.expires_at, attempts = 0, consumed_at = null",
        )
        .bind(tenant)
        .bind(user)
        .bind(code_hash)
        .bind(now)
        .bind(expires_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Counts a try and, when the hash matches and tries remain, uses the code up. Every try
    /// counts, so the `max_attempts`+1-th is refused even when right.
    pub async fn try_otp(
        &self,
        tenant: TenantId,
        user: UserId,
        code_hash: &str,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<OtpOutcome> {
        let mut tx = self.begin().await?;
        let row: Option<(i32, String)> = on_tx!(&mut tx, c => sqlx::query_as(
            "update otp_codes set attempts = attempts + 1
             where tenant_id = $1 and user_id = $2 and consumed_at is null and expires_at > $3
             returning attempts, code_hash",
        )
        .bind(tenant)
        .bind(user)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        let outcome = match row {
            None => OtpOutcome::Missing,
            Some((attempts, _)) if attempts > max_attempts => OtpOutcome::Locked,
            Some((_, stored)) if stored != code_hash => OtpOutcome::Wrong,
            Some(_) => {
                on_tx!(&mut tx, c => sqlx::query(
                    "update otp_codes set consumed_at = $3 where tenant_id = $1 and user_id = $2",
                )
                .bind(tenant)
                .bind(user)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                OtpOutcome::Accepted
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}
