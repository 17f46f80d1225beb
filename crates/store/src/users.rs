//! Team members of a tenant (and the platform's superadmins, who live in the platform tenant).

use chrono::{DateTime, Utc};
use pinglayer_domain::{Email, PageRequest, Role, TenantId, UserId};

use crate::{Db, Result, StoreError, Tx, conflict_on_unique, on_db, on_tx, tenants::Tenant};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub tenant_id: TenantId,
    pub id: UserId,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// Argon2 PHC string; `None` for members who only sign in with one-time codes.
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

pub struct NewUser<'a> {
    pub tenant_id: TenantId,
    pub email: &'a Email,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: Option<String>,
}

/// Changes to a member; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub password_hash: Option<String>,
}

/// A user joined with their tenant: what sign-in and authentication need in one round trip.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub tenant: Tenant,
}

/// Flat join row; column names are prefixed because users and tenants share names.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    u_tenant_id: TenantId,
    u_id: UserId,
    u_email: String,
    u_name: String,
    u_role: String,
    u_password_hash: Option<String>,
    u_created_at: DateTime<Utc>,
    u_updated_at: DateTime<Utc>,
    u_last_login_at: Option<DateTime<Utc>>,
    t_slug: String,
    t_name: String,
    t_status: String,
    t_is_platform: bool,
    t_default_country: Option<String>,
    t_created_at: DateTime<Utc>,
    t_updated_at: DateTime<Utc>,
}

/// The select list for [`MemberRow`]: `u` is users, `t` is tenants.
#[macro_export]
#[doc(hidden)]
macro_rules! member_cols {
    () => {
        "u.tenant_id as u_tenant_id, u.id as u_id, u.email as u_email, u.name as u_name,
         u.role as u_role, u.password_hash as u_password_hash, u.created_at as u_created_at,
         u.updated_at as u_updated_at, u.last_login_at as u_last_login_at,
         t.slug as t_slug, t.name as t_name, t.status as t_status,
         t.is_platform as t_is_platform, t.default_country as t_default_country, t.created_at as t_created_at, t.updated_at as t_updated_at"
    };
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Self> {
        let bad = |e: String| StoreError::Other(sqlx::Error::Decode(e.into()));
        Ok(Member {
            tenant: Tenant {
                id: r.u_tenant_id,
                slug: r.t_slug,
                name: r.t_name,
                status: r.t_status.parse().map_err(bad)?,
                is_platform: r.t_is_platform,
                default_country: r.t_default_country,
                created_at: r.t_created_at,
                updated_at: r.t_updated_at,
            },
            user: User {
                tenant_id: r.u_tenant_id,
                id: r.u_id,
                email: r.u_email,
                name: r.u_name,
                role: r.u_role.parse().map_err(bad)?,
                password_hash: r.u_password_hash,
                created_at: r.u_created_at,
                updated_at: r.u_updated_at,
                last_login_at: r.u_last_login_at,
            },
        })
    }
}

pub async fn create_in(tx: &mut Tx, new: NewUser<'_>, now: DateTime<Utc>) -> Result<User> {
    on_tx!(tx, c => sqlx::query_as(
        "insert into users (tenant_id, id, email, name, role, password_hash, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7)
         returning tenant_id, id, email, name, role, password_hash, created_at, updated_at, last_login_at",
    )
    .bind(new.tenant_id)
    .bind(UserId::new())
    .bind(new.email.as_str())
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.password_hash)
    .bind(now)
    .fetch_one(c)
    .await)
    .map_err(conflict_on_unique("email"))
}

