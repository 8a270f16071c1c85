//! The HTTP server: one task per connection, which polls itself again when it wakes
//! itself rather than going back to tokio's queue.

use axum::Router;
use axum::serve::Listener;
use futures_util::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `router` on `listener` until `shutdown` resolves, then lets every open
/// connection finish the request it is serving (WebSocket sessions, once upgraded,
/// are no longer connections here).
///
/// This is `axum::serve` with one difference, for latency: hyper's connection task
/// wakes itself once per request with a body (taking the body's bytes wakes the
/// connection that sent them, the same task), and tokio treats a task woken while
/// it runs as one that yielded: it queues the task behind the others and wakes a
/// sleeping thread to share the work, which on an otherwise idle server costs a
/// thread wake-up per request. Here such a wake-up polls the connection again at
/// once ([`SelfWaking`]).
pub async fn serve(mut listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    // Every connection task holds a receiver: all dropped = all connections done.
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            // Accept errors are handled as axum does (a full file table waits 1 s).
            (tcp, _) = Listener::accept(&mut listener) => tcp,
            _ = &mut shutdown => break,
        };
        // Small answers go out at once rather than waiting on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(SelfWaking::new(Box::pin(async move {
            let mut conn = pin!(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
            );
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        })));
    }
    let _ = stop.send(true);
    drop(stopping);
    stop.closed().await;
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
