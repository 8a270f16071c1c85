//! The store conformance suite. Every backend runs exactly these tests through
//! `conformance_suite!`, so the backends cannot drift apart.

use crate::{InvocationQuery, Reach, SecretRow, Store, StoreError, User};
use swb_api::timestamp::now_ms;
use swb_api::{
    ApiError, Digest, ErrorCode, FunctionKind, FunctionRef, Interface, InvocationRecord, Limits,
    Namespace, Outcome, VersionInfo,
};

pub fn hosted(digest: Digest, description: &str) -> VersionInfo {
    VersionInfo {
        version: 0,
        kind: FunctionKind::Hosted,
        artefact: Some(digest),
        interface: Interface {
            description: Some(description.into()),
            ..Interface::default()
        },
        limits: Limits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        args: vec![],
        env: Default::default(),
        requires: Default::default(),
        idempotent: false,
        calls: vec![],
        secrets: vec![],
        keep_io: false,
        created_at: 0,
    }
}

fn f(s: &str) -> FunctionRef {
    s.parse().unwrap()
}

fn ns(s: &str) -> Namespace {
    s.parse().unwrap()
}

pub async fn users_and_tokens(store: &dyn Store) {
    assert_eq!(store.count_users().await.unwrap(), 0);
    let alice = User {
        id: "u1".into(),
        email: "alice@example.com".into(),
        namespace: ns("alice"),
        is_admin: false,
        created_at: now_ms(),
    };
    store.create_user(&alice).await.unwrap();
    let dup = User {
        id: "u2".into(),
        ..alice.clone()
    };
    assert!(matches!(
        store.create_user(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_users().await.unwrap(), 1);

    store
        .create_token(&crate::NewToken {
            id: "t1".into(),
            user_id: "u1".into(),
            secret_hash: [7; 32],
            scopes: vec!["call:alice/echo".into()],
            description: "ci".into(),
            expires_at: Some(42),
            parent_id: None,
        })
        .await
        .unwrap();
    let t = store.token("t1").await.unwrap().unwrap();
    assert_eq!(t.user, alice);
    assert_eq!(t.secret_hash, [7; 32]);
    assert_eq!(t.scopes, vec!["call:alice/echo".to_string()]);
    assert_eq!(t.expires_at, Some(42));
    assert!(store.token("nope").await.unwrap().is_none());
}

pub async fn settings(store: &dyn Store) {
    assert_eq!(store.setting_or_init("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_or_init("k", "second").await.unwrap(), "first");
}

/// Whether `digest` is missing for a user reaching `namespaces`.
async fn missing_for(
    store: &dyn Store,
    digest: Digest,
    user_id: &str,
    namespaces: &[Namespace],
) -> Vec<Digest> {
    let reach = Reach {
        user_id,
        namespaces,
    };
    store
        .missing_artefacts(&[digest], Some(&reach))
        .await
        .unwrap()
}

pub async fn artefacts(store: &dyn Store) {
    for (id, name) in [("u1", "alice"), ("u2", "bob")] {
        store
            .create_user(&User {
                id: id.into(),
                email: format!("{name}@example.com"),
                namespace: ns(name),
                is_admin: false,
                created_at: now_ms(),
            })
            .await
            .unwrap();
    }
    let a = Digest::of(b"a");
    let b = Digest::of(b"b");
    assert_eq!(
        store.missing_artefacts(&[a, b], None).await.unwrap(),
        vec![a, b]
    );
    assert!(store.put_artefact(&a, b"a", "u1").await.unwrap());
    assert!(
        !store.put_artefact(&a, b"a", "u1").await.unwrap(),
        "second put is a no-op"
    );
    assert_eq!(
        store.missing_artefacts(&[a, b], None).await.unwrap(),
        vec![b]
    );
    assert_eq!(store.artefact(&a).await.unwrap().unwrap(), &b"a"[..]);
    assert!(store.artefact(&b).await.unwrap().is_none());
    assert!(store.missing_artefacts(&[], None).await.unwrap().is_empty());

    // Reaching stored bytes: the uploader, then anyone who uploads them too.
    let none: &[Namespace] = &[];
    assert!(missing_for(store, a, "u1", none).await.is_empty());
    assert_eq!(
        missing_for(store, a, "u2", none).await,
        vec![a],
        "stored is not reachable"
    );
    assert!(!store.put_artefact(&a, b"a", "u2").await.unwrap());
    assert!(
        missing_for(store, a, "u2", none).await.is_empty(),
        "uploading proves it"
    );

    // … and the namespaces holding a function that pins them, while it exists.
    let lab = [ns("lab")];
    let other = [ns("other")];
    assert_eq!(missing_for(store, a, "u3", &lab).await, vec![a]);
    store
        .create_version(&f("lab/pinned"), hosted(a, "x"))
        .await
        .unwrap();
    assert!(missing_for(store, a, "u3", &lab).await.is_empty());
    assert_eq!(missing_for(store, a, "u3", &other).await, vec![a]);
    assert!(store.delete_function(&f("lab/pinned")).await.unwrap());
    assert_eq!(missing_for(store, a, "u3", &lab).await, vec![a]);

    // A deleted user's uploads reach nothing.
    assert!(store.delete_user("u2").await.unwrap());
    assert_eq!(missing_for(store, a, "u2", none).await, vec![a]);
}

pub async fn versions_and_routing(store: &dyn Store) {
    let echo = f("alice/echo");
    let d1 = Digest::of(b"1");
    let d2 = Digest::of(b"2");
    assert!(store.function(&echo).await.unwrap().is_none());

    let v1 = store
        .create_version(&echo, hosted(d1, "first"))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert!(v1.created_at > 0);
    let v2 = store
        .create_version(&echo, hosted(d2, "second"))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);

    let row = store.function(&echo).await.unwrap().unwrap();
    assert_eq!(row.active_version, 2);
    assert_eq!(row.kind, FunctionKind::Hosted);
    assert_eq!(
        store.version(&echo, 1).await.unwrap().unwrap().artefact,
        Some(d1)
    );
    assert!(store.version(&echo, 3).await.unwrap().is_none());
    let all = store.versions(&echo).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );

    assert!(store.set_active_version(&echo, 1).await.unwrap());
    assert!(!store.set_active_version(&echo, 9).await.unwrap());
    assert!(!store.set_active_version(&f("alice/nope"), 1).await.unwrap());
    assert_eq!(
        store.function(&echo).await.unwrap().unwrap().active_version,
        1
    );

    // A kind cannot change under an existing name.
    let mut remote = hosted(d1, "r");
    remote.kind = FunctionKind::Remote;
    assert!(matches!(
        store.create_version(&echo, remote).await,
        Err(StoreError::Conflict(_))
    ));

    store
        .create_version(&f("bob/zip"), hosted(d1, "zip"))
        .await
        .unwrap();
    let listed = store.list_functions(None).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].function, echo);
    assert_eq!(listed[0].active_version, 1);
    assert_eq!(listed[0].description.as_deref(), Some("first"));
    let bobs = store.list_functions(Some(&[ns("bob")])).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert!(store.list_functions(Some(&[])).await.unwrap().is_empty());

    assert!(store.delete_function(&echo).await.unwrap());
    assert!(!store.delete_function(&echo).await.unwrap());
    assert!(store.function(&echo).await.unwrap().is_none());
    assert!(store.versions(&echo).await.unwrap().is_empty());
    // The name is free again and numbering restarts.
    let again = store
        .create_version(&echo, hosted(d2, "again"))
        .await
        .unwrap();
    assert_eq!(again.version, 1);
}

