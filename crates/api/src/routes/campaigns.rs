//! Campaigns: a template sent to an audience now, later or on a schedule; their state moves,
//! runs, counters, recipients and retargeting. The engine does the sending
//! (`pinglayer_engine::campaigns` fans out, the dispatcher renders and sends).

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use pinglayer_domain::{
    CampaignId, ContactId, NumberId, PhoneE164, RunId, TenantId,
    billing::Category,
    campaign::{
        Audience, CampaignAction, CampaignStatus, ContactData, ParamPlan, Parameters, Quiet,
        QuietHours, Retarget, RetargetWho, Schedule, ScheduleInput,
    },
    page::finish_page,
};
use pinglayer_engine::campaigns::{Plan, PlanError};
use pinglayer_store::{
    StoreError,
    campaigns::{AudienceSql, Campaign, CampaignSpec, Counters, Recipient, Refused, Run},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    messages::{Checked, MessageView, Recipient as To, queue},
    views::{ErrorBody, Page, PageQuery},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    export,
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign, update_campaign, delete_campaign))
        .routes(routes!(launch))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(test_send))
        .routes(routes!(retarget))
        .routes(routes!(list_runs))
        .routes(routes!(stats))
        .routes(routes!(recipients))
        .routes(routes!(export_recipients))
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct TemplateRef {
    pub name: String,
    /// The default language: contacts get their own language's version when it is approved.
    pub language: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CampaignRequest {
    pub name: String,
    /// The sending number; the tenant's default number when omitted.
    pub number_id: Option<String>,
    pub template: TemplateRef,
    /// `{"body": [{"source": "contact.name", "fallback": "Customer"}, {"source": "attributes.city"}],
    ///   "header": [...], "buttons": [{"index": 0, "text": "SALE"}]}`
    #[serde(default)]
    pub parameters: Parameters,
    pub audience: Audience,
    /// Omitted: send at launch. `{"at": "2026-12-01T09:00:00Z"}` or
    /// `{"cron": "0 9 * * MON", "timezone": "Asia/Kolkata", "ends_at": …}`.
    #[serde(default)]
    pub schedule: ScheduleInput,
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Deserialize, ToSchema)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub number_id: Option<String>,
    pub template: Option<TemplateRef>,
    pub parameters: Option<Parameters>,
    pub audience: Option<Audience>,
    pub schedule: Option<ScheduleInput>,
    /// `null` keeps them; send `{"quiet_hours": {"start": …}}` to set.
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub number_id: String,
    pub template: TemplateRef,
    pub parameters: Parameters,
    pub audience: Audience,
    pub schedule: ScheduleInput,
    pub quiet_hours: Option<QuietHours>,
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// The campaign this one retargets.
    pub parent_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn view(c: &Campaign) -> CampaignView {
    CampaignView {
        id: c.id.to_string(),
        name: c.name.clone(),
        number_id: c.number_id.to_string(),
        template: TemplateRef {
            name: c.template_name.clone(),
            language: c.default_language.clone(),
        },
        parameters: serde_json::from_str(&c.parameters).unwrap_or_default(),
        audience: serde_json::from_str(&c.audience).unwrap_or_default(),
        schedule: serde_json::from_str(&c.schedule).unwrap_or_default(),
        quiet_hours: c
            .quiet_hours
            .as_deref()
            .and_then(|q| serde_json::from_str(q).ok()),
        status: c.status,
        status_reason: c.status_reason.clone(),
        next_run_at: c.next_run_at,
        parent_id: c.parent_id.map(|p| p.to_string()),
        created_at: c.created_at,
        updated_at: c.updated_at,
        launched_at: c.launched_at,
        finished_at: c.finished_at,
    }
}

/// A campaign definition checked against what the tenant has: number, template, parameter
/// count, audience references, schedule and quiet hours.
async fn check(
    ctx: &ApiContext,
    tenant: TenantId,
    req: CampaignRequest,
) -> ApiResult<CampaignSpec> {
    let CampaignRequest {
        name,
        number_id,
        template,
        parameters,
        audience,
        schedule,
        quiet_hours,
    } = req;
    let (number_id, template, parameters, schedule, quiet) = (
        number_id.as_deref(),
        &template,
        &parameters,
        &schedule,
        quiet_hours.as_ref(),
    );
    let name = super::auth::required_text("name", &name, 200)?;
    let number = match number_id {
        Some(raw) => {
            let id: NumberId = raw
                .parse()
                .map_err(|_| ApiError::field("number_id", "is not a number id"))?;
            match ctx.db.number(tenant, id).await {
                Err(StoreError::NotFound) => {
                    return Err(ApiError::field("number_id", "no such number"));
                }
                other => other?,
            }
        }
        None => ctx.db.default_number(tenant).await?.ok_or_else(|| {
            ApiError::unprocessable("no_sending_number", "Connect a WhatsApp number first.")
        })?,
    };
    let links = ParamPlan::parse(parameters)?.link_ids();
    if !links.is_empty() && ctx.db.link_keys(tenant, &links).await?.len() != links.len() {
        return Err(ApiError::field("parameters", "no such smart link"));
    }
    let audience = audience.check()?;
    if let Some(s) = audience.segment_id
        && matches!(ctx.db.segment(tenant, s).await, Err(StoreError::NotFound))
    {
        return Err(ApiError::field("audience", "no such segment"));
    }
    if let Some(r) = &audience.retarget
        && matches!(
            ctx.db.campaign(tenant, r.campaign_id).await,
            Err(StoreError::NotFound)
        )
    {
        return Err(ApiError::field("audience", "no such campaign to retarget"));
    }
    Schedule::parse(schedule)?;
    if let Some(q) = quiet {
        Quiet::parse(q)?;
    }
    let Some((_, langs)) = ctx.db.template_named(tenant, &template.name).await? else {
        return Err(ApiError::unprocessable(
            "template_not_found",
            format!("No template {}; create or sync it first.", template.name),
        ));
    };
    if let Some(l) = langs.iter().find(|l| l.language == template.language) {
        let defs: Value = serde_json::from_str(&l.components).unwrap_or(Value::Null);
        let vars = super::templates::variables(&defs);
        for (kind, expected, given) in [
            ("header", &vars.header, parameters.header.len()),
            ("body", &vars.body, parameters.body.len()),
        ] {
            if given != expected.len() {
                return Err(ApiError::unprocessable(
                    "template_parameter_mismatch",
                    format!(
                        "The {kind} of {} takes {} parameter(s) ({}); {given} mapped.",
                        template.name,
                        expected.len(),
                        expected.join(", ")
                    ),
                ));
            }
        }
    } else {
        return Err(ApiError::unprocessable(
            "template_not_found",
            format!(
                "Template {} has no {} version.",
                template.name, template.language
            ),
        ));
    }
    Ok(CampaignSpec {
        name,
        number_id: number.id,
        template_name: template.name.clone(),
        default_language: template.language.clone(),
        parameters: json(parameters),
        audience: json(&audience),
        schedule: json(schedule),
        quiet_hours: quiet.map(json),
    })
}

/// A campaign's part as stored JSON (these types always serialise).
fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn refused(action: &str, r: Refused) -> ApiError {
    match (action, r.from) {
        ("cancel", CampaignStatus::Cancelled) => ApiError::conflict(
            "campaign_already_cancelled",
            "This campaign is cancelled already.",
        ),
        ("edit", from) => ApiError::conflict(
            "campaign_not_editable",
            format!("A {from} campaign cannot be edited; only drafts and scheduled ones can."),
        ),
        ("delete", from) => ApiError::conflict(
            "campaign_active",
            format!("A {from} campaign cannot be deleted; pause and cancel it first."),
        ),
        (action, from) => ApiError::conflict(
            "invalid_campaign_transition",
            format!("Cannot {action} a {from} campaign."),
        ),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct CampaignQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only campaigns in this state.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", params(CampaignQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<CampaignView>)))]
async fn list_campaigns(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    Query(q): Query<CampaignQuery>,
) -> ApiResult<axum::Json<Page<CampaignView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<CampaignStatus>()
                .map_err(|_| ApiError::field("status", "is not a campaign status"))
        })
        .transpose()?;
    let rows = ctx.db.list_campaigns(p.tenant.id, &page, status).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |c| c.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Create a draft campaign.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = CampaignRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = CampaignView), (status = 422, description = "`template_not_found`, `template_parameter_mismatch`, `no_sending_number`, field errors", body = ErrorBody)))]
