//! Money: a tenant's balance, ledger, prices, plans and usage; and the operator's side of it
//! (top-ups, adjustments, the price list, plans and their assignment, everyone's usage).

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Utc};
use pinglayer_domain::{
    PlanId, TenantId,
    billing::{Category, Limits, Money, PriceList, period_bounds, period_of},
    page::finish_page,
};
use pinglayer_store::{
    StoreError,
    billing::{CurrentPlan, EntryKind, LedgerEntry, LedgerFilter, NewEntry, Plan, Posted, Usage},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, Page, PageQuery};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, Authenticated, Principal, perm, secrets::sha256_hex},
    export,
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(settings))
        .routes(routes!(ledger))
        .routes(routes!(export_ledger))
        .routes(routes!(events))
        .routes(routes!(prices))
        .routes(routes!(usage))
        .routes(routes!(list_plans))
        .routes(routes!(top_up))
        .routes(routes!(adjust))
        .routes(routes!(tenant_balance))
        .routes(routes!(get_pricing, put_pricing))
        .routes(routes!(create_plan))
        .routes(routes!(update_plan))
        .routes(routes!(assign_plan))
        .routes(routes!(all_usage))
}

const DEFAULT_CURRENCY: &str = "USD";

async fn price_list(ctx: &ApiContext) -> ApiResult<PriceList> {
    Ok(ctx
        .db
        .price_list()
        .await?
        .unwrap_or_else(|| PriceList::empty(DEFAULT_CURRENCY)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub balance: Money,
    /// ISO 4217 code of the operator's currency.
    pub currency: String,
    /// Below this, a `low_balance` event is raised (0: never).
    pub low_balance_threshold: Money,
    pub low_balance: bool,
}

async fn balance_of(ctx: &ApiContext, tenant: TenantId) -> ApiResult<BalanceView> {
    let w = ctx.db.wallet(tenant).await?;
    Ok(BalanceView {
        balance: w.balance,
        currency: price_list(ctx).await?.currency,
        low_balance_threshold: w.low_balance_threshold,
        low_balance: w.low_balance_threshold.0 > 0 && w.balance < w.low_balance_threshold,
    })
}

/// The tenant's prepaid balance.
#[utoipa::path(get, path = "/api/v1/billing/balance", tag = "billing", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BalanceView), (status = 403, body = ErrorBody)))]
async fn balance(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::BillingRead>,
) -> ApiResult<axum::Json<BalanceView>> {
    Ok(axum::Json(balance_of(&ctx, p.tenant.id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SettingsRequest {
    /// Falling below it raises a `low_balance` event; 0 turns it off.
    #[schema(value_type = f64)]
    pub low_balance_threshold: Value,
}

/// Set the low-balance threshold (owners).
#[utoipa::path(put, path = "/api/v1/billing/settings", tag = "billing", request_body = SettingsRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BalanceView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn settings(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::TenantManage>,
    Json(req): Json<SettingsRequest>,
) -> ApiResult<axum::Json<BalanceView>> {
    let t = Money::from_json("low_balance_threshold", &req.low_balance_threshold)?;
    if t.0 < 0 {
        return Err(ApiError::field(
            "low_balance_threshold",
            "cannot be negative",
        ));
    }
    ctx.db
        .set_low_balance_threshold(p.tenant.id, t, ctx.clock.now())
        .await?;
    Ok(axum::Json(balance_of(&ctx, p.tenant.id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    pub id: String,
    /// `credit`, `debit`, `refund` or `adjustment`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Signed: debits are negative.
    pub amount: Money,
    pub balance_before: Money,
    pub balance_after: Money,
    /// `topup`, `message`, `campaign` (a batch of its messages) or `adjustment`.
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    /// Messages a debit covers.
    pub quantity: i64,
    /// `user:<id>`, `api_key:<id>` or `system`.
    pub actor: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&LedgerEntry> for LedgerView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerView {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            amount: Money(e.amount),
            balance_before: Money(e.balance_before),
            balance_after: Money(e.balance_after),
            reference_type: e.reference_type.clone(),
            reference_id: e.reference_id.clone(),
            quantity: e.quantity,
            actor: e.actor.clone(),
            note: e.note.clone(),
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// `credit`, `debit`, `refund` or `adjustment`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Entries before this instant.
    pub to: Option<DateTime<Utc>>,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    /// Export only: `csv` (default) or `xlsx`.
    pub format: Option<String>,
}

impl LedgerQuery {
    fn filter(&self) -> ApiResult<LedgerFilter> {
        let kind = match self.kind.as_deref() {
            None => None,
            Some(k) => Some(EntryKind::parse(k).ok_or_else(|| {
                ApiError::field("type", "must be credit, debit, refund or adjustment")
            })?),
        };
        Ok(LedgerFilter {
            kind,
            from: self.from,
            to: self.to,
            reference_type: self.reference_type.clone(),
            reference_id: self.reference_id.clone(),
        })
    }
}

/// The ledger, newest first: every change of the balance.
#[utoipa::path(get, path = "/api/v1/billing/ledger", tag = "billing", params(LedgerQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<LedgerView>), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn ledger(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::BillingRead>,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    // `?format=` here is a shortcut for the export.
    if q.format.is_some() {
        return ledger_export(ctx, p.tenant.id, q).await;
    }
    Ok(axum::Json(ledger_page(&ctx, p.tenant.id, &q).await?).into_response())
}

async fn ledger_page(
    ctx: &ApiContext,
    tenant: TenantId,
    q: &LedgerQuery,
) -> ApiResult<Page<LedgerView>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let rows = ctx.db.ledger(tenant, &q.filter()?, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |e| e.id.0);
    Ok(Page {
        data: rows.iter().map(LedgerView::from).collect(),
        next_cursor,
    })
}

const LEDGER_COLUMNS: [&str; 11] = [
    "id",
    "created_at",
    "type",
    "amount",
    "balance_before",
    "balance_after",
    "reference_type",
    "reference_id",
    "quantity",
    "actor",
    "note",
];

async fn ledger_export(
    ctx: ApiContext,
    tenant: TenantId,
    q: LedgerQuery,
) -> ApiResult<axum::response::Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let filter = std::sync::Arc::new(q.filter()?);
    export::export(
        format,
        "ledger",
        &LEDGER_COLUMNS,
        move |cursor: Option<String>| {
            let (ctx, filter) = (ctx.clone(), filter.clone());
            async move {
                let page = pinglayer_domain::PageRequest::parse(Some(500), cursor.as_deref())?;
                let rows = ctx.db.ledger(tenant, &filter, &page).await?;
                let (rows, next) = finish_page(rows, &page, |e| e.id.0);
                let cells = rows
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.to_string(),
                            e.created_at.to_rfc3339(),
                            e.kind.clone(),
                            Money(e.amount).to_string(),
                            Money(e.balance_before).to_string(),
                            Money(e.balance_after).to_string(),
                            e.reference_type.clone().unwrap_or_default(),
                            e.reference_id.clone().unwrap_or_default(),
                            e.quantity.to_string(),
                            e.actor.clone(),
                            e.note.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                Ok((cells, next))
            }
        },
    )
    .await
}

/// The ledger (same filters) as CSV, streamed, or XLSX.
#[utoipa::path(get, path = "/api/v1/billing/ledger/export", tag = "billing", params(LedgerQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn export_ledger(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::BillingRead>,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<axum::response::Response> {
    ledger_export(ctx, p.tenant.id, q).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingEventView {
    pub id: String,
    /// `low_balance`.
    pub kind: String,
    pub balance: Money,
    pub threshold: Money,
    pub created_at: DateTime<Utc>,
}

/// Billing events, newest first: the balance falling below the low-balance threshold.
#[utoipa::path(get, path = "/api/v1/billing/events", tag = "billing", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<BillingEventView>), (status = 403, body = ErrorBody)))]
async fn events(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::BillingRead>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<BillingEventView>>> {
    let page = q.parse()?;
    let rows = ctx.db.billing_events(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |e| e.id.0);
    Ok(axum::Json(Page {
        data: rows
            .iter()
            .map(|e| BillingEventView {
                id: e.id.to_string(),
                kind: e.kind.clone(),
                balance: Money(e.balance),
                threshold: Money(e.threshold),
                created_at: e.created_at,
            })
            .collect(),
        next_cursor,
    }))
}

/// The prices this tenant pays per message: by category, with overrides per recipient
/// calling-code prefix (longest prefix wins; a category missing there costs the default).
#[utoipa::path(get, path = "/api/v1/billing/prices", tag = "billing", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PriceList), (status = 403, body = ErrorBody)))]
async fn prices(
    State(ctx): State<ApiContext>,
    _: Auth<perm::BillingRead>,
) -> ApiResult<axum::Json<PriceList>> {
    Ok(axum::Json(price_list(&ctx).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// `null` means unlimited.
    pub limits: Limits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        PlanView {
            id: p.id.to_string(),
            name: p.name.clone(),
            description: p.description.clone(),
            limits: p.limits(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The plans on offer.
#[utoipa::path(get, path = "/api/v1/plans", tag = "billing", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Vec<PlanView>)))]
async fn list_plans(
    State(ctx): State<ApiContext>,
    _: Authenticated,
) -> ApiResult<axum::Json<Vec<PlanView>>> {
    Ok(axum::Json(
        ctx.db.plans().await?.iter().map(PlanView::from).collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryUsage {
    /// Outbound messages created this period, by status.
    pub by_status: BTreeMap<String, i64>,
    pub total: i64,
    /// Messages paid for this period (counted against the plan's monthly allowance).
    pub charged: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentPlanView {
    pub plan: PlanView,
    pub starts_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub tenant_id: String,
    /// `YYYY-MM` (calendar month, UTC).
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// By category: `marketing`, `utility`, `authentication`, `service`.
    pub messages: BTreeMap<String, CategoryUsage>,
    pub messages_total: i64,
    /// Debits minus refunds in the period.
    pub spend: Money,
    pub currency: String,
    pub balance: Money,
    pub contacts: i64,
    pub team_members: i64,
    pub sending_numbers: i64,
    /// `null` when the tenant has no plan (no limits).
    pub plan: Option<CurrentPlanView>,
    pub limits: Limits,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// `YYYY-MM`; this month by default.
    pub period: Option<String>,
}

fn period(ctx: &ApiContext, q: &UsageQuery) -> ApiResult<(String, DateTime<Utc>, DateTime<Utc>)> {
    let p = q
        .period
        .clone()
        .unwrap_or_else(|| period_of(ctx.clock.now()));
    let (from, to) =
        period_bounds(&p).ok_or_else(|| ApiError::field("period", "must be YYYY-MM"))?;
    Ok((p, from, to))
}

async fn usage_of(
    ctx: &ApiContext,
    tenant: TenantId,
    (p, from, to): (String, DateTime<Utc>, DateTime<Utc>),
    currency: &str,
) -> ApiResult<UsageView> {
    let Usage {
        messages,
        charged,
        spend,
        contacts,
        team_members,
        sending_numbers,
    } = ctx.db.usage(tenant, &p, from, to).await?;
    let mut by_cat: BTreeMap<String, CategoryUsage> = Category::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                CategoryUsage {
                    by_status: BTreeMap::new(),
                    total: 0,
                    charged: 0,
                },
            )
        })
        .collect();
    let mut total = 0;
    for (cat, status, n) in messages {
        let e = by_cat.entry(cat).or_insert_with(|| CategoryUsage {
            by_status: BTreeMap::new(),
            total: 0,
            charged: 0,
        });
        *e.by_status.entry(status).or_default() += n;
        e.total += n;
        total += n;
    }
    for (cat, n) in charged {
        if let Some(e) = by_cat.get_mut(&cat) {
            e.charged = n;
        }
    }
    let plan = ctx.db.current_plan(tenant, ctx.clock.now()).await?;
    Ok(UsageView {
        tenant_id: tenant.to_string(),
        period: p,
        from,
        to,
        messages: by_cat,
        messages_total: total,
        spend,
        currency: currency.to_string(),
        balance: ctx.db.wallet(tenant).await?.balance,
        contacts,
        team_members,
        sending_numbers,
        limits: plan.as_ref().map(|c| c.plan.limits()).unwrap_or_default(),
        plan: plan.as_ref().map(|c: &CurrentPlan| CurrentPlanView {
            plan: (&c.plan).into(),
            starts_at: c.starts_at,
        }),
    })
}

/// This period's usage: messages by category and status, spend, contacts, and the plan's limits.
#[utoipa::path(get, path = "/api/v1/usage", tag = "billing", params(UsageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = UsageView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn usage(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::BillingRead>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<axum::Json<UsageView>> {
    let currency = price_list(&ctx).await?.currency;
    Ok(axum::Json(
        usage_of(&ctx, p.tenant.id, period(&ctx, &q)?, &currency).await?,
    ))
}

/// Every tenant's usage in the period (platform admins).
#[utoipa::path(get, path = "/api/v1/admin/usage", tag = "admin", params(UsageQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<UsageView>), (status = 403, body = ErrorBody)))]
async fn all_usage(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<axum::Json<Vec<UsageView>>> {
    let per = period(&ctx, &q)?;
    let currency = price_list(&ctx).await?.currency;
    let mut out = Vec::new();
    let mut page = pinglayer_domain::PageRequest::parse(Some(500), None)?;
    loop {
        let rows = ctx.db.list_tenants(&page, None).await?;
        let (rows, next) = finish_page(rows, &page, |t| t.id.0);
        for t in &rows {
            out.push(usage_of(&ctx, t.id, per.clone(), &currency).await?);
        }
        match next {
            Some(c) => page = pinglayer_domain::PageRequest::parse(Some(500), Some(&c))?,
            None => break,
        }
    }
    Ok(axum::Json(out))
}

fn actor(p: &Principal) -> String {
    match p.user() {
        Some(u) => format!("user:{}", u.id),
        None => "api_key".into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditRequest {
    /// Positive; at most 4 decimal places.
    #[schema(value_type = f64)]
    pub amount: Value,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostedView {
    pub entry: LedgerView,
    pub balance: Money,
}

/// Resolves the tenant (404 when unknown) and posts an entry with the request's idempotency.
async fn post(
    ctx: &ApiContext,
    p: &Principal,
    tenant: TenantId,
    headers: &HeaderMap,
    body: &axum::body::Bytes,
    kind: EntryKind,
) -> ApiResult<(StatusCode, axum::Json<PostedView>)> {
    let key = super::messages::idempotency_key(headers)?;
    let value: Value = crate::extract::json_value(headers, body)?;
    let hash = sha256_hex(&format!("{}:{tenant}:{value}", kind.as_str()));
    let req: CreditRequest =
        serde_json::from_value(value).map_err(|e| ApiError::field("body", e.to_string()))?;
    let amount = Money::from_json("amount", &req.amount)?;
    match kind {
        EntryKind::Credit if amount.0 <= 0 => {
            return Err(ApiError::field("amount", "must be positive"));
        }
        _ if amount.0 == 0 => return Err(ApiError::field("amount", "cannot be zero")),
        _ => {}
    }
    let note = req.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::field("note", "at most 500 characters"));
    }
    if kind == EntryKind::Adjustment && note.is_none() {
        return Err(ApiError::field("note", "say why the balance is adjusted"));
    }
    ctx.db.tenant(tenant).await?; // 404 for an unknown tenant
    let actor = actor(p);
    let posted = ctx
        .db
        .post_entry(
            tenant,
            NewEntry {
                kind,
                amount,
                reference_type: if kind == EntryKind::Credit {
                    "topup"
                } else {
                    "adjustment"
                },
                actor: &actor,
                note,
                idempotency: key.as_deref().map(|k| (k, hash.as_str())),
            },
            ctx.clock.now(),
        )
        .await?;
    let entry = match posted {
        Posted::Applied(e) | Posted::Replayed(e) => e,
        Posted::KeyReused => {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request.",
            ));
        }
        Posted::WouldGoNegative(balance) => {
            return Err(ApiError::conflict(
                "insufficient_balance",
                format!("The balance is {balance}; an adjustment cannot take it below zero."),
            ));
        }
    };
    tracing::info!(tenant_id = %tenant, kind = kind.as_str(), amount = %amount, actor, "balance changed by hand");
    Ok((
        StatusCode::CREATED,
        axum::Json(PostedView {
            balance: ctx.db.wallet(tenant).await?.balance,
            entry: (&entry).into(),
        }),
    ))
}

/// Top up a tenant's balance. With an `Idempotency-Key`, a retried top-up is applied once (the
/// same answer comes back).
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/credits", tag = "admin", request_body = CreditRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Same key and body → applied once.")),
    security(("bearer" = [])),
    responses((status = 201, body = PostedView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn top_up(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<PostedView>)> {
    post(&ctx, &p, id, &headers, &body, EntryKind::Credit).await
}

/// Correct a tenant's balance by a signed amount, with a note (never below zero).
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/adjustments", tag = "admin", request_body = CreditRequest,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 201, body = PostedView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`insufficient_balance`, `idempotency_key_reused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn adjust(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<PostedView>)> {
    post(&ctx, &p, id, &headers, &body, EntryKind::Adjustment).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBillingView {
    #[serde(flatten)]
    pub balance: BalanceView,
    pub ledger: Page<LedgerView>,
}

/// A tenant's balance and ledger (same filters as the tenant's own ledger).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{id}/ledger", tag = "admin", params(("id" = String, Path), LedgerQuery), security(("bearer" = [])),
    responses((status = 200, body = TenantBillingView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn tenant_balance(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<axum::Json<TenantBillingView>> {
    ctx.db.tenant(id).await?; // 404 for an unknown tenant
    Ok(axum::Json(TenantBillingView {
        balance: balance_of(&ctx, id).await?,
        ledger: ledger_page(&ctx, id, &q).await?,
    }))
}

/// The operator's price list.
#[utoipa::path(get, path = "/api/v1/admin/pricing", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PriceList), (status = 403, body = ErrorBody)))]
async fn get_pricing(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
) -> ApiResult<axum::Json<PriceList>> {
    Ok(axum::Json(price_list(&ctx).await?))
}

/// Replace the price list: `{currency, default: {marketing, utility, authentication, service},
/// countries: {"91": {marketing: 0.78}, …}}`. Applies to messages dispatched from now on.
#[utoipa::path(put, path = "/api/v1/admin/pricing", tag = "admin", request_body = PriceList, security(("bearer" = [])),
    responses((status = 200, body = PriceList), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_pricing(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Json(list): Json<PriceList>,
) -> ApiResult<axum::Json<PriceList>> {
    let list = list.check()?;
    ctx.db.set_price_list(&list, ctx.clock.now()).await?;
    tracing::info!(currency = %list.currency, "price list replaced");
    Ok(axum::Json(list))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PlanRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Omitted limits are unlimited (create) or unchanged (update); `null` makes one unlimited.
    pub limits: Option<Value>,
}

fn merge_limits(base: Limits, patch: Option<&Value>) -> ApiResult<Limits> {
    let Some(patch) = patch else { return Ok(base) };
    let Value::Object(m) = patch else {
        return Err(ApiError::field("limits", "must be an object"));
    };
    let mut out = base;
    for (k, v) in m {
        let v = match v {
            Value::Null => None,
            Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => n.as_i64(),
            _ => {
                return Err(ApiError::field(
                    "limits",
                    format!("{k} must be a whole number ≥ 0 or null"),
                ));
            }
        };
        match k.as_str() {
            "contacts" => out.contacts = v,
            "team_members" => out.team_members = v,
            "sending_numbers" => out.sending_numbers = v,
            "messages_per_month" => out.messages_per_month = v,
            "api_requests_per_minute" => out.api_requests_per_minute = v,
            other => {
                return Err(ApiError::field(
                    "limits",
                    format!("unknown limit {other:?}"),
                ));
            }
        }
    }
    out.check()?;
    Ok(out)
}

fn plan_name(raw: Option<&str>) -> ApiResult<Option<String>> {
    match raw.map(str::trim) {
        None => Ok(None),
        Some(n) if n.is_empty() || n.chars().count() > 100 => {
            Err(ApiError::field("name", "must be 1–100 characters"))
        }
        Some(n) => Ok(Some(n.to_string())),
    }
}

fn plan_saved(r: Result<Plan, StoreError>) -> ApiResult<Plan> {
    match r {
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(
            "plan_exists",
            "A plan with this name exists.",
        )),
        other => Ok(other?),
    }
}

/// Create a plan.
#[utoipa::path(post, path = "/api/v1/admin/plans", tag = "admin", request_body = PlanRequest, security(("bearer" = [])),
    responses((status = 201, body = PlanView), (status = 403, body = ErrorBody), (status = 409, description = "`plan_exists`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_plan(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Json(req): Json<PlanRequest>,
) -> ApiResult<(StatusCode, axum::Json<PlanView>)> {
    let name =
        plan_name(req.name.as_deref())?.ok_or_else(|| ApiError::field("name", "is required"))?;
    let limits = merge_limits(Limits::default(), req.limits.as_ref())?;
    let plan = plan_saved(
        ctx.db
            .save_plan(
                None,
                &name,
                req.description.as_deref(),
                &limits,
                ctx.clock.now(),
            )
            .await,
    )?;
    Ok((StatusCode::CREATED, axum::Json((&plan).into())))
}

/// Change a plan's name, description or limits (tenants on it get the new limits at once).
#[utoipa::path(patch, path = "/api/v1/admin/plans/{id}", tag = "admin", params(("id" = String, Path)), request_body = PlanRequest, security(("bearer" = [])),
    responses((status = 200, body = PlanView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_plan(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    PathId(id): PathId<PlanId>,
    Json(req): Json<PlanRequest>,
) -> ApiResult<axum::Json<PlanView>> {
    let cur = ctx.db.plan(id).await?;
    let name = plan_name(req.name.as_deref())?.unwrap_or(cur.name.clone());
    let limits = merge_limits(cur.limits(), req.limits.as_ref())?;
    let description = req.description.or(cur.description);
    let plan = plan_saved(
        ctx.db
            .save_plan(
                Some(id),
                &name,
                description.as_deref(),
                &limits,
                ctx.clock.now(),
            )
            .await,
    )?;
    Ok(axum::Json((&plan).into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignRequest {
    /// The plan's id, or its name.
    pub plan_id: Option<String>,
    pub plan: Option<String>,
    /// When it takes effect; now by default.
    pub starts_at: Option<DateTime<Utc>>,
}

/// Put a tenant on a plan from a date (now by default).
#[utoipa::path(post, path = "/api/v1/admin/tenants/{id}/plan", tag = "admin", params(("id" = String, Path)), request_body = AssignRequest, security(("bearer" = [])),
    responses((status = 200, body = CurrentPlanView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn assign_plan(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::PlatformAdmin>,
    PathId(id): PathId<TenantId>,
    Json(req): Json<AssignRequest>,
) -> ApiResult<axum::Json<CurrentPlanView>> {
    ctx.db.tenant(id).await?; // 404 for an unknown tenant
    let wanted = req
        .plan_id
        .as_deref()
        .or(req.plan.as_deref())
        .map(str::trim)
        .ok_or_else(|| ApiError::field("plan_id", "is required"))?;
    let plans = ctx.db.plans().await?;
    let plan = plans
        .iter()
        .find(|pl| pl.id.to_string() == wanted || pl.name.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| ApiError::field("plan_id", "no such plan"))?;
    let now = ctx.clock.now();
    let starts_at = req.starts_at.unwrap_or(now);
    ctx.db
        .assign_plan(id, plan.id, starts_at, &actor(&p), now)
        .await?;
    tracing::info!(tenant_id = %id, plan = %plan.name, %starts_at, "plan assigned");
    Ok(axum::Json(CurrentPlanView {
        plan: plan.into(),
        starts_at,
    }))
}

/// Refuses (403 `plan_limit_reached`) when adding `adding` more of `what` would pass the
/// tenant's plan. Tenants without a plan have no limits.
pub(crate) async fn within_plan(
    ctx: &ApiContext,
    tenant: TenantId,
    what: pinglayer_domain::billing::Limit,
    adding: i64,
) -> ApiResult<()> {
    let now = ctx.clock.now();
    let Some(cur) = ctx.db.current_plan(tenant, now).await? else {
        return Ok(());
    };
    let Some(max) = cur.plan.limits().of(what) else {
        return Ok(());
    };
    let have = ctx.db.count_of(tenant, what, now).await?;
    if have + adding > max {
        return Err(ApiError::forbidden(
            "plan_limit_reached",
            format!(
                "The {} plan allows {max} {}; this tenant has {have}.",
                cur.plan.name,
                what.as_str().replace('_', " ")
            ),
        ));
    }
    Ok(())
}
