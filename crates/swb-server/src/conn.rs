//! The HTTP server: one task per connection, which polls itself again when it wakes
//! itself rather than going back to tokio's queue; and the limits that keep any one
//! client from stalling it (slow heads and bodies, too many connections, shutdown).

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::serve::Listener;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

/// What the HTTP layer allows a client.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A connection that runs no request (it is still sending a head, or it sits idle
    /// between requests) for this long is closed.
    pub header_timeout: Duration,
    /// A request body that delivers nothing for this long fails (`request_timeout`).
    pub body_timeout: Duration,
    /// Most HTTP connections open at once. A new one past this closes the connection
    /// that has waited longest without running a request (idle, or still sending its
    /// head); if every connection is running one, the new connection is closed.
    pub max_connections: usize,
    /// After a stop signal, how long requests already running may take to finish.
    pub drain: Duration,
}

impl HttpLimits {
    /// Defaults: 10 s without a request, 30 s of silence in a body, 3/4 of the process's
    /// file-descriptor limit in connections, 30 s to drain.
    pub fn new() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
            drain: Duration::from_secs(30),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// Three quarters of the soft file-descriptor limit: the rest stays for worker
/// sessions, the database, blobs and logs.
fn default_max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    (soft.saturating_mul(3) / 4).clamp(64, 100_000) as usize
}

/// Serves `router` on `listener` until `shutdown` resolves. Then it stops accepting,
/// closes the connections that are not running a request (idle, or half-sent) at
/// once, lets running requests finish for up to `limits.drain`, and closes the rest.
/// (WebSocket sessions, once upgraded, are no longer connections here.)
///
/// This is `axum::serve` with two differences. Limits: see [`HttpLimits`]. Latency:
/// hyper's connection task wakes itself once per request with a body (taking the
/// body's bytes wakes the connection that sent them, the same task), and tokio
/// treats a task woken while it runs as one that yielded: it queues the task behind
/// the others and wakes a sleeping thread to share the work, which on an otherwise
/// idle server costs a thread wake-up per request. Here such a wake-up polls the
/// connection again at once ([`SelfWaking`]).
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection task holds a receiver: all dropped = all connections done.
    let (stop, stopping) = watch::channel(false);
    let conns = Arc::new(Conns::default());
    let http = hyper::server::conn::http1::Builder::new();
    COARSE_MS.fetch_max(now_ms(), Ordering::Relaxed);
    let sweeper = tokio::spawn(sweep(conns.clone(), limits.header_timeout));
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            // Accept errors are handled as axum does (a full file table waits 1 s).
            (tcp, _) = Listener::accept(&mut listener) => tcp,
            _ = &mut shutdown => break,
        };
        let Some(conn) = conns.admit(limits.max_connections).await else {
            tracing::warn!(
                limit = limits.max_connections,
                "every connection is running a request; refusing a new one"
            );
            continue;
        };
        // Small answers go out at once rather than waiting on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let mut service = Service {
            router: router.clone(),
            conn: conn.clone(),
            body_timeout: limits.body_timeout,
            peer: None,
        };
        let stopping = stopping.clone();
        let http = http.clone();
        let conns = conns.clone();
        let tls = tls.clone();
        tokio::spawn(SelfWaking::new(Box::pin(async move {
            let _registered = Registered(&conns, conn.id);
            let io = Linger::new(tcp);
            let Some(tls) = tls else {
                return run(&http, TokioIo::new(io), service, &conn, stopping).await;
            };
            // The handshake counts as the request's head: the sweeper closes a
            // connection that has not finished it within the header timeout.
            let stream = tokio::select! {
                stream = tls.accept(io) => match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                },
                _ = conn.close.notified() => return,
            };
            service.peer = (stream.get_ref().1.peer_certificates())
                .and_then(|chain| chain.first())
                .map(|leaf| crate::tls::PeerCertificate(crate::tls::fingerprint(leaf)));
            run(&http, TokioIo::new(stream), service, &conn, stopping).await
        })));
    }
    // New connections are refused from here on rather than left in the backlog.
    drop(listener);
    sweeper.abort();
    let _ = stop.send(true);
    drop(stopping);
    if tokio::time::timeout(limits.drain, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = conns.len(),
            "requests still running after the drain period; closing them"
        );
        conns.close_all();
        stop.closed().await;
    }
}

/// Serves one connection until it closes, is closed (swept, evicted) or the server
/// stops: then a connection not running a request closes at once, and one that is
/// finishes it (or is closed at the end of the drain).
async fn run<I>(
    http: &hyper::server::conn::http1::Builder,
    io: TokioIo<I>,
    service: Service,
    conn: &Conn,
    mut stopping: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = http.serve_connection(io, service).with_upgrades();
    let mut served = pin!(served);
    tokio::select! {
        _ = served.as_mut() => return,
        _ = conn.close.notified() => return,
        _ = stopping.wait_for(|s| *s) => {}
    }
    if conn.busy.load(Ordering::Acquire) == 0 {
        return;
    }
    served.as_mut().graceful_shutdown();
    tokio::select! {
        _ = served => {}
        _ = conn.close.notified() => {}
    }
}

