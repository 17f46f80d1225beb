//! Analytics: the tenant's dashboard, the messages report grouped five ways, and the
//! operator's per-tenant figures — all read from rollups kept as events arrive
//! (`pinglayer_store::analytics`), so their cost grows with the days asked for, not with the
//! messages sent. Every report also exports as CSV or XLSX.

use axum::{extract::State, response::Response};
use chrono::NaiveDate;
use pinglayer_domain::{NumberId, TenantId};
use pinglayer_store::analytics::{
    ATTEMPTED, CONTACTS_CREATED, DELIVERED, DailyRow, FAILED, INBOUND, NO_NUMBER, OPTED_IN,
    OPTED_OUT, READ, SENT,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    links::{RangeQuery, days, instants, one_page},
    views::ErrorBody,
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    export,
    extract::Query,
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(dashboard))
        .routes(routes!(export_dashboard))
        .routes(routes!(messages_report))
        .routes(routes!(export_messages))
        .routes(routes!(admin_analytics))
        .routes(routes!(export_admin))
}

/// Counts of one period (or day): what happened to messages, contacts and consent.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Figures {
    /// Outbound messages that left the queue (accepted by Meta, or failed).
    pub attempted: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    /// Messages customers sent in.
    pub inbound: i64,
    pub contacts_created: i64,
    pub opted_out: i64,
    pub opted_in: i64,
}

impl Figures {
    fn add(&mut self, metric: &str, n: i64) {
        let slot = match metric {
            ATTEMPTED => &mut self.attempted,
            SENT => &mut self.sent,
            DELIVERED => &mut self.delivered,
            READ => &mut self.read,
            FAILED => &mut self.failed,
            INBOUND => &mut self.inbound,
            CONTACTS_CREATED => &mut self.contacts_created,
            OPTED_OUT => &mut self.opted_out,
            OPTED_IN => &mut self.opted_in,
            _ => return,
        };
        *slot += n;
    }
}

fn rate(a: i64, b: i64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}

