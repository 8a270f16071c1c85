//! Call trees: functions calling functions through the platform.
//!
//! A call whose version declares the functions it may call (`calls`) gets a token
//! for its nested calls when a worker of this replica takes it: `swb_call-<id>_<secret>`,
//! valid while the call runs, acting for the tree's root caller and allowing only a
//! `call` of what the version declared. The call is registered here (a [`Node`]) for as
//! long as it runs; its nested calls come back to this replica (its worker's), so the
//! token is checked, the rules applied and the children cancelled where the parent is.
//!
//! The rules of a nested call: depth at most `max_depth`; a deadline no later than its
//! parent's (less a margin for the answer to travel back), `timeout` without dispatch
//! when too little is left; at most `max_children` at once per call and
//! `max_descendants` at once per tree on this replica (`limit_exceeded`); every child
//! still running when its parent ends is cancelled.

use crate::auth::Caller;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use swb_api::token::{CALL_ID_PREFIX, PREFIX, Secret};
use swb_api::{ApiError, CallPlace, ErrorCode, FunctionRef, Namespace};
use swb_store::User;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The deepest call tree a server may be configured to allow.
pub const MAX_DEPTH_CAP: u32 = 32;
/// Kept from a parent's remaining time for a child's answer to travel back.
pub const MARGIN: Duration = Duration::from_millis(20);

/// The bounds of every call tree (`swb server --max-call-depth` and friends).
#[derive(Debug, Clone, Copy)]
pub struct TreeLimits {
    /// Nested calls below a root, at most (a root's children are at depth 1).
    pub max_depth: u32,
    /// Nested calls one call may have running at once.
    pub max_children: u32,
    /// Nested calls one tree may have running at once on this replica.
    pub max_descendants: u32,
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_children: 64,
            max_descendants: 1024,
        }
    }
}

/// The identity a whole tree acts for: its root call's caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acting {
    pub user: User,
    pub token_id: String,
    pub scopes: Vec<String>,
}

impl Acting {
    pub fn of(caller: &Caller) -> Self {
        Self {
            user: caller.user.clone(),
            token_id: caller.token_id.clone(),
            scopes: caller.scope_text.clone(),
        }
    }
}

/// A call that may make nested calls, as it travels to the worker (and replica) that
/// runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Place {
    /// This call's invocation id.
    pub id: String,
    /// The root call's invocation id.
    pub root: String,
    /// The tree's W3C trace id.
    pub trace: String,
    /// The functions from the root down to this call's own.
    pub chain: Vec<FunctionRef>,
    /// What this call's version may call.
    pub calls: Vec<FunctionRef>,
    pub acting: Acting,
}

impl Place {
    pub fn depth(&self) -> u32 {
        self.chain.len().saturating_sub(1) as u32
    }

    fn function(&self) -> &FunctionRef {
        self.chain
            .last()
            .expect("a chain holds the call's own function")
    }
}

/// Lends a waiting parent's worker slot to its children (see `Hub`): a call blocked in
/// nested calls does not count against its worker's capacity for nested calls.
pub trait Slot: Send + Sync {
    fn lend(&self);
    fn reclaim(&self);
}

/// A call running on one of this replica's workers that may make nested calls.
pub struct Node {
    pub place: Place,
    /// `None` for a call that was given no token.
    secret_hash: Option<[u8; 32]>,
    deadline: Instant,
    /// The tree's identity, parsed once.
    acting: Caller,
    /// Cancelled when the call ends, for whatever reason: its children stop.
    ended: CancellationToken,
    children: AtomicU32,
    slot: Box<dyn Slot>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("place", &self.place).finish()
    }
}

impl Node {
    /// Whether this call's version declared `f`.
    pub fn declares(&self, ns: &Namespace, function: Option<&str>) -> bool {
        function.is_some_and(|name| {
            self.place
                .calls
                .iter()
                .any(|c| c.namespace() == ns && c.name() == name)
        })
    }

    pub fn function(&self) -> &FunctionRef {
        self.place.function()
    }

