//! Deleting what has expired, so auth tables stay small and raw webhook payloads (which hold
//! customers' numbers and texts) are not kept longer than their applied results need.

use chrono::{DateTime, Duration, Utc};

use crate::{Db, Result, on_db};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub otp_codes: u64,
    pub webhook_events: u64,
}

/// How long an applied (or given-up) webhook payload is kept, for tracing what Meta sent.
pub const WEBHOOK_RETENTION_DAYS: i64 = 7;

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
        // Event ids are UUIDv7, so "received before the cutoff" is a range of the primary key.
        let cutoff = v7_floor(now - Duration::days(WEBHOOK_RETENTION_DAYS));
        let webhook_events = on_db!(self, p => sqlx::query(
            "delete from webhook_events where id < $1 and status <> 'pending'",
        )
        .bind(cutoff)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(Purged {
            sessions,
            refresh_tokens,
            otp_codes,
            webhook_events,
        })
    }
}

/// The smallest UUIDv7 of millisecond `t`: every v7 id made at or after `t` sorts above it.
fn v7_floor(t: DateTime<Utc>) -> uuid::Uuid {
    let ms = t.timestamp_millis().max(0) as u64;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    uuid::Uuid::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_floor_sorts_between_earlier_and_later_ids() {
        let t = Utc::now();
        let floor = v7_floor(t);
        let ts = |t: DateTime<Utc>| {
            uuid::Timestamp::from_unix(
                uuid::NoContext,
                t.timestamp() as u64,
                t.timestamp_subsec_nanos(),
            )
        };
        let before = uuid::Uuid::new_v7(ts(t - Duration::milliseconds(1)));
        let at = uuid::Uuid::new_v7(ts(t));
        assert!(before < floor);
        assert!(floor <= at);
        assert_eq!(floor.get_version_num(), 7);
    }
}
