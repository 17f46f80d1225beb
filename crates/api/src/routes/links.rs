//! Smart links: `POST/GET/PATCH/DELETE /api/v1/links`, their statistics, and the redirect
//! `GET /s/{code}` — the hot path: a cached lookup, the click pushed onto an in-memory queue
//! (written in batches by the upkeep task, see `pinglayer_engine::clicks`), and a 302.

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use pinglayer_domain::{
    CampaignId, LinkId,
    link::{Utm, destination, plausible_code},
    page::finish_page,
};
use pinglayer_engine::{campaigns::short_url, clicks::RawClick};
use pinglayer_store::links::{Link, LinkPatch, NewLink, Target};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, Page, PageQuery};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    export,
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_links, create_link))
        .routes(routes!(get_link, update_link, delete_link))
        .routes(routes!(link_stats))
        .routes(routes!(export_link_stats))
}

/// The redirect, outside the versioned API (and its OpenAPI document) and its layers.
pub fn redirect_routes() -> axum::Router<ApiContext> {
    axum::Router::new().route("/s/{code}", axum::routing::get(redirect))
}

#[derive(Deserialize, ToSchema)]
pub struct LinkRequest {
    /// The destination: an absolute http(s) URL.
    pub url: String,
    /// Clicks also count for this campaign.
    pub campaign_id: Option<String>,
    /// After this instant the link answers 410.
    pub expires_at: Option<DateTime<Utc>>,
    /// Appended to the destination on redirect.
    pub utm: Option<Utm>,
}

