//! Attacks by an ordinary user (a REST client, a hand-written worker), replayed
//! against the real binary: a digest grants nothing, tokens obey their parents,
//! metrics need a token.

mod common;

use bytes::Bytes;
use common::{Cluster, assert_code};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use swb_api::protocol::{Frame, PROTOCOL_VERSION, ServerMsg, WorkerMsg};
use swb_api::{CreateTokenRequest, DeployRequest, Digest, ErrorCode, FunctionRef};
use swb_client::Client;
use swb_testkit::{deploy, eventually, guests};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn user(admin: &Client, email: &str) -> Client {
    let created = admin.create_user(email).await.unwrap();
    Client::new(admin.base_url(), &created.token)
}

fn pin(digest: Digest) -> DeployRequest {
    serde_json::from_value(serde_json::json!({ "artefact": digest })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_is_no_capability_over_rest() {
    let c = Cluster::start(false, &[]).await;
    let alice = user(&c.client, "alice@example.com").await;
    let bob = user(&c.client, "bob@example.com").await;
    let secret = guests::prints("alice's secret");
    let digest = Digest::of(&secret);
    deploy(&alice, "alice/secret", secret.clone(), |_| {})
        .await
        .unwrap();

    // Stored, but not Bob's: missing for him, present for Alice and the admin.
    assert_eq!(bob.missing(vec![digest]).await.unwrap(), vec![digest]);
    assert!(alice.missing(vec![digest]).await.unwrap().is_empty());
    assert!(c.client.missing(vec![digest]).await.unwrap().is_empty());

    // Pinning it without the bytes reads as if it did not exist.
    let copy: FunctionRef = "bob/copy".parse().unwrap();
    let e = assert_code(
        bob.deploy(&copy, &pin(digest)).await.unwrap_err(),
        ErrorCode::NotFound,
    );
    assert!(e.message.contains("upload it first"), "{}", e.message);

    // Deploy rights on Alice's namespace reach what her functions pin.
    let lab_member = user(&c.client, "carol@example.com").await;
    let alice_ns = "alice".parse().unwrap();
    alice
        .share(
            swb_client::ShareTarget::Namespace(&alice_ns),
            "carol@example.com",
            swb_api::Role::Deploy,
        )
        .await
        .unwrap();
    assert!(lab_member.missing(vec![digest]).await.unwrap().is_empty());

    // Uploading the bytes proves Bob has them; then the digest is his to pin too.
    bob.put_artefact(&digest, Bytes::from(secret), |_| {})
        .await
        .unwrap();
    assert!(bob.missing(vec![digest]).await.unwrap().is_empty());
    bob.deploy(&copy, &pin(digest)).await.unwrap();
}

/// A worker speaking the protocol by hand.
struct RawWorker {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawWorker {
    async fn connect(url: &str, token: &str) -> Self {
        let ws = format!("{}/v1/worker/connect", url.replace("http://", "ws://"));
        let mut request = ws.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Self { socket }
    }

    async fn send(&mut self, msg: WorkerMsg) {
        self.socket
            .send(Message::Binary(msg.encode()))
            .await
            .unwrap();
    }

    /// Sends a frame whose header is `json`, as a hostile worker may.
    async fn send_header(&mut self, json: &str) {
        let mut frame = (json.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(json.as_bytes());
        self.socket
            .send(Message::Binary(frame.into()))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> ServerMsg {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("a message from the server in time")
                .expect("the session is open")
                .unwrap();
            if let Message::Binary(bytes) = frame {
                return ServerMsg::decode(bytes).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gets_no_code_it_was_not_sent_a_call_of() {
    let c = Cluster::start(false, &[]).await;
    let alice = user(&c.client, "alice@example.com").await;
    let bob = user(&c.client, "bob@example.com").await;
    let secret = guests::prints("alice's secret module");
    let stolen = Digest::of(&secret);
    deploy(&alice, "alice/secret", secret.clone(), |_| {})
        .await
        .unwrap();

    // Bob's worker claims to have Alice's module, reports it compiled, asks for it.
    let mut thief = RawWorker::connect(&c.server.url, bob.token()).await;
    thief
        .send(WorkerMsg::Hello {
            protocol: PROTOCOL_VERSION,
            name: "thief".into(),
            labels: Default::default(),
            capacity: 1,
            runtimes: vec!["wasm".into()],
            cached: vec![stolen],
            functions: vec![],
        })
        .await;
    assert!(matches!(thief.recv().await, ServerMsg::Welcome { .. }));
    thief
        .send(WorkerMsg::Compiled {
            digest: stolen,
            error: None,
        })
        .await;
    thief.send(WorkerMsg::NeedCode { digest: stolen }).await;
    let refusal = eventually(
        "the refusal in the audit log",
        Duration::from_secs(10),
        || {
            let admin = c.client.clone();
            async move {
                let events = admin.audit(Some(50)).await.unwrap().events;
                events
                    .into_iter()
                    .find(|e| e.action == "worker.need_code.refused")
            }
        },
    )
    .await;
    assert_eq!(refusal.actor, "bob@example.com");
    assert_eq!(refusal.target, stolen.to_string());

    // Bob deploys his own function: its code is the next thing the worker gets,
    // and nothing before it carries Alice's module.
    let own = guests::prints("bob's own module");
    let own_digest = Digest::of(&own);
    let deployed = tokio::spawn({
        let bob = bob.clone();
        async move { deploy(&bob, "bob/own", own, |_| {}).await.unwrap() }
    });
    loop {
        let msg = thief.recv().await;
        if let Some(payload) = msg.payload() {
            assert!(
                !payload.windows(secret.len()).any(|w| w == &secret[..]),
                "Alice's module reached Bob's worker"
            );
        }
        match msg {
            ServerMsg::Code { digest, .. } if digest == own_digest => {
                thief
                    .send(WorkerMsg::Compiled {
                        digest,
                        error: None,
                    })
                    .await;
                break;
            }
            ServerMsg::Code { digest, .. } => panic!("the worker was sent {digest}"),
            _ => {}
        }
    }
    assert_eq!(deployed.await.unwrap().workers.compiled, 1);
}

fn hello(capacity: u32, name: &str, labels: usize, functions: usize) -> WorkerMsg {
    WorkerMsg::Hello {
        protocol: PROTOCOL_VERSION,
        name: name.into(),
        labels: (0..labels).map(|i| (format!("k{i}"), "v".into())).collect(),
        capacity,
        runtimes: vec![],
        cached: vec![],
        functions: (0..functions)
            .map(|i| swb_api::protocol::ServedFunction {
                function: format!("admin/f{i}").parse().unwrap(),
                interface: Default::default(),
                replace: false,
                idempotent: false,
                timeout_ms: None,
                calls: vec![],
                secrets: vec![],
                keep_io: false,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_past_its_bounds_is_refused_naming_the_field() {
    let c = Cluster::start(false, &[]).await;
    let cases = [
        (hello(u32::MAX, "w", 0, 0), "hello.capacity"),
        (hello(0, "w", 0, 0), "hello.capacity"),
        (hello(4, &"n".repeat(1000), 0, 0), "hello.name"),
        (hello(4, "w", 20_000, 0), "hello.labels"),
        (hello(4, "w", 0, 2_000), "hello.functions"),
    ];
    for (msg, field) in cases {
        let mut worker = RawWorker::connect(&c.server.url, &c.server.token).await;
        worker.send(msg).await;
        match worker.recv().await {
            ServerMsg::Refused { error } => {
                assert_eq!(error.code, ErrorCode::InvalidInput);
                assert!(error.message.starts_with(field), "{}", error.message);
            }
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
    }
    // A hello that does not decode (capacity 2^63) is refused too, not just closed.
    let mut worker = RawWorker::connect(&c.server.url, &c.server.token).await;
    worker
        .send_header(
            r#"{"type":"hello","protocol":1,"name":"w","capacity":9223372036854775808,"runtimes":[]}"#,
        )
        .await;
    match worker.recv().await {
        ServerMsg::Refused { error } => {
            assert!(error.message.contains("undecodable"), "{}", error.message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing of it was registered.
    assert!(c.client.workers().await.unwrap().workers.is_empty());
    assert!(c.client.functions().await.unwrap().functions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_obey_their_parents() {
    let c = Cluster::start(false, &[]).await;
    let alice = user(&c.client, "alice@example.com").await;
    let url = c.server.url.clone();
    let create = |client: &Client, scopes: &[&str], expires_in_s: Option<u64>| {
        let (client, req) = (
            client.clone(),
            CreateTokenRequest {
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires_in_s,
                description: String::new(),
            },
        );
        async move { client.create_token(&req).await }
    };
    let laptop = create(&alice, &["*"], None).await.unwrap();
    let laptop_client = Client::new(&url, &laptop.token);
    let ci = create(&laptop_client, &["call:alice/echo"], None)
        .await
        .unwrap();
    let ci_client = Client::new(&url, &ci.token);

    // A scoped token mints nothing, not even something narrower.
    assert_code(
        create(&ci_client, &["call:alice/echo"], None)
            .await
            .unwrap_err(),
        ErrorCode::Forbidden,
    );
    // Nobody but an administrator holds the metrics scope.
    assert_code(
        create(&alice, &["metrics"], None).await.unwrap_err(),
        ErrorCode::Forbidden,
    );

    // The list names each token's parent.
    let tokens = alice.tokens().await.unwrap().tokens;
    let parent_of = |id: &str| tokens.iter().find(|t| t.id == id).unwrap().parent.clone();
    assert_eq!(parent_of(&ci.id), Some(laptop.id.clone()));
    assert!(
        parent_of(&laptop.id).is_some(),
        "made with the account token"
    );

    // Revoking the parent revokes the child at once.
    ci_client.me().await.unwrap();
    alice.revoke_token(&laptop.id).await.unwrap();
    assert_code(
        ci_client.me().await.unwrap_err(),
        ErrorCode::Unauthenticated,
    );
    let audit = alice.audit(Some(5)).await.unwrap().events;
    let revoke = audit.iter().find(|e| e.action == "token.revoke").unwrap();
    assert_eq!(revoke.details["with"], serde_json::json!([ci.id]));

    // A child never outlives its parent's expiry.
    let short = create(&alice, &["*"], Some(60)).await.unwrap();
    let long = create(&Client::new(&url, &short.token), &["*"], Some(3600))
        .await
        .unwrap();
    assert_eq!(long.expires_at, short.expires_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_administrator_or_a_metrics_token() {
    let c = Cluster::start(false, &[]).await;
    let alice = user(&c.client, "alice@example.com").await;
    assert_code(alice.metrics().await.unwrap_err(), ErrorCode::Forbidden);
    let scrape = c
        .client
        .create_token(&CreateTokenRequest {
            scopes: vec!["metrics".into()],
            expires_in_s: None,
            description: "prometheus".into(),
        })
        .await
        .unwrap();
    let prometheus = Client::new(&c.server.url, &scrape.token);
    let text = prometheus.metrics().await.unwrap();
    assert!(text.contains("swb_workers_connected"), "{text}");
    // … and that token reads nothing else.
    assert_code(
        prometheus.users().await.map(|_| ()).unwrap_err(),
        ErrorCode::Forbidden,
    );
}
