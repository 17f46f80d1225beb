//! `/sandbox/*`: play the customer, add numbers, review templates, look at what was sent.

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use pinglayer_whatsapp::{
    types::Reaction,
    webhook::{
        Contact, InboundButton, InboundContext, InboundInteractive, InboundMessage, InboundText,
        InteractiveReply, Profile,
    },
};
use serde::Deserialize;
use serde_json::json;
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::{
    config::SandboxNumber,
    graph::{graph_error, set_template_status},
    state::{Sandbox, unix_now},
    webhooks::Outgoing,
};

#[derive(Deserialize)]
pub struct NewNumber {
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: String,
    pub access_token: String,
    pub throughput_per_second: Option<u32>,
}

pub async fn add_number(State(sb): State<Arc<Sandbox>>, Json(n): Json<NewNumber>) -> Response {
    sb.add_number(SandboxNumber {
        phone_number_id: n.phone_number_id.clone(),
        waba_id: n.waba_id,
        display_phone_number: n.display_phone_number,
        access_token: n.access_token,
        throughput_per_second: n.throughput_per_second.unwrap_or(80).clamp(1, 1000),
    });
    Json(json!({"phone_number_id": n.phone_number_id})).into_response()
}

/// A customer writes to a business number: text, a tap on a template button, an interactive
/// reply or a reaction. Opens the 24-hour window and posts the `messages` webhook.
#[derive(Deserialize)]
pub struct Inbound {
    pub phone_number_id: String,
    /// The customer's number (digits, or E.164).
    pub from: String,
    pub name: Option<String>,
    pub text: Option<String>,
    /// A quick-reply button of a template: `{payload, text}`.
    pub button: Option<ButtonTap>,
    /// A reply button or list row of an interactive message: `{id, title}`.
    pub interactive: Option<InteractiveTap>,
    pub reaction: Option<Reaction>,
    /// The wamid this replies to.
    pub context: Option<String>,
    /// Unix seconds; default now (send an old one to test the window).
    pub timestamp: Option<i64>,
}

#[derive(Deserialize)]
pub struct ButtonTap {
    pub payload: Option<String>,
    pub text: String,
}

#[derive(Deserialize)]
pub struct InteractiveTap {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub list: bool,
}

pub async fn inbound(State(sb): State<Arc<Sandbox>>, Json(i): Json<Inbound>) -> Response {
    let Some(n) = sb.number(&i.phone_number_id) else {
        return graph_error(404, 100, "Invalid parameter", "unknown phone_number_id");
    };
    let from: String = i.from.chars().filter(|c| c.is_ascii_digit()).collect();
    let at = i.timestamp.unwrap_or_else(unix_now);
    let wamid = sb.next_wamid();
    let mut m = InboundMessage {
        from: from.clone(),
        id: wamid.clone(),
        timestamp: at,
        context: i.context.map(|id| InboundContext {
            from: Some(n.cfg.display_phone_number.clone()),
            id: Some(id),
        }),
        ..Default::default()
    };
    if let Some(b) = i.button {
        m.kind = "button".into();
        m.button = Some(InboundButton {
            payload: b.payload,
            text: b.text,
        });
    } else if let Some(t) = i.interactive {
        m.kind = "interactive".into();
        let reply = InteractiveReply {
            id: t.id,
            title: t.title,
            description: None,
        };
        m.interactive = Some(if t.list {
            InboundInteractive {
                kind: "list_reply".into(),
                button_reply: None,
                list_reply: Some(reply),
            }
        } else {
            InboundInteractive {
                kind: "button_reply".into(),
                button_reply: Some(reply),
                list_reply: None,
            }
        });
    } else if let Some(r) = i.reaction {
        m.kind = "reaction".into();
        m.reaction = Some(r);
    } else {
        m.kind = "text".into();
        m.text = Some(InboundText {
            body: i.text.unwrap_or_default(),
        });
    }
    sb.open_window(&i.phone_number_id, &from, at);
    sb.queue.push(
        Duration::ZERO,
        Outgoing::Inbound {
            waba: n.cfg.waba_id.clone(),
            pnid: n.cfg.phone_number_id.clone(),
            display: n.cfg.display_phone_number.clone(),
            contact: Contact {
                profile: Some(Profile { name: i.name }),
                wa_id: Some(from),
                user_id: None,
            },
            message: Box::new(m),
        },
    );
    Json(json!({"wamid": wamid})).into_response()
}

#[derive(Deserialize)]
pub struct SentQuery {
    pub to: Option<String>,
    pub phone_number_id: Option<String>,
    pub limit: Option<usize>,
}

/// What was accepted for sending, newest last.
pub async fn sent(State(sb): State<Arc<Sandbox>>, Query(q): Query<SentQuery>) -> Response {
    let to =
        q.to.map(|t| t.chars().filter(|c| c.is_ascii_digit()).collect::<String>());
    let log = sb.sent.lock().expect("sent poisoned");
    let mut out: Vec<_> = log
        .iter()
        .rev()
        .filter(|r| to.as_ref().is_none_or(|t| &r.to == t))
        .filter(|r| {
            q.phone_number_id
                .as_ref()
                .is_none_or(|p| &r.phone_number_id == p)
        })
        .take(q.limit.unwrap_or(100).min(10_000))
        .cloned()
        .collect();
    out.reverse();
    Json(json!({"data": out})).into_response()
}

pub async fn stats(State(sb): State<Arc<Sandbox>>) -> Response {
    let s = sb.stats();
    Json(json!({
        "accepted": s.accepted.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
        "throttled": s.throttled.load(Ordering::Relaxed),
        "webhooks_posted": s.webhooks_posted.load(Ordering::Relaxed),
        "webhook_events": s.webhook_events.load(Ordering::Relaxed),
        "webhook_failures": s.webhook_failures.load(Ordering::Relaxed),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct TemplateVerdict {
    pub status: String,
    pub reason: Option<String>,
}

/// Moves a template (APPROVED, REJECTED, PAUSED, DISABLED…) and posts the webhook.
pub async fn template_status(
    State(sb): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    Json(v): Json<TemplateVerdict>,
) -> Response {
    if set_template_status(&sb, &id, &v.status.to_uppercase(), v.reason.as_deref()) {
        Json(json!({"id": id, "status": v.status.to_uppercase()})).into_response()
    } else {
        graph_error(404, 100, "Invalid parameter", "unknown template id")
    }
}
