//! One table: every route × every kind of caller, with the status each must get.
//! The table must name every route the server has, so a new route without rows fails.

mod common;

use common::bin;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use swb_api::{CreateTokenRequest, Digest, Role};
use swb_client::{Client, InvocationFilter, ShareTarget};
use swb_testkit::{ServerProc, deploy, eventually, guests};

/// Callers: the anonymous, then those of a row's `expect`, then a token that expired
/// and one that was revoked (both of the owner).
const ANON: usize = 0;
const EXPIRED: usize = 7;
const REVOKED: usize = 8;
const CALLERS: [&str; 9] = [
    "anonymous",
    "owner",
    "shared",
    "stranger",
    "admin",
    "in-scope",
    "out-of-scope",
    "expired",
    "revoked",
];

struct Row {
    method: Method,
    /// The route as the server declares it.
    route: &'static str,
    /// The request path; `{c}` becomes the caller's name, `{tok}` a spare token of theirs.
    path: &'static str,
    body: Option<Value>,
    /// Open routes answer anyone; the others answer 401 to the anonymous, the expired
    /// and the revoked.
    open: bool,
    /// Status for owner, shared, stranger, admin, in-scope, out-of-scope
    /// (0: not exercised by this row).
    expect: [u16; 6],
}

fn row(
    method: Method,
    route: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 6],
) -> Row {
    Row {
        method,
        route,
        path,
        body,
        open: false,
        expect,
    }
}

