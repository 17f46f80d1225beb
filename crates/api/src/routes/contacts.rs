//! Contacts: the tenant's customers — profile, attributes, tags, consent — with soft deletion,
//! erasure on request, and a full export of what is held about one person.

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use pinglayer_domain::segment::{Condition, Field, Filter};
use pinglayer_domain::{
    ContactId, Email, FieldError, PhoneE164,
    billing::Limit,
    contact::{Birthday, Consent, Language, tag},
    page::finish_page,
};
use pinglayer_store::{
    StoreError,
    contacts::{Contact, ContactFields},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::Checks,
    messages::MessageView,
    views::{ErrorBody, Page},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    export,
    extract::{Json, OptionalJson, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, create_contact))
        .routes(routes!(contact_stats))
        .routes(routes!(get_contact, update_contact, delete_contact))
        .routes(routes!(export_contact))
        .routes(routes!(add_tags))
        .routes(routes!(remove_tag))
        .routes(routes!(list_tags))
        .routes(routes!(opt_out))
        .routes(routes!(opt_in))
        .routes(routes!(bulk_tags))
        .routes(routes!(export_contacts))
        .routes(routes!(get_keywords, put_keywords))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateContact {
    /// Any common notation; without `+`, `default_country` (else the tenant's) says whose
    /// number it is.
    pub phone: String,
    /// ISO 3166 alpha-2 (`IN`, `NG`…), for numbers given without a country code.
    pub default_country: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// BCP-47: `en`, `hi`, `ta`…
    pub language: Option<String>,
    /// `1990-05-15`, or `--05-15` when the year is unknown.
    pub birthday: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Marketing consent, if known (recorded with source `api`).
    pub consent: Option<Consent>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateContact {
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub birthday: Option<String>,
    /// Replaces the attributes.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    pub status: Consent,
    pub at: Option<DateTime<Utc>>,
    /// How: `api`, `inbound_keyword`, `import`…
    pub source: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactView {
    pub id: String,
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub birthday: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub tags: Vec<String>,
    /// `null` until the contact opts in or out.
    pub consent: Option<ConsentView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The customer's last message: the 24-hour service window runs from here.
    pub last_inbound_at: Option<DateTime<Utc>>,
}

fn view(c: &Contact, tags: Vec<String>) -> ContactView {
    ContactView {
        id: c.id.to_string(),
        phone: c.phone.clone(),
        name: c.name.clone(),
        email: c.email.clone(),
        language: c.language.clone(),
        birthday: c.birthday.clone(),
        attributes: c.attributes.0.clone(),
        tags,
        consent: c
            .consent
            .as_deref()
            .and_then(|s| s.parse().ok())
            .map(|status| ConsentView {
                status,
                at: c.consent_at,
                source: c.consent_source.clone(),
            }),
        created_at: c.created_at,
        updated_at: c.updated_at,
        last_inbound_at: c.last_inbound_at,
    }
}

pub(crate) async fn views(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
    rows: &[Contact],
) -> ApiResult<Vec<ContactView>> {
    let ids: Vec<ContactId> = rows.iter().map(|c| c.id).collect();
    let mut tags: BTreeMap<ContactId, Vec<String>> = BTreeMap::new();
    for (id, t) in ctx.db.contact_tags(tenant, &ids).await? {
        tags.entry(id).or_default().push(t);
    }
    Ok(rows
        .iter()
        .map(|c| view(c, tags.remove(&c.id).unwrap_or_default()))
        .collect())
}

async fn one(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
    c: &Contact,
) -> ApiResult<ContactView> {
    Ok(views(ctx, tenant, std::slice::from_ref(c)).await?.remove(0))
}

fn fields(
    c: &mut Checks,
    name: Option<&str>,
    email: Option<&str>,
    language: Option<&str>,
    birthday: Option<&str>,
    attributes: Option<&Value>,
) -> ContactFields {
    let name = name.and_then(|n| c.take(super::auth::required_text("name", n, 200)));
    let email = email
        .and_then(|e| c.take(Email::parse(e)))
        .map(|e| e.as_str().to_string());
    let language = language
        .and_then(|l| c.take(Language::parse(l)))
        .map(|l| l.as_str().to_string());
    let birthday = birthday
        .and_then(|b| c.take(Birthday::parse(b)))
        .map(|b| b.as_str().to_string());
    let attributes = match attributes {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => c.take::<Value>(Err(FieldError::new("attributes", "must be a JSON object"))),
    };
    ContactFields {
        name,
        email,
        language,
        birthday,
        attributes,
    }
}

fn tags(c: &mut Checks, raw: &[String]) -> Vec<String> {
    let mut out: Vec<String> = raw.iter().filter_map(|t| c.take(tag(t))).collect();
    out.sort();
    out.dedup();
    out
}

#[derive(Deserialize, IntoParams, ToSchema, Default)]
pub struct ContactQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Text search on name, phone and e-mail.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub language: Option<String>,
    /// `opted_in`, `opted_out` or `unknown`.
    pub consent: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Only contacts in this segment.
    pub segment: Option<String>,
    /// `-created_at` (newest first, the default), `created_at`, `name` or `-name`.
    pub sort: Option<String>,
}

/// The list's query parameters as one filter (the same SQL translation segments use).
async fn list_filter(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
    q: &ContactQuery,
) -> ApiResult<Filter> {
    let mut all = Vec::new();
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        all.push(Filter::Any(
            [Field::Name, Field::Phone, Field::Email]
                .into_iter()
                .map(|f| Filter::Cond(Condition::Contains(f, text.to_string())))
                .collect(),
        ));
    }
    if let Some(t) = &q.tag {
        all.push(Filter::Cond(Condition::HasTag(t.trim().to_lowercase())));
    }
    if let Some(l) = &q.language {
        all.push(Filter::Cond(Condition::Eq(
            Field::Language,
            Value::String(Language::parse(l)?.as_str().to_string()),
        )));
    }
    if let Some(c) = &q.consent {
        if !["opted_in", "opted_out", "unknown"].contains(&c.as_str()) {
            return Err(ApiError::field(
                "consent",
                "must be opted_in, opted_out or unknown",
            ));
        }
        all.push(Filter::Cond(Condition::Eq(
            Field::Consent,
            Value::String(c.clone()),
        )));
    }
    if let Some(t) = q.created_from {
        all.push(Filter::Cond(Condition::After(Field::CreatedAt, t)));
    }
    if let Some(t) = q.created_to {
        all.push(Filter::Cond(Condition::Before(Field::CreatedAt, t)));
    }
    if let Some(id) = &q.segment {
        let id = id
            .parse()
            .map_err(|_| ApiError::field("segment", "is not a segment id"))?;
        let seg = match ctx.db.segment(tenant, id).await {
            Err(StoreError::NotFound) => return Err(ApiError::field("segment", "no such segment")),
            other => other?,
        };
        all.push(super::segments::stored_filter(&seg)?);
    }
    Ok(Filter::All(all))
}

