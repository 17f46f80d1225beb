//! Sign-up, sign-in (password or one-time code), token refresh and sign-out.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use chrono::Duration;
use pinglayer_domain::{
    Email, FieldError, NewPassword, Role, SessionId, SignupPolicy, TenantStatus,
};
use pinglayer_store::{
    StoreError,
    otp::OtpOutcome,
    sessions::NewSession,
    sessions::RotateOutcome,
    tenants, users,
    users::{Member, NewUser},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, TenantView, UserView};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{
        Actor, Authenticated, credential,
        secrets::{self, AccessClaims},
        throttle::retry_after_secs,
    },
    extract::{ClientIp, Json, OptionalJson},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(otp_request))
        .routes(routes!(otp_verify))
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub business_name: String,
    pub name: String,
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LogoutRequest {
    /// The session to end; without it, the session of the access token used.
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct OtpRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
pub struct OtpVerify {
    pub email: String,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub tenant: TenantView,
    pub user: UserView,
    /// Short-lived; send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Long-lived and single-use: exchange it at `/api/v1/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyIdentity {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// The member; `null` when calling with an API key.
    pub user: Option<UserView>,
    /// The key; `null` when calling as a member.
    pub api_key: Option<ApiKeyIdentity>,
    pub role: Role,
    pub tenant: TenantView,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub status: &'static str,
}

/// Trims and requires a short free-text field.
pub(crate) fn required_text(
    field: &'static str,
    raw: &str,
    max: usize,
) -> Result<String, FieldError> {
    let t = raw.trim();
    if t.is_empty() {
        Err(FieldError::new(field, "is required"))
    } else if t.chars().count() > max {
        Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ))
    } else {
        Ok(t.to_string())
    }
}

/// Collects every field error of a request, so the client can fix them all at once.
pub(crate) struct Checks(Vec<FieldError>);

impl Checks {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Starts a session for a member and returns its tokens.
async fn issue_tokens(ctx: &ApiContext, m: &Member) -> ApiResult<TokenResponse> {
    let now = ctx.clock.now();
    let session = SessionId::new();
    let refresh = secrets::new_refresh_token();
    ctx.db
        .start_session(
            &NewSession {
                tenant_id: m.tenant.id,
                user_id: m.user.id,
                session_id: session,
                refresh_hash: secrets::sha256_hex(&refresh),
                refresh_ttl: Duration::from_std(ctx.settings.refresh_token_ttl)
                    .map_err(anyhow::Error::new)?,
                // A session lives at most 90 days past sign-in, however often it is refreshed.
                session_ttl: Duration::days(90),
            },
            now,
        )
        .await?;
    access_response(ctx, m, session, refresh)
}

fn access_response(
    ctx: &ApiContext,
    m: &Member,
    session: SessionId,
    refresh: String,
) -> ApiResult<TokenResponse> {
    let now = ctx.clock.now().timestamp();
    let ttl = ctx.settings.access_token_ttl.as_secs();
    let access = ctx.secrets.issue_access(&AccessClaims {
        sub: m.user.id.0,
        tid: m.tenant.id.0,
        sid: session.0,
        typ: "access".into(),
        iat: now,
        exp: now + ttl as i64,
    })?;
    Ok(TokenResponse {
        tenant: (&m.tenant).into(),
        user: (&m.user).into(),
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: ttl,
    })
}

fn refuse_suspended(m: &Member) -> ApiResult<()> {
    if m.tenant.status == TenantStatus::Suspended {
        return Err(ApiError::forbidden(
            "tenant_suspended",
            "This account has been suspended by the platform's operator.",
        ));
    }
    Ok(())
}

/// Create a tenant and its first member (the owner).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = TokenResponse),
        (status = 403, description = "sign-up is closed (`signup_closed`)", body = ErrorBody),
        (status = 409, description = "the e-mail is taken (`email_taken`)", body = ErrorBody),
        (status = 422, description = "invalid fields, weak password", body = ErrorBody),
    ))]