/// Closes the connections that have run no request for `timeout`: slow or stalled
/// heads, and idle keep-alive connections. One task for all connections, instead of
/// a timer per connection reset with every request.
async fn sweep(conns: Arc<Conns>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let timeout = timeout.as_millis() as u64;
    loop {
        tokio::time::sleep(tick).await;
        let now = now_ms();
        COARSE_MS.fetch_max(now, Ordering::Relaxed);
        conns.close_idle(now.saturating_sub(timeout));
    }
}

/// The open HTTP connections, for the connection cap and shutdown.
#[derive(Default)]
struct Conns {
    /// Every connection whose task still runs (and so holds its socket), closing
    /// ones included: the count is of file descriptors in use.
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    /// Signalled when a connection's task ends.
    freed: Notify,
}

/// What [`Conns::try_admit`] found.
enum Admit {
    Admitted(Arc<Conn>),
    /// At the cap; a connection was told to close (or already closes): wait for it.
    Wait,
    /// At the cap, every connection running a request.
    Full,
}

struct Conn {
    id: u64,
    /// Requests this connection is running, from the head read to the last byte of
    /// the answer written (0: idle, or reading a head).
    busy: AtomicU32,
    /// When it last started or finished a request (to a sweeper's tick), or opened:
    /// ms since `EPOCH`.
    since: AtomicU64,
    /// Told to close (evicted for a new connection, idle too long, or the drain
    /// period is over).
    close: Notify,
    closing: AtomicBool,
}

impl Conn {
    fn close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.close.notify_one();
        }
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && !self.closing.load(Ordering::Acquire)
    }
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// `now_ms()` as of the sweeper's last tick: what requests stamp their connection
/// with, so that a request reads no clock (it is off by at most a tick).
static COARSE_MS: AtomicU64 = AtomicU64::new(0);

fn coarse_ms() -> u64 {
    COARSE_MS.load(Ordering::Relaxed)
}

impl Conns {
    /// Registers a new connection. At the cap it first closes the one that has
    /// waited longest without running a request and waits until a connection's task
    /// has ended (its socket closed), so that the sockets in use never pass the cap
    /// by more than the one being admitted; if every connection is running a
    /// request, the new one is refused.
    async fn admit(&self, max: usize) -> Option<Arc<Conn>> {
        loop {
            let freed = self.freed.notified();
            match self.try_admit(max) {
                Admit::Admitted(conn) => return Some(conn),
                Admit::Full => return None,
                Admit::Wait => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), freed).await;
                }
            }
        }
    }

    fn try_admit(&self, max: usize) -> Admit {
        let mut open = self.open.lock().expect("conns lock");
        if open.len() >= max {
            let oldest = open
                .values()
                .filter(|c| c.idle())
                // The longest wait; of equal ones (same millisecond), the oldest.
                .min_by_key(|c| (c.since.load(Ordering::Relaxed), c.id));
            return match oldest {
                Some(oldest) => {
                    oldest.close();
                    Admit::Wait
                }
                None if open.values().any(|c| c.closing.load(Ordering::Acquire)) => Admit::Wait,
                None => Admit::Full,
            };
        }
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(now_ms()),
            close: Notify::new(),
            closing: AtomicBool::new(false),
        });
        open.insert(conn.id, conn.clone());
        Admit::Admitted(conn)
    }

    /// Closes every connection that has run no request since `before` (ms).
    fn close_idle(&self, before: u64) {
        for c in self.open.lock().expect("conns lock").values() {
            if c.idle() && c.since.load(Ordering::Relaxed) < before {
                c.close();
            }
        }
    }

    fn len(&self) -> usize {
        self.open.lock().expect("conns lock").len()
    }

    fn close_all(&self) {
        for conn in self.open.lock().expect("conns lock").values() {
            conn.close();
        }
    }
}

/// Removes a connection from [`Conns`] when its task ends.
struct Registered<'a>(&'a Conns, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.open.lock().expect("conns lock").remove(&self.1);
        self.0.freed.notify_one();
    }
}

/// A connection's service: the router, with the request counted as running while
/// it is, and its body bounded by [`Progress`].
#[derive(Clone)]
struct Service {
    router: Router,
    conn: Arc<Conn>,
    body_timeout: Duration,
    /// The certificate the client presented over TLS, if any.
    peer: Option<crate::tls::PeerCertificate>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Running<axum::routing::future::RouteFuture<Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = Busy::start(&self.conn);
        let mut req = req.map(|body| Body::new(Progress::new(body, self.body_timeout)));
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        Running {
            inner: tower_service::Service::call(&mut self.router.clone(), req),
            busy: Some(busy),
        }
    }
}

