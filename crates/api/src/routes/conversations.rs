//! The shared inbox: one conversation per contact and number, newest activity first.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::{ConversationId, UserId, page::finish_page};
use pinglayer_store::{StoreError, inbox::InboxRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    messages::{ContentRequest, MessageView, Recipient, build_content, queue},
    views::{ErrorBody, Page, PageQuery},
};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::{Json, PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(update_conversation))
        .routes(routes!(conversation_messages, reply))
        .routes(routes!(mark_read))
}

#[derive(Serialize, ToSchema)]
pub struct ContactSummary {
    pub id: String,
    pub phone: String,
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub contact: ContactSummary,
    pub number_id: String,
    /// `open` or `closed`.
    pub status: String,
    pub assignee_id: Option<String>,
    pub unread_count: i32,
    pub last_message_at: Option<DateTime<Utc>>,
    pub last_preview: Option<String>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Whether free-form messages may be sent (24 h since the customer last wrote).
    pub window_open: bool,
    pub window_expires_at: Option<DateTime<Utc>>,
}

pub(crate) fn view(r: &InboxRow, now: DateTime<Utc>) -> ConversationView {
    let c = &r.conversation;
    let expires = c.last_inbound_at.map(|at| at + Duration::hours(24));
    ConversationView {
        id: c.id.to_string(),
        contact: ContactSummary {
            id: c.contact_id.to_string(),
            phone: r.contact_phone.clone(),
            name: r.contact_name.clone(),
        },
        number_id: c.number_id.to_string(),
        status: c.status.clone(),
        assignee_id: c.assignee_id.map(|a| a.to_string()),
        unread_count: c.unread_count,
        last_message_at: c.last_message_at,
        last_preview: c.last_preview.clone(),
        last_inbound_at: c.last_inbound_at,
        window_open: expires.is_some_and(|e| e > now),
        window_expires_at: expires,
    }
}

#[derive(Deserialize, IntoParams)]
pub struct InboxQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    pub assignee_id: Option<String>,
}

/// The inbox, newest activity first, with unread counts and the 24-hour window.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "inbox", params(InboxQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ConversationView>)))]
async fn list_conversations(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsRead>,
    Query(q): Query<InboxQuery>,
) -> ApiResult<axum::Json<Page<ConversationView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    if q.status
        .as_deref()
        .is_some_and(|s| s != "open" && s != "closed")
    {
        return Err(ApiError::field("status", "must be open or closed"));
    }
    let assignee = q
        .assignee_id
        .as_deref()
        .map(|a| a.parse::<UserId>())
        .transpose()
        .map_err(|_| ApiError::field("assignee_id", "is not a user id"))?;
    let rows = ctx
        .db
        .list_conversations(p.tenant.id, &page, q.status.as_deref(), assignee)
        .await?;
    let (rows, next_cursor) = finish_page(rows, &page, |r| {
        r.conversation
            .last_message_id
            .map(|m| m.0)
            .unwrap_or_default()
    });
    let now = ctx.clock.now();
    Ok(axum::Json(Page {
        data: rows.iter().map(|r| view(r, now)).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateConversation {
    /// `open` or `closed`.
    pub status: Option<String>,
    /// A team member's id, or `null` to unassign.
    #[serde(default, deserialize_with = "crate::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub assignee_id: Option<Option<String>>,
}

/// Assign, unassign, open or close.
#[utoipa::path(patch, path = "/api/v1/conversations/{id}", tag = "inbox", params(("id" = String, Path)), request_body = UpdateConversation, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_conversation(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsWrite>,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<UpdateConversation>,
) -> ApiResult<axum::Json<ConversationView>> {
    if req
        .status
        .as_deref()
        .is_some_and(|s| s != "open" && s != "closed")
    {
        return Err(ApiError::field("status", "must be open or closed"));
    }
    let assignee = match req.assignee_id {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => {
            let uid: UserId = raw
                .parse()
                .map_err(|_| ApiError::field("assignee_id", "is not a user id"))?;
            match ctx.db.user(p.tenant.id, uid).await {
                Ok(_) => Some(Some(uid)),
                Err(StoreError::NotFound) => {
                    return Err(ApiError::field("assignee_id", "no such team member"));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    ctx.db
        .update_conversation(
            p.tenant.id,
            id,
            req.status.as_deref(),
            assignee,
            ctx.clock.now(),
        )
        .await?;
    let row = ctx.db.conversation(p.tenant.id, id).await?;
    Ok(axum::Json(view(&row, ctx.clock.now())))
}

/// A conversation's messages, newest first.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "inbox", params(("id" = String, Path), PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<MessageView>), (status = 404, body = ErrorBody)))]
async fn conversation_messages(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsRead>,
    PathId(id): PathId<ConversationId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    let page = q.parse()?;
    ctx.db.conversation(p.tenant.id, id).await?;
    let rows = ctx
        .db
        .list_messages(p.tenant.id, &page, Some(id), None, None)
        .await?;
    let (rows, next_cursor) = finish_page(rows, &page, |m| m.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(|m| MessageView::new(m, None)).collect(),
        next_cursor,
    }))
}

/// Reply as an agent (free-form within the 24-hour window, or a template).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "inbox", params(("id" = String, Path)), request_body = ContentRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = MessageView), (status = 404, body = ErrorBody), (status = 422, description = "`outside_service_window`…", body = ErrorBody)))]
async fn reply(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsWrite>,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<ContentRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let t = p.tenant.id;
    let conv = ctx.db.conversation(t, id).await?;
    let number = ctx
        .db
        .number(t, conv.conversation.number_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::unprocessable(
                "number_disconnected",
                "This conversation's number is disconnected.",
            ),
            e => e.into(),
        })?;
    let content = build_content(&ctx, t, &req).await?;
    let (m, _) = queue(
        &ctx,
        t,
        &number,
        Recipient::Contact(conv.conversation.contact_id),
        content,
        req.reply_to.clone(),
        None,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(MessageView::new(&m, None))))
}

/// Mark the conversation read, here and at Meta (blue ticks for the customer).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "inbox", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn mark_read(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsWrite>,
    PathId(id): PathId<ConversationId>,
) -> ApiResult<axum::Json<ConversationView>> {
    let t = p.tenant.id;
    let conv = ctx.db.conversation(t, id).await?;
    if let Some(wamid) = &conv.conversation.last_inbound_wamid
        && let Ok(number) = ctx.db.number(t, conv.conversation.number_id).await
    {
        let token = ctx.token_of(&number)?;
        ctx.whatsapp
            .mark_read(&number.phone_number_id, &token, wamid)
            .await
            .map_err(|e| ApiError::BadGateway {
                code: "whatsapp_unavailable",
                message: format!("Meta did not take the read receipt: {e}"),
            })?;
    }
    ctx.db.clear_unread(t, id).await?;
    let row = ctx.db.conversation(t, id).await?;
    Ok(axum::Json(view(&row, ctx.clock.now())))
}