#[derive(Deserialize, ToSchema)]
pub struct LinkPatchRequest {
    pub url: Option<String>,
    /// `null` removes them.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<Utm>)]
    pub utm: Option<Option<Utm>>,
    /// `null` removes the expiry.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A disabled link answers 410.
    pub disabled: Option<bool>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn some<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct LinkView {
    pub id: String,
    pub code: String,
    /// What to send people: `<public URL>/s/<code>`.
    pub short_url: String,
    pub url: String,
    pub utm: Option<Utm>,
    pub campaign_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub disabled: bool,
    /// Clicks by people (bots and link-preview fetchers excluded).
    pub clicks: i64,
    /// One per contact, or per IP and user agent when anonymous.
    pub unique_clicks: i64,
    /// Link-preview fetchers and other bots: recorded, not counted.
    pub bot_clicks: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn utm_of(raw: Option<&str>) -> Option<Utm> {
    raw.and_then(|u| serde_json::from_str(u).ok())
}

fn view(l: &Link) -> LinkView {
    LinkView {
        id: l.id.to_string(),
        code: l.code.clone(),
        short_url: short_url(&l.short_base, &l.code),
        url: l.url.clone(),
        utm: utm_of(l.utm.as_deref()),
        campaign_id: l.campaign_id.map(|c| c.to_string()),
        expires_at: l.expires_at,
        disabled: l.disabled,
        clicks: l.clicks,
        unique_clicks: l.unique_clicks,
        bot_clicks: l.bot_clicks,
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

fn utm_json(u: Option<Utm>) -> ApiResult<Option<String>> {
    Ok(match u.map(Utm::check).transpose()? {
        Some(u) if !u.is_empty() => Some(serde_json::to_string(&u).map_err(anyhow::Error::new)?),
        _ => None,
    })
}

#[derive(Deserialize, IntoParams)]
pub struct LinkQuery {
    /// Only the links of this campaign.
    pub campaign_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn campaign_param(raw: Option<&str>) -> ApiResult<Option<CampaignId>> {
    raw.map(|c| {
        c.parse()
            .map_err(|_| ApiError::field("campaign_id", "is not a campaign id"))
    })
    .transpose()
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/links", tag = "links", params(LinkQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<LinkView>), (status = 422, body = ErrorBody)))]
async fn list_links(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    Query(q): Query<LinkQuery>,
) -> ApiResult<axum::Json<Page<LinkView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let campaign = campaign_param(q.campaign_id.as_deref())?;
    let rows = ctx.db.list_links(p.tenant.id, &page, campaign).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |l| l.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Create a smart link. Use its `short_url` anywhere, or its id as a campaign parameter
/// (`{"source": "link", "link_id": …}`) to give every recipient a personal short URL.
#[utoipa::path(post, path = "/api/v1/links", tag = "links", request_body = LinkRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = LinkView), (status = 422, body = ErrorBody)))]
async fn create_link(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    Json(req): Json<LinkRequest>,
) -> ApiResult<(StatusCode, axum::Json<LinkView>)> {
    let tenant = p.tenant.id;
    let url = destination(&req.url)?;
    let campaign = campaign_param(req.campaign_id.as_deref())?;
    if let Some(c) = campaign
        && matches!(
            ctx.db.campaign(tenant, c).await,
            Err(pinglayer_store::StoreError::NotFound)
        )
    {
        return Err(ApiError::field("campaign_id", "no such campaign"));
    }
    let now = ctx.clock.now();
    if req.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::field("expires_at", "must be in the future"));
    }
    let l = ctx
        .db
        .create_link(
            tenant,
            &NewLink {
                url,
                utm: utm_json(req.utm)?,
                campaign_id: campaign,
                expires_at: req.expires_at,
                short_base: ctx.settings.public_url.clone(),
                created_by: p.user().map(|u| u.id),
            },
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view(&l))))
}

#[utoipa::path(get, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = LinkView), (status = 404, body = ErrorBody)))]
async fn get_link(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsRead>,
    PathId(id): PathId<LinkId>,
) -> ApiResult<axum::Json<LinkView>> {
    Ok(axum::Json(view(&ctx.db.link(p.tenant.id, id).await?)))
}

/// Change the destination, UTM parameters or expiry, or disable (410) / re-enable the link.
/// Personal codes of campaign recipients follow their link.
#[utoipa::path(patch, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path)), request_body = LinkPatchRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = LinkView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_link(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<LinkId>,
    Json(req): Json<LinkPatchRequest>,
) -> ApiResult<axum::Json<LinkView>> {
    let patch = LinkPatch {
        url: req.url.as_deref().map(destination).transpose()?,
        utm: req.utm.map(utm_json).transpose()?,
        expires_at: req.expires_at,
        disabled: req.disabled,
    };
    let l = ctx
        .db
        .update_link(p.tenant.id, id, &patch, ctx.clock.now())
        .await?;
    ctx.link_cache.forget(id);
    Ok(axum::Json(view(&l)))
}

/// The link's codes answer 410 from now on; its statistics stay.
#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_link(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::CampaignsManage>,
    PathId(id): PathId<LinkId>,
) -> ApiResult<StatusCode> {
    ctx.db.delete_link(p.tenant.id, id, ctx.clock.now()).await?;
    ctx.link_cache.forget(id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
pub struct RangeQuery {
    /// First day (UTC, `YYYY-MM-DD`); 30 days before `to` when omitted.
    pub from: Option<NaiveDate>,
    /// Last day, included (UTC); today when omitted.
    pub to: Option<NaiveDate>,
    /// Export only: `csv` (default) or `xlsx`.
    pub format: Option<String>,
}

/// The days a report covers, checked: at most 366 of them, `from` not after `to`.
pub(crate) fn days(
    q_from: Option<NaiveDate>,
    q_to: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> ApiResult<(NaiveDate, NaiveDate)> {
    let to = q_to.unwrap_or_else(|| now.date_naive());
    let from = q_from.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(ApiError::field("from", "must not be after to"));
    }
    if (to - from).num_days() > 366 {
        return Err(ApiError::field("from", "a report covers at most 366 days"));
    }
    Ok((from, to))
}

/// `[start of from, start of the day after to)`.
pub(crate) fn instants(from: NaiveDate, to: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    (at(from), at(to.succ_opt().unwrap_or(to)))
}

#[derive(Serialize, ToSchema)]
pub struct ClickCount {
    pub clicks: i64,
    pub unique_clicks: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ClickBucket {
    /// A day (`YYYY-MM-DD`) or an hour (RFC 3339), UTC.
    pub at: String,
    pub clicks: i64,
    pub unique_clicks: i64,
    pub bot_clicks: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Breakdown {
    pub value: String,
    pub clicks: i64,
    pub unique_clicks: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LinkStatsView {
    pub link_id: String,
    /// All time.
    pub clicks: i64,
    pub unique_clicks: i64,
    pub bot_clicks: i64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// In the period.
    pub period: ClickCount,
    pub by_day: Vec<ClickBucket>,
    /// Hours with clicks in the period.
    pub by_hour: Vec<ClickBucket>,
    /// All time, most clicks first: `mobile`, `tablet`, `desktop`, `other`.
    pub by_device: Vec<Breakdown>,
    pub by_browser: Vec<Breakdown>,
    pub by_os: Vec<Breakdown>,
    /// ISO 3166 codes (`unknown` without a GeoIP database or a match).
    pub by_country: Vec<Breakdown>,
}

async fn stats_of(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
    id: LinkId,
    q: &RangeQuery,
) -> ApiResult<LinkStatsView> {
    let l = ctx.db.link(tenant, id).await?;
    let (from, to) = days(q.from, q.to, ctx.clock.now())?;
    let (start, end) = instants(from, to);
    let s = ctx.db.link_stats(tenant, id, start, end).await?;
    let mut by_day: Vec<ClickBucket> = Vec::new();
    let mut period = ClickCount {
        clicks: 0,
        unique_clicks: 0,
    };
    let mut day = from;
    let mut per_day: HashMap<NaiveDate, (i64, i64, i64)> = HashMap::new();
    for (h, c, u, b) in &s.hourly {
        let e = per_day.entry(h.date_naive()).or_default();
        e.0 += c;
        e.1 += u;
        e.2 += b;
        period.clicks += c;
        period.unique_clicks += u;
    }
    while day <= to {
        let (c, u, b) = per_day.get(&day).copied().unwrap_or_default();
        by_day.push(ClickBucket {
            at: day.to_string(),
            clicks: c,
            unique_clicks: u,
            bot_clicks: b,
        });
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    let by_hour = s
        .hourly
        .iter()
        .map(|(h, c, u, b)| ClickBucket {
            at: h.to_rfc3339(),
            clicks: *c,
            unique_clicks: *u,
            bot_clicks: *b,
        })
        .collect();
    let dim = |name: &str| {
        let mut v: Vec<Breakdown> = s
            .dims
            .iter()
            .filter(|(d, ..)| d == name)
            .map(|(_, value, c, u)| Breakdown {
                value: value.clone(),
                clicks: *c,
                unique_clicks: *u,
            })
            .collect();
        v.sort_by(|a, b| b.clicks.cmp(&a.clicks).then(a.value.cmp(&b.value)));
        v
    };
    Ok(LinkStatsView {
        link_id: id.to_string(),
        clicks: l.clicks,
        unique_clicks: l.unique_clicks,
        bot_clicks: l.bot_clicks,
        from,
        to,
        period,
        by_day,
        by_hour,
        by_device: dim("device"),
        by_browser: dim("browser"),
        by_os: dim("os"),
        by_country: dim("country"),
    })
}

/// Total and unique clicks, by day and hour, device, browser, OS and country — from counters
/// kept as clicks are recorded.
#[utoipa::path(get, path = "/api/v1/links/{id}/stats", tag = "links", params(("id" = String, Path), RangeQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = LinkStatsView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn link_stats(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    PathId(id): PathId<LinkId>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<axum::Json<LinkStatsView>> {
    Ok(axum::Json(stats_of(&ctx, p.tenant.id, id, &q).await?))
}

const STATS_COLUMNS: [&str; 4] = ["day", "clicks", "unique_clicks", "bot_clicks"];

/// The link's clicks per day as CSV or XLSX.
#[utoipa::path(get, path = "/api/v1/links/{id}/stats/export", tag = "links", params(("id" = String, Path), RangeQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn export_link_stats(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::AnalyticsRead>,
    PathId(id): PathId<LinkId>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let s = stats_of(&ctx, p.tenant.id, id, &q).await?;
    let rows: Vec<Vec<String>> = s
        .by_day
        .iter()
        .map(|b| {
            vec![
                b.at.clone(),
                b.clicks.to_string(),
                b.unique_clicks.to_string(),
                b.bot_clicks.to_string(),
            ]
        })
        .collect();
    one_page(format, "link-clicks", &STATS_COLUMNS, rows).await
}

/// A report that is one page (built in memory: reports are small) as CSV or XLSX.
pub(crate) async fn one_page(
    format: export::Format,
    name: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<String>>,
) -> ApiResult<Response> {
    let rows = Arc::new(Mutex::new(Some(rows)));
    export::export(format, name, columns, move |_: Option<()>| {
        let rows = rows.clone();
        async move {
            let page = rows.lock().expect("rows").take().unwrap_or_default();
            Ok((page, None))
        }
    })
    .await
}

/// What a code points at, kept for a few seconds per process: the redirect touches the
/// database once per code, not once per click. Changes made through this process forget the
/// link's entries at once; other processes see them within [`CACHE_TTL`].
#[derive(Default)]
pub struct LinkCache(Mutex<HashMap<String, CacheEntry>>);

/// When it was looked up, and what was found (`None`: no such code).
type CacheEntry = (Instant, Option<Arc<Cached>>);

pub struct Cached {
    pub target: Arc<Target>,
    /// The destination with its UTM parameters.
    pub location: HeaderValue,
}

const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
const CACHE_MAX: usize = 100_000;

impl LinkCache {
    fn get(&self, code: &str) -> Option<Option<Arc<Cached>>> {
        let map = self.0.lock().expect("link cache poisoned");
        map.get(code)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, code: &str, c: Option<Arc<Cached>>) {
        let mut map = self.0.lock().expect("link cache poisoned");
        if map.len() >= CACHE_MAX {
            // Crude but bounded: stale entries go first; if all are fresh, start over.
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(code.to_string(), (Instant::now(), c));
    }

    /// Forgets every code of a link (its own and its recipients').
    pub fn forget(&self, link: LinkId) {
        self.0
            .lock()
            .expect("link cache poisoned")
            .retain(|_, (_, c)| c.as_ref().is_none_or(|c| c.target.link_id != link));
    }
}

async fn lookup(ctx: &ApiContext, code: &str) -> ApiResult<Option<Arc<Cached>>> {
    if let Some(hit) = ctx.link_cache.get(code) {
        return Ok(hit);
    }
    let found = ctx.db.resolve_code(code).await?.map(|t| {
        let location = utm_of(t.utm.as_deref())
            .map(|u| u.apply(&t.url))
            .unwrap_or_else(|| t.url.clone());
        Arc::new(Cached {
            location: HeaderValue::from_str(&location)
                .unwrap_or_else(|_| HeaderValue::from_static("/")),
            target: Arc::new(t),
        })
    });
    ctx.link_cache.put(code, found.clone());
    Ok(found)
}

fn header_text(h: &HeaderMap, name: header::HeaderName, max: usize) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(max).collect())
}

/// Follow a smart link: 302 to its destination (with UTM parameters), the click recorded.
/// Expired, disabled or deleted links answer 410 and are not counted; unknown codes 404.
async fn redirect(
    State(ctx): State<ApiContext>,
    Path(code): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    // Outside the API's layers: the route counts itself.
    let counted = |status: &'static str, r: Response| {
        metrics::counter!("link_redirects_total", "status" => status).increment(1);
        r
    };
    if !plausible_code(&code) {
        return counted("404", ApiError::NotFound.into_response());
    }
    let found = match lookup(&ctx, &code).await {
        Ok(Some(c)) => c,
        Ok(None) => return counted("404", ApiError::NotFound.into_response()),
        Err(e) => return counted("500", e.into_response()),
    };
    let t = &found.target;
    let now = ctx.clock.now();
    if t.deleted_at.is_some() || t.disabled || t.expires_at.is_some_and(|e| e <= now) {
        let gone = ApiError::Gone {
            code: "link_gone",
            message: "This link has expired or was disabled.".into(),
        };
        return counted("410", gone.into_response());
    }
    // A HEAD asks about the link without following it: nobody clicked.
    if method != Method::HEAD {
        ctx.clicks.push(RawClick {
            target: t.clone(),
            code,
            at: now,
            ip: Some(peer.ip()),
            user_agent: header_text(&headers, header::USER_AGENT, 512).unwrap_or_default(),
            referrer: header_text(&headers, header::REFERER, 512),
        });
    }
    let found = (
        StatusCode::FOUND,
        [
            (header::LOCATION, found.location.clone()),
            // Every click should reach us: no browser or proxy may answer a repeat.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    );
    counted("302", found.into_response())
}
