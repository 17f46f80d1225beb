//! Webhook payloads (reference §4) and their `X-Hub-Signature-256`.
//!
//! Meta batches: one POST may carry many entries, changes, messages and statuses, so every list
//! here is a `Vec` and consumers iterate all of it. Timestamps arrive as strings or integers.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The WABA id.
    pub id: String,
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    /// Parsed per `field`: see [`Change::messages`] and [`Change::template_status`].
    pub value: Value,
}

impl Change {
    pub fn messages(&self) -> Option<Result<MessagesValue, serde_json::Error>> {
        (self.field == "messages").then(|| serde_json::from_value(self.value.clone()))
    }
    pub fn template_status(&self) -> Option<Result<TemplateStatusUpdate, serde_json::Error>> {
        (self.field == "message_template_status_update")
            .then(|| serde_json::from_value(self.value.clone()))
    }
}

/// The value of a `messages` change: inbound messages, statuses, or errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessagesValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<InboundMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub display_phone_number: String,
    pub phone_number_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// A delivery status of an outbound message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The wamid.
    pub id: String,
    /// `sent`, `delivered`, `read`, `failed` (and `played`, `deleted`… which we keep but ignore).
    pub status: String,
    #[serde(deserialize_with = "flexible_i64")]
    pub timestamp: i64,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
}

/// Webhook-side error objects: `{code, title, message, error_data: {details}, href}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookError {
    pub code: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<crate::error::ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// A customer's message to the business.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InboundMessage {
    pub from: String,
    pub id: String,
    #[serde(deserialize_with = "flexible_i64")]
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<InboundContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<InboundText>,
    /// A tap on a template's quick-reply button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<InboundButton>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<InboundInteractive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<crate::types::Reaction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
}

impl InboundMessage {
    /// The text a person would read: the body, the tapped button's text, a caption…
    pub fn preview(&self) -> String {
        if let Some(t) = &self.text {
            return t.body.clone();
        }
        if let Some(b) = &self.button {
            return b.text.clone();
        }
        if let Some(r) = self
            .interactive
            .as_ref()
            .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()))
        {
            return r.title.clone();
        }
        if let Some(r) = &self.reaction {
            return r.emoji.clone();
        }
        let media = [
            &self.image,
            &self.video,
            &self.audio,
            &self.document,
            &self.sticker,
        ];
        if let Some(m) = media.into_iter().flatten().next() {
            return m
                .caption
                .clone()
                .unwrap_or_else(|| format!("[{}]", self.kind));
        }
        format!("[{}]", self.kind)
    }

    /// What a keyword rule (STOP/START) should look at: typed text or a button's payload/text.
    pub fn keyword_text(&self) -> Option<&str> {
        self.text
            .as_ref()
            .map(|t| t.body.as_str())
            .or_else(|| self.button.as_ref().map(|b| b.text.as_str()))
            .or_else(|| {
                self.interactive
                    .as_ref()
                    .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()))
                    .map(|r| r.title.as_str())
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundContext {
    #[serde(default)]
    pub from: Option<String>,
    /// The wamid of the message being replied to.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundText {
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundButton {
    #[serde(default)]
    pub payload: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundInteractive {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button_reply: Option<InteractiveReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_reply: Option<InteractiveReply>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InteractiveReply {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundMedia {
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// The value of a `message_template_status_update` change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateStatusUpdate {
    /// `APPROVED`, `REJECTED`, `PENDING`, `PAUSED`, `DISABLED`…
    pub event: String,
    #[serde(deserialize_with = "flexible_string")]
    pub message_template_id: String,
    pub message_template_name: String,
    pub message_template_language: String,
    #[serde(default)]
    pub reason: Option<String>,
}

fn flexible_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
        Value::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected a timestamp, got {other}"
        ))),
    }
}

fn flexible_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "expected an id, got {other}"
        ))),
    }
}