/// Counts a request as running until its answer has been written (its body dropped),
/// or until it is dropped unanswered.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.since.store(coarse_ms(), Ordering::Relaxed);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.since.store(coarse_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, counted as running while it lives; the count
    /// passes to the answer's body, which holds it until it is written.
    pub struct Running<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Running<F> {
    type Output = Result<Response<Answer>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx));
        let busy = this.busy.take();
        Poll::Ready(response.map(|r| r.map(|body| Answer { body, _busy: busy })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, which keeps its request counted as running until written.
    pub struct Answer {
        #[pin]
        body: Body,
        _busy: Option<Busy>,
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// How long a closing connection keeps reading what its client still sends, and
/// how much of it, before it closes.
const LINGER: Duration = Duration::from_secs(3);
const LINGER_BYTES: u64 = 256 << 20;

pin_project_lite::pin_project! {
    /// A connection that closes gently. A request refused before its body was read
    /// (413 for a declared length over the limit) is answered while the client is
    /// still sending; closing the socket with unread bytes in it would reset the
    /// connection and destroy the answer before the client reads it. So a closing
    /// connection first shuts its sending side, then reads and discards what the
    /// client still sends until it closes too, for at most [`LINGER`] and
    /// [`LINGER_BYTES`] (what nginx calls a lingering close). Nothing read then is
    /// kept.
    pub struct Linger {
        #[pin]
        tcp: tokio::net::TcpStream,
        closing: Option<(Pin<Box<Sleep>>, u64)>,
    }
}

impl Linger {
    fn new(tcp: tokio::net::TcpStream) -> Self {
        Self { tcp, closing: None }
    }
}

impl tokio::io::AsyncRead for Linger {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().tcp.poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Linger {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().tcp.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().tcp.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().tcp.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        if this.closing.is_none() {
            std::task::ready!(this.tcp.as_mut().poll_shutdown(cx))?;
            *this.closing = Some((Box::pin(tokio::time::sleep(LINGER)), 0));
        }
        let (deadline, discarded) = this.closing.as_mut().expect("set above");
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match tokio::io::AsyncRead::poll_read(this.tcp.as_mut(), cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *discarded += buf.filled().len() as u64;
                    if *discarded > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The client closed too (or the socket failed): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// The error of a request body that delivered nothing for the body timeout.
#[derive(Debug)]
pub struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body delivered nothing for {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for Stalled {}

pin_project_lite::pin_project! {
    /// A request body that fails with [`Stalled`] once it has delivered nothing for
    /// `timeout`. The timer is armed only while the body is waited for, so a body
    /// that is already in (most are) costs no timer.
    pub struct Progress<B> {
        #[pin]
        body: B,
        timeout: Duration,
        #[pin]
        sleep: Option<Sleep>,
        // A frame arrived since the timer was last armed.
        moved: bool,
    }
}

impl<B> Progress<B> {
    pub fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            sleep: None,
            moved: false,
        }
    }
}

impl<B> HttpBody for Progress<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            *this.moved = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        // The clock is read only to (re)arm the timer.
        match this.sleep.as_mut().as_pin_mut() {
            None => this.sleep.set(Some(tokio::time::sleep(*this.timeout))),
            Some(sleep) if *this.moved => sleep.reset(Instant::now() + *this.timeout),
            Some(_) => {}
        }
        *this.moved = false;
        let sleep = this.sleep.as_pin_mut().expect("armed above");
        if sleep.poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(Stalled(*this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Most polls in a row of a future that keeps waking itself; then it yields.
const REPOLLS: usize = 8;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// Runs `inner`, absorbing the wake-ups it gives itself while it is polled: such a
/// future is polled again at once.
pub struct SelfWaking<F> {
    inner: F,
    state: Arc<State>,
    waker: Waker,
}

struct State {
    task: AtomicWaker,
    phase: AtomicU8,
}

impl Wake for State {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // While the future is polled the wake-up is noted; otherwise it goes on.
        match self
            .phase
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F> SelfWaking<F> {
    pub fn new(inner: F) -> Self {
        let state = Arc::new(State {
            task: AtomicWaker::new(),
            phase: AtomicU8::new(IDLE),
        });
        let waker = Waker::from(state.clone());
        Self {
            inner,
            state,
            waker,
        }
    }
}

impl<F: Future + Unpin> Future for SelfWaking<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.state.task.register(cx.waker());
        for _ in 0..REPOLLS {
            this.state.phase.store(POLLING, Ordering::Release);
            let result = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
            if this.state.phase.swap(IDLE, Ordering::AcqRel) != WOKEN || result.is_ready() {
                return result;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wake-ups that reach the task.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending `n` times, waking itself each time; then ready with its poll count.
    struct WakesItself {
        n: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.n {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_future_waking_itself_is_polled_again_at_once() {
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let mut f = SelfWaking::new(WakesItself { n: 3, polls: 0 });
        let polled = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(4));
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            0,
            "no trip through the scheduler"
        );
    }

    #[test]
    fn one_that_never_stops_waking_itself_yields() {
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let mut f = SelfWaking::new(WakesItself {
            n: usize::MAX,
            polls: 0,
        });
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(f.inner.polls, REPOLLS);
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "woken to be polled later");
    }

    #[test]
    fn wake_ups_from_outside_reach_the_task() {
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut f = SelfWaking::new(rx);
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        tx.send(7).unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        let polled = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert!(matches!(polled, Poll::Ready(Ok(7))));
    }
}
