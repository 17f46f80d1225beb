//! The caller's own tenant: its profile and the settings its members' requests fall back on.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, TenantView};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::Json,
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(get_tenant, update_tenant))
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateTenant {
    /// The business's name as its members see it (1–200 characters). The slug does not change.
    pub name: Option<String>,
    /// ISO 3166 alpha-2 (`IN`, `US`…), or `null` to clear: phones written without `+` in new
    /// contacts, imports and test sends are read as this country's when the request names none.
    #[serde(default, deserialize_with = "crate::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub default_country: Option<Option<String>>,
}

/// The caller's tenant.
#[utoipa::path(get, path = "/api/v1/tenant", tag = "tenant", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TenantView)))]
async fn get_tenant(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TenantRead>,
) -> ApiResult<axum::Json<TenantView>> {
    // From the database, not the principal: a cached principal may predate a change.
    Ok(axum::Json((&ctx.db.tenant(p.tenant.id).await?).into()))
}

/// Change the tenant's name or default country (owners).
#[utoipa::path(patch, path = "/api/v1/tenant", tag = "tenant", request_body = UpdateTenant, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TenantView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_tenant(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TenantManage>,
    Json(req): Json<UpdateTenant>,
) -> ApiResult<axum::Json<TenantView>> {
    let current = ctx.db.tenant(p.tenant.id).await?;
    let name = match req.name {
        Some(n) => {
            let n = n.trim().to_string();
            if n.is_empty() || n.chars().count() > 200 {
                return Err(ApiError::field("name", "must be 1–200 characters"));
            }
            n
        }
        None => current.name,
    };
    let country = match req.default_country {
        None => current.default_country,
        Some(None) => None,
        Some(Some(c)) => Some(pinglayer_domain::phone::country_code(&c)?),
    };
    let t = ctx
        .db
        .update_tenant_settings(p.tenant.id, &name, country.as_deref(), ctx.clock.now())
        .await?;
    // Members' cached principals carry the tenant: drop them here and in other processes.
    ctx.auth_changed(p.tenant.id).await;
    Ok(axum::Json((&t).into()))
}
