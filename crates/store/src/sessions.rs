//! Sign-in sessions and their rotating refresh tokens.
//!
//! A session is a refresh-token family. Each refresh swaps the presented token for a new one;
//! presenting an already swapped token means it was copied, so the whole session is revoked.
//! Access tokens name their session, so revoking it stops them at once too.

use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::{RefreshTokenId, SessionId, TenantId, UserId};

use crate::{Db, Result, Tx, member_cols, on_db, on_tx, users::Member, users::MemberRow};

#[derive(Debug, Clone)]
pub struct NewSession {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub session_id: SessionId,
    /// SHA-256 of the refresh token handed to the client.
    pub refresh_hash: String,
    pub refresh_ttl: Duration,
    pub session_ttl: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated {
        tenant_id: TenantId,
        user_id: UserId,
        session_id: SessionId,
    },
    /// Unknown token, or its session was ended.
    Invalid,
    Expired,
    /// The token had already been rotated: its session is now revoked.
    Reused {
        tenant_id: TenantId,
    },
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    tenant_id: TenantId,
    id: RefreshTokenId,
    session_id: SessionId,
    user_id: UserId,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    session_expires_at: DateTime<Utc>,
}

async fn insert_refresh(
    tx: &mut Tx,
    tenant: TenantId,
    session: SessionId,
    hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "insert into refresh_tokens (tenant_id, id, session_id, token_hash, created_at, expires_at)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant)
    .bind(RefreshTokenId::new())
    .bind(session)
    .bind(hash)
    .bind(now)
    .bind(expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

async fn revoke_in(
    tx: &mut Tx,
    tenant: TenantId,
    session: SessionId,
    why: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "update sessions set revoked_at = $3, revoked_why = $4
         where tenant_id = $1 and id = $2 and revoked_at is null",
    )
    .bind(tenant)
    .bind(session)
    .bind(now)
    .bind(why)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

impl Db {
    pub async fn start_session(&self, s: &NewSession, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "insert into sessions (tenant_id, id, user_id, created_at, expires_at) values ($1, $2, $3, $4, $5)",
        )
        .bind(s.tenant_id)
        .bind(s.session_id)
        .bind(s.user_id)
        .bind(now)
        .bind(now + s.session_ttl)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        insert_refresh(
            &mut tx,
            s.tenant_id,
            s.session_id,
            &s.refresh_hash,
            now + s.refresh_ttl,
            now,
        )
        .await?;
        tx.commit().await
    }

    /// Swaps the refresh token with hash `old` for `new`, in one transaction.
    pub async fn rotate_refresh(
        &self,
        old: &str,
        new: &str,
        refresh_ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome> {
        let mut tx = self.begin().await?;
        let row: Option<TokenRow> = on_tx!(&mut tx, c => sqlx::query_as(
            "select r.tenant_id, r.id, r.session_id, s.user_id, r.expires_at, r.rotated_at,
                    s.revoked_at, s.expires_at as session_expires_at
             from refresh_tokens r
             join sessions s on s.tenant_id = r.tenant_id and s.id = r.session_id
             where r.token_hash = $1",
        )
        .bind(old)
        .fetch_optional(c)
        .await)?;
        let Some(row) = row else {
            return Ok(RotateOutcome::Invalid);
        };
        if row.revoked_at.is_some() {
            return Ok(RotateOutcome::Invalid);
        }
        if row.rotated_at.is_some() {
            revoke_in(
                &mut tx,
                row.tenant_id,
                row.session_id,
                "refresh_token_reused",
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(RotateOutcome::Reused {
                tenant_id: row.tenant_id,
            });
        }
        if row.expires_at <= now || row.session_expires_at <= now {
            return Ok(RotateOutcome::Expired);
        }
        // Conditional on `rotated_at is null`: of two concurrent refreshes with one token, one
        // wins and the other is treated as reuse.
        let done = on_tx!(&mut tx, c => sqlx::query(
            "update refresh_tokens set rotated_at = $3 where tenant_id = $1 and id = $2 and rotated_at is null",
        )
        .bind(row.tenant_id)
        .bind(row.id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            revoke_in(
                &mut tx,
                row.tenant_id,
                row.session_id,
                "refresh_token_reused",
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(RotateOutcome::Reused {
                tenant_id: row.tenant_id,
            });
        }
        insert_refresh(
            &mut tx,
            row.tenant_id,
            row.session_id,
            new,
            now + refresh_ttl,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated {
            tenant_id: row.tenant_id,
            user_id: row.user_id,
            session_id: row.session_id,
        })
    }

    /// Ends the session a refresh token belongs to; returns its tenant, or `None` for unknown
    /// tokens (which are ignored).
    pub async fn revoke_session_by_refresh(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantId>> {
        let tenant: Option<TenantId> = on_db!(self, p => sqlx::query_scalar(
            "update sessions set revoked_at = $2, revoked_why = 'logout'
             where revoked_at is null and exists (
                 select 1 from refresh_tokens r
                 where r.token_hash = $1 and r.tenant_id = sessions.tenant_id and r.session_id = sessions.id)
             returning tenant_id",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(p)
        .await)?;
        Ok(tenant)
    }

    pub async fn revoke_session(
        &self,
        tenant: TenantId,
        session: SessionId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        revoke_in(&mut tx, tenant, session, "logout", now).await?;
        tx.commit().await
    }

    /// The member behind an access token, if its session is still live.
    pub async fn member_by_session(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Member>> {
        let row: Option<MemberRow> = on_db!(self, p => sqlx::query_as(concat!(
            "select ", member_cols!(),
            " from sessions s
              join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
              join tenants t on t.id = s.tenant_id
              where s.tenant_id = $1 and s.id = $2 and s.user_id = $3
                and s.revoked_at is null and s.expires_at > $4"
        ))
        .bind(tenant)
        .bind(session)
        .bind(user)
        .bind(now)
        .fetch_optional(p)
        .await)?;
        row.map(Member::try_from).transpose()
    }
}