/// Takes the tenant's row lock for the rest of `tx`, so that checks such as "is this the last
/// owner?" and the write that depends on them cannot interleave with another request's.
async fn lock_tenant(tx: &mut Tx, tenant: TenantId, now: DateTime<Utc>) -> Result<()> {
    on_tx!(tx, c => sqlx::query("update tenants set updated_at = $2 where id = $1")
        .bind(tenant)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

async fn other_owners(tx: &mut Tx, tenant: TenantId, except: UserId) -> Result<i64> {
    let n: i64 = on_tx!(tx, c => sqlx::query_scalar(
        "select count(*) from users where tenant_id = $1 and role = 'owner' and id <> $2",
    )
    .bind(tenant)
    .bind(except)
    .fetch_one(c)
    .await)?;
    Ok(n)
}

async fn user_in(tx: &mut Tx, tenant: TenantId, id: UserId) -> Result<User> {
    on_tx!(tx, c => sqlx::query_as(
        "select tenant_id, id, email, name, role, password_hash, created_at, updated_at, last_login_at
         from users where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(c)
    .await)
    .map_err(Into::into)
}

impl Db {
    pub async fn create_user(&self, new: NewUser<'_>, now: DateTime<Utc>) -> Result<User> {
        let mut tx = self.begin().await?;
        let u = create_in(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(u)
    }

    pub async fn user(&self, tenant: TenantId, id: UserId) -> Result<User> {
        on_db!(self, p => sqlx::query_as(
            "select tenant_id, id, email, name, role, password_hash, created_at, updated_at, last_login_at
             from users where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// The member who owns this e-mail address, whichever tenant they belong to.
    pub async fn member_by_email(&self, email: &Email) -> Result<Option<Member>> {
        let row: Option<MemberRow> = on_db!(self, p => sqlx::query_as(concat!(
            "select ", member_cols!(),
            " from users u join tenants t on t.id = u.tenant_id where u.email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(p)
        .await)?;
        row.map(Member::try_from).transpose()
    }

    pub async fn list_users(&self, tenant: TenantId, page: &PageRequest) -> Result<Vec<User>> {
        on_db!(self, p => sqlx::query_as(
            "select tenant_id, id, email, name, role, password_hash, created_at, updated_at, last_login_at
             from users where tenant_id = $1 and ($2 is null or id > $2)
             order by id limit $3",
        )
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn record_login(
        &self,
        tenant: TenantId,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query("update users set last_login_at = $3 where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Updates a member. Refuses with `Conflict("last_owner")` to demote the tenant's last owner.
    pub async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        patch: UserPatch,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let mut tx = self.begin().await?;
        lock_tenant(&mut tx, tenant, now).await?;
        let current = user_in(&mut tx, tenant, id).await?;
        let demotes_owner =
            current.role == Role::Owner && patch.role.is_some_and(|r| r != Role::Owner);
        if demotes_owner && other_owners(&mut tx, tenant, id).await? == 0 {
            return Err(StoreError::Conflict("last_owner"));
        }
        let u: User = on_tx!(&mut tx, c => sqlx::query_as(
            "update users set name = coalesce($3, name), role = coalesce($4, role),
                    password_hash = coalesce($5, password_hash), updated_at = $6
             where tenant_id = $1 and id = $2
             returning tenant_id, id, email, name, role, password_hash, created_at, updated_at, last_login_at",
        )
        .bind(tenant)
        .bind(id)
        .bind(patch.name)
        .bind(patch.role.map(|r| r.as_str()))
        .bind(patch.password_hash)
        .bind(now)
        .fetch_one(c)
        .await)?;
        // A role change takes effect on the member's sessions at once (roles are read per
        // request); a password change ends every session but the one making it is not tracked
        // here, so all are ended and the member signs in again.
        if u.password_hash != current.password_hash {
            on_tx!(&mut tx, c => sqlx::query(
                "update sessions set revoked_at = $3, revoked_why = 'password_changed'
                 where tenant_id = $1 and user_id = $2 and revoked_at is null",
            )
            .bind(tenant)
            .bind(id)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(u)
    }

    /// Removes a member and, by cascade, their sessions and codes. Refuses with
    /// `Conflict("last_owner")` to remove the tenant's last owner.
    pub async fn delete_user(
        &self,
        tenant: TenantId,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        lock_tenant(&mut tx, tenant, now).await?;
        let current = user_in(&mut tx, tenant, id).await?;
        if current.role == Role::Owner && other_owners(&mut tx, tenant, id).await? == 0 {
            return Err(StoreError::Conflict("last_owner"));
        }
        on_tx!(&mut tx, c => sqlx::query("delete from users where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }
}
