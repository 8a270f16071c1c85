//! Bounded capture of a guest's stdout (fails the call past its cap) and stderr
//! (keeps the tail, never fails the guest).

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug)]
struct Buffer {
    bytes: BytesMut,
    cap: usize,
    keep_tail: bool,
    overflowed: bool,
}

impl Buffer {
    fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        if self.bytes.len() + data.len() <= self.cap {
            self.bytes.extend_from_slice(data);
            return Ok(());
        }
        self.overflowed = true;
        if !self.keep_tail {
            return Err(());
        }
        let data = &data[data.len().saturating_sub(self.cap)..];
        let drop = (self.bytes.len() + data.len()).saturating_sub(self.cap);
        let _ = self.bytes.split_to(drop);
        self.bytes.extend_from_slice(data);
        Ok(())
    }
}

/// An in-memory output pipe with a byte cap.
#[derive(Debug, Clone)]
pub(crate) struct Capture(Arc<Mutex<Buffer>>);

impl Capture {
    /// Fails the guest's write once more than `cap` bytes were written.
    pub fn head(cap: usize) -> Self {
        Self::new(cap, false)
    }

    /// Keeps the last `cap` bytes; writes never fail.
    pub fn tail(cap: usize) -> Self {
        Self::new(cap, true)
    }

    fn new(cap: usize, keep_tail: bool) -> Self {
        Self(Arc::new(Mutex::new(Buffer {
            bytes: BytesMut::new(),
            cap,
            keep_tail,
            overflowed: false,
        })))
    }

    pub fn overflowed(&self) -> bool {
        self.0.lock().expect("capture lock").overflowed
    }

    pub fn take(&self) -> Bytes {
        std::mem::take(&mut self.0.lock().expect("capture lock").bytes).freeze()
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.0
            .lock()
            .expect("capture lock")
            .write(&bytes)
            .map_err(|()| StreamError::Trap(wasmtime::format_err!("output limit exceeded")))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = self.0.lock().expect("capture lock").write(buf);
        Poll::Ready(
            result
                .map(|()| buf.len())
                .map_err(|()| std::io::ErrorKind::StorageFull.into()),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_fails_past_its_cap_and_keeps_what_fit() {
        let mut c = Capture::head(4);
        c.write(Bytes::from_static(b"abc")).unwrap();
        assert!(c.write(Bytes::from_static(b"de")).is_err());
        assert!(c.overflowed());
        assert_eq!(c.take(), &b"abc"[..]);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut c = Capture::tail(4);
        c.write(Bytes::from_static(b"abc")).unwrap();
        c.write(Bytes::from_static(b"def")).unwrap();
        assert_eq!(c.take(), &b"cdef"[..]);
        c.write(Bytes::from_static(b"0123456789")).unwrap();
        assert_eq!(c.take(), &b"6789"[..]);
    }
}