async fn create_campaign(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    Json(req): Json<CampaignRequest>,
) -> ApiResult<(StatusCode, axum::Json<CampaignView>)> {
    let spec = check(&ctx, p.tenant.id, req).await?;
    let c = ctx
        .db
        .create_campaign(
            p.tenant.id,
            &spec,
            None,
            p.user().map(|u| u.id),
            ctx.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view(&c))))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)))]
async fn get_campaign(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<CampaignView>> {
    Ok(axum::Json(view(&ctx.db.campaign(p.tenant.id, id).await?)))
}

/// Edit a draft or scheduled campaign (409 `campaign_not_editable` otherwise).
#[utoipa::path(patch, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)), request_body = CampaignPatch, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, description = "`campaign_not_editable`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_campaign(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
    Json(req): Json<CampaignPatch>,
) -> ApiResult<axum::Json<CampaignView>> {
    let tenant = p.tenant.id;
    let cur = view(&ctx.db.campaign(tenant, id).await?);
    if !cur.status.editable() {
        return Err(refused("edit", Refused { from: cur.status }));
    }
    let number = req.number_id.clone().unwrap_or(cur.number_id.clone());
    let template = req.template.clone().unwrap_or(cur.template.clone());
    let parameters = req.parameters.clone().unwrap_or(cur.parameters.clone());
    let audience = req.audience.clone().unwrap_or(cur.audience.clone());
    let schedule = req.schedule.clone().unwrap_or(cur.schedule.clone());
    let quiet = req.quiet_hours.clone().or(cur.quiet_hours.clone());
    let spec = check(
        &ctx,
        tenant,
        CampaignRequest {
            name: req.name.clone().unwrap_or(cur.name.clone()),
            number_id: Some(number),
            template,
            parameters,
            audience,
            schedule: schedule.clone(),
            quiet_hours: quiet,
        },
    )
    .await?;
    let now = ctx.clock.now();
    let next = Schedule::parse(&schedule)?.first(now);
    let c = ctx
        .db
        .update_campaign(tenant, id, &spec, next, now)
        .await?
        .map_err(|r| refused("edit", r))?;
    ctx.wake_campaigns.notify_one();
    Ok(axum::Json(view(&c)))
}

