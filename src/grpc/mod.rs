//! The gRPC API: generated code, the PublisherService adapter, health and reflection.

mod auth;
pub mod codec;
pub mod convert;
mod ending;
mod guard;
mod service;
mod status;

pub use guard::Guarded;
pub use service::PublisherApi;

use crate::config::Limits;
use crate::connections::{Slot, Slots, Stall, Watch, Watched};
use crate::publishing::Publisher;
use crate::tls::{Handshakes, TlsIdentity};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

/// Largest header block (all metadata of one call) accepted, in bytes (also on the HTTP
/// port's HTTP/2).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a client may open and reset before the server answers (HTTP/2 rapid reset);
/// beyond, the connection is closed with GOAWAY `ENHANCE_YOUR_CALM`.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset on one connection because of client errors before it
/// closes the connection.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// What a gRPC client must send within `[limits] header_timeout_seconds`: the HTTP/2
/// connection preface (24 bytes) and the header of the SETTINGS frame that must follow it
/// (9). A client that has sent them and then waits is an idle channel, which may stay.
const PREFACE_BYTES: usize = 24 + 9;
/// HTTP/2 and TCP keepalive: idle connections are pinged, dead ones closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Code generated from `proto/feedpub/v1/*.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("feedpub.v1");

    /// Encoded descriptors of the API (and its imports), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/feedpub_descriptor.bin"));
}

/// Why the gRPC server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves PublisherService (behind the guard: authentication and per-partner rate limits),
/// `grpc.health.v1` and reflection (v1 and v1alpha) on `listener`, with TLS when `tls` is
/// given, until `shutdown` completes, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    publisher: Publisher,
    limits: &Limits,
    tls: Option<&TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::publisher_service_server::PublisherServiceServer<PublisherApi>>()
        .await;
    let reporting = tokio::spawn(report_health(health.clone(), publisher.health().clone()));
    // Once the server stops, the health service says so (NOT_SERVING, to its watchers too),
    // and streams waiting for their next message end (see `ending`).
    let stopping = tokio_util::sync::CancellationToken::new();
    let shutdown = {
        let (stopping, reporting) = (stopping.clone(), reporting.abort_handle());
        async move {
            shutdown.await;
            reporting.abort();
            use tonic_health::ServingStatus::NotServing;
            health.set_service_status("", NotServing).await;
            health
                .set_not_serving::<proto::publisher_service_server::PublisherServiceServer<PublisherApi>>()
                .await;
            stopping.cancel();
        }
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    // Requests compressed with gzip or deflate are taken (gRPC clients offer both); the
    // size limit holds for the message decompressed too.
    let publisher_service = PublisherApi::new(publisher.clone())
        .into_server()
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Deflate)
        .max_decoding_message_size(limits.max_message_bytes);
    let mut server = tonic::transport::Server::builder()
        .layer(ending::EndStreamsLayer(stopping))
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    let slots = Slots::per_peer(
        limits.max_grpc_connections,
        limits.max_grpc_connections_per_peer,
    )
    .evicting_unproven()
    .counted_as("grpc");
    let watch = Watch {
        start: Some((PREFACE_BYTES, limits.header_timeout)),
        ..Watch::default()
    };
    let tcp = Paced {
        incoming: TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(KEEPALIVE_INTERVAL)),
        pause: None,
    };
    let router = server
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(Guarded::new(publisher_service, publisher, limits));
    // The preface is timed on what the client sends inside TLS, from the handshake's end:
    // the handshake's own bytes are no preface.
    let served = match tls {
        None => {
            let incoming = tcp.filter_map(move |accepted| {
                placed(accepted, &slots).map(|placed| {
                    placed
                        .map(|(stream, _, slot)| Watched::new(stream, watch, Some(slot), timed_out))
                })
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Some(identity) => {
            let (incoming, accepting) = handshaken(tcp, slots, identity.grpc_handshakes(), watch);
            let served = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            // The listening socket closed before the server is said to have stopped.
            let _ = accepting.await;
            served
        }
    };
    reporting.abort();
    served?;
    Ok(())
}

/// An accepted connection with its address and its place under the cap; `None` when it
/// has none. Over its peer's share of the cap, or over the cap with every place held by a
/// connection that has made an authenticated call, it is dropped, so closed at once. Over
/// the cap otherwise, it takes the place of the oldest connection that has made none:
/// clients that open connections and make no call, from however many addresses, cannot
/// keep the partners out.
fn placed(
    accepted: io::Result<TcpStream>,
    slots: &Slots,
) -> Option<io::Result<(TcpStream, SocketAddr, Slot)>> {
    let stream = match accepted {
        Ok(stream) => stream,
        Err(e) => return Some(Err(e)),
    };
    let Ok(peer) = stream.peer_addr() else {
        // No address to count it by (the peer is gone already).
        slots.refuse();
        return None;
    };
    let slot = slots.try_take_from(peer.ip())?;
    Some(Ok((stream, peer, slot)))
}

/// The TLS port's connections, as the server takes them.
type TlsIncoming = ReceiverStream<io::Result<Watched<TlsStream<TcpStream>>>>;

/// The connections of the TLS port, once placed under the cap and through their
/// handshakes (run concurrently, each holding its place meanwhile and given up if a newer
/// connection takes it), watched from then on; and the task that accepts them, which ends,
/// closing the listening socket, once the stream is dropped.
fn handshaken(
    mut tcp: Paced,
    slots: Slots,
    mut handshakes: Handshakes<Slot>,
    watch: Watch,
) -> (TlsIncoming, tokio::task::JoinHandle<()>) {
    let (ready, incoming) = tokio::sync::mpsc::channel(16);
    let accepting = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                // The server stopped taking connections.
                () = ready.closed() => return,
                accepted = tcp.next() => {
                    match accepted.and_then(|accepted| placed(accepted, &slots)) {
                        Some(Ok((stream, peer, slot))) => {
                            handshakes.start(stream, peer, slot.evicted(), slot);
                            continue;
                        }
                        Some(Err(e)) => Err(e),
                        None => continue,
                    }
                }
                (stream, slot) = handshakes.next() => {
                    Ok(Watched::new(stream, watch, Some(slot), timed_out))
                }
            };
            if ready.send(next).await.is_err() {
                return;
            }
        }
    });
    (ReceiverStream::new(incoming), accepting)
}