async fn register(
    State(ctx): State<ApiContext>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let status = match ctx.settings.signup_policy {
        SignupPolicy::Open => TenantStatus::Active,
        SignupPolicy::Approval => TenantStatus::Pending,
        SignupPolicy::Closed => {
            return Err(ApiError::forbidden(
                "signup_closed",
                "This platform does not accept new sign-ups.",
            ));
        }
    };
    let mut c = Checks::new();
    let business = c.take(required_text("business_name", &req.business_name, 120));
    let name = c.take(required_text("name", &req.name, 120));
    let email = c.take(Email::parse(&req.email));
    let password = c.take(NewPassword::parse(&req.password));
    c.finish()?;
    let (Some(business), Some(name), Some(email), Some(password)) =
        (business, name, email, password)
    else {
        unreachable!("checked above")
    };

    let hash = secrets::hash_password(password.expose().to_string()).await?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let tenant = tenants::create_in(&mut tx, &business, status, false, now).await?;
    let user = users::create_in(
        &mut tx,
        NewUser {
            tenant_id: tenant.id,
            email: &email,
            name: &name,
            role: Role::Owner,
            password_hash: Some(hash),
        },
        now,
    )
    .await
    .map_err(email_conflict)?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant.id, slug = %tenant.slug, status = %tenant.status, "tenant registered");
    let tokens = issue_tokens(&ctx, &Member { user, tenant }).await?;
    Ok((StatusCode::CREATED, axum::Json(tokens)))
}

pub(crate) fn email_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict("email") => {
            ApiError::conflict("email_taken", "An account with this e-mail already exists.")
        }
        e => e.into(),
    }
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "The e-mail or password is wrong.")
}

/// Sign in with e-mail and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "wrong e-mail or password (`invalid_credentials`)", body = ErrorBody),
        (status = 429, description = "too many failures for this e-mail or IP", body = ErrorBody),
    ))]
async fn login(
    State(ctx): State<ApiContext>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let ip_key = format!("ip:{ip}");
    let email_key = format!("email:{}", req.email.trim().to_lowercase());
    if let Some(wait) = ctx
        .login_failures
        .blocked(&email_key)
        .or_else(|| ctx.login_failures_ip.blocked(&ip_key))
    {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: retry_after_secs(wait),
        });
    }
    let member = match Email::parse(&req.email) {
        Ok(email) => ctx.db.member_by_email(&email).await?,
        Err(_) => None,
    };
    let stored = member.as_ref().and_then(|m| m.user.password_hash.clone());
    let ok = secrets::verify_password(req.password, stored).await?;
    let Some(member) = member.filter(|_| ok) else {
        ctx.login_failures.hit(&email_key);
        ctx.login_failures_ip.hit(&ip_key);
        return Err(bad_credentials());
    };
    ctx.login_failures.clear(&email_key);
    refuse_suspended(&member)?;
    ctx.db
        .record_login(member.tenant.id, member.user.id, ctx.clock.now())
        .await?;
    Ok(axum::Json(issue_tokens(&ctx, &member).await?))
}

/// Exchange a refresh token for new tokens. The old one stops working; presenting it again
/// ends the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_token`, `token_expired` or `token_reused`", body = ErrorBody),
    ))]
async fn refresh(
    State(ctx): State<ApiContext>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    if !req.refresh_token.starts_with(secrets::REFRESH_PREFIX) {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "That is not a refresh token.",
        ));
    }
    let new = secrets::new_refresh_token();
    let ttl = Duration::from_std(ctx.settings.refresh_token_ttl).map_err(anyhow::Error::new)?;
    let outcome = ctx
        .db
        .rotate_refresh(
            &secrets::sha256_hex(&req.refresh_token),
            &secrets::sha256_hex(&new),
            ttl,
            ctx.clock.now(),
        )
        .await?;
    match outcome {
        RotateOutcome::Rotated {
            tenant_id,
            user_id,
            session_id,
        } => {
            let member = ctx
                .db
                .member_by_session(tenant_id, session_id, user_id, ctx.clock.now())
                .await?
                .ok_or_else(|| ApiError::unauthorized("invalid_token", "The session has ended."))?;
            refuse_suspended(&member)?;
            Ok(axum::Json(access_response(&ctx, &member, session_id, new)?))
        }
        RotateOutcome::Invalid => Err(ApiError::unauthorized(
            "invalid_token",
            "The refresh token is unknown or its session has ended.",
        )),
        RotateOutcome::Expired => Err(ApiError::unauthorized(
            "token_expired",
            "The refresh token has expired; sign in again.",
        )),
        RotateOutcome::Reused { tenant_id } => {
            ctx.auth_changed(tenant_id).await;
            tracing::warn!("a rotated refresh token was presented again; its session is revoked");
            Err(ApiError::unauthorized(
                "token_reused",
                "This refresh token was already used; the session has been ended for safety.",
            ))
        }
    }
}

