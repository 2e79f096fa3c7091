//! Who may do what: roles and API tokens.
//!
//! A token is stored as the SHA-256 of its secret (the secret is shown once, when it
//! is made). Hashing and comparing are the caller's; this module holds the rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a caller may do. Each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also start and stop workloads, cancel runs, exempt instances, add overrides.
    Operator,
    /// Also create, replace and delete workloads and their schedules, and manage
    /// tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// A role by name (any case).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public part of the token, also its key.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret, in lower-case hex.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token as it is listed and shown: everything stored but the hash of its
/// secret, which no listing needs and which an offline guess could be checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&Token> for TokenInfo {
    fn from(t: &Token) -> Self {
        TokenInfo {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role,
            created_at: t.created_at,
            created_by: t.created_by.clone(),
            expires: t.expires,
            revoked_at: t.revoked_at,
        }
    }
}

impl Token {
    /// Whether the token may be used at `now`: not revoked, not expired.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires.is_none_or(|e| now < e)
    }
}

/// Whom a request acts for, recorded on what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `token:NAME`, or an IAM principal's ARN.
    pub name: String,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_what_the_ones_before_it_may() {
        for (r, allowed) in [
            (Role::Viewer, [true, false, false]),
            (Role::Operator, [true, true, false]),
            (Role::Admin, [true, true, true]),
        ] {
            let got: Vec<bool> = Role::ALL.iter().map(|n| r.allows(*n)).collect();
            assert_eq!(got, allowed, "{r}");
        }
        assert_eq!(Role::parse(" Operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_revoked_or_expired_token_is_not_usable() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut t = Token {
            id: "abc".into(),
            name: "ci".into(),
            role: Role::Viewer,
            hash: "00".into(),
            created_at: t0,
            created_by: "me".into(),
            expires: Some(t0 + chrono::Duration::hours(1)),
            revoked_at: None,
        };
        assert!(t.usable_at(t0));
        assert!(!t.usable_at(t0 + chrono::Duration::hours(1)));
        t.expires = None;
        assert!(t.usable_at(t0 + chrono::Duration::days(9999)));
        t.revoked_at = Some(t0);
        assert!(!t.usable_at(t0));
    }
}
