//! Message templates: created here and submitted to Meta, or pulled from Meta by sync; their
//! review status follows webhooks. Each template lists its variables per language, so that
//! campaigns can map contact fields onto them.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use pinglayer_domain::{FieldError, NumberId, TemplateId, TenantId, page::finish_page};
use pinglayer_store::{
    StoreError,
    numbers::Number,
    templates::{LanguageVersion, Template, TemplateHead, TemplateLanguage},
};
use pinglayer_whatsapp::types::{TemplateCreate, placeholders};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, Page, PageQuery};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::{Json, OptionalJson, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(sync_templates))
}

#[derive(Deserialize, ToSchema)]
pub struct LanguageInput {
    /// `en`, `en_US`, `hi`, `ta`…
    pub language: String,
    /// Meta's component definitions (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`).
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTemplate {
    /// Lower-case letters, digits and underscores (Meta's rule), at most 512.
    pub name: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// `POSITIONAL` (`{{1}}`, default) or `NAMED` (`{{first_name}}`).
    pub parameter_format: Option<String>,
    /// The number whose WABA owns the template; default: the tenant's first number.
    pub number_id: Option<String>,
    pub languages: Vec<LanguageInput>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateTemplate {
    pub category: Option<String>,
    /// New language versions to submit.
    #[serde(default)]
    pub languages: Vec<LanguageInput>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct SyncRequest {
    /// Sync only this number's WABA; default: every WABA of the tenant.
    pub number_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Variables {
    /// Placeholders of the header text, in order (`1`, `2`… or names).
    pub header: Vec<String>,
    pub body: Vec<String>,
    /// Buttons with a variable URL suffix, by index.
    pub buttons: Vec<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct LanguageView {
    pub language: String,
    /// `PENDING`, `APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`…
    pub status: String,
    #[schema(value_type = Vec<Object>)]
    pub components: Value,
    pub variables: Variables,
    pub reason: Option<String>,
    pub meta_id: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    pub id: String,
    pub waba_id: String,
    pub name: String,
    pub category: String,
    pub parameter_format: String,
    pub languages: Vec<LanguageView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn variables(components: &Value) -> Variables {
    let list = components.as_array().cloned().unwrap_or_default();
    let text_of = |kind: &str| {
        list.iter()
            .find(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            })
            .and_then(|c| c["text"].as_str())
            .map(placeholders)
            .unwrap_or_default()
    };
    let buttons = list
        .iter()
        .find(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("buttons"))
        })
        .and_then(|c| c["buttons"].as_array())
        .map(|bs| {
            bs.iter()
                .enumerate()
                .filter(|(_, b)| b["url"].as_str().is_some_and(|u| u.contains("{{")))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    Variables {
        header: text_of("header"),
        body: text_of("body"),
        buttons,
    }
}

fn view(t: &Template, langs: &[TemplateLanguage]) -> TemplateView {
    TemplateView {
        id: t.id.to_string(),
        waba_id: t.waba_id.clone(),
        name: t.name.clone(),
        category: t.category.clone(),
        parameter_format: t.parameter_format.clone(),
        languages: langs
            .iter()
            .map(|l| {
                let components: Value =
                    serde_json::from_str(&l.components).unwrap_or(Value::Array(vec![]));
                LanguageView {
                    language: l.language.clone(),
                    status: l.status.clone(),
                    variables: variables(&components),
                    components,
                    reason: l.reason.clone(),
                    meta_id: l.meta_id.clone(),
                    updated_at: l.updated_at,
                }
            })
            .collect(),
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

fn template_name(name: &str) -> Result<String, FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(FieldError::new(
            "name",
            "must be 1–512 lower-case letters, digits or underscores",
        ))
    }
}

fn category(c: &str) -> Result<String, FieldError> {
    let c = c.trim().to_uppercase();
    if ["MARKETING", "UTILITY", "AUTHENTICATION"].contains(&c.as_str()) {
        Ok(c)
    } else {
        Err(FieldError::new(
            "category",
            "must be MARKETING, UTILITY or AUTHENTICATION",
        ))
    }
}

fn languages(ls: &[LanguageInput]) -> Result<(), FieldError> {
    for l in ls {
        let ok = !l.language.is_empty()
            && l.language.len() <= 15
            && l.language
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_');
        if !ok {
            return Err(FieldError::new(
                "languages",
                format!("{:?} is not a language code (en, en_US, hi…)", l.language),
            ));
        }
        let has_body = l.components.iter().any(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("body"))
        });
        if !has_body {
            return Err(FieldError::new(
                "languages",
                format!("{}: a BODY component is required", l.language),
            ));
        }
    }
    Ok(())
}

/// The number a template request acts through (its WABA and token).
async fn acting_number(
    ctx: &ApiContext,
    tenant: TenantId,
    number_id: Option<&str>,
) -> ApiResult<Number> {
    match number_id {
        Some(id) => {
            let id: NumberId = id
                .parse()
                .map_err(|_| ApiError::field("number_id", "is not a number id"))?;
            match ctx.db.number(tenant, id).await {
                Err(StoreError::NotFound) => Err(ApiError::field("number_id", "no such number")),
                other => Ok(other?),
            }
        }
        None => ctx.db.default_number(tenant).await?.ok_or_else(|| {
            ApiError::unprocessable("no_sending_number", "Connect a WhatsApp number first.")
        }),
    }
}

fn meta_failed(e: pinglayer_whatsapp::ClientError) -> ApiError {
    match e {
        pinglayer_whatsapp::ClientError::Graph { error, .. } => ApiError::unprocessable(
            "whatsapp_rejected",
            format!(
                "Meta refused it ({}): {}",
                error.code,
                error.details().unwrap_or(&error.message)
            ),
        ),
        other => ApiError::BadGateway {
            code: "whatsapp_unavailable",
            message: format!("Meta could not be reached: {other}"),
        },
    }
}

/// Submits language versions to Meta and returns them as stored.
async fn submit(
    ctx: &ApiContext,
    n: &Number,
    name: &str,
    category: &str,
    format: &str,
    ls: &[LanguageInput],
) -> ApiResult<Vec<LanguageVersion>> {
    let token = ctx.token_of(n)?;
    let mut out = Vec::new();
    for l in ls {
        let created = ctx
            .whatsapp
            .create_template(
                &n.waba_id,
                &token,
                &TemplateCreate {
                    name: name.into(),
                    language: l.language.clone(),
                    category: category.into(),
                    parameter_format: Some(format.into()),
                    components: l.components.clone(),
                },
            )
            .await
            .map_err(meta_failed)?;
        out.push(LanguageVersion {
            language: l.language.clone(),
            status: created.status,
            components: serde_json::to_string(&l.components).map_err(anyhow::Error::new)?,
            meta_id: Some(created.id),
            reason: None,
        });
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<TemplateView>)))]
async fn list_templates(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesRead>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<TemplateView>>> {
    let page = q.parse()?;
    let rows = ctx.db.list_templates(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |(t, _)| t.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(|(t, l)| view(t, l)).collect(),
        next_cursor,
    }))
}

