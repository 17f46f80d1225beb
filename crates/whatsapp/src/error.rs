//! Graph API errors, and what each one means for the sender.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `{"error": {...}}` as Graph returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphErrorEnvelope {
    pub error: GraphError,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Transient: try again later, no sooner than `after` when Meta says so.
    RetryLater { after: Option<Duration> },
    /// The access token is expired or invalid: fix credentials, then retry.
    RefreshCredentials,
    /// Will not succeed as is (bad parameters, opt-out, outside the window, policy).
    Fail,
}

impl GraphError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: Some("OAuthException".into()),
            code,
            ..Default::default()
        }
    }

    pub fn details(&self) -> Option<&str> {
        self.error_data.as_ref().and_then(|d| d.details.as_deref())
    }

    pub fn action(&self) -> ErrorAction {
        classify(self.code)
    }
}

/// The retry class of a Graph / Cloud API error code (reference §2.9).
pub fn classify(code: i64) -> ErrorAction {
    match code {
        // Throughput, Graph call budgets, pair rate (Meta: wait 4^X s), transient server trouble.
        130429 | 4 | 80007 | 131000 | 131016 | 131057 | 133004 | 1 | 2 => {
            ErrorAction::RetryLater { after: None }
        }
        131056 => ErrorAction::RetryLater {
            after: Some(Duration::from_secs(6)),
        },
        0 | 190 => ErrorAction::RefreshCredentials,
        _ => ErrorAction::Fail,
    }
}

/// Whether an HTTP status without a Graph error body is worth retrying.
pub fn retryable_http(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_as_the_reference_says() {
        for code in [130429, 4, 80007, 131000, 131016] {
            assert!(
                matches!(classify(code), ErrorAction::RetryLater { .. }),
                "{code}"
            );
        }
        assert_eq!(
            classify(131056),
            ErrorAction::RetryLater {
                after: Some(Duration::from_secs(6))
            }
        );
        assert_eq!(classify(190), ErrorAction::RefreshCredentials);
        for code in [131047, 131050, 132000, 132001, 132012, 100, 368, 131026] {
            assert_eq!(classify(code), ErrorAction::Fail, "{code}");
        }
    }

    #[test]
    fn parses_metas_error_shape() {
        let body = r#"{"error":{"message":"(#131056) (Business Account, Consumer Account) pair rate limit hit",
          "type":"OAuthException","code":131056,
          "error_data":{"messaging_product":"whatsapp","details":"Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."},
          "error_subcode":2494055,"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#;
        let e: GraphErrorEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(e.error.code, 131056);
        assert_eq!(e.error.error_subcode, Some(2494055));
        assert!(e.error.details().unwrap().starts_with("Message failed"));
        assert!(matches!(e.error.action(), ErrorAction::RetryLater { .. }));
    }
}
