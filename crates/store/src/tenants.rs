//! Tenants: creation with a unique slug, the platform's own tenant, and status moves.

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    PageRequest, TenantId, TenantStatus,
    slug::{candidate, slugify},
    tenant::TenantAction,
};

use crate::{Db, Result, StoreError, Tx, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: TenantStatus,
    pub is_platform: bool,
    /// ISO 3166 alpha-2: whose numbers phones written without `+` are (contacts, imports).
    pub default_country: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns a [`Tenant`] is read from.
const TCOLS: &str = "id, slug, name, status, is_platform, default_country, created_at, updated_at";

/// Why a status move was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("tenant not found")]
    NotFound,
    #[error("a {0} tenant cannot be moved that way")]
    Illegal(TenantStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Inserts a tenant inside `tx`, taking the first free slug of `name`, `name-2`, `name-3`…
pub async fn create_in(
    tx: &mut Tx,
    name: &str,
    status: TenantStatus,
    is_platform: bool,
    now: DateTime<Utc>,
) -> Result<Tenant> {
    let base = slugify(name);
    let id = TenantId::new();
    for n in 1.. {
        // After 50 taken candidates, fall back to a random suffix rather than probing forever.
        let slug = if n <= 50 {
            candidate(&base, n)
        } else {
            format!("{base}-{}", &id.to_string()[24..])
        };
        let row: Option<Tenant> = on_tx!(tx, c => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("insert into tenants (id, slug, name, status, is_platform, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $6)
             on conflict (slug) do nothing
             returning {TCOLS}")),
        )
        .bind(id)
        .bind(&slug)
        .bind(name)
        .bind(status.as_str())
        .bind(is_platform)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        if let Some(t) = row {
            return Ok(t);
        }
        if n > 50 {
            return Err(StoreError::Conflict("slug"));
        }
    }
    unreachable!()
}

impl Db {
    pub async fn tenant(&self, id: TenantId) -> Result<Tenant> {
        on_db!(self, p => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("select {TCOLS} from tenants where id = $1 and not is_platform")),
        )
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        on_db!(self, p => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("select {TCOLS} from tenants where slug = $1 and not is_platform")),
        )
        .bind(slug)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Customer tenants, newest first. The platform's own tenant is never listed.
    pub async fn list_tenants(
        &self,
        page: &PageRequest,
        status: Option<TenantStatus>,
    ) -> Result<Vec<Tenant>> {
        let rows = on_db!(self, p => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("select {TCOLS}
             from tenants
             where not is_platform
               and ($1 is null or id < $1)
               and ($2 is null or status = $2)
             order by id desc limit $3")),
        )
        .bind(page.after.map(|c| c.0))
        .bind(status.map(|s| s.as_str()))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)?;
        Ok(rows)
    }

    /// Applies a status move if the tenant's current status allows it. The update is conditional
    /// on the status read, so two admins acting at once cannot both win.
    pub async fn transition_tenant(
        &self,
        id: TenantId,
        action: TenantAction,
        now: DateTime<Utc>,
    ) -> Result<Tenant, TransitionError> {
        let current = match self.tenant(id).await {
            Ok(t) => t,
            Err(StoreError::NotFound) => return Err(TransitionError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let next = current
            .status
            .apply(action)
            .ok_or(TransitionError::Illegal(current.status))?;
        let row: Option<Tenant> = on_db!(self, p => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("update tenants set status = $1, updated_at = $2
             where id = $3 and status = $4 and not is_platform
             returning {TCOLS}")),
        )
        .bind(next.as_str())
        .bind(now)
        .bind(id)
        .bind(current.status.as_str())
        .fetch_optional(p)
        .await)
        .map_err(StoreError::from)?;
        row.ok_or(TransitionError::Illegal(current.status))
    }

    /// Changes a tenant's own settings (its profile's name and default country).
    pub async fn update_tenant_settings(
        &self,
        id: TenantId,
        name: &str,
        default_country: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Tenant> {
        on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update tenants set name = $2, default_country = $3, updated_at = $4
             where id = $1 and not is_platform returning {TCOLS}"
        )))
        .bind(id)
        .bind(name)
        .bind(default_country)
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }
}

/// The operator's tenant that holds superadmins, created on first use.
pub async fn platform_tenant_in(tx: &mut Tx, now: DateTime<Utc>) -> Result<Tenant> {
    let existing: Option<Tenant> = on_tx!(tx, c => sqlx::query_as(
        sqlx::AssertSqlSafe(format!("select {TCOLS} from tenants where is_platform order by id limit 1")),
    )
    .fetch_optional(c)
    .await)?;
    match existing {
        Some(t) => Ok(t),
        None => create_in(tx, "platform", TenantStatus::Active, true, now).await,
    }
}