/// Create a template and submit each language to Meta for review.
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", request_body = CreateTemplate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = TemplateView), (status = 409, description = "`template_exists`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_template(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesManage>,
    Json(req): Json<CreateTemplate>,
) -> ApiResult<(StatusCode, axum::Json<TemplateView>)> {
    let mut c = super::auth::Checks::new();
    let name = c.take(template_name(&req.name));
    let cat = c.take(category(&req.category));
    let format = req
        .parameter_format
        .as_deref()
        .unwrap_or("POSITIONAL")
        .to_uppercase();
    if format != "POSITIONAL" && format != "NAMED" {
        c.take::<()>(Err(FieldError::new(
            "parameter_format",
            "must be POSITIONAL or NAMED",
        )));
    }
    if req.languages.is_empty() {
        c.take::<()>(Err(FieldError::new(
            "languages",
            "at least one language version is required",
        )));
    }
    c.take(languages(&req.languages));
    c.finish()?;
    let (Some(name), Some(cat)) = (name, cat) else {
        unreachable!("checked")
    };
    let n = acting_number(&ctx, p.tenant.id, req.number_id.as_deref()).await?;
    if ctx
        .db
        .template_version(p.tenant.id, &name, &req.languages[0].language)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "template_exists",
            "A template with this name already exists.",
        ));
    }
    let versions = submit(&ctx, &n, &name, &cat, &format, &req.languages).await?;
    let now = ctx.clock.now();
    let id = match ctx
        .db
        .create_template(
            &TemplateHead {
                tenant: p.tenant.id,
                waba_id: &n.waba_id,
                name: &name,
                category: &cat,
                parameter_format: &format,
            },
            &versions,
            now,
        )
        .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "template_exists",
                "A template with this name already exists.",
            ));
        }
        other => other?,
    };
    let (t, l) = ctx.db.template(p.tenant.id, id).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&t, &l))))
}

#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody)))]
async fn get_template(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesRead>,
    PathId(id): PathId<TemplateId>,
) -> ApiResult<axum::Json<TemplateView>> {
    let (t, l) = ctx.db.template(p.tenant.id, id).await?;
    Ok(axum::Json(view(&t, &l)))
}

