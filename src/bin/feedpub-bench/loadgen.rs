//! The gRPC load generator of the Ingest benchmark: unary calls over one HTTP/2 connection,
//! a fixed number in flight, each request a pre-encoded gRPC frame of its own (every
//! article needs its own id), every answer's `grpc-status` checked. It does what
//! `h2load -c1 -t1 -m<in flight>` does, plus the distinct bodies and the status check, and
//! like h2load it speaks HTTP/2 itself: the requests that can start go out in one write,
//! and the answers that have come in are read in one, on one thread with blocking I/O.
//! (The `h2` crate, which tonic uses, answered 0.82 to 0.93 of h2load's rate on the echo
//! server, its time mostly in one write per request.) Only header blocks are decoded with a
//! library (HPACK).
//! Ingest shows in the same run that it is at least as fast as h2load.

use anyhow::Context;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http2::*;

/// Width of the id counter written into each request.
const COUNTER_DIGITS: usize = 12;
/// The placeholder the counter replaces in a template.
const PLACEHOLDER: &str = "############";

/// Request bodies made from templates: each is a whole gRPC frame (flag, length, message)
/// in which a fixed-width decimal counter replaces a placeholder, so that every request
/// carries its own id at the cost of one small copy.
pub struct Frames {
    templates: Vec<(Bytes, usize)>,
    /// The size of the largest template, in bytes.
    largest: usize,
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
            .collect::<anyhow::Result<Vec<(Bytes, usize)>>>()?;
        let largest = templates.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        Ok(Self {
            templates,
            largest,
            next: AtomicU64::new(0),
        })
    }

    /// Appends the next frame, with the next counter value; never the same twice.
    pub fn write_next(&self, out: &mut Vec<u8>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (template, at) = &self.templates[n as usize % self.templates.len()];
        let start = out.len();
        out.extend_from_slice(template);
        let digits = format!("{n:0COUNTER_DIGITS$}");
        out[start + at..start + at + COUNTER_DIGITS].copy_from_slice(digits.as_bytes());
    }

    /// The first frame, as a file for h2load (which sends one body for every request).
    pub fn sample(&self) -> Bytes {
        self.templates[0].0.clone()
    }

    /// The size of the largest frame in bytes (the templates' copy differs in length).
    pub fn largest_frame(&self) -> usize {
        self.largest
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
/// `h2load -t1`).
pub async fn run(
    addr: SocketAddr,
    path: &str,
    token: &str,
    frames: Arc<Frames>,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let headers = RequestHeaders::new(&addr.to_string(), path, token);
    tokio::task::spawn_blocking(move || load(addr, &headers, &frames, in_flight, duration))
        .await
        .context("the load generator panicked")?
}

/// The window the generator offers the server, h2load's default (2^30 - 1): flow control
/// never holds answers back.
const OUR_WINDOW: u32 = (1 << 30) - 1;
/// The room a read offers the server's bytes.
const READ_SIZE: usize = 1 << 16;
/// How long a read may wait for the server before the load fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HPACK blocks of the requests (RFC 7541). `:method POST` and `:scheme http` come from
/// the static table; the other headers are literals in the first request, which adds them
/// to the server's table, and indexes of that table in every request after it, as h2load
/// and gRPC's own clients send them. Nothing else enters the table, so the indexes hold.
struct RequestHeaders {
    first: Vec<u8>,
    then: Vec<u8>,
    /// The bytes the entries take in the server's table (name, value and 32 each).
    table_bytes: usize,
    /// The first request's block with literals that stay out of the table, for a server
    /// whose table is too small.
    unindexed: Vec<u8>,
}

impl RequestHeaders {
    fn new(authority: &str, path: &str, token: &str) -> Self {
        let authorization = format!("Bearer {token}");
        // Static table index of each name (RFC 7541, appendix A), or 0 for a literal name.
        let fields = [
            (4, ":path", path),
            (1, ":authority", authority),
            (31, "content-type", "application/grpc"),
            (0, "te", "trailers"),
            (23, "authorization", authorization.as_str()),
        ];
        // `:method POST` and `:scheme http`, entries 3 and 6 of the static table.
        let method_and_scheme = || {
            let mut block = Vec::new();
            hpack_indexed(&mut block, 3);
            hpack_indexed(&mut block, 6);
            block
        };
        let literals = |indexing: bool| {
            let mut block = method_and_scheme();
            for (index, name, value) in fields {
                hpack_literal(
                    &mut block,
                    indexing,
                    index,
                    name.as_bytes(),
                    value.as_bytes(),
                );
            }
            block
        };
        let mut then = method_and_scheme();
        // The newest entry has the lowest index, 62 (the first after the static table).
        for age in (0..fields.len()).rev() {
            hpack_indexed(&mut then, 62 + age);
        }
        Self {
            first: literals(true),
            then,
            table_bytes: fields.iter().map(|(_, n, v)| n.len() + v.len() + 32).sum(),
            unindexed: literals(false),
        }
    }
}

/// A call in flight: when its headers went out, and whether its answer's headers came.
struct Call {
    sent: Instant,
    answered: bool,
}

/// One connection's calls, and what the server allows.
struct Connection {
    socket: TcpStream,
    decoder: loona_hpack::Decoder<'static>,
    /// Bytes to write at the next write: requests, acknowledgements.
    out: Vec<u8>,
    /// Bytes read and not yet parsed into whole frames: the first `filled` of `input`.
    input: Vec<u8>,
    filled: usize,
    /// A header block whose CONTINUATION frames are still coming: its stream and bytes.
    partial: Option<(u32, bool, Vec<u8>)>,
    calls: HashMap<u32, Call>,
    next_stream: u32,
    /// True once the server's settings came.
    settled: bool,
    /// The connection's send window, and a new stream's.
    window: i64,
    stream_window: i64,
    max_streams: usize,
    max_frame: usize,
    /// The size of the server's header table (which the requests' headers enter).
    table_size: usize,
    outcome: Outcome,
}

fn load(
    addr: SocketAddr,
    headers: &RequestHeaders,
    frames: &Frames,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let socket = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut conn = Connection {
        socket,
        decoder: loona_hpack::Decoder::new(),
        out: Vec::with_capacity(in_flight * (frames.largest_frame() + headers.first.len() + 32)),
        input: Vec::new(),
        filled: 0,
        partial: None,
        calls: HashMap::with_capacity(in_flight),
        next_stream: 1,
        settled: false,
        window: i64::from(DEFAULT_WINDOW),
        stream_window: i64::from(DEFAULT_WINDOW),
        max_streams: usize::MAX,
        max_frame: DEFAULT_MAX_FRAME,
        table_size: DEFAULT_TABLE_SIZE,
        outcome: Outcome::default(),
    };
    conn.handshake()?;
    let start = Instant::now();
    let deadline = start + duration;
    loop {
        let now = Instant::now();
        let starting = now < deadline && conn.outcome.failed <= 1000;
        let limit = in_flight.min(conn.max_streams);
        while starting && conn.calls.len() < limit {
            if !conn.start_call(headers, frames, now)? {
                break;
            }
        }
        if !conn.out.is_empty() {
            conn.socket.write_all(&conn.out).context("sending")?;
            conn.out.clear();
        }
        // With no call in flight and calls still to start, the window is waiting for
        // the server's WINDOW_UPDATE.
        if conn.calls.is_empty() && !starting {
            break;
        }
        conn.read_frames()?;
    }
    let mut outcome = std::mem::take(&mut conn.outcome);
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

impl Connection {
    /// Sends the preface and the generator's settings, and reads until the server's.
    fn handshake(&mut self) -> anyhow::Result<()> {
        self.out.extend_from_slice(PREFACE);
        frame_header(&mut self.out, 12, SETTINGS, 0, 0);
        // No server push; the generator's window for each stream.
        for (setting, value) in [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_INITIAL_WINDOW_SIZE, OUR_WINDOW),
        ] {
            self.out.extend_from_slice(&setting.to_be_bytes());
            self.out.extend_from_slice(&value.to_be_bytes());
        }
        frame_header(&mut self.out, 4, WINDOW_UPDATE, 0, 0);
        self.out
            .extend_from_slice(&(OUR_WINDOW - DEFAULT_WINDOW).to_be_bytes());
        self.socket.write_all(&self.out).context("HTTP/2 preface")?;
        self.out.clear();
        // The server's first frame is its settings (RFC 9113, 3.4).
        while !self.settled {
            self.read_frames().context("HTTP/2 handshake")?;
        }
        Ok(())
    }

    /// Queues the next call, if the connection's window has room for its body.
    fn start_call(
        &mut self,
        headers: &RequestHeaders,
        frames: &Frames,
        now: Instant,
    ) -> anyhow::Result<bool> {
        let headers = match (self.next_stream, headers.table_bytes <= self.table_size) {
            (1, true) => &headers.first,
            (_, true) => &headers.then,
            (_, false) => &headers.unindexed,
        };
        let body = frames.largest_frame();
        anyhow::ensure!(
            body <= self.max_frame && headers.len() <= self.max_frame,
            "a request of {body} bytes does not fit the server's frames of {}",
            self.max_frame
        );
        anyhow::ensure!(
            body as i64 <= self.stream_window,
            "a request of {body} bytes does not fit the server's stream window of {}",
            self.stream_window
        );
        if body as i64 > self.window {
            return Ok(false);
        }
        let stream = self.next_stream;
        self.next_stream += 2;
        frame_header(&mut self.out, headers.len(), HEADERS, END_HEADERS, stream);
        self.out.extend_from_slice(headers);
        let at = self.out.len();
        frame_header(&mut self.out, 0, DATA, END_STREAM, stream);
        frames.write_next(&mut self.out);
        let len = self.out.len() - at - 9;
        self.out[at..at + 3].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
        self.window -= len as i64;
        self.calls.insert(
            stream,
            Call {
                sent: now,
                answered: false,
            },
        );
        Ok(true)
    }

    /// Reads what the server has sent (waiting for at least one byte) and handles every
    /// whole frame of it.
    fn read_frames(&mut self) -> anyhow::Result<()> {
        let mut input = std::mem::take(&mut self.input);
        let result = self.read_into(&mut input);
        self.input = input;
        result
    }

    fn read_into(&mut self, input: &mut Vec<u8>) -> anyhow::Result<()> {
        // The buffer keeps its length; only its start (`filled` bytes) is data.
        if input.len() - self.filled < READ_SIZE {
            input.resize(self.filled + READ_SIZE, 0);
        }
        let n = self
            .socket
            .read(&mut input[self.filled..])
            .context("receiving")?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        self.filled += n;
        let mut used = 0;
        while let Some(h) = read_frame_header(&input[used..self.filled]) {
            if self.filled - used < 9 + h.len {
                break;
            }
            self.frame(
                h.kind,
                h.flags,
                h.stream,
                &input[used + 9..used + 9 + h.len],
            )?;
            used += 9 + h.len;
        }
        input.copy_within(used..self.filled, 0);
        self.filled -= used;
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> anyhow::Result<()> {
        match kind {
            DATA if flags & END_STREAM != 0 => {
                self.finish(stream, Err("the answer ended without trailers".into()));
            }
            HEADERS => {
                let mut block = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    pad = usize::from(*block.first().context("empty padded HEADERS")?);
                    block = &block[1..];
                }
                if flags & PRIORITY != 0 {
                    block = block.get(5..).context("short HEADERS")?;
                }
                let block = &block[..block.len().checked_sub(pad).context("bad padding")?];
                let ends = flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    self.headers(stream, ends, block)?;
                } else {
                    self.partial = Some((stream, ends, block.to_vec()));
                }
            }
            CONTINUATION => {
                let (s, ends, mut block) = self.partial.take().context("a stray CONTINUATION")?;
                anyhow::ensure!(s == stream, "CONTINUATION of another stream");
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    self.headers(stream, ends, &block)?;
                } else {
                    self.partial = Some((stream, ends, block));
                }
            }
            RST_STREAM => {
                let code = read_u32(payload, 0);
                self.finish(stream, Err(format!("stream reset, code {code:?}")));
            }
            SETTINGS if flags & ACK == 0 => {
                for setting in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    let value = read_u32(setting, 2).unwrap_or_default();
                    match id {
                        SETTINGS_MAX_CONCURRENT_STREAMS => self.max_streams = value as usize,
                        SETTINGS_INITIAL_WINDOW_SIZE => self.stream_window = i64::from(value),
                        SETTINGS_MAX_FRAME_SIZE => self.max_frame = value as usize,
                        SETTINGS_HEADER_TABLE_SIZE => self.table_size = value as usize,
                        _ => {}
                    }
                }
                frame_header(&mut self.out, 0, SETTINGS, ACK, 0);
                self.settled = true;
            }
            PING if flags & ACK == 0 => {
                frame_header(&mut self.out, payload.len(), PING, ACK, 0);
                self.out.extend_from_slice(payload);
            }
            GOAWAY => anyhow::bail!(
                "the server sent GOAWAY (last stream {:?}, error code {:?}) {}",
                read_u32(payload, 0).map(|last| last & 0x7fff_ffff),
                read_u32(payload, 4),
                String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
            ),
            WINDOW_UPDATE if stream == 0 => {
                let increment = read_u32(payload, 0).context("short WINDOW_UPDATE")?;
                self.window += i64::from(increment & 0x7fff_ffff);
            }
            // The whole body of a request goes out with its headers: a stream's window
            // matters only then.
            _ => {}
        }
        Ok(())
    }

    /// A whole header block of `stream`: the answer's headers, or its trailers (which end
    /// the stream). Every block is decoded, in order, to keep the decoder's table right.
    fn headers(&mut self, stream: u32, ends: bool, block: &[u8]) -> anyhow::Result<()> {
        let (mut status, mut grpc_status, mut message) = (None, None, None);
        self.decoder
            .decode_with_cb(block, |name, value| match &*name {
                b":status" => status = Some(value.into_owned()),
                b"grpc-status" => grpc_status = Some(value.into_owned()),
                b"grpc-message" => message = Some(value.into_owned()),
                _ => {}
            })
            .map_err(|e| anyhow::anyhow!("cannot decode the server's headers: {e:?}"))?;
        let Some(call) = self.calls.get_mut(&stream) else {
            return Ok(());
        };
        if !call.answered {
            call.answered = true;
            if status.as_deref() != Some(b"200") {
                let status =
                    String::from_utf8_lossy(status.as_deref().unwrap_or_default()).into_owned();
                self.finish(stream, Err(format!("HTTP status {status}")));
                return Ok(());
            }
        }
        if !ends {
            return Ok(());
        }
        let result = match grpc_status.as_deref() {
            Some(b"0") => Ok(()),
            Some(code) => Err(format!(
                "grpc-status {}: {:?}",
                String::from_utf8_lossy(code),
                message.map(|m| String::from_utf8_lossy(&m).into_owned())
            )),
            None => Err("no grpc-status in the trailers".into()),
        };
        self.finish(stream, result);
        Ok(())
    }

    /// Ends a call with its result.
    fn finish(&mut self, stream: u32, result: Result<(), String>) {
        let Some(call) = self.calls.remove(&stream) else {
            return;
        };
        match result {
            Ok(()) => {
                self.outcome.ok += 1;
                self.outcome
                    .latencies_ms
                    .push(call.sent.elapsed().as_secs_f64() * 1000.0);
            }
            Err(e) => {
                self.outcome.failed += 1;
                self.outcome.first_failure.get_or_insert(e);
            }
        }
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
            .map(|_| {
                let mut frame = Vec::new();
                frames.write_next(&mut frame);
                decode(&frame).article.unwrap()
            })
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
        assert_eq!(frames.largest_frame(), frames.sample().len());
    }

    #[test]
    fn the_largest_frame_is_the_longest_template_whichever_comes_first() {
        let frames = Frames::new(3, |placeholder, n| PublishArticleRequest {
            article: Some(Article {
                id: format!("a-{placeholder}"),
                title: "长".repeat(3 - n),
                ..Article::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let sizes: Vec<usize> = (0..3)
            .map(|_| {
                let mut frame = Vec::new();
                frames.write_next(&mut frame);
                frame.len()
            })
            .collect();
        assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
        assert_eq!(frames.largest_frame(), sizes[0]);
    }

    #[test]
    fn a_frame_header_written_is_read_back_and_short_input_reads_as_none() {
        let mut out = Vec::new();
        frame_header(
            &mut out,
            70_000,
            HEADERS,
            END_HEADERS | END_STREAM,
            0x8000_0007,
        );
        assert_eq!(
            read_frame_header(&out),
            Some(FrameHeader {
                len: 70_000,
                kind: HEADERS,
                flags: END_HEADERS | END_STREAM,
                // The reserved bit is not part of the stream id.
                stream: 7,
            })
        );
        assert_eq!(read_frame_header(&out[..8]), None);
        assert_eq!(read_u32(&[0, 0, 1, 2, 3], 1), Some(0x0001_0203));
        assert_eq!(read_u32(&[0, 0, 1, 2], 1), None);
        assert_eq!(read_u32(&[0, 0, 1, 2], usize::MAX), None);
    }

    #[test]
    fn a_template_without_the_placeholder_is_refused() {
        let made = Frames::new(1, |_, _| PublishArticleRequest::default());
        assert!(made.is_err());
    }

    /// A feedpub server in this process, on free ports, with one partner: its gRPC
    /// address, its token and its store, and what stops it.
    async fn server(
        dir: &std::path::Path,
    ) -> (
        SocketAddr,
        String,
        impl AsyncFnOnce() -> usize,
        tokio::sync::oneshot::Sender<()>,
    ) {
        use feedpub::domain::{Rights, SectionGrant};
        let mut settings = feedpub::config::Settings::isolated_sample(dir).unwrap();
        // No call-rate limit, as the benchmark's own feedpub has none: the load is the
        // point, and how many calls 0.7 s holds depends on the machine.
        let unlimited = std::num::NonZeroU32::new(crate::fixture::NO_RATE_LIMIT).unwrap();
        settings.limits.requests_per_second = unlimited;
        settings.limits.burst = unlimited;
        let store = feedpub::storage::open(&settings.server).await.unwrap();
        let rights = Rights {
            sections: SectionGrant::All,
            embargoed: true,
        };
        let (partner, token) =
            feedpub::publishing::add_partner(store.as_ref(), &settings, "newsroom", rights)
                .await
                .unwrap();
        store.close().await;
        let app = feedpub::app::Application::build(settings.clone())
            .await
            .unwrap();
        let addr = app.grpc_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        // A second handle on the same database file counts what was stored.
        let stored = async move || {
            let store = feedpub::storage::open(&settings.server).await.unwrap();
            let articles = store
                .list_articles(partner.id, None, None, 100_000)
                .await
                .unwrap();
            store.close().await;
            articles.len()
        };
        (addr, token.expose().to_owned(), stored, stop)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_call_answered_ok_is_an_article_stored_and_refusals_are_counted_as_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, token, stored, stop) = server(dir.path()).await;
        let copy = crate::fixture::SampleCopy::load();
        let frames = crate::ingest::publish_frames(&copy, "loadgen").unwrap();
        let path = crate::ingest::PUBLISH_PATH;
        // Bodies of several sizes (the templates differ), more in flight than one write's
        // worth of window, for long enough that answers and requests interleave.
        let outcome = run(
            addr,
            path,
            &token,
            frames.clone(),
            32,
            Duration::from_millis(700),
        )
        .await
        .unwrap();
        assert_eq!(outcome.failed, 0, "{:?}", outcome.first_failure);
        assert!(outcome.ok > 32, "only {} calls in 0.7 s", outcome.ok);
        assert_eq!(outcome.latencies_ms.len() as u64, outcome.ok);
        assert_eq!(
            stored().await as u64,
            outcome.ok,
            "every call answered OK stored an article of its own"
        );

        // A token the server does not know: every call is answered, with grpc-status 16.
        let refused = run(
            addr,
            path,
            "not-a-token",
            frames,
            4,
            Duration::from_millis(200),
        )
        .await
        .unwrap();
        assert_eq!(refused.ok, 0);
        assert!(refused.failed >= 4, "{refused:?}");
        let first = refused.first_failure.unwrap();
        assert!(first.starts_with("grpc-status 16"), "{first}");
        let _ = stop.send(());
    }

    #[test]
    fn the_headers_after_the_first_request_name_the_entries_it_added() {
        let headers = RequestHeaders::new("127.0.0.1:1", "/a.B/C", "t0k");
        let decode = |decoder: &mut loona_hpack::Decoder, block: &[u8]| {
            decoder
                .decode(block)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                .collect::<Vec<_>>()
        };
        let expected: Vec<(String, String)> = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/a.B/C"),
            (":authority", "127.0.0.1:1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("authorization", "Bearer t0k"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let mut server = loona_hpack::Decoder::new();
        assert_eq!(decode(&mut server, &headers.first), expected);
        for _ in 0..3 {
            assert_eq!(decode(&mut server, &headers.then), expected);
        }
        assert_eq!(headers.then.len(), 7, "one byte per header");
        // Without the table, on a decoder of its own.
        assert_eq!(
            decode(&mut loona_hpack::Decoder::new(), &headers.unindexed),
            expected
        );
        assert_eq!(
            headers.table_bytes,
            5 + 6 + 10 + 11 + 12 + 16 + 2 + 8 + 13 + 10 + 5 * 32
        );
    }

    #[test]
    fn long_hpack_integers_continue_in_seven_bit_groups() {
        // RFC 7541, C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        let mut out = Vec::new();
        hpack_int(&mut out, 0x80, 7, 62);
        assert_eq!(out, [0xbe]);
    }
}
