//! Sending single messages, and reading messages with their state history.
//!
//! A send is validated (recipient, number, template approval and parameters, the 24-hour
//! window for free-form content), queued in the outbox in one transaction, and answered 202;
//! the engine's dispatcher sends it. `Idempotency-Key` makes retries safe: the same key and body
//! return the same message, the same key with another body is refused.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::{
    ContactId, ConversationId, MessageId, MessageStatus, NumberId, PhoneE164, TenantId,
    billing::Category, page::finish_page,
};
use pinglayer_store::{
    StoreError, inbox,
    messages::{self, Message, MessageEvent, NewOutbound},
    numbers::Number,
};
use pinglayer_whatsapp::types::{
    ComponentParameters, Content, Interactive, Language, Media, Parameter, Template, Text,
    validate_interactive,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::{ErrorBody, Page};
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm, secrets::sha256_hex},
    extract::{PathId, Query},
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, send_message))
        .routes(routes!(get_message))
}

/// What to send: exactly one of `template`, `text`, `interactive`, `media`.
#[derive(Deserialize, ToSchema, Default)]
pub struct ContentRequest {
    pub template: Option<TemplateRequest>,
    pub text: Option<TextRequest>,
    /// Meta's interactive object (reply buttons, list, CTA URL).
    #[schema(value_type = Option<Object>)]
    pub interactive: Option<Value>,
    pub media: Option<MediaRequest>,
    /// Quote this message (its wamid).
    pub reply_to: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct SendRequest {
    /// An E.164 phone number (`+919812345678`) or a contact id.
    pub to: String,
    /// The sending number; default: the tenant's first number.
    pub from_number_id: Option<String>,
    #[serde(flatten)]
    pub content: ContentRequest,
}

#[derive(Deserialize, ToSchema)]
pub struct TemplateRequest {
    pub name: String,
    /// `en`, `en_US`, `hi`…
    pub language: String,
    /// `["Asha", "#1234"]` for the body's `{{1}}`, `{{2}}`; or
    /// `{"header": [...], "body": [...] | {"first_name": "Asha"}, "buttons": [{"index": 0, "sub_type": "url", "text": "abc"}]}`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Meta's `components` as is, instead of `parameters`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub components: Option<Vec<ComponentParameters>>,
}

#[derive(Deserialize, ToSchema)]
pub struct TextRequest {
    pub body: String,
    pub preview_url: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct MediaRequest {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// An uploaded media id, or…
    pub id: Option<String>,
    /// …an https link.
    pub link: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: Option<String>,
    pub contact_id: String,
    pub number_id: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: MessageStatus,
    /// The customer's number.
    pub to: String,
    pub wamid: Option<String>,
    pub preview: String,
    #[schema(value_type = Object)]
    pub content: Value,
    /// What it is billed as: `marketing`, `utility`, `authentication` or `service`.
    pub category: Option<String>,
    /// What it cost (`null` until dispatched); refunded ones show what was given back.
    pub cost: Option<pinglayer_domain::billing::Money>,
    pub refunded: bool,
    pub error: Option<MessageError>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// Every state reached, oldest first (single-message reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
}

impl MessageView {
    pub fn new(m: &Message, history: Option<Vec<MessageEvent>>) -> Self {
        Self {
            id: m.id.to_string(),
            conversation_id: m.conversation_id.map(|c| c.to_string()),
            contact_id: m.contact_id.to_string(),
            number_id: m.number_id.to_string(),
            direction: m.direction.clone(),
            kind: m.kind.clone(),
            status: m.status,
            to: m.to_phone.clone(),
            wamid: m.wamid.clone(),
            preview: m.preview.clone(),
            content: serde_json::from_str(&m.content).unwrap_or(Value::Null),
            category: m.category.clone(),
            cost: m.charge.map(pinglayer_domain::billing::Money),
            refunded: m.refunded_at.is_some(),
            error: (m.error_code.is_some() || m.error_title.is_some()).then(|| MessageError {
                code: m.error_code,
                title: m.error_title.clone(),
                detail: m.error_detail.clone(),
            }),
            attempts: m.attempts,
            created_at: m.created_at,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            read_at: m.read_at,
            failed_at: m.failed_at,
            // In the order of the states (webhook times have whole seconds; ours have more).
            history: history.map(|mut h| {
                h.sort_by_key(|e| e.status.rank());
                h.into_iter()
                    .map(|e| HistoryEntry {
                        status: e.status,
                        at: e.at,
                        error_code: e.error_code,
                        error_title: e.error_title,
                    })
                    .collect()
            }),
        }
    }
}

fn text_params(v: &Value, field: &'static str) -> ApiResult<Vec<Parameter>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(Parameter::text(s.clone())),
                Value::Number(n) => Ok(Parameter::text(n.to_string())),
                _ => Err(ApiError::field(field, "parameters must be strings")),
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok(Parameter::named(k.clone(), s.clone())),
                Value::Number(n) => Ok(Parameter::named(k.clone(), n.to_string())),
                _ => Err(ApiError::field(field, "named parameters must be strings")),
            })
            .collect(),
        _ => Err(ApiError::field(
            field,
            "must be a list or an object of named values",
        )),
    }
}