/// Change the category, or add language versions (each is submitted to Meta).
#[utoipa::path(patch, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)), request_body = UpdateTemplate, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody), (status = 409, description = "`language_exists`", body = ErrorBody)))]
async fn update_template(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesManage>,
    PathId(id): PathId<TemplateId>,
    Json(req): Json<UpdateTemplate>,
) -> ApiResult<axum::Json<TemplateView>> {
    let (t, langs) = ctx.db.template(p.tenant.id, id).await?;
    let cat = req.category.as_deref().map(category).transpose()?;
    languages(&req.languages)?;
    if let Some(dup) = req
        .languages
        .iter()
        .find(|l| langs.iter().any(|x| x.language == l.language))
    {
        return Err(ApiError::conflict(
            "language_exists",
            format!("The {} version exists already.", dup.language),
        ));
    }
    let now = ctx.clock.now();
    if let Some(cat) = &cat {
        ctx.db
            .update_template_category(p.tenant.id, id, cat, now)
            .await?;
    }
    if !req.languages.is_empty() {
        let numbers = ctx
            .db
            .list_numbers(
                p.tenant.id,
                &pinglayer_domain::PageRequest::parse(Some(500), None)?,
            )
            .await?;
        let n = numbers
            .into_iter()
            .find(|n| n.waba_id == t.waba_id)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "no_sending_number",
                    "No connected number holds this template's WABA.",
                )
            })?;
        let versions = submit(
            &ctx,
            &n,
            &t.name,
            cat.as_deref().unwrap_or(&t.category),
            &t.parameter_format,
            &req.languages,
        )
        .await?;
        for v in &versions {
            ctx.db
                .put_template_language(p.tenant.id, id, v, now)
                .await?;
        }
    }
    let (t, l) = ctx.db.template(p.tenant.id, id).await?;
    Ok(axum::Json(view(&t, &l)))
}

/// Delete a template (every language) here and at Meta.
#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_template(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesManage>,
    PathId(id): PathId<TemplateId>,
) -> ApiResult<StatusCode> {
    let (t, _) = ctx.db.template(p.tenant.id, id).await?;
    let numbers = ctx
        .db
        .list_numbers(
            p.tenant.id,
            &pinglayer_domain::PageRequest::parse(Some(500), None)?,
        )
        .await?;
    if let Some(n) = numbers.into_iter().find(|n| n.waba_id == t.waba_id) {
        let token = ctx.token_of(&n)?;
        match ctx
            .whatsapp
            .delete_template(&t.waba_id, &token, &t.name, None)
            .await
        {
            Ok(_) => {}
            // Already gone at Meta: nothing left to undo there.
            Err(pinglayer_whatsapp::ClientError::Graph { status: 404, .. }) => {}
            Err(e) => return Err(meta_failed(e)),
        }
    }
    ctx.db.delete_template(p.tenant.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SyncResult {
    /// Templates (names) brought up to date.
    pub templates: usize,
    /// Language versions seen at Meta.
    pub languages: usize,
}

/// Pull the WABA's templates and their statuses from Meta.
#[utoipa::path(post, path = "/api/v1/templates/sync", tag = "templates", request_body = SyncRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SyncResult), (status = 502, body = ErrorBody)))]
async fn sync_templates(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TemplatesManage>,
    OptionalJson(req): OptionalJson<SyncRequest>,
) -> ApiResult<axum::Json<SyncResult>> {
    let numbers = match req.number_id.as_deref() {
        Some(_) => vec![acting_number(&ctx, p.tenant.id, req.number_id.as_deref()).await?],
        None => {
            ctx.db
                .list_numbers(
                    p.tenant.id,
                    &pinglayer_domain::PageRequest::parse(Some(500), None)?,
                )
                .await?
        }
    };
    let mut seen_waba = std::collections::HashSet::new();
    let mut result = SyncResult {
        templates: 0,
        languages: 0,
    };
    let now = ctx.clock.now();
    for n in numbers
        .iter()
        .filter(|n| seen_waba.insert(n.waba_id.clone()))
    {
        let token = ctx.token_of(n)?;
        let infos = ctx
            .whatsapp
            .all_templates(&n.waba_id, &token)
            .await
            .map_err(meta_failed)?;
        let mut by_name: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for i in infos {
            by_name.entry(i.name.clone()).or_default().push(i);
        }
        for (name, versions) in by_name {
            let first = &versions[0];
            let stored: Vec<LanguageVersion> = versions
                .iter()
                .map(|v| LanguageVersion {
                    language: v.language.clone(),
                    status: v.status.clone(),
                    components: serde_json::to_string(&v.components)
                        .unwrap_or_else(|_| "[]".into()),
                    meta_id: Some(v.id.clone()),
                    reason: v.rejected_reason.clone().filter(|r| r != "NONE"),
                })
                .collect();
            result.languages += stored.len();
            ctx.db
                .sync_template(
                    &TemplateHead {
                        tenant: p.tenant.id,
                        waba_id: &n.waba_id,
                        name: &name,
                        category: &first.category,
                        parameter_format: first.parameter_format.as_deref().unwrap_or("POSITIONAL"),
                    },
                    &stored,
                    now,
                )
                .await?;
            result.templates += 1;
        }
    }
    Ok(axum::Json(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_are_described() {
        let v = variables(&json!([
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships {{3}}. {{1}}!"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"}, {"type": "URL", "text": "Track", "url": "https://x.test/{{1}}"}]}
        ]));
        assert_eq!(v.header, vec!["1"]);
        assert_eq!(v.body, vec!["1", "2", "3"]);
        assert_eq!(v.buttons, vec![1]);
        assert_eq!(
            placeholders("Hello {{first_name}} from {{ shop }}"),
            vec!["first_name", "shop"]
        );
    }
}
