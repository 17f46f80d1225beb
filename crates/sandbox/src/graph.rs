//! The Cloud API endpoints, answering like graph.facebook.com.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use pinglayer_whatsapp::{
    error::{ErrorData, GraphError, GraphErrorEnvelope},
    types::{
        Content, Cursors, MarkRead, MediaId, OAuthToken, Paged, Paging, PhoneNumberInfo,
        SendMessage, SendResponse, SentContact, SentMessage, Success, TemplateCreate,
        TemplateCreated, TemplateInfo, Throughput, placeholders, validate_interactive,
    },
    webhook::{Status, WebhookError},
};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use crate::{
    state::{NumberState, Sandbox, SentRecord, TemplateState, unix_now},
    webhooks::Outgoing,
};

pub fn graph_error(http: u16, code: i64, message: &str, details: &str) -> Response {
    let body = GraphErrorEnvelope {
        error: GraphError {
            message: format!("(#{code}) {message}"),
            kind: Some("OAuthException".into()),
            code,
            error_subcode: None,
            error_data: Some(ErrorData {
                messaging_product: Some("whatsapp".into()),
                details: Some(details.into()),
            }),
            fbtrace_id: Some(format!("SBX{:012x}", rand::random::<u64>() >> 16)),
        },
    };
    (
        StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn bad_token() -> Response {
    graph_error(
        401,
        190,
        "Invalid OAuth access token - Cannot parse access token",
        "The access token is invalid or expired.",
    )
}

/// The number of a path, checked against the bearer token.
fn authorised_number(
    sb: &Sandbox,
    headers: &HeaderMap,
    pnid: &str,
) -> Result<Arc<NumberState>, Response> {
    let token = bearer(headers).ok_or_else(bad_token)?;
    let Some(n) = sb.number(pnid) else {
        if !sb.token_known(token) {
            return Err(bad_token());
        }
        return Err(graph_error(
            400,
            100,
            "Invalid parameter",
            &format!(
                "Unsupported post request. Object with ID '{pnid}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            ),
        ));
    };
    if !sb.token_ok(&n, token) {
        return Err(bad_token());
    }
    Ok(n)
}

fn component_text<'a>(components: &'a [Value], kind: &str) -> Option<&'a str> {
    components
        .iter()
        .find(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
        .and_then(|c| c["text"].as_str())
}

/// Checks a template send against the approved template: 132001 / 132000 / 132012.
fn check_template(sb: &Sandbox, waba: &str, msg: &SendMessage) -> Result<(), Response> {
    let Content::Template { template } = &msg.content else {
        return Ok(());
    };
    let Some(t) = sb.template(waba, &template.name, &template.language.code) else {
        return Err(graph_error(
            404,
            132001,
            "Template name does not exist in the translation",
            &format!(
                "template name ({}) does not exist in {}",
                template.name, template.language.code
            ),
        ));
    };
    if t.status != "APPROVED" {
        return Err(graph_error(
            400,
            132001,
            "Template name does not exist in the translation",
            &format!(
                "template {} ({}) is {}, not APPROVED",
                t.name, t.language, t.status
            ),
        ));
    }
    for kind in ["header", "body"] {
        let expected = component_text(&t.components, kind)
            .map(placeholders)
            .unwrap_or_default();
        let given: Vec<_> = template
            .components
            .iter()
            .filter(|c| c.kind.eq_ignore_ascii_case(kind))
            .flat_map(|c| c.parameters.iter())
            .collect();
        if given.len() != expected.len() {
            return Err(graph_error(
                400,
                132000,
                "Number of parameters does not match the expected number of params",
                &format!(
                    "{kind}: number of localizable_params ({}) does not match the expected number of params ({})",
                    given.len(),
                    expected.len()
                ),
            ));
        }
        if t.parameter_format == "NAMED" {
            for p in &given {
                if !p
                    .parameter_name
                    .as_ref()
                    .is_some_and(|n| expected.contains(n))
                {
                    return Err(graph_error(
                        400,
                        132012,
                        "Parameter format does not match format in the created template",
                        &format!(
                            "{kind}: parameter_name {:?} is not a parameter of the template",
                            p.parameter_name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `POST /{v}/{phone-number-id}/messages`: a send, or marking an inbound message read.
pub async fn messages(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = match authorised_number(&sb, &headers, &pnid) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let msg: SendMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            if serde_json::from_slice::<MarkRead>(&body).is_ok_and(|r| r.status == "read") {
                return Json(Success { success: true }).into_response();
            }
            sb.stats().rejected.fetch_add(1, Ordering::Relaxed);
            return graph_error(400, 100, "Invalid parameter", &e.to_string());
        }
    };
    let to: String = msg.to.chars().filter(|c| c.is_ascii_digit()).collect();
    if to.len() < 7 || to.len() > 15 {
        sb.stats().rejected.fetch_add(1, Ordering::Relaxed);
        return graph_error(
            400,
            100,
            "Invalid parameter",
            "Parameter 'to' is not a valid phone number.",
        );
    }
    if n.limiter.check().is_err() {
        sb.stats().throttled.fetch_add(1, Ordering::Relaxed);
        return graph_error(
            sb.config.rate_limit_status,
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached.",
        );
    }
    if sb.config.pair_limit && sb.pair.check_key(&format!("{pnid}:{to}")).is_err() {
        sb.stats().throttled.fetch_add(1, Ordering::Relaxed);
        return graph_error(
            sb.config.rate_limit_status,
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        );
    }
    let checked = match &msg.content {
        Content::Interactive { interactive } => validate_interactive(interactive)
            .map_err(|e| graph_error(400, 131009, "Parameter value is not valid", &e)),
        Content::Text { text } if text.body.is_empty() || text.body.chars().count() > 4096 => {
            Err(graph_error(
                400,
                131009,
                "Parameter value is not valid",
                "text.body must be 1–4096 characters",
            ))
        }
        Content::Template { .. } => check_template(&sb, &n.cfg.waba_id, &msg),
        _ => Ok(()),
    };
    if let Err(r) = checked {
        sb.stats().rejected.fetch_add(1, Ordering::Relaxed);
        return r;
    }

    let now = unix_now();
    let wamid = sb.next_wamid();
    let in_window = sb.window_open(&pnid, &to, now);
    // Meta accepts these and reports the failure in a status webhook.
    let async_failure = if msg.content.is_free_form() && !in_window {
        Some((
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ))
    } else if !in_window && !sb.admit_unique(&pnid, &to, now) {
        Some((
            131048,
            "Spam rate limit hit",
            "Message failed to send because there are restrictions on how many messages can be sent from this phone number.",
        ))
    } else if rand::rng().random_bool(sb.config.fail_rate.clamp(0.0, 1.0)) {
        Some((
            131026,
            "Message undeliverable",
            "Unable to deliver the message.",
        ))
    } else {
        None
    };
    schedule_statuses(&sb, &n, &wamid, &to, &msg, async_failure, in_window);
    sb.record_sent(SentRecord {
        wamid: wamid.clone(),
        phone_number_id: pnid,
        to: to.clone(),
        kind: msg.content.kind().into(),
        message: msg.clone(),
        at: now,
    });
    sb.stats().accepted.fetch_add(1, Ordering::Relaxed);
    Json(SendResponse {
        messaging_product: "whatsapp".into(),
        contacts: vec![SentContact {
            input: msg.to.clone(),
            wa_id: to,
        }],
        messages: vec![SentMessage {
            id: wamid,
            message_status: matches!(msg.content, Content::Template { .. })
                .then(|| "accepted".into()),
        }],
    })
    .into_response()
}

fn schedule_statuses(
    sb: &Sandbox,
    n: &NumberState,
    wamid: &str,
    to: &str,
    msg: &SendMessage,
    failure: Option<(i64, &str, &str)>,
    in_window: bool,
) {
    let cfg = &sb.config;
    let now = unix_now();
    let category = match &msg.content {
        Content::Template { template } => sb
            .template(&n.cfg.waba_id, &template.name, &template.language.code)
            .map(|t| t.category.to_lowercase())
            .unwrap_or_else(|| "marketing".into()),
        _ => "service".into(),
    };
    let pricing_type = if category == "service" || (category == "utility" && in_window) {
        "free_customer_service"
    } else {
        "regular"
    };
    let status = |s: &str, errors: Vec<WebhookError>| {
        Status {
        id: wamid.to_string(),
        status: s.to_string(),
        timestamp: now,
        recipient_id: Some(to.to_string()),
        biz_opaque_callback_data: msg.biz_opaque_callback_data.clone(),
        pricing: (s == "sent" && errors.is_empty()).then(|| json!({
            "billable": pricing_type == "regular", "pricing_model": "PMP", "type": pricing_type, "category": category
        })),
        errors,
    }
    };
    let push = |after, st: Status| {
        let ev = Outgoing::Status {
            waba: n.cfg.waba_id.clone(),
            pnid: n.cfg.phone_number_id.clone(),
            display: n.cfg.display_phone_number.clone(),
            status: st,
        };
        if rand::rng().random_bool(cfg.duplicate_rate.clamp(0.0, 1.0)) {
            sb.queue
                .push(after + std::time::Duration::from_millis(3), ev.clone());
        }
        sb.queue.push(after, ev);
    };
    if let Some((code, title, details)) = failure {
        let err = WebhookError {
            code,
            title: Some(title.into()),
            message: Some(title.into()),
            error_data: Some(ErrorData {
                messaging_product: None,
                details: Some(details.into()),
            }),
            href: Some(
                "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
                    .into(),
            ),
        };
        push(cfg.sent_after, status("failed", vec![err]));
        return;
    }
    push(cfg.sent_after, status("sent", vec![]));
    let read = rand::rng().random_bool(cfg.read_rate.clamp(0.0, 1.0));
    push(cfg.delivered_after, status("delivered", vec![]));
    if read {
        push(cfg.read_after, status("read", vec![]));
    }
}

/// `GET /{v}/{id}`: a phone number's details (or a template by id).
pub async fn get_object(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(t) = sb
        .templates
        .read()
        .expect("templates poisoned")
        .iter()
        .find(|t| t.id == id)
    {
        if !bearer(&headers).is_some_and(|tok| sb.token_known(tok)) {
            return bad_token();
        }
        return Json(template_info(t)).into_response();
    }
    match authorised_number(&sb, &headers, &id) {
        Ok(n) => Json(PhoneNumberInfo {
            id: n.cfg.phone_number_id.clone(),
            display_phone_number: n.cfg.display_phone_number.clone(),
            verified_name: Some("PingLayer Sandbox".into()),
            quality_rating: Some("GREEN".into()),
            throughput: Some(Throughput {
                level: if n.cfg.throughput_per_second > 80 {
                    "HIGH"
                } else {
                    "STANDARD"
                }
                .into(),
            }),
        })
        .into_response(),
        Err(r) => r,
    }
}

fn template_info(t: &TemplateState) -> TemplateInfo {
    TemplateInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        language: t.language.clone(),
        status: t.status.clone(),
        category: t.category.clone(),
        components: t.components.clone(),
        parameter_format: Some(t.parameter_format.clone()),
        rejected_reason: t.rejected_reason.clone(),
    }
}

fn waba_token_ok(sb: &Sandbox, headers: &HeaderMap, waba: &str) -> Result<(), Response> {
    let token = bearer(headers).ok_or_else(bad_token)?;
    let ok = sb
        .number_by_waba(waba)
        .is_some_and(|n| sb.token_ok(&n, token));
    if ok { Ok(()) } else { Err(bad_token()) }
}

#[derive(Deserialize)]
pub struct ListQuery {
    name: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// `GET /{v}/{waba-id}/message_templates`, cursor-paginated like Graph.
pub async fn list_templates(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, waba)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = waba_token_ok(&sb, &headers, &waba) {
        return r;
    }
    let all: Vec<TemplateInfo> = sb
        .templates
        .read()
        .expect("templates poisoned")
        .iter()
        .filter(|t| t.waba_id == waba && q.name.as_ref().is_none_or(|n| &t.name == n))
        .map(template_info)
        .collect();
    let start = q
        .after
        .as_deref()
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(0);
    let limit = q.limit.unwrap_or(25).clamp(1, 100);
    let page: Vec<_> = all.iter().skip(start).take(limit).cloned().collect();
    let end = start + page.len();
    let more = end < all.len();
    Json(Paged {
        data: page,
        paging: Some(Paging {
            cursors: Some(Cursors {
                before: Some(start.to_string()),
                after: Some(end.to_string()),
            }),
            next: more.then(|| format!("?after={end}")),
        }),
    })
    .into_response()
}

/// `POST /{v}/{waba-id}/message_templates`: created PENDING, reviewed after a delay.
pub async fn create_template(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, waba)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = waba_token_ok(&sb, &headers, &waba) {
        return r;
    }
    let t: TemplateCreate = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return graph_error(400, 100, "Invalid parameter", &e.to_string()),
    };
    if t.name.is_empty()
        || t.name.len() > 512
        || !t
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return graph_error(
            400,
            100,
            "Invalid parameter",
            "name: lowercase letters, digits and underscores only",
        );
    }
    let category = t.category.to_uppercase();
    if !["MARKETING", "UTILITY", "AUTHENTICATION"].contains(&category.as_str()) {
        return graph_error(
            400,
            100,
            "Invalid parameter",
            "category must be MARKETING, UTILITY or AUTHENTICATION",
        );
    }
    if sb.template(&waba, &t.name, &t.language).is_some() {
        return graph_error(
            400,
            100,
            "Invalid parameter",
            "Content in this language already exists.",
        );
    }
    let id = format!(
        "{}",
        900_000_000_000_000u64 + sb.seq.fetch_add(1, Ordering::Relaxed)
    );
    let state = TemplateState {
        id: id.clone(),
        waba_id: waba.clone(),
        name: t.name.clone(),
        language: t.language.clone(),
        category: category.clone(),
        status: "PENDING".into(),
        parameter_format: t
            .parameter_format
            .clone()
            .unwrap_or_else(|| "POSITIONAL".into())
            .to_uppercase(),
        components: t.components.clone(),
        rejected_reason: None,
    };
    sb.templates
        .write()
        .expect("templates poisoned")
        .push(state);
    let (verdict, reason) = if t.name.contains(&sb.config.reject_marker) {
        ("REJECTED", "INVALID_FORMAT")
    } else {
        ("APPROVED", "NONE")
    };
    let sb2 = sb.clone();
    let delay = sb.config.template_review;
    let created_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        set_template_status(&sb2, &id, verdict, Some(reason));
    });
    Json(TemplateCreated {
        id: created_id,
        status: "PENDING".into(),
        category,
    })
    .into_response()
}

/// Moves a template and posts `message_template_status_update`.
pub fn set_template_status(sb: &Sandbox, id: &str, status: &str, reason: Option<&str>) -> bool {
    let found = {
        let mut ts = sb.templates.write().expect("templates poisoned");
        ts.iter_mut().find(|t| t.id == id).map(|t| {
            t.status = status.to_string();
            t.rejected_reason =
                (status == "REJECTED").then(|| reason.unwrap_or("NONE").to_string());
            t.clone()
        })
    };
    let Some(t) = found else { return false };
    sb.queue.push(
        std::time::Duration::ZERO,
        Outgoing::Template {
            waba: t.waba_id.clone(),
            value: json!({
                "event": status,
                "message_template_id": t.id.parse::<u64>().unwrap_or_default(),
                "message_template_name": t.name,
                "message_template_language": t.language,
                "reason": reason.unwrap_or("NONE"),
            }),
        },
    );
    true
}

/// `DELETE /{v}/{waba-id}/message_templates?name=…[&hsm_id=…]`.
pub async fn delete_template(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, waba)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = waba_token_ok(&sb, &headers, &waba) {
        return r;
    }
    let Some(name) = q.get("name") else {
        return graph_error(400, 100, "Invalid parameter", "name is required");
    };
    let mut ts = sb.templates.write().expect("templates poisoned");
    let before = ts.len();
    ts.retain(|t| {
        !(t.waba_id == waba && &t.name == name && q.get("hsm_id").is_none_or(|h| h == &t.id))
    });
    if ts.len() == before {
        return graph_error(404, 100, "Invalid parameter", "Message template not found");
    }
    Json(Success { success: true }).into_response()
}

/// `POST /{v}/{phone-number-id}/media`: accepts the upload and hands out an id.
pub async fn upload_media(
    State(sb): State<Arc<Sandbox>>,
    Path((_v, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorised_number(&sb, &headers, &pnid) {
        return r;
    }
    if body.is_empty() {
        return graph_error(400, 100, "Invalid parameter", "file is required");
    }
    let id = format!(
        "{}",
        700_000_000_000_000u64 + sb.seq.fetch_add(1, Ordering::Relaxed)
    );
    Json(MediaId { id }).into_response()
}

#[derive(Deserialize)]
pub struct CodeExchange {
    client_id: String,
    client_secret: String,
    code: String,
}

/// `GET /{v}/oauth/access_token`: Embedded Signup's code → a business integration token.
pub async fn exchange_code(
    State(sb): State<Arc<Sandbox>>,
    Query(q): Query<CodeExchange>,
) -> Response {
    if q.client_id != sb.config.app_id || q.client_secret != sb.config.app_secret {
        return graph_error(
            400,
            101,
            "Error validating application",
            "Invalid application ID or secret.",
        );
    }
    if q.code.trim().is_empty() || q.code.starts_with("bad") {
        return graph_error(
            400,
            100,
            "Invalid verification code format.",
            "The code is invalid or has expired.",
        );
    }
    let token = format!("sandbox-business-token-{}", q.code);
    sb.minted_tokens
        .write()
        .expect("tokens poisoned")
        .insert(token.clone());
    Json(OAuthToken {
        access_token: token,
        token_type: Some("bearer".into()),
        expires_in: None,
    })
    .into_response()
}