/// Turns the friendly `parameters` into Meta's components.
fn template_components(req: &TemplateRequest) -> ApiResult<Vec<ComponentParameters>> {
    if let Some(c) = &req.components {
        return Ok(c.clone());
    }
    let comp = |kind: &str, parameters| ComponentParameters {
        kind: kind.into(),
        sub_type: None,
        index: None,
        parameters,
    };
    let mut out = Vec::new();
    match &req.parameters {
        None | Some(Value::Null) => {}
        Some(v @ Value::Array(_)) => out.push(comp("body", text_params(v, "template.parameters")?)),
        Some(Value::Object(map)) => {
            if let Some(h) = map.get("header") {
                out.push(comp(
                    "header",
                    text_params(h, "template.parameters.header")?,
                ));
            }
            if let Some(b) = map.get("body") {
                out.push(comp("body", text_params(b, "template.parameters.body")?));
            }
            for b in map
                .get("buttons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let sub_type = b["sub_type"].as_str().unwrap_or("url").to_string();
                let index = b["index"]
                    .as_u64()
                    .map(|i| i.to_string())
                    .or_else(|| b["index"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "0".into());
                let param = if sub_type == "quick_reply" {
                    Parameter::payload(b["payload"].as_str().unwrap_or_default())
                } else {
                    Parameter::text(b["text"].as_str().unwrap_or_default())
                };
                out.push(ComponentParameters {
                    kind: "button".into(),
                    sub_type: Some(sub_type),
                    index: Some(index),
                    parameters: vec![param],
                });
            }
        }
        Some(_) => {
            return Err(ApiError::field(
                "template.parameters",
                "must be a list or an object",
            ));
        }
    }
    Ok(out)
}

/// Content checked against what the tenant has, and whether it is marketing (which opted-out
/// contacts never receive).
pub(crate) struct Checked {
    pub content: Content,
    /// Whether opted-out contacts must not get it.
    pub marketing: bool,
    /// What it is billed as: the template's category, `service` for free-form messages.
    pub category: Category,
}

/// Parses and checks the content of a send against what the tenant has.
pub(crate) async fn build_content(
    ctx: &ApiContext,
    tenant: TenantId,
    req: &ContentRequest,
) -> ApiResult<Checked> {
    let mut category = Category::Service;
    let content = check_content(ctx, tenant, req, &mut category).await?;
    Ok(Checked {
        content,
        marketing: category == Category::Marketing,
        category,
    })
}

async fn check_content(
    ctx: &ApiContext,
    tenant: TenantId,
    req: &ContentRequest,
    category: &mut Category,
) -> ApiResult<Content> {
    let given = [
        req.template.is_some(),
        req.text.is_some(),
        req.interactive.is_some(),
        req.media.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::field(
            "body",
            "give exactly one of template, text, interactive, media",
        ));
    }
    if let Some(t) = &req.text {
        let n = t.body.chars().count();
        if n == 0 || n > 4096 {
            return Err(ApiError::field("text.body", "must be 1–4096 characters"));
        }
        return Ok(Content::Text {
            text: Text {
                body: t.body.clone(),
                preview_url: t.preview_url,
            },
        });
    }
    if let Some(i) = &req.interactive {
        let interactive: Interactive = serde_json::from_value(i.clone())
            .map_err(|e| ApiError::field("interactive", e.to_string()))?;
        validate_interactive(&interactive).map_err(|e| ApiError::field("interactive", e))?;
        return Ok(Content::Interactive { interactive });
    }
    if let Some(m) = &req.media {
        if m.id.is_some() == m.link.is_some() {
            return Err(ApiError::field("media", "give exactly one of id and link"));
        }
        if m.link
            .as_deref()
            .is_some_and(|l| !(l.starts_with("https://") || l.starts_with("http://")))
        {
            return Err(ApiError::field("media.link", "must be an http(s) URL"));
        }
        let media = Media {
            id: m.id.clone(),
            link: m.link.clone(),
            caption: m.caption.clone(),
            filename: m.filename.clone(),
        };
        return Ok(match m.kind.as_str() {
            "image" => Content::Image { image: media },
            "video" => Content::Video { video: media },
            "audio" => Content::Audio { audio: media },
            "document" => Content::Document { document: media },
            "sticker" => Content::Sticker { sticker: media },
            _ => {
                return Err(ApiError::field(
                    "media.type",
                    "must be image, video, audio, document or sticker",
                ));
            }
        });
    }
    let t = req.template.as_ref().expect("one was given");
    let Some((tpl, version)) = ctx
        .db
        .template_version(tenant, &t.name, &t.language)
        .await?
    else {
        return Err(ApiError::unprocessable(
            "template_not_found",
            format!(
                "No template {} in language {}; create or sync it first.",
                t.name, t.language
            ),
        ));
    };
    if version.status != "APPROVED" {
        return Err(ApiError::unprocessable(
            "template_not_approved",
            format!(
                "Template {} ({}) is {}.",
                t.name, t.language, version.status
            ),
        ));
    }
    *category = Category::of_template(&tpl.category);
    let components = template_components(t)?;
    let defs: Value = serde_json::from_str(&version.components).unwrap_or(Value::Null);
    let vars = super::templates::variables(&defs);
    for (kind, expected) in [("header", &vars.header), ("body", &vars.body)] {
        let given: usize = components
            .iter()
            .filter(|c| c.kind.eq_ignore_ascii_case(kind))
            .map(|c| c.parameters.len())
            .sum();
        if given != expected.len() {
            return Err(ApiError::unprocessable(
                "template_parameter_mismatch",
                format!(
                    "The {kind} of {} takes {} parameter(s) ({}); {given} given.",
                    tpl.name,
                    expected.len(),
                    expected.join(", ")
                ),
            ));
        }
    }
    Ok(Content::Template {
        template: Template {
            name: t.name.clone(),
            language: Language {
                code: t.language.clone(),
                policy: Some("deterministic".into()),
            },
            components,
        },
    })
}

