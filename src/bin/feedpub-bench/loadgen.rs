//! The gRPC load generator of the Ingest benchmark: unary calls over one HTTP/2 connection
//! (the `h2` crate, as tonic uses it), a fixed number in flight, each request a pre-encoded
//! gRPC frame of its own (every article needs its own id), every answer's `grpc-status`
//! checked. It does what `h2load -c1 -t1 -m<in flight>` does, plus the distinct bodies and
//! the status check; Ingest shows in the same run that it is at least as fast as h2load.

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Width of the id counter written into each request.
const COUNTER_DIGITS: usize = 12;
/// The placeholder the counter replaces in a template.
const PLACEHOLDER: &str = "############";

/// Request bodies made from templates: each is a whole gRPC frame (flag, length, message)
/// in which a fixed-width decimal counter replaces a placeholder, so that every request
/// carries its own id at the cost of one small copy.
pub struct Frames {
    templates: Vec<(Bytes, usize)>,
    next: AtomicU64,
}

impl Frames {
    /// Frames of the messages `make(placeholder, n)` for n = 0, 1, …, `templates` - 1; the
    /// placeholder must appear once in each message (in its id).
    pub fn new<M: prost::Message>(
        templates: usize,
        mut make: impl FnMut(&str, usize) -> M,
    ) -> anyhow::Result<Self> {
        let templates = (0..templates)
            .map(|n| {
                let message = make(PLACEHOLDER, n).encode_to_vec();
                let mut frame = Vec::with_capacity(message.len() + 5);
                frame.push(0);
                frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
                frame.extend_from_slice(&message);
                let at = frame
                    .windows(PLACEHOLDER.len())
                    .position(|w| w == PLACEHOLDER.as_bytes())
                    .context("the placeholder is not in the encoded message")?;
                Ok((Bytes::from(frame), at))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            templates,
            next: AtomicU64::new(0),
        })
    }

    /// The next frame, with the next counter value; never the same twice.
    pub fn next(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (template, at) = &self.templates[n as usize % self.templates.len()];
        let mut frame = BytesMut::from(&template[..]);
        let digits = format!("{n:0COUNTER_DIGITS$}");
        frame[*at..*at + COUNTER_DIGITS].copy_from_slice(digits.as_bytes());
        frame.freeze()
    }

    /// The first frame, as a file for h2load (which sends one body for every request).
    pub fn sample(&self) -> Bytes {
        self.templates[0].0.clone()
    }

    /// The size of a frame in bytes.
    pub fn frame_bytes(&self) -> usize {
        self.templates[0].0.len()
    }
}

/// What one load did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Calls answered with `grpc-status: 0`.
    pub ok: u64,
    /// Calls that failed: another status, a transport error, no status.
    pub failed: u64,
    /// The first failure, to show.
    pub first_failure: Option<String>,
    /// Latency of every successful call, in milliseconds, from sending its headers to
    /// receiving its trailers.
    pub latencies_ms: Vec<f64>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Calls `path` on `addr` with `in_flight` calls outstanding at all times for `duration`
/// (no new call starts after it), over one connection, from one thread of its own (as
/// `h2load -t1`) running a single-threaded runtime.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    token: &str,
    frames: Arc<Frames>,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let uri: http::Uri = format!("http://{addr}{path}").parse()?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(load(addr, uri, headers, frames, in_flight, duration))
    })
    .await
    .context("the load generator panicked")?
}

async fn load(
    addr: SocketAddr,
    uri: http::Uri,
    headers: http::HeaderMap,
    frames: Arc<Frames>,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    // h2load's default windows (2^30 - 1), so that flow control never holds answers back.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size((1 << 30) - 1)
        .initial_connection_window_size((1 << 30) - 1)
        .handshake::<_, Bytes>(tcp)
        .await
        .context("HTTP/2 handshake")?;
    let driver = tokio::spawn(connection);
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, frames, uri, headers) =
            (client.clone(), frames.clone(), uri.clone(), headers.clone());
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = Request::new(());
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = uri.clone();
                *request.headers_mut() = headers.clone();
                match call(client.clone(), request, frames.next()).await {
                    Ok(()) => {
                        outcome.ok += 1;
                        outcome
                            .latencies_ms
                            .push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        outcome.failed += 1;
                        outcome
                            .first_failure
                            .get_or_insert_with(|| format!("{e:#}"));
                        if outcome.failed > 1000 {
                            break;
                        }
                    }
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(done) = workers.join_next().await {
        let outcome = done.context("a load worker panicked")?;
        total.ok += outcome.ok;
        total.failed += outcome.failed;
        total.latencies_ms.extend(outcome.latencies_ms);
        if total.first_failure.is_none() {
            total.first_failure = outcome.first_failure;
        }
    }
    total.elapsed = start.elapsed();
    drop(client);
    driver.abort();
    Ok(total)
}

/// One unary call: headers, the frame, then the answer read to its trailers, which must say
/// `grpc-status: 0`.
async fn call(
    client: h2::client::SendRequest<Bytes>,
    request: Request<()>,
    frame: Bytes,
) -> anyhow::Result<()> {
    let mut client = client.ready().await?;
    let (response, mut stream) = client.send_request(request, false)?;
    stream.send_data(frame, true)?;
    let response = response.await?;
    anyhow::ensure!(
        response.status() == http::StatusCode::OK,
        "HTTP status {}",
        response.status()
    );
    // A trailers-only answer (an error) carries grpc-status in its headers.
    if let Some(status) = response.headers().get("grpc-status")
        && status != "0"
    {
        anyhow::bail!(
            "grpc-status {status:?}: {:?}",
            response.headers().get("grpc-message")
        );
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.context("no trailers")?;
    match trailers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"0") => Ok(()),
        Some(status) => anyhow::bail!(
            "grpc-status {}: {:?}",
            String::from_utf8_lossy(status),
            trailers.get("grpc-message")
        ),
        None => anyhow::bail!("no grpc-status in the trailers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedpub::grpc::proto::{Article, PublishArticleRequest};
    use prost::Message;

    fn frames() -> Frames {
        Frames::new(2, |placeholder, n| PublishArticleRequest {
            article: Some(Article {
                id: format!("a-{placeholder}"),
                title: format!("标题{n}"),
                ..Article::default()
            }),
            ..Default::default()
        })
        .unwrap()
    }

    /// The message inside a gRPC frame, checking its five-byte prefix.
    fn decode(frame: &[u8]) -> PublishArticleRequest {
        assert_eq!(frame[0], 0, "uncompressed");
        let length = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 5);
        PublishArticleRequest::decode(&frame[5..]).unwrap()
    }

    #[test]
    fn every_frame_is_a_whole_grpc_message_with_an_id_of_its_own() {
        let frames = frames();
        let decoded: Vec<Article> = (0..5)
            .map(|_| decode(&frames.next()).article.unwrap())
            .collect();
        let ids: Vec<&str> = decoded.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "a-000000000000",
                "a-000000000001",
                "a-000000000002",
                "a-000000000003",
                "a-000000000004"
            ]
        );
        // The templates take turns.
        assert_eq!(decoded[0].title, "标题0");
        assert_eq!(decoded[1].title, "标题1");
        assert_eq!(decoded[2].title, "标题0");
        assert_eq!(frames.frame_bytes(), frames.sample().len());
    }

    #[test]
    fn a_template_without_the_placeholder_is_refused() {
        let made = Frames::new(1, |_, _| PublishArticleRequest::default());
        assert!(made.is_err());
    }
}
