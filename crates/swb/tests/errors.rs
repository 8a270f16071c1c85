//! Every error of the table that a request (rather than a guest) can cause, against
//! a real `swb server`.

mod common;

use common::{Cluster, api_error, assert_code};
use reqwest::StatusCode;
use serde_json::Value;
use swb_api::{Digest, ErrorCode};
use swb_testkit::{deploy, guests};

async fn raw(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_precise_errors() {
    let c = Cluster::start(false, &["--max-body-mb", "1"]).await;
    let http = swb_client::tls::builder().build().unwrap();
    let url = |p: &str| format!("{}{p}", c.server.url);

    // The one open endpoint; metrics name every function, so they need a token.
    let r = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let metrics = c.client.metrics().await.unwrap();
    assert!(metrics.contains("swb_workers_connected"), "{metrics}");

    // Authentication on everything else.
    for auth in [
        None,
        Some("Bearer swb_0000_1111"),
        Some("Basic abc"),
        Some("Bearer nonsense"),
    ] {
        let mut req = http.get(url("/v1/functions"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (status, body) = raw(req).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let bearer = format!("Bearer {}", c.server.token);
    let (status, body) = raw(http
        .get(url("/v1/openapi.json"))
        .header("authorization", &bearer))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["openapi"], "3.1.0");

    // Unknown things.
    let (status, body) = raw(http
        .get(url("/v1/nothing"))
        .header("authorization", &bearer))
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // The framework's own refusals speak the error format too.
    for (req, status, code) in [
        (http.delete(url("/v1/me")), 405, "method_not_allowed"),
        (http.get(url("/v1/functions/%ff/x")), 400, "invalid_input"),
        (http.get(url("/v1/worker/connect")), 400, "invalid_input"),
        // U+0000 is no part of a name or id, and no database text column holds it.
        (http.get(url("/v1/jobs/a%00b")), 400, "invalid_input"),
        (http.get(url("/v1/jobs?cursor=%00")), 400, "invalid_input"),
        (
            http.post(url("/v1/tokens"))
                .json(&serde_json::json!({ "scopes": ["*"], "description": "a\u{0}b" })),
            400,
            "invalid_input",
        ),
        // JSON has one kind of number: 2.0 is the integer 2; 2.5 is not one.
        (
            http.post(url("/v1/jobs"))
                .json(&serde_json::json!({ "function": "admin/none", "max_attempts": 2.0 })),
            404,
            "not_found",
        ),
        (
            http.post(url("/v1/jobs"))
                .json(&serde_json::json!({ "function": "admin/none", "max_attempts": 2.5 })),
            400,
            "invalid_input",
        ),
    ] {
        let (got, body) = raw(req.header("authorization", &bearer)).await;
        assert_eq!(
            (got.as_u16(), body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let echo: swb_api::FunctionRef = "admin/echo".parse().unwrap();
    let e = assert_code(
        c.client.function(&echo).await.unwrap_err(),
        ErrorCode::NotFound,
    );
    assert!(e.message.contains("admin/echo"), "{}", e.message);

    // Malformed JSON and wrong shapes.
    let (status, body) = raw(http
        .post(url("/v1/functions/admin/echo/versions"))
        .header("authorization", &bearer)
        .body("{\"artefact\": "))
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    assert!(body["error"]["details"]["line"].is_number());
    let (status, body) = raw(http
        .post(url("/v1/functions/admin/echo/versions"))
        .header("authorization", &bearer)
        .body("{\"artefact\":\"sha256:00\"}"))
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    // Artefacts: the digest must match; the size limit holds.
    let wrong = Digest::of(b"something else");
    let (status, body) = raw(http
        .put(url(&format!("/v1/artefacts/{wrong}")))
        .header("authorization", &bearer)
        .body(guests::echo()))
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let big = vec![0u8; 2 << 20];
    let r = http
        .put(url(&format!("/v1/artefacts/{}", Digest::of(&big))))
        .header("authorization", &bearer)
        .body(big)
        .send()
        .await
        .unwrap();
    // Answered before the body is read: the connection is not for another request
    // (the pooled client goes on below with a new one).
    assert_eq!(r.headers()["connection"], "close");
    let (status, body) = (r.status(), r.json::<Value>().await.unwrap());
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let module = guests::echo();
    let digest = Digest::of(&module);
    assert_eq!(c.client.missing(vec![digest]).await.unwrap(), vec![digest]);
    let put = |m: Vec<u8>| {
        http.put(url(&format!("/v1/artefacts/{digest}")))
            .header("authorization", &bearer)
            .body(m)
    };
    assert_eq!(put(module.clone()).send().await.unwrap().status(), 201);
    assert_eq!(put(module.clone()).send().await.unwrap().status(), 200);
    assert!(c.client.missing(vec![digest]).await.unwrap().is_empty());

    // Modules that cannot run are refused at deploy, naming the reason.
    let cases: [(Vec<u8>, &str, &str); 3] = [
        (
            b"definitely not wasm".to_vec(),
            "malformed",
            "not a WebAssembly module",
        ),
        (guests::no_start(), "no_start", "_start"),
        (guests::bad_import(), "forbidden_import", "env::open_socket"),
    ];
    for (module, reason, says) in cases {
        let e = assert_code(
            deploy(&c.client, "admin/bad", module, |_| {})
                .await
                .unwrap_err(),
            ErrorCode::InvalidModule,
        );
        assert_eq!(e.details["reason"], reason);
        assert!(e.message.contains(says), "{}", e.message);
    }
    assert_code(
        c.client
            .function(&"admin/bad".parse().unwrap())
            .await
            .unwrap_err(),
        ErrorCode::NotFound,
    );

    // Bad schemas and limits name the failing pointer.
    let e = api_error(
        deploy(&c.client, "admin/echo", guests::echo(), |r| {
            r.interface.input = Some(serde_json::json!({ "type": "no-such-type" }));
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.details["pointer"].as_str()),
        (ErrorCode::InvalidInput, Some("/interface/input"))
    );
    let e = api_error(
        deploy(&c.client, "admin/echo", guests::echo(), |r| {
            r.limits.memory_mb = Some(999_999)
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.details["pointer"], "/limits/memory_mb");

    // A deployable function with no worker to run it.
    let deployed = deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    assert_eq!(deployed.version.version, 1);
    assert_eq!(
        (deployed.workers.compiled, deployed.workers.pending),
        (0, 0)
    );
    let e = c.client.invoke(&echo, None, "hi").await.unwrap_err();
    assert!(e.invocation_id.is_some());
    let e = assert_code(e.error, ErrorCode::NoWorker);
    assert!(e.message.contains("admin/echo"), "{}", e.message);
    let e = c.client.invoke(&echo, Some(7), "hi").await.unwrap_err();
    assert_code(e.error, ErrorCode::NotFound);
    let e = c
        .client
        .invoke(&echo, None, vec![b'x'; 2 << 20])
        .await
        .unwrap_err();
    assert!(
        e.invocation_id.is_some(),
        "an oversized call is still on record"
    );
    assert_code(e.error, ErrorCode::PayloadTooLarge);

    // Bad query parameters.
    let (status, _) = raw(http
        .get(url("/v1/invocations?outcome=weird"))
        .header("authorization", &bearer))
    .await;
    assert_eq!(status, 400);
    let (status, _) = raw(http
        .get(url("/v1/invocations?limit=0"))
        .header("authorization", &bearer))
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_submissions_validate_alike() {
    let c = Cluster::start(false, &[]).await;
    let http = swb_client::tls::builder().build().unwrap();
    let bearer = format!("Bearer {}", c.server.token);
    let get = |path: &str| {
        http.get(format!("{}{path}", c.server.url))
            .header("authorization", &bearer)
    };
    // Every listing takes limits in the same range and refuses cursors it never gave.
    for path in [
        "/v1/audit?limit=0",
        "/v1/audit?limit=5000",
        "/v1/jobs?limit=0",
        "/v1/jobs?cursor=garbage",
        "/v1/invocations?after=garbage",
        "/v1/invocations?limit=5000",
    ] {
        let (status, body) = raw(get(path)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some("invalid_input")),
            "{path}: {body}"
        );
    }
    assert_eq!(raw(get("/v1/audit?limit=1000")).await.0, 200);

    // An empty upload is not a blob.
    let (status, body) = raw(http
        .post(format!("{}/v1/blobs", c.server.url))
        .header("authorization", &bearer))
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    assert!(c.client.blobs().await.unwrap().blobs.is_empty());

    // An idempotency key names one request: reused for another, it is a conflict.
    deploy(&c.client, "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    deploy(&c.client, "admin/other", guests::prints("x"), |_| {})
        .await
        .unwrap();
    let submit = |function: &str, input: serde_json::Value| {
        let job = swb_api::SubmitJob {
            function: function.into(),
            input: Some(input),
            idempotency_key: Some("nightly-7".into()),
            ..Default::default()
        };
        let client = c.client.clone();
        async move { client.submit_job(&job).await }
    };
    let first = submit("admin/echo", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let again = submit("admin/echo", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    for (function, input) in [
        ("admin/echo", serde_json::json!({"n": 2})),
        ("admin/other", serde_json::json!({"n": 1})),
    ] {
        let e = assert_code(
            submit(function, input).await.unwrap_err(),
            ErrorCode::Conflict,
        );
        assert!(e.message.contains(&first.id), "{}", e.message);
    }

    // The bootstrap admin's address is an address: it can be shared with.
    let lab: swb_api::Namespace = "lab".parse().unwrap();
    let alice = c.client.create_user("alice@example.com").await.unwrap();
    let alice = swb_client::Client::new(&c.server.url, &alice.token);
    alice.create_namespace(&lab).await.unwrap();
    alice
        .share(
            swb_client::ShareTarget::Namespace(&lab),
            "admin@localhost",
            swb_api::Role::Call,
        )
        .await
        .unwrap();
}