/// Who receives a message.
pub(crate) enum Recipient {
    Phone(PhoneE164),
    Contact(ContactId),
}

/// Queues a message: the conversation is found or opened, the 24-hour rule is checked for
/// free-form content, the outbox row is written, and the dispatcher is woken. Returns the
/// message and whether it is new (an idempotent replay returns the earlier one).
pub(crate) async fn queue(
    ctx: &ApiContext,
    tenant: TenantId,
    number: &Number,
    to: Recipient,
    checked: Checked,
    reply_to: Option<String>,
    idempotency: Option<(&str, &str)>,
) -> ApiResult<(Message, bool)> {
    if let Some((key, hash)) = idempotency
        && let Some(existing) = ctx.db.message_by_idempotency_key(tenant, key).await?
    {
        return replay(existing, hash);
    }
    let now = ctx.clock.now();
    let Checked {
        content,
        marketing,
        category,
    } = checked;
    let mut tx = ctx.db.begin().await?;
    // Sending to a phone creates its contact when new.
    let upserted = matches!(to, Recipient::Phone(_));
    let (contact, phone) = match to {
        Recipient::Phone(p) => (
            inbox::upsert_contact_in(&mut tx, tenant, &p, Some(p.digits()), None, now).await?,
            p,
        ),
        Recipient::Contact(id) => match ctx.db.contact(tenant, id).await {
            Ok(c) => (c.id, PhoneE164::from_stored(c.phone)),
            Err(StoreError::NotFound) => {
                return Err(ApiError::unprocessable(
                    "contact_not_found",
                    "No such contact.",
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    if marketing
        && inbox::consent_in(&mut tx, tenant, contact)
            .await?
            .as_deref()
            == Some("opted_out")
    {
        return Err(ApiError::unprocessable(
            "contact_opted_out",
            "This contact opted out of marketing messages.",
        ));
    }
    let conv = inbox::ensure_conversation_in(&mut tx, tenant, contact, number.id, now).await?;
    if content.is_free_form()
        && conv
            .last_inbound_at
            .is_none_or(|at| now - at >= Duration::hours(24))
    {
        return Err(ApiError::unprocessable(
            "outside_service_window",
            "Free-form messages can be sent only within 24 hours of the customer's last message; send an approved template instead.",
        ));
    }
    let preview = content.preview();
    let kind = content.kind();
    let mut payload = serde_json::to_value(&content).map_err(anyhow::Error::new)?;
    if let Some(r) = reply_to {
        payload["context"] = serde_json::json!({ "message_id": r });
    }
    let inserted = messages::enqueue_in(
        &mut tx,
        NewOutbound {
            tenant_id: tenant,
            number_id: number.id,
            contact_id: contact,
            conversation_id: conv.id,
            kind,
            content: payload.to_string(),
            preview: preview.clone(),
            to_phone: phone.as_str(),
            idempotency_key: idempotency.map(|(k, _)| k),
            request_hash: idempotency.map(|(_, h)| h),
            category: category.as_str(),
        },
        now,
    )
    .await;
    let m = match (inserted, idempotency) {
        (Ok(m), _) => m,
        // Another request with this key won the race: answer as it did.
        (Err(StoreError::Conflict(_)), Some((key, hash))) => {
            drop(tx);
            let existing = ctx
                .db
                .message_by_idempotency_key(tenant, key)
                .await?
                .ok_or(ApiError::NotFound)?;
            return replay(existing, hash);
        }
        (Err(e), _) => return Err(e.into()),
    };
    inbox::touch_conversation_in(&mut tx, tenant, conv.id, m.id, &preview, now, None).await?;
    tx.commit().await?;
    if upserted {
        pinglayer_store::changes::contacts_changed(tenant);
    }
    ctx.wake_dispatch.notify_one();
    Ok((m, true))
}

fn replay(existing: Message, hash: &str) -> ApiResult<(Message, bool)> {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok((existing, false))
    } else {
        Err(ApiError::conflict(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.",
        ))
    }
}

pub(crate) async fn sending_number(
    ctx: &ApiContext,
    tenant: TenantId,
    id: Option<&str>,
) -> ApiResult<Number> {
    match id {
        Some(raw) => {
            let id: NumberId = raw
                .parse()
                .map_err(|_| ApiError::field("from_number_id", "is not a number id"))?;
            match ctx.db.number(tenant, id).await {
                Err(StoreError::NotFound) => {
                    Err(ApiError::field("from_number_id", "no such number"))
                }
                other => Ok(other?),
            }
        }
        None => ctx.db.default_number(tenant).await?.ok_or_else(|| {
            ApiError::unprocessable("no_sending_number", "Connect a WhatsApp number first.")
        }),
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?
        .trim();
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::field(
            "Idempotency-Key",
            "must be 1–255 characters",
        ));
    }
    Ok(Some(k.to_string()))
}

/// Send one message. Answers 202 with the message `queued`; the engine sends it.
#[utoipa::path(post, path = "/api/v1/messages", tag = "messages", request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body → same message.")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, body = MessageView),
        (status = 409, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 422, description = "`outside_service_window`, `template_not_found`, `template_not_approved`, `template_parameter_mismatch`, `no_sending_number`, field errors", body = ErrorBody),
    ))]
