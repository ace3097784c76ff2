//! Response streams that never end by themselves (a `grpc.health.v1` watch, a reflection
//! stream) end with the server: once it stops, a stream waiting for its next message ends
//! at once with UNAVAILABLE, `SHUTTING_DOWN`, as `WatchArticles` streams do, and so does
//! the request stream of a call whose answer ended so (a reflection client may keep its
//! side open). The graceful shutdown waits for every call to end, so without this one
//! client watching the health service would hold the process up for as long as it stayed
//! connected. A call whose answer has not begun (a `PublishArticles` batch still being
//! sent) is not cut: it ends as it would have.

use crate::publishing::PublishError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::codegen::http;

/// Wraps every call of the gRPC server in [`EndStreams`], ended by `stopping`.
#[derive(Clone)]
pub struct EndStreamsLayer(pub CancellationToken);

impl<S> tower_layer::Layer<S> for EndStreamsLayer {
    type Service = EndStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndStreams {
            inner,
            stopping: self.0.clone(),
        }
    }
}

/// A service whose response streams, and then their calls' request streams, end when the
/// server stops.
#[derive(Clone)]
pub struct EndStreams<S> {
    inner: S,
    stopping: CancellationToken,
}

impl<S, ResBody> tower_service::Service<http::Request<tonic::body::Body>> for EndStreams<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Ending<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // Cancelled when the answer is cut: the request stream then ends too.
        let cut = CancellationToken::new();
        let request = request.map(|body| {
            tonic::body::Body::new(Ending {
                body: Some(body),
                stopping: Box::pin(cut.clone().cancelled_owned()),
                end: End::Request,
            })
        });
        let stopping = self.stopping.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Ending {
                body: Some(body),
                stopping: Box::pin(stopping.cancelled_owned()),
                end: End::Response { cut },
            }))
        })
    }
}

/// How an [`Ending`] body ends.
enum End {
    /// An answer: with `SHUTTING_DOWN` trailers, then its call's request stream (`cut`).
    Response { cut: CancellationToken },
    /// A request stream: it just ends, as if its client had closed it.
    Request,
}

/// A body that, once `stopping` completes, ends instead of waiting for its next frame
/// ([`End`]). Frames ready at once (a unary answer, messages already made) still go first.
/// The body it ended is dropped with what it holds.
pub struct Ending<B> {
    /// `None` once ended.
    body: Option<B>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    end: End,
}

impl<B> Body for Ending<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.stopping.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.body = None;
        match &this.end {
            End::Request => Poll::Ready(None),
            End::Response { cut } => {
                cut.cancel();
                let mut trailers = http::HeaderMap::new();
                let _ = tonic::Status::from(PublishError::ShuttingDown).add_header(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
