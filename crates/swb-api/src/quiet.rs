//! A WebSocket sink that wakes its writer only while one of its writes waits.

use futures_util::Sink;
use futures_util::task::AtomicWaker;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps the sending half of a WebSocket so that its task is woken only while one
/// of its operations is pending.
///
/// tokio-tungstenite registers one waker with the socket for both directions and,
/// when the socket becomes readable, wakes the task that last wrote as well as the
/// one that reads (a read may have to write, and the other way round). A writer
/// task that has flushed everything and waits for its next message is then woken
/// for nothing with every frame received; with two tasks woken at once, tokio also
/// wakes a sleeping thread to share them. Behind this sink, such a wake-up is
/// dropped unless a write is actually waiting for the socket.
pub struct QuietSink<S> {
    inner: S,
    gate: Arc<Gate>,
    waker: Waker,
}

struct Gate {
    task: AtomicWaker,
    /// Set while an operation of the sink is pending.
    waiting: AtomicBool,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.waiting.swap(false, Ordering::AcqRel) {
            self.task.wake();
        }
    }
}

impl<S> QuietSink<S> {
    pub fn new(inner: S) -> Self {
        let gate = Arc::new(Gate {
            task: AtomicWaker::new(),
            waiting: AtomicBool::new(false),
        });
        let waker = Waker::from(gate.clone());
        Self { inner, gate, waker }
    }

    fn gated<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T>
    where
        S: Unpin,
    {
        self.gate.task.register(cx.waker());
        self.gate.waiting.store(true, Ordering::Release);
        let result = op(
            Pin::new(&mut self.inner),
            &mut Context::from_waker(&self.waker),
        );
        if result.is_ready() {
            self.gate.waiting.store(false, Ordering::Release);
        }
        result
    }
}

impl<S: Sink<M> + Unpin, M> Sink<M> for QuietSink<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), S::Error> {
        Pin::new(&mut self.get_mut().inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A sink whose flush waits once: it keeps the waker it was given and is ready
    /// the next time. `poke` wakes whatever waker it last kept.
    #[derive(Default)]
    struct Slow {
        flushed_once: bool,
        kept: Option<Waker>,
    }

    impl Slow {
        fn poke(&self) {
            if let Some(w) = &self.kept {
                w.wake_by_ref();
            }
        }
    }

    impl Sink<u8> for Slow {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, _: u8) -> Result<(), ()> {
            Ok(())
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
            self.kept = Some(cx.waker().clone());
            if std::mem::replace(&mut self.flushed_once, true) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_the_task_only_while_a_write_waits() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut sink = QuietSink::new(Slow::default());
        let woken = || count.0.load(Ordering::SeqCst);

        // The flush waits: the socket's wake-up reaches the task, once.
        assert!(Pin::new(&mut sink).poll_flush(&mut cx).is_pending());
        sink.inner.poke();
        assert_eq!(woken(), 1);
        sink.inner.poke();
        assert_eq!(woken(), 1, "a second wake-up for the same wait is not news");

        // Everything written: wake-ups meant for a reader no longer reach the writer.
        assert!(Pin::new(&mut sink).poll_flush(&mut cx).is_ready());
        sink.inner.poke();
        assert_eq!(woken(), 1);
    }
}
