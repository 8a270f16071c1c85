//! Bearer tokens: issuing, verifying (hashed at rest, compared in constant time) and
//! the authenticated [`Caller`] every `/v1` handler receives.
//!
//! A token reads `swb_<id>_<secret>` (`swb_api::token`): the id finds the row, the
//! secret is checked against its SHA-256 hash. Only the hash is stored.

use crate::App;
use crate::acl::Scope;
use crate::error::{AppError, store_error};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lru::LruCache;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use swb_api::timestamp::now_ms;
use swb_api::{ApiError, ErrorCode};
use swb_store::{Store, TokenRow, User};

/// How long a verified token row is trusted before it is read again.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_ENTRIES: usize = 10_000;

/// The scope that grants everything.
pub const SCOPE_ALL: &str = "*";

/// A freshly issued token: `secret` is shown once and never stored.
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub secret_hash: [u8; 32],
}

pub fn issue_token() -> IssuedToken {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    IssuedToken {
        token: format!("{}{id}_{secret}", swb_api::token::PREFIX),
        secret_hash: hash_secret(&secret),
        id,
    }
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Who is calling, as established from their token. Cheap to clone: a verified
/// token's identity is parsed once and shared by the calls that present it.
#[derive(Debug, Clone)]
pub struct Caller(Arc<Identity>);

#[derive(Debug)]
pub struct Identity {
    pub user: User,
    pub token_id: String,
    pub scopes: Vec<Scope>,
    /// The scopes as written when the token was created.
    pub scope_text: Vec<String>,
    pub expires_at: Option<i64>,
    /// For a call token: the running call whose nested calls it makes. The caller
    /// is then the tree's root caller, allowed only to call what that call declared.
    pub call: Option<Arc<crate::tree::Node>>,
}

impl Caller {
    /// The tree's identity, as the call token of `node` presents it.
    pub fn nested(&self, node: Arc<crate::tree::Node>) -> Caller {
        Caller(Arc::new(Identity {
            user: self.user.clone(),
            token_id: self.token_id.clone(),
            scopes: self.scopes.clone(),
            scope_text: self.scope_text.clone(),
            expires_at: self.expires_at,
            call: Some(node),
        }))
    }

    /// The identity a call tree acts for, as it travelled (between replicas).
    pub fn acting(acting: &crate::tree::Acting) -> Result<Caller, ApiError> {
        Ok(Caller(Arc::new(Identity {
            user: acting.user.clone(),
            token_id: acting.token_id.clone(),
            scopes: acting
                .scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<_, _>>()?,
            scope_text: acting.scopes.clone(),
            expires_at: None,
            call: None,
        })))
    }
}

impl std::ops::Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// A token row as read from the store, with the caller it authenticates.
struct Verified {
    secret_hash: [u8; 32],
    revoked: bool,
    /// `None` when the stored scopes do not parse: the token is refused.
    caller: Option<Caller>,
    read_at: Instant,
}

impl Verified {
    fn new(row: TokenRow) -> Self {
        let scopes = row.scopes.iter().map(|s| Scope::parse(s)).collect();
        let caller = match scopes {
            Ok(scopes) => Some(Caller(Arc::new(Identity {
                user: row.user,
                token_id: row.id,
                scopes,
                scope_text: row.scopes,
                expires_at: row.expires_at,
                call: None,
            }))),
            Err(e) => {
                tracing::error!(token = %row.id, error = %e.message, "stored token has a bad scope");
                None
            }
        };
        Self {
            secret_hash: row.secret_hash,
            revoked: row.revoked_at.is_some(),
            caller,
            read_at: Instant::now(),
        }
    }
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    /// The running calls whose tokens (`swb_call-…`) make nested calls.
    trees: Arc<crate::tree::Trees>,
    cache: Mutex<LruCache<String, Arc<Verified>>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, trees: Arc<crate::tree::Trees>) -> Self {
        Self {
            store,
            trees,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).expect("non-zero"),
            )),
        }
    }

    /// Forgets a cached token so that a revocation takes effect at once.
    pub fn forget(&self, token_id: &str) {
        self.cache.lock().expect("auth cache").pop(token_id);
    }

    pub fn clear(&self) {
        self.cache.lock().expect("auth cache").clear();
    }

    pub async fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let unauthenticated = |msg: &str| ApiError::new(ErrorCode::Unauthenticated, msg);
        let header = header
            .ok_or_else(|| unauthenticated("missing `Authorization: Bearer <token>` header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?
            .trim();
        let (id, secret) =
            swb_api::token::parse(token).ok_or_else(|| unauthenticated("malformed token"))?;
        if id.starts_with(swb_api::token::CALL_ID_PREFIX) {
            return self
                .trees
                .authenticate(id, secret)
                .ok_or_else(|| unauthenticated("invalid call token, or its call has ended"));
        }
        let invalid = || unauthenticated("invalid or revoked token");
        let token = self.row(id).await?.ok_or_else(invalid)?;
        if !bool::from(hash_secret(secret).ct_eq(&token.secret_hash)) || token.revoked {
            return Err(invalid());
        }
        let caller = token.caller.as_ref().ok_or_else(invalid)?;
        if caller.expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(invalid());
        }
        Ok(caller.clone())
    }

    /// Whether a stored token still stands (exists, not revoked, not expired): a
    /// job's nested calls act for the token it was submitted with only while it does.
    pub async fn stands(&self, token_id: &str) -> bool {
        match self.row(token_id).await {
            Ok(Some(token)) => {
                !token.revoked
                    && token
                        .caller
                        .as_ref()
                        .is_some_and(|c| c.expires_at.is_none_or(|t| t > now_ms()))
            }
            _ => false,
        }
    }

    async fn row(&self, id: &str) -> Result<Option<Arc<Verified>>, ApiError> {
        if let Some(token) = self.cache.lock().expect("auth cache").get(id)
            && token.read_at.elapsed() < CACHE_TTL
        {
            return Ok(Some(token.clone()));
        }
        let Some(row) = self.store.token(id).await.map_err(store_error)? else {
            return Ok(None);
        };
        let token = Arc::new(Verified::new(row));
        self.cache
            .lock()
            .expect("auth cache")
            .put(id.to_owned(), token.clone());
        Ok(Some(token))
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        Ok(app.auth.authenticate(header).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_hash_to_their_stored_hash() {
        let t = issue_token();
        let (id, secret) = swb_api::token::parse(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert_eq!(hash_secret(secret), t.secret_hash);
        assert_ne!(issue_token().token, t.token);
    }
}
