//! No client can stall the server: limits apply before bytes are read, slow and
//! idle clients are cut off, the connection cap evicts idle connections, and a
//! stopping server does not wait for half-sent requests. Clients here are raw
//! sockets, so that they can misbehave.

mod common;

use common::bin;
use serde_json::Value;
use std::time::Duration;
use swb_testkit::{ServerProc, WorkerProc, deploy, guests};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(mode: &str, dir: &tempfile::TempDir, extra: &[&str]) -> ServerProc {
    ServerProc::start(bin(), mode, &dir.path().join("data"), extra).unwrap()
}

async fn connect(server: &ServerProc) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes, or fails after `deadline`.
async fn read_to_close(tcp: &mut TcpStream, deadline: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(deadline, tcp.read_to_end(&mut out))
        .await
        .expect("the server answers and closes in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the server drops the connection (a close or a reset: a connection
/// dropped with bytes it never read is reset), or fails after `deadline`.
async fn dropped(tcp: &mut TcpStream, deadline: Duration) {
    let mut out = Vec::new();
    let read = tokio::time::timeout(deadline, tcp.read_to_end(&mut out))
        .await
        .expect("the server drops the connection in time");
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
}

/// The status line and the JSON body of a raw HTTP/1.1 answer.
fn parse(answer: &str) -> (String, Value) {
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn head(token: &str, path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: swb\r\nAuthorization: Bearer {token}\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = start("up", &dir, &["--max-body-mb", "1"]);
    deploy(&server.client(), "admin/echo", guests::echo(), |_| {})
        .await
        .unwrap();
    // The client asks whether it may send 100 MB and sends nothing until told.
    let mut tcp = connect(&server).await;
    let request = head(
        &server.token,
        "/v1/functions/admin/echo/invoke",
        "Content-Length: 104857600\r\nExpect: 100-continue\r\n",
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(!answer.contains("100 Continue"), "{answer}");
    let (status, body) = parse(&answer);
    assert!(status.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["details"]["limit_bytes"], 1 << 20);

    // Blobs have their own limit, checked the same way.
    let mut tcp = connect(&server).await;
    let request = head(
        &server.token,
        "/v1/blobs",
        "Content-Length: 10485760000\r\nExpect: 100-continue\r\n",
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = parse(&read_to_close(&mut tcp, Duration::from_secs(10)).await);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-blob-mb")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_stalled_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        "server",
        &dir,
        &["--header-timeout", "1s", "--body-timeout", "1s"],
    );
    // Half a head, then silence: the connection is closed.
    let mut slow_head = connect(&server).await;
    slow_head
        .write_all(b"GET /v1/me HTTP/1.1\r\nHost: swb\r\n")
        .await
        .unwrap();
    dropped(&mut slow_head, Duration::from_secs(10)).await;

    // A whole head and part of the body, then silence: request_timeout.
    let mut slow_body = connect(&server).await;
    let request = head(&server.token, "/v1/jobs", "Content-Length: 100\r\n") + "{\"fun";
    slow_body.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = parse(&read_to_close(&mut slow_body, Duration::from_secs(10)).await);
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert_eq!(body["error"]["code"], "request_timeout");

    // Meanwhile, and after, ordinary requests are served.
    server.client().me().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        "server",
        &dir,
        &["--max-connections", "8", "--header-timeout", "60s"],
    );
    // Twenty connections that never finish their request.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut tcp = connect(&server).await;
        tcp.write_all(b"GET /v1/me HTTP/1.1\r\n").await.unwrap();
        stalled.push(tcp);
    }
    // A real client still gets in …
    let me = server.client().me().await.unwrap();
    assert_eq!(me.user.email, "admin@localhost");
    // … because the oldest stalled connections were closed to make room.
    dropped(&mut stalled[0], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_does_not_wait_for_half_sent_requests_and_a_second_signal_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start("server", &dir, &["--header-timeout", "300s"]);
    let mut half_sent = connect(&server).await;
    half_sent
        .write_all(b"GET /v1/me HTTP/1.1\r\nHost: swb\r\n")
        .await
        .unwrap();
    server.client().me().await.unwrap();
    server.sigterm().unwrap();
    let status = tokio::task::block_in_place(|| server.exited_within(Duration::from_secs(10)))
        .expect("the server exits without waiting for the half-sent request");
    assert!(status.success(), "{status}");

    // A call that runs for a minute would hold the drain; a second signal ends it.
    let dir = tempfile::tempdir().unwrap();
    let mut server = start("server", &dir, &["--drain-timeout", "300s"]);
    let worker = WorkerProc::start(
        bin(),
        &server,
        "w1",
        &dir.path().join("cache"),
        &["--capacity", "2"],
    )
    .unwrap();
    swb_testkit::connected(&server.client(), "w1").await;
    deploy(&server.client(), "admin/nap", guests::sleeps(60_000), |r| {
        r.limits.timeout_ms = Some(120_000)
    })
    .await
    .unwrap();
    let client = server.client();
    let call =
        tokio::spawn(async move { client.invoke(&"admin/nap".parse().unwrap(), None, "").await });
    swb_testkit::eventually("the call to run", Duration::from_secs(20), || async {
        let list = server.client().workers().await.ok()?;
        list.workers.iter().any(|w| w.in_flight > 0).then_some(())
    })
    .await;
    server.sigterm().unwrap();
    assert!(
        tokio::task::block_in_place(|| server.exited_within(Duration::from_millis(500))).is_none(),
        "the first signal waits for the running call"
    );
    server.sigterm().unwrap();
    tokio::task::block_in_place(|| server.exited_within(Duration::from_secs(10)))
        .expect("a second signal exits at once");
    assert!(call.await.unwrap().is_err(), "the call was cut off");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_share_a_bounded_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        "server",
        &dir,
        &[
            "--max-body-mb",
            "1",
            "--max-body-memory-mb",
            "1",
            "--body-timeout",
            "2s",
        ],
    );
    let job = |n: usize| {
        let body = format!(
            "{{\"function\":\"admin/none\",\"input\":\"{}\"}}",
            "x".repeat(n)
        );
        head(
            &server.token,
            "/v1/jobs",
            &format!("Content-Length: {}\r\n", body.len()),
        ) + &body
    };
    // A slow client declares a body as large as the whole budget and trickles it.
    let mut slow = connect(&server).await;
    slow.write_all(head(&server.token, "/v1/jobs", "Content-Length: 1048576\r\n").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        while slow.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // The first answer of a small request on a connection of its own.
    let answer = |server: &ServerProc| {
        // Over 64 KiB: smaller bodies take no reservation (see `SMALL_BODY`).
        let (addr, request) = (
            server.url.trim_start_matches("http://").to_owned(),
            job(100_000),
        );
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 4096];
            let n = tcp.read(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer[..n]).into_owned()
        }
    };
    // Once the slow request holds the memory (it may be read after the next one),
    // another request waits for memory up to the body timeout, then is told so.
    let refused = swb_testkit::eventually(
        "a request to find no memory",
        Duration::from_secs(30),
        || async {
            let answer = answer(&server).await;
            answer.starts_with("HTTP/1.1 503").then_some(answer)
        },
    )
    .await;
    assert_eq!(
        parse(&refused).1["error"]["code"],
        "overloaded",
        "{refused}"
    );
    // Once the slow client is gone, its memory is free again.
    trickle.abort();
    swb_testkit::eventually("the budget to free", Duration::from_secs(10), || async {
        answer(&server)
            .await
            .starts_with("HTTP/1.1 404")
            .then_some(())
    })
    .await;
}
