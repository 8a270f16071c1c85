//! Who may do what: roles from namespace ownership and e-mail shares, narrowed by a
//! token's scopes.
//!
//! The namespace owners and shares live in memory (a snapshot reloaded after every
//! change), so authorization on the hot path reads no database.

use crate::auth::Caller;
use crate::error::store_error;
use std::collections::HashMap;
use std::sync::RwLock;
use swb_api::{ApiError, ErrorCode, Namespace, Role};
use swb_store::{Share, Store, User};

/// A set of roles. `OWNER` implies the others; `DEPLOY` implies `CALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    const CALL: u8 = 1;
    const DEPLOY: u8 = 2;
    const SERVE: u8 = 4;
    const OWNER: u8 = 8;
    pub const ALL: Roles = Roles(Self::CALL | Self::DEPLOY | Self::SERVE | Self::OWNER);

    pub fn of(role: Role) -> Roles {
        match role {
            Role::Call => Roles(Self::CALL),
            Role::Deploy => Roles(Self::DEPLOY | Self::CALL),
            Role::Serve => Roles(Self::SERVE),
        }
    }

    pub fn has(self, role: Role) -> bool {
        let bit = match role {
            Role::Call => Self::CALL,
            Role::Deploy => Self::DEPLOY,
            Role::Serve => Self::SERVE,
        };
        self.0 & bit != 0
    }

    pub fn is_owner(self) -> bool {
        self.0 & Self::OWNER != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    fn intersect(self, other: Roles) -> Roles {
        Roles(self.0 & other.0)
    }
}

/// One entry of a token's scope list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `*`: everything the user may do.
    All,
    /// `metrics`: scraping `/metrics` and nothing else (administrators only).
    Metrics,
    /// `federate:<federation>/<dataset>`: federated queries of a dataset (a
    /// researcher's token); nothing else.
    Federate { federation: String, dataset: String },
    /// `peer:<federation>/<party>`: the token another party of a federation
    /// presents, with its pinned certificate; nothing else.
    Peer { federation: String, party: String },
    /// `role:ns` (whole namespace, also written `role:ns/*`) or `role:ns/name`.
    Grant {
        role: Role,
        namespace: Namespace,
        function: Option<String>,
    },
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, ApiError> {
        let bad = || {
            ApiError::invalid_input(format!(
                "bad scope {s:?}: use \"*\", \"metrics\", \"<role>:<ns>\", \"<role>:<ns>/*\" or \"<role>:<ns>/<name>\" with role call, deploy or serve, \"federate:<federation>/<dataset>\" or \"peer:<federation>/<party>\""
            ))
        };
        match s {
            "*" => return Ok(Scope::All),
            "metrics" => return Ok(Scope::Metrics),
            _ => {}
        }
        for (kind, make) in [
            (
                "federate:",
                (|f, d| Scope::Federate {
                    federation: f,
                    dataset: d,
                }) as fn(String, String) -> Scope,
            ),
            ("peer:", |f, p| Scope::Peer {
                federation: f,
                party: p,
            }),
        ] {
            if let Some(rest) = s.strip_prefix(kind) {
                let (a, b) = rest.split_once('/').ok_or_else(bad)?;
                if !swb_api::valid_name(a) || !swb_api::valid_name(b) {
                    return Err(bad());
                }
                return Ok(make(a.into(), b.into()));
            }
        }
        let (role, target) = s.split_once(':').ok_or_else(bad)?;
        let role = Role::parse(role).ok_or_else(bad)?;
        let (ns, function) = match target.split_once('/') {
            None | Some((_, "*")) => (target.split('/').next().unwrap_or(target), None),
            Some((ns, name)) => {
                format!("{ns}/{name}")
                    .parse::<swb_api::FunctionRef>()
                    .map_err(|_| bad())?;
                (ns, Some(name.to_owned()))
            }
        };
        Ok(Scope::Grant {
            role,
            namespace: ns.parse().map_err(|_| bad())?,
            function,
        })
    }

    /// The roles this scope allows on `ns` (and `function`, if given).
    fn allows(&self, ns: &Namespace, function: Option<&str>) -> Roles {
        match self {
            Scope::All => Roles::ALL,
            Scope::Metrics | Scope::Federate { .. } | Scope::Peer { .. } => Roles::NONE,
            Scope::Grant {
                role,
                namespace,
                function: scoped,
            } => {
                let covers = namespace == ns
                    && match (scoped, function) {
                        (None, _) => true,
                        (Some(s), Some(f)) => s == f,
                        (Some(_), None) => false,
                    };
                if covers {
                    Roles::of(*role)
                } else {
                    Roles::NONE
                }
            }
        }
    }
}