    /// Resolves when the call has ended.
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// The tree's identity.
    pub fn acting(&self) -> &Caller {
        &self.acting
    }

    /// A nested call's place in the tree, as its record shows it.
    pub fn child_record(&self) -> CallPlace {
        let p = &self.place;
        CallPlace {
            root: p.root.clone(),
            parent: p.id.clone(),
            depth: p.depth() + 1,
            via: p.function().clone(),
            acting_for: p.acting.user.email.clone(),
            trace: p.trace.clone(),
        }
    }

    /// A nested call's own place, for when it may call further (`calls`).
    pub fn child_place(&self, id: &str, function: &FunctionRef, calls: &[FunctionRef]) -> Place {
        let p = &self.place;
        let mut chain = p.chain.clone();
        chain.push(function.clone());
        Place {
            id: id.to_owned(),
            root: p.root.clone(),
            trace: p.trace.clone(),
            chain,
            calls: calls.to_vec(),
            acting: p.acting.clone(),
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The calls of this replica that may make nested calls, by invocation id.
pub struct Trees {
    limits: TreeLimits,
    running: Mutex<HashMap<String, Arc<Node>>>,
    /// Nested calls running, per root.
    descendants: Mutex<HashMap<String, u32>>,
}

impl Trees {
    pub fn new(limits: TreeLimits) -> Self {
        Self {
            limits,
            running: Mutex::new(HashMap::new()),
            descendants: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> TreeLimits {
        self.limits
    }

    /// Registers a call as its worker takes it; returns its token, when `tokened`
    /// (a remote function's worker makes nested calls with it; a guest's come over
    /// its session and need none), and the registration, which ends the call's tree
    /// rights when dropped.
    pub fn register(
        self: &Arc<Self>,
        place: Place,
        acting: Caller,
        deadline: Instant,
        slot: Box<dyn Slot>,
        tokened: bool,
    ) -> (Option<Secret>, Registered) {
        let (token, secret_hash) = if tokened {
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
            let secret = hex::encode(secret);
            let token = Secret::new(format!("{PREFIX}{CALL_ID_PREFIX}{}_{secret}", place.id));
            (Some(token), Some(Sha256::digest(secret.as_bytes()).into()))
        } else {
            (None, None)
        };
        let id = place.id.clone();
        let node = Arc::new(Node {
            place,
            secret_hash,
            deadline,
            acting,
            ended: CancellationToken::new(),
            children: AtomicU32::new(0),
            slot,
        });
        self.running
            .lock()
            .expect("trees lock")
            .insert(id, node.clone());
        (
            token,
            Registered {
                trees: self.clone(),
                node,
            },
        )
    }

    /// The caller a call token stands for: the tree's identity, narrowed to calling
    /// what the running call declared. `None` when the call has ended (or never was).
    pub fn authenticate(&self, id: &str, secret: &str) -> Option<Caller> {
        let id = id.strip_prefix(CALL_ID_PREFIX)?;
        let node = self.running.lock().expect("trees lock").get(id).cloned()?;
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let matches = node
            .secret_hash
            .is_some_and(|stored| bool::from(hash.ct_eq(&stored)));
        if !matches || node.ended.is_cancelled() {
            return None;
        }
        Some(node.acting.nested(node.clone()))
    }

    /// Admits a nested call of `function` by `parent`: its place in the tree and the
    /// most time it may take, or the error to answer (and record) instead.
    pub fn admit(
        self: &Arc<Self>,
        parent: &Arc<Node>,
        function: &FunctionRef,
    ) -> Result<Child, ApiError> {
        let depth = parent.place.depth() + 1;
        let chain = || {
            parent
                .place
                .chain
                .iter()
                .chain(std::iter::once(function))
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
        };
        if depth > self.limits.max_depth {
            let chain = chain();
            return Err(ApiError::new(
                ErrorCode::CallDepthExceeded,
                format!(
                    "calling {function} would make the call tree {depth} deep, over its limit of {}: {}",
                    self.limits.max_depth,
                    chain.join(" → ")
                ),
            )
            .with_details(serde_json::json!({
                "limit": self.limits.max_depth,
                "chain": chain,
            })));
        }
        let budget = parent.remaining().saturating_sub(MARGIN);
        if budget.is_zero() {
            return Err(ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "{} has {} ms left before its deadline: too little to call {function}",
                    parent.function(),
                    parent.remaining().as_millis()
                ),
            ));
        }
        let running = parent.children.fetch_add(1, Ordering::AcqRel);
        let mut child = Child {
            trees: self.clone(),
            parent: parent.clone(),
            counted: false,
            budget,
        };
        if running >= self.limits.max_children {
            return Err(limit(format!(
                "{} already has {running} nested calls running, its limit",
                parent.function()
            )));
        }
        if running == 0 {
            parent.slot.lend();
        }
        {
            let mut d = self.descendants.lock().expect("trees lock");
            let n = d.entry(parent.place.root.clone()).or_default();
            if *n >= self.limits.max_descendants {
                return Err(limit(format!(
                    "the call tree of {} already has {n} nested calls running, its limit",
                    parent.place.root
                )));
            }
            *n += 1;
        }
        child.counted = true;
        Ok(child)
    }
}

fn limit(message: String) -> ApiError {
    ApiError::new(ErrorCode::LimitExceeded, message)
}

/// A call registered in its tree; dropping it ends the call's rights and cancels
/// its children still running.
pub struct Registered {
    trees: Arc<Trees>,
    node: Arc<Node>,
}

impl Registered {
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.node.ended.cancel();
        self.trees
            .running
            .lock()
            .expect("trees lock")
            .remove(&self.node.place.id);
    }
}

/// An admitted nested call; dropping it releases what it counted.
pub struct Child {
    trees: Arc<Trees>,
    pub parent: Arc<Node>,
    counted: bool,
    /// The most time the call may take.
    pub budget: Duration,
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.parent.children.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.parent.slot.reclaim();
        }
        if self.counted {
            let mut d = self.trees.descendants.lock().expect("trees lock");
            let root = &self.parent.place.root;
            if let Some(n) = d.get_mut(root) {
                *n -= 1;
                if *n == 0 {
                    d.remove(root);
                }
            }
        }
    }
}

