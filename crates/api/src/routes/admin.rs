//! Platform administration: the operator's view of tenants. Superadmins only.

use axum::extract::State;
use pinglayer_domain::{TenantId, TenantStatus, page::finish_page, tenant::TenantAction};
use pinglayer_store::tenants::TransitionError;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, Page, PageQuery, TenantView};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::{PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(approve))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TenantQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only tenants in this state.
    pub status: Option<TenantStatus>,
}

/// All tenants, newest first.
#[utoipa::path(get, path = "/api/v1/admin/tenants", tag = "admin", params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TenantView>), (status = 403, body = ErrorBody)))]
async fn list_tenants(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<axum::Json<Page<TenantView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    let rows = ctx.db.list_tenants(&page, q.status).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |t| t.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(TenantView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/tenants/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
async fn get_tenant(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
) -> ApiResult<axum::Json<TenantView>> {
    Ok(axum::Json((&ctx.db.tenant(id).await?).into()))
}

async fn transition(
    ctx: &ApiContext,
    id: TenantId,
    action: TenantAction,
) -> ApiResult<axum::Json<TenantView>> {
    match ctx.db.transition_tenant(id, action, ctx.clock.now()).await {
        Ok(t) => {
            ctx.auth_changed(t.id).await;
            tracing::info!(tenant_id = %t.id, status = %t.status, ?action, "tenant status changed");
            Ok(axum::Json((&t).into()))
        }
        Err(TransitionError::NotFound) => Err(ApiError::NotFound),
        Err(TransitionError::Illegal(from)) => Err(ApiError::conflict(
            "invalid_transition",
            format!(
                "A {from} tenant cannot be {}.",
                match action {
                    TenantAction::Approve => "approved",
                    TenantAction::Suspend => "suspended",
                    TenantAction::Reactivate => "reactivated",
                }
            ),
        )),
        Err(TransitionError::Store(e)) => Err(e.into()),
    }
}

/// Approve a pending tenant.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/approve", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody), (status = 409, description = "`invalid_transition`", body = ErrorBody)))]
async fn approve(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
) -> ApiResult<axum::Json<TenantView>> {
    transition(&ctx, id, TenantAction::Approve).await
}

/// Suspend a tenant: its tokens and keys stop working at once.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/suspend", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn suspend(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
) -> ApiResult<axum::Json<TenantView>> {
    transition(&ctx, id, TenantAction::Suspend).await
}

/// Lift a suspension.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/reactivate", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reactivate(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
) -> ApiResult<axum::Json<TenantView>> {
    transition(&ctx, id, TenantAction::Reactivate).await
}