#[derive(Default)]
struct Snapshot {
    owners: HashMap<Namespace, String>,
    shares: HashMap<String, Vec<Share>>,
}

pub struct Acl {
    snapshot: RwLock<Snapshot>,
}

impl Acl {
    pub async fn load(store: &dyn Store) -> Result<Self, ApiError> {
        let acl = Self {
            snapshot: RwLock::new(Snapshot::default()),
        };
        acl.reload(store).await?;
        Ok(acl)
    }

    /// Re-reads owners and shares; called after every change to them.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), ApiError> {
        let namespaces = store.namespaces().await.map_err(store_error)?;
        let shares = store.shares().await.map_err(store_error)?;
        let mut next = Snapshot::default();
        for ns in namespaces {
            next.owners.insert(ns.name, ns.owner_id);
        }
        for share in shares {
            next.shares
                .entry(share.email.clone())
                .or_default()
                .push(share);
        }
        *self.snapshot.write().expect("acl lock") = next;
        Ok(())
    }

    pub fn owner(&self, ns: &Namespace) -> Option<String> {
        self.snapshot
            .read()
            .expect("acl lock")
            .owners
            .get(ns)
            .cloned()
    }

    pub fn namespaces(&self) -> Vec<(Namespace, String)> {
        let snap = self.snapshot.read().expect("acl lock");
        let mut all: Vec<_> = snap
            .owners
            .iter()
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect();
        all.sort();
        all
    }

    /// A user's roles on a namespace or one of its functions, before token scopes.
    pub fn user_roles(&self, user: &User, ns: &Namespace, function: Option<&str>) -> Roles {
        if user.is_admin {
            return Roles::ALL;
        }
        let snap = self.snapshot.read().expect("acl lock");
        if snap.owners.get(ns) == Some(&user.id) {
            return Roles::ALL;
        }
        snap.shares
            .get(&user.email)
            .into_iter()
            .flatten()
            .filter(|s| {
                &s.namespace == ns
                    && match (&s.function, function) {
                        (None, _) => true,
                        (Some(s), Some(f)) => s == f,
                        (Some(_), None) => false,
                    }
            })
            .fold(Roles::NONE, |acc, s| acc.union(Roles::of(s.role)))
    }
}

impl Caller {
    /// What this caller may do on a namespace or one of its functions: the user's
    /// roles narrowed by the token's scopes.
    pub fn roles(&self, acl: &Acl, ns: &Namespace, function: Option<&str>) -> Roles {
        let user = acl.user_roles(&self.user, ns, function);
        let token = self
            .scopes
            .iter()
            .fold(Roles::NONE, |acc, s| acc.union(s.allows(ns, function)));
        let roles = user.intersect(token);
        match &self.call {
            // A nested call: only calling what the calling version declared.
            Some(node) if node.declares(ns, function) => roles.intersect(Roles::of(Role::Call)),
            Some(_) => Roles::NONE,
            None => roles,
        }
    }

    /// Whether the token's scopes include `federate:<federation>/<dataset>`. No
    /// other scope allows a federated query, not even `*`.
    pub fn may_federate(&self, federation: &str, dataset: &str) -> bool {
        self.call.is_none()
            && self.scopes.iter().any(|s| {
                matches!(s, Scope::Federate { federation: f, dataset: d } if f == federation && d == dataset)
            })
    }