/// `sha256=<hex HMAC-SHA256(app_secret, body)>`, the value of `X-Hub-Signature-256`.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against the raw body, in constant time.
pub fn verify(app_secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes from the reference (§4.4–§4.9), batched.
    const META_SAMPLE: &str = r#"{"object":"whatsapp_business_account","entry":[
      {"id":"WABA1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "contacts":[{"profile":{"name":"Ann"},"wa_id":"16505551234","user_id":"US.1349"}],
        "messages":[
          {"from":"16505551234","id":"wamid.A","timestamp":"1750857384","type":"text","text":{"body":"STOP"}},
          {"from":"16505551234","id":"wamid.B","timestamp":"1750857385","type":"button","button":{"payload":"TRACK-1","text":"Track"},"context":{"from":"15550783881","id":"wamid.OUT"}},
          {"from":"16505551234","id":"wamid.C","timestamp":1750857386,"type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"yes-42","title":"Yes"}}},
          {"from":"16505551234","id":"wamid.D","timestamp":"1750857387","type":"image","image":{"id":"MEDIA1","mime_type":"image/jpeg","sha256":"abc","caption":"look"}},
          {"from":"16505551234","id":"wamid.E","timestamp":"1750857388","type":"reaction","reaction":{"message_id":"wamid.OUT","emoji":"👍"}}
        ]}},
        {"field":"messages","value":{"messaging_product":"whatsapp",
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "statuses":[
          {"id":"wamid.HBgL","status":"delivered","timestamp":"1750857384","recipient_id":"16505551234","biz_opaque_callback_data":"job-77/msg-3",
           "pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"utility"}},
          {"id":"wamid.HBgM","status":"failed","timestamp":"1750857390","recipient_id":"16505551234",
           "errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"x"},"href":"https://developers.facebook.com/docs/"}]}
        ]}}]},
      {"id":"WABA1","time":1750857400,"changes":[{"field":"message_template_status_update","value":
        {"event":"APPROVED","message_template_id":594425479261596,"message_template_name":"order_update","message_template_language":"en_US","reason":"NONE"}}]}
    ]}"#;

    #[test]
    fn parses_batched_meta_payloads() {
        let p: Payload = serde_json::from_str(META_SAMPLE).unwrap();
        assert_eq!(p.entry.len(), 2);
        let inbound = p.entry[0].changes[0].messages().unwrap().unwrap();
        assert_eq!(inbound.metadata.phone_number_id, "106540352242922");
        assert_eq!(inbound.messages.len(), 5);
        assert_eq!(inbound.messages[0].keyword_text(), Some("STOP"));
        assert_eq!(inbound.messages[1].keyword_text(), Some("Track"));
        assert_eq!(inbound.messages[2].timestamp, 1750857386);
        assert_eq!(inbound.messages[2].preview(), "Yes");
        assert_eq!(inbound.messages[3].preview(), "look");
        assert_eq!(inbound.messages[4].preview(), "👍");
        let statuses = p.entry[0].changes[1].messages().unwrap().unwrap().statuses;
        assert_eq!(
            statuses[0].biz_opaque_callback_data.as_deref(),
            Some("job-77/msg-3")
        );
        assert_eq!(statuses[1].errors[0].code, 131026);
        let t = p.entry[1].changes[0].template_status().unwrap().unwrap();
        assert_eq!(
            (t.event.as_str(), t.message_template_id.as_str()),
            ("APPROVED", "594425479261596")
        );
    }

    #[test]
    fn signatures_verify_only_the_exact_bytes() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let sig = sign(b"app-secret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"app-secret", body, &sig));
        assert!(!verify(b"other-secret", body, &sig));
        assert!(!verify(
            b"app-secret",
            br#"{"object":"whatsapp_business_account","entry":[] }"#,
            &sig
        ));
        assert!(!verify(b"app-secret", body, "sha256=zz"));
        assert!(!verify(
            b"app-secret",
            body,
            &sig.replace("sha256=", "sha1=")
        ));
    }
}
