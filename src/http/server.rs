//! The HTTP listener: every connection starts on the fast path (`fast_path.rs`), which
//! answers feed requests itself and hands anything else, with the bytes it read, to hyper
//! serving the axum router (HTTP/1.1 and HTTP/2, with upgrades), as `axum::serve` would.

use super::fast_path::{self, Outcome};
use super::feeds::FeedState;
use axum::Router;
use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `shutdown` completes, then stops accepting, lets every
/// connection finish the response in progress, and returns once all are closed.
pub async fn run(
    listener: TcpListener,
    feeds: FeedState,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    pause_after_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.spawn(serve_connection(
            stream,
            feeds.clone(),
            router.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// One connection: the fast path first, then hyper if a request needs it.
async fn serve_connection(
    mut stream: TcpStream,
    feeds: FeedState,
    router: Router,
    stop: CancellationToken,
) {
    let read = match fast_path::serve(&mut stream, &feeds, &stop).await {
        Ok(Outcome::HandOver(read)) => read,
        Ok(Outcome::Closed) => return,
        Err(e) => {
            tracing::trace!(error = %e, "connection ended");
            return;
        }
    };
    let io = TokioIo::new(Rewind { read, stream });
    let mut builder = Builder::new(TokioExecutor::new());
    // CONNECT for HTTP/2 upgrades, as `axum::serve` allows.
    builder.http2().enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(router));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended");
    }
}

/// Connection errors concern one client only; others (too many open files, say) would
/// repeat at once, so the loop waits a little, as hyper's and axum's servers do.
async fn pause_after_accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept an HTTP connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection handed over from the fast path: reads return the bytes it had read first,
/// then the socket's. (hyper has such a type, but keeps it private.)
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
