//! Wire types of the Cloud API (reference §2, §5, §7, §8). Field names are Meta's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MESSAGING_PRODUCT: &str = "whatsapp";

fn whatsapp() -> String {
    MESSAGING_PRODUCT.to_string()
}

/// `POST /{phone-number-id}/messages`: one outbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    #[serde(default = "whatsapp")]
    pub messaging_product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    pub to: String,
    #[serde(flatten)]
    pub content: Content,
    /// Send as a quoted reply to this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ReplyContext>,
    /// Echoed back in status webhooks (≤ 512 chars): PingLayer puts its message id here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
}

impl SendMessage {
    pub fn new(to: impl Into<String>, content: Content) -> Self {
        Self {
            messaging_product: whatsapp(),
            recipient_type: Some("individual".into()),
            to: to.into(),
            content,
            context: None,
            biz_opaque_callback_data: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyContext {
    pub message_id: String,
}

/// The message itself: `"type"` plus the object named after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content {
    Text { text: Text },
    Template { template: Template },
    Interactive { interactive: Interactive },
    Image { image: Media },
    Video { video: Media },
    Audio { audio: Media },
    Document { document: Media },
    Sticker { sticker: Media },
    Reaction { reaction: Reaction },
}

impl Content {
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text { .. } => "text",
            Content::Template { .. } => "template",
            Content::Interactive { .. } => "interactive",
            Content::Image { .. } => "image",
            Content::Video { .. } => "video",
            Content::Audio { .. } => "audio",
            Content::Document { .. } => "document",
            Content::Sticker { .. } => "sticker",
            Content::Reaction { .. } => "reaction",
        }
    }

    /// Everything but templates is free-form: only allowed inside the 24-hour window.
    pub fn is_free_form(&self) -> bool {
        !matches!(self, Content::Template { .. })
    }