async fn send_message(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::MessagesSend>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let key = idempotency_key(&headers)?;
    // The body is parsed here (not by an extractor) to hash it in a canonical form.
    let value: Value = crate::extract::json_value(&headers, &body)?;
    let hash = sha256_hex(&value.to_string());
    let req: SendRequest =
        serde_json::from_value(value).map_err(|e| ApiError::field("body", e.to_string()))?;
    let t = p.tenant.id;
    let to = match req.to.trim().parse::<ContactId>() {
        Ok(id) => Recipient::Contact(id),
        Err(_) => Recipient::Phone(
            PhoneE164::parse(&req.to, None).map_err(|e| ApiError::field("to", e.message))?,
        ),
    };
    let number = sending_number(&ctx, t, req.from_number_id.as_deref()).await?;
    let content = build_content(&ctx, t, &req.content).await?;
    let (m, _) = queue(
        &ctx,
        t,
        &number,
        to,
        content,
        req.content.reply_to.clone(),
        key.as_deref().map(|k| (k, hash.as_str())),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(MessageView::new(&m, None))))
}

#[derive(Deserialize, IntoParams)]
pub struct MessageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub status: Option<MessageStatus>,
    /// `outbound` or `inbound`.
    pub direction: Option<String>,
    pub conversation_id: Option<String>,
}

/// Messages, newest first.
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", params(MessageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<MessageView>)))]
async fn list_messages(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsRead>,
    Query(q): Query<MessageQuery>,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    let page = pinglayer_domain::PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let conv = match q.conversation_id.as_deref() {
        Some(c) => Some(
            c.parse::<ConversationId>()
                .map_err(|_| ApiError::field("conversation_id", "is not a conversation id"))?,
        ),
        None => None,
    };
    if q.direction
        .as_deref()
        .is_some_and(|d| d != "outbound" && d != "inbound")
    {
        return Err(ApiError::field("direction", "must be outbound or inbound"));
    }
    let rows = ctx
        .db
        .list_messages(p.tenant.id, &page, conv, q.status, q.direction.as_deref())
        .await?;
    let (rows, next_cursor) = finish_page(rows, &page, |m| m.id.0);
    Ok(axum::Json(Page {
        data: rows.iter().map(|m| MessageView::new(m, None)).collect(),
        next_cursor,
    }))
}

/// One message with its state history.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = MessageView), (status = 404, body = ErrorBody)))]
async fn get_message(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ConversationsRead>,
    PathId(id): PathId<MessageId>,
) -> ApiResult<axum::Json<MessageView>> {
    let m = ctx.db.message(p.tenant.id, id).await?;
    let history = ctx.db.message_events(p.tenant.id, id).await?;
    Ok(axum::Json(MessageView::new(&m, Some(history))))
}