/// End a session: the one of the given refresh token, or else of the access token used.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(ctx): State<ApiContext>,
    parts: http::request::Parts,
    OptionalJson(req): OptionalJson<LogoutRequest>,
) -> ApiResult<StatusCode> {
    let now = ctx.clock.now();
    if let Some(rt) = req.refresh_token {
        if let Some(tenant) = ctx
            .db
            .revoke_session_by_refresh(&secrets::sha256_hex(&rt), now)
            .await?
        {
            ctx.auth_changed(tenant).await;
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    let claims = credential(&parts)
        .and_then(|t| ctx.secrets.verify_access(t))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "unauthenticated",
                "Send the refresh token or an access token.",
            )
        })?;
    ctx.db
        .revoke_session(claims.tenant(), claims.session(), now)
        .await?;
    ctx.auth_changed(claims.tenant()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who am I: the member (or API key), their role and their tenant.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(Authenticated(p): Authenticated) -> axum::Json<MeResponse> {
    let (user, api_key) = match &p.actor {
        Actor::User { user, .. } => (Some(user.into()), None),
        Actor::ApiKey(k) => (
            None,
            Some(ApiKeyIdentity {
                id: k.id.to_string(),
                name: k.name.clone(),
            }),
        ),
    };
    axum::Json(MeResponse {
        user,
        api_key,
        role: p.role,
        tenant: (&p.tenant).into(),
    })
}

/// Ask for a one-time sign-in code by e-mail. Always 202, whether or not the address has an
/// account.
#[utoipa::path(post, path = "/api/v1/auth/otp/request", tag = "auth", request_body = OtpRequest,
    responses((status = 202, body = Accepted), (status = 429, body = ErrorBody)))]
async fn otp_request(
    State(ctx): State<ApiContext>,
    ClientIp(ip): ClientIp,
    Json(req): Json<OtpRequest>,
) -> ApiResult<(StatusCode, axum::Json<Accepted>)> {
    let email_key = format!("email:{}", req.email.trim().to_lowercase());
    let ip_key = format!("ip:{ip}");
    if let Some(wait) = ctx
        .otp_requests
        .blocked(&email_key)
        .or_else(|| ctx.otp_requests_ip.blocked(&ip_key))
    {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: retry_after_secs(wait),
        });
    }
    ctx.otp_requests.hit(&email_key);
    ctx.otp_requests_ip.hit(&ip_key);
    if let Ok(email) = Email::parse(&req.email)
        && let Some(m) = ctx.db.member_by_email(&email).await?
        && m.tenant.status != TenantStatus::Suspended
    {
        let code = secrets::new_otp_code();
        let now = ctx.clock.now();
        let hash = ctx.secrets.otp_hash(m.user.id, &code);
        ctx.db
            .put_otp(
                m.tenant.id,
                m.user.id,
                &hash,
                now + Duration::minutes(5),
                now,
            )
            .await?;
        // Sent off the request path: the answer must not take longer for existing accounts.
        let mailer = ctx.mailer.clone();
        tokio::spawn(async move {
            let body = format!("Your PingLayer sign-in code is {code}. It expires in 5 minutes.");
            if let Err(e) = mailer
                .send(email.as_str(), "Your PingLayer sign-in code", &body)
                .await
            {
                tracing::error!(error = %e, "could not send the sign-in code");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Accepted { status: "accepted" }),
    ))
}

/// Sign in with a one-time code: 6 digits, valid 5 minutes, single use, locked after 5 tries.
#[utoipa::path(post, path = "/api/v1/auth/otp/verify", tag = "auth", request_body = OtpVerify,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_code` or `code_locked`", body = ErrorBody),
    ))]
async fn otp_verify(
    State(ctx): State<ApiContext>,
    Json(req): Json<OtpVerify>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_code",
            "The code is wrong, expired or already used.",
        )
    };
    let email = Email::parse(&req.email).map_err(|_| invalid())?;
    let code = req.code.trim();
    let member = ctx.db.member_by_email(&email).await?.ok_or_else(invalid)?;
    let hash = ctx.secrets.otp_hash(member.user.id, code);
    match ctx
        .db
        .try_otp(member.tenant.id, member.user.id, &hash, 5, ctx.clock.now())
        .await?
    {
        OtpOutcome::Accepted => {
            refuse_suspended(&member)?;
            ctx.db
                .record_login(member.tenant.id, member.user.id, ctx.clock.now())
                .await?;
            Ok(axum::Json(issue_tokens(&ctx, &member).await?))
        }
        OtpOutcome::Locked => Err(ApiError::unauthorized(
            "code_locked",
            "Too many wrong tries; request a new code.",
        )),
        OtpOutcome::Wrong | OtpOutcome::Missing => Err(invalid()),
    }
}
