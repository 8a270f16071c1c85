//! Identity routes: users, namespaces, shares, tokens and the audit log.

use crate::App;
use crate::acl::Scope;
use crate::api::{forbidden, function_ref, visible};
use crate::auth::{Caller, issue_token};
use crate::cluster::Change;
use crate::error::AppResult;
use crate::extract::{Json, MAX_PAGE, Path, Query, page_limit};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, AuditList, CreateNamespaceRequest, CreateTokenRequest, CreateUserRequest,
    CreatedToken, CreatedUser, Email, ErrorCode, FunctionRef, Me, Namespace, NamespaceInfo,
    ShareInfo, ShareList, ShareRequest, TokenInfo, TokenList, UserInfo, UserList,
};
use swb_store::{NamespaceRow, NewToken, Share, User};

fn user_info(u: &User) -> UserInfo {
    UserInfo {
        id: u.id.clone(),
        email: u.email.clone(),
        namespace: u.namespace.clone(),
        is_admin: u.is_admin,
        created_at: u.created_at,
    }
}

/// Checks an e-mail address (the rule `swb_api::Email`'s pattern states) and
/// lower-cases it.
pub(crate) fn normalize_email(email: &str) -> Result<String, ApiError> {
    let ok = email.chars().count() <= Email::MAX_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            // A domain without a dot is allowed: `admin@localhost`, intranet hosts.
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(email.to_lowercase())
    } else {
        Err(
            ApiError::invalid_input(format!("{email:?} is not an e-mail address"))
                .with_details(json!({ "pointer": "/email" })),
        )
    }
}

/// A free namespace derived from the e-mail's local part: `Alice.Smith@…` → `alice-smith`,
/// then `alice-smith-2`, … when taken.
fn namespace_for(app: &App, email: &str) -> Namespace {
    let local = email.split('@').next().unwrap_or_default();
    let mut base: String = local
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '-',
        })
        .collect::<String>()
        .trim_start_matches(['-', '_'])
        .chars()
        .take(50)
        .collect();
    if base.is_empty() {
        base = "user".into();
    }
    (1..)
        .map(|i| {
            if i == 1 {
                base.clone()
            } else {
                format!("{base}-{i}")
            }
        })
        .filter_map(|candidate| candidate.parse::<Namespace>().ok())
        .find(|ns| app.acl.owner(ns).is_none())
        .expect("some suffix is free")
}

// ---- users ---------------------------------------------------------------------------

pub async fn me(State(app): State<Arc<App>>, caller: Caller) -> axum::Json<Me> {
    let namespaces = app
        .acl
        .namespaces()
        .into_iter()
        .filter(|(_, owner)| owner == &caller.user.id)
        .map(|(ns, _)| ns)
        .collect();
    axum::Json(Me {
        user: user_info(&caller.user),
        token_id: caller.token_id.clone(),
        scopes: caller.scope_text.clone(),
        namespaces,
    })
}

pub async fn create_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<CreateUserRequest>,
) -> AppResult<(StatusCode, axum::Json<CreatedUser>)> {
    caller.require_admin()?;
    let email = normalize_email(&req.email)?;
    if app.store.user_by_email(&email).await?.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("a user with e-mail {email} exists"),
        )
        .into());
    }
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        namespace: namespace_for(&app, &email),
        email,
        is_admin: false,
        created_at: now_ms(),
    };
    app.store.create_user(&user).await?;
    let issued = issue_token();
    app.store
        .create_token(&NewToken {
            id: issued.id,
            user_id: user.id.clone(),
            secret_hash: issued.secret_hash,
            scopes: vec!["*".into()],
            description: "created with the account".into(),
            expires_at: None,
            parent_id: None,
        })
        .await?;
    app.changed(Change::Acl).await?;
    app.audit(
        &caller,
        "user.create",
        Some(&user.namespace),
        user.email.clone(),
        json!({ "id": user.id }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedUser {
            user: user_info(&user),
            token: issued.token,
        }),
    ))
}

