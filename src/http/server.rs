//! The HTTP listener: every plain connection starts on the fast path (`fast_path.rs`),
//! which answers feed requests itself and hands anything else, with the bytes it read, to
//! hyper serving the axum router (HTTP/1.1 and HTTP/2, with upgrades), as `axum::serve`
//! would; TLS connections go to hyper at once. Connections are capped
//! (`[limits] max_http_connections`) and timed (`header_timeout_seconds`,
//! `idle_timeout_seconds`, `send_timeout_seconds`) on either path.

use super::fast_path::{self, Outcome, Timeouts};
use super::feeds::FeedState;
use crate::config::Limits;
use crate::connections::{
    ACCEPT_PAUSE, AnswerWaiting, Slot, Slots, Stall, Standing, Watch, Watched, concerns_one_client,
};
use crate::grpc::{
    MAX_HEADER_LIST_BYTES, MAX_LOCAL_ERROR_RESET_STREAMS, MAX_PENDING_ACCEPT_RESET_STREAMS,
};
use crate::locks::lock;
use crate::tls::Handshakes;
use axum::Router;
use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How far ahead a TLS handshake is counted as waiting for its first request (a client's
/// takes milliseconds): the connections that wait meanwhile give way before it, so that
/// a rush of new connections takes the places of idle ones before those of handshakes.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// How long the connections under way when the server stops may take to finish: past it
/// they are closed, answers half sent or not. A client that reads a feed a byte at a time
/// (or sends one so) would otherwise hold the stop, and the data folder, for as long as it
/// goes on.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// HTTP/2 pings on the HTTP port: a peer that stops answering is dropped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Accepts connections until `shutdown` completes, then stops accepting, lets every
/// connection finish the response in progress (for [`DRAIN_GRACE`] at most), and returns
/// once all are closed. With `handshakes`, connections are TLS.
pub async fn run(
    listener: TcpListener,
    mut handshakes: Option<Handshakes<Slot>>,
    feeds: FeedState,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let stop = CancellationToken::new();
    let abandon = CancellationToken::new();
    let connections = TaskTracker::new();
    let slots = Slots::per_peer(
        limits.max_http_connections,
        limits.max_http_connections_per_peer,
    )
    .evicting_idle()
    .counted_as("http");
    let hyper = hyper_builder(limits);
    let timeouts = Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    };
    tokio::pin!(shutdown);
    loop {
        let (io, slot) = tokio::select! {
            accepted = accept(&listener, &slots, handshakes.as_mut()) => accepted,
            () = &mut shutdown => break,
        };
        let connection = serve_connection(
            io,
            slot,
            Served {
                feeds: feeds.clone(),
                router: router.clone(),
                hyper: hyper.clone(),
                timeouts,
                stop: stop.clone(),
            },
        );
        let abandon = abandon.clone();
        connections.spawn(async move {
            tokio::select! {
                () = connection => {}
                // Dropped, and its socket closed with it.
                () = abandon.cancelled() => {}
            }
        });
    }
    drop((listener, handshakes));
    stop.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "HTTP connections still under way {} s after the stop began are closed",
            DRAIN_GRACE.as_secs()
        );
        abandon.cancel();
        connections.wait().await;
    }
}

/// The next connection, with its place under the cap: over the cap, in the place of the
/// connection waiting longest for its next request (of its own address, when that address
/// has its whole share; with none waiting, it is dropped, so closed at once). Over TLS,
/// once through its handshake, during which it holds its place as a connection that has
/// sent no request yet, but counted as waiting from [`HANDSHAKE_GRACE`] on: newer
/// connections take the places of those that wait before the handshakes'. The handshake
/// is given up if a newer connection takes its place, so that handshakes left hanging keep
/// no reader out; the cap bounds how many run.
async fn accept(
    listener: &TcpListener,
    slots: &Slots,
    handshakes: Option<&mut Handshakes<Slot>>,
) -> (Either<TlsStream<TcpStream>, TcpStream>, Slot) {
    let Some(handshakes) = handshakes else {
        loop {
            let (io, addr) = accept_tcp(listener).await;
            if let Some(slot) = slots.try_take_from(addr.ip()) {
                return (Either::Right(io), slot);
            }
        }
    };
    loop {
        tokio::select! {
            (io, addr) = accept_tcp(listener) => {
                let Some(slot) = slots.try_take_from(addr.ip()) else {
                    continue;
                };
                slot.standing().idle_after(HANDSHAKE_GRACE);
                handshakes.start(io, addr, slot.evicted(), slot);
            }
            (stream, slot) = handshakes.next() => return (Either::Left(stream), slot),
        }
    }
}

