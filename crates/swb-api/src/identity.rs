//! Bodies of the identity routes: users, namespaces, shares, tokens, audit.

use crate::{Namespace, timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a share grants. `Deploy` includes `Call`; a namespace's owner has every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Invoke the function (and submit jobs).
    Call,
    /// Deploy new versions and roll back (and call).
    Deploy,
    /// Run workers that serve the function.
    Serve,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Deploy => "deploy",
            Self::Serve => "serve",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "call" => Some(Self::Call),
            "deploy" => Some(Self::Deploy),
            "serve" => Some(Self::Serve),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub namespace: Namespace,
    pub is_admin: bool,
    #[serde(with = "timestamp")]
    pub created_at: i64,
}

/// A new user with their first token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserInfo,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

/// `GET /v1/me`: who the token belongs to and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub user: UserInfo,
    pub token_id: String,
    pub scopes: Vec<String>,
    /// Namespaces the user owns.
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespaceRequest {
    pub name: Namespace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceInfo {
    pub name: Namespace,
    pub owner: String,
    #[serde(with = "timestamp")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareInfo {
    pub email: String,
    pub role: Role,
    /// No account has this e-mail yet; the grant applies when one is created.
    pub pending: bool,
    #[serde(with = "timestamp")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareList {
    pub shares: Vec<ShareInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// `["*"]` or scopes such as `call:alice/echo`, `serve:alice/*`, `deploy:alice`.
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    /// The secret, shown this once.
    pub token: String,
    pub scopes: Vec<String>,
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    /// The token this one was created with: it dies with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub scopes: Vec<String>,
    pub description: String,
    #[serde(with = "timestamp")]
    pub created_at: i64,
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<i64>,
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Who changed what, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "timestamp")]
    pub at: i64,
    /// E-mail of the acting user.
    pub actor: String,
    /// e.g. `function.deploy`, `share.create`, `token.revoke`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
    /// What was acted on (a function, an e-mail, a token id).
    pub target: String,
    #[serde(default)]
    pub details: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
}
