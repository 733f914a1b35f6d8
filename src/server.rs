//! The HTTP server: accepts connections, serves the app on each under time limits, caps how
//! many are open at once, and shuts down within a deadline.
//!
//! What a client controls is bounded here:
//! - the time a new connection may wait before its first byte (`first_byte_timeout`: a
//!   connection that sends nothing is closed in seconds, not after the header timeout);
//! - the time to send a request's headers, which is also how long a kept-alive connection may
//!   sit idle between requests (hyper's header read timeout);
//! - how long a response may stall because the client does not read it ([`StallGuard`]: a
//!   write that makes no progress for the idle timeout closes the connection), so a slow
//!   reader holds a connection slot for a bounded time and never a database connection (reads
//!   are fetched in chunks, see `store::metrics`);
//! - how many connections are open (a semaphore). At the cap, a new connection asks the one
//!   idle longest (waiting for its first or next request) to close and takes its slot, so
//!   idle connections cannot keep anyone out (health checks included); when every connection
//!   is busy, new ones wait in the kernel's backlog rather than exhausting file descriptors;
//! - how long shutdown waits for in-flight requests.
//!
//! The time a request's handling may take and the idle time of upload bodies are bounded by
//! the routes themselves (see `api::Endpoint`).

use crate::connections::{Busy, Connections, Entry, Registered};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt;

/// The limits of [`serve`]; see `Config` for their meaning and defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

/// How a connection is accepted: as is, or after a TLS handshake.
#[derive(Clone, Default)]
pub enum Acceptor {
    #[default]
    Plain,
    Tls(crate::tls::Acceptor),
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish (idle connections close at once) and returns once every connection is
/// closed or `shutdown_timeout` has passed, whichever comes first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    acceptor: Acceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Connections::default());
    let (closing, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Wait for room before accepting while every connection is busy (the kernel's
        // backlog holds the rest).
        let mut permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if open.any_idle() => None,
            Err(_) => tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    if !is_per_connection(&e) {
                        tracing::warn!(error = %e, "accept failed; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match permit
            .take()
            .or_else(|| slots.clone().try_acquire_owned().ok())
        {
            Some(p) => p,
            None => {
                // At the cap: the longest-idle connection closes and leaves its slot.
                if open.evict_longest_idle() {
                    metrics::counter!("modelreg_idle_connections_evicted_total").increment(1);
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without it keep-alive clients stall ~40 ms per request on delayed ACKs.
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let acceptor = acceptor.clone();
        let closing = closing_rx.clone();
        let mut stopping = closing_rx.clone();
        let open = open.clone();
        // Registered before the loop goes round again, so that its next look for an idle
        // connection sees this one (a task that has not run yet would be missed).
        let entry = open.add();
        tokio::spawn(async move {
            let _slot = permit;
            let _registered = Registered(&open, entry.id);
            // A connection that sends nothing is closed before it costs a header timeout.
            let mut first = [0u8; 1];
            let waited = tokio::select! {
                w = tokio::time::timeout(limits.first_byte_timeout, tcp.peek(&mut first)) => w,
                () = entry.evict.notified() => return,
                // Shutting down: one that has asked nothing yet (a client pool's spare, say)
                // is closed now, not waited for until its first-byte timeout.
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match waited {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    metrics::counter!("modelreg_connections_without_first_byte_total").increment(1);
                    tracing::debug!(%peer, "connection sent nothing; closed");
                    return;
                }
            }
            let io = StallGuard::new(tcp, limits.idle_timeout);
            match acceptor {
                Acceptor::Plain => connection(io, app, limits, closing, entry).await,
                Acceptor::Tls(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(io)).await {
                        Ok(Ok(io)) => connection(io, app, limits, closing, entry).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection task holds a slot: all slots back means all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = limits.max_connections - slots.available_permits(),
            "shutdown deadline reached with connections still open; closing them"
        );
    }
    Ok(())
}

/// Accept errors that concern one connection only (the peer gave up), not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 on one connection until it closes, or gracefully once `closing` is set or
/// the connection is evicted (when idle, at the connection cap).
async fn connection<I>(
    io: I,
    app: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
    entry: Arc<Entry>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracked = entry.clone();
    let service =
        TowerToHyperService::new(tower::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(tracked.clone());
            let app = app.clone();
            async move {
                // The connection stays busy until the answer is sent: a streamed one (an
                // event stream, a large download) is a request in progress, not an idle
                // connection to evict at the cap.
                let response = app.oneshot(req.map(axum::body::Body::new)).await;
                response.map(|r| r.map(|inner| BusyBody { inner, _busy: busy }))
            }
        }));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    if *closing.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    let mut signalled = false;
    let mut evicted = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = entry.evict.notified(), if !evicted => {
                evicted = true;
                conn.as_mut().graceful_shutdown();
            }
            changed = closing.changed(), if !signalled => {
                signalled = true;
                if changed.is_err() || *closing.borrow() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Fails a write that makes no progress for `limit`: the peer stopped reading. Reads are not
/// limited here (hyper's header timeout and the routes' own limits cover them).
pub struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Called when a write is pending: arms the timer on the first pending write, and reports
    /// whether it has run out.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).is_ready()
    }

    fn progress<R>(
        &mut self,
        poll: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(poll, cx)
    }
}

/// A response body that keeps its connection marked busy until it is sent or dropped.
struct BusyBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_fails_after_the_limit() {
        // A pipe whose reader never reads: writes fill its buffer, then stall.
        let (writer, _reader) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(writer, Duration::from_secs(5));
        let big = vec![0u8; 64 << 10];
        let e = guarded.write_all(&big).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_moving_reader_is_fine() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(writer, Duration::from_secs(5));
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 64 << 10 {
                // Slower than the writer, but never 5 s without reading.
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += tokio::io::AsyncReadExt::read(&mut reader, &mut buf)
                    .await
                    .unwrap();
            }
        });
        guarded.write_all(&vec![1u8; 64 << 10]).await.unwrap();
        drain.await.unwrap();
    }
}