/// Contacts, newest first, filtered. A page asked for again while the tenant's contacts are
/// unchanged is answered from memory (never more than a second old).
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ContactQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ContactView>), (status = 422, body = ErrorBody)))]
async fn list_contacts(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    RawQuery(raw): RawQuery,
    Query(q): Query<ContactQuery>,
) -> ApiResult<axum::response::Response> {
    let page = pinglayer_domain::PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let tenant = p.tenant.id;
    // A segment's relative dates move with the clock: those lists are never kept.
    if q.segment.is_some() {
        return Ok(json_body(contacts_page(&ctx, tenant, &q, &page).await?));
    }
    let key = raw.unwrap_or_default();
    let pages = &ctx.contact_pages;
    if let Some(body) = pages.get(tenant, &key) {
        return Ok(json_body(body));
    }
    let _turn = pages.turn(tenant, &key).await;
    if let Some(body) = pages.get(tenant, &key) {
        return Ok(json_body(body));
    }
    let generation = pinglayer_store::changes::contacts_generation(tenant);
    let body = contacts_page(&ctx, tenant, &q, &page).await?;
    pages.put(tenant, &key, generation, body.clone());
    Ok(json_body(body))
}

/// The page as JSON, from the database.
async fn contacts_page(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
    q: &ContactQuery,
    page: &pinglayer_domain::PageRequest,
) -> ApiResult<axum::body::Bytes> {
    let filter = list_filter(ctx, tenant, q).await?;
    let sort = pinglayer_domain::contact::ContactSort::parse(q.sort.as_deref())?;
    let rows = ctx
        .db
        .matching_contacts(tenant, &filter, sort, page, ctx.clock.now())
        .await?;
    let (rows, next_cursor) = finish_page(rows, page, |c| c.id.0);
    let body = serde_json::to_vec(&Page {
        data: views(ctx, tenant, &rows).await?,
        next_cursor,
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(body.into())
}

fn json_body(body: axum::body::Bytes) -> axum::response::Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Add a contact. The phone is stored in E.164; one contact per phone.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = CreateContact, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = ContactView), (status = 409, description = "`contact_exists`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_contact(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    Json(req): Json<CreateContact>,
) -> ApiResult<(StatusCode, axum::Json<ContactView>)> {
    let mut c = Checks::new();
    let country = req
        .default_country
        .as_ref()
        .or(p.tenant.default_country.as_ref());
    let phone = c.take(PhoneE164::parse(&req.phone, country.map(String::as_str)));
    let f = fields(
        &mut c,
        req.name.as_deref(),
        req.email.as_deref(),
        req.language.as_deref(),
        req.birthday.as_deref(),
        req.attributes.as_ref(),
    );
    let t = tags(&mut c, &req.tags);
    c.finish()?;
    super::billing::within_plan(&ctx, p.tenant.id, Limit::Contacts, 1).await?;
    let phone = phone.expect("checked");
    let contact = match ctx
        .db
        .create_contact(
            p.tenant.id,
            &phone,
            &f,
            &t,
            req.consent.map(|c| (c, "api")),
            ctx.clock.now(),
        )
        .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "contact_exists",
                format!("A contact with {phone} exists already."),
            ));
        }
        other => other?,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(one(&ctx, p.tenant.id, &contact).await?),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ContactStatsView {
    pub total: i64,
    pub by_consent: BTreeMap<String, i64>,
    pub by_language: BTreeMap<String, i64>,
    pub by_tag: BTreeMap<String, i64>,
}

