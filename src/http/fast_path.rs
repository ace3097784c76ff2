//! The fast path in front of hyper on the HTTP port: GET and HEAD of `/feeds/…` over
//! HTTP/1.x, answered straight from the snapshot, large bodies with `sendfile(2)` from the
//! document's file in `feeds/` (no copy from user space into the socket). Any other request
//! (other paths and methods, bodies, `Expect`, `Upgrade`, HTTP/2, a head that does not
//! parse or is too long) hands the connection, with the bytes already read, to hyper and
//! the axum router, which then serve it as they always did.
//!
//! [`FeedState::answer`] decides what to send, for this path and for axum's feed route
//! alike; this module only reads request heads and writes the answers. A head is bounded
//! in size and in time ([`Timeouts`]), as are the wait for the next request and a response
//! its client stops reading; one timer per connection serves all three.

use super::feeds::{FeedAnswer, FeedRequest, FeedState};
use crate::connections::Standing;
use crate::publication::http_date;
use axum::http::StatusCode;
use bytes::{Buf, Bytes, BytesMut};
use chrono::DateTime;
use metrics::Counter;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::BorrowedFd;
use std::pin::{Pin, pin};
use std::sync::LazyLock;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The longest request head read, by the fast path and by hyper alike: a longer one goes
/// from the fast path to hyper with the bytes read, which refuses it (431), and a request
/// line alone longer than this is refused by the fast path (414).
pub(super) const MAX_HEAD: usize = 32 * 1024;
/// The most header fields the fast path parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Identity bodies from this size on go out with `sendfile(2)` from their file, corked;
/// smaller ones are written from memory together with their head, in one call (restored
/// from gzip and held, so that they leave the identity codings' open files to larger ones).
const SENDFILE_MIN: usize = 32 * 1024;
/// The same for a gzip or brotli coding, from files of their own: a feed's gzip coding
/// (about 30 KB) sent from its file put feedpub's gzip rate above nginx's (BENCHMARKS.md,
/// "Serve gzip from files").
const SENDFILE_MIN_COMPRESSED: usize = 16 * 1024;

/// How long a client may take (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a whole request head: from the connection's start, or from the head's first
    /// byte on a kept-alive connection.
    pub header: Duration,
    /// Between a response and the next request's first byte.
    pub idle: Duration,
    /// For a response's next bytes to leave once the socket is full.
    pub send: Duration,
}

/// Why the fast path closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
}

/// The connection's one timer, re-armed lazily: moving the deadline later costs a clock
/// read, not a timer; only an earlier deadline re-arms it at once.
struct Deadline {
    at: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(at: Instant) -> Self {
        Self {
            at,
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Completes once the deadline has passed.
    async fn passed(&mut self) {
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            self.timer.as_mut().reset(self.at);
        }
    }

    /// `write`, failing with `TimedOut` when it makes no progress for `timeout`. The timer
    /// is only armed when the write cannot complete at once.
    async fn write<T>(
        &mut self,
        timeout: Duration,
        write: impl Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let mut write = pin!(write);
        if let Poll::Ready(done) =
            std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
        {
            return done;
        }
        self.set(Instant::now() + timeout);
        tokio::select! {
            biased;
            done = write => done,
            () = self.passed() => {
                super::server::count_timeout(crate::connections::Stall::Send);
                Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))
            }
        }
    }
}

/// Closes the sending side of a connection the server ends after a response, then lingers
/// as hyper's path does ([`crate::connections::Watch::linger`]): a socket closed with
/// bytes unread (a pipelined request, a stray line end) answers them with a reset, which
/// can cut the response short. Meanwhile the connection waits for nothing the server must
/// answer: it may give its place away.
async fn linger(stream: &mut TcpStream, standing: &Standing) {
    standing.idle();
    crate::connections::linger(stream, Some(standing)).await;
}

/// What an HTTP/2 connection begins with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection with `read`, for hyper. An HTTP/1 request is under way until hyper has
/// answered it; HTTP/2's preface, whole or begun, is no request: the connection waits for
/// its first until hyper reads one.
fn hand_over(read: BytesMut, standing: &Standing) -> Outcome {
    let begun = read.len().min(H2_PREFACE.len());
    if begun > 0 && read[..begun] == H2_PREFACE[..begun] {
        standing.idle();
    }
    Outcome::HandOver(read.freeze())
}

