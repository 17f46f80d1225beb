//! API keys for server-to-server use. Only a SHA-256 of the key is kept.

use chrono::{DateTime, Utc};
use pinglayer_domain::{ApiKeyId, PageRequest, Role, TenantId, UserId};

use crate::{Db, Result, StoreError, on_db, tenants::Tenant};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKey {
    pub tenant_id: TenantId,
    pub id: ApiKeyId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The first characters of the key, shown so people can tell keys apart.
    pub prefix: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewApiKey<'a> {
    pub tenant_id: TenantId,
    pub name: &'a str,
    pub role: Role,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub created_by: Option<UserId>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key found by its hash, with its tenant.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key: ApiKey,
    pub tenant: Tenant,
}

#[derive(sqlx::FromRow)]
struct KeyAuthRow {
    #[sqlx(flatten)]
    key: ApiKey,
    t_slug: String,
    t_name: String,
    t_status: String,
    t_is_platform: bool,
    t_default_country: Option<String>,
    t_created_at: DateTime<Utc>,
    t_updated_at: DateTime<Utc>,
}

impl Db {
    pub async fn create_api_key(&self, k: NewApiKey<'_>, now: DateTime<Utc>) -> Result<ApiKey> {
        on_db!(self, p => sqlx::query_as(
            "insert into api_keys (tenant_id, id, name, role, prefix, key_hash, created_by, created_at, expires_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             returning tenant_id, id, name, role, prefix, created_by, created_at, expires_at, last_used_at, revoked_at",
        )
        .bind(k.tenant_id)
        .bind(ApiKeyId::new())
        .bind(k.name)
        .bind(k.role.as_str())
        .bind(k.prefix)
        .bind(k.key_hash)
        .bind(k.created_by)
        .bind(now)
        .bind(k.expires_at)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Live (not revoked) keys, oldest first.
    pub async fn list_api_keys(&self, tenant: TenantId, page: &PageRequest) -> Result<Vec<ApiKey>> {
        on_db!(self, p => sqlx::query_as(
            "select tenant_id, id, name, role, prefix, created_by, created_at, expires_at, last_used_at, revoked_at
             from api_keys where tenant_id = $1 and revoked_at is null and ($2 is null or id > $2)
             order by id limit $3",
        )
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Revokes a key of this tenant; `NotFound` for unknown, foreign or already revoked ids.
    pub async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let res = on_db!(self, p => sqlx::query(
            "update api_keys set revoked_at = $3 where tenant_id = $1 and id = $2 and revoked_at is null",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if res == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<KeyAuth>> {
        let row: Option<KeyAuthRow> = on_db!(self, p => sqlx::query_as(
            "select k.tenant_id, k.id, k.name, k.role, k.prefix, k.created_by, k.created_at,
                    k.expires_at, k.last_used_at, k.revoked_at,
                    t.slug as t_slug, t.name as t_name, t.status as t_status,
                    t.is_platform as t_is_platform, t.default_country as t_default_country, t.created_at as t_created_at, t.updated_at as t_updated_at
             from api_keys k join tenants t on t.id = k.tenant_id
             where k.key_hash = $1",
        )
        .bind(hash)
        .fetch_optional(p)
        .await)?;
        row.map(|r| {
            let status = r
                .t_status
                .parse()
                .map_err(|e: String| StoreError::Other(sqlx::Error::Decode(e.into())))?;
            Ok(KeyAuth {
                tenant: Tenant {
                    id: r.key.tenant_id,
                    slug: r.t_slug,
                    name: r.t_name,
                    status,
                    is_platform: r.t_is_platform,
                    default_country: r.t_default_country,
                    created_at: r.t_created_at,
                    updated_at: r.t_updated_at,
                },
                key: r.key,
            })
        })
        .transpose()
    }

    /// Writes `last_used_at` for many keys at once. The API batches these in memory: writing on
    /// every request would turn each authenticated read into a write.
    pub async fn touch_api_keys(&self, used: &[(TenantId, ApiKeyId, DateTime<Utc>)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (tenant, id, at) in used {
            crate::on_tx!(&mut tx, c => sqlx::query(
                "update api_keys set last_used_at = $3
                 where tenant_id = $1 and id = $2 and (last_used_at is null or last_used_at < $3)",
            )
            .bind(tenant)
            .bind(id)
            .bind(at)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await
    }
}