pub async fn list_users(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> AppResult<axum::Json<UserList>> {
    caller.require_admin()?;
    let users = app.store.users().await?.iter().map(user_info).collect();
    Ok(axum::Json(UserList { users }))
}

pub async fn delete_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(email): Path<String>,
) -> AppResult<StatusCode> {
    caller.require_admin()?;
    let email = normalize_email(&email)?;
    let user = app
        .store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    if user.id == caller.user.id {
        return Err(ApiError::new(ErrorCode::Conflict, "you cannot delete yourself").into());
    }
    let tokens = app.store.tokens_of(&user.id).await?;
    app.store.delete_user(&user.id).await?;
    app.changed(Change::UserDeleted {
        user: user.id.clone(),
        tokens: tokens.into_iter().map(|t| t.id).collect(),
    })
    .await?;
    app.audit(
        &caller,
        "user.delete",
        Some(&user.namespace),
        user.email.clone(),
        json!({ "id": user.id }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- namespaces ------------------------------------------------------------------------

async fn owner_emails(app: &App) -> AppResult<HashMap<String, String>> {
    Ok(app
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect())
}

pub async fn create_namespace(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<CreateNamespaceRequest>,
) -> AppResult<(StatusCode, axum::Json<NamespaceInfo>)> {
    caller.require_unscoped()?;
    let row = NamespaceRow {
        name: req.name,
        owner_id: caller.user.id.clone(),
        created_at: now_ms(),
    };
    app.store.create_namespace(&row).await?;
    app.changed(Change::Acl).await?;
    app.audit(
        &caller,
        "namespace.create",
        Some(&row.name),
        row.name.to_string(),
        json!({}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(NamespaceInfo {
            name: row.name,
            owner: caller.user.email.clone(),
            created_at: row.created_at,
        }),
    ))
}

pub async fn list_namespaces(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> AppResult<axum::Json<Vec<NamespaceInfo>>> {
    let emails = owner_emails(&app).await?;
    let rows = app.store.namespaces().await?;
    Ok(axum::Json(
        rows.into_iter()
            .filter(|r| !caller.roles(&app.acl, &r.name, None).is_empty())
            .map(|r| NamespaceInfo {
                owner: emails.get(&r.owner_id).cloned().unwrap_or_default(),
                name: r.name,
                created_at: r.created_at,
            })
            .collect(),
    ))
}

// ---- shares ------------------------------------------------------------------------------

/// What a share applies to: a whole namespace or one function.
enum Target {
    Namespace(Namespace),
    Function(FunctionRef),
}

impl Target {
    fn namespace(&self) -> &Namespace {
        match self {
            Target::Namespace(ns) => ns,
            Target::Function(f) => f.namespace(),
        }
    }

    fn function(&self) -> Option<&str> {
        match self {
            Target::Namespace(_) => None,
            Target::Function(f) => Some(f.name()),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Namespace(ns) => ns.to_string(),
            Target::Function(f) => f.to_string(),
        }
    }

    /// Only the owner manages shares; others learn nothing they could not see.
    async fn check_owner(&self, app: &App, caller: &Caller) -> AppResult<()> {
        let roles = match self {
            Target::Function(f) => {
                let roles = visible(app, caller, f)?;
                if app.store.function(f).await?.is_none() {
                    return Err(ApiError::not_found(format!("function {f}")).into());
                }
                roles
            }
            Target::Namespace(ns) => {
                let roles = caller.roles(&app.acl, ns, None);
                if roles.is_empty() || app.acl.owner(ns).is_none() {
                    return Err(ApiError::not_found(format!("namespace {ns}")).into());
                }
                roles
            }
        };
        if roles.is_owner() {
            Ok(())
        } else {
            Err(forbidden(format_args!("manage the shares of {}", self.label())).into())
        }
    }
}

fn function_target(ns: &str, name: &str) -> Result<Target, ApiError> {
    function_ref(ns, name).map(Target::Function)
}

fn namespace_target(ns: &str) -> Result<Target, ApiError> {
    ns.parse()
        .map(Target::Namespace)
        .map_err(|e: swb_api::IdError| ApiError::invalid_input(e.to_string()))
}

async fn share(
    app: &App,
    caller: &Caller,
    target: Target,
    req: ShareRequest,
) -> AppResult<(StatusCode, axum::Json<ShareInfo>)> {
    target.check_owner(app, caller).await?;
    let email = normalize_email(&req.email)?;
    let share = Share {
        namespace: target.namespace().clone(),
        function: target.function().map(str::to_owned),
        email: email.clone(),
        role: req.role,
        created_by: caller.user.id.clone(),
        created_at: now_ms(),
    };
    app.store.put_share(&share).await?;
    app.changed(Change::Acl).await?;
    let pending = app.store.user_by_email(&email).await?.is_none();
    app.audit(
        caller,
        "share.create",
        Some(target.namespace()),
        target.label(),
        json!({ "email": email, "role": req.role, "pending": pending }),
    )
    .await;
    let status = if pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        axum::Json(ShareInfo {
            email,
            role: req.role,
            pending,
            created_at: share.created_at,
        }),
    ))
}

async fn list_shares(
    app: &App,
    caller: &Caller,
    target: Target,
) -> AppResult<axum::Json<ShareList>> {
    target.check_owner(app, caller).await?;
    let users: std::collections::HashSet<String> = app
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| u.email)
        .collect();
    let shares = app
        .store
        .shares()
        .await?
        .into_iter()
        .filter(|s| {
            &s.namespace == target.namespace() && s.function.as_deref() == target.function()
        })
        .map(|s| ShareInfo {
            pending: !users.contains(&s.email),
            email: s.email,
            role: s.role,
            created_at: s.created_at,
        })
        .collect();
    Ok(axum::Json(ShareList { shares }))
}

async fn unshare(app: &App, caller: &Caller, target: Target, email: &str) -> AppResult<StatusCode> {
    target.check_owner(app, caller).await?;
    let email = normalize_email(email)?;
    if !app
        .store
        .delete_share(target.namespace(), target.function(), &email)
        .await?
    {
        return Err(
            ApiError::not_found(format!("share of {} with {email}", target.label())).into(),
        );
    }
    app.changed(Change::Acl).await?;
    app.audit(
        caller,
        "share.delete",
        Some(target.namespace()),
        target.label(),
        json!({ "email": email }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn share_function(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    Json(req): Json<ShareRequest>,
) -> AppResult<(StatusCode, axum::Json<ShareInfo>)> {
    share(&app, &caller, function_target(&ns, &name)?, req).await
}

pub async fn list_function_shares(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> AppResult<axum::Json<ShareList>> {
    list_shares(&app, &caller, function_target(&ns, &name)?).await
}

pub async fn unshare_function(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, name, email)): Path<(String, String, String)>,
) -> AppResult<StatusCode> {
    unshare(&app, &caller, function_target(&ns, &name)?, &email).await
}

pub async fn share_namespace(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(ns): Path<String>,
    Json(req): Json<ShareRequest>,
) -> AppResult<(StatusCode, axum::Json<ShareInfo>)> {
    share(&app, &caller, namespace_target(&ns)?, req).await
}

pub async fn list_namespace_shares(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(ns): Path<String>,
) -> AppResult<axum::Json<ShareList>> {
    list_shares(&app, &caller, namespace_target(&ns)?).await
}

pub async fn unshare_namespace(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ns, email)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    unshare(&app, &caller, namespace_target(&ns)?, &email).await
}

// ---- tokens ------------------------------------------------------------------------------

pub async fn create_token(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<CreateTokenRequest>,
) -> AppResult<(StatusCode, axum::Json<CreatedToken>)> {
    caller.require_unscoped()?;
    swb_api::text_error(&req.description, "/description")?;
    if req.scopes.is_empty() {
        return Err(
            ApiError::invalid_input("a token needs at least one scope (\"*\" for all)")
                .with_details(json!({ "pointer": "/scopes" }))
                .into(),
        );
    }
    for text in &req.scopes {
        let scope = Scope::parse(text)?;
        // A token never holds more than the user who creates it (the token it is
        // created with is unscoped).
        let held = match &scope {
            Scope::All => true,
            // A party's administrator grants researchers and other parties access
            // to its federations.
            Scope::Metrics | Scope::Federate { .. } | Scope::Peer { .. } => caller.user.is_admin,
            Scope::Grant {
                role,
                namespace,
                function,
            } => app
                .acl
                .user_roles(&caller.user, namespace, function.as_deref())
                .has(*role),
        };
        if !held {
            return Err(forbidden(format_args!("grant {text:?}: you do not hold it")).into());
        }
    }
    let expires_at = match req.expires_in_s {
        Some(s) if !(1..=CreateTokenRequest::MAX_LIFETIME_S).contains(&s) => {
            return Err(ApiError::invalid_input(format!(
                "expires_in_s must be between 1 and {}",
                CreateTokenRequest::MAX_LIFETIME_S
            ))
            .with_details(json!({ "pointer": "/expires_in_s" }))
            .into());
        }
        Some(s) => Some(now_ms() + (s * 1000) as i64),
        None => None,
    };
    // Never outlive the token that created it.
    let expires_at = match (expires_at, caller.expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let issued = issue_token();
    app.store
        .create_token(&NewToken {
            id: issued.id.clone(),
            user_id: caller.user.id.clone(),
            secret_hash: issued.secret_hash,
            scopes: req.scopes.clone(),
            description: req.description,
            expires_at,
            parent_id: Some(caller.token_id.clone()),
        })
        .await?;
    app.audit(
        &caller,
        "token.create",
        Some(&caller.user.namespace),
        issued.id.clone(),
        json!({ "scopes": req.scopes, "expires_at": expires_at }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            id: issued.id,
            token: issued.token,
            scopes: req.scopes,
            expires_at,
        }),
    ))
}

pub async fn list_tokens(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> AppResult<axum::Json<TokenList>> {
    caller.require_unscoped()?;
    let tokens = app
        .store
        .tokens_of(&caller.user.id)
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            id: t.id,
            parent: t.parent_id,
            scopes: t.scopes,
            description: t.description,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        })
        .collect();
    Ok(axum::Json(TokenList { tokens }))
}

