//! The HTTP side: feeds with conditional GET, the index page, and health. HTTP/1 feed
//! requests take a fast path that sends large bodies with `sendfile(2)`; every other
//! request goes to the axum router.

mod fast_path;
mod feeds;
mod index;
mod server;

use crate::config::Settings;
use crate::health::Health;
use crate::publication::Publication;
use crate::tls::TlsIdentity;
use crate::websub::Hub;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves HTTP on `listener` until `shutdown` completes, then lets the responses in
/// progress finish. Feed requests take a fast path; every route answers as the router says.
///
/// With TLS, every request goes through the router (`sendfile` cannot encrypt).
pub async fn serve(
    listener: TcpListener,
    publication: Publication,
    settings: &Settings,
    websub: &Hub,
    health: Health,
    tls: Option<&TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let feeds = feeds::FeedState::new(publication, settings.server.feeds_dir.clone());
    let router = router(feeds.clone(), settings, websub, health);
    let handshakes = tls.map(TlsIdentity::http_handshakes);
    server::run(
        listener,
        handshakes,
        feeds,
        router,
        &settings.limits,
        shutdown,
    )
    .await;
    Ok(())
}

/// The HTTP routes: `/` (index with the latest headlines), `/feeds.opml`, `/healthz`,
/// `/readyz`, `/metrics` and `/feeds/{path}` (GET and HEAD; other methods 405).
///
/// `POST /websub` is the WebSub hub's endpoint.
fn router(feeds: feeds::FeedState, settings: &Settings, websub: &Hub, health: Health) -> Router {
    let index_settings = Arc::new(settings.clone());
    let index = Arc::new(index::IndexPage::new(index_settings.clone()));
    let opml = Arc::new(index::OpmlDocument::new(index_settings));
    Router::new()
        .route(
            "/",
            // Answered like a feed, with validators of its own; its headlines change with
            // the feeds.
            get(
                move |State(feeds): State<feeds::FeedState>, method: Method, headers: HeaderMap| {
                    let index = index.clone();
                    async move {
                        let file = index.get(&feeds.publication).await;
                        answer_derived(&feeds, file, "index.html", &method, &headers)
                    }
                },
            )
            .options(feeds::preflight),
        )
        .route(
            "/feeds.opml",
            // Answered like a feed; the author and tag feeds come and go with the articles.
            get(
                move |State(feeds): State<feeds::FeedState>, method: Method, headers: HeaderMap| {
                    let opml = opml.clone();
                    async move {
                        let file = opml.get(&feeds.publication).await;
                        answer_derived(&feeds, file, "feeds.opml", &method, &headers)
                    }
                },
            )
            .options(feeds::preflight),
        )
        .route(
            "/healthz",
            get(move |State(feeds): State<feeds::FeedState>| {
                healthz(health.clone(), feeds.publication.unbuilt())
            }),
        )
        .route(
            "/readyz",
            get(|State(feeds): State<feeds::FeedState>| readyz(feeds.publication.unbuilt())),
        )
        .route(
            "/metrics",
            get(|State(feeds): State<feeds::FeedState>| metrics(feeds.publication.is_settled())),
        )
        .route(
            "/feeds/{*path}",
            get(feeds::serve_feed).options(feeds::preflight),
        )
        // The folder itself names no document: answered as any other path under it that
        // names none (kept five seconds, readable from another origin).
        .route("/feeds/", get(feeds::serve_feed).options(feeds::preflight))
        .route("/feeds", get(feeds::serve_feed).options(feeds::preflight))
        .route("/websub", websub.endpoint())
        .with_state(feeds)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(require_host))
}

/// The answer with a document built from the feeds (the index page, the OPML list), or 503
/// if none could be built yet.
fn answer_derived(
    feeds: &feeds::FeedState,
    file: Option<Arc<crate::publication::FeedFile>>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> axum::response::Response {
    let Some(file) = file else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "retry later\n",
        )
            .into_response();
    };
    feeds
        .answer_file(file, name, false, &feeds::FeedRequest::of(method, headers))
        .into_response()
}

