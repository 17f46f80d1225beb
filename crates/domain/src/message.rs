//! The life of a message: states, and the one rule for moving between them.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Outbound: `queued` → `sending` → `sent` → `delivered` → `read`, or `failed` from any of
/// them. Inbound messages are `received`. States only move forward: a late or repeated status
/// changes nothing, `read` may come without `delivered`, and `failed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Received,
}

impl MessageStatus {
    /// Position in the forward order; a move is legal only to a higher rank.
    pub fn rank(self) -> i32 {
        match self {
            Self::Queued => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            Self::Failed => 5,
            Self::Received => 6,
        }
    }

    /// Where a message in `self` goes when `incoming` is reported, or `None` if it stays.
    pub fn advance(self, incoming: MessageStatus) -> Option<MessageStatus> {
        if self == Self::Received || incoming == Self::Received {
            return None;
        }
        (incoming.rank() > self.rank()).then_some(incoming)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    /// The statuses Meta's webhooks report (`played`, `deleted`… are not states of ours).
    pub fn from_webhook(s: &str) -> Option<Self> {
        match s {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "failed" => Self::Failed,
            "received" => Self::Received,
            other => return Err(format!("unknown message status {other:?}")),
        })
    }
}

impl TryFrom<String> for MessageStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;

    #[test]
    fn only_forward() {
        assert_eq!(Queued.advance(Sending), Some(Sending));
        assert_eq!(
            Sending.advance(Delivered),
            Some(Delivered),
            "a status before the send returned"
        );
        assert_eq!(Sent.advance(Read), Some(Read), "read without delivered");
        assert_eq!(Read.advance(Delivered), None, "late delivered");
        assert_eq!(Delivered.advance(Delivered), None, "duplicate");
        assert_eq!(Delivered.advance(Sent), None);
        assert_eq!(Sent.advance(Failed), Some(Failed));
        assert_eq!(Read.advance(Failed), Some(Failed), "failed from any state");
        assert_eq!(Failed.advance(Read), None, "failed is final");
        assert_eq!(Received.advance(Read), None);
    }
}
