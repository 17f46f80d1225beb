//! The JSON shapes of resources shared by several route modules. Store records are never
//! serialised directly, so a new column (a hash, a secret) cannot leak into a response.

use chrono::{DateTime, Utc};
use pinglayer_domain::{Role, TenantStatus};
use pinglayer_store::{tenants::Tenant, users::User};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Opaque id.
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    /// ISO 3166 alpha-2, e.g. `IN`: whose numbers phones written without `+` are, when a
    /// request or an import names no country.
    pub default_country: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            slug: t.slug.clone(),
            name: t.name.clone(),
            status: t.status,
            default_country: t.default_country.clone(),
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether the member can sign in with a password (otherwise one-time codes only).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role,
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

/// One page of a list. Pass `next_cursor` back as `?cursor=` for the next page; it is `null`
/// on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The error body every failure has.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: branch on this.
    pub code: String,
    /// For people.
    pub message: String,
    /// Field errors for 422, `retry_after` for 429.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// `?limit=&cursor=` for every list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// 1–500, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<pinglayer_domain::PageRequest, pinglayer_domain::FieldError> {
        pinglayer_domain::PageRequest::parse(self.limit, self.cursor.as_deref())
    }
}