    /// Whether the token is the one a federation's `party` presents here.
    pub fn is_peer(&self, federation: &str, party: &str) -> bool {
        self.call.is_none()
            && self.scopes.iter().any(|s| {
                matches!(s, Scope::Peer { federation: f, party: p } if f == federation && p == party)
            })
    }

    /// Whether the token is unscoped (`*`): account management needs one. A call
    /// token never is, whatever its tree's caller holds.
    pub fn is_unscoped(&self) -> bool {
        self.call.is_none() && self.scopes.contains(&Scope::All)
    }

    pub fn require_unscoped(&self) -> Result<(), ApiError> {
        if self.is_unscoped() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "this needs a token without scope restrictions",
            ))
        }
    }

    /// Uploading artefacts needs an unscoped token or one that may deploy something.
    pub fn require_uploader(&self) -> Result<(), ApiError> {
        let deploys = |s: &Scope| {
            matches!(
                s,
                Scope::All
                    | Scope::Grant {
                        role: Role::Deploy,
                        ..
                    }
            )
        };
        if self.call.is_none() && self.scopes.iter().any(deploys) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "this token may not upload artefacts: it has no deploy scope",
            ))
        }
    }

    /// Whether the caller may read `/metrics`, which names every function: an
    /// administrator with an unscoped token or one scoped to `metrics`.
    pub fn may_scrape(&self) -> bool {
        self.user.is_admin
            && self.call.is_none()
            && self
                .scopes
                .iter()
                .any(|s| matches!(s, Scope::All | Scope::Metrics))
    }

    /// An administrator acting with an unscoped token.
    pub fn is_platform_admin(&self) -> bool {
        self.user.is_admin && self.is_unscoped()
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "only an administrator may do this",
            ))
        }
    }

    /// Namespaces whose private records (invocations, audit) the caller may read:
    /// those where they may deploy; `None` means all.
    pub fn record_namespaces(&self, acl: &Acl) -> Option<Vec<Namespace>> {
        if self.is_platform_admin() {
            return None;
        }
        Some(
            acl.namespaces()
                .into_iter()
                .map(|(ns, _)| ns)
                .filter(|ns| self.roles(acl, ns, None).has(Role::Deploy))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_parse_and_reject_nonsense() {
        assert_eq!(Scope::parse("*").unwrap(), Scope::All);
        let whole = Scope::parse("serve:alice/*").unwrap();
        assert_eq!(whole, Scope::parse("serve:alice").unwrap());
        assert_eq!(
            Scope::parse("call:alice/echo").unwrap(),
            Scope::Grant {
                role: Role::Call,
                namespace: ns("alice"),
                function: Some("echo".into())
            }
        );
        for bad in [
            "",
            "call",
            "owner:alice",
            "call:",
            "call:Alice",
            "call:a/b/c",
            "call:a/B",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_narrow() {
        let deploy_ns = Scope::parse("deploy:alice").unwrap();
        let call_echo = Scope::parse("call:alice/echo").unwrap();
        assert!(deploy_ns.allows(&ns("alice"), Some("echo")).has(Role::Call));
        assert!(!deploy_ns.allows(&ns("bob"), Some("echo")).has(Role::Call));
        assert!(
            !call_echo
                .allows(&ns("alice"), Some("other"))
                .has(Role::Call)
        );
        assert!(!call_echo.allows(&ns("alice"), None).has(Role::Call));
        let fed = Scope::parse("federate:cardio/patients").unwrap();
        assert_eq!(
            fed,
            Scope::Federate {
                federation: "cardio".into(),
                dataset: "patients".into()
            }
        );
        assert_eq!(fed.allows(&ns("alice"), None), Roles::NONE);
        for bad in [
            "federate:cardio",
            "federate:Cardio/x",
            "peer:a/",
            "peer:/b",
            "federate:a/b/c",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        let metrics = Scope::parse("metrics").unwrap();
        assert_eq!(metrics, Scope::Metrics);
        assert!(metrics.allows(&ns("alice"), None).is_empty());
    }
}
