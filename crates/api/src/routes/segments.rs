//! Segments: saved, named filters over contacts, evaluated (in SQL) whenever they are used.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use pinglayer_domain::{SegmentId, page::finish_page, segment::Filter};
use pinglayer_store::{StoreError, segments::Segment};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    contacts::{ContactView, views},
    views::{ErrorBody, Page, PageQuery},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_segments, create_segment))
        .routes(routes!(get_segment, update_segment, delete_segment))
        .routes(routes!(segment_contacts))
        .routes(routes!(segment_count))
}

#[derive(Deserialize, ToSchema)]
pub struct SegmentRequest {
    pub name: String,
    /// `{"all": [...]}` / `{"any": [...]}` / `{"field": "attributes.city", "op": "eq", "value": "Pune"}`.
    /// Fields: name, email, phone, language, consent, tag, created_at, last_inbound_at, birthday,
    /// attributes.<key>. Ops: eq, neq, contains, in, exists, not_exists, gt/gte/lt/lte
    /// (attributes), after/before/within_days (dates), has/has_not (tag), month_day/month (birthday).
    #[schema(value_type = Object)]
    pub filter: Value,
}

#[derive(Deserialize, ToSchema)]
pub struct SegmentPatch {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SegmentView {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub filter: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(s: &Segment) -> SegmentView {
    SegmentView {
        id: s.id.to_string(),
        name: s.name.clone(),
        filter: serde_json::from_str(&s.filter).unwrap_or(Value::Null),
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

/// A stored segment's filter (it was valid when saved).
pub(crate) fn stored_filter(s: &Segment) -> ApiResult<Filter> {
    let v: Value = serde_json::from_str(&s.filter).map_err(anyhow::Error::new)?;
    Ok(Filter::parse(&v)?)
}

fn name_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => {
            ApiError::conflict("segment_exists", "A segment with this name exists already.")
        }
        e => e.into(),
    }
}

#[utoipa::path(get, path = "/api/v1/segments", tag = "contacts", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<SegmentView>)))]
async fn list_segments(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<SegmentView>>> {
    let page = q.parse()?;
    let rows = ctx.db.list_segments(p.tenant.id, &page).await?;
    let (rows, next_cursor) = finish_page(rows, &page, |s| s.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Save a segment.
#[utoipa::path(post, path = "/api/v1/segments", tag = "contacts", request_body = SegmentRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = SegmentView), (status = 409, description = "`segment_exists`", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_segment(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    Json(req): Json<SegmentRequest>,
) -> ApiResult<(StatusCode, axum::Json<SegmentView>)> {
    let name = super::auth::required_text("name", &req.name, 120)?;
    Filter::parse(&req.filter)?;
    let s = ctx
        .db
        .create_segment(p.tenant.id, &name, &req.filter, ctx.clock.now())
        .await
        .map_err(name_taken)?;
    Ok((StatusCode::CREATED, axum::Json(view(&s))))
}

#[utoipa::path(get, path = "/api/v1/segments/{id}", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SegmentView), (status = 404, body = ErrorBody)))]
async fn get_segment(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<SegmentId>,
) -> ApiResult<axum::Json<SegmentView>> {
    Ok(axum::Json(view(&ctx.db.segment(p.tenant.id, id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/segments/{id}", tag = "contacts", params(("id" = String, Path)), request_body = SegmentPatch, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SegmentView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_segment(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<SegmentId>,
    Json(req): Json<SegmentPatch>,
) -> ApiResult<axum::Json<SegmentView>> {
    let name = req
        .name
        .as_deref()
        .map(|n| super::auth::required_text("name", n, 120))
        .transpose()?;
    if let Some(f) = &req.filter {
        Filter::parse(f)?;
    }
    let s = ctx
        .db
        .update_segment(
            p.tenant.id,
            id,
            name.as_deref(),
            req.filter.as_ref(),
            ctx.clock.now(),
        )
        .await
        .map_err(name_taken)?;
    Ok(axum::Json(view(&s)))
}

#[utoipa::path(delete, path = "/api/v1/segments/{id}", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_segment(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    PathId(id): PathId<SegmentId>,
) -> ApiResult<StatusCode> {
    ctx.db.delete_segment(p.tenant.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The contacts in a segment now, newest first.
#[utoipa::path(get, path = "/api/v1/segments/{id}/contacts", tag = "contacts", params(("id" = String, Path), PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ContactView>), (status = 404, body = ErrorBody)))]
async fn segment_contacts(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<SegmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ContactView>>> {
    let page = q.parse()?;
    let seg = ctx.db.segment(p.tenant.id, id).await?;
    let rows = ctx
        .db
        .matching_contacts(
            p.tenant.id,
            &stored_filter(&seg)?,
            Default::default(),
            &page,
            ctx.clock.now(),
        )
        .await?;
    let (rows, next_cursor) = finish_page(rows, &page, |c| c.id.0);
    Ok(axum::Json(Page {
        data: views(&ctx, p.tenant.id, &rows).await?,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SegmentCount {
    pub count: i64,
}

/// How many contacts are in a segment now.
#[utoipa::path(get, path = "/api/v1/segments/{id}/count", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SegmentCount), (status = 404, body = ErrorBody)))]
async fn segment_count(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<SegmentId>,
) -> ApiResult<axum::Json<SegmentCount>> {
    let seg = ctx.db.segment(p.tenant.id, id).await?;
    let count = ctx
        .db
        .count_matching(p.tenant.id, &stored_filter(&seg)?, ctx.clock.now())
        .await?;
    Ok(axum::Json(SegmentCount { count }))
}
