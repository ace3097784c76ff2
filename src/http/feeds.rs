//! Serving feed documents from the in-memory snapshot: content coding chosen by
//! `Accept-Encoding`, strong ETags per coding, conditional GET and HEAD. One function,
//! [`FeedState::answer`], decides every feed response, whether axum or the fast path
//! (`fast_path.rs`) sends it.

use crate::domain::FeedScope;
use crate::publication::{
    BROTLI_SUFFIX, DiskFile, FeedFile, GZIP_SUFFIX, Publication, http_date, variant_etag,
};
use crate::render::Format;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics::Counter;
use std::borrow::Cow;
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// What the feed routes need: the snapshot, where its files are, and per-feed request
/// counters.
#[derive(Clone)]
pub struct FeedState {
    pub publication: Publication,
    feeds_dir: Arc<PathBuf>,
    counters: Arc<RwLock<HashMap<String, Arc<FeedCounters>>>>,
}

impl FeedState {
    /// Feed routes over `publication`, whose files are written to `feeds_dir`.
    pub fn new(publication: Publication, feeds_dir: PathBuf) -> Self {
        Self {
            publication,
            feeds_dir: Arc::new(feeds_dir),
            counters: Arc::default(),
        }
    }

    /// The open file in `feeds/` that holds `body`, the answer to a GET of `path`, for
    /// `sendfile(2)`: only published documents have one (archive pages are not written),
    /// and only while it holds exactly their bytes (see [`DiskFile::get`]). A document not
    /// compressed yet has no file yet either: its files are written with its codings.
    pub fn file_of<'b>(&self, path: &str, body: &'b FeedBody) -> Option<BorrowedFd<'b>> {
        let FeedBody::Document {
            file,
            coding,
            published: true,
        } = body
        else {
            return None;
        };
        file.codings.as_ref()?;
        let chosen = representation(file, *coding);
        chosen.disk.get(
            || self.feeds_dir.join(format!("{path}{}", chosen.suffix)),
            || chosen.bytes(),
        )
    }

    /// The counters of one feed document, registered on first use (no allocation after).
    fn counters(&self, path: &str) -> Arc<FeedCounters> {
        if let Some(found) = self.counters.read().ok().and_then(|m| m.get(path).cloned()) {
            return found;
        }
        // Author and tag feeds count as `author` and `tag`: one label per name would be
        // thousands of series.
        let (feed, file) = match path.rsplit_once('/') {
            Some((_, file)) => (FeedScope::metric_label_of(path), file),
            None => ("", path),
        };
        let format = Format::from_file_name(file).map_or("other", Format::short_name);
        let labels = |status: &'static str| {
            [
                ("feed", feed.to_owned()),
                ("format", format.to_owned()),
                ("status", status.to_owned()),
            ]
        };
        let bytes = |encoding: &'static str| {
            metrics::counter!("feedpub_http_response_bytes_total",
                "feed" => feed.to_owned(), "format" => format.to_owned(), "encoding" => encoding)
        };
        let counters = Arc::new(FeedCounters {
            ok: metrics::counter!("feedpub_http_requests_total", &labels("200")),
            not_modified: metrics::counter!("feedpub_http_requests_total", &labels("304")),
            precondition_failed: metrics::counter!("feedpub_http_requests_total", &labels("412")),
            bytes: [bytes("identity"), bytes("gzip"), bytes("br")],
        });
        if let Ok(mut map) = self.counters.write() {
            map.insert(path.to_owned(), counters.clone());
        }
        counters
    }
}

/// Prometheus counters of one feed document.
struct FeedCounters {
    ok: Counter,
    not_modified: Counter,
    precondition_failed: Counter,
    /// Body bytes sent, by coding: identity, gzip, brotli.
    bytes: [Counter; 3],
}

/// A content coding feedpub has precompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

/// The request headers a feed response depends on, as sent; each server hands them over
/// from its own parser.
#[derive(Debug, Default)]
pub struct FeedRequest<'a> {
    accept_encoding: Lines<'a>,
    accept: Lines<'a>,
    if_match: Lines<'a>,
    if_none_match: Lines<'a>,
    /// `If-Modified-Since` and `If-Unmodified-Since`, each one date.
    if_modified_since: OneDate<'a>,
    if_unmodified_since: OneDate<'a>,
    /// A HEAD request: answered alike, but no body bytes are counted as sent.
    head: bool,
}

/// A header field that holds one date: sent on more than one line, it has more than one
/// member, and is ignored (RFC 9110 §13.1.3, §13.1.4).
#[derive(Debug, Default, Clone, Copy)]
enum OneDate<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Many,
}

