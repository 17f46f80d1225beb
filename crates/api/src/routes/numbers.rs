//! Connecting WhatsApp numbers: by hand (token pasted) or by Embedded Signup (code exchanged).
//! Tokens and app secrets are encrypted before they are stored and never come back out.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use pinglayer_domain::{FieldError, NumberId, billing::Limit, page::finish_page};
use pinglayer_store::{
    StoreError,
    numbers::{NewNumber, Number, NumberPatch},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::Checks,
    views::{ErrorBody, Page, PageQuery},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm, secrets::sha256_hex},
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_numbers, connect_number))
        .routes(routes!(get_number, update_number, disconnect_number))
        .routes(routes!(embedded_signup))
}

#[derive(Deserialize, ToSchema)]
pub struct ConnectNumber {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// A system-user or business token with `whatsapp_business_messaging`.
    pub access_token: String,
    /// Only when this number's webhooks come from another Meta app than the platform's.
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    /// Messages per second the dispatcher may send from this number (1–1000, default 80).
    pub throughput_per_second: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateNumber {
    pub display_phone_number: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub throughput_per_second: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
pub struct EmbeddedSignup {
    /// The code the Embedded Signup pop-up returned.
    pub code: String,
    pub waba_id: String,
    pub phone_number_id: String,
    pub throughput_per_second: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct NumberView {
    pub id: String,
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub throughput_per_second: i32,
    pub status: String,
    /// Whether the number has its own app secret (else the platform's verifies its webhooks).
    pub has_app_secret: bool,
    pub has_verify_token: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Number> for NumberView {
    fn from(n: &Number) -> Self {
        Self {
            id: n.id.to_string(),
            waba_id: n.waba_id.clone(),
            phone_number_id: n.phone_number_id.clone(),
            display_phone_number: n.display_phone_number.clone(),
            throughput_per_second: n.throughput_per_second,
            status: n.status.clone(),
            has_app_secret: n.app_secret_enc.is_some(),
            has_verify_token: n.verify_token_hash.is_some(),
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

fn meta_id(field: &'static str, v: &str) -> Result<String, FieldError> {
    let t = v.trim();
    if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(FieldError::new(field, "must be Meta's numeric id"));
    }
    Ok(t.to_string())
}

fn secret(field: &'static str, v: &str) -> Result<String, FieldError> {
    let t = v.trim();
    if t.is_empty() || t.len() > 4096 {
        return Err(FieldError::new(field, "must be 1–4096 characters"));
    }
    Ok(t.to_string())
}

fn throughput(v: Option<i32>) -> Result<i32, FieldError> {
    match v {
        None => Ok(80),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(
            "throughput_per_second",
            "must be between 1 and 1000",
        )),
    }
}

fn taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => {
            ApiError::conflict("number_taken", "This phone_number_id is already connected.")
        }
        e => e.into(),
    }
}

impl ApiContext {
    pub(crate) fn seal(
        &self,
        tenant: pinglayer_domain::TenantId,
        field: &str,
        value: &str,
    ) -> Vec<u8> {
        self.cipher.encrypt(&format!("{tenant}/{field}"), value)
    }

    pub(crate) fn open(
        &self,
        tenant: pinglayer_domain::TenantId,
        field: &str,
        value: &[u8],
    ) -> ApiResult<String> {
        self.cipher
            .decrypt(&format!("{tenant}/{field}"), value)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored {field}: {e}")))
    }

    /// The decrypted access token of a number.
    pub(crate) fn token_of(&self, n: &Number) -> ApiResult<String> {
        self.open(n.tenant_id, "access_token", &n.access_token_enc)
    }

    fn forget_number_secret(&self, pnid: &str) {
        self.number_secrets
            .lock()
            .expect("secrets poisoned")
            .remove(pnid);
    }
}

/// The tenant's connected numbers.
#[utoipa::path(get, path = "/api/v1/whatsapp/numbers", tag = "whatsapp", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<NumberView>)))]
async fn list_numbers(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersRead>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<NumberView>>> {
    let page = q.parse()?;
    let rows = ctx.db.list_numbers(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |n| n.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(NumberView::from).collect(),
        next_cursor,
    }))
}

/// Connect a number with its access token.
#[utoipa::path(post, path = "/api/v1/whatsapp/numbers", tag = "whatsapp", request_body = ConnectNumber, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = NumberView), (status = 409, description = "`number_taken`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn connect_number(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersManage>,
    Json(req): Json<ConnectNumber>,
) -> ApiResult<(StatusCode, axum::Json<NumberView>)> {
    let mut c = Checks::new();
    let waba = c.take(meta_id("waba_id", &req.waba_id));
    let pnid = c.take(meta_id("phone_number_id", &req.phone_number_id));
    let display = c.take(super::auth::required_text(
        "display_phone_number",
        &req.display_phone_number,
        32,
    ));
    let token = c.take(secret("access_token", &req.access_token));
    let app_secret = req
        .app_secret
        .as_deref()
        .and_then(|s| c.take(secret("app_secret", s)));
    let verify = req
        .verify_token
        .as_deref()
        .and_then(|s| c.take(secret("verify_token", s)));
    let rps = c.take(throughput(req.throughput_per_second));
    c.finish()?;
    super::billing::within_plan(&ctx, p.tenant.id, Limit::SendingNumbers, 1).await?;
    let (Some(waba), Some(pnid), Some(display), Some(token), Some(rps)) =
        (waba, pnid, display, token, rps)
    else {
        unreachable!("checked")
    };
    let t = p.tenant.id;
    let n = ctx
        .db
        .connect_number(
            NewNumber {
                tenant_id: t,
                waba_id: &waba,
                phone_number_id: &pnid,
                display_phone_number: &display,
                access_token_enc: ctx.seal(t, "access_token", &token),
                app_secret_enc: app_secret.map(|s| ctx.seal(t, "app_secret", &s)),
                verify_token_hash: verify.map(|v| sha256_hex(&v)),
                throughput_per_second: rps,
            },
            ctx.clock.now(),
        )
        .await
        .map_err(taken)?;
    ctx.forget_number_secret(&n.phone_number_id);
    tracing::info!(tenant_id = %t, number_id = %n.id, phone_number_id = %n.phone_number_id, "number connected");
    Ok((StatusCode::CREATED, axum::Json((&n).into())))
}

/// Connect a number through Embedded Signup: the code is exchanged for a business token.
#[utoipa::path(post, path = "/api/v1/whatsapp/embedded-signup", tag = "whatsapp", request_body = EmbeddedSignup, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = NumberView), (status = 422, description = "`meta_app_not_configured`, `code_exchange_failed`", body = ErrorBody)))]
async fn embedded_signup(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersManage>,
    Json(req): Json<EmbeddedSignup>,
) -> ApiResult<(StatusCode, axum::Json<NumberView>)> {
    let mut c = Checks::new();
    let waba = c.take(meta_id("waba_id", &req.waba_id));
    let pnid = c.take(meta_id("phone_number_id", &req.phone_number_id));
    let code = c.take(secret("code", &req.code));
    let rps = c.take(throughput(req.throughput_per_second));
    c.finish()?;
    super::billing::within_plan(&ctx, p.tenant.id, Limit::SendingNumbers, 1).await?;
    let (Some(waba), Some(pnid), Some(code), Some(rps)) = (waba, pnid, code, rps) else {
        unreachable!("checked")
    };
    let (Some(app_id), Some(app_secret)) = (
        ctx.settings.meta.app_id.as_deref(),
        ctx.settings.meta.app_secret.as_deref(),
    ) else {
        return Err(ApiError::unprocessable(
            "meta_app_not_configured",
            "The operator has not configured a Meta app (--meta-app-id, --meta-app-secret).",
        ));
    };
    let token = ctx
        .whatsapp
        .exchange_code(app_id, app_secret, &code)
        .await
        .map_err(|e| {
            ApiError::unprocessable(
                "code_exchange_failed",
                format!("Meta refused the code: {e}"),
            )
        })?;
    let info = ctx
        .whatsapp
        .phone_number(&pnid, &token.access_token)
        .await
        .map_err(|e| {
            ApiError::unprocessable(
                "number_lookup_failed",
                format!("The new token cannot read the number: {e}"),
            )
        })?;
    let t = p.tenant.id;
    let n = ctx
        .db
        .connect_number(
            NewNumber {
                tenant_id: t,
                waba_id: &waba,
                phone_number_id: &pnid,
                display_phone_number: &info.display_phone_number,
                access_token_enc: ctx.seal(t, "access_token", &token.access_token),
                app_secret_enc: None,
                verify_token_hash: None,
                throughput_per_second: rps,
            },
            ctx.clock.now(),
        )
        .await
        .map_err(taken)?;
    ctx.forget_number_secret(&n.phone_number_id);
    Ok((StatusCode::CREATED, axum::Json((&n).into())))
}

#[utoipa::path(get, path = "/api/v1/whatsapp/numbers/{id}", tag = "whatsapp", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = NumberView), (status = 404, body = ErrorBody)))]
async fn get_number(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersRead>,
    PathId(id): PathId<NumberId>,
) -> ApiResult<axum::Json<NumberView>> {
    Ok(axum::Json((&ctx.db.number(p.tenant.id, id).await?).into()))
}

/// Change a number's settings or rotate its credentials.
#[utoipa::path(patch, path = "/api/v1/whatsapp/numbers/{id}", tag = "whatsapp", params(("id" = String, Path)), request_body = UpdateNumber, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = NumberView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_number(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersManage>,
    PathId(id): PathId<NumberId>,
    Json(req): Json<UpdateNumber>,
) -> ApiResult<axum::Json<NumberView>> {
    let t = p.tenant.id;
    let mut c = Checks::new();
    let display = req
        .display_phone_number
        .as_deref()
        .and_then(|d| c.take(super::auth::required_text("display_phone_number", d, 32)));
    let token = req
        .access_token
        .as_deref()
        .and_then(|s| c.take(secret("access_token", s)));
    let app_secret = req
        .app_secret
        .as_deref()
        .and_then(|s| c.take(secret("app_secret", s)));
    let verify = req
        .verify_token
        .as_deref()
        .and_then(|s| c.take(secret("verify_token", s)));
    let rps = match req.throughput_per_second {
        Some(v) => c.take(throughput(Some(v))),
        None => None,
    };
    c.finish()?;
    let n = ctx
        .db
        .update_number(
            t,
            id,
            NumberPatch {
                display_phone_number: display,
                access_token_enc: token.map(|s| ctx.seal(t, "access_token", &s)),
                app_secret_enc: app_secret.map(|s| ctx.seal(t, "app_secret", &s)),
                verify_token_hash: verify.map(|v| sha256_hex(&v)),
                throughput_per_second: rps,
            },
            ctx.clock.now(),
        )
        .await?;
    ctx.forget_number_secret(&n.phone_number_id);
    Ok(axum::Json((&n).into()))
}

/// Disconnect a number. Its conversations and messages are kept.
#[utoipa::path(delete, path = "/api/v1/whatsapp/numbers/{id}", tag = "whatsapp", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn disconnect_number(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::NumbersManage>,
    PathId(id): PathId<NumberId>,
) -> ApiResult<StatusCode> {
    let n = ctx.db.number(p.tenant.id, id).await?;
    ctx.db
        .disconnect_number(p.tenant.id, id, ctx.clock.now())
        .await?;
    ctx.forget_number_secret(&n.phone_number_id);
    Ok(StatusCode::NO_CONTENT)
}