pub async fn revoke_token(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    caller.require_unscoped()?;
    // The token and every token created with it, and so on.
    let revoked = app.store.revoke_token(&caller.user.id, &id).await?;
    if revoked.is_empty() {
        return Err(ApiError::not_found(format!("token {id}")).into());
    }
    let cascaded: Vec<_> = revoked.iter().filter(|t| **t != id).cloned().collect();
    app.changed(Change::TokensRevoked { tokens: revoked })
        .await?;
    app.audit(
        &caller,
        "token.revoke",
        Some(&caller.user.namespace),
        id,
        json!({ "with": cascaded }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- audit -----------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// 1 to 1,000; 100 when absent.
    #[schemars(range(min = 1, max = MAX_PAGE))]
    limit: Option<u32>,
}

pub async fn list_audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> AppResult<axum::Json<AuditList>> {
    caller.require_unscoped()?;
    let limit = page_limit(q.limit, 100)?;
    let owned: Option<Vec<Namespace>> = (!caller.is_platform_admin()).then(|| {
        app.acl
            .namespaces()
            .into_iter()
            .filter(|(_, owner)| owner == &caller.user.id)
            .map(|(ns, _)| ns)
            .collect()
    });
    let events = app.store.audit(owned.as_deref(), limit).await?;
    Ok(axum::Json(AuditList { events }))
}
