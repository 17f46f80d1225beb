//! Tenants and the operator's sign-up policy.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// A tenant's standing. Moves: pending → active (approve), active → suspended (suspend),
/// pending → suspended (suspend), suspended → active (reactivate). Nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Pending,
    Active,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantAction {
    Approve,
    Suspend,
    Reactivate,
}

impl TenantStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// The state an action leads to, or `None` when the move is not allowed from here.
    pub fn apply(self, action: TenantAction) -> Option<TenantStatus> {
        use TenantAction::*;
        use TenantStatus::*;
        match (self, action) {
            (Pending, Approve) => Some(Active),
            (Pending | Active, Suspend) => Some(Suspended),
            (Suspended, Reactivate) => Some(Active),
            _ => None,
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            other => Err(format!("unknown tenant status {other:?}")),
        }
    }
}

impl TryFrom<String> for TenantStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Who may create a tenant: anyone (`open`), anyone but approved by a platform admin before
/// use (`approval`), or nobody (`closed`; tenants are then created by the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupPolicy {
    #[default]
    Open,
    Approval,
    Closed,
}

impl FromStr for SignupPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "approval" => Ok(Self::Approval),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "unknown sign-up policy {other:?} (open, approval, closed)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TenantAction::*, TenantStatus::*};

    #[test]
    fn only_legal_moves() {
        assert_eq!(Pending.apply(Approve), Some(Active));
        assert_eq!(Active.apply(Suspend), Some(Suspended));
        assert_eq!(Pending.apply(Suspend), Some(Suspended));
        assert_eq!(Suspended.apply(Reactivate), Some(Active));
        assert_eq!(Active.apply(Approve), None);
        assert_eq!(Active.apply(Reactivate), None);
        assert_eq!(Suspended.apply(Suspend), None);
        assert_eq!(Suspended.apply(Approve), None);
        assert_eq!(Pending.apply(Reactivate), None);
    }
}