/// RFC 9112 §3.2: a request with more than one `Host` line or an invalid one, or an
/// HTTP/1.1 request with none, is answered 400. (HTTP/2 names the host in `:authority`.)
async fn require_host(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let http11 = request.version() == axum::http::Version::HTTP_11;
    let hosts = request.headers().get_all(header::HOST);
    let http1 = request.version() < axum::http::Version::HTTP_2;
    if http1 && !host_is_valid(http11, hosts.iter().map(|v| v.as_bytes())) {
        return (
            StatusCode::BAD_REQUEST,
            "a request needs one valid Host header (RFC 9112, section 3.2)\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Whether the `Host` lines of an HTTP/1 request are as RFC 9112 §3.2 requires: at most
/// one (exactly one in HTTP/1.1), empty or `host[:port]`.
fn host_is_valid<'a>(http11: bool, mut lines: impl Iterator<Item = &'a [u8]>) -> bool {
    match (lines.next(), lines.next()) {
        (None, _) => !http11,
        (Some(value), None) => value.is_empty() || host_and_port_are_valid(value),
        (Some(_), Some(_)) => false,
    }
}

/// `uri-host [":" port]` as RFC 3986 §3.2.2 and §3.2.3 write them, read in place: an IP
/// literal in brackets, or a registered name or IPv4 address (unreserved characters,
/// sub-delimiters and `%`-escapes), then an optional `:` and a port of 0 to 65535 (an
/// empty port is allowed).
fn host_and_port_are_valid(value: &[u8]) -> bool {
    let (host, port) = match value.iter().rposition(|&b| b == b':' || b == b']') {
        Some(at) if value[at] == b':' => (&value[..at], Some(&value[at + 1..])),
        _ => (value, None),
    };
    let port_is_valid = port.is_none_or(|port| {
        port.is_empty()
            || (port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok()))
    });
    let sub_delim = |b: u8| b"!$&'()*+,;=".contains(&b);
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let host_is_valid = match host {
        // IPv6 (with a zone, RFC 6874) or a future form (`v…`), read loosely.
        [b'[', literal @ .., b']'] => {
            !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| unreserved(b) || sub_delim(b) || b == b':' || b == b'%')
        }
        _ => {
            let mut rest = host;
            let mut valid = true;
            while let [first, tail @ ..] = rest {
                rest = match (first, tail) {
                    (b'%', [high, low, tail @ ..])
                        if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
                    {
                        tail
                    }
                    (&b, tail) if unreserved(b) || sub_delim(b) => tail,
                    _ => {
                        valid = false;
                        break;
                    }
                };
            }
            valid
        }
    };
    host_is_valid && port_is_valid
}

/// `ok` while nothing fails; otherwise `degraded` and one line per failing component. The
/// status stays 200 either way: the feeds are still served, so a load balancer
/// must keep sending readers here (alert on `feedpub_fault` instead). While the author and
/// tag feeds a start found are still being built (`unbuilt` of them), a `starting:` line
/// says so.
async fn healthz(health: Health, unbuilt: usize) -> impl IntoResponse {
    let faults = health.faults();
    let mut body = if faults.is_empty() {
        "ok\n".to_owned()
    } else {
        let mut body = "degraded\n".to_owned();
        for (component, message) in faults {
            body.push_str(&format!(
                "{}: {}\n",
                component.label(),
                message.replace('\n', " ")
            ));
        }
        body
    };
    if unbuilt > 0 {
        body.push_str(&starting(unbuilt));
    }
    ([(header::CACHE_CONTROL, "no-store")], body)
}

/// What `/healthz` and `/readyz` say while `unbuilt` feeds found at start are not built.
fn starting(unbuilt: usize) -> String {
    format!("starting: {unbuilt} author and tag feeds still to build\n")
}

/// Readiness for a load balancer spreading readers over replicas: 200 `ready` once every
/// feed is served; 503 (with `Retry-After: 1`) while the author and tag feeds a start found
/// are still being built, which answer 503 meanwhile (the sections and `all` are served
/// from the first moment).
async fn readyz(unbuilt: usize) -> impl IntoResponse {
    let no_store = (header::CACHE_CONTROL, "no-store");
    if unbuilt == 0 {
        return ([no_store], "ready\n".to_owned()).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [no_store, (header::RETRY_AFTER, "1")],
        starting(unbuilt),
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format. `feedpub_feeds_settled` is 1 when
/// every acknowledged change is in the feeds and their files, compressed with the full
/// levels (a feed is served before it is compressed and written), 0 otherwise.
async fn metrics(settled: bool) -> impl IntoResponse {
    metrics::gauge!("feedpub_feeds_settled").set(if settled { 1.0 } else { 0.0 });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics().render(),
    )
}

/// 404 for a path that names nothing; `OPTIONS *`, which asks about the server as a whole
/// (RFC 9110, 9.3.7), is answered with what it allows.
async fn not_found(method: Method, uri: axum::http::Uri) -> axum::response::Response {
    if method == Method::OPTIONS && uri == "*" {
        return (
            StatusCode::NO_CONTENT,
            [(axum::http::header::ALLOW, "GET, HEAD, OPTIONS, POST")],
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::host_is_valid;

    #[test]
    fn host_lines_are_checked_as_rfc_9112_says() {
        let valid = |http11: bool, lines: &[&str]| {
            host_is_valid(http11, lines.iter().map(|l| l.as_bytes()))
        };
        // An empty port is allowed (RFC 3986: `port = *DIGIT`).
        for good in [
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]:8080",
            "",
        ] {
            assert!(valid(true, &[good]), "{good:?}");
        }
        for bad in [
            "a b",
            "user@example.com",
            "example.com:port",
            "exa mple",
            "a/b",
        ] {
            assert!(!valid(true, &[bad]), "{bad:?}");
        }
        // Brackets only around a whole IP literal; a port of digits only.
        for bad in [
            "[::1",
            "::1]",
            "a:b:c",
            "%zz.example",
            "a%2",
            "[]",
            "a[]",
            "x[1]",
            "example.com:65536",
            "example.com:+80",
        ] {
            assert!(!valid(true, &[bad]), "{bad:?}");
        }
        for good in [
            "%41.example",
            "a_b.example.",
            "[v1.x]",
            "[fe80::1%25eth0]:80",
            "example.com:65535",
        ] {
            assert!(valid(true, &[good]), "{good:?}");
        }
        assert!(!valid(true, &[]), "HTTP/1.1 needs one");
        assert!(valid(false, &[]), "HTTP/1.0 may have none");
        assert!(!valid(true, &["a", "b"]));
        assert!(!valid(false, &["a", "a"]));
    }
}