/// How a connection left the fast path.
#[derive(Debug)]
pub enum Outcome {
    /// Closed: by the client, after a response that ends the connection, or at shutdown.
    Closed,
    /// A request the fast path does not answer: hyper serves the connection from here on,
    /// starting with these bytes (that request, and any pipelined after it).
    HandOver(Bytes),
}

/// Answers the feed requests on `stream`, in order, until the connection ends or a request
/// needs hyper. Stops at the first request head after `stop` is cancelled, like hyper's
/// graceful shutdown: a response in progress is finished, an idle connection is closed.
/// Marks the connection idle while it waits for its next request and busy from that
/// request's first byte, and closes it when the cap gives its place to a newer connection
/// ([`Standing`]).
pub async fn serve(
    stream: &mut TcpStream,
    feeds: &FeedState,
    timeouts: &Timeouts,
    stop: &CancellationToken,
    standing: &Standing,
) -> io::Result<Outcome> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut head = Vec::with_capacity(512);
    // The first head is timed from the connection's start.
    let mut deadline = Deadline::new(Instant::now() + timeouts.header);
    let mut expiry = Expiry::Header;
    loop {
        // Every complete request read so far, in order (pipelining).
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut fields);
            let len = match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                    if expiry == Expiry::Idle && !buf.is_empty() {
                        // A head has begun: it must now arrive whole in time.
                        deadline.set(Instant::now() + timeouts.header);
                        expiry = Expiry::Header;
                    }
                    break;
                }
                // Past the limit (a head pipelined behind another can be read whole past it):
                // whole or not, the head is refused as hyper would refuse it alone.
                Ok(_) if !buf[..MAX_HEAD].contains(&b'\n') => {
                    // Its request line alone is too long: 414 (RFC 9112 §3), as nginx answers
                    // past its header buffer, where hyper would say 431 of the whole head.
                    refuse_long_target(stream, &mut head, timeouts, &mut deadline).await?;
                    linger(stream, standing).await;
                    return Ok(Outcome::Closed);
                }
                _ => return Ok(hand_over(buf, standing)),
            };
            let Some(mut request) = Request::of(&parsed) else {
                return Ok(hand_over(buf, standing));
            };
            let answer = feeds.answer(request.path, &request.feed).await;
            if stop.is_cancelled() {
                // Shutting down: this answer is the connection's last, and says so, as
                // hyper's are then.
                request.keep_alive = false;
                request.echo_connection = true;
            }
            write_answer(
                stream,
                feeds,
                &request,
                &answer,
                &mut head,
                timeouts,
                &mut deadline,
            )
            .await?;
            let keep_alive = request.keep_alive;
            buf.advance(len);
            if !keep_alive || stop.is_cancelled() {
                linger(stream, standing).await;
                return Ok(Outcome::Closed);
            }
            let now = Instant::now();
            if buf.is_empty() {
                deadline.set(now + timeouts.idle);
                expiry = Expiry::Idle;
                standing.idle();
            } else {
                deadline.set(now + timeouts.header);
                expiry = Expiry::Header;
            }
        }
        tokio::select! {
            // An eviction first: a connection whose place a newer one took answers nothing
            // more, even with a request waiting (the cap counted it).
            biased;
            () = standing.evicted() => return Ok(Outcome::Closed),
            read = stream.read_buf(&mut buf) => if read? == 0 {
                return Ok(Outcome::Closed);
            } else if !standing.busy() {
                // Evicted between the read and the mark.
                return Ok(Outcome::Closed);
            },
            () = stop.cancelled() => return Ok(Outcome::Closed),
            () = deadline.passed() => {
                let reason = match expiry {
                    Expiry::Header => crate::connections::Stall::Header,
                    Expiry::Idle => crate::connections::Stall::Idle,
                };
                super::server::count_timeout(reason);
                return Ok(Outcome::Closed);
            }
        }
    }
}