/// Counts by consent, language and tag.
#[utoipa::path(get, path = "/api/v1/contacts/stats", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactStatsView)))]
async fn contact_stats(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
) -> ApiResult<axum::Json<ContactStatsView>> {
    let s = ctx.db.contact_stats(p.tenant.id).await?;
    Ok(axum::Json(ContactStatsView {
        total: s.total,
        by_consent: s.by_consent.into_iter().collect(),
        by_language: s.by_language.into_iter().collect(),
        by_tag: s.by_tag.into_iter().collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)))]
async fn get_contact(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<ContactId>,
) -> ApiResult<axum::Json<ContactView>> {
    let c = ctx.db.contact(p.tenant.id, id).await?;
    Ok(axum::Json(one(&ctx, p.tenant.id, &c).await?))
}

#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)), request_body = UpdateContact, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_contact(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<ContactId>,
    Json(req): Json<UpdateContact>,
) -> ApiResult<axum::Json<ContactView>> {
    let mut c = Checks::new();
    let f = fields(
        &mut c,
        req.name.as_deref(),
        req.email.as_deref(),
        req.language.as_deref(),
        req.birthday.as_deref(),
        req.attributes.as_ref(),
    );
    let t = req.tags.as_deref().map(|t| tags(&mut c, t));
    c.finish()?;
    let contact = ctx
        .db
        .update_contact(p.tenant.id, id, &f, t.as_deref(), ctx.clock.now())
        .await?;
    Ok(axum::Json(one(&ctx, p.tenant.id, &contact).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct DeleteQuery {
    /// Erase the person for good (data-protection request) instead of hiding them.
    #[serde(default)]
    pub erase: bool,
}

/// Hide a contact (restorable by creating or importing the phone again), or erase it.
#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path), DeleteQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_contact(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<ContactId>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let now = ctx.clock.now();
    if q.erase {
        // A hidden (soft-deleted) contact can still be erased.
        ctx.db.erase_contact(p.tenant.id, id, now).await?;
    } else {
        ctx.db.soft_delete_contact(p.tenant.id, id, now).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ConsentEventView {
    pub consent: String,
    pub source: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactExport {
    pub contact: ContactView,
    pub consent_history: Vec<ConsentEventView>,
    /// Every message to and from the person (campaign messages too), newest first.
    pub messages: Vec<MessageView>,
    /// Their conversations in the inbox, one per sending number.
    pub conversations: Vec<super::conversations::ConversationView>,
    /// Every click on a smart link recorded as theirs, oldest first.
    pub link_clicks: Vec<ClickView>,
}

#[derive(Serialize, ToSchema)]
pub struct ClickView {
    pub at: DateTime<Utc>,
    pub link_id: String,
    pub code: String,
    pub campaign_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    pub device: String,
    pub browser: String,
    pub os: String,
    pub country: Option<String>,
}

/// Everything held about one person (a data-protection access request), soft-deleted or not.
#[utoipa::path(get, path = "/api/v1/contacts/{id}/export", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactExport), (status = 404, body = ErrorBody)))]
async fn export_contact(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<ContactId>,
) -> ApiResult<axum::Json<ContactExport>> {
    let t = p.tenant.id;
    // A soft-deleted contact is still held (a re-import restores it), so it is exported too.
    let c = ctx.db.contact_held(t, id).await?;
    let history = ctx.db.consent_history(t, id).await?;
    let messages = ctx.db.contact_messages(t, id).await?;
    let conversations = ctx.db.contact_conversations(t, id).await?;
    let clicks = ctx.db.contact_clicks(t, id).await?;
    let now = ctx.clock.now();
    Ok(axum::Json(ContactExport {
        contact: one(&ctx, t, &c).await?,
        consent_history: history
            .into_iter()
            .map(|e| ConsentEventView {
                consent: e.consent,
                source: e.source,
                note: e.note,
                at: e.at,
            })
            .collect(),
        messages: messages.iter().map(|m| MessageView::new(m, None)).collect(),
        conversations: conversations
            .iter()
            .map(|r| super::conversations::view(r, now))
            .collect(),
        link_clicks: clicks
            .into_iter()
            .map(|k| ClickView {
                at: k.at,
                link_id: k.link_id.to_string(),
                code: k.code,
                campaign_id: k.campaign_id.map(|c| c.to_string()),
                ip: k.ip,
                user_agent: k.user_agent,
                referrer: k.referrer,
                device: k.device,
                browser: k.browser,
                os: k.os,
                country: k.country,
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct TagsRequest {
    pub tags: Vec<String>,
}

/// Add tags to a contact.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/tags", tag = "contacts", params(("id" = String, Path)), request_body = TagsRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)))]
async fn add_tags(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<ContactId>,
    Json(req): Json<TagsRequest>,
) -> ApiResult<axum::Json<ContactView>> {
    let mut c = Checks::new();
    let t = tags(&mut c, &req.tags);
    c.finish()?;
    ctx.db
        .add_tags(p.tenant.id, id, &t, ctx.clock.now())
        .await?;
    let contact = ctx.db.contact(p.tenant.id, id).await?;
    Ok(axum::Json(one(&ctx, p.tenant.id, &contact).await?))
}

/// Remove a tag from a contact.
#[utoipa::path(delete, path = "/api/v1/contacts/{id}/tags/{tag}", tag = "contacts", params(("id" = String, Path), ("tag" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_tag(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    axum::extract::Path((id, t)): axum::extract::Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: ContactId = id.parse().map_err(|_| ApiError::NotFound)?;
    ctx.db
        .remove_tag(p.tenant.id, id, &t.trim().to_lowercase())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TagList {
    pub data: Vec<TagCount>,
}

/// Every tag in use, with how many contacts carry it.
#[utoipa::path(get, path = "/api/v1/tags", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TagList)))]
async fn list_tags(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
) -> ApiResult<axum::Json<TagList>> {
    let rows = ctx.db.tag_counts(p.tenant.id).await?;
    Ok(axum::Json(TagList {
        data: rows
            .into_iter()
            .map(|(tag, count)| TagCount { tag, count })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ConsentRequest {
    /// Why (kept in the consent history).
    pub note: Option<String>,
}

async fn consent(
    ctx: &ApiContext,
    p: &crate::auth::Principal,
    id: ContactId,
    to: Consent,
    req: ConsentRequest,
) -> ApiResult<axum::Json<ContactView>> {
    ctx.db
        .set_consent(
            p.tenant.id,
            id,
            to,
            "api",
            req.note.as_deref(),
            ctx.clock.now(),
        )
        .await?;
    let c = ctx.db.contact(p.tenant.id, id).await?;
    Ok(axum::Json(one(ctx, p.tenant.id, &c).await?))
}

/// Record that the contact no longer wants marketing messages.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/opt-out", tag = "contacts", params(("id" = String, Path)), request_body = ConsentRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)))]
async fn opt_out(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<ContactId>,
    OptionalJson(req): OptionalJson<ConsentRequest>,
) -> ApiResult<axum::Json<ContactView>> {
    consent(&ctx, &p, id, Consent::OptedOut, req).await
}

/// Record that the contact agreed to marketing messages.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/opt-in", tag = "contacts", params(("id" = String, Path)), request_body = ConsentRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)))]
async fn opt_in(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<ContactId>,
    OptionalJson(req): OptionalJson<ConsentRequest>,
) -> ApiResult<axum::Json<ContactView>> {
    consent(&ctx, &p, id, Consent::OptedIn, req).await
}

#[derive(Deserialize, ToSchema)]
pub struct BulkTags {
    /// Which contacts: the list's filters (`q`, `tag`, `language`, `consent`, `segment`,
    /// `created_from`, `created_to`); `{}` is everyone.
    #[serde(default)]
    pub filter: ContactQuery,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResult {
    /// Contacts the filter matched.
    pub matched: i64,
}

/// Add and remove tags on every contact matching a filter (set-based, in one transaction).
#[utoipa::path(post, path = "/api/v1/contacts/tags", tag = "contacts", request_body = BulkTags, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BulkResult), (status = 422, body = ErrorBody)))]
async fn bulk_tags(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    Json(req): Json<BulkTags>,
) -> ApiResult<axum::Json<BulkResult>> {
    let mut c = Checks::new();
    let add = tags(&mut c, &req.add);
    let remove = tags(&mut c, &req.remove);
    c.finish()?;
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::field("add", "give tags to add or remove"));
    }
    let filter = list_filter(&ctx, p.tenant.id, &req.filter).await?;
    let matched = ctx
        .db
        .tag_matching(p.tenant.id, &filter, &add, &remove, ctx.clock.now())
        .await?;
    Ok(axum::Json(BulkResult { matched }))
}

#[derive(Deserialize, IntoParams)]
pub struct ExportQuery {
    /// `csv` (default, streamed) or `xlsx`.
    pub format: Option<String>,
    #[serde(flatten)]
    #[param(inline)]
    pub filter: ContactQuery,
}

const EXPORT_COLUMNS: [&str; 11] = [
    "id",
    "phone",
    "name",
    "email",
    "language",
    "birthday",
    "consent",
    "tags",
    "attributes",
    "created_at",
    "last_inbound_at",
];

fn export_row(v: &ContactView) -> [String; 11] {
    [
        v.id.clone(),
        v.phone.clone(),
        v.name.clone().unwrap_or_default(),
        v.email.clone().unwrap_or_default(),
        v.language.clone().unwrap_or_default(),
        v.birthday.clone().unwrap_or_default(),
        v.consent
            .as_ref()
            .map(|c| c.status.to_string())
            .unwrap_or_default(),
        v.tags.join(","),
        v.attributes.to_string(),
        v.created_at.to_rfc3339(),
        v.last_inbound_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    ]
}

/// Export the contacts matching the list's filters, as CSV (streamed page by page) or XLSX.
#[utoipa::path(get, path = "/api/v1/contacts/export", tag = "contacts", params(ExportQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 422, body = ErrorBody)))]
async fn export_contacts(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<axum::response::Response> {
    let format = export::Format::parse(q.format.as_deref())?;
    let filter = std::sync::Arc::new(list_filter(&ctx, p.tenant.id, &q.filter).await?);
    let sort = pinglayer_domain::contact::ContactSort::parse(q.filter.sort.as_deref())?;
    let tenant = p.tenant.id;
    export::export(
        format,
        "contacts",
        &EXPORT_COLUMNS,
        move |cursor: Option<String>| {
            let (ctx, filter) = (ctx.clone(), filter.clone());
            async move {
                let page = pinglayer_domain::PageRequest::parse(Some(500), cursor.as_deref())?;
                let rows = ctx
                    .db
                    .matching_contacts(tenant, &filter, sort, &page, ctx.clock.now())
                    .await?;
                let (rows, next) = finish_page(rows, &page, |c| c.id.0);
                let cells = views(&ctx, tenant, &rows)
                    .await?
                    .iter()
                    .map(|v| export_row(v).to_vec())
                    .collect();
                Ok((cells, next))
            }
        },
    )
    .await
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
pub struct KeywordLists {
    /// Inbound texts that opt a contact out, e.g. `["UNSUBSCRIBE", "bas karo"]`.
    #[serde(default)]
    pub opt_out: Vec<String>,
    /// Inbound texts that opt a contact back in.
    #[serde(default)]
    pub opt_in: Vec<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
pub struct Replies {
    /// Sent when a contact opts out by keyword (1–1,024 characters).
    pub opted_out: Option<String>,
    /// Sent when a contact opts back in by keyword.
    pub opted_in: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
pub struct Keywords {
    /// Keywords of no particular language.
    #[serde(default)]
    pub opt_out: Vec<String>,
    #[serde(default)]
    pub opt_in: Vec<String>,
    /// Keywords of one language (code → lists), e.g. `{"hi": {"opt_out": ["बस करो"]}}`: a
    /// contact with no language of their own is answered in the keyword's.
    #[serde(default)]
    pub by_language: BTreeMap<String, KeywordLists>,
    /// Your own confirmations (language code → texts), in place of the built-in ones
    /// (English, Hindi, Tamil). A confirmation goes out in the contact's language, else the
    /// keyword's, else English.
    #[serde(default)]
    pub replies: BTreeMap<String, Replies>,
}

#[derive(Serialize, ToSchema)]
pub struct KeywordsView {
    /// The tenant's own keywords (normalised: lower-case, no trailing punctuation) and texts.
    pub custom: Keywords,
    /// Always active: STOP, UNSUBSCRIBE, START… in English and Indian languages.
    pub builtin: KeywordLists,
}

async fn keywords_view(
    ctx: &ApiContext,
    tenant: pinglayer_domain::TenantId,
) -> ApiResult<KeywordsView> {
    let settings = ctx.db.consent_settings(tenant).await?;
    let mut custom = Keywords::default();
    for (w, c, lang) in settings.keywords {
        let lists = match lang {
            Some(l) => custom.by_language.entry(l).or_default(),
            None => {
                if c == "opted_out" {
                    custom.opt_out.push(w);
                } else {
                    custom.opt_in.push(w);
                }
                continue;
            }
        };
        if c == "opted_out" {
            lists.opt_out.push(w);
        } else {
            lists.opt_in.push(w);
        }
    }
    for (lang, c, body) in settings.replies {
        let r = custom.replies.entry(lang).or_default();
        if c == "opted_out" {
            r.opted_out = Some(body);
        } else {
            r.opted_in = Some(body);
        }
    }
    let (out, inn) = pinglayer_domain::contact::builtin_keywords();
    Ok(KeywordsView {
        custom,
        builtin: KeywordLists {
            opt_out: out.iter().map(|s| s.to_string()).collect(),
            opt_in: inn.iter().map(|s| s.to_string()).collect(),
        },
    })
}

/// The keywords that change marketing consent when a contact sends them, and the texts that
/// confirm the change.
#[utoipa::path(get, path = "/api/v1/consent/keywords", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = KeywordsView)))]
async fn get_keywords(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
) -> ApiResult<axum::Json<KeywordsView>> {
    Ok(axum::Json(keywords_view(&ctx, p.tenant.id).await?))
}

/// Replace the tenant's own opt-out / opt-in keywords (built-in ones stay active) and its
/// confirmation texts.
#[utoipa::path(put, path = "/api/v1/consent/keywords", tag = "contacts", request_body = Keywords, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = KeywordsView), (status = 422, body = ErrorBody)))]
async fn put_keywords(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    Json(req): Json<Keywords>,
) -> ApiResult<axum::Json<KeywordsView>> {
    use pinglayer_domain::contact::{keyword, normalize_keyword};
    let mut settings = pinglayer_store::contacts::ConsentSettings::default();
    let mut groups: Vec<(Option<String>, &KeywordLists)> = Vec::new();
    let plain = KeywordLists {
        opt_out: req.opt_out.clone(),
        opt_in: req.opt_in.clone(),
    };
    groups.push((None, &plain));
    for (lang, lists) in &req.by_language {
        let l = Language::parse(lang).map_err(|_| {
            ApiError::field("by_language", format!("{lang:?} is not a language code"))
        })?;
        groups.push((Some(l.as_str().to_string()), lists));
    }
    for (lang, lists) in groups {
        for (list, consent, field) in [
            (&lists.opt_out, "opted_out", "opt_out"),
            (&lists.opt_in, "opted_in", "opt_in"),
        ] {
            for raw in list {
                let w = normalize_keyword(raw);
                if w.is_empty() || w.chars().count() > 40 {
                    return Err(ApiError::field(
                        field,
                        format!("{raw:?} is not a keyword (1–40 characters)"),
                    ));
                }
                let builtin = keyword(&w).map(|c| c.as_str());
                if builtin.is_some_and(|b| b != consent) {
                    return Err(ApiError::field(
                        field,
                        format!("{raw:?} is a built-in keyword with the opposite meaning"),
                    ));
                }
                if let Some((_, c0, l0)) = settings.keywords.iter().find(|(x, _, _)| *x == w) {
                    if c0 != consent {
                        return Err(ApiError::field(field, format!("{raw:?} is in both lists")));
                    }
                    if *l0 != lang {
                        return Err(ApiError::field(
                            field,
                            format!("{raw:?} is given for two languages"),
                        ));
                    }
                    continue;
                }
                if builtin.is_none() {
                    settings
                        .keywords
                        .push((w, consent.to_string(), lang.clone()));
                }
            }
        }
    }
    if settings.keywords.len() > 200 {
        return Err(ApiError::field("opt_out", "at most 200 keywords"));
    }
    for (lang, r) in &req.replies {
        let l = Language::parse(lang)
            .map_err(|_| ApiError::field("replies", format!("{lang:?} is not a language code")))?;
        for (text, consent) in [(&r.opted_out, "opted_out"), (&r.opted_in, "opted_in")] {
            let Some(text) = text else { continue };
            let t = text.trim();
            if t.is_empty() || t.chars().count() > 1024 {
                return Err(ApiError::field(
                    "replies",
                    "a confirmation is 1–1,024 characters",
                ));
            }
            settings
                .replies
                .push((l.as_str().to_string(), consent.to_string(), t.to_string()));
        }
    }
    ctx.db
        .set_consent_settings(p.tenant.id, &settings, ctx.clock.now())
        .await?;
    Ok(axum::Json(keywords_view(&ctx, p.tenant.id).await?))
}