fn record(id: &str, function: &str, outcome: Outcome) -> InvocationRecord {
    InvocationRecord {
        id: id.into(),
        function: f(function),
        version: Some(1),
        worker: Some("w".into()),
        started_at: now_ms(),
        duration_us: 12,
        outcome,
        error: match outcome {
            Outcome::Error(code) => Some(ApiError::new(code, "boom")),
            Outcome::Ok(_) => None,
        },
        stderr_tail: "tail".into(),
        tree: None,
        caller: None,
        io: None,
    }
}

/// A call tree's records come back together, in order, from every function's
/// batches; records of other trees and of before the root are left out.
pub async fn invocation_trees(store: &dyn Store) {
    use swb_api::CallPlace;
    let place = |parent: &str, depth: u32| CallPlace {
        root: "t1".into(),
        parent: parent.into(),
        depth,
        via: f("alice/f"),
        acting_for: "a@example.com".into(),
        trace: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
    };
    let mut root = record("t1", "alice/f", Outcome::OK);
    root.tree = None;
    root.caller = Some("a@example.com".into());
    let mut child = record("t2", "bob/g", Outcome::OK);
    child.tree = Some(place("t1", 1));
    let mut grandchild = record(
        "t4",
        "alice/f",
        Outcome::Error(ErrorCode::CallDepthExceeded),
    );
    grandchild.tree = Some(place("t2", 2));
    let mut other = record("t3", "bob/g", Outcome::OK);
    other.tree = Some(CallPlace {
        root: "t0".into(),
        ..place("t0", 1)
    });
    // Kept input and output follow the other optional elements, present or not.
    let io = swb_api::CallIo::of(b"{\"in\":1}", &[b'x'; 3000]);
    other.io = Some(io.clone());
    let mut before = record("t0", "alice/f", Outcome::OK);
    before.io = Some(io.clone());
    store
        .record_invocations(&[before, root, other, grandchild])
        .await
        .unwrap();
    store.record_invocations(&[child]).await.unwrap();
    let tree = store.invocation_tree("t1", "t9", 100).await.unwrap();
    let ids: Vec<_> = tree.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t4"]);
    assert_eq!(tree[2].tree, Some(place("t2", 2)));
    assert_eq!(tree[1].function, f("bob/g"));
    // Bounded by `until` and by `limit`.
    assert_eq!(
        store.invocation_tree("t1", "t3", 100).await.unwrap().len(),
        2
    );
    assert_eq!(store.invocation_tree("t1", "t9", 1).await.unwrap().len(), 1);
    // The record read alone has its place too.
    let read = store.invocation("t4").await.unwrap().unwrap();
    assert_eq!(read.tree.unwrap().depth, 2);
    assert_eq!(read.caller, None);
    assert_eq!(read.io, None);
    for id in ["t0", "t3"] {
        let read = store.invocation(id).await.unwrap().unwrap();
        assert_eq!(read.io.as_ref(), Some(&io), "{id}");
    }
    assert!(io.truncated && io.output.len() == swb_api::CallIo::MAX_BYTES);
    // A call from outside keeps its caller; listing by caller finds the calls they
    // made and those acting for them.
    let read = store.invocation("t1").await.unwrap().unwrap();
    assert_eq!(read.caller.as_deref(), Some("a@example.com"));
    let theirs = store
        .invocations(&InvocationQuery {
            caller: Some("a@example.com".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = theirs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["t4", "t3", "t2", "t1"]);
    let nobody = store
        .invocations(&InvocationQuery {
            caller: Some("z@example.com".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

pub async fn invocations(store: &dyn Store) {
    let timeout = Outcome::Error(ErrorCode::Timeout);
    let batch: Vec<_> = (0..10)
        .map(|i| {
            let function = if i % 2 == 0 { "alice/echo" } else { "bob/zip" };
            let outcome = if i == 9 { timeout } else { Outcome::OK };
            record(&format!("id{i:02}"), function, outcome)
        })
        .collect();
    store.record_invocations(&batch).await.unwrap();
    store.record_invocations(&batch[..1]).await.unwrap(); // re-recording is harmless

    let all = store
        .invocations(&InvocationQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].id, "id09", "newest first");
    assert_eq!(all[0].error.as_ref().unwrap().code, ErrorCode::Timeout);

    let q = InvocationQuery {
        function: Some(f("alice/echo")),
        limit: 2,
        ..Default::default()
    };
    let echo = store.invocations(&q).await.unwrap();
    assert_eq!(
        echo.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["id08", "id06"]
    );

    let q = InvocationQuery {
        outcome: Some(timeout),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.invocations(&q).await.unwrap().len(), 1);
    let q = InvocationQuery {
        namespaces: Some(vec![ns("bob")]),
        after: Some("id05".into()),
        limit: 100,
        ..Default::default()
    };
    let bob = store.invocations(&q).await.unwrap();
    assert_eq!(
        bob.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["id09", "id07"]
    );

    let one = store.invocation("id03").await.unwrap().unwrap();
    assert_eq!(one.stderr_tail, "tail");
    assert_eq!(one.duration_us, 12);
    assert!(store.invocation("nope").await.unwrap().is_none());

    // Records of several functions written together overlap in time; a listing
    // merges them newest first.
    let q = InvocationQuery {
        limit: 3,
        ..Default::default()
    };
    let newest = store.invocations(&q).await.unwrap();
    assert_eq!(
        newest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["id09", "id08", "id07"]
    );

    // Pruning keeps at least the newest `keep` records and removes only whole
    // writes older than every one of them.
    let later: Vec<_> = (10..12)
        .map(|i| record(&format!("id{i}"), "alice/echo", Outcome::OK))
        .collect();
    store.record_invocations(&later).await.unwrap();
    let latest: Vec<_> = (12..15)
        .map(|i| record(&format!("id{i}"), "bob/zip", Outcome::OK))
        .collect();
    store.record_invocations(&latest).await.unwrap();
    assert_eq!(
        store.prune_invocations(100).await.unwrap(),
        0,
        "fewer than keep"
    );
    assert_eq!(store.prune_invocations(4).await.unwrap(), 11);
    let left = store
        .invocations(&InvocationQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["id14", "id13", "id12", "id11", "id10"]
    );
    assert!(store.invocation("id03").await.unwrap().is_none());
    assert_eq!(
        store.prune_invocations(5).await.unwrap(),
        0,
        "nothing older"
    );

    // A batch of any size is written whole (in batches of at most 1,000); ids
    // sort after the ones above.
    let big: Vec<_> = (0..1_000 + 256 + 7)
        .map(|i| record(&format!("jd{i:04}"), "alice/echo", Outcome::OK))
        .collect();
    store.record_invocations(&big).await.unwrap();
    let q = InvocationQuery {
        limit: 10_000,
        ..Default::default()
    };
    let stored = store.invocations(&q).await.unwrap();
    assert_eq!(stored.len(), big.len() + 5);
    assert_eq!(stored[0].id, "jd1262", "newest first");
    let q = InvocationQuery {
        function: Some(f("alice/echo")),
        limit: 3,
        ..Default::default()
    };
    let page = store.invocations(&q).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["jd1262", "jd1261", "jd1260"]
    );
    assert_eq!(
        store.invocation("jd0500").await.unwrap().unwrap().id,
        "jd0500"
    );
}

/// Runs every conformance test against stores made by `$make` (an async expression).
pub async fn namespaces_shares_and_audit(store: &dyn Store) {
    let user = |id: &str, email: &str, namespace: &str| User {
        id: id.into(),
        email: email.into(),
        namespace: ns(namespace),
        is_admin: false,
        created_at: now_ms(),
    };
    store
        .create_user(&user("u1", "alice@example.com", "alice"))
        .await
        .unwrap();
    store
        .create_user(&user("u2", "bob@example.com", "bob"))
        .await
        .unwrap();
    // A personal namespace is a namespace like any other: a team cannot take it.
    let team = |name: &str, owner: &str| crate::NamespaceRow {
        name: ns(name),
        owner_id: owner.into(),
        created_at: now_ms(),
    };
    assert!(matches!(
        store.create_namespace(&team("alice", "u2")).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_namespace(&team("lab", "u1")).await.unwrap();
    let names: Vec<_> = store
        .namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name.to_string(), n.owner_id))
        .collect();
    assert_eq!(
        names,
        [
            ("alice".into(), "u1".into()),
            ("bob".into(), "u2".into()),
            ("lab".into(), "u1".into())
        ]
    );
    assert_eq!(
        store
            .user_by_email("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u2"
    );
    assert!(
        store
            .user_by_email("carol@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let share = |function: Option<&str>, email: &str, role| crate::Share {
        namespace: ns("lab"),
        function: function.map(str::to_owned),
        email: email.into(),
        role,
        created_by: "u1".into(),
        created_at: now_ms(),
    };
    store
        .put_share(&share(None, "bob@example.com", swb_api::Role::Call))
        .await
        .unwrap();
    store
        .put_share(&share(None, "bob@example.com", swb_api::Role::Deploy))
        .await
        .unwrap();
    store
        .put_share(&share(
            Some("echo"),
            "carol@example.com",
            swb_api::Role::Call,
        ))
        .await
        .unwrap();
    let shares = store.shares().await.unwrap();
    assert_eq!(shares.len(), 2, "a second grant replaces the role");
    assert_eq!(shares[0].role, swb_api::Role::Deploy);
    assert_eq!(shares[1].function.as_deref(), Some("echo"));
    assert!(
        store
            .delete_share(&ns("lab"), Some("echo"), "carol@example.com")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_share(&ns("lab"), Some("echo"), "carol@example.com")
            .await
            .unwrap()
    );

    // Tokens: listed without secrets, revoked once.
    store
        .create_token(&crate::NewToken {
            id: "t1".into(),
            user_id: "u1".into(),
            secret_hash: [1; 32],
            scopes: vec!["*".into()],
            description: "laptop".into(),
            expires_at: None,
            parent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store.tokens_of("u1").await.unwrap()[0].description,
        "laptop"
    );
    // Tokens made with t1, and one made with those: they die with it.
    for (id, parent) in [("t2", "t1"), ("t3", "t2"), ("t4", "t2")] {
        store
            .create_token(&crate::NewToken {
                id: id.into(),
                user_id: "u1".into(),
                secret_hash: [1; 32],
                scopes: vec!["*".into()],
                description: String::new(),
                expires_at: None,
                parent_id: Some(parent.into()),
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store.tokens_of("u1").await.unwrap()[1].parent_id.as_deref(),
        Some("t1")
    );
    assert_eq!(store.revoke_token("u1", "t4").await.unwrap(), vec!["t4"]);
    assert!(
        store.revoke_token("u2", "t1").await.unwrap().is_empty(),
        "only the owner revokes"
    );
    let mut revoked = store.revoke_token("u1", "t1").await.unwrap();
    revoked.sort();
    assert_eq!(revoked, vec!["t1", "t2", "t3"], "t4 was revoked before");
    assert!(store.revoke_token("u1", "t1").await.unwrap().is_empty());
    assert!(
        store
            .token("t3")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        store
            .token("t1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Deleting a user removes their tokens, namespaces, and what is in them.
    store
        .create_version(&f("lab/echo"), hosted(Digest::of(b"m"), "x"))
        .await
        .unwrap();
    assert!(store.delete_user("u1").await.unwrap());
    assert!(!store.delete_user("u1").await.unwrap());
    assert!(store.token("t1").await.unwrap().is_none());
    assert!(store.function(&f("lab/echo")).await.unwrap().is_none());
    assert!(store.shares().await.unwrap().is_empty());
    assert_eq!(store.users().await.unwrap().len(), 1);

    for (i, namespace) in [Some("bob"), None, Some("lab")].into_iter().enumerate() {
        store
            .record_audit(&swb_api::AuditEvent {
                id: format!("e{i}"),
                at: now_ms(),
                actor: "bob@example.com".into(),
                action: "share.create".into(),
                namespace: namespace.map(ns),
                target: "x".into(),
                details: serde_json::json!({ "i": i }),
            })
            .await
            .unwrap();
    }
    let all = store.audit(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1", "e0"]
    );
    let bobs = store.audit(Some(&[ns("bob")]), 10).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].details["i"], 0);
}

pub async fn concurrent_versions(store: &dyn Store) {
    let racy = f("alice/racy");
    let calls =
        (0..8).map(|i| store.create_version(&racy, hosted(Digest::of(b"m"), &i.to_string())));
    let mut numbers: Vec<u32> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent deploys all succeed").version)
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());

    // Eight workers publishing the same remote function at once: one version.
    let served = f("alice/served");
    let remote = || VersionInfo {
        kind: FunctionKind::Remote,
        artefact: None,
        ..hosted(Digest::of(b"m"), "served")
    };
    let publishes = (0..8).map(|_| store.publish_version(&served, remote()));
    let published: Vec<(VersionInfo, bool)> = futures_util::future::join_all(publishes)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent publishes all succeed"))
        .collect();
    assert_eq!(published.iter().filter(|(_, new)| *new).count(), 1);
    assert!(published.iter().all(|(v, _)| v.version == 1));
    // Something else is a new version.
    let changed = VersionInfo {
        idempotent: true,
        ..remote()
    };
    let (v, new) = store.publish_version(&served, changed).await.unwrap();
    assert_eq!((v.version, new), (2, true));
}

/// Claimers running at once (replicas on one database) never get the same job.
pub async fn concurrent_claims(store: &dyn Store) {
    let jobs: Vec<crate::NewJob> = (0..40)
        .map(|i| crate::NewJob {
            id: format!("j{i:02}"),
            owner_id: "u1".into(),
            function: f("alice/echo"),
            version: None,
            input: None,
            input_blob: None,
            profile: None,
            idempotency_key: None,
            max_attempts: 1,
            timeout_ms: None,
            created_at: 1,
            acting: None,
        })
        .collect();
    store.submit_jobs(&jobs).await.unwrap();
    let claims = (0..5).map(|_| store.claim_jobs(10, 10, 60_000));
    let mut ids: Vec<String> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|r| r.expect("claims succeed"))
        .map(|row| row.job.id)
        .collect();
    ids.sort();
    let all: Vec<String> = (0..40).map(|i| format!("j{i:02}")).collect();
    assert_eq!(ids, all, "every job claimed exactly once");
    assert!(store.claim_jobs(10, 10, 60_000).await.unwrap().is_empty());
}

/// Big batches: submissions and successes are written many rows per statement, in
/// chunks; idempotency keys still hold within a batch and across its chunks.
pub async fn job_batches(store: &dyn Store) {
    use crate::{JobFinish, JobOutcome, NewJob};
    use swb_api::JobStatus;
    const N: usize = 2_500;
    let key = |i: usize| match i {
        7 | 8 | 2_200 => Some("dup".to_owned()),
        _ => None,
    };
    let jobs: Vec<NewJob> = (0..N)
        .map(|i| NewJob {
            id: format!("b{i:05}"),
            owner_id: "u1".into(),
            function: f("alice/echo"),
            version: Some(1),
            // Jobs that share a key are the same request.
            input: Some(bytes::Bytes::from(match key(i) {
                Some(_) => "{\"dup\":true}".to_owned(),
                None => format!("{{\"i\":{i}}}"),
            })),
            input_blob: None,
            profile: None,
            idempotency_key: key(i),
            max_attempts: 1,
            timeout_ms: None,
            created_at: 1,
            acting: None,
        })
        .collect();
    let out = store.submit_jobs(&jobs).await.unwrap();
    assert_eq!(out.len(), N);
    for (i, (id, status)) in out.iter().enumerate() {
        let expected = if key(i).is_some() {
            "b00007".to_owned()
        } else {
            format!("b{i:05}")
        };
        assert_eq!((id, *status), (&expected, JobStatus::Queued), "job {i}");
    }
    let claimed = store.claim_jobs(10, N as u32, 60_000).await.unwrap();
    assert_eq!(claimed.len(), N - 2, "one job per idempotency key");
    assert_eq!(
        claimed[1_000].input.as_deref(),
        Some(&b"{\"i\":1001}"[..]),
        "inputs land with their own jobs"
    );
    let blob = Digest::of(b"big result");
    let finishes: Vec<JobFinish> = claimed
        .iter()
        .map(|row| JobFinish {
            id: row.job.id.clone(),
            attempt: row.job.attempts,
            outcome: JobOutcome::Succeeded {
                result: (row.job.id != "b00009")
                    .then(|| format!("{{\"id\":\"{}\"}}", row.job.id).into()),
                result_blob: (row.job.id == "b00009").then_some(blob),
                stderr_tail: format!("tail of {}", row.job.id),
            },
        })
        .collect();
    assert_eq!(store.finish_jobs(&finishes).await.unwrap(), (N - 2) as u64);
    // Finished once: the same batch again changes nothing.
    assert_eq!(store.finish_jobs(&finishes).await.unwrap(), 0);
    let job = store.job("b02345").await.unwrap().unwrap().job;
    assert_eq!(
        (job.status, job.result, job.stderr_tail.as_str()),
        (
            JobStatus::Succeeded,
            Some(serde_json::json!({ "id": "b02345" })),
            "tail of b02345"
        )
    );
    let with_blob = store.job("b00009").await.unwrap().unwrap().job;
    assert_eq!(
        (with_blob.result, with_blob.result_blob),
        (None, Some(blob))
    );
}

pub async fn jobs_blobs_profiles(store: &dyn Store) {
    use crate::{JobFinish, JobOutcome, JobQuery, NewJob};
    use swb_api::{BlobInfo, JobStatus, ProfileInfo};
    let job = |id: &str, key: Option<&str>| NewJob {
        id: id.into(),
        owner_id: "u1".into(),
        function: f("alice/echo"),
        version: None,
        input: Some(bytes::Bytes::from_static(b"{}")),
        input_blob: None,
        profile: None,
        idempotency_key: key.map(str::to_owned),
        max_attempts: 3,
        timeout_ms: Some(1000),
        created_at: 1,
        acting: Some("{\"who\":1}".into()),
    };
    let out = store
        .submit_jobs(&[job("j1", Some("k")), job("j2", None), job("j3", None)])
        .await
        .unwrap();
    assert_eq!(out[0], ("j1".to_string(), JobStatus::Queued));
    // The same idempotency key returns the first job.
    let again = store.submit_jobs(&[job("j9", Some("k"))]).await.unwrap();
    assert_eq!(again[0].0, "j1");
    // … for the same request only: another input or function is a conflict.
    let other_input = NewJob {
        input: Some(bytes::Bytes::from_static(b"{\"x\":1}")),
        ..job("j8", Some("k"))
    };
    let other_function = NewJob {
        function: f("alice/other"),
        ..job("j7", Some("k"))
    };
    for other in [other_input, other_function] {
        assert!(matches!(
            store.submit_jobs(&[other]).await,
            Err(StoreError::Conflict(_))
        ));
    }

    let claimed = store.claim_jobs(10, 2, 1000).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|j| j.job.id.as_str())
            .collect::<Vec<_>>(),
        ["j1", "j2"]
    );
    // Whom a job acts for comes back with its claim.
    assert_eq!(claimed[0].acting.as_deref(), Some("{\"who\":1}"));
    assert!(
        claimed
            .iter()
            .all(|j| j.job.status == JobStatus::Running && j.job.attempts == 1)
    );
    assert_eq!(claimed[0].input.as_deref(), Some(&b"{}"[..]));
    // Leased: not claimed again while the lease holds…
    assert_eq!(
        store.claim_jobs(20, 10, 1000).await.unwrap().len(),
        1,
        "only j3"
    );
    // …and a renewal by the attempt that holds it extends it…
    let held = [
        ("j1".to_string(), 1),
        ("j2".to_string(), 1),
        ("j3".to_string(), 7),
    ];
    let lost = store.renew_leases(&held, 1015).await.unwrap();
    assert_eq!(lost, ["j3"], "attempt 7 does not hold j3");
    assert!(store.claim_jobs(1012, 10, 1000).await.unwrap().is_empty());
    // …but once it lapses, the job runs again, the lost attempt on record.
    let lapsed = store.claim_jobs(1016, 10, 1000).await.unwrap();
    assert_eq!(lapsed.len(), 2, "j1 and j2 again");
    for j in &lapsed {
        let codes: Vec<ErrorCode> = j.job.attempt_errors.iter().map(|e| e.code).collect();
        assert_eq!((j.job.attempts, codes), (2, vec![ErrorCode::LeaseExpired]));
    }

    let finish = |id: &str, attempt, outcome| JobFinish {
        id: id.into(),
        attempt,
        outcome,
    };
    let err = ApiError::new(ErrorCode::WorkerLost, "gone");
    let applied = store
        .finish_jobs(&[
            // A stale attempt's result is ignored: exactly one result per job.
            finish(
                "j1",
                1,
                JobOutcome::Succeeded {
                    result: Some("stale".into()),
                    result_blob: None,
                    stderr_tail: String::new(),
                },
            ),
            finish(
                "j1",
                2,
                JobOutcome::Succeeded {
                    result: Some("{\"ok\":1}".into()),
                    result_blob: None,
                    stderr_tail: "log".into(),
                },
            ),
            finish(
                "j2",
                2,
                JobOutcome::Retry {
                    error: err.clone(),
                    stderr_tail: String::new(),
                    run_after: 50_000,
                },
            ),
            finish(
                "j3",
                1,
                JobOutcome::Wait {
                    reason: "no worker".into(),
                    run_after: 0,
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(applied, 3);
    let j1 = store.job("j1").await.unwrap().unwrap().job;
    assert_eq!(
        (j1.status, j1.result.clone()),
        (JobStatus::Succeeded, Some(serde_json::json!({"ok": 1})))
    );
    assert!(j1.finished_at.is_some());
    let j2 = store.job("j2").await.unwrap().unwrap().job;
    assert_eq!((j2.status, j2.attempt_errors.len()), (JobStatus::Queued, 2));
    assert_eq!(j2.error.unwrap().code, ErrorCode::WorkerLost);
    let j3 = store.job("j3").await.unwrap().unwrap().job;
    assert_eq!(
        (j3.status, j3.attempts, j3.waiting.as_deref()),
        (JobStatus::Queued, 0, Some("no worker"))
    );

    // Cancel: queued at once; running is flagged for the runner.
    assert_eq!(
        store.cancel_job("j2").await.unwrap(),
        Some(JobStatus::Cancelled)
    );
    let running = store.claim_jobs(2100, 10, 1000).await.unwrap();
    assert_eq!(running[0].job.id, "j3");
    assert_eq!(
        store.cancel_job("j3").await.unwrap(),
        Some(JobStatus::Running)
    );
    assert!(store.job("j3").await.unwrap().unwrap().cancel_requested);
    // A cancelled job's runner hears it at its next renewal.
    let held = [("j3".to_string(), running[0].job.attempts)];
    assert_eq!(store.renew_leases(&held, 5000).await.unwrap(), ["j3"]);
    assert_eq!(store.cancel_job("nope").await.unwrap(), None);
    // Start-up: the attempts of the server that stopped are lost; the next claim
    // says so and runs them again.
    assert_eq!(store.expire_leases().await.unwrap(), 1);
    let again = store.claim_jobs(2200, 10, 1000).await.unwrap();
    assert_eq!(again[0].job.id, "j3");
    assert_eq!(
        again[0].job.attempt_errors.last().map(|e| e.code),
        Some(ErrorCode::LeaseExpired)
    );
    // A lapse on the last attempt fails the job rather than running it again.
    let once = NewJob {
        max_attempts: 1,
        ..job("j4", None)
    };
    store.submit_jobs(&[once]).await.unwrap();
    let claimed = store.claim_jobs(2300, 10, 1000).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|j| j.job.id.as_str())
            .collect::<Vec<_>>(),
        ["j4"]
    );
    assert!(
        store
            .claim_jobs(3301, 10, 1000)
            .await
            .unwrap()
            .iter()
            .all(|j| j.job.id != "j4")
    );
    let j4 = store.job("j4").await.unwrap().unwrap().job;
    assert_eq!(
        (j4.status, j4.error.map(|e| e.code)),
        (JobStatus::Failed, Some(ErrorCode::LeaseExpired))
    );

    let list = store
        .jobs(&JobQuery {
            owner_id: Some("u1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        list.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j4", "j3", "j2", "j1"]
    );
    let page = store
        .jobs(&JobQuery {
            owner_id: Some("u1".into()),
            cursor: Some("j3".into()),
            status: Some(JobStatus::Cancelled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        store.prune_jobs(now_ms() + 1).await.unwrap(),
        3,
        "the ended jobs"
    );

    let d = Digest::of(b"data");
    let blob = |sealed, name: Option<&str>| BlobInfo {
        digest: d,
        name: name.map(Into::into),
        size: 4,
        sealed,
        created_at: 1,
    };
    store
        .put_blob("u1", &blob(true, Some("data.csv")))
        .await
        .unwrap();
    store.put_blob("u1", &blob(false, None)).await.unwrap();
    let held = store.blob("u1", &d).await.unwrap().unwrap();
    assert!(held.sealed, "sealing is not undone");
    assert_eq!(
        held.name.as_deref(),
        Some("data.csv"),
        "no name keeps the name"
    );
    store
        .put_blob("u1", &blob(false, Some("renamed.csv")))
        .await
        .unwrap();
    let held = store.blob("u1", &d).await.unwrap().unwrap();
    assert_eq!(held.name.as_deref(), Some("renamed.csv"));
    store.put_blob("u2", &blob(false, None)).await.unwrap();
    assert_eq!(store.blobs("u1").await.unwrap().len(), 1);
    assert_eq!(
        store.delete_blob("u1", &d).await.unwrap(),
        Some(true),
        "u2 still holds it"
    );
    assert_eq!(store.delete_blob("u1", &d).await.unwrap(), None);
    assert_eq!(store.delete_blob("u2", &d).await.unwrap(), Some(false));

    let p = ProfileInfo {
        name: "prod".into(),
        value: serde_json::json!({"level": 3}),
        updated_at: 1,
    };
    store.put_profile(&f("alice/echo"), &p).await.unwrap();
    let p2 = ProfileInfo {
        value: serde_json::json!({"level": 4}),
        ..p.clone()
    };
    store.put_profile(&f("alice/echo"), &p2).await.unwrap();
    assert_eq!(
        store
            .profile(&f("alice/echo"), "prod")
            .await
            .unwrap()
            .unwrap()
            .value["level"],
        4
    );
    assert_eq!(store.profiles(&f("alice/echo")).await.unwrap().len(), 1);
    assert!(
        store
            .delete_profile(&f("alice/echo"), "prod")
            .await
            .unwrap()
    );
    assert!(
        store
            .profile(&f("alice/echo"), "prod")
            .await
            .unwrap()
            .is_none()
    );
}

/// Secrets: namespace-wide and per function under one name, replaced in place,
/// deleted one at a time, and gone with their namespace's owner.
pub async fn documents(store: &dyn Store) {
    store.put_document("k", "a/1", "{\"v\":1}").await.unwrap();
    store.put_document("k", "a/1", "{\"v\":2}").await.unwrap();
    store.insert_document("k", "a/2", "2").await.unwrap();
    store.insert_document("k", "b/1", "3").await.unwrap();
    store.insert_document("other", "a/3", "4").await.unwrap();
    assert!(matches!(
        store.insert_document("k", "a/2", "x").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.document("k", "a/1").await.unwrap().as_deref(),
        Some("{\"v\":2}")
    );
    assert_eq!(store.document("k", "a/9").await.unwrap(), None);
    let listed = store.documents("k", "a/", 10).await.unwrap();
    assert_eq!(
        listed,
        [
            ("a/1".into(), "{\"v\":2}".into()),
            ("a/2".into(), "2".into())
        ]
    );
    assert_eq!(store.documents("k", "", 2).await.unwrap().len(), 2);
    assert!(store.delete_document("k", "a/1").await.unwrap());
    assert!(!store.delete_document("k", "a/1").await.unwrap());
}

pub async fn secrets(store: &dyn Store) {
    let carol = User {
        id: "u9".into(),
        email: "carol@example.com".into(),
        namespace: ns("carol"),
        is_admin: false,
        created_at: now_ms(),
    };
    store.create_user(&carol).await.unwrap();
    let row = |function: Option<&str>, sealed: &[u8]| SecretRow {
        namespace: ns("carol"),
        function: function.map(Into::into),
        name: "API_KEY".into(),
        sealed: sealed.to_vec(),
        updated_at: 5,
        updated_by: "carol@example.com".into(),
    };
    store.put_secret(&row(None, b"\x00one")).await.unwrap();
    store.put_secret(&row(Some("etl"), b"two")).await.unwrap();
    store.put_secret(&row(None, b"\xffthree")).await.unwrap();
    let all = store.secrets(&ns("carol")).await.unwrap();
    assert_eq!(all, vec![row(None, b"\xffthree"), row(Some("etl"), b"two")]);
    assert!(store.secrets(&ns("alice")).await.unwrap().is_empty());
    assert!(
        !store
            .delete_secret(&ns("carol"), Some("other"), "API_KEY")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_secret(&ns("carol"), None, "API_KEY")
            .await
            .unwrap()
    );
    assert_eq!(
        store.secrets(&ns("carol")).await.unwrap(),
        vec![row(Some("etl"), b"two")]
    );
    assert!(store.delete_user("u9").await.unwrap());
    assert!(store.secrets(&ns("carol")).await.unwrap().is_empty());
}

macro_rules! conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[tokio::test]
            async fn users_and_tokens() {
                let (store, _guard) = $make;
                super::users_and_tokens(&store).await;
            }
            #[tokio::test]
            async fn settings() {
                let (store, _guard) = $make;
                super::settings(&store).await;
            }
            #[tokio::test]
            async fn artefacts() {
                let (store, _guard) = $make;
                super::artefacts(&store).await;
            }
            #[tokio::test]
            async fn versions_and_routing() {
                let (store, _guard) = $make;
                super::versions_and_routing(&store).await;
            }
            #[tokio::test]
            async fn invocations() {
                let (store, _guard) = $make;
                super::invocations(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_versions() {
                let (store, _guard) = $make;
                super::concurrent_versions(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims() {
                let (store, _guard) = $make;
                super::concurrent_claims(&store).await;
            }
            #[tokio::test]
            async fn job_batches() {
                let (store, _guard) = $make;
                super::job_batches(&store).await;
            }
            #[tokio::test]
            async fn invocation_trees() {
                let (store, _guard) = $make;
                super::invocation_trees(&store).await;
            }
            #[tokio::test]
            async fn jobs_blobs_profiles() {
                let (store, _guard) = $make;
                super::jobs_blobs_profiles(&store).await;
            }
            #[tokio::test]
            async fn documents() {
                let (store, _guard) = $make;
                super::documents(&store).await;
            }
            #[tokio::test]
            async fn secrets() {
                let (store, _guard) = $make;
                super::secrets(&store).await;
            }
            #[tokio::test]
            async fn namespaces_shares_and_audit() {
                let (store, _guard) = $make;
                super::namespaces_shares_and_audit(&store).await;
            }
        }
    };
}

conformance_suite!(postgres, {
    let db = swb_testkit::TestDatabase::create().await;
    let store = crate::PgStore::open(&db.url).await.unwrap();
    (store, db)
});

conformance_suite!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::SqliteStore::open(&dir.path().join("swb.db"))
        .await
        .unwrap();
    (store, dir)
});

/// Replicas starting together migrate one at a time (an advisory lock), and both
/// come up on the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_migrate_together() {
    let db = swb_testkit::TestDatabase::create().await;
    let (a, b) = tokio::join!(crate::PgStore::open(&db.url), crate::PgStore::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create_version(&f("a/b"), hosted(Digest::of(b"x"), "d"))
        .await
        .unwrap();
    assert_eq!(
        b.function(&f("a/b")).await.unwrap().unwrap().active_version,
        1
    );
}

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swb.db");
    {
        let store = crate::SqliteStore::open(&path).await.unwrap();
        store
            .create_version(&f("a/b"), hosted(Digest::of(b"x"), "d"))
            .await
            .unwrap();
    }
    let store = crate::SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .function(&f("a/b"))
            .await
            .unwrap()
            .unwrap()
            .active_version,
        1
    );
}