fn table(digest: &Digest) -> Vec<Row> {
    use Method as M;
    let fr = "/v1/functions/{ns}/{name}";
    let mut rows = vec![
        Row {
            open: true,
            ..row(M::GET, "/healthz", "/healthz", None, [200; 6])
        },
        // Metrics name every function: administrators only.
        row(
            M::GET,
            "/metrics",
            "/metrics",
            None,
            [403, 403, 403, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/openapi.json",
            "/v1/openapi.json",
            None,
            [200; 6],
        ),
        row(
            M::POST,
            "/v1/artefacts/missing",
            "/v1/artefacts/missing",
            Some(json!({"digests": []})),
            [200, 200, 200, 200, 403, 403],
        ),
        row(M::GET, "/v1/functions", "/v1/functions", None, [200; 6]),
        // Everyone may ask; each sees the functions whose records they read.
        row(M::GET, "/v1/stats", "/v1/stats", None, [200; 6]),
        row(
            M::GET,
            fr,
            "/v1/functions/alice/echo",
            None,
            [200, 200, 404, 200, 200, 404],
        ),
        row(
            M::DELETE,
            fr,
            "/v1/functions/alice/victim-{c}",
            None,
            [204, 404, 404, 204, 404, 404],
        ),
        row(
            M::DELETE,
            fr,
            "/v1/functions/alice/echo",
            None,
            [0, 403, 404, 0, 403, 404],
        ),
        row(
            M::GET,
            "/v1/functions/{ns}/{name}/versions",
            "/v1/functions/alice/echo/versions",
            None,
            [200, 200, 404, 200, 200, 404],
        ),
        row(
            M::POST,
            "/v1/functions/{ns}/{name}/versions",
            "/v1/functions/alice/echo/versions",
            Some(json!({"artefact": digest})),
            [201, 403, 403, 201, 403, 403],
        ),
        row(
            M::POST,
            "/v1/functions/{ns}/{name}/rollback",
            "/v1/functions/alice/echo/rollback",
            Some(json!({"version": 1})),
            [200, 403, 404, 200, 403, 404],
        ),
        row(
            M::POST,
            "/v1/functions/{ns}/{name}/invoke",
            "/v1/functions/alice/echo/invoke",
            Some(json!({"x": 1})),
            [200, 200, 404, 200, 200, 404],
        ),
        row(
            M::GET,
            "/v1/functions/{ns}/{name}/shares",
            "/v1/functions/alice/echo/shares",
            None,
            [200, 403, 404, 200, 403, 404],
        ),
        row(
            M::POST,
            "/v1/functions/{ns}/{name}/shares",
            "/v1/functions/alice/echo/shares",
            Some(json!({"email": "dave@example.com", "role": "call"})),
            [202, 403, 404, 202, 403, 404],
        ),
        row(
            M::DELETE,
            "/v1/functions/{ns}/{name}/shares/{email}",
            "/v1/functions/alice/echo/shares/x-{c}@example.com",
            None,
            [204, 403, 404, 204, 403, 404],
        ),
        row(M::GET, "/v1/invocations", "/v1/invocations", None, [200; 6]),
        row(
            M::GET,
            "/v1/invocations/{id}",
            "/v1/invocations/{inv}",
            None,
            [200, 404, 404, 200, 404, 404],
        ),
        row(
            M::GET,
            "/v1/invocations/{id}/tree",
            "/v1/invocations/{inv}/tree",
            None,
            [200, 404, 404, 200, 404, 404],
        ),
        row(M::GET, "/v1/workers", "/v1/workers", None, [200; 6]),
        // Authenticated but not a WebSocket upgrade: the upgrade itself is refused.
        row(
            M::GET,
            "/v1/worker/connect",
            "/v1/worker/connect",
            None,
            [400; 6],
        ),
        row(M::GET, "/v1/me", "/v1/me", None, [200; 6]),
        row(
            M::GET,
            "/v1/users",
            "/v1/users",
            None,
            [403, 403, 403, 200, 403, 403],
        ),
        row(
            M::POST,
            "/v1/users",
            "/v1/users",
            Some(json!({"email": "new-{c}@example.com"})),
            [403, 403, 403, 201, 403, 403],
        ),
        row(
            M::DELETE,
            "/v1/users/{email}",
            "/v1/users/victim@example.com",
            None,
            [403, 403, 403, 204, 403, 403],
        ),
        row(M::GET, "/v1/namespaces", "/v1/namespaces", None, [200; 6]),
        row(
            M::POST,
            "/v1/namespaces",
            "/v1/namespaces",
            Some(json!({"name": "team-{c}"})),
            [201, 201, 201, 201, 403, 403],
        ),
        row(
            M::GET,
            "/v1/namespaces/{ns}/shares",
            "/v1/namespaces/alice/shares",
            None,
            [200, 404, 404, 200, 404, 404],
        ),
        row(
            M::POST,
            "/v1/namespaces/{ns}/shares",
            "/v1/namespaces/alice/shares",
            Some(json!({"email": "eve@example.com", "role": "call"})),
            [202, 404, 404, 202, 404, 404],
        ),
        row(
            M::DELETE,
            "/v1/namespaces/{ns}/shares/{email}",
            "/v1/namespaces/alice/shares/y-{c}@example.com",
            None,
            [204, 404, 404, 204, 404, 404],
        ),
        row(
            M::GET,
            "/v1/tokens",
            "/v1/tokens",
            None,
            [200, 200, 200, 200, 403, 403],
        ),
        row(
            M::POST,
            "/v1/tokens",
            "/v1/tokens",
            Some(json!({"scopes": ["call:alice/echo"]})),
            // Only unscoped tokens mint tokens.
            [201, 201, 403, 201, 403, 403],
        ),
        row(
            M::DELETE,
            "/v1/tokens/{id}",
            "/v1/tokens/{tok}",
            None,
            [204, 204, 204, 204, 403, 403],
        ),
        row(
            M::GET,
            "/v1/audit",
            "/v1/audit",
            None,
            [200, 200, 200, 200, 403, 403],
        ),
    ];
    let pf = "/v1/functions/{ns}/{name}/profiles/{profile}";
    rows.extend([
        row(
            M::POST,
            "/v1/jobs",
            "/v1/jobs",
            Some(json!({"function": "alice/echo", "input": {"x": 1}})),
            [202, 202, 404, 202, 202, 404],
        ),
        row(
            M::POST,
            "/v1/jobs/batch",
            "/v1/jobs/batch",
            Some(json!({"jobs": [{"function": "alice/echo"}]})),
            [202, 202, 404, 202, 202, 404],
        ),
        row(M::GET, "/v1/jobs", "/v1/jobs", None, [200; 6]),
        row(
            M::GET,
            "/v1/jobs/{id}",
            "/v1/jobs/{job}",
            None,
            [200, 404, 404, 200, 200, 404],
        ),
        row(
            M::POST,
            "/v1/jobs/{id}/resubmit",
            "/v1/jobs/{job}/resubmit",
            None,
            [202, 404, 404, 202, 202, 404],
        ),
        row(
            M::POST,
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{job}/cancel",
            None,
            [200, 404, 404, 200, 200, 404],
        ),
        row(
            M::POST,
            "/v1/blobs",
            "/v1/blobs",
            Some(json!({"data": "{c}"})),
            [201, 201, 201, 201, 403, 403],
        ),
        row(
            M::GET,
            "/v1/blobs",
            "/v1/blobs",
            None,
            [200, 200, 200, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/blobs/{digest}",
            "/v1/blobs/{blob}",
            None,
            [200, 404, 404, 404, 403, 403],
        ),
        row(
            M::DELETE,
            "/v1/blobs/{digest}",
            "/v1/blobs/{spare-blob}",
            None,
            [204, 404, 404, 404, 403, 403],
        ),
        row(
            M::GET,
            "/v1/functions/{ns}/{name}/profiles",
            "/v1/functions/alice/echo/profiles",
            None,
            [200, 403, 404, 200, 403, 404],
        ),
        row(
            M::PUT,
            pf,
            "/v1/functions/alice/echo/profiles/p",
            Some(json!({"level": 1})),
            [200, 403, 404, 200, 403, 404],
        ),
        row(
            M::GET,
            pf,
            "/v1/functions/alice/echo/profiles/p",
            None,
            [200, 403, 404, 200, 403, 404],
        ),
        row(
            M::DELETE,
            pf,
            "/v1/functions/alice/echo/profiles/victim-{c}",
            None,
            [204, 403, 404, 204, 403, 404],
        ),
    ]);
    // Secrets: those who may deploy there manage them; nobody else sees they exist.
    let sn = "/v1/namespaces/{ns}/secrets/{secret}";
    rows.extend([
        row(
            M::GET,
            "/v1/namespaces/{ns}/secrets",
            "/v1/namespaces/alice/secrets",
            None,
            [200, 404, 404, 200, 404, 404],
        ),
        row(
            M::PUT,
            sn,
            "/v1/namespaces/alice/secrets/API_KEY",
            Some(json!({"value": "v"})),
            [200, 404, 404, 200, 404, 404],
        ),
        row(
            M::DELETE,
            sn,
            "/v1/namespaces/alice/secrets/VICTIM?function=victim-{c}",
            None,
            [204, 404, 404, 204, 404, 404],
        ),
    ]);
    rows.push(row(
        M::PUT,
        "/v1/artefacts/{digest}",
        "/v1/artefacts/{digest}",
        None,
        [200, 200, 200, 200, 403, 403],
    ));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(bin(), "up", &dir.path().join("data"), &[]).unwrap();
    let admin = server.client();
    let url = server.url.clone();
    let user = |email: &str| {
        let (admin, url, email) = (admin.clone(), url.clone(), email.to_owned());
        async move {
            let created = admin.create_user(&email).await.unwrap();
            Client::new(&url, &created.token)
        }
    };
    let alice = user("alice@example.com").await;
    let bob = user("bob@example.com").await;
    let carol = user("carol@example.com").await;
    admin.create_user("victim@example.com").await.unwrap();

    let module = guests::echo();
    let digest = Digest::of(&module);
    deploy(&alice, "alice/echo", module.clone(), |_| {})
        .await
        .unwrap();
    let echo = "alice/echo".parse().unwrap();
    alice
        .share(ShareTarget::Function(&echo), "bob@example.com", Role::Call)
        .await
        .unwrap();
    let alice_ns = "alice".parse().unwrap();
    for c in CALLERS {
        deploy(&alice, &format!("alice/victim-{c}"), module.clone(), |_| {})
            .await
            .unwrap();
        let email = format!("x-{c}@example.com");
        alice
            .share(ShareTarget::Function(&echo), &email, Role::Call)
            .await
            .unwrap();
        let email = format!("y-{c}@example.com");
        alice
            .share(ShareTarget::Namespace(&alice_ns), &email, Role::Call)
            .await
            .unwrap();
    }
    let token = |client: &Client, scopes: &[&str], expires: Option<u64>| {
        let req = CreateTokenRequest {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_in_s: expires,
            description: String::new(),
        };
        let client = client.clone();
        async move { client.create_token(&req).await.unwrap() }
    };
    let in_scope = token(&alice, &["call:alice/echo"], None).await.token;
    let out_of_scope = token(&alice, &["call:alice/other"], None).await.token;
    let expired = token(&alice, &["*"], Some(1)).await.token;
    let revoked = token(&alice, &["*"], None).await;
    alice.revoke_token(&revoked.id).await.unwrap();
    let inv = alice.invoke(&echo, None, "{}").await.unwrap().id;
    let job = alice
        .submit_job(&swb_api::SubmitJob {
            function: "alice/echo".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let upload = |bytes: &'static [u8]| {
        let alice = alice.clone();
        async move {
            alice
                .put_blob(bytes.into(), false, None)
                .await
                .unwrap()
                .digest
        }
    };
    let blob = upload(b"alice's data").await;
    let spare_blob = upload(b"alice's spare data").await;
    for c in CALLERS {
        let value = serde_json::json!({ "c": c });
        alice
            .put_profile(&echo, &format!("victim-{c}"), &value)
            .await
            .unwrap();
        let of = Some(format!("victim-{c}"));
        alice
            .set_secret(&alice_ns, "VICTIM", c.into(), of)
            .await
            .unwrap();
    }
    eventually("the invocation record", Duration::from_secs(10), || async {
        alice.invocation(&inv).await.ok()
    })
    .await;
    eventually(
        "the short token to expire",
        Duration::from_secs(10),
        || async {
            Client::new(&server.url, &expired)
                .me()
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;

    let tokens: [Option<String>; 9] = [
        None,
        Some(read_token(&alice)),
        Some(read_token(&bob)),
        Some(read_token(&carol)),
        Some(server.token.clone()),
        Some(in_scope),
        Some(out_of_scope),
        Some(expired),
        Some(revoked.token),
    ];
    // A spare unscoped token per user, for the revocation row.
    let spares = [
        String::from("nothing"),
        token(&alice, &["*"], None).await.id,
        token(&bob, &["*"], None).await.id,
        token(&carol, &["*"], None).await.id,
        token(&admin, &["*"], None).await.id,
        String::from("nothing"),
        String::from("nothing"),
        String::from("nothing"),
        String::from("nothing"),
    ];

    let rows = table(&digest);
    let declared: BTreeSet<(String, String)> = swb_server::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.route.to_owned()))
        .collect();
    assert_eq!(
        declared, covered,
        "every route needs rows in the authorization table"
    );

    let http = swb_client::tls::builder().build().unwrap();
    let mut failures = Vec::new();
    for r in &rows {
        for (who, name) in CALLERS.iter().enumerate() {
            let expected = match who {
                ANON | EXPIRED | REVOKED if !r.open => 401,
                ANON | EXPIRED | REVOKED => 200,
                _ => r.expect[who - 1],
            };
            if expected == 0 {
                continue;
            }
            let fill = |s: &str| {
                s.replace("{c}", name)
                    .replace("{tok}", &spares[who])
                    .replace("{inv}", &inv)
                    .replace("{digest}", &digest.to_string())
                    .replace("{job}", &job)
                    .replace("{spare-blob}", &spare_blob.to_string())
                    .replace("{blob}", &blob.to_string())
            };
            let mut req = http.request(r.method.clone(), format!("{}{}", server.url, fill(r.path)));
            if let Some(t) = &tokens[who] {
                req = req.bearer_auth(t);
            }
            req = match (&r.body, r.route) {
                (_, "/v1/artefacts/{digest}") => req.body(module.clone()),
                (Some(body), _) => req.body(fill(&body.to_string())),
                (None, _) => req,
            };
            let response = req.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status != expected {
                failures.push(format!(
                    "{} {} as {name}: expected {expected}, got {status}: {body}",
                    r.method, r.path
                ));
            } else if status == 401 {
                // Nothing but the error is revealed.
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["code"], "unauthenticated");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization mismatches:\n{}",
        failures.join("\n")
    );

    // Listings show only what the caller may see.
    let visible = |c: &Client| {
        let c = c.clone();
        async move {
            let list = c.functions().await.unwrap();
            list.functions
                .iter()
                .map(|f| f.function.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(visible(&bob).await, ["alice/echo"]);
    assert!(visible(&carol).await.is_empty());
    // Records are written in batches: once the owner reads the records of the calls
    // above, a caller with only `call` must still read none.
    eventually(
        "alice to read her function's records",
        Duration::from_secs(10),
        || async {
            let records = alice.invocations(&InvocationFilter::default()).await.ok()?;
            (!records.invocations.is_empty()).then_some(())
        },
    )
    .await;
    let records = bob.invocations(&InvocationFilter::default()).await.unwrap();
    assert!(
        records.invocations.is_empty(),
        "callers do not read the owner's records"
    );
}

/// The raw token a client was made with, through the API it exposes.
fn read_token(client: &Client) -> String {
    client.token().to_owned()
}
