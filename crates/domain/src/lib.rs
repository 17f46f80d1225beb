//! PingLayer's domain: the types every other crate speaks, and the rules that need no I/O.
//!
//! Inputs are parsed into these types at the edge ("parse, don't validate"), so code further in
//! can trust them: an [`Email`] is lower-cased and well-formed, a [`NewPassword`] passed the
//! policy, a [`Role`] grants exactly the permissions in [`role::MATRIX`].

pub mod billing;
pub mod campaign;
pub mod clock;
pub mod contact;
pub mod crypto;
pub mod email;
pub mod ids;
pub mod link;
pub mod message;
pub mod page;
pub mod password;
pub mod phone;
mod phone_fast;
pub mod role;
pub mod segment;
pub mod slug;
pub mod tenant;

pub use clock::{Clock, ManualClock, SystemClock};
pub use email::Email;
pub use ids::*;
pub use message::MessageStatus;
pub use page::{Cursor, PageRequest};
pub use password::NewPassword;
pub use phone::PhoneE164;
pub use role::{Permission, Role};
pub use tenant::{SignupPolicy, TenantStatus};

/// Why an input could not be parsed: a field name and a message fit for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