impl<'a> OneDate<'a> {
    fn push(&mut self, line: &'a [u8]) {
        *self = match self {
            Self::Absent => Self::One(line),
            Self::One(_) | Self::Many => Self::Many,
        };
    }

    /// The value, when there is exactly one.
    fn value(self) -> Option<&'a [u8]> {
        match self {
            Self::One(line) => Some(line),
            Self::Absent | Self::Many => None,
        }
    }
}

/// The lines of one list-valued header field, which together are one list (RFC 9110
/// §5.3): the first [`Lines::MAX`] kept in place, any more in a vector (the request head
/// is bounded, so they are too).
#[derive(Debug, Default, Clone)]
struct Lines<'a> {
    lines: [&'a [u8]; Lines::MAX],
    count: usize,
    more: Vec<&'a [u8]>,
}

impl<'a> Lines<'a> {
    const MAX: usize = 8;

    fn push(&mut self, line: &'a [u8]) {
        match self.lines.get_mut(self.count) {
            Some(slot) => {
                *slot = line;
                self.count += 1;
            }
            None => self.more.push(line),
        }
    }

    fn is_present(&self) -> bool {
        self.count > 0
    }

    /// The list's members, trimmed, across every line that is text.
    fn items(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.lines[..self.count]
            .iter()
            .chain(&self.more)
            .filter_map(|line| header_text(line))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
    }
}

impl<'a> FeedRequest<'a> {
    /// What a request through the router asks of a document, from its method and headers.
    pub fn of(method: &Method, headers: &'a HeaderMap) -> Self {
        Self::from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
            .with_head(method == Method::HEAD)
    }

    /// The headers that matter among `(name, value)` pairs; names in any case.
    pub fn from_headers(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut request = Self::default();
        for (name, value) in headers {
            let lines = if name.eq_ignore_ascii_case("accept-encoding") {
                &mut request.accept_encoding
            } else if name.eq_ignore_ascii_case("accept") {
                &mut request.accept
            } else if name.eq_ignore_ascii_case("if-none-match") {
                &mut request.if_none_match
            } else if name.eq_ignore_ascii_case("if-match") {
                &mut request.if_match
            } else {
                if name.eq_ignore_ascii_case("if-modified-since") {
                    request.if_modified_since.push(value);
                } else if name.eq_ignore_ascii_case("if-unmodified-since") {
                    request.if_unmodified_since.push(value);
                }
                continue;
            };
            lines.push(value);
        }
        request
    }

    /// The same request made with HEAD when `head`.
    pub fn with_head(self, head: bool) -> Self {
        Self { head, ..self }
    }
}

/// The answer to a GET of a feed path, decided once for every server that sends it.
#[derive(Debug)]
pub struct FeedAnswer {
    pub status: StatusCode,
    /// Every header but `Content-Length`, `Date` and `Connection`, which the server adds
    /// (`Content-Length` from the body, except on 304).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: FeedBody,
    /// The answer's `Date` when its `Last-Modified` was capped to it (a document dated
    /// ahead of the clock): the server sends this one instead of its own, read at another
    /// moment.
    pub date: Option<HeaderValue>,
}

/// The body of a [`FeedAnswer`]; a server answering HEAD sends none but counts its length.
#[derive(Debug)]
pub enum FeedBody {
    /// No body (304): `len` is that of the body a 200 would have sent.
    NotModified { len: usize },
    /// A short plain-text message (404, 503).
    Text(&'static str),
    /// A document in one of its codings.
    Document {
        file: Arc<FeedFile>,
        coding: Coding,
        /// From the snapshot, so written to `feeds/` (archive pages are not).
        published: bool,
    },
}

impl FeedBody {
    /// The bytes to send (a document's identity coding may have to be restored from its
    /// gzip coding first: sending it from its file needs only [`FeedBody::len`]).
    pub fn bytes(&self) -> Bytes {
        match self {
            Self::NotModified { .. } => Bytes::new(),
            Self::Text(text) => Bytes::from_static(text.as_bytes()),
            Self::Document { file, coding, .. } => representation(file, *coding).bytes(),
        }
    }

    /// How many bytes there are to send.
    pub fn len(&self) -> usize {
        match self {
            Self::NotModified { .. } => 0,
            Self::Text(text) => text.len(),
            Self::Document { file, coding, .. } => representation(file, *coding).len(),
        }
    }