/// Answers a request whose request line is longer than the fast path reads (414), closing
/// the connection: the rest of that line is not worth reading.
async fn refuse_long_target(
    stream: &mut TcpStream,
    head: &mut Vec<u8>,
    timeouts: &Timeouts,
    deadline: &mut Deadline,
) -> io::Result<()> {
    const BODY: &[u8] = b"request target too long\n";
    head.clear();
    head.extend_from_slice(b"HTTP/1.1 414 URI Too Long\r\n");
    push_field(head, b"content-type", b"text/plain; charset=utf-8");
    push_field(head, b"content-length", BODY.len().to_string().as_bytes());
    push_field(head, b"connection", b"close");
    push_date(head);
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(BODY);
    deadline.write(timeouts.send, stream.write_all(head)).await
}

/// A request the fast path answers.
#[derive(Debug)]
struct Request<'a> {
    /// The feed path after `/feeds/`, without the query.
    path: &'a str,
    /// HEAD: the answer's head only.
    head_only: bool,
    /// HTTP/1.0: the answer says so, and the connection closes unless asked to stay open.
    http10: bool,
    /// The connection stays open after the answer.
    keep_alive: bool,
    /// The client named the connection's fate (`close` in 1.1, `keep-alive` in 1.0): the
    /// answer confirms it in a `Connection` header, as hyper does.
    echo_connection: bool,
    feed: FeedRequest<'a>,
}