/// The next TCP connection. Errors that concern one client only are skipped; others (too
/// many open files, say) would repeat at once, so the loop waits a little, as hyper's and
/// axum's servers do.
async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if concerns_one_client(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// hyper as the HTTP port uses it: HTTP/1 heads timed, HTTP/2 with the gRPC port's
/// protections (header list size, rapid reset, pings).
fn hyper_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // On a kept-alive connection hyper starts this timer when it waits for the next
    // head, so it bounds the idle time between requests too.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A head longer than this is refused (431), as nginx's 4 × 8 KiB buffers do, not
        // held at hyper's default of some 400 KiB per connection.
        .max_buf_size(fast_path::MAX_HEAD)
        // A client that half-closes after pipelined requests gets all of their answers.
        .half_close(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // CONNECT for HTTP/2 upgrades, as `axum::serve` allows.
        .enable_connect_protocol()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    builder
}

/// What every connection task shares.
struct Served {
    feeds: FeedState,
    router: Router,
    hyper: Builder<TokioExecutor>,
    timeouts: Timeouts,
    stop: CancellationToken,
}

/// One connection: the fast path first (plain TCP), then hyper if a request needs it.
async fn serve_connection(io: Either<TlsStream<TcpStream>, TcpStream>, slot: Slot, served: Served) {
    let Served {
        feeds,
        router,
        hyper,
        timeouts,
        stop,
    } = served;
    let (read, stream) = match io {
        Either::Right(mut tcp) => {
            match fast_path::serve(&mut tcp, &feeds, &timeouts, &stop, slot.standing()).await {
                Ok(Outcome::HandOver(read)) => (read, Either::Right(tcp)),
                Ok(Outcome::Closed) => return,
                Err(e) => {
                    tracing::trace!(error = %e, "connection ended");
                    return;
                }
            }
        }
        Either::Left(tls) => (Bytes::new(), Either::Left(tls)),
    };
    let watch = Watch {
        start: None,
        idle: Some(timeouts.idle),
        send: Some(timeouts.send),
        linger: Some(crate::connections::LINGER),
    };
    let service = Counted {
        router,
        under_way: Arc::new(UnderWay {
            standing: slot.standing().clone(),
            requests: Mutex::new(0),
        }),
    };
    let io = TokioIo::new(Watched::new(
        Rewind { read, stream },
        watch,
        Some(slot),
        count_timeout,
    ));
    let connection = hyper.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
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

/// The requests hyper has under way on one connection. Only while it has none (between
/// requests, before its first) does the connection wait for its next request, and may give
/// its place to a newer one over the cap, as the fast path decides for its own: bytes read
/// (an HTTP/2 ping, a TLS record) are not a request.
struct UnderWay {
    standing: Arc<Standing>,
    requests: Mutex<usize>,
}

/// One request under way, until its answer's body is sent or dropped.
struct RequestUnderWay(Arc<UnderWay>);

impl UnderWay {
    /// The request, under way; `false` beside it when the connection's place was given to
    /// a newer one before it began.
    fn begin(self: &Arc<Self>) -> (RequestUnderWay, bool) {
        let mut requests = lock(&self.requests);
        *requests += 1;
        let placed = self.standing.busy();
        (RequestUnderWay(self.clone()), placed)
    }
}

impl Drop for RequestUnderWay {
    fn drop(&mut self) {
        let mut requests = lock(&self.0.requests);
        *requests -= 1;
        if *requests == 0 {
            self.0.standing.idle();
        }
    }
}

/// The router, counting the requests it answers on one connection.
#[derive(Clone)]
struct Counted {
    router: Router,
    under_way: Arc<UnderWay>,
}

impl<B> tower_service::Service<axum::http::Request<B>> for Counted
where
    Router: tower_service::Service<
            axum::http::Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
    <Router as tower_service::Service<axum::http::Request<B>>>::Future: Send + 'static,
{
    type Response = axum::http::Response<Sending>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let (under_way, placed) = self.under_way.begin();
        if !placed {
            // Its connection is closing: not answered (the router's work would be lost, and
            // the cap exceeded meanwhile), and the client told to come back.
            let mut response = axum::http::Response::new(Sending {
                body: axum::body::Body::empty(),
                waiting: None,
                taken: false,
                _under_way: under_way,
            });
            *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            if request.version() < axum::http::Version::HTTP_2 {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            return Box::pin(std::future::ready(Ok(response)));
        }
        let answer = self.router.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let waiting = Some(under_way.0.standing.answer());
            Ok(response.map(|body| Sending {
                body,
                waiting,
                taken: false,
                _under_way: under_way,
            }))
        })
    }
}

/// An answer's body, its request under way until it is sent (or dropped).
struct Sending {
    body: axum::body::Body,
    /// Ready until sent: HTTP/2 holds a body's data until the peer's flow-control window
    /// lets it send ([`Standing::answer`]), and asks for more only once it has.
    ///
    /// [`Standing::answer`]: crate::connections::Standing::answer
    waiting: Option<AnswerWaiting>,
    /// A frame was taken from `body`: asked for the next, hyper has sent it on.
    taken: bool,
    /// Held for its drop.
    _under_way: RequestUnderWay,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if std::mem::take(&mut self.taken)
            && let Some(waiting) = &self.waiting
        {
            waiting.taken();
        }
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        self.taken = matches!(frame, Poll::Ready(Some(Ok(_))));
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts an HTTP connection closed because its peer stalled.
pub(super) fn count_timeout(stall: Stall) {
    crate::connections::count_closed("http", stall);
}

/// A connection handed over from the fast path: reads return the bytes it had read first,
/// then the socket's. (hyper has such a type, but keeps it private.)
struct Rewind<S> {
    read: Bytes,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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