    /// True when the body is a document's gzip or brotli coding.
    pub fn is_compressed(&self) -> bool {
        matches!(self, Self::Document { file, coding, .. }
            if representation(file, *coding).encoded.is_some())
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IntoResponse for FeedAnswer {
    fn into_response(self) -> Response {
        // A 304's Content-Length, if any, must be the 200's (RFC 9110 §8.6); hyper would
        // write 0 from the empty body over HTTP/2.
        let not_modified_len = match self.body {
            FeedBody::NotModified { len } => Some(len),
            _ => None,
        };
        let body = match &self.body {
            FeedBody::NotModified { .. } => Body::empty(),
            FeedBody::Text(text) => Body::from(*text),
            FeedBody::Document { file, coding, .. } => {
                Body::from(representation(file, *coding).bytes())
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        response.headers_mut().extend(self.headers);
        // hyper adds its own Date only when the answer has none.
        if let Some(date) = self.date {
            response.headers_mut().insert(header::DATE, date);
        }
        if let Some(len) = not_modified_len {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// `GET /feeds/{path}` through axum: see [`FeedState::answer`]. `path` comes decoded;
/// an encoded slash (`%2F`) is not a slash (RFC 3986, section 2.2), so a target holding
/// one names no document: `/feeds/politics%2Frss.xml` is not a second URL of
/// `/feeds/politics/rss.xml`. Nor does one whose bytes, decoded, are not UTF-8 (`%FF`):
/// valid syntax, for a document that does not exist.
pub async fn serve_feed(
    State(state): State<FeedState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let raw = uri.path().as_bytes();
    let path = match path {
        Ok(Path(path)) if !raw.windows(3).any(|w| w.eq_ignore_ascii_case(b"%2f")) => path,
        _ => return no_such_feed().into_response(),
    };
    state
        .answer(&path, &FeedRequest::of(&method, &headers))
        .await
        .into_response()
}

/// 404 for a path under `/feeds/` that names no document, counted; kept by caches five
/// seconds at most (a cache may keep a 404 it is told nothing about for minutes, and an
/// author or tag feed is 404 until its first article, on a replica until it has followed
/// it).
fn no_such_feed() -> FeedAnswer {
    metrics::counter!("feedpub_http_requests_total",
        "feed" => "unknown", "format" => "unknown", "status" => "404")
    .increment(1);
    let mut answer = FeedAnswer::text(StatusCode::NOT_FOUND, "no such feed\n");
    answer.headers.push((
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=5"),
    ));
    answer
}

/// The answer to a CORS preflight (`OPTIONS`) for a path under `/feeds/`, the index page
/// or the OPML list: a script on another origin may GET and HEAD them with any request
/// header it may send, its own
/// `If-None-Match` or `If-Modified-Since` included; browsers keep the answer a day.
pub async fn preflight() -> impl axum::response::IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "GET, HEAD, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
}

/// 503 for an author or tag feed that a start found and has not built yet: it will be
/// served in a moment (a 404 would tell aggregators it is gone). Counted.
fn not_built_yet(path: &str) -> FeedAnswer {
    metrics::counter!("feedpub_http_requests_total",
        "feed" => FeedScope::metric_label_of(path).to_owned(), "format" => "unknown", "status" => "503")
    .increment(1);
    let mut answer = FeedAnswer::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "this feed is being built after a restart; retry in a second\n",
    );
    answer.headers.extend([
        (header::RETRY_AFTER, HeaderValue::from_static("1")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]);
    answer
}

impl FeedState {
    /// The answer to a GET of `/feeds/{path}`: the bytes of `feeds/{path}` in the best
    /// coding the client accepts, or 304 when the client's copy is current; counted in the
    /// metrics. HEAD is answered alike, without the body.
    pub async fn answer(&self, path: &str, request: &FeedRequest<'_>) -> FeedAnswer {
        // Current documents come from the snapshot; archive pages are rendered on request.
        let (file, counters_key, published) = match self.publication.get(path) {
            Some(file) => (file, Cow::Borrowed(path), true),
            None => match self.publication.archive(path).await {
                Ok(Some(file)) => (file, archive_counters_key(path), false),
                Ok(None) if self.publication.is_unbuilt(path) => return not_built_yet(path),
                Ok(None) => return no_such_feed(),
                Err(e) => {
                    tracing::error!(error = %e, path, "cannot render an archive page");
                    return FeedAnswer::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "archive unavailable, retry later\n",
                    );
                }
            },
        };
        self.answer_file(file, &counters_key, published, request)
    }

    /// The answer to a GET of `file`, a document served at `path` (published: from the
    /// snapshot, written to `feeds/`): see [`FeedState::answer`].
    pub fn answer_file(
        &self,
        file: Arc<FeedFile>,
        path: &str,
        published: bool,
        request: &FeedRequest<'_>,
    ) -> FeedAnswer {
        let counters = self.counters(path);
        let coding = available(&file, negotiate(&request.accept_encoding));
        // Browsers show `application/rss+xml` and `application/atom+xml` as plain text and
        // only apply the feed's XSL stylesheet to a generic XML type, so a client that
        // prefers HTML to the feed's type (a browser opening the link) gets the same bytes
        // labelled `application/xml`. Feed readers list the feed types first.
        let xml_feed = file.content_type.contains("+xml");
        let styled = xml_feed && prefers_html(&request.accept, file.content_type);
        let chosen = representation(&file, coding);
        // The browser's copy is another representation (another Content-Type), so it has a
        // strong ETag of its own: a cache that revalidates one never serves the other.
        let styled_etag = styled.then(|| variant_etag(chosen.etag, "-xml"));
        let (etag, etag_header) = match &styled_etag {
            Some((etag, header)) => (etag.as_str(), header),
            None => (chosen.etag, chosen.etag_header),
        };
        // One reading of the clock for the whole answer.
        let now = Utc::now();
        let decided = precondition(
            request,
            etag,
            (file.last_modified, file.shares_its_second),
            now,
        );
        let (last_modified, date) = sent_date(&file, now);
        let mut headers = Vec::with_capacity(9);
        let status = match decided {
            Precondition::Failed => {
                counters.precondition_failed.increment(1);
                return FeedAnswer::text(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed: the feed is not the version the request names\n",
                );
            }
            Precondition::NotModified => {
                counters.not_modified.increment(1);
                StatusCode::NOT_MODIFIED
            }
            Precondition::Proceed => {
                counters.ok.increment(1);
                if !request.head {
                    counters.bytes[coding as usize].increment(chosen.len() as u64);
                }
                let content_type = if styled {
                    HeaderValue::from_static("application/xml; charset=utf-8")
                } else {
                    file.headers.content_type.clone()
                };
                headers.push((header::CONTENT_TYPE, content_type));
                match coding {
                    Coding::Identity => {}
                    Coding::Gzip => {
                        headers.push((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
                    }
                    Coding::Brotli => {
                        headers.push((header::CONTENT_ENCODING, HeaderValue::from_static("br")));
                    }
                }
                StatusCode::OK
            }
        };
        headers.extend([
            (header::ETAG, etag_header.clone()),
            (header::LAST_MODIFIED, last_modified),
            (header::CACHE_CONTROL, file.cache_control(now)),
            (
                header::VARY,
                HeaderValue::from_static(if xml_feed {
                    "Accept-Encoding, Accept"
                } else {
                    "Accept-Encoding"
                }),
            ),
            (header::LINK, file.headers.link.clone()),
            // Public documents: a reader running in a browser on another origin (a web
            // reader, a JSON Feed client) may read them, and the headers it revalidates
            // by and finds the hub in (Last-Modified is readable without being named).
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ETag, Link"),
            ),
        ]);
        let body = if status == StatusCode::OK {
            FeedBody::Document {
                file,
                coding,
                published,
            }
        } else {
            FeedBody::NotModified { len: chosen.len() }
        };
        FeedAnswer {
            status,
            headers,
            body,
            date,
        }
    }
}

/// The Last-Modified of an answer with `file` at `now`, and the Date the answer must then
/// carry, if not the server's own: the document's date, but never later than the answer's
/// Date (RFC 9110 §8.8.2.1). A date ahead of this clock (another replica's clock ahead, a
/// clock set back, a file edited by hand) is replaced with the answer's time, sent as its
/// Date too, so that both are one reading of the clock; once the clock has passed it, as
/// it is. Such a date tells a client nothing it could revalidate by: see [`precondition`].
fn sent_date(file: &FeedFile, now: DateTime<Utc>) -> (HeaderValue, Option<HeaderValue>) {
    if file.last_modified <= now {
        return (file.headers.last_modified.clone(), None);
    }
    match HeaderValue::from_str(&http_date(now)) {
        Ok(date) => (date.clone(), Some(date)),
        Err(_) => (file.headers.last_modified.clone(), None),
    }
}

impl FeedAnswer {
    /// A plain-text answer, readable from any origin as the feeds are (a script on another
    /// origin sees its status, not a network error).
    fn text(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
            ],
            body: FeedBody::Text(text),
            date: None,
        }
    }
}

/// One coding of a document.
struct Representation<'a> {
    /// Its bytes; `None` for the identity coding, which the document gives on demand.
    encoded: Option<&'a Bytes>,
    file: &'a FeedFile,
    etag: &'a str,
    etag_header: &'a HeaderValue,
    /// Its file in `feeds/`: the document's own name plus this suffix.
    suffix: &'static str,
    disk: &'a DiskFile,
}

impl<'a> Representation<'a> {
    fn bytes(&self) -> Bytes {
        self.encoded.cloned().unwrap_or_else(|| self.file.bytes())
    }

    fn len(&self) -> usize {
        self.encoded.map_or(self.file.len(), Bytes::len)
    }
}

fn representation(file: &FeedFile, coding: Coding) -> Representation<'_> {
    let encoded = match (coding, &file.codings) {
        (Coding::Gzip, Some(codings)) => (&codings.gzip, GZIP_SUFFIX),
        (Coding::Brotli, Some(codings)) => (&codings.brotli, BROTLI_SUFFIX),
        _ => {
            return Representation {
                encoded: None,
                file,
                etag: &file.etag,
                etag_header: &file.headers.etag,
                suffix: "",
                disk: &file.disk,
            };
        }
    };
    let (encoded, suffix) = encoded;
    Representation {
        encoded: Some(&encoded.bytes),
        file,
        etag: &encoded.etag,
        etag_header: &encoded.etag_header,
        suffix,
        disk: &encoded.disk,
    }
}

/// The coding a document is sent in: the one negotiated, or identity while the document
/// is not compressed yet (for a few milliseconds after it is rendered, so that readers
/// see a change before its compression is done).
fn available(file: &FeedFile, coding: Coding) -> Coding {
    if file.codings.is_some() {
        coding
    } else {
        Coding::Identity
    }
}

/// Archive pages share their feed's counters: `politics/archive/3/atom.xml` counts as
/// `politics/atom.xml`, so the number of pages never multiplies the metrics.
fn archive_counters_key(path: &str) -> Cow<'_, str> {
    let feed = path.split('/').next().unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    Cow::Owned(format!("{feed}/{file}"))
}

/// True when the `Accept` list rates `text/html` above the feed's own media type (given
/// with its parameters), each by its most specific matching range (RFC 9110 §12.5.1).
fn prefers_html(accept: &Lines<'_>, feed_type: &str) -> bool {
    if !accept.is_present() {
        return false;
    }
    let feed_type = feed_type.split(';').next().unwrap_or("").trim();
    let html = quality_of(accept, "text/html");
    html > 0.0 && html > quality_of(accept, feed_type)
}

/// The q-value an `Accept` list gives `media_type`: that of the most specific range that
/// matches it (`type/subtype`, then `type/*`, then `*/*`); 0 when none does.
fn quality_of(accept: &Lines<'_>, media_type: &str) -> f32 {
    let (kind, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    accept
        .items()
        .filter_map(|item| {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim();
            let specificity = if range.eq_ignore_ascii_case(media_type) {
                3
            } else if range
                .strip_suffix("/*")
                .is_some_and(|k| k.eq_ignore_ascii_case(kind))
            {
                2
            } else if range == "*/*" {
                1
            } else {
                return None;
            };
            Some((specificity, q_value(parts)))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map_or(0.0, |(_, q)| q)
}

/// The `q` parameter among a list member's parameters: 1 when absent or unreadable,
/// clamped to 0..=1.
fn q_value<'a>(parameters: impl Iterator<Item = &'a str>) -> f32 {
    parameters
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("q").then_some(value)
        })
        .find_map(|v| v.trim().parse::<f32>().ok())
        .unwrap_or(1.0)
        .clamp(0.0, 1.0)
}

/// A header value as text, by the rule of `HeaderValue::to_str`: visible ASCII, spaces
/// and tabs only.
fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Picks the coding with the highest q-value the client accepts (RFC 9110 §12.5.3);
/// among equals, brotli before gzip before identity. Without the header: identity.
fn negotiate(accept: &Lines<'_>) -> Coding {
    if !accept.is_present() {
        return Coding::Identity;
    }
    let mut q_br = None;
    let mut q_gzip = None;
    let mut q_identity = None;
    let mut q_any = None;
    for item in accept.items() {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = q_value(parts);
        let is = |coding: &str| name.eq_ignore_ascii_case(coding);
        if is("br") {
            q_br = Some(q);
        } else if is("gzip") || is("x-gzip") {
            q_gzip = Some(q);
        } else if is("identity") {
            q_identity = Some(q);
        } else if name == "*" {
            q_any = Some(q);
        }
    }
    let br = q_br.or(q_any).unwrap_or(0.0);
    let gzip = q_gzip.or(q_any).unwrap_or(0.0);
    // Identity is acceptable unless refused explicitly (or through `*;q=0`), but any coding
    // the client names is preferred to it.
    let identity = q_identity.or(q_any.filter(|q| *q == 0.0)).unwrap_or(0.001);
    [
        (Coding::Brotli, br),
        (Coding::Gzip, gzip),
        (Coding::Identity, identity),
    ]
    .into_iter()
    .filter(|(_, q)| *q > 0.0)
    .fold(
        None,
        |best: Option<(Coding, f32)>, (coding, q)| match best {
            Some((_, best_q)) if best_q >= q => best,
            _ => Some((coding, q)),
        },
    )
    .map_or(Coding::Identity, |(coding, _)| coding)
}

/// What the preconditions of a GET or HEAD decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    /// Send the document (200).
    Proceed,
    /// The client's copy is current (304).
    NotModified,
    /// `If-Match` or `If-Unmodified-Since` is false (412).
    Failed,
}

/// RFC 9110 §13.2.2, in its order: `If-Match` (strong comparison), else
/// `If-Unmodified-Since`; then `If-None-Match` (weak comparison), else `If-Modified-Since`.
/// A date that does not parse is ignored, as a missing header would be, and so is an
/// `If-Modified-Since` ahead of this clock: no Last-Modified sent is, so it is a client's
/// own clock, which may run ahead of the next change. A document dated ahead of this clock
/// is sent with the answer's time for its Last-Modified ([`sent_date`]), a time that moves
/// while the document does not: both date conditions are then ignored, as for a document
/// without a date (RFC 9110 §13.1.3, §13.1.4); its ETag still serves. When another
/// version of the document had the same Last-Modified (`second_shared`: dates have whole
/// seconds), that date may name either, so it does not show the client's copy current.
/// `now` is the answer's time.
fn precondition(
    request: &FeedRequest<'_>,
    etag: &str,
    (last_modified, second_shared): (DateTime<Utc>, bool),
    now: DateTime<Utc>,
) -> Precondition {
    let date = |field: OneDate| {
        field
            .value()
            .and_then(header_text)
            .and_then(parse_http_date)
    };
    let changed_since =
        |since: DateTime<Utc>| last_modified > since || (second_shared && last_modified == since);
    let dated = last_modified <= now;
    if request.if_match.is_present() {
        let strong = !etag.starts_with("W/");
        if !request
            .if_match
            .items()
            .any(|tag| tag == "*" || (strong && tag == etag))
        {
            return Precondition::Failed;
        }
    } else if dated && date(request.if_unmodified_since).is_some_and(changed_since) {
        return Precondition::Failed;
    }
    let fresh = if request.if_none_match.is_present() {
        let ours = etag.trim_start_matches("W/");
        request
            .if_none_match
            .items()
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
    } else {
        // A document dated ahead of `now` changed since any date not ahead of it.
        date(request.if_modified_since).is_some_and(|since| since <= now && !changed_since(since))
    };
    if fresh {
        Precondition::NotModified
    } else {
        Precondition::Proceed
    }
}

/// An HTTP date in any of the three forms recipients must accept (RFC 9110 §5.6.7):
/// IMF-fixdate, RFC 850 and asctime; or else any RFC 2822 date (`+0000`, a one-digit
/// day), as some clients send.
fn parse_http_date(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    httpdate::parse_http_date(raw)
        .ok()
        .map(DateTime::<Utc>::from)
        .or_else(|| DateTime::parse_from_rfc2822(raw).ok().map(|t| t.to_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with these header lines.
    fn request<'a>(headers: &[(&'a str, &'a str)]) -> FeedRequest<'a> {
        FeedRequest::from_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    const TAG: &str = "\"b\"";

    fn decided(headers: &[(&str, &str)]) -> Precondition {
        decided_sharing(headers, false)
    }

    /// As [`decided`], for a document dated 2023-06-06 23:00:00 that shares that second
    /// with another version or not.
    fn decided_sharing(headers: &[(&str, &str)], second_shared: bool) -> Precondition {
        let modified = DateTime::parse_from_rfc3339("2023-06-06T23:00:00Z")
            .unwrap()
            .to_utc();
        precondition(
            &request(headers),
            TAG,
            (modified, second_shared),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn if_none_match_lists_match_weakly_across_lines_and_star_matches_anything() {
        use Precondition::{NotModified, Proceed};
        for (headers, expected) in [
            (&[("If-None-Match", r#""a", "b""#)][..], NotModified),
            (&[("if-none-match", r#"W/"b""#)], NotModified),
            (&[("If-None-Match", "*")], NotModified),
            (&[("If-None-Match", r#""c""#)], Proceed),
            (&[("If-None-Match", "garbage")], Proceed),
            // One list over two lines (RFC 9110 §5.3).
            (
                &[("If-None-Match", r#""c""#), ("If-None-Match", r#""b""#)],
                NotModified,
            ),
            // If-None-Match decides over If-Modified-Since, both ways.
            (
                &[
                    ("If-None-Match", r#""c""#),
                    ("If-Modified-Since", "Wed, 07 Jun 2023 00:00:00 GMT"),
                ],
                Proceed,
            ),
            (
                &[
                    ("If-None-Match", TAG),
                    ("If-Modified-Since", "Mon, 05 Jun 2023 00:00:00 GMT"),
                ],
                NotModified,
            ),
        ] {
            assert_eq!(decided(headers), expected, "{headers:?}");
        }
        // However many lines the list takes: the match on the twelfth counts.
        let mut lines = vec![("If-None-Match", r#""c""#); 11];
        lines.push(("If-None-Match", TAG));
        assert_eq!(decided(&lines), NotModified);
        let mut codings = vec![("Accept-Encoding", "identity"); 11];
        codings.push(("Accept-Encoding", "gzip"));
        assert_eq!(negotiate(&request(&codings).accept_encoding), Coding::Gzip);
    }

    #[test]
    fn if_modified_since_takes_all_three_date_forms() {
        use Precondition::{NotModified, Proceed};
        for (date, expected) in [
            ("Tue, 06 Jun 2023 23:00:00 GMT", NotModified),
            ("Tuesday, 06-Jun-23 23:00:00 GMT", NotModified),
            ("Tue Jun  6 23:00:00 2023", NotModified),
            ("Tue, 6 Jun 2023 23:00:00 GMT", NotModified),
            ("Tue, 06 Jun 2023 23:00:00 +0000", NotModified),
            ("Wed, 07 Jun 2023 01:00:00 +0200", NotModified),
            ("Tue, 06 Jun 2023 22:59:59 GMT", Proceed),
            ("yesterday", Proceed),
        ] {
            assert_eq!(decided(&[("If-Modified-Since", date)]), expected, "{date}");
        }
        // Two lines are two members of a field that holds one: ignored, in either order.
        let (now, old) = (
            "Tue, 06 Jun 2023 23:00:00 GMT",
            "Mon, 01 Jan 2001 00:00:00 GMT",
        );
        for lines in [[now, old], [old, now]] {
            let modified = lines.map(|date| ("If-Modified-Since", date));
            assert_eq!(decided(&modified), Proceed, "{lines:?}");
            let unmodified = lines.map(|date| ("If-Unmodified-Since", date));
            assert_eq!(decided(&unmodified), Proceed, "{lines:?}");
        }
    }

    /// Two versions within one second share a Last-Modified: the date a client holds then
    /// may be the other version's, so it shows nothing current, either way; a later date
    /// still does, and an entity tag decides as ever.
    #[test]
    fn a_date_another_version_shared_does_not_show_a_copy_current() {
        use Precondition::{Failed, NotModified, Proceed};
        let same = "Tue, 06 Jun 2023 23:00:00 GMT";
        let later = "Tue, 06 Jun 2023 23:00:01 GMT";
        for (headers, alone, shared) in [
            (&[("If-Modified-Since", same)][..], NotModified, Proceed),
            (&[("If-Modified-Since", later)], NotModified, NotModified),
            (
                &[("If-None-Match", TAG), ("If-Modified-Since", same)],
                NotModified,
                NotModified,
            ),
            (&[("If-Unmodified-Since", same)], Proceed, Failed),
            (&[("If-Unmodified-Since", later)], Proceed, Proceed),
        ] {
            assert_eq!(decided_sharing(headers, false), alone, "{headers:?}");
            assert_eq!(decided_sharing(headers, true), shared, "{headers:?}");
        }
    }

    /// An `If-Modified-Since` ahead of the server's clock is no date the server sent: a
    /// client's own clock, running ahead of the document's next change, would otherwise
    /// be told its copy is current until that change is older than the client's clock.
    #[test]
    fn an_if_modified_since_ahead_of_the_clock_is_ignored() {
        use Precondition::{NotModified, Proceed};
        let ahead = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc2822();
        assert_eq!(decided(&[("If-Modified-Since", &ahead)]), Proceed);
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        assert_eq!(decided(&[("If-Modified-Since", &now)]), NotModified);
    }

    /// A document dated ahead of the clock is sent with the answer's time as its
    /// Last-Modified, a date that moves while the document does not: neither date
    /// condition can tell anything by it, and its ETag still does.
    #[test]
    fn a_document_dated_ahead_of_the_clock_is_judged_by_its_etag_alone() {
        use Precondition::{NotModified, Proceed};
        let now = DateTime::parse_from_rfc3339("2023-06-06T23:00:00.5Z")
            .unwrap()
            .to_utc();
        let decide = |headers: &[(&str, &str)], modified: &str| {
            let modified = DateTime::parse_from_rfc3339(modified).unwrap().to_utc();
            precondition(&request(headers), TAG, (modified, false), now)
        };
        let sent = "Tue, 06 Jun 2023 23:00:00 GMT";
        let ahead = "2023-06-06T23:00:01Z";
        assert_eq!(decide(&[("If-Unmodified-Since", sent)], ahead), Proceed);
        assert_eq!(decide(&[("If-Modified-Since", sent)], ahead), Proceed);
        assert_eq!(decide(&[("If-None-Match", TAG)], ahead), NotModified);
        // Once the clock has passed it, the date serves again.
        let passed = "2023-06-06T22:59:59Z";
        assert_eq!(
            decide(
                &[("If-Unmodified-Since", "Tue, 06 Jun 2023 22:59:58 GMT")],
                passed
            ),
            Precondition::Failed
        );
        assert_eq!(decide(&[("If-Modified-Since", sent)], passed), NotModified);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_as_412_before_anything_else() {
        use Precondition::{Failed, NotModified, Proceed};
        for (headers, expected) in [
            (&[("If-Match", TAG)][..], Proceed),
            (&[("If-Match", r#""a", "b""#)], Proceed),
            (&[("If-Match", "*")], Proceed),
            (&[("If-Match", r#""a""#)], Failed),
            // Strong comparison: a weak tag never matches.
            (&[("If-Match", r#"W/"b""#)], Failed),
            // Before If-None-Match.
            (&[("If-Match", r#""a""#), ("If-None-Match", TAG)], Failed),
            (&[("If-Match", TAG), ("If-None-Match", TAG)], NotModified),
            (
                &[("If-Unmodified-Since", "Tue, 06 Jun 2023 23:00:00 GMT")],
                Proceed,
            ),
            (
                &[("If-Unmodified-Since", "Tue, 06 Jun 2023 22:00:00 GMT")],
                Failed,
            ),
            // If-Match present: If-Unmodified-Since is not looked at.
            (
                &[
                    ("If-Match", TAG),
                    ("If-Unmodified-Since", "Tue, 06 Jun 2023 22:00:00 GMT"),
                ],
                Proceed,
            ),
            (&[("If-Unmodified-Since", "garbage")], Proceed),
        ] {
            assert_eq!(decided(headers), expected, "{headers:?}");
        }
    }

    #[test]
    fn http_dates_round_trip() {
        let t = DateTime::parse_from_rfc3339("2023-06-06T23:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(http_date(t), "Tue, 06 Jun 2023 23:00:00 GMT");
        assert_eq!(parse_http_date(&http_date(t)), Some(t));
    }

    #[test]
    fn the_best_accepted_coding_wins() {
        let cases: [(&[&str], Coding); 14] = [
            (&[], Coding::Identity),
            (&["gzip"], Coding::Gzip),
            (&["gzip, deflate, br"], Coding::Brotli),
            (&["br;q=0.5, gzip;q=0.8"], Coding::Gzip),
            (&["br;q=0, gzip;q=0"], Coding::Identity),
            (&["*"], Coding::Brotli),
            (&["*;q=0.1, gzip"], Coding::Gzip),
            (&["identity"], Coding::Identity),
            (&["deflate"], Coding::Identity),
            (&["GZIP;Q=1"], Coding::Gzip),
            (&["br;q=garbage"], Coding::Brotli),
            (&["identity;q=0, gzip;q=0.1"], Coding::Gzip),
            // One list over two lines.
            (&["deflate", "gzip"], Coding::Gzip),
            (&["gzip;q=0.5", "br;q=0.9"], Coding::Brotli),
        ];
        for (lines, expected) in cases {
            let headers: Vec<_> = lines.iter().map(|l| ("Accept-Encoding", *l)).collect();
            assert_eq!(
                negotiate(&request(&headers).accept_encoding),
                expected,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn html_is_preferred_only_when_rated_above_the_feed_type() {
        const RSS: &str = "application/rss+xml; charset=utf-8";
        for (accept, html) in [
            // Browsers navigating.
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            ("text/html", true),
            // SimplePie (FreshRSS, WordPress): feed types first, HTML at 0.7.
            (
                "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, \
                 application/xml;q=0.8, text/xml;q=0.8, text/html;q=0.7, \
                 unknown/unknown;q=0.1, application/unknown;q=0.1, */*;q=0.1",
                false,
            ),
            ("*/*", false),
            ("text/*, application/*;q=0.5", true),
            ("text/html;q=0, */*", false),
            ("application/rss+xml;q=0.5, text/html;q=0.6", true),
            ("application/rss+xml, text/html", false),
            ("", false),
        ] {
            let lines = request(&[("Accept", accept)]).accept;
            assert_eq!(prefers_html(&lines, RSS), html, "{accept}");
        }
        assert!(!prefers_html(&Lines::default(), RSS));
    }
}
