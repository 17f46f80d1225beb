//! Operator commands (`pinglayer admin …`).

use anyhow::{Context, bail};
use pinglayer_domain::{Clock, Email, NewPassword, Role, SystemClock};
use pinglayer_store::{
    Db, tenants,
    users::{self, NewUser, UserPatch},
};

/// Creates a platform superadmin, or resets the password of an existing one. Returns what was
/// done, for the operator.
pub async fn create_superadmin(
    db: &Db,
    email: &str,
    password: &str,
    name: &str,
) -> anyhow::Result<String> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = NewPassword::parse(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = pinglayer_api::auth::secrets::hash_password(password.expose().to_string()).await?;
    let now = SystemClock.now();
    if let Some(m) = db.member_by_email(&email).await? {
        if !m.tenant.is_platform {
            bail!(
                "{email} already belongs to a tenant member; use another address for the superadmin"
            );
        }
        db.update_user(
            m.tenant.id,
            m.user.id,
            UserPatch {
                password_hash: Some(hash),
                ..Default::default()
            },
            now,
        )
        .await?;
        return Ok(format!("superadmin {email} exists; password reset"));
    }
    let mut tx = db.begin().await?;
    let platform = tenants::platform_tenant_in(&mut tx, now).await?;
    users::create_in(
        &mut tx,
        NewUser {
            tenant_id: platform.id,
            email: &email,
            name,
            role: Role::Superadmin,
            password_hash: Some(hash),
        },
        now,
    )
    .await
    .context("creating the superadmin")?;
    tx.commit().await?;
    Ok(format!("superadmin {email} created"))
}
