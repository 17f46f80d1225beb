//! The tenant's team: list, invite, change, remove members.

use axum::{extract::State, http::StatusCode};
use pinglayer_domain::{Email, NewPassword, Role, UserId, billing::Limit, page::finish_page};
use pinglayer_store::{
    StoreError,
    users::{NewUser, UserPatch},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::{Checks, email_conflict, required_text},
    views::{ErrorBody, Page, PageQuery, UserView},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, Principal, perm},
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user, delete_user))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    pub email: String,
    pub name: String,
    /// `owner` (owners only), `admin`, `agent` or `viewer`.
    pub role: Role,
    /// Optional: without one the member signs in with one-time codes.
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUser {
    pub name: Option<String>,
    pub role: Option<Role>,
    /// Setting a password ends the member's sessions.
    pub password: Option<String>,
}

fn may_assign(p: &Principal, role: Role) -> ApiResult<()> {
    if p.role.may_assign(role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            format!("The {} role may not give the {role} role.", p.role),
        ))
    }
}

/// Only owners may change or remove owners.
fn may_touch(p: &Principal, target: Role) -> ApiResult<()> {
    if target == Role::Owner && p.role != Role::Owner {
        return Err(ApiError::forbidden(
            "forbidden",
            "Only owners may change or remove owners.",
        ));
    }
    Ok(())
}

fn last_owner(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict("last_owner") => ApiError::conflict(
            "last_owner",
            "The tenant's last owner cannot be removed or demoted.",
        ),
        e => e.into(),
    }
}

async fn parse_password(raw: Option<&str>, c: &mut Checks) -> ApiResult<Option<String>> {
    match raw.map(|p| c.take(NewPassword::parse(p))) {
        Some(Some(p)) => Ok(Some(
            crate::auth::secrets::hash_password(p.expose().to_string()).await?,
        )),
        _ => Ok(None),
    }
}

/// List the tenant's members.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<UserView>), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::UsersRead>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<UserView>>> {
    let page = q.parse()?;
    let rows = ctx.db.list_users(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |u| u.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Add a member.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = UserView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::UsersManage>,
    Json(req): Json<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    may_assign(&p, req.role)?;
    let mut c = Checks::new();
    let email = c.take(Email::parse(&req.email));
    let name = c.take(required_text("name", &req.name, 120));
    let hash = parse_password(req.password.as_deref(), &mut c).await?;
    c.finish()?;
    super::billing::within_plan(&ctx, p.tenant.id, Limit::TeamMembers, 1).await?;
    let (Some(email), Some(name)) = (email, name) else {
        unreachable!("checked above")
    };
    let user = ctx
        .db
        .create_user(
            NewUser {
                tenant_id: p.tenant.id,
                email: &email,
                name: &name,
                role: req.role,
                password_hash: hash,
            },
            ctx.clock.now(),
        )
        .await
        .map_err(email_conflict)?;
    Ok((StatusCode::CREATED, axum::Json((&user).into())))
}

/// Change a member's name, role or password.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = UpdateUser, security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)))]
async fn update_user(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::UsersManage>,
    PathId(id): PathId<UserId>,
    Json(req): Json<UpdateUser>,
) -> ApiResult<axum::Json<UserView>> {
    let target = ctx.db.user(p.tenant.id, id).await?;
    may_touch(&p, target.role)?;
    if let Some(r) = req.role {
        may_assign(&p, r)?;
    }
    let mut c = Checks::new();
    let name = req
        .name
        .as_deref()
        .and_then(|n| c.take(required_text("name", n, 120)));
    let hash = parse_password(req.password.as_deref(), &mut c).await?;
    c.finish()?;
    let user = ctx
        .db
        .update_user(
            p.tenant.id,
            id,
            UserPatch {
                name,
                role: req.role,
                password_hash: hash,
            },
            ctx.clock.now(),
        )
        .await
        .map_err(last_owner)?;
    ctx.auth_changed(p.tenant.id).await;
    Ok(axum::Json((&user).into()))
}

/// Remove a member. Their sessions end at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "`last_owner`", body = ErrorBody)))]
async fn delete_user(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::UsersManage>,
    PathId(id): PathId<UserId>,
) -> ApiResult<StatusCode> {
    let target = ctx.db.user(p.tenant.id, id).await?;
    may_touch(&p, target.role)?;
    ctx.db
        .delete_user(p.tenant.id, id, ctx.clock.now())
        .await
        .map_err(last_owner)?;
    ctx.auth_changed(p.tenant.id).await;
    Ok(StatusCode::NO_CONTENT)
}