    /// A short human-readable line for inbox previews.
    pub fn preview(&self) -> String {
        match self {
            Content::Text { text } => text.body.clone(),
            Content::Template { template } => format!("[template {}]", template.name),
            Content::Interactive { interactive } => interactive.body.text.clone(),
            Content::Image { image }
            | Content::Video { video: image }
            | Content::Audio { audio: image }
            | Content::Document { document: image }
            | Content::Sticker { sticker: image } => image
                .caption
                .clone()
                .unwrap_or_else(|| format!("[{}]", self.kind())),
            Content::Reaction { reaction } => reaction.emoji.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentParameters>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Language {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Parameters for one component of a template: `header`, `body` or `button`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentParameters {
    #[serde(rename = "type")]
    pub kind: String,
    /// Buttons only: `quick_reply`, `url`, `copy_code`, `flow`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// Buttons only: the button's position, "0".."9".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

/// One template parameter. `type` says which of the other fields is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Parameter {
    #[serde(rename = "type")]
    pub kind: String,
    /// For NAMED templates: which `{{name}}` this fills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

impl Parameter {
    pub fn text(t: impl Into<String>) -> Self {
        Self {
            kind: "text".into(),
            text: Some(t.into()),
            ..Default::default()
        }
    }
    pub fn named(name: impl Into<String>, t: impl Into<String>) -> Self {
        Self {
            parameter_name: Some(name.into()),
            ..Self::text(t)
        }
    }
    pub fn payload(p: impl Into<String>) -> Self {
        Self {
            kind: "payload".into(),
            payload: Some(p.into()),
            ..Default::default()
        }
    }
}

/// Media by uploaded `id` or by `link` (exactly one).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    pub emoji: String,
}

/// Interactive messages: reply buttons, lists, CTA URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interactive {
    /// `button`, `list`, `cta_url`…
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Value>,
    pub body: InteractiveText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<InteractiveText>,
    pub action: InteractiveAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractiveText {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InteractiveAction {
    /// Reply buttons (1–3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Vec<ReplyButton>>,
    /// List: the label of the button that opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<Section>>,
    /// CTA URL and other action kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyButton {
    #[serde(rename = "type")]
    pub kind: String,
    pub reply: ButtonReply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ButtonReply {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `{{1}}`, `{{name}}` placeholders in a template text, in order of first appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + end].trim().to_string();
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &rest[start + 2 + end + 2..];
    }
    out
}

/// Checks Meta's documented limits on an interactive message (reference §2.4).
pub fn validate_interactive(i: &Interactive) -> Result<(), String> {
    if i.body.text.is_empty() || i.body.text.chars().count() > 1024 {
        return Err("interactive.body.text must be 1–1024 characters".into());
    }
    match i.kind.as_str() {
        "button" => {
            let b = i.action.buttons.as_deref().unwrap_or_default();
            if b.is_empty() || b.len() > 3 {
                return Err("reply buttons: 1 to 3 buttons".into());
            }
            if b.iter()
                .any(|b| b.reply.title.chars().count() > 20 || b.reply.id.len() > 256)
            {
                return Err("reply buttons: title ≤ 20 characters, id ≤ 256".into());
            }
        }
        "list" => {
            let sections = i.action.sections.as_deref().unwrap_or_default();
            let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
            if sections.is_empty() || sections.len() > 10 || rows == 0 || rows > 10 {
                return Err("list: 1–10 sections and 1–10 rows in all".into());
            }
            if i.action
                .button
                .as_deref()
                .is_none_or(|b| b.is_empty() || b.chars().count() > 20)
            {
                return Err("list: action.button label of 1–20 characters".into());
            }
            if sections
                .iter()
                .flat_map(|s| &s.rows)
                .any(|r| r.title.chars().count() > 24)
            {
                return Err("list: row titles ≤ 24 characters".into());
            }
        }
        "cta_url" => {}
        other => return Err(format!("unsupported interactive type {other:?}")),
    }
    Ok(())
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResponse {
    #[serde(default = "whatsapp")]
    pub messaging_product: String,
    #[serde(default)]
    pub contacts: Vec<SentContact>,
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentContact {
    pub input: String,
    pub wa_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
}

/// `POST /{phone-number-id}/messages` marking an inbound message as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkRead {
    #[serde(default = "whatsapp")]
    pub messaging_product: String,
    pub status: String,
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Success {
    pub success: bool,
}

/// `POST /{waba-id}/message_templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateCreate {
    pub name: String,
    pub language: String,
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_format: Option<String>,
    pub components: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateCreated {
    pub id: String,
    pub status: String,
    pub category: String,
}

/// A template language version as `GET /{waba-id}/message_templates` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub id: String,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: String,
    #[serde(default)]
    pub components: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paged<T> {
    pub data: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `GET /{phone-number-id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumberInfo {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_rating: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaId {
    pub id: String,
}

/// Embedded Signup: the code exchanged for a business integration token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthToken {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_send_serialises_like_metas_example() {
        let mut m = SendMessage::new(
            "15551234567",
            Content::Template {
                template: Template {
                    name: "order_update".into(),
                    language: Language {
                        code: "en_US".into(),
                        policy: Some("deterministic".into()),
                    },
                    components: vec![
                        ComponentParameters {
                            kind: "body".into(),
                            sub_type: None,
                            index: None,
                            parameters: vec![Parameter::text("Ann"), Parameter::text("#1234")],
                        },
                        ComponentParameters {
                            kind: "button".into(),
                            sub_type: Some("quick_reply".into()),
                            index: Some("0".into()),
                            parameters: vec![Parameter::payload("TRACK-1234")],
                        },
                    ],
                },
            },
        );
        m.biz_opaque_callback_data = Some("msg-1".into());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "template");
        assert_eq!(v["messaging_product"], "whatsapp");
        assert_eq!(
            v["template"]["components"][0]["parameters"][1]["text"],
            "#1234"
        );
        assert_eq!(v["template"]["components"][1]["sub_type"], "quick_reply");
        assert_eq!(v["biz_opaque_callback_data"], "msg-1");
        let back: SendMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn parses_metas_send_shapes() {
        let text: SendMessage = serde_json::from_value(
            json!({"messaging_product":"whatsapp","to":"15551234567","type":"text",
            "text":{"body":"Hi Ann","preview_url":false}}),
        )
        .unwrap();
        assert!(matches!(text.content, Content::Text { ref text } if text.body == "Hi Ann"));
        let doc: SendMessage = serde_json::from_value(json!({"messaging_product":"whatsapp","to":"15551234567","type":"document",
            "document":{"link":"https://example.com/inv.pdf","filename":"inv.pdf","caption":"Invoice"}})).unwrap();
        assert_eq!(doc.content.preview(), "Invoice");
        let buttons: SendMessage = serde_json::from_value(
            json!({"messaging_product":"whatsapp","to":"15551234567","type":"interactive",
            "interactive":{"type":"button","body":{"text":"Confirm the slot?"},
              "action":{"buttons":[{"type":"reply","reply":{"id":"yes-42","title":"Yes"}},
                                   {"type":"reply","reply":{"id":"no-42","title":"No"}}]}}}),
        )
        .unwrap();
        let Content::Interactive { interactive } = &buttons.content else {
            panic!()
        };
        assert!(validate_interactive(interactive).is_ok());
        let resp: SendResponse = serde_json::from_value(json!({"messaging_product":"whatsapp",
            "contacts":[{"input":"+1 555 123 4567","wa_id":"15551234567"}],
            "messages":[{"id":"wamid.HBgL","message_status":"accepted"}]}))
        .unwrap();
        assert_eq!(resp.contacts[0].wa_id, "15551234567");
    }

    #[test]
    fn interactive_limits() {
        let mut i = Interactive {
            kind: "button".into(),
            header: None,
            body: InteractiveText {
                text: "Pick".into(),
            },
            footer: None,
            action: InteractiveAction::default(),
        };
        assert!(validate_interactive(&i).is_err(), "no buttons");
        i.action.buttons = Some(
            (0..4)
                .map(|n| ReplyButton {
                    kind: "reply".into(),
                    reply: ButtonReply {
                        id: n.to_string(),
                        title: "x".into(),
                    },
                })
                .collect(),
        );
        assert!(validate_interactive(&i).is_err(), "four buttons");
        i.kind = "list".into();
        i.action.button = Some("Choose".into());
        i.action.sections = Some(vec![Section {
            title: None,
            rows: vec![Row {
                id: "a".into(),
                title: "A".into(),
                description: None,
            }],
        }]);
        assert!(validate_interactive(&i).is_ok());
    }
}
