//! Bodies of the identity routes: users, namespaces, shares, tokens, audit.

use crate::rest::TEXT_PATTERN;
use crate::{Namespace, timestamp, whole};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a share grants. `Deploy` includes `Call`; a namespace's owner has every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schemars(with = "Email")]
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub namespace: Namespace,
    pub is_admin: bool,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
}

/// A new user with their first token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserInfo,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

/// `GET /v1/me`: who the token belongs to and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Me {
    pub user: UserInfo,
    pub token_id: String,
    pub scopes: Vec<String>,
    /// Namespaces the user owns.
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespaceRequest {
    pub name: Namespace,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceInfo {
    pub name: Namespace,
    pub owner: String,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    #[schemars(with = "Email")]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShareInfo {
    pub email: String,
    pub role: Role,
    /// No account has this e-mail yet; the grant applies when one is created.
    pub pending: bool,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShareList {
    pub shares: Vec<ShareInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// `["*"]` or scopes such as `call:alice/echo`, `serve:alice/*`, `deploy:alice`.
    #[schemars(length(min = 1), inner(regex(pattern = SCOPE_PATTERN)))]
    pub scopes: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option::deserialize"
    )]
    #[schemars(range(min = 1, max = Self::MAX_LIFETIME_S))]
    pub expires_in_s: Option<u64>,
    #[serde(default)]
    #[schemars(regex(pattern = TEXT_PATTERN))]
    pub description: String,
}

impl CreateTokenRequest {
    /// Ten years.
    pub const MAX_LIFETIME_S: u64 = 10 * 365 * 24 * 3600;
}

/// A scope as `POST /v1/tokens` takes it: `*`, `metrics`, `<role>:<ns>`,
/// `<role>:<ns>/*` or `<role>:<ns>/<name>`.
const SCOPE_PATTERN: &str = "^(\\*|metrics|(call|deploy|serve):[a-z0-9][a-z0-9_-]{0,62}(/(\\*|[a-z0-9][a-z0-9_-]{0,62}))?|(federate|peer):[a-z0-9][a-z0-9_-]{0,62}/[a-z0-9][a-z0-9_-]{0,62})$";

/// What the server takes as an e-mail address: no whitespace or control characters,
/// one `@` with something before it, and a domain that neither starts nor ends with
/// a dot. At most 254 characters.
pub struct Email;

/// Characters an address may hold: not `@`, whitespace (Unicode `White_Space`) or
/// control characters.
const EMAIL_CHAR: &str =
    "[^@\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const DOMAIN_END: &str =
    "[^@.\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

impl Email {
    pub const MAX_CHARS: usize = 254;

    pub fn pattern() -> String {
        format!("^{EMAIL_CHAR}+@{DOMAIN_END}({EMAIL_CHAR}*{DOMAIN_END})?$")
    }
}

impl JsonSchema for Email {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Email".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": Self::MAX_CHARS,
            "pattern": Self::pattern(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    pub id: String,
    /// The secret, shown this once.
    pub token: String,
    pub scopes: Vec<String>,
    #[schemars(with = "Option<timestamp::Rfc3339>")]
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    /// The token this one was created with: it dies with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub scopes: Vec<String>,
    pub description: String,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
    pub created_at: i64,
    #[schemars(with = "Option<timestamp::Rfc3339>")]
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<i64>,
    #[schemars(with = "Option<timestamp::Rfc3339>")]
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Who changed what, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "timestamp")]
    #[schemars(with = "timestamp::Rfc3339")]
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
}