/// The port's connections as tonic's `TcpIncoming` accepts them, but pausing after an
/// error that would repeat at once (too many open files, say), as the HTTP port does:
/// tonic asks for the next connection at once, and would spin on the error.
struct Paced {
    incoming: TcpIncoming,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl tokio_stream::Stream for Paced {
    type Item = io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(pause) = &mut self.pause {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let accepted = ready!(Pin::new(&mut self.incoming).poll_next(cx));
        if let Some(Err(e)) = &accepted
            && !crate::connections::concerns_one_client(e)
        {
            tracing::error!(error = %e, "cannot accept a gRPC connection");
            self.pause = Some(Box::pin(tokio::time::sleep(
                crate::connections::ACCEPT_PAUSE,
            )));
        }
        Poll::Ready(accepted)
    }
}

/// Keeps `grpc.health.v1` in step with the service's faults: NOT_SERVING (the service and
/// the server as a whole) while the shared database is out of reach, when every call would
/// fail or wait, so that a load balancer takes the replica out; SERVING otherwise.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    health: crate::health::Health,
) {
    use tonic_health::ServingStatus;
    type Service = proto::publisher_service_server::PublisherServiceServer<PublisherApi>;
    let mut serving = true;
    let mut changes = health.subscribe();
    drop(health);
    loop {
        let now = !changes
            .borrow_and_update()
            .contains_key(&crate::health::Component::Replication);
        if now != serving {
            serving = now;
            let status = if now {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            if now {
                reporter.set_serving::<Service>().await;
            } else {
                reporter.set_not_serving::<Service>().await;
            }
        }
        if changes.changed().await.is_err() {
            return; // every `Health` is gone: the service is stopping
        }
    }
}

/// Counts a gRPC connection closed because its preface did not come in time.
fn timed_out(stall: Stall) {
    crate::connections::count_closed("grpc", stall);
}
