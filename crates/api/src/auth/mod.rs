//! Who is calling, and may they do this?
//!
//! [`authenticate`] turns a credential (access token or API key) into a [`Principal`], reading
//! the member or key and its tenant fresh from the database, so that a suspended tenant, a
//! removed member, a revoked key or an ended session stops working on the next request.
//! [`Auth<P>`] then asks the role matrix for permission `P`: handlers declare what they need in
//! their signature, and there is no other place where access is decided.

pub mod cache;
pub mod plan_rate;
pub mod secrets;
pub mod throttle;

use axum::{extract::FromRequestParts, http::request::Parts};
use pinglayer_domain::{Permission, Role, SessionId, TenantStatus};
use pinglayer_store::{api_keys::ApiKey, tenants::Tenant, users::User};
use std::marker::PhantomData;

use crate::{ApiContext, ApiError, ApiResult};
use cache::CacheKey;
use secrets::{API_KEY_PREFIX, sha256_hex};

#[derive(Debug, Clone)]
pub enum Actor {
    User { user: User, session: SessionId },
    ApiKey(ApiKey),
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Tenant,
    pub role: Role,
    pub actor: Actor,
}

impl Principal {
    pub fn user(&self) -> Option<&User> {
        match &self.actor {
            Actor::User { user, .. } => Some(user),
            Actor::ApiKey(_) => None,
        }
    }

    /// Whether this principal may do `perm`: the single decision point for access.
    pub fn authorize(&self, perm: Permission) -> ApiResult<()> {
        if perm == Permission::PlatformAdmin {
            return if self.role.grants(perm) {
                Ok(())
            } else {
                Err(ApiError::forbidden(
                    "forbidden",
                    "This route is for platform administrators.",
                ))
            };
        }
        if self.tenant.is_platform {
            return Err(ApiError::forbidden(
                "forbidden",
                "Platform administrators have no tenant data; use the /api/v1/admin routes.",
            ));
        }
        if self.tenant.status == TenantStatus::Pending {
            return Err(ApiError::forbidden(
                "tenant_pending_approval",
                "This account is waiting for approval by the platform's operator.",
            ));
        }
        if !self.role.grants(perm) {
            return Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "The {} role may not do this (needs {}).",
                    self.role,
                    perm.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// The credential a request carries: `X-API-Key: …` or `Authorization: Bearer …`.
pub fn credential(parts: &Parts) -> Option<&str> {
    if let Some(k) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "The access token or API key is missing, invalid, expired or revoked.",
    )
}

pub async fn authenticate(parts: &Parts, ctx: &ApiContext) -> ApiResult<Principal> {
    let Some(token) = credential(parts) else {
        return Err(ApiError::unauthorized(
            "unauthenticated",
            "Send `Authorization: Bearer <token>` or `X-API-Key`.",
        ));
    };
    let now = ctx.clock.now();
    let principal = if token.starts_with(API_KEY_PREFIX) {
        let key = CacheKey::ApiKey(sha256_hex(token));
        let p = match ctx.auth_cache.get(&key) {
            Some(p) => p,
            None => {
                let CacheKey::ApiKey(hash) = &key else {
                    unreachable!()
                };
                let found = ctx
                    .db
                    .api_key_by_hash(hash)
                    .await?
                    .ok_or_else(invalid_token)?;
                let p = Principal {
                    tenant: found.tenant,
                    role: found.key.role,
                    actor: Actor::ApiKey(found.key),
                };
                ctx.auth_cache.put(key, &p);
                p
            }
        };
        let Actor::ApiKey(k) = &p.actor else {
            unreachable!("cached under an API key")
        };
        if k.revoked_at.is_some() || k.expires_at.is_some_and(|e| e <= now) {
            return Err(invalid_token());
        }
        ctx.key_usage.record(k.tenant_id, k.id, now);
        p
    } else {
        let claims = ctx.secrets.verify_access(token).ok_or_else(invalid_token)?;
        let key = CacheKey::Session(claims.sid, claims.sub);
        match ctx.auth_cache.get(&key) {
            Some(p) if p.tenant.id == claims.tenant() => p,
            _ => {
                let member = ctx
                    .db
                    .member_by_session(claims.tenant(), claims.session(), claims.user(), now)
                    .await?
                    .ok_or_else(invalid_token)?;
                let p = Principal {
                    role: member.user.role,
                    actor: Actor::User {
                        user: member.user,
                        session: claims.session(),
                    },
                    tenant: member.tenant,
                };
                ctx.auth_cache.put(key, &p);
                p
            }
        }
    };
    if principal.tenant.status == TenantStatus::Suspended {
        return Err(ApiError::forbidden(
            "tenant_suspended",
            "This account has been suspended by the platform's operator.",
        ));
    }
    if !principal.tenant.is_platform {
        ctx.plan_rates.check(ctx, principal.tenant.id).await?;
    }
    Ok(principal)
}

/// What a handler needs: `Auth<perm::UsersManage>`.
pub trait Need: Send + Sync + 'static {
    const PERMISSION: Permission;
}

/// An authenticated principal that holds permission `P`.
pub struct Auth<P: Need>(pub Principal, pub PhantomData<P>);

impl<P: Need> FromRequestParts<ApiContext> for Auth<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let p = authenticate(parts, ctx).await?;
        p.authorize(P::PERMISSION)?;
        Ok(Auth(p, PhantomData))
    }
}

/// Any live principal, whatever its tenant's approval state: for `/auth/me`, which a member of
/// a pending tenant must be able to call to learn that it is pending.
pub struct Authenticated(pub Principal);

impl FromRequestParts<ApiContext> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, ctx).await.map(Authenticated)
    }
}

/// Marker types, one per [`Permission`], for use as `Auth<perm::X>`.
pub mod perm {
    use super::{Need, Permission};

    macro_rules! needs {
        ($($name:ident),* $(,)?) => {$(
            pub struct $name;
            impl Need for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    needs!(
        TenantRead,
        TenantManage,
        UsersRead,
        UsersManage,
        ApiKeysManage,
        ContactsRead,
        ContactsWrite,
        ConversationsRead,
        ConversationsWrite,
        MessagesSend,
        TemplatesRead,
        TemplatesManage,
        CampaignsRead,
        CampaignsManage,
        NumbersRead,
        NumbersManage,
        AnalyticsRead,
        BillingRead,
        PlatformAdmin,
    );
}
