//! Users, sharing, tokens and audit through the CLI and real worker processes:
//! sharing before sign-up, team namespaces, workers that can only serve their own
//! namespaces, revocation closing a live worker session, and no raw token at rest.

mod common;

use common::{Cli, Cluster, assert_code, bin, files_containing};
use std::time::Duration;
use swb_api::{ErrorCode, FunctionRef};
use swb_client::Client;
use swb_testkit::{WorkerProc, connected, deploy, eventually, guests};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_tokens_and_workers_follow_the_rules() {
    let c = Cluster::start(false, &[]).await;
    let admin = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let url = c.server.url.clone();

    // Users get a namespace from their e-mail and a token shown once.
    let alice = admin.json(&["user", "add", "Alice.Smith@Example.com"]);
    assert_eq!(alice["namespace"], "alice-smith");
    assert_eq!(alice["email"], "alice.smith@example.com");
    let alice_token = alice["token"].as_str().unwrap().to_owned();
    let alice_cli = Cli::new(&url, &alice_token, c.dir.path());
    let alice_api = Client::new(&url, &alice_token);
    assert_eq!(alice_cli.json(&["me"])["user"]["namespace"], "alice-smith");
    let again = admin.run(&["user", "add", "alice.smith@example.com"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("conflict"));

    // A share given before the account exists applies when it is created.
    deploy(&alice_api, "alice-smith/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let shared = alice_cli.json(&["fn", "share", "alice-smith/echo", "dave@example.com"]);
    assert_eq!(shared["pending"], true);
    let dave = admin.json(&["user", "add", "dave@example.com"]);
    let dave_api = Client::new(&url, dave["token"].as_str().unwrap());
    let echo = "alice-smith/echo".parse().unwrap();
    // No worker can run it yet, but dave may call it: no_worker, not not_found.
    assert_code(
        dave_api.invoke(&echo, None, "x").await.unwrap_err().error,
        ErrorCode::NoWorker,
    );
    let shares = alice_cli.json(&["fn", "shares", "alice-smith/echo"]);
    assert_eq!(shares["shares"][0]["pending"], false);

    // Alice's own worker serves alice's functions, and nobody else's.
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    let mut alice_worker = WorkerProc::start(
        bin(),
        &c.server,
        "alice-box",
        &c.dir.path().join("alice-cache"),
        &["--token", &alice_token],
    )
    .unwrap();
    connected(&alice_api, "alice-box").await;
    let out = dave_api.invoke(&echo, None, "via alice-box").await.unwrap();
    assert_eq!(out.worker.as_deref(), Some("alice-box"));
    let admin_echo = "admin/echo".parse().unwrap();
    let e = c.client.invoke(&admin_echo, None, "x").await.unwrap_err();
    assert_code(e.error, ErrorCode::NoWorker);
    // Dave sees neither the worker nor alice's call records (alice does).
    eventually(
        "alice to read the record of dave's call",
        Duration::from_secs(10),
        || async { alice_api.invocation(&out.id).await.ok() },
    )
    .await;
    assert!(dave_api.workers().await.unwrap().workers.is_empty());
    assert!(
        dave_api
            .invocations(&Default::default())
            .await
            .unwrap()
            .invocations
            .is_empty()
    );

    // Team namespaces: bob deploys into alice's lab once she shares it.
    alice_cli.ok(&["ns", "create", "lab"]);
    let bob = admin.json(&["user", "add", "bob@example.com"]);
    let bob_token = bob["token"].as_str().unwrap().to_owned();
    let bob_api = Client::new(&url, &bob_token);
    let e = deploy(&bob_api, "lab/tool", guests::echo(), |_| {})
        .await
        .unwrap_err();
    assert_code(e, ErrorCode::Forbidden);
    alice_cli.ok(&["ns", "share", "lab", "bob@example.com", "--role", "deploy"]);
    deploy(&bob_api, "lab/tool", guests::echo(), |_| {})
        .await
        .unwrap();
    let tool = "lab/tool".parse().unwrap();
    assert_eq!(
        &alice_api.invoke(&tool, None, "team").await.unwrap().output[..],
        b"team"
    );
    assert_code(
        dave_api.function(&tool).await.unwrap_err(),
        ErrorCode::NotFound,
    );

    // Scoped tokens hold no more than their creator.
    let ci = alice_cli.json(&[
        "token",
        "create",
        "--scope",
        "call:alice-smith/echo",
        "--expires-in",
        "1h",
    ]);
    let ci_api = Client::new(&url, ci["token"].as_str().unwrap());
    assert_eq!(
        &ci_api.invoke(&echo, None, "ci").await.unwrap().output[..],
        b"ci"
    );
    assert_code(
        ci_api.function(&tool).await.unwrap_err(),
        ErrorCode::NotFound,
    );
    let grab = alice_cli.run(&["token", "create", "--scope", "deploy:admin"]);
    assert!(String::from_utf8_lossy(&grab.stderr).contains("forbidden"));

    // Revoking the worker's token closes its session at once.
    let tokens = alice_cli.json(&["token", "list"]);
    let worker_token_id = tokens["tokens"][0]["id"].as_str().unwrap().to_owned();
    alice_cli.ok(&["token", "revoke", &worker_token_id]);
    let status = eventually("the worker to stop", Duration::from_secs(20), || {
        let status = alice_worker.try_exit();
        async move { status }
    })
    .await;
    assert!(!status.success(), "a refused worker exits with an error");
    assert!(
        alice_worker.log().contains("revoked"),
        "{}",
        alice_worker.log()
    );
    assert_code(
        alice_api.me().await.unwrap_err(),
        ErrorCode::Unauthenticated,
    );
    let workers = c.client.workers().await.unwrap();
    assert!(workers.workers.iter().all(|w| w.name != "alice-box"));

    // The audit log tells who did what; owners see their namespaces only.
    let audit = admin.json(&["audit"]);
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.create",
        "function.deploy",
        "share.create",
        "namespace.create",
        "token.create",
        "token.revoke",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let bob_cli = Cli::new(&url, &bob_token, c.dir.path());
    let bobs = bob_cli.json(&["audit"]);
    assert!(
        bobs["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["namespace"] == "bob")
    );

    // No raw token is stored or logged anywhere (admin.token is the one exception,
    // by design: it is how the operator receives the first token).
    for token in [&alice_token, &bob_token, ci["token"].as_str().unwrap()] {
        let mut hits = files_containing(c.dir.path(), token);
        hits.retain(|h| !h.ends_with("config.json"));
        assert!(hits.is_empty(), "a raw token was found in {hits:?}");
    }
    let admin_token_hits = files_containing(c.dir.path(), &c.server.token);
    assert_eq!(admin_token_hits.len(), 1, "{admin_token_hits:?}");
    assert!(admin_token_hits[0].ends_with("admin.token"));
}

/// A function's records are its deployers'; one who may only call it reads the
/// records of their own calls, through the API and `swb logs`, and no one else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_read_the_records_of_their_own_calls() {
    let c = Cluster::start(true, &[]).await;
    let admin = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let url = c.server.url.clone();
    let user = |email: &str| {
        let made = admin.json(&["user", "add", email]);
        made["token"].as_str().unwrap().to_owned()
    };
    let (alice_token, bob_token) = (user("alice@example.com"), user("bob@example.com"));
    let alice = Client::new(&url, &alice_token);
    let bob = Client::new(&url, &bob_token);
    deploy(&alice, "alice/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    Cli::new(&url, &alice_token, c.dir.path()).ok(&[
        "fn",
        "share",
        "alice/echo",
        "bob@example.com",
    ]);
    let echo: FunctionRef = "alice/echo".parse().unwrap();
    let hers = alice
        .invoke(&echo, None, "alice's secret input")
        .await
        .unwrap()
        .id;
    let his = bob.invoke(&echo, None, "bob's").await.unwrap().id;

    let filter = |function: Option<&str>| swb_client::InvocationFilter {
        function: function.map(str::to_owned),
        outcome: None,
        after: None,
        limit: Some(50),
    };
    // Records are written in batches: wait for both.
    let owner_view = eventually("both records", Duration::from_secs(10), || async {
        let list = alice.invocations(&filter(Some("alice/echo"))).await.ok()?;
        (list.invocations.len() == 2).then_some(list)
    })
    .await;
    assert_eq!(
        owner_view.invocations[0].caller.as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(
        owner_view.invocations[1].caller.as_deref(),
        Some("alice@example.com")
    );
    let bob_view = bob.invocations(&filter(Some("alice/echo"))).await.unwrap();
    let ids: Vec<_> = bob_view.invocations.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [his.as_str()]);
    assert_eq!(bob.invocation(&his).await.unwrap().id, his);
    assert_code(
        bob.invocation(&hers).await.unwrap_err(),
        ErrorCode::NotFound,
    );
    // Without naming the function, bob's list holds the namespaces he deploys to.
    let all = bob.invocations(&filter(None)).await.unwrap();
    assert!(all.invocations.is_empty(), "{:?}", all.invocations);
    // `swb logs` as bob: his call only.
    let logs = Cli::new(&url, &bob_token, c.dir.path()).ok(&["logs", "alice/echo"]);
    assert!(logs.contains(&his) && !logs.contains(&hers), "{logs}");

    // Records keep inputs and outputs only once the owner says so (`keep_io`), and
    // then the caller reads their own.
    assert_eq!(bob.invocation(&his).await.unwrap().io, None);
    deploy(&alice, "alice/echo", guests::echo(), |d| d.keep_io = true)
        .await
        .unwrap();
    let kept = bob.invoke(&echo, None, "bob's second").await.unwrap().id;
    let record = eventually("the kept record", Duration::from_secs(10), || async {
        bob.invocation(&kept).await.ok()
    })
    .await;
    let io = record.io.expect("input and output kept");
    assert_eq!(
        (io.input.as_str(), io.output.as_str()),
        ("bob's second", "bob's second")
    );
    let shown = Cli::new(&url, &bob_token, c.dir.path()).ok(&["inv", "show", &kept]);
    assert!(shown.contains("input:      bob's second"), "{shown}");
    let described = Cli::new(&url, &bob_token, c.dir.path()).ok(&["fn", "show", "alice/echo"]);
    assert!(
        described.contains("keep each call's input and output"),
        "{described}"
    );
}