/// Delete a campaign (kept for its statistics, hidden from lists). 409 `campaign_active` while
/// it is running or paused.
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "`campaign_active`", body = ErrorBody)))]
async fn delete_campaign(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<StatusCode> {
    ctx.db
        .delete_campaign(p.tenant.id, id, ctx.clock.now())
        .await?
        .map_err(|r| refused("delete", r))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Launch a draft: it is scheduled for its first occurrence (now, `at`, or the next cron time).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/launch", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody),
        (status = 409, description = "`invalid_campaign_transition`, `empty_audience`, `template_not_approved`", body = ErrorBody),
        (status = 422, description = "`schedule_in_the_past`", body = ErrorBody)))]
async fn launch(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<CampaignView>> {
    let tenant = p.tenant.id;
    let c = ctx.db.campaign(tenant, id).await?;
    if c.status != CampaignStatus::Draft {
        return Err(refused("launch", Refused { from: c.status }));
    }
    match Plan::load(&ctx.db, &c).await? {
        Ok(_) => {}
        Err(PlanError::NotApproved(t, l)) => {
            return Err(ApiError::conflict(
                "template_not_approved",
                format!("Template {t} is not approved in {l}; wait for Meta's review."),
            ));
        }
        Err(PlanError::TemplateMissing(t)) => {
            return Err(ApiError::conflict(
                "template_not_approved",
                format!("Template {t} does not exist any more."),
            ));
        }
        Err(PlanError::Invalid(e)) => return Err(ApiError::unprocessable("invalid_campaign", e)),
    }
    let now = ctx.clock.now();
    let audience: Audience = serde_json::from_str(&c.audience).map_err(anyhow::Error::new)?;
    let audience = match AudienceSql::resolve(&ctx.db, tenant, &audience).await {
        Ok(a) => a,
        Err(StoreError::NotFound) => {
            return Err(ApiError::conflict(
                "empty_audience",
                "The audience's segment no longer exists.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // A retargeting audience is only known once its source campaign has sent.
    if ctx.db.audience_size(tenant, &audience, now).await? == 0 {
        return Err(ApiError::conflict(
            "empty_audience",
            "The audience has no contacts; nothing would be sent.",
        ));
    }
    let schedule: ScheduleInput = serde_json::from_str(&c.schedule).map_err(anyhow::Error::new)?;
    let Some(first) = Schedule::parse(&schedule)?.first(now) else {
        return Err(ApiError::unprocessable(
            "schedule_in_the_past",
            "The schedule has no occurrence after now.",
        ));
    };
    let c = ctx
        .db
        .launch_campaign(tenant, id, first, now)
        .await?
        .map_err(|r| refused("launch", r))?;
    ctx.wake_campaigns.notify_one();
    Ok(axum::Json(view(&c)))
}

async fn move_to(
    ctx: &ApiContext,
    tenant: TenantId,
    id: CampaignId,
    action: CampaignAction,
    name: &str,
) -> ApiResult<axum::Json<CampaignView>> {
    let c = ctx
        .db
        .move_campaign(tenant, id, action, ctx.clock.now())
        .await?
        .map_err(|r| refused(name, r))?;
    ctx.wake_dispatch.notify_one();
    ctx.wake_campaigns.notify_one();
    Ok(axum::Json(view(&c)))
}

/// Pause sending: queued messages wait until resumed.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, description = "`invalid_campaign_transition`", body = ErrorBody)))]
async fn pause(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<CampaignView>> {
    move_to(&ctx, p.tenant.id, id, CampaignAction::Pause, "pause").await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, description = "`invalid_campaign_transition`", body = ErrorBody)))]
async fn resume(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<CampaignView>> {
    move_to(
        &ctx,
        p.tenant.id,
        id,
        CampaignAction::Resume { running: true },
        "resume",
    )
    .await
}

/// Cancel: nothing more is sent; queued messages are marked `failed` (`campaign_cancelled`).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, description = "`campaign_already_cancelled`, `invalid_campaign_transition`", body = ErrorBody)))]
async fn cancel(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<CampaignView>> {
    move_to(&ctx, p.tenant.id, id, CampaignAction::Cancel, "cancel").await
}

#[derive(Deserialize, ToSchema)]
pub struct TestRequest {
    /// A phone number (E.164; national numbers need `default_country`).
    pub to: String,
    pub default_country: Option<String>,
}

/// Send the campaign's message once to `to`, filled from the contact with that phone if there
/// is one (otherwise with the fallbacks).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/test", tag = "campaigns", params(("id" = String, Path)), request_body = TestRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = MessageView), (status = 404, body = ErrorBody), (status = 409, description = "`template_not_approved`", body = ErrorBody), (status = 422, description = "`missing_parameter`, field errors", body = ErrorBody)))]
async fn test_send(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
    Json(req): Json<TestRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let tenant = p.tenant.id;
    let c = ctx.db.campaign(tenant, id).await?;
    let plan = match Plan::load(&ctx.db, &c).await? {
        Ok(plan) => plan,
        Err(e) => return Err(ApiError::conflict("template_not_approved", e.to_string())),
    };
    let country = req
        .default_country
        .as_ref()
        .or(p.tenant.default_country.as_ref());
    let phone = PhoneE164::parse(&req.to, country.map(String::as_str))
        .map_err(|e| ApiError::field("to", e.message))?;
    let contact = ctx.db.contact_by_phone(tenant, phone.as_str()).await?;
    let empty = Value::Object(Default::default());
    let content = match &contact {
        Some(ct) => plan.render(ct),
        None => plan.render_for(&ContactData {
            name: None,
            phone: phone.as_str(),
            email: None,
            language: None,
            attributes: &empty,
        }),
    }
    .map_err(|why| ApiError::unprocessable("missing_parameter", why))?;
    let number = ctx.db.number(tenant, c.number_id).await?;
    let (m, _) = queue(
        &ctx,
        tenant,
        &number,
        To::Phone(phone),
        Checked {
            content,
            // A test goes to the sender's own staff: consent is theirs to give.
            marketing: false,
            category: Category::of_template(&plan.category),
        },
        None,
        None,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(MessageView::new(&m, None))))
}

#[derive(Deserialize, ToSchema)]
pub struct RetargetRequest {
    pub who: RetargetWho,
}

/// Create a draft aimed at some recipients of this campaign (evaluated when it is launched).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/retarget", tag = "campaigns", params(("id" = String, Path)), request_body = RetargetRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, description = "`campaign_not_sent`", body = ErrorBody)))]
async fn retarget(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<CampaignId>,
    Json(req): Json<RetargetRequest>,
) -> ApiResult<(StatusCode, axum::Json<CampaignView>)> {
    let tenant = p.tenant.id;
    let c = ctx.db.campaign(tenant, id).await?;
    if ctx.db.latest_run(tenant, id).await?.is_none() {
        return Err(ApiError::conflict(
            "campaign_not_sent",
            "This campaign has not sent anything yet; there is no one to retarget.",
        ));
    }
    let who = serde_json::to_value(req.who)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let audience = Audience {
        retarget: Some(Retarget {
            campaign_id: id,
            who: req.who,
        }),
        ..Default::default()
    };
    let spec = CampaignSpec {
        name: format!("{} — retarget {who}", c.name),
        number_id: c.number_id,
        template_name: c.template_name.clone(),
        default_language: c.default_language.clone(),
        parameters: serde_json::from_str(&c.parameters).unwrap_or(Value::Null),
        audience: serde_json::to_value(&audience).map_err(anyhow::Error::new)?,
        schedule: serde_json::json!({}),
        quiet_hours: c
            .quiet_hours
            .as_deref()
            .and_then(|q| serde_json::from_str(q).ok()),
    };
    let d = ctx
        .db
        .create_campaign(
            tenant,
            &spec,
            Some(id),
            p.user().map(|u| u.id),
            ctx.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view(&d))))
}

#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub occurrence_at: DateTime<Utc>,
    /// `running`, `completed` or `cancelled`.
    pub status: String,
    pub fanout_done: bool,
    #[schema(value_type = Object)]
    pub counters: Counters,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn run_view(r: &Run) -> RunView {
    RunView {
        id: r.id.to_string(),
        occurrence_at: r.occurrence_at,
        status: r.status.clone(),
        fanout_done: r.fanout_done,
        counters: r.counters.clone(),
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

/// One run per occurrence (one for a one-off campaign), newest first.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/runs", tag = "campaigns", params(("id" = String, Path), PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<RunView>), (status = 404, body = ErrorBody)))]
async fn list_runs(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<CampaignId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<RunView>>> {
    ctx.db.campaign(p.tenant.id, id).await?;
    let page = q.parse()?;
    let rows = ctx.db.campaign_runs(p.tenant.id, id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |r| r.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(run_view).collect(),
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct StatsView {
    pub campaign_id: String,
    pub status: CampaignStatus,
    pub runs: i64,
    /// Contacts the audience held (queued + skipped).
    pub targeted: i64,
    pub skipped: i64,
    /// Skipped contacts by reason.
    #[schema(value_type = Object)]
    pub skipped_by_reason: Value,
    pub queued: i64,
    /// Queued and not yet handed to Meta.
    pub pending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub replied: i64,
    /// delivered / sent.
    pub delivery_rate: f64,
    /// read / delivered.
    pub read_rate: f64,
    /// replied / delivered.
    pub reply_rate: f64,
    /// Clicks by people on the campaign's smart links (bots and previews excluded).
    pub clicks: i64,
    /// Recipients who clicked their personal link (once per run and contact).
    pub unique_clickers: i64,
    /// unique clickers / delivered.
    pub click_through_rate: f64,
    /// targeted → sent → delivered → read → clicked → replied.
    pub funnel: Vec<FunnelStep>,
    /// What its sends cost, net of refunds, in the operator's currency.
    pub cost: pinglayer_domain::billing::Money,
}

/// One stage of a campaign's funnel, with its share of the audience targeted.
#[derive(Serialize, ToSchema)]
pub struct FunnelStep {
    pub stage: &'static str,
    pub count: i64,
    /// count / targeted.
    pub rate: f64,
}

fn funnel(t: &Counters, clickers: i64) -> Vec<FunnelStep> {
    [
        ("targeted", t.targeted),
        ("sent", t.sent),
        ("delivered", t.delivered),
        ("read", t.read),
        ("clicked", clickers),
        ("replied", t.replied),
    ]
    .into_iter()
    .map(|(stage, count)| FunnelStep {
        stage,
        count,
        rate: rate(count, t.targeted),
    })
    .collect()
}

fn rate(a: i64, b: i64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}

/// Counters kept as messages move (never a scan of the messages).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/stats", tag = "campaigns", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = StatsView), (status = 404, body = ErrorBody)))]
async fn stats(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<CampaignId>,
) -> ApiResult<axum::Json<StatsView>> {
    let c = ctx.db.campaign(p.tenant.id, id).await?;
    let (t, runs) = ctx.db.campaign_counters(p.tenant.id, id).await?;
    let (clicks, clickers) = ctx.db.campaign_clicks(p.tenant.id, id).await?;
    Ok(axum::Json(StatsView {
        campaign_id: id.to_string(),
        status: c.status,
        runs,
        targeted: t.targeted,
        skipped: t.skipped,
        skipped_by_reason: serde_json::json!({ "opted_out": t.skipped_opted_out }),
        queued: t.queued,
        pending: (t.queued - t.done).max(0),
        sent: t.sent,
        delivered: t.delivered,
        read: t.read,
        failed: t.failed,
        cancelled: t.cancelled,
        replied: t.replied,
        delivery_rate: rate(t.delivered, t.sent),
        read_rate: rate(t.read, t.delivered),
        reply_rate: rate(t.replied, t.delivered),
        clicks,
        unique_clickers: clickers,
        click_through_rate: rate(clickers, t.delivered),
        funnel: funnel(&t, clickers),
        cost: ctx.db.campaign_cost(p.tenant.id, id).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct RecipientQuery {
    /// `queued`, `sending`, `sent`, `delivered`, `read`, `failed`, `replied` or `skipped`.
    pub status: Option<String>,
    /// A run of the campaign; its latest run when omitted.
    pub run_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Export only: `csv` (default) or `xlsx`.
    pub format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecipientView {
    pub contact_id: String,
    pub message_id: Option<String>,
    pub name: Option<String>,
    pub phone: String,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
}

fn recipient_view(r: &Recipient) -> RecipientView {
    RecipientView {
        contact_id: r.contact_id.to_string(),
        message_id: r.message_id.map(|m| m.to_string()),
        name: r.name.clone(),
        phone: r.phone.clone(),
        status: r.status.clone(),
        error_code: r.error_code,
        error_title: r.error_title.clone(),
        sent_at: r.sent_at,
        delivered_at: r.delivered_at,
        read_at: r.read_at,
        failed_at: r.failed_at,
        replied_at: r.replied_at,
    }
}

const STATUSES: [&str; 8] = [
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "replied",
    "skipped",
];

async fn run_of(
    ctx: &ApiContext,
    tenant: TenantId,
    campaign: CampaignId,
    q: &RecipientQuery,
) -> ApiResult<Option<RunId>> {
    ctx.db.campaign(tenant, campaign).await?;
    if let Some(s) = q.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::field(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    match q.run_id.as_deref() {
        Some(raw) => {
            let id: RunId = raw
                .parse()
                .map_err(|_| ApiError::field("run_id", "is not a run id"))?;
            let run = match ctx.db.run(tenant, id).await {
                Err(StoreError::NotFound) => return Err(ApiError::field("run_id", "no such run")),
                other => other?,
            };
            if run.campaign_id != campaign {
                return Err(ApiError::field("run_id", "is not a run of this campaign"));
            }
            Ok(Some(id))
        }
        None => Ok(ctx.db.latest_run(tenant, campaign).await?.map(|r| r.id)),
    }
}

/// Who got the campaign and how it went for each, in contact order.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/recipients", tag = "campaigns", params(("id" = String, Path), RecipientQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<RecipientView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn recipients(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<CampaignId>,
    Query(q): Query<RecipientQuery>,
) -> ApiResult<axum::Json<Page<RecipientView>>> {
    let tenant = p.tenant.id;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let Some(run) = run_of(&ctx, tenant, id, &q).await? else {
        return Ok(axum::Json(Page {
            data: vec![],
            next_cursor: None,
        }));
    };
    let rows = ctx
        .db
        .recipients(
            tenant,
            run,
            q.status.as_deref(),
            page.after.map(|c| ContactId(c.0)),
            page.fetch_limit(),
        )
        .await?;
    let (rows, next_cursor) = finish_page(rows, &page, |r| r.contact_id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(recipient_view).collect(),
        next_cursor,
    }))
}

const EXPORT_COLUMNS: [&str; 12] = [
    "contact_id",
    "name",
    "phone",
    "status",
    "error_code",
    "error_title",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replied_at",
    "message_id",
];

fn export_row(r: &Recipient) -> [String; 12] {
    let t = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    [
        r.contact_id.to_string(),
        r.name.clone().unwrap_or_default(),
        r.phone.clone(),
        r.status.clone(),
        r.error_code.map(|c| c.to_string()).unwrap_or_default(),
        r.error_title.clone().unwrap_or_default(),
        t(r.sent_at),
        t(r.delivered_at),
        t(r.read_at),
        t(r.failed_at),
        t(r.replied_at),
        r.message_id.map(|m| m.to_string()).unwrap_or_default(),
    ]
}

/// The recipients (same filters) as CSV, streamed, or XLSX.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/recipients/export", tag = "campaigns", params(("id" = String, Path), RecipientQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn export_recipients(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<CampaignId>,
    Query(q): Query<RecipientQuery>,
) -> ApiResult<axum::response::Response> {
    let tenant = p.tenant.id;
    let format = export::Format::parse(q.format.as_deref())?;
    let run = run_of(&ctx, tenant, id, &q).await?;
    let status = q.status.clone();
    const PAGE: i64 = 1000;
    export::export(
        format,
        "recipients",
        &EXPORT_COLUMNS,
        move |after: Option<ContactId>| {
            let (ctx, status) = (ctx.clone(), status.clone());
            async move {
                let Some(run) = run else {
                    return Ok((vec![], None));
                };
                let rows = ctx
                    .db
                    .recipients(tenant, run, status.as_deref(), after, PAGE)
                    .await?;
                let next = if (rows.len() as i64) < PAGE {
                    None
                } else {
                    rows.last().map(|r| r.contact_id)
                };
                Ok((rows.iter().map(|r| export_row(r).to_vec()).collect(), next))
            }
        },
    )
    .await
}