impl<'a> Request<'a> {
    /// The request, when the fast path may answer it: GET or HEAD of a feed path in
    /// HTTP/1.0 or 1.1, without a body and without asking for anything but the answer.
    fn of(parsed: &httparse::Request<'_, 'a>) -> Option<Self> {
        let head_only = match parsed.method? {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        let http10 = match parsed.version? {
            0 => true,
            1 => false,
            _ => return None,
        };
        let path = feed_path(parsed.path?)?;
        let (mut close, mut keep_alive) = (false, false);
        // The first two Host lines (a third changes nothing: two are already too many).
        let mut hosts: [Option<&[u8]>; 2] = [None, None];
        for field in parsed.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("host") {
                if let Some(slot) = hosts.iter_mut().find(|slot| slot.is_none()) {
                    *slot = Some(field.value);
                }
                continue;
            }
            if ["content-length", "transfer-encoding", "expect", "upgrade"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                return None;
            }
            if name.eq_ignore_ascii_case("connection") {
                for option in field.value.split(|&b| b == b',') {
                    let option = option.trim_ascii();
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        // A request hyper must refuse (400) for its Host lines goes to it.
        if !super::host_is_valid(!http10, hosts.into_iter().flatten()) {
            return None;
        }
        let (keep_alive, echo_connection) = if http10 {
            (keep_alive && !close, keep_alive && !close)
        } else {
            (!close, close)
        };
        Some(Self {
            path,
            head_only,
            http10,
            keep_alive,
            echo_connection,
            feed: FeedRequest::from_headers(
                parsed.headers.iter().map(|field| (field.name, field.value)),
            )
            .with_head(head_only),
        })
    }
}

/// The part of an origin-form target after `/feeds/`, without the query, when it is one
/// the router would give the feed route unchanged: not empty and nothing percent-encoded
/// (hyper and axum decode those; such requests go to them).
fn feed_path(target: &str) -> Option<&str> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let rest = path.strip_prefix("/feeds/")?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
    (!rest.is_empty() && rest.bytes().all(plain) && target.bytes().all(|b| plain(b) || b == b'?'))
        .then_some(rest)
}

/// Writes `answer` to `request`: its head (status line, the answer's headers,
/// `Content-Length`, `Connection` when the client named it, `Date`), then its body unless
/// the request is HEAD or the answer a 304; a large body from its file in `feeds/` when it
/// has one.
async fn write_answer(
    stream: &mut TcpStream,
    feeds: &FeedState,
    request: &Request<'_>,
    answer: &FeedAnswer,
    head: &mut Vec<u8>,
    timeouts: &Timeouts,
    deadline: &mut Deadline,
) -> io::Result<()> {
    let len = answer.body.len();
    head.clear();
    head.extend_from_slice(if request.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(answer.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        answer
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &answer.headers {
        push_field(head, name.as_str().as_bytes(), value.as_bytes());
    }
    if answer.status != StatusCode::NOT_MODIFIED {
        push_field(head, b"content-length", len.to_string().as_bytes());
    }
    if request.echo_connection {
        let value: &[u8] = if request.keep_alive {
            b"keep-alive"
        } else {
            b"close"
        };
        push_field(head, b"connection", value);
    }
    match &answer.date {
        Some(date) => push_field(head, b"date", date.as_bytes()),
        None => push_date(head),
    }
    head.extend_from_slice(b"\r\n");

    if request.head_only || answer.body.is_empty() {
        return deadline.write(timeouts.send, stream.write_all(head)).await;
    }
    let sendfile_min = if answer.body.is_compressed() {
        SENDFILE_MIN_COMPRESSED
    } else {
        SENDFILE_MIN
    };
    if len >= sendfile_min
        && let Some(file) = feeds.file_of(request.path, &answer.body)
    {
        static FROM_FILES: LazyLock<Counter> =
            LazyLock::new(|| metrics::counter!("feedpub_http_sendfile_responses_total"));
        FROM_FILES.increment(1);
        let stream: &TcpStream = stream;
        let _corked = Corked::new(stream);
        send_more(stream, head, timeouts.send, deadline).await?;
        return send_file(stream, file, len, timeouts.send, deadline).await;
    }
    let body = answer.body.bytes();
    // One vectored write for the head and the body.
    let mut whole = Buf::chain(&head[..], body);
    while whole.has_remaining() {
        // Timed per write call: a client that reads slowly but steadily is served.
        let written = deadline
            .write(timeouts.send, stream.write_buf(&mut whole))
            .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Appends the `Date` field, formatted at most once a second per thread.
fn push_date(head: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(second, text)| {
        if *second != now || text.is_empty() {
            let at = i64::try_from(now)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            *text = http_date(at);
            *second = now;
        }
        push_field(head, b"date", text.as_bytes());
    });
}

/// A socket corked (`TCP_CORK`) for the life of the value, as nginx's `tcp_nopush` does
/// around `sendfile`: the head and the body leave in full segments, the last when the value
/// goes, however the response ends. Uncorked, a 200 KB body cost feedpub twice nginx's CPU
/// per response on loopback, and 0.6 of its rate (BENCHMARKS.md, "Serve corked").
struct Corked<'s>(&'s TcpStream);

impl<'s> Corked<'s> {
    fn new(stream: &'s TcpStream) -> Self {
        // A socket that refuses is sent to uncorked: slower, not wrong.
        let _ = rustix::net::sockopt::set_tcp_cork(stream, true);
        Self(stream)
    }
}

impl Drop for Corked<'_> {
    fn drop(&mut self) {
        let _ = rustix::net::sockopt::set_tcp_cork(self.0, false);
    }
}

/// Writes all of `bytes` with `MSG_MORE`: the kernel holds them back to go out in one
/// segment with the data that follows (the start of the body).
async fn send_more(
    stream: &TcpStream,
    mut bytes: &[u8],
    timeout: Duration,
    deadline: &mut Deadline,
) -> io::Result<()> {
    use rustix::net::{SendFlags, send};
    while !bytes.is_empty() {
        let sent = deadline
            .write(
                timeout,
                stream.async_io(Interest::WRITABLE, || {
                    Ok(send(stream, bytes, SendFlags::MORE | SendFlags::NOSIGNAL)?)
                }),
            )
            .await?;
        bytes = &bytes[sent..];
    }
    Ok(())
}

/// Sends the first `len` bytes of `file` with `sendfile(2)`, from an explicit offset (the
/// file's own position is shared by every connection sending it, and never moves).
async fn send_file(
    stream: &TcpStream,
    file: BorrowedFd<'_>,
    len: usize,
    timeout: Duration,
    deadline: &mut Deadline,
) -> io::Result<()> {
    let mut offset = 0_u64;
    while let Some(left) = len.checked_sub(offset as usize).filter(|&left| left > 0) {
        let sent = deadline
            .write(
                timeout,
                stream.async_io(Interest::WRITABLE, || {
                    Ok(rustix::fs::sendfile(stream, file, Some(&mut offset), left)?)
                }),
            )
            .await?;
        if sent == 0 {
            // The file was checked to hold the body; should it end early all the same, the
            // response cannot be completed and the connection must not carry on.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response sent from a file is corked while it is sent and uncorked after, even when
    /// it ends early: a socket left corked would hold each next response's last segment.
    #[tokio::test]
    async fn a_socket_is_corked_only_while_a_file_is_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let corked = || rustix::net::sockopt::tcp_cork(&server).unwrap();
        assert!(!corked());
        let sending = async {
            let _corked = Corked::new(&server);
            assert!(corked(), "corked while sending");
            Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
        };
        assert!(sending.await.is_err());
        assert!(!corked(), "uncorked once the response ended, in error too");
        drop(client);
    }

    /// A request read once shutdown began is answered, with `Connection: close`, and the
    /// connection closed.
    #[tokio::test]
    async fn an_answer_made_once_shutdown_began_says_the_connection_closes() {
        use crate::config::Settings;
        use crate::publication::Publication;
        use tokio::net::TcpListener;
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::isolated_sample(dir.path()).unwrap();
        let store = crate::storage::open(&settings.server).await.unwrap();
        let (publication, _scheduler) = Publication::start(
            store.clone(),
            std::sync::Arc::new(settings.clone()),
            crate::health::Health::new(),
            crate::app::lock_feeds_folder(&settings.server).unwrap(),
        )
        .await
        .unwrap();
        let feeds = FeedState::new(publication, settings.server.feeds_dir.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client
            .write_all(b"GET /feeds/politics/rss.xml HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        server.readable().await.unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let timeouts = Timeouts {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(5),
            send: Duration::from_secs(5),
        };
        let serving = tokio::spawn(async move {
            serve(&mut server, &feeds, &timeouts, &stop, &Standing::default()).await
        });
        let mut answer = Vec::new();
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(client.read_buf(&mut answer).await.unwrap() > 0, "no answer");
        }
        // The client goes: the server, lingering for it, closes.
        drop(client);
        let outcome = serving.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Closed));
        let answer = String::from_utf8_lossy(&answer);
        let head = answer.split("\r\n\r\n").next().unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        store.close().await;
    }

    #[test]
    fn only_plain_feed_paths_take_the_fast_path() {
        let cases = [
            ("/feeds/politics/rss.xml", Some("politics/rss.xml")),
            ("/feeds/politics/rss.xml?x=1", Some("politics/rss.xml")),
            ("/feeds/feed.xsl", Some("feed.xsl")),
            (
                "/feeds/politics/archive/2/atom.xml",
                Some("politics/archive/2/atom.xml"),
            ),
            ("/feeds/", None),
            ("/feeds", None),
            ("/feeds/tags/%E5%9F%BA/rss.xml", None),
            ("/feeds/a b", None),
            ("/feeds/x?q=%20", None),
            ("/metrics", None),
            ("http://host/feeds/politics/rss.xml", None),
            ("*", None),
        ];
        for (target, expected) in cases {
            assert_eq!(feed_path(target), expected, "{target}");
        }
    }

    fn request(raw: &str, check: impl FnOnce(Option<Request<'_>>)) {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        assert!(parsed.parse(raw.as_bytes()).unwrap().is_complete(), "{raw}");
        check(Request::of(&parsed));
    }

    #[test]
    fn connection_options_decide_keep_alive_by_version() {
        let cases = [
            ("GET /feeds/a HTTP/1.1\r\nHost: x\r\n\r\n", true, false),
            (
                "GET /feeds/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                false,
                true,
            ),
            (
                "GET /feeds/a HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
                true,
            ),
            ("GET /feeds/a HTTP/1.0\r\n\r\n", false, false),
            (
                "GET /feeds/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                true,
                true,
            ),
        ];
        for (raw, keep_alive, echo) in cases {
            request(raw, |r| {
                let r = r.expect(raw);
                assert_eq!(
                    (r.keep_alive, r.echo_connection),
                    (keep_alive, echo),
                    "{raw}"
                );
            });
        }
    }

    #[test]
    fn requests_with_bodies_expectations_upgrades_or_other_methods_go_to_hyper() {
        for raw in [
            "POST /feeds/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS /feeds/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /feeds/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET /feeds/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /feeds/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET /feeds/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            // No Host, or two: hyper answers 400.
            "GET /feeds/a HTTP/1.1\r\n\r\n",
            "GET /feeds/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        ] {
            request(raw, |r| assert!(r.is_none(), "{raw}"));
        }
        request("HEAD /feeds/a HTTP/1.1\r\nHost: x\r\n\r\n", |r| {
            let r = r.expect("HEAD");
            assert!(r.head_only && !r.http10);
            assert_eq!(r.path, "a");
        });
    }
}