#[derive(Serialize, ToSchema)]
pub struct DayFigures {
    pub day: NaiveDate,
    #[serde(flatten)]
    pub figures: Figures,
    /// Messages sent that day per category (`marketing`, `utility`, …; only those with any).
    pub sent_by_category: BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryFigures {
    /// `marketing`, `utility`, `authentication`, `service` or `unknown`.
    pub category: String,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TopCampaignView {
    pub id: String,
    pub name: String,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub replied: i64,
    pub clicks: i64,
    pub unique_clickers: i64,
    /// unique clickers / delivered.
    pub click_through_rate: f64,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub totals: Figures,
    /// delivered / sent.
    pub delivery_rate: f64,
    /// read / delivered.
    pub read_rate: f64,
    /// failed / attempted.
    pub failure_rate: f64,
    /// Charged less refunded in the period, in ten-thousandths of the operator's currency.
    pub spend: i64,
    /// Every day of the period, oldest first.
    pub series: Vec<DayFigures>,
    pub by_category: Vec<CategoryFigures>,
    /// Campaigns with runs started in the period, most sent first (at most 5).
    pub top_campaigns: Vec<TopCampaignView>,
}

fn each_day(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    from.iter_days().take_while(move |d| *d <= to)
}

fn category_name(c: &str) -> String {
    if c.is_empty() {
        "unknown".into()
    } else {
        c.to_string()
    }
}

async fn dashboard_of(
    ctx: &ApiContext,
    tenant: TenantId,
    q: &RangeQuery,
) -> ApiResult<DashboardView> {
    let (from, to) = days(q.from, q.to, ctx.clock.now())?;
    let (start, end) = instants(from, to);
    let rows = ctx.db.analytics_daily(tenant, from, to, false).await?;
    let mut totals = Figures::default();
    let mut per_day: HashMap<NaiveDate, Figures> = HashMap::new();
    let mut per_cat: BTreeMap<String, Figures> = BTreeMap::new();
    let mut per_day_cat: HashMap<NaiveDate, BTreeMap<String, i64>> = HashMap::new();
    for r in &rows {
        totals.add(&r.metric, r.n);
        per_day.entry(r.day).or_default().add(&r.metric, r.n);
        if r.metric == SENT {
            *per_day_cat
                .entry(r.day)
                .or_default()
                .entry(category_name(&r.category))
                .or_default() += r.n;
        }
        if matches!(r.metric.as_str(), SENT | DELIVERED | READ | FAILED) {
            per_cat
                .entry(category_name(&r.category))
                .or_default()
                .add(&r.metric, r.n);
        }
    }
    let top = ctx.db.top_campaigns(tenant, start, end, 5).await?;
    Ok(DashboardView {
        from,
        to,
        delivery_rate: rate(totals.delivered, totals.sent),
        read_rate: rate(totals.read, totals.delivered),
        failure_rate: rate(totals.failed, totals.attempted),
        spend: ctx.db.spend(tenant, start, end).await?,
        series: each_day(from, to)
            .map(|day| DayFigures {
                day,
                figures: per_day.remove(&day).unwrap_or_default(),
                sent_by_category: per_day_cat.remove(&day).unwrap_or_default(),
            })
            .collect(),
        by_category: per_cat
            .into_iter()
            .map(|(category, f)| CategoryFigures {
                category,
                sent: f.sent,
                delivered: f.delivered,
                read: f.read,
                failed: f.failed,
            })
            .collect(),
        top_campaigns: top
            .into_iter()
            .map(|c| TopCampaignView {
                id: c.id.to_string(),
                name: c.name,
                sent: c.sent,
                delivered: c.delivered,
                read: c.read,
                replied: c.replied,
                clicks: c.clicks,
                unique_clickers: c.clickers,
                click_through_rate: rate(c.clickers, c.delivered),
            })
            .collect(),
        totals,
    })
}

/// Messages by status and category over time, delivery and read rates, top campaigns,
/// contacts growth, opt-outs, spend and inbound volume for `from..=to` (UTC days).
#[utoipa::path(get, path = "/api/v1/analytics/dashboard", tag = "analytics", params(RangeQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DashboardView), (status = 422, body = ErrorBody)))]
async fn dashboard(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<axum::Json<DashboardView>> {
    Ok(axum::Json(dashboard_of(&ctx, p.tenant.id, &q).await?))
}

const DASHBOARD_COLUMNS: [&str; 10] = [
    "day",
    "attempted",
    "sent",
    "delivered",
    "read",
    "failed",
    "inbound",
    "contacts_created",
    "opted_out",
    "opted_in",
];

fn figure_cells(f: &Figures) -> Vec<String> {
    [
        f.attempted,
        f.sent,
        f.delivered,
        f.read,
        f.failed,
        f.inbound,
        f.contacts_created,
        f.opted_out,
        f.opted_in,
    ]
    .iter()
    .map(i64::to_string)
    .collect()
}

/// The dashboard's daily series as CSV or XLSX.
#[utoipa::path(get, path = "/api/v1/analytics/dashboard/export", tag = "analytics", params(RangeQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 422, body = ErrorBody)))]
async fn export_dashboard(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let d = dashboard_of(&ctx, p.tenant.id, &q).await?;
    let rows = d
        .series
        .iter()
        .map(|s| {
            let mut cells = vec![s.day.to_string()];
            cells.extend(figure_cells(&s.figures));
            cells
        })
        .collect();
    one_page(format, "dashboard", &DASHBOARD_COLUMNS, rows).await
}

#[derive(Deserialize, IntoParams)]
pub struct MessagesQuery {
    /// `day` (default), `hour`, `status`, `category` or `number`.
    pub group_by: Option<String>,
    /// First day (UTC); 30 days before `to` when omitted.
    pub from: Option<NaiveDate>,
    /// Last day, included; today when omitted.
    pub to: Option<NaiveDate>,
    /// Export only: `csv` (default) or `xlsx`.
    pub format: Option<String>,
}

/// A table: `columns` names each cell of every row.
#[derive(Serialize, ToSchema)]
pub struct MessagesReport {
    pub group_by: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
}

const GROUPS: [&str; 5] = ["day", "hour", "status", "category", "number"];

fn counts(f: &Figures, with_inbound: bool) -> Vec<Value> {
    let mut v = vec![
        json!(f.sent),
        json!(f.delivered),
        json!(f.read),
        json!(f.failed),
    ];
    if with_inbound {
        v.push(json!(f.inbound));
    }
    v
}

const BY_DAY: &[&str] = &["day", "sent", "delivered", "read", "failed", "inbound"];
const BY_HOUR: &[&str] = &["hour", "sent", "delivered", "read", "failed", "inbound"];
const BY_STATUS: &[&str] = &["status", "messages"];
const BY_CATEGORY: &[&str] = &["category", "sent", "delivered", "read", "failed"];
const BY_NUMBER: &[&str] = &[
    "number_id",
    "display_phone_number",
    "sent",
    "delivered",
    "read",
    "failed",
    "inbound",
];

async fn messages_of(
    ctx: &ApiContext,
    tenant: TenantId,
    q: &MessagesQuery,
) -> ApiResult<(MessagesReport, &'static [&'static str])> {
    let group = q.group_by.as_deref().unwrap_or("day");
    if !GROUPS.contains(&group) {
        return Err(ApiError::field(
            "group_by",
            format!("must be one of {}", GROUPS.join(", ")),
        ));
    }
    let (from, to) = days(q.from, q.to, ctx.clock.now())?;
    let (cols, rows): (&'static [&'static str], Vec<Vec<Value>>) = match group {
        "hour" => {
            let (start, end) = instants(from, to);
            let mut per: BTreeMap<chrono::DateTime<chrono::Utc>, Figures> = BTreeMap::new();
            for r in ctx.db.analytics_hourly(tenant, start, end).await? {
                per.entry(r.hour).or_default().add(&r.metric, r.n);
            }
            (
                BY_HOUR,
                per.iter()
                    .map(|(h, f)| {
                        let mut row = vec![json!(h.to_rfc3339())];
                        row.extend(counts(f, true));
                        row
                    })
                    .collect(),
            )
        }
        _ => {
            let daily: Vec<DailyRow> = ctx
                .db
                .analytics_daily(tenant, from, to, group == "number")
                .await?;
            match group {
                "day" => {
                    let mut per: HashMap<NaiveDate, Figures> = HashMap::new();
                    for r in &daily {
                        per.entry(r.day).or_default().add(&r.metric, r.n);
                    }
                    (
                        BY_DAY,
                        each_day(from, to)
                            .map(|d| {
                                let mut row = vec![json!(d.to_string())];
                                row.extend(counts(&per.remove(&d).unwrap_or_default(), true));
                                row
                            })
                            .collect(),
                    )
                }
                "status" => {
                    let mut f = Figures::default();
                    for r in &daily {
                        f.add(&r.metric, r.n);
                    }
                    (
                        BY_STATUS,
                        [
                            (SENT, f.sent),
                            (DELIVERED, f.delivered),
                            (READ, f.read),
                            (FAILED, f.failed),
                        ]
                        .iter()
                        .map(|(s, n)| vec![json!(s), json!(n)])
                        .collect(),
                    )
                }
                "category" => {
                    let mut per: BTreeMap<String, Figures> = BTreeMap::new();
                    for r in daily
                        .iter()
                        .filter(|r| matches!(r.metric.as_str(), SENT | DELIVERED | READ | FAILED))
                    {
                        per.entry(category_name(&r.category))
                            .or_default()
                            .add(&r.metric, r.n);
                    }
                    (
                        BY_CATEGORY,
                        per.iter()
                            .map(|(c, f)| {
                                let mut row = vec![json!(c)];
                                row.extend(counts(f, false));
                                row
                            })
                            .collect(),
                    )
                }
                _ => {
                    let mut per: BTreeMap<uuid::Uuid, Figures> = BTreeMap::new();
                    for r in &daily {
                        if let Some(n) = r.number_id.filter(|n| *n != NO_NUMBER) {
                            per.entry(n).or_default().add(&r.metric, r.n);
                        }
                    }
                    let mut out = Vec::with_capacity(per.len());
                    for (id, f) in &per {
                        let display = ctx
                            .db
                            .number(tenant, NumberId(*id))
                            .await
                            .map(|n| n.display_phone_number)
                            .unwrap_or_default();
                        let mut row = vec![json!(id.to_string()), json!(display)];
                        row.extend(counts(f, true));
                        out.push(row);
                    }
                    (BY_NUMBER, out)
                }
            }
        }
    };
    let report = MessagesReport {
        group_by: group.to_string(),
        from,
        to,
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows,
    };
    Ok((report, cols))
}

/// Message counts grouped by `day`, `hour`, `status`, `category` or sending `number`. Each
/// outbound message counts once in every state it reached in the period (a read message is
/// also sent and delivered).
#[utoipa::path(get, path = "/api/v1/analytics/messages", tag = "analytics", params(MessagesQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = MessagesReport), (status = 422, body = ErrorBody)))]
async fn messages_report(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<axum::Json<MessagesReport>> {
    Ok(axum::Json(messages_of(&ctx, p.tenant.id, &q).await?.0))
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The messages report as CSV or XLSX (its columns depend on `group_by`).
#[utoipa::path(get, path = "/api/v1/analytics/messages/export", tag = "analytics", params(MessagesQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 422, body = ErrorBody)))]
async fn export_messages(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let (r, columns) = messages_of(&ctx, p.tenant.id, &q).await?;
    let rows = r
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    one_page(format, "messages", columns, rows).await
}

#[derive(Serialize, ToSchema)]
pub struct TenantAnalytics {
    pub tenant_id: String,
    pub name: String,
    pub slug: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// failed / attempted.
    pub failure_rate: f64,
    /// Charged less refunded, ten-thousandths of the currency.
    pub spend: i64,
    /// Numbers that sent in the period.
    pub active_numbers: i64,
    /// Connected numbers now.
    pub numbers: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PlatformAnalytics {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub totals: Figures,
    pub spend: i64,
    /// Busiest (sent + inbound) first.
    pub tenants: Vec<TenantAnalytics>,
}

async fn platform_of(ctx: &ApiContext, q: &RangeQuery) -> ApiResult<PlatformAnalytics> {
    let (from, to) = days(q.from, q.to, ctx.clock.now())?;
    let mut totals = Figures::default();
    let mut spend = 0;
    let tenants = ctx
        .db
        .platform_analytics(from, to)
        .await?
        .into_iter()
        .map(|t| {
            let mut f = Figures::default();
            for (m, n) in &t.metrics {
                f.add(m, *n);
                totals.add(m, *n);
            }
            spend += t.spend;
            TenantAnalytics {
                tenant_id: t.tenant_id.to_string(),
                name: t.name,
                slug: t.slug,
                failure_rate: rate(f.failed, f.attempted),
                figures: f,
                spend: t.spend,
                active_numbers: t.active_numbers,
                numbers: t.numbers,
            }
        })
        .collect();
    Ok(PlatformAnalytics {
        from,
        to,
        totals,
        spend,
        tenants,
    })
}

/// Per-tenant volume, spend, failure rate and active numbers (platform admins only).
#[utoipa::path(get, path = "/api/v1/admin/analytics", tag = "admin", params(RangeQuery), security(("bearer" = [])),
    responses((status = 200, body = PlatformAnalytics), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn admin_analytics(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<axum::Json<PlatformAnalytics>> {
    Ok(axum::Json(platform_of(&ctx, &q).await?))
}

const ADMIN_COLUMNS: [&str; 15] = [
    "tenant_id",
    "name",
    "slug",
    "attempted",
    "sent",
    "delivered",
    "read",
    "failed",
    "inbound",
    "contacts_created",
    "opted_out",
    "opted_in",
    "failure_rate",
    "spend",
    "active_numbers",
];

/// The per-tenant figures as CSV or XLSX.
#[utoipa::path(get, path = "/api/v1/admin/analytics/export", tag = "admin", params(RangeQuery), security(("bearer" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn export_admin(
    State(ctx): State<ApiContext>,
    _: Auth<perm::PlatformAdmin>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let a = platform_of(&ctx, &q).await?;
    let rows = a
        .tenants
        .iter()
        .map(|t| {
            let mut cells = vec![t.tenant_id.clone(), t.name.clone(), t.slug.clone()];
            cells.extend(figure_cells(&t.figures));
            cells.extend([
                t.failure_rate.to_string(),
                t.spend.to_string(),
                t.active_numbers.to_string(),
            ]);
            cells
        })
        .collect();
    one_page(format, "platform-analytics", &ADMIN_COLUMNS, rows).await
}
