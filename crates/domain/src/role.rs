//! Roles and what they may do. This matrix is the one place permissions are decided: the API's
//! `Auth<P>` extractor asks [`Role::grants`] and nothing else. `docs/permissions.md` is checked
//! against it by a test, so the docs cannot drift.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the tenant: everything, including billing and other owners.
    Owner,
    /// Everything but removing or creating owners.
    Admin,
    /// Works the inbox and the contacts.
    Agent,
    /// Reads, never writes.
    Viewer,
    /// The operator's staff: platform routes only, no tenant data.
    Superadmin,
}

/// Something a request may want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See the tenant's own profile and settings.
    TenantRead,
    /// Change tenant settings.
    TenantManage,
    /// List team members.
    UsersRead,
    /// Invite, change and remove team members.
    UsersManage,
    /// Create, list and revoke API keys.
    ApiKeysManage,
    ContactsRead,
    ContactsWrite,
    ConversationsRead,
    /// Reply, assign, close.
    ConversationsWrite,
    /// Send single messages through the API.
    MessagesSend,
    TemplatesRead,
    TemplatesManage,
    CampaignsRead,
    CampaignsManage,
    NumbersRead,
    NumbersManage,
    AnalyticsRead,
    BillingRead,
    /// Operator routes under /api/v1/admin.
    PlatformAdmin,
}

use Permission::*;
use Role::*;

pub const ALL_PERMISSIONS: &[Permission] = &[
    TenantRead,
    TenantManage,
    UsersRead,
    UsersManage,
    ApiKeysManage,
    ContactsRead,
    ContactsWrite,
    ConversationsRead,
    ConversationsWrite,
    MessagesSend,
    TemplatesRead,
    TemplatesManage,
    CampaignsRead,
    CampaignsManage,
    NumbersRead,
    NumbersManage,
    AnalyticsRead,
    BillingRead,
    PlatformAdmin,
];

pub const TENANT_ROLES: &[Role] = &[Owner, Admin, Agent, Viewer];

impl Role {
    pub fn grants(self, p: Permission) -> bool {
        match self {
            Superadmin => p == PlatformAdmin,
            Owner => p != PlatformAdmin,
            Admin => !matches!(p, PlatformAdmin | TenantManage),
            Agent => matches!(
                p,
                TenantRead
                    | ContactsRead
                    | ContactsWrite
                    | ConversationsRead
                    | ConversationsWrite
                    | MessagesSend
                    | TemplatesRead
                    | CampaignsRead
                    | NumbersRead
                    | AnalyticsRead
            ),
            Viewer => matches!(
                p,
                TenantRead
                    | ContactsRead
                    | ConversationsRead
                    | TemplatesRead
                    | CampaignsRead
                    | NumbersRead
                    | AnalyticsRead
            ),
        }
    }

    /// Whether a member with this role may give `other` to someone (a user or an API key):
    /// only owners make owners, and nobody hands out more than they hold.
    pub fn may_assign(self, other: Role) -> bool {
        match (self, other) {
            (_, Superadmin) => false,
            (Owner, _) => true,
            (Admin, Admin | Agent | Viewer) => true,
            _ => false,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Owner => "owner",
            Admin => "admin",
            Agent => "agent",
            Viewer => "viewer",
            Superadmin => "superadmin",
        }
    }
}

impl Permission {
    pub fn as_str(&self) -> &'static str {
        match self {
            TenantRead => "tenant:read",
            TenantManage => "tenant:manage",
            UsersRead => "users:read",
            UsersManage => "users:manage",
            ApiKeysManage => "api_keys:manage",
            ContactsRead => "contacts:read",
            ContactsWrite => "contacts:write",
            ConversationsRead => "conversations:read",
            ConversationsWrite => "conversations:write",
            MessagesSend => "messages:send",
            TemplatesRead => "templates:read",
            TemplatesManage => "templates:manage",
            CampaignsRead => "campaigns:read",
            CampaignsManage => "campaigns:manage",
            NumbersRead => "numbers:read",
            NumbersManage => "numbers:manage",
            AnalyticsRead => "analytics:read",
            BillingRead => "billing:read",
            PlatformAdmin => "platform:admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Owner),
            "admin" => Ok(Admin),
            "agent" => Ok(Agent),
            "viewer" => Ok(Viewer),
            "superadmin" => Ok(Superadmin),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The matrix as a Markdown table, as published in `docs/permissions.md`.
pub fn matrix_markdown() -> String {
    let mut out =
        String::from("| permission | owner | admin | agent | viewer |\n|---|---|---|---|---|\n");
    for p in ALL_PERMISSIONS.iter().filter(|p| **p != PlatformAdmin) {
        out.push_str(&format!("| `{}` |", p.as_str()));
        for r in TENANT_ROLES {
            out.push_str(if r.grants(*p) { " ✓ |" } else { " – |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superadmin_sees_no_tenant_data_and_tenants_no_platform() {
        for p in ALL_PERMISSIONS {
            assert_eq!(Superadmin.grants(*p), *p == PlatformAdmin);
            for r in TENANT_ROLES {
                if *p == PlatformAdmin {
                    assert!(!r.grants(*p));
                }
            }
        }
    }

    #[test]
    fn viewer_never_writes_and_roles_nest() {
        for p in ALL_PERMISSIONS {
            if Viewer.grants(*p) {
                assert!(Agent.grants(*p), "{p:?}");
            }
            if Agent.grants(*p) {
                assert!(Admin.grants(*p), "{p:?}");
            }
            if Admin.grants(*p) {
                assert!(Owner.grants(*p), "{p:?}");
            }
        }
        assert!(!Viewer.grants(ContactsWrite));
        assert!(!Agent.grants(UsersManage));
    }

    #[test]
    fn assignment_rules() {
        assert!(Owner.may_assign(Owner));
        assert!(!Admin.may_assign(Owner));
        assert!(Admin.may_assign(Viewer));
        assert!(!Agent.may_assign(Viewer));
        assert!(!Owner.may_assign(Superadmin));
    }

    #[test]
    fn published_matrix_matches_code() {
        let doc = include_str!("../../../docs/permissions.md");
        assert!(
            doc.contains(&matrix_markdown()),
            "docs/permissions.md is out of date; paste this table:\n{}",
            matrix_markdown()
        );
    }
}