/// What the scheduler needs to know of a call's tree: whether it is nested (nested
/// calls may use slots their waiting ancestors lent), and, for a call that may call
/// further, its place (so that its worker gets a token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hop {
    pub nested: bool,
    pub place: Option<Place>,
    /// The tree's identity, parsed (rebuilt from `place` on another replica).
    #[serde(skip)]
    pub acting: Option<Caller>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;

    /// Counts the slot lent: +1 per lend, -1 per reclaim.
    struct Counted(Arc<AtomicI32>);

    impl Slot for Counted {
        fn lend(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn reclaim(&self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn acting() -> Acting {
        Acting {
            user: User {
                id: "u1".into(),
                email: "ada@example.com".into(),
                namespace: "ada".parse().unwrap(),
                is_admin: false,
                created_at: 0,
            },
            token_id: "t1".into(),
            scopes: vec!["*".into()],
        }
    }

    fn f(s: &str) -> FunctionRef {
        s.parse().unwrap()
    }

    fn register(
        trees: &Arc<Trees>,
        id: &str,
        depth: usize,
        left: Duration,
    ) -> (Secret, Registered, Arc<AtomicI32>) {
        let lent = Arc::new(AtomicI32::new(0));
        let place = Place {
            id: id.into(),
            root: "root".into(),
            trace: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            chain: vec![f("ada/f"); depth + 1],
            calls: vec![f("ada/g")],
            acting: acting(),
        };
        let caller = Caller::acting(&place.acting).unwrap();
        let (token, registered) = trees.register(
            place,
            caller,
            Instant::now() + left,
            Box::new(Counted(lent.clone())),
            true,
        );
        (token.expect("a token was asked for"), registered, lent)
    }

    fn parts(token: &Secret) -> (String, String) {
        let (id, secret) = swb_api::token::parse(token.expose()).unwrap();
        (id.to_owned(), secret.to_owned())
    }

    #[tokio::test]
    async fn a_call_token_stands_for_the_tree_only_while_its_call_runs() {
        let trees = Arc::new(Trees::new(TreeLimits::default()));
        let (token, registered, _) = register(&trees, "c1", 0, Duration::from_secs(5));
        let (id, secret) = parts(&token);
        let caller = trees
            .authenticate(&id, &secret)
            .expect("a live call's token");
        assert_eq!(caller.user.email, "ada@example.com");
        assert!(!caller.is_unscoped(), "a call token is never unscoped");
        assert!(trees.authenticate(&id, "0000").is_none());
        assert!(trees.authenticate("call-c2", &secret).is_none());
        let node = caller.call.clone().unwrap();
        assert!(node.declares(&"ada".parse().unwrap(), Some("g")));
        assert!(!node.declares(&"ada".parse().unwrap(), Some("h")));
        drop(registered);
        assert!(trees.authenticate(&id, &secret).is_none());
        // A call registered without a token (a guest's) has none to guess.
        let place = Place {
            id: "c3".into(),
            ..node.place.clone()
        };
        let caller = Caller::acting(&place.acting).unwrap();
        let slot = Box::new(Counted(Arc::new(AtomicI32::new(0))));
        let later = Instant::now() + Duration::from_secs(5);
        let (none, _guest) = trees.register(place, caller, later, slot, false);
        assert!(none.is_none());
        assert!(trees.authenticate("call-c3", &secret).is_none());
        // Its children see it end.
        tokio::time::timeout(Duration::from_secs(1), node.ended())
            .await
            .expect("ended");
    }

    #[tokio::test]
    async fn depth_deadline_and_bounds_are_checked_before_a_nested_call_runs() {
        let limits = TreeLimits {
            max_depth: 3,
            max_children: 2,
            max_descendants: 3,
        };
        let trees = Arc::new(Trees::new(limits));
        let node = |token: &Secret| {
            let (id, secret) = parts(token);
            trees
                .authenticate(&id, &secret)
                .unwrap()
                .call
                .clone()
                .unwrap()
        };

        // Depth: a call at depth 3 may not call further; the error names the chain.
        let (deep, _r1, _) = register(&trees, "deep", 3, Duration::from_secs(5));
        let e = trees.admit(&node(&deep), &f("ada/g")).err().unwrap();
        assert_eq!(e.code, ErrorCode::CallDepthExceeded);
        assert_eq!(e.details["chain"].as_array().unwrap().len(), 5);

        // Deadline: less than the margin left is a timeout without dispatch.
        let (late, _r2, _) = register(&trees, "late", 0, MARGIN / 2);
        let e = trees.admit(&node(&late), &f("ada/g")).err().unwrap();
        assert_eq!(e.code, ErrorCode::Timeout);

        // A child's budget is the parent's remaining time less the margin.
        let (parent, _r3, lent) = register(&trees, "p", 0, Duration::from_secs(5));
        let p = node(&parent);
        let a = trees.admit(&p, &f("ada/g")).unwrap();
        assert!(a.budget <= Duration::from_secs(5) - MARGIN);
        assert_eq!(
            lent.load(Ordering::SeqCst),
            1,
            "the first child borrows the slot"
        );
        let b = trees.admit(&p, &f("ada/g")).unwrap();
        assert_eq!(
            lent.load(Ordering::SeqCst),
            1,
            "lent once, however many children"
        );
        let e = trees.admit(&p, &f("ada/g")).err().unwrap();
        assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
        drop(a);
        assert_eq!(lent.load(Ordering::SeqCst), 1);
        // Descendants of one root: two running, a third from another call is one
        // too many.
        let c = trees.admit(&p, &f("ada/g")).unwrap();
        let (other, _r4, _) = register(&trees, "o", 1, Duration::from_secs(5));
        let _d = trees.admit(&node(&other), &f("ada/g")).unwrap();
        let e = trees.admit(&node(&other), &f("ada/g")).err().unwrap();
        assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
        drop((b, c));
        assert_eq!(
            lent.load(Ordering::SeqCst),
            0,
            "the slot returns with the last child"
        );
    }
}
