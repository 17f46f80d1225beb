//! Typed ids: a `UserId` cannot be passed where a `TenantId` is expected.
//!
//! All ids are UUIDv7: unguessable enough for URLs, and time-ordered so that they index well and
//! make stable pagination cursors. They are shown to clients as opaque strings.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

macro_rules! typed_id {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    )*};
}

typed_id!(
    TenantId,
    UserId,
    SessionId,
    RefreshTokenId,
    ApiKeyId,
    NumberId,
    TemplateId,
    ContactId,
    ConversationId,
    MessageId,
    WebhookEventId,
    ConsentEventId,
    SegmentId,
    ImportId,
    CampaignId,
    RunId,
    LinkId,
    PlanId,
    LedgerEntryId,
    BillingEventId,
);
