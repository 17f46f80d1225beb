//! API keys for server-to-server calls. The secret is shown once, at creation.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use pinglayer_domain::{ApiKeyId, Role, page::finish_page};
use pinglayer_store::api_keys::{ApiKey, NewApiKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::required_text,
    views::{ErrorBody, Page, PageQuery},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Actor, Auth, perm, secrets},
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateApiKey {
    pub name: String,
    /// What the key may do, as a member of that role would.
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The secret. Shown this once; store it now.
    pub key: String,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            role: k.role,
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// Live API keys, without their secrets.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ApiKeyView>)))]
async fn list_keys(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ApiKeysManage>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ApiKeyView>>> {
    let page = q.parse()?;
    let rows = ctx.db.list_api_keys(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |k| k.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(ApiKeyView::from).collect(),
        next_cursor,
    }))
}

/// Create an API key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ApiKeysManage>,
    Json(req): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApiKey>)> {
    if !p.role.may_assign(req.role) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!(
                "The {} role may not create a key with the {} role.",
                p.role, req.role
            ),
        ));
    }
    let name = required_text("name", &req.name, 120)?;
    let now = ctx.clock.now();
    if req.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::field("expires_at", "must be in the future"));
    }
    let (key, prefix) = secrets::new_api_key();
    let created_by = match &p.actor {
        Actor::User { user, .. } => Some(user.id),
        Actor::ApiKey(_) => None,
    };
    let row = ctx
        .db
        .create_api_key(
            NewApiKey {
                tenant_id: p.tenant.id,
                name: &name,
                role: req.role,
                prefix: &prefix,
                key_hash: &secrets::sha256_hex(&key),
                created_by,
                expires_at: req.expires_at,
            },
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            api_key: (&row).into(),
            key,
        }),
    ))
}

/// Revoke an API key. It stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ApiKeysManage>,
    PathId(id): PathId<ApiKeyId>,
) -> ApiResult<StatusCode> {
    ctx.db
        .revoke_api_key(p.tenant.id, id, ctx.clock.now())
        .await?;
    ctx.auth_changed(p.tenant.id).await;
    Ok(StatusCode::NO_CONTENT)
}
