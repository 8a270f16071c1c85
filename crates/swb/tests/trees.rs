//! Functions calling functions through the platform: exec commands whose version
//! declares callees (`--calls`) get `SWB_URL` and a per-call `SWB_TOKEN`, so that
//! `swb fn invoke` inside them is a nested call of the same tree.

mod common;

use common::{Cli, Cluster, assert_code, bin};
use futures_util::future::join_all;
use std::path::Path;
use std::time::{Duration, Instant};
use swb_api::{ErrorCode, FunctionRef, Role};
use swb_client::{Client, InvocationFilter, ShareTarget};
use swb_testkit::{connected, deploy, eventually, guests};

fn f(name: &str) -> FunctionRef {
    name.parse().unwrap()
}

/// A shell command that runs `script` with `$SWB` set to the `swb` binary.
fn sh(script: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("SWB={}; {script}", bin().display()),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn records(client: &Client, function: &str) -> Vec<swb_api::InvocationRecord> {
    client
        .invocations(&InvocationFilter {
            function: Some(function.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .invocations
}

/// Waits for `n` records of a function (records are written in batches).
async fn recorded(client: &Client, function: &str, n: usize) -> Vec<swb_api::InvocationRecord> {
    eventually(
        &format!("{n} records of {function}"),
        Duration::from_secs(10),
        || async {
            let r = records(client, function).await;
            (r.len() >= n).then_some(r)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_calls_a_function_and_both_calls_form_one_tree() {
    let c = Cluster::start(false, &[]).await;
    let _g = c.serve("g", "admin/g", &[], &["cat"]);
    let outer = sh(r#"printf '{"outer":'; $SWB fn invoke admin/g -; printf '}'"#);
    let _f = c.serve("f", "admin/f", &["--calls", "admin/g"], &args(&outer));
    connected(&c.client, "g").await;
    connected(&c.client, "f").await;
    let inv = c
        .client
        .invoke(&f("admin/f"), None, r#"{"x":1}"#)
        .await
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&inv.output).unwrap();
    assert_eq!(out, serde_json::json!({"outer": {"x": 1}}));

    // The nested call's record names its place: the root, its parent, whom it acts for.
    let g = recorded(&c.client, "admin/g", 1).await;
    let place = g[0]
        .tree
        .clone()
        .expect("a nested call's record has its place");
    assert_eq!(place.root, inv.id);
    assert_eq!(place.parent, inv.id);
    assert_eq!(place.depth, 1);
    assert_eq!(place.via, f("admin/f"));
    assert_eq!(place.acting_for, "admin@localhost");
    let root = recorded(&c.client, "admin/f", 1).await;
    assert!(root[0].tree.is_none(), "a call from outside is a root");

    // The tree, from either end, through REST and the CLI.
    recorded(&c.client, "admin/f", 1).await;
    for id in [&inv.id, &g[0].id] {
        let tree = c.client.invocation_tree(id).await.unwrap();
        assert_eq!(tree.root, inv.id);
        let ids: Vec<_> = tree.invocations.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, vec![inv.id.clone(), g[0].id.clone()]);
    }
    let cli = Cli::new(&c.server.url, &c.server.token, c.dir.path());
    let drawn = cli.ok(&["inv", "tree", &g[0].id]);
    let lines: Vec<_> = drawn.lines().collect();
    assert_eq!(lines.len(), 2, "{drawn}");
    assert!(lines[0].starts_with("admin/f v1  ok"), "{drawn}");
    assert!(lines[1].starts_with("└─ admin/g v1  ok"), "{drawn}");
    let logged = cli.ok(&["logs", "admin/g"]);
    assert!(logged.contains("(called by admin/f)"), "{logged}");
    let shown = cli.ok(&["inv", "show", &g[0].id]);
    assert!(shown.contains("called by:  admin/f"), "{shown}");
    assert!(shown.contains("acting for: admin@localhost"), "{shown}");

    // The version says what it may call.
    let versions = c.client.versions(&f("admin/f")).await.unwrap();
    assert_eq!(versions.versions[0].calls, vec![f("admin/g")]);
}

/// A call token acts for the tree's caller, narrowed to calling what the version
/// declared, only while its call runs; and a command that declares nothing gets no
/// token at all (not its worker's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_token_allows_only_declared_calls_for_the_trees_caller_while_its_call_runs() {
    let c = Cluster::start(false, &[]).await;
    let dir = c.dir.path();
    let _g = c.serve("g", "admin/g", &[], &["cat"]);
    let _h = c.serve("h", "admin/h", &[], &["cat"]);
    // Leaves its URL, then its token (the file the test waits for), for the test,
    // and ends when told to.
    let script = format!(
        r#"echo "$SWB_URL" > {d}/url; echo "$SWB_TOKEN" > {d}/token.tmp; mv {d}/token.tmp {d}/token;
           while [ ! -f {d}/done ]; do sleep 0.02; done; rm {d}/done; echo '{{}}'"#,
        d = dir.display()
    );
    let holder = sh(&script);
    let _f = c.serve(
        "f",
        "admin/f",
        &["--calls", "admin/g", "--calls", "admin/nope"],
        &args(&holder),
    );
    let none = sh(r#"printf '"%s"' "${SWB_TOKEN:-none}""#);
    let _n = c.serve("n", "admin/plain", &[], &args(&none));
    for w in ["g", "h", "f", "n"] {
        connected(&c.client, w).await;
    }
    // Bob may call f (shared to him) but not g.
    let bob = c.client.create_user("bob@example.com").await.unwrap();
    c.client
        .share(
            ShareTarget::Function(&f("admin/f")),
            "bob@example.com",
            Role::Call,
        )
        .await
        .unwrap();
    let bob = Client::new(&c.server.url, &bob.token);

    for (caller, g_answer) in [(&c.client, None), (&bob, Some(ErrorCode::Forbidden))] {
        let token_file = dir.join("token");
        let _ = std::fs::remove_file(&token_file);
        let call = {
            let caller = caller.clone();
            tokio::spawn(async move { caller.invoke(&f("admin/f"), None, "{}").await })
        };
        let token = eventually("the command's token", Duration::from_secs(10), || async {
            std::fs::read_to_string(&token_file).ok()
        })
        .await;
        let url = std::fs::read_to_string(dir.join("url")).unwrap();
        assert_eq!(url.trim(), c.server.url.trim_end_matches('/'));
        let token = token.trim();
        assert!(token.starts_with("swb_call-"), "{token}");
        let nested = Client::new(&c.server.url, token);
        match g_answer {
            None => {
                let out = nested.invoke(&f("admin/g"), None, "[1]").await.unwrap();
                assert_eq!(out.output, "[1]".as_bytes());
            }
            Some(code) => {
                let e = assert_code(
                    nested
                        .invoke(&f("admin/g"), None, "[1]")
                        .await
                        .unwrap_err()
                        .error,
                    code,
                );
                assert!(e.message.contains("bob@example.com"), "{e:?}");
            }
        }
        // Undeclared: forbidden, naming the flag, whether the callee exists or not.
        for undeclared in ["admin/h", "admin/missing"] {
            let e = nested.invoke(&f(undeclared), None, "{}").await.unwrap_err();
            let e = assert_code(e.error, ErrorCode::Forbidden);
            assert!(e.message.contains("--calls"), "{e:?}");
        }
        // Declared but absent: as for its caller.
        let e = nested
            .invoke(&f("admin/nope"), None, "{}")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.error.code(),
                Some(ErrorCode::NotFound | ErrorCode::Forbidden)
            ),
            "{e:?}"
        );
        // Nothing but calls: no jobs, no management, no code.
        let job = common::job("admin/g", serde_json::json!([1]));
        assert_code(
            nested.submit_job(&job).await.unwrap_err(),
            ErrorCode::Forbidden,
        );
        assert_code(nested.users().await.unwrap_err(), ErrorCode::Forbidden);
        assert_code(nested.tokens().await.unwrap_err(), ErrorCode::Forbidden);
        let listed = nested.functions().await.unwrap();
        assert!(
            listed
                .functions
                .iter()
                .all(|x| x.function.to_string() == "admin/g"
                    || x.function.to_string() == "admin/nope"),
            "{listed:?}"
        );
        std::fs::write(dir.join("done"), "").unwrap();
        call.await.unwrap().unwrap();
        // The call ended: its token with it.
        let e = nested.invoke(&f("admin/g"), None, "[1]").await.unwrap_err();
        assert_code(e.error, ErrorCode::Unauthenticated);
    }
    let plain = c
        .client
        .invoke(&f("admin/plain"), None, "{}")
        .await
        .unwrap();
    assert_eq!(plain.output, "\"none\"".as_bytes());
    // Bob's tree shows him as the one it acted for... and his g call as refused.
    let g = records(&c.client, "admin/g").await;
    assert!(g.iter().all(|r| r.tree.is_some()));
}

/// A function calling itself stops at the depth limit in milliseconds, with the
/// chain in the error; the tree holds every level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursion_stops_at_the_depth_limit_fast() {
    let c = Cluster::start(false, &["--max-call-depth", "5"]).await;
    let again = sh("$SWB fn invoke admin/again -");
    let _a = c.serve(
        "a",
        "admin/again",
        &["--calls", "admin/again", "--concurrency", "2"],
        &args(&again),
    );
    connected(&c.client, "a").await;
    let (e, deepest) = recursion_ends_fast(&c.client, "admin/again", 7).await;
    assert_eq!(e.error.code(), Some(ErrorCode::FunctionError), "{e:?}");
    let error = deepest.error.clone().unwrap();
    assert_eq!(deepest.tree.as_ref().unwrap().depth, 6);
    assert_eq!(error.details["chain"].as_array().unwrap().len(), 7);
    assert!(error.message.contains("over its limit of 5"), "{error:?}");
}

/// Callers blocked in nested calls lend their slots to their callees: a function
/// calling itself three deep, six calls at once on a worker of capacity 2, all
/// succeed (without lending, the two roots hold both slots and wait for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_never_wait_on_their_own_callers_capacity() {
    let c = Cluster::start(false, &[]).await;
    let countdown = sh(
        r#"n=$(cat); if [ "$n" -gt 0 ]; then echo $((n - 1)) | $SWB fn invoke admin/countdown -; else echo 0; fi"#,
    );
    let _w = c.serve(
        "cd",
        "admin/countdown",
        &[
            "--calls",
            "admin/countdown",
            "--concurrency",
            "2",
            "--timeout-ms",
            "20000",
        ],
        &args(&countdown),
    );
    connected(&c.client, "cd").await;
    let started = Instant::now();
    let countdown = f("admin/countdown");
    let results = join_all((0..6).map(|_| c.client.invoke(&countdown, None, "3"))).await;
    for r in results {
        let out = r.unwrap().output;
        assert_eq!(String::from_utf8_lossy(&out).trim(), "0");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The worker never ran more at once than it holds plus the slots lent.
    let workers = c.client.workers().await.unwrap();
    assert_eq!(workers.workers[0].in_flight, 0);
}

/// A nested call gets no more time than its parent has left (less a margin), so
/// it times out first and its parent learns why; and a parent that ends (here: its
/// client went away) cancels the nested calls it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_shrink_down_the_tree_and_a_parent_ending_cancels_its_children() {
    let c = Cluster::start(false, &[]).await;
    let dir = c.dir.path();
    let pid_file = dir.join("child.pid");
    let sleeper = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let _g = c.serve(
        "g",
        "admin/sleepy",
        &["--timeout-ms", "60000"],
        &args(&sh(&sleeper)),
    );
    let caller = sh("$SWB fn invoke admin/sleepy -");
    let _f = c.serve(
        "f",
        "admin/impatient",
        &["--calls", "admin/sleepy", "--timeout-ms", "1500"],
        &args(&caller),
    );
    connected(&c.client, "g").await;
    connected(&c.client, "f").await;
    let impatient = f("admin/impatient");

    // The child's deadline is the parent's remaining time: it ends first, with
    // `timeout`, and the parent's command sees that error.
    let e = c.client.invoke(&impatient, None, "{}").await.unwrap_err();
    assert_eq!(e.error.code(), Some(ErrorCode::FunctionError), "{e:?}");
    assert!(
        format!("{e:?}").contains("timeout: command did not finish"),
        "{e:?}"
    );
    let g = recorded(&c.client, "admin/sleepy", 1).await;
    let error = g[0].error.clone().unwrap();
    assert_eq!(error.code, ErrorCode::Timeout, "{error:?}");
    let given = error.details["timeout_ms"].as_u64().unwrap();
    assert!(
        given < 1500,
        "the child got {given} ms of its parent's 1500"
    );
    wait_dead(&pid_file).await;

    // The client goes away: the parent is cancelled, and so is its child.
    std::fs::remove_file(&pid_file).unwrap();
    let call = {
        let client = c.client.clone();
        let impatient = impatient.clone();
        tokio::spawn(async move { client.invoke(&impatient, None, "{}").await })
    };
    eventually("the child to start", Duration::from_secs(10), || async {
        pid_file.exists().then_some(())
    })
    .await;
    call.abort();
    let dropped = Instant::now();
    wait_dead(&pid_file).await;
    assert!(
        dropped.elapsed() < Duration::from_secs(1),
        "{:?}",
        dropped.elapsed()
    );
    let g = recorded(&c.client, "admin/sleepy", 2).await;
    assert_eq!(
        g[0].outcome,
        swb_api::Outcome::Error(ErrorCode::Cancelled),
        "{:?}",
        g[0]
    );
}

/// Waits for the process whose pid is in `file` to be gone.
async fn wait_dead(file: &Path) {
    let pid: i32 = eventually("the pid file", Duration::from_secs(10), || async {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
    .await;
    eventually(
        &format!("process {pid} to die"),
        Duration::from_secs(3),
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
}

/// Calls `function`, which calls itself: the call fails within seconds, and its
/// tree holds `levels` records, the deepest refused with `call_depth_exceeded`.
async fn recursion_ends_fast(
    client: &Client,
    function: &str,
    levels: usize,
) -> (swb_client::InvokeError, swb_api::InvocationRecord) {
    let started = Instant::now();
    let e = client.invoke(&f(function), None, "{}").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let root = e.invocation_id.clone().unwrap();
    let tree = eventually("the whole tree", Duration::from_secs(10), || async {
        let t = client.invocation_tree(&root).await.ok()?;
        (t.invocations.len() == levels).then_some(t)
    })
    .await;
    let deepest = tree.invocations.last().unwrap().clone();
    let error = deepest.error.as_ref().unwrap();
    assert_eq!(error.code, ErrorCode::CallDepthExceeded, "{error:?}");
    (e, deepest)
}

/// Deploys `name`, a guest calling `callee` (declared) into a buffer of `cap` bytes.
async fn calling(client: &Client, name: &str, callee: &str, cap: u32) {
    deploy(client, name, guests::calls(callee, cap), |r| {
        r.calls = vec![f(callee)];
    })
    .await
    .unwrap();
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// One trace per tree: a caller's W3C `traceparent` is carried to every call of the
/// tree (`TRACEPARENT` for commands, a span per call), and recorded with nested calls;
/// a tree started without one is traced under its root's invocation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_reaches_every_call_of_the_tree() {
    let c = Cluster::start(false, &[]).await;
    let _g = c.serve(
        "g",
        "admin/trace-g",
        &[],
        &args(&sh(r#"printf '"%s"' "$TRACEPARENT""#)),
    );
    let outer = sh(
        r#"printf '["%s",' "$TRACEPARENT"; echo '{}' | $SWB fn invoke admin/trace-g -; printf ']'"#,
    );
    let _f = c.serve(
        "f",
        "admin/trace-f",
        &["--calls", "admin/trace-g"],
        &args(&outer),
    );
    connected(&c.client, "g").await;
    connected(&c.client, "f").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer = swb_client::tls::builder()
        .build()
        .unwrap()
        .post(format!(
            "{}/v1/functions/admin/trace-f/invoke",
            c.server.url
        ))
        .bearer_auth(&c.server.token)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let root = answer.headers()["swb-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let spans: Vec<String> = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let g = recorded(&c.client, "admin/trace-g", 1).await;
    for (span, id) in spans.iter().zip([&root, &g[0].id]) {
        assert_eq!(span, &swb_api::trace::traceparent(trace, id), "{spans:?}");
    }
    assert_eq!(g[0].tree.as_ref().unwrap().trace, trace);

    // Without one, the tree's trace is its root's id.
    let inv = c
        .client
        .invoke(&f("admin/trace-f"), None, "{}")
        .await
        .unwrap();
    let spans: Vec<String> = serde_json::from_slice(&inv.output).unwrap();
    let own = swb_api::trace::trace_of(&inv.id);
    assert_eq!(spans[0], swb_api::trace::traceparent(&own, &inv.id));
    assert!(spans[1].starts_with(&format!("00-{own}-")), "{spans:?}");
}

/// Hosted (Wasm) functions call through `swb.call`: hosted to hosted (an answer
/// larger than the guest's buffer comes through `swb.result`), hosted to remote,
/// remote to hosted; undeclared calls are refused and the guest handles the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_functions_call_hosted_and_remote_ones() {
    let c = Cluster::start(true, &[]).await;
    deploy(&c.client, "admin/h-echo", guests::echo(), |_| {})
        .await
        .unwrap();
    calling(&c.client, "admin/h-small", "admin/h-echo", 16).await;
    calling(&c.client, "admin/h-big", "admin/h-echo", 64_000).await;
    calling(&c.client, "admin/h-upper", "admin/caps", 64_000).await;
    deploy(
        &c.client,
        "admin/h-rogue",
        guests::calls("admin/h-echo", 64_000),
        |_| {},
    )
    .await
    .unwrap();
    let _caps = c.serve("caps", "admin/caps", &[], &["tr", "a-z", "A-Z"]);
    let via = sh("$SWB fn invoke admin/h-small -");
    let _r = c.serve(
        "r",
        "admin/r-to-h",
        &["--calls", "admin/h-small"],
        &args(&via),
    );
    connected(&c.client, "caps").await;
    connected(&c.client, "r").await;

    let long = format!("\"{}\"", "x".repeat(5000));
    for (function, input, output) in [
        ("admin/h-small", long.clone(), long.clone()),
        ("admin/h-big", "[1,2,3]".to_owned(), "[1,2,3]".to_owned()),
        (
            "admin/h-upper",
            "\"shout\"".to_owned(),
            "\"SHOUT\"".to_owned(),
        ),
    ] {
        let inv = c.client.invoke(&f(function), None, input).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&inv.output), output, "{function}");
    }
    let inv = c
        .client
        .invoke(&f("admin/r-to-h"), None, "[4]")
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inv.output).trim(), "[4]");
    let tree = eventually(
        "remote → hosted → hosted",
        Duration::from_secs(10),
        || async {
            let t = c.client.invocation_tree(&inv.id).await.ok()?;
            (t.invocations.len() == 3).then_some(t)
        },
    )
    .await;
    let chain: Vec<_> = tree
        .invocations
        .iter()
        .map(|r| r.function.to_string())
        .collect();
    assert_eq!(chain, ["admin/r-to-h", "admin/h-small", "admin/h-echo"]);
    assert_eq!(tree.invocations[2].tree.as_ref().unwrap().depth, 2);

    // A guest that may call further learns its call and its trace.
    deploy(&c.client, "admin/h-env", guests::prints_env(), |r| {
        r.calls = vec![f("admin/h-echo")];
    })
    .await
    .unwrap();
    let inv = c.client.invoke(&f("admin/h-env"), None, "").await.unwrap();
    let env = String::from_utf8_lossy(&inv.output).into_owned();
    let trace = swb_api::trace::trace_of(&inv.id);
    assert!(
        env.contains(&format!("SWB_CALL_ID={}\0", inv.id)),
        "{env:?}"
    );
    let parent = swb_api::trace::traceparent(&trace, &inv.id);
    assert!(env.contains(&format!("TRACEPARENT={parent}\0")), "{env:?}");

    // Undeclared: the guest gets the error as a value (and here reports it).
    let e = c
        .client
        .invoke(&f("admin/h-rogue"), None, "{}")
        .await
        .unwrap_err();
    let e = assert_code(e.error, ErrorCode::FunctionError);
    assert!(
        e.details["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("forbidden"),
        "{e:?}"
    );
}

/// At small capacities, hosted trees never wait on themselves: 8 concurrent f→g on
/// a worker of capacity 4, f→g→h at capacity 3, and a function calling itself ends
/// in milliseconds at the depth limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_trees_at_small_capacities_finish() {
    let c = Cluster::start(false, &[]).await;
    let _w = swb_testkit::WorkerProc::start(
        bin(),
        &c.server,
        "small",
        &c.dir.path().join("cache-small"),
        &["--capacity", "3"],
    )
    .unwrap();
    connected(&c.client, "small").await;
    deploy(&c.client, "admin/t-h", guests::echo(), |_| {})
        .await
        .unwrap();
    calling(&c.client, "admin/t-g", "admin/t-h", 64_000).await;
    calling(&c.client, "admin/t-f", "admin/t-g", 64_000).await;
    calling(&c.client, "admin/t-self", "admin/t-self", 64_000).await;
    for function in ["admin/t-g", "admin/t-f"] {
        let function = f(function);
        let results = join_all((0..8).map(|i| {
            let input = format!("[{i}]");
            let function = function.clone();
            let client = c.client.clone();
            async move { (client.invoke(&function, None, input.clone()).await, input) }
        }))
        .await;
        for (r, input) in results {
            assert_eq!(r.unwrap().output, input.as_bytes(), "{function}");
        }
    }
    recursion_ends_fast(&c.client, "admin/t-self", 10).await;
}

/// A job's nested calls act for the token it was submitted with, and only while
/// that token stands: revoked before the job runs, the job's command gets no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_nested_calls_stop_with_the_token_it_was_submitted_with() {
    let c = Cluster::start(false, &[]).await;
    let _g = c.serve("g", "admin/g", &[], &["cat"]);
    let f_cmd =
        sh(r#"[ -n "$SWB_TOKEN" ] || { echo "no token" >&2; exit 3; }; $SWB fn invoke admin/g -"#);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let created = c
            .client
            .create_token(&serde_json::from_value(serde_json::json!({ "scopes": ["*"] })).unwrap())
            .await
            .unwrap();
        tokens.push(created);
    }
    // f is published, then its worker stops: both jobs wait for a worker.
    let mut first = c.serve("f0", "admin/f", &["--calls", "admin/g"], &args(&f_cmd));
    connected(&c.client, "f0").await;
    first.terminate().unwrap();
    let mut ids = Vec::new();
    for t in &tokens {
        let job = swb_api::SubmitJob {
            max_attempts: Some(1),
            ..common::job("admin/f", serde_json::json!([1]))
        };
        let client = Client::new(&c.server.url, &t.token);
        ids.push(client.submit_job(&job).await.unwrap().id);
    }
    c.client.revoke_token(&tokens[0].id).await.unwrap();
    let _f = c.serve("f", "admin/f", &["--calls", "admin/g"], &args(&f_cmd));
    let done = common::all_ended(&c.client, &ids, Duration::from_secs(30)).await;
    let revoked = done[0]
        .error
        .as_ref()
        .expect("the revoked token's job fails");
    assert_eq!(revoked.code, ErrorCode::FunctionError, "{revoked:?}");
    assert!(format!("{revoked:?}").contains("no token"), "{revoked:?}");
    assert_eq!(
        done[1].result,
        Some(serde_json::json!([1])),
        "{:?}",
        done[1]
    );
}
