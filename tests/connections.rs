//! HTTP connections: keep-alive, pipelining, HTTP/1.0, requests handed from the feed fast
//! path to the router on the same connection, bodies sent from the files in `feeds/`, and
//! feeds replaced while connections stay open. Raw TCP where the bytes on the wire matter.

mod common;

use common::{DEADLINE, TestServer, all_feed_paths};
use feedpub::demo::sample_edition;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.x response as read off the wire.
#[derive(Debug)]
struct Answer {
    version: u8,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head's fields but `Date`, which moves with the clock.
    fn fields_but_date(&self) -> Vec<(String, String)> {
        let mut fields: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        fields.sort();
        fields
    }
}

/// A raw client connection: writes requests as given, reads responses with httparse.
struct Connection {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    /// A connection from `local`, one of this machine's loopback addresses.
    async fn open_from(local: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        Self {
            stream: socket.connect(addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, requests: &str) {
        self.stream.write_all(requests.as_bytes()).await.unwrap();
    }

    /// More bytes from the server; 0 when it closed the connection.
    async fn read_more(&mut self) -> usize {
        let mut chunk = vec![0; 64 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .unwrap();
        self.read.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next response; `head` when it answers a HEAD request (no body follows).
    async fn answer(&mut self, head: bool) -> Answer {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = parsed.parse(&self.read).unwrap() {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                let mut answer = Answer {
                    version: parsed.version.unwrap(),
                    status,
                    headers,
                    body: Vec::new(),
                };
                let body_len = match answer.header("content-length") {
                    Some(n) if !head && status != 304 => n.parse().unwrap(),
                    _ => 0,
                };
                self.read.drain(..len);
                while self.read.len() < body_len {
                    assert!(self.read_more().await > 0, "the body was cut short");
                }
                answer.body = self.read.drain(..body_len).collect();
                return answer;
            }
            assert!(self.read_more().await > 0, "closed before a whole head");
        }
    }

    /// True when the server closes the connection with nothing more to read.
    async fn closed_by_server(&mut self) -> bool {
        self.read_more().await == 0 && self.read.is_empty()
    }
}

/// A GET of `path` with extra header lines, each ending in CRLF.
fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: feeds.test\r\n{extra}\r\n")
}

async fn server_with_sample() -> TestServer {
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    server
}

/// The file in `feeds/` that holds `path` (a `/feeds/…` URL path) in a coding.
fn file_of(server: &TestServer, path: &str, suffix: &str) -> PathBuf {
    let relative = path.trim_start_matches("/feeds/");
    server
        .dir
        .path()
        .join("feeds")
        .join(format!("{relative}{suffix}"))
}

/// The strong ETag of identity bytes: 128 bits of their BLAKE3 digest, quoted.
fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&blake3::hash(bytes).as_bytes()[..16]))
}

/// An HTTP client that gives up after the tests' deadline rather than hang.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_keep_alive_connection_answers_many_requests_in_turn() {
    let server = server_with_sample().await;
    let mut connection = Connection::open(server.http_addr).await;
    let codings = [("", ""), ("gzip", ".gz"), ("br", ".br")];
    for round in 0..4 {
        for path in all_feed_paths() {
            let (accept, suffix) = codings[round % codings.len()];
            let extra = if accept.is_empty() {
                String::new()
            } else {
                format!("Accept-Encoding: {accept}\r\n")
            };
            connection.send(&get(&path, &extra)).await;
            let answer = connection.answer(false).await;
            assert_eq!(answer.status, 200, "{path} {accept}");
            assert_eq!(answer.header("content-encoding").unwrap_or(""), accept);
            let on_disk = std::fs::read(file_of(&server, &path, suffix)).unwrap();
            assert_eq!(answer.body, on_disk, "{path} {accept}");

            let etag = answer.header("etag").unwrap().to_owned();
            connection
                .send(&get(&path, &format!("{extra}If-None-Match: {etag}\r\n")))
                .await;
            let revalidated = connection.answer(false).await;
            assert_eq!(revalidated.status, 304, "{path} {accept}");
            assert!(revalidated.body.is_empty());
            assert_eq!(revalidated.header("content-length"), None);
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_also_after_the_hand_over() {
    let server = server_with_sample().await;
    let rss = std::fs::read(file_of(&server, "/feeds/all/rss.xml", "")).unwrap();
    let json = std::fs::read(file_of(&server, "/feeds/all/feed.json", "")).unwrap();
    let requests = [
        get("/feeds/all/feed.json", ""),
        "HEAD /feeds/all/rss.xml HTTP/1.1\r\nHost: feeds.test\r\n\r\n".to_owned(),
        get(
            "/feeds/all/rss.xml",
            &format!("If-None-Match: {}\r\n", etag_of(&rss)),
        ),
        get("/feeds/sports/rss.xml", ""),
        // The router's: the connection goes to hyper here, with the rest still unread.
        get("/healthz", ""),
        get("/feeds/all/feed.json", "Accept-Encoding: gzip\r\n"),
        get("/feeds/all/rss.xml", "Connection: close\r\n"),
    ];
    let mut connection = Connection::open(server.http_addr).await;
    connection.send(&requests.concat()).await;

    let first = connection.answer(false).await;
    assert_eq!((first.status, &first.body), (200, &json));
    let head = connection.answer(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(&*rss.len().to_string()));
    assert_eq!(connection.answer(false).await.status, 304);
    let missing = connection.answer(false).await;
    assert_eq!(
        (missing.status, &missing.body[..]),
        (404, &b"no such feed\n"[..])
    );
    let health = connection.answer(false).await;
    assert_eq!((health.status, &health.body[..]), (200, &b"ok\n"[..]));
    let gzip = connection.answer(false).await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gzip.body,
        std::fs::read(file_of(&server, "/feeds/all/feed.json", ".gz")).unwrap()
    );
    let last = connection.answer(false).await;
    assert_eq!((last.status, &last.body), (200, &rss));
    assert_eq!(last.header("connection"), Some("close"));
    assert!(connection.closed_by_server().await);
}

#[tokio::test]
async fn http_1_0_closes_the_connection_unless_asked_to_keep_it() {
    let server = server_with_sample().await;
    let path = "/feeds/all/feed.json";
    let on_disk = std::fs::read(file_of(&server, path, "")).unwrap();

    let mut plain = Connection::open(server.http_addr).await;
    plain.send(&format!("GET {path} HTTP/1.0\r\n\r\n")).await;
    let answer = plain.answer(false).await;
    assert_eq!((answer.version, answer.status), (0, 200));
    assert_eq!(answer.body, on_disk);
    assert_eq!(answer.header("connection"), None);
    assert!(plain.closed_by_server().await);

    let mut kept = Connection::open(server.http_addr).await;
    for _ in 0..3 {
        kept.send(&format!(
            "GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ))
        .await;
        let answer = kept.answer(false).await;
        assert_eq!((answer.version, answer.status), (0, 200));
        assert_eq!(answer.header("connection"), Some("keep-alive"));
        assert_eq!(answer.body, on_disk);
    }
    kept.send(&format!("HEAD {path} HTTP/1.0\r\n\r\n")).await;
    let head = kept.answer(true).await;
    assert_eq!(
        head.header("content-length"),
        Some(&*on_disk.len().to_string())
    );
    assert!(kept.closed_by_server().await);
}

/// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any with two Host
/// lines or an invalid one; on the feed fast path and through the router alike.
#[tokio::test]
async fn requests_without_one_valid_host_are_refused_on_either_path() {
    let server = server_with_sample().await;
    for path in ["/feeds/all/rss.xml", "/", "/feeds.opml"] {
        for (version, hosts, status) in [
            ("1.1", "", 400),
            ("1.1", "Host: a.test\r\nHost: b.test\r\n", 400),
            ("1.1", "Host: a b\r\n", 400),
            ("1.1", "Host: a.test:port\r\n", 400),
            ("1.0", "Host: a.test\r\nHost: a.test\r\n", 400),
            ("1.1", "Host: a.test:8080\r\n", 200),
            ("1.1", "Host:\r\n", 200),
            ("1.0", "", 200),
        ] {
            let mut connection = Connection::open(server.http_addr).await;
            connection
                .send(&format!("GET {path} HTTP/{version}\r\n{hosts}\r\n"))
                .await;
            let answer = connection.answer(false).await;
            assert_eq!(answer.status, status, "{path} HTTP/{version} {hosts:?}");
        }
    }
}

#[tokio::test]
async fn requests_the_fast_path_leaves_reach_the_router_on_the_same_connection() {
    let server = server_with_sample().await;
    let path = "/feeds/politics/atom.xml";
    let mut connection = Connection::open(server.http_addr).await;
    connection.send(&get(path, "Accept: text/html\r\n")).await;
    let fast = connection.answer(false).await;
    assert_eq!(fast.status, 200);

    // A body: the router answers, as before, that feeds only take GET and HEAD.
    connection
        .send(&format!(
            "POST {path} HTTP/1.1\r\nHost: feeds.test\r\nContent-Length: 5\r\n\r\nhello"
        ))
        .await;
    let refused = connection.answer(false).await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET,HEAD,OPTIONS"));

    // The same GET, now through axum: the very same answer.
    connection.send(&get(path, "Accept: text/html\r\n")).await;
    let routed = connection.answer(false).await;
    assert_eq!(routed.fields_but_date(), fast.fields_but_date());
    assert_eq!(routed.body, fast.body);
    assert_eq!(
        routed.header("content-type"),
        Some("application/xml; charset=utf-8")
    );

    // Percent-encoded paths are the router's to decode; an encoded slash is no slash.
    connection
        .send(&get("/feeds/p%6Flitics/atom.xml", ""))
        .await;
    let decoded = connection.answer(false).await;
    assert_eq!((decoded.status, &decoded.body), (200, &routed.body));
    connection
        .send(&get("/feeds/politics%2Fatom.xml", ""))
        .await;
    assert_eq!(connection.answer(false).await.status, 404);

    // `OPTIONS *` asks about the server as a whole (RFC 9110, 9.3.7): what it allows.
    connection
        .send("OPTIONS * HTTP/1.1\r\nHost: feeds.test\r\n\r\n")
        .await;
    let server_wide = connection.answer(false).await;
    assert_eq!(server_wide.status, 204);
    assert_eq!(
        server_wide.header("allow"),
        Some("GET, HEAD, OPTIONS, POST")
    );
    // Any other path that names nothing is still not found.
    connection
        .send("OPTIONS /nowhere HTTP/1.1\r\nHost: feeds.test\r\n\r\n")
        .await;
    assert_eq!(connection.answer(false).await.status, 404);
}

#[tokio::test]
async fn heads_the_fast_path_cannot_read_go_to_hyper_whole() {
    let server = server_with_sample().await;
    let path = "/feeds/all/feed.json";
    let on_disk = std::fs::read(file_of(&server, path, "")).unwrap();

    // Longer than the fast path waits for, yet within hyper's limits.
    let mut long = Connection::open(server.http_addr).await;
    long.send(&get(
        path,
        &format!("X-Padding: {}\r\n", "p".repeat(30_000)),
    ))
    .await;
    let answer = long.answer(false).await;
    assert_eq!((answer.status, &answer.body), (200, &on_disk));

    let mut garbage = Connection::open(server.http_addr).await;
    garbage.send("NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(garbage.answer(false).await.status, 400);

    // HTTP/2 with prior knowledge (its preface is not HTTP/1).
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let response = h2.get(server.url(path)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.bytes().await.unwrap(), on_disk);
}

#[tokio::test]
async fn large_bodies_go_out_from_their_files_with_sendfile() {
    let server = server_with_sample().await;
    publish_long_article(&server).await;
    let series = "feedpub_http_sendfile_responses_total";
    let before = server.metric(series).await;
    // The largest document: its identity coding and its gzip coding (below the identity
    // codings' threshold) are both sent from their files.
    let path = "/feeds/all/feed.json";
    let mut connection = Connection::open(server.http_addr).await;
    for (accept, suffix) in [("", ""), ("Accept-Encoding: gzip\r\n", ".gz")] {
        let file = file_of(&server, path, suffix);
        let on_disk = std::fs::read(&file).unwrap();
        // Identity codings from 32 KiB on, compressed ones from 16 KiB.
        let sizes = if suffix.is_empty() {
            32 << 10..usize::MAX
        } else {
            16 << 10..32 << 10
        };
        assert!(
            sizes.contains(&on_disk.len()),
            "{suffix}: {} bytes",
            on_disk.len()
        );
        assert!(!held_open(&file), "{suffix}: opened before any request");
        for _ in 0..3 {
            connection.send(&get(path, accept)).await;
            let answer = connection.answer(false).await;
            assert_eq!(answer.status, 200);
            assert!(answer.body == on_disk, "{suffix}");
        }
        // Sent from that file, kept open for the next response.
        assert!(held_open(&file), "{suffix}: not sent from its file");
    }
    // Other tests in this process may add to the counter too.
    assert!(server.metric(series).await >= before + 6.0);
}

/// Publishes an article of some 15 KB of text that compresses little (ideographs drawn
/// at random), and waits for the feeds: `all`'s gzip codings grow to some 20 to 30 KB.
async fn publish_long_article(server: &TestServer) {
    let mut article = sample_edition().pop().unwrap();
    article.id = "long-read".to_owned();
    let mut seed: u32 = 2026;
    let mut ideograph = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        char::from_u32(0x4E00 + (seed >> 8) % 0x5000).unwrap()
    };
    let paragraphs: Vec<String> = (0..10)
        .map(|_| (0..500).map(|_| ideograph()).chain(['。']).collect())
        .collect();
    article.content_text = paragraphs.join("\n\n");
    server.publish_as_newsroom(article).await;
    server.settle().await;
}

/// True when this process holds `file` open.
fn held_open(file: &std::path::Path) -> bool {
    let file = std::fs::canonicalize(file).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| target == file)
}

#[tokio::test]
async fn a_feed_whose_file_someone_else_removed_or_edited_is_still_served_whole() {
    let server = server_with_sample().await;
    let (edited, removed) = ("/feeds/all/feed.json", "/feeds/all/atom.xml");
    let client = client();
    let mut expected = Vec::new();
    for path in [edited, removed] {
        let file = file_of(&server, path, "");
        expected.push(std::fs::read(&file).unwrap());
    }
    // Before any request has opened them (documents are not held in the identity coding
    // once their files are written): one edited in place, the other gone.
    // (One byte longer: a write within the tick of the file's modification time must not
    // go unnoticed.)
    let mut garbled = expected[0].clone();
    garbled[1000] = b'#';
    garbled.push(b'\n');
    std::fs::write(file_of(&server, edited, ""), &garbled).unwrap();
    std::fs::remove_file(file_of(&server, removed, "")).unwrap();
    for (path, expected) in [edited, removed].into_iter().zip(&expected) {
        // On the fast path, then through the router (HTTP/2).
        let mut connection = Connection::open(server.http_addr).await;
        let answer = whole_version(&mut connection, path).await;
        assert!(answer.body == *expected, "{path}");
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(DEADLINE)
            .build()
            .unwrap();
        let body = h2.get(server.url(path)).send().await.unwrap().bytes();
        assert!(body.await.unwrap() == expected[..], "{path}");
    }
    let body = client.get(server.url(edited)).send().await.unwrap();
    assert!(body.bytes().await.unwrap() == expected[0][..]);
}

/// GETs `path` on `connection` and checks that the body is whole: the identity ETag names
/// exactly these bytes.
async fn whole_version(connection: &mut Connection, path: &str) -> Answer {
    connection.send(&get(path, "")).await;
    let answer = connection.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("etag"),
        Some(&*etag_of(&answer.body)),
        "a body that is not the version its ETag names"
    );
    answer
}

#[tokio::test]
async fn a_feed_replaced_while_connections_stay_open_is_served_whole_old_then_whole_new() {
    let server = server_with_sample().await;
    let path = "/feeds/all/feed.json";
    let mut connection = Connection::open(server.http_addr).await;
    let old = whole_version(&mut connection, path).await;
    assert_eq!(old.body, std::fs::read(file_of(&server, path, "")).unwrap());

    // Readers polling on their own connections while the feed changes several times; each
    // has seen the first version before the first change.
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut reader = Connection::open(server.http_addr).await;
        let first = whole_version(&mut reader, path).await;
        assert_eq!(first.body, old.body);
        readers.push(tokio::spawn(async move {
            let mut seen = vec![first.header("etag").unwrap().to_owned()];
            let final_title = "右玉县农旅融合助力乡村振兴（第五次更正）";
            let start = std::time::Instant::now();
            loop {
                let answer = whole_version(&mut reader, path).await;
                let etag = answer.header("etag").unwrap().to_owned();
                if seen.last() != Some(&etag) {
                    seen.push(etag);
                }
                if String::from_utf8(answer.body)
                    .unwrap()
                    .contains(final_title)
                {
                    return seen;
                }
                assert!(start.elapsed() < DEADLINE, "never saw the last version");
                tokio::task::yield_now().await;
            }
        }));
    }
    for n in ["一", "二", "三", "四", "五"] {
        server
            .correct_title(&format!("右玉县农旅融合助力乡村振兴（第{n}次更正）"))
            .await;
    }
    for reader in readers {
        let seen = reader.await.unwrap();
        assert!(seen.len() >= 2, "{seen:?}");
    }

    // The first connection, idle meanwhile, gets the newest version on its next request.
    let new = whole_version(&mut connection, path).await;
    assert_ne!(new.body, old.body);
    assert_eq!(new.body, std::fs::read(file_of(&server, path, "")).unwrap());
}

#[tokio::test]
async fn stopping_the_server_closes_idle_connections_on_either_path() {
    let server = server_with_sample().await;
    let mut fast = Connection::open(server.http_addr).await;
    fast.send(&get("/feeds/all/rss.xml", "")).await;
    assert_eq!(fast.answer(false).await.status, 200);
    let mut routed = Connection::open(server.http_addr).await;
    routed.send(&get("/healthz", "")).await;
    assert_eq!(routed.answer(false).await.status, 200);

    // Both connections stay open and idle; the server still stops.
    tokio::time::timeout(DEADLINE, server.stop())
        .await
        .expect("the server stops with idle connections open");
    assert!(fast.closed_by_server().await);
    assert!(routed.closed_by_server().await);
}

/// One address takes at most `max_grpc_connections_per_peer` of the gRPC connections, so
/// that a client opening connections and making no call cannot take every place: past
/// its share, a connection takes the place of the address's oldest connection that has
/// made no authenticated call, which is closed; when every connection of its share has
/// made one, it is closed as soon as it is accepted. The places come back when its
/// connections close.
#[tokio::test]
async fn one_address_takes_at_most_its_share_of_the_grpc_connections() {
    use feedpub::grpc::proto::ListSectionsRequest;
    use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
    // The HTTP/2 preface and an empty SETTINGS frame: an idle channel.
    const CLIENT_START: &str = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let server = TestServer::start_with(|s| s.limits.max_grpc_connections_per_peer = 2).await;
    let partner = || async {
        let mut client = PublisherServiceClient::connect(format!("http://{}", server.grpc_addr))
            .await
            .ok()?;
        client
            .list_sections(common::authed(
                &server.tokens.newsroom,
                ListSectionsRequest {},
            ))
            .await
            .ok()
            .map(|_| client)
    };
    let metric = |name: &'static str| {
        let server = &server;
        async move { server.metric(&format!("{name}{{listener=\"grpc\"}}")).await }
    };

    // Two idle channels, then a third: it takes the place of the first.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut connection = Connection::open(server.grpc_addr).await;
        connection.send(CLIENT_START).await;
        held.push(connection);
    }
    let mut third = Connection::open(server.grpc_addr).await;
    third.send(CLIENT_START).await;
    assert!(third.read_more().await > 0, "the third is served");
    // The first is closed, after the server's SETTINGS it had not read.
    while held[0].read_more().await > 0 {}
    assert!(held[1].read_more().await > 0, "the second is served");
    assert_eq!(metric("feedpub_connections_evicted_total").await, 1.0);
    assert_eq!(metric("feedpub_connections_refused_total").await, 0.0);
    drop((held, third));

    // Two partners' channels that have made calls keep their places: a third connection
    // is refused.
    let start = std::time::Instant::now();
    let (mut one, _two) = loop {
        if let (Some(one), Some(two)) = (partner().await, partner().await) {
            break (one, two);
        }
        assert!(start.elapsed() < DEADLINE, "the places never came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut third = Connection::open(server.grpc_addr).await;
    assert!(
        third.closed_by_server().await,
        "a third connection is closed"
    );
    assert!(metric("feedpub_connections_refused_total").await >= 1.0);
    assert_eq!(metric("feedpub_connections_evicted_total").await, 1.0);
    one.list_sections(common::authed(
        &server.tokens.newsroom,
        ListSectionsRequest {},
    ))
    .await
    .expect("a partner's channel is still answered");
}

/// A connection the server ends after a response is closed in stages (RFC 9112 §9.6): bytes
/// the client sent after the request (a stray line end here) are read and dropped, not
/// answered with a reset that can make a slow reader's system discard the end of the
/// response.
#[tokio::test]
async fn a_connection_closed_after_its_answer_is_not_reset_under_a_slow_reader() {
    let server = server_with_sample().await;
    let json = std::fs::read(file_of(&server, "/feeds/all/feed.json", "")).unwrap();
    assert!(json.len() > 32 * 1024, "large enough to wait in the socket");
    // On the fast path, and past it (a body, even empty, is hyper's).
    for extra in ["", "Content-Length: 0\r\n"] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut connection = Connection {
            stream: socket.connect(server.http_addr).await.unwrap(),
            read: Vec::new(),
        };
        connection
            .send(&format!("GET /feeds/all/feed.json HTTP/1.0\r\n{extra}\r\n"))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        connection.send("\r\n").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = connection.answer(false).await;
        assert_eq!(
            (answer.status, answer.body.len()),
            (200, json.len()),
            "{extra}"
        );
        assert_eq!(answer.body, json);
    }
}

/// Requests pipelined past the fast path are all answered, in order, when the client
/// half-closes its side after sending them, also when the last is still being answered
/// as the server reads the end of the stream.
#[tokio::test]
async fn pipelined_requests_are_answered_after_the_client_half_closes() {
    // The index and bodies (even empty ones) are hyper's. A server's first request for the
    // OPML list builds it on a thread of its own: hyper has read every request and mostly
    // still waits for that answer when it reads the end of the stream (three servers, so
    // that a hyper that gave up there would be caught all but surely).
    let body = "GET /feeds/feed.xsl HTTP/1.1\r\nHost: feeds.test\r\nContent-Length: 0\r\n\r\n";
    for round in 0..3 {
        let server = server_with_sample().await;
        let mut connection = Connection::open(server.http_addr).await;
        connection
            .send(&[&get("/", ""), body, &get("/feeds.opml", "")].concat())
            .await;
        connection.stream.shutdown().await.unwrap();
        for n in 0..3 {
            let answer = connection.answer(false).await;
            assert_eq!(answer.status, 200, "round {round}, answer {n}");
        }
        assert!(connection.closed_by_server().await);
    }
}

/// A request head longer than 32 KiB is refused (431), not held; a request line longer than
/// that is refused as such (414, RFC 9112 §3), and the connection closed. Below, the fast
/// path and hyper take the same requests.
#[tokio::test]
async fn request_heads_and_targets_past_32_kib_are_refused() {
    let server = server_with_sample().await;
    for (length, status) in [(30 * 1024, 200), (40 * 1024, 431)] {
        let mut connection = Connection::open(server.http_addr).await;
        let field = format!("X-Long: {}\r\n", "a".repeat(length));
        connection.send(&get("/feeds/feed.xsl", &field)).await;
        assert_eq!(connection.answer(false).await.status, status, "{length}");
    }
    for target in [
        format!("/feeds/all/rss.xml?{}", "a".repeat(40_000)),
        format!("/feeds/{}/rss.xml", "a".repeat(70_000)),
    ] {
        let mut connection = Connection::open(server.http_addr).await;
        connection.send(&get(&target, "")).await;
        let answer = connection.answer(false).await;
        assert_eq!(answer.status, 414);
        assert!(connection.closed_by_server().await);
    }
    // The same behind a short request, in one write: the fast path may read it whole, and
    // still refuses it as it would alone.
    for (field, status) in [
        (format!("X-Long: {}\r\n", "a".repeat(40 * 1024)), 431),
        (String::new(), 414),
    ] {
        let mut connection = Connection::open(server.http_addr).await;
        let target = if status == 414 {
            format!("/feeds/all/rss.xml?{}", "a".repeat(40_000))
        } else {
            "/feeds/feed.xsl".to_owned()
        };
        let pipelined = get("/feeds/feed.xsl", "") + &get(&target, &field);
        connection.send(&pipelined).await;
        assert_eq!(connection.answer(false).await.status, 200);
        assert_eq!(connection.answer(false).await.status, status);
    }
    // A long target the fast path reads whole is a request like any other.
    for length in [12_000, 24_000] {
        let mut connection = Connection::open(server.http_addr).await;
        let target = format!("/feeds/all/rss.xml?{}", "a".repeat(length));
        connection.send(&get(&target, "")).await;
        assert_eq!(connection.answer(false).await.status, 200, "{length}");
    }
}

/// Held by the tests that evict HTTP connections: the counters they read are the process's.
static EVICTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An HTTP/2 client's first bytes: the preface and empty SETTINGS.
const PREFACE: &str = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
/// An HTTP/2 PING.
const PING: &str = "\0\0\x08\x06\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Past the fast path (HTTP/2 here, as over TLS), a connection waits for its next request
/// while hyper has none under way, whatever bytes it sends: idle HTTP/2 connections that
/// ping the server cannot keep new readers out either.
#[tokio::test]
async fn idle_http2_connections_give_way_over_the_http_cap() {
    let _alone = EVICTING.lock().await;
    let server = TestServer::start_with(|s| s.limits.max_http_connections = 2).await;
    // Closed, with or without a reset (the server closes with frames unread).
    async fn closed_at_last(connection: &mut Connection) -> bool {
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let read = tokio::time::timeout(DEADLINE, connection.stream.read(&mut chunk)).await;
            match read.expect("closed in time") {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
    let mut older = Connection::open(server.http_addr).await;
    older.send(PREFACE).await;
    // The newer sends its preface in two parts, the first all the fast path reads.
    let mut newer = Connection::open(server.http_addr).await;
    newer.send(&PREFACE[..12]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    newer.send(&PREFACE[12..]).await;
    // Both served by hyper (its SETTINGS read), the newer pinging.
    assert!(older.read_more().await > 0);
    assert!(newer.read_more().await > 0);
    newer.send(PING).await;
    assert!(newer.read_more().await > 0, "the ping answered");
    // A feed reader takes the older one's place, then another the newer one's, though it
    // pinged: both were idle longer than the reader answered since.
    let mut reader = Connection::open(server.http_addr).await;
    reader.send(&get("/feeds/politics/rss.xml", "")).await;
    assert_eq!(reader.answer(false).await.status, 200);
    assert!(closed_at_last(&mut older).await, "the older gave way");
    let mut another = Connection::open(server.http_addr).await;
    another.send(&get("/feeds/politics/atom.xml", "")).await;
    assert_eq!(another.answer(false).await.status, 200);
    assert!(closed_at_last(&mut newer).await, "the pinging one gave way");
}

/// An HTTP/2 connection with no request under way is closed after the idle timeout, however
/// often its client pings (as nginx does): pings are no request.
#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed_when_idle() {
    let server =
        TestServer::start_with(|s| s.limits.idle_timeout = std::time::Duration::from_secs(1)).await;
    let mut pinging = Connection::open(server.http_addr).await;
    pinging.send(PREFACE).await;
    assert!(pinging.read_more().await > 0, "served by hyper");
    // Eight times the idle timeout.
    assert!(
        closed_while_pinging(&mut pinging).await,
        "closed though it pinged"
    );
}

/// Pings the server every 200 ms, reading each answer, for up to 8 s: whether the server
/// closed the connection meanwhile.
async fn closed_while_pinging(connection: &mut Connection) -> bool {
    let mut chunk = vec![0; 64 * 1024];
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if connection.stream.write_all(PING.as_bytes()).await.is_err() {
            return true;
        }
        // Its answer (or the close).
        let read = tokio::time::timeout(DEADLINE, connection.stream.read(&mut chunk)).await;
        if let Ok(0) | Err(_) = read.expect("the ping answered or the connection closed") {
            return true;
        }
    }
    false
}

/// An HTTP/2 answer its client does not let the server send (a flow-control window kept
/// at 0) closes the connection after the send timeout, however often the client pings:
/// else the request stays under way, and the connection keeps its place under the cap, for
/// good.
#[tokio::test]
async fn an_http2_answer_held_back_by_a_shut_window_closes_the_connection() {
    let send_timeouts = || {
        common::in_process_metric(
            "feedpub_connection_timeouts_total{listener=\"http\",reason=\"send\"}",
        )
    };
    let server =
        TestServer::start_with(|s| s.limits.send_timeout = std::time::Duration::from_secs(1)).await;
    let before = send_timeouts();
    let mut client = Connection::open(server.http_addr).await;
    // SETTINGS with SETTINGS_INITIAL_WINDOW_SIZE 0, then GET of a feed on stream 1 (HPACK:
    // :method GET, :scheme http, :path and :authority as literals).
    let mut opening =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x06\x04\0\0\0\0\0\0\x04\0\0\0\0".to_vec();
    let mut block = vec![0x82, 0x86];
    for (name, value) in [(0x44, "/feeds/politics/rss.xml"), (0x41, "feeds.test")] {
        block.extend([name, u8::try_from(value.len()).unwrap()]);
        block.extend_from_slice(value.as_bytes());
    }
    opening.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes()[1..]);
    opening.extend([0x01, 0x05, 0, 0, 0, 1]);
    opening.extend_from_slice(&block);
    client.stream.write_all(&opening).await.unwrap();
    // The server's frames, by type and stream, until the answer's HEADERS.
    let mut frames = Vec::new();
    while !frames.contains(&(0x01, 1)) {
        assert!(client.read_more().await > 0, "closed before answering");
        while client.read.len() >= 9 {
            let len = usize::from(client.read[0]) << 16
                | usize::from(client.read[1]) << 8
                | usize::from(client.read[2]);
            if client.read.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes(client.read[5..9].try_into().unwrap()) & 0x7fff_ffff;
            frames.push((client.read[3], stream));
            client.read.drain(..9 + len);
        }
    }
    assert!(
        !frames.contains(&(0x00, 1)),
        "no DATA through a shut window"
    );
    // Eight times the send timeout.
    assert!(
        closed_while_pinging(&mut client).await,
        "closed though it pinged"
    );
    assert!(send_timeouts() > before, "counted as a send timeout");
}

/// Over `max_http_connections`, a new connection takes the place of the one that has
/// waited longest for its next request, which the server closes (as nginx closes idle
/// kept-alive connections): clients holding connections open between requests, or opened
/// and left silent, cannot keep new readers out. Connections with a request under way
/// keep their places; when every one has, a new connection is refused.
#[tokio::test]
async fn over_the_http_cap_the_connection_idle_longest_gives_way() {
    let _alone = EVICTING.lock().await;
    const FEED: &str = "/feeds/politics/rss.xml";
    // Read in process: a request for /metrics would take a place itself.
    let http_metric =
        |name: &str| common::in_process_metric(&format!("{name}{{listener=\"http\"}}"));
    let server = TestServer::start_with(|s| s.limits.max_http_connections = 2).await;
    let evicted = http_metric("feedpub_connections_evicted_total");
    async fn answered(connection: &mut Connection) -> u16 {
        connection.send(&get(FEED, "")).await;
        connection.answer(false).await.status
    }
    // A request answered, and the head of the next one begun: under way.
    async fn under_way(connection: &mut Connection) -> u16 {
        let next = "GET /feeds/politics/atom.xml HTTP/1.1\r\n";
        connection.send(&format!("{}{next}", get(FEED, ""))).await;
        connection.answer(false).await.status
    }
    // A connection that has sent nothing waits for its first request: the oldest idle.
    let mut silent = Connection::open(server.http_addr).await;
    let mut first = Connection::open(server.http_addr).await;
    assert_eq!(answered(&mut first).await, 200);
    let mut second = Connection::open(server.http_addr).await;
    assert_eq!(answered(&mut second).await, 200);
    assert!(silent.closed_by_server().await, "the silent one gave way");

    // Both wait: the first longest. A third takes its place.
    let mut third = Connection::open(server.http_addr).await;
    assert_eq!(answered(&mut third).await, 200);
    assert!(
        first.closed_by_server().await,
        "the longest idle was closed"
    );
    // The second, idle longer than the third but now under way, keeps its place.
    assert_eq!(under_way(&mut second).await, 200);
    let mut fourth = Connection::open(server.http_addr).await;
    assert_eq!(under_way(&mut fourth).await, 200);
    assert!(third.closed_by_server().await, "the idle one gave way");
    assert_eq!(
        http_metric("feedpub_connections_evicted_total"),
        evicted + 3.0
    );

    // Both places under way: a fifth connection is refused, and they are still served.
    let refused = http_metric("feedpub_connections_refused_total");
    let mut fifth = Connection::open(server.http_addr).await;
    assert!(fifth.closed_by_server().await, "refused");
    assert_eq!(
        http_metric("feedpub_connections_refused_total"),
        refused + 1.0
    );
    for connection in [&mut second, &mut fourth] {
        connection.send("Host: feeds.test\r\n\r\n").await;
        assert_eq!(connection.answer(false).await.status, 200, "still served");
    }
}

/// One address takes at most `max_http_connections_per_peer` of the HTTP connections: past
/// its share, a connection takes the place of the address's own connection that has waited
/// longest for its next request, even when another address's has waited longer, so that
/// one client opening connections cannot close every other reader's.
#[tokio::test]
async fn one_address_takes_at_most_its_share_of_the_http_connections() {
    let _alone = EVICTING.lock().await;
    let http_metric =
        |name: &str| common::in_process_metric(&format!("{name}{{listener=\"http\"}}"));
    let server = TestServer::start_with(|s| {
        s.limits.max_http_connections = 3;
        s.limits.max_http_connections_per_peer = 2;
    })
    .await;
    let evicted = http_metric("feedpub_connections_evicted_total");
    let (one, other) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
    // Another address's reader, idle longest, then two of one address's: every place.
    let mut reader = Connection::open_from(other, server.http_addr).await;
    reader.send(&get("/feeds/politics/rss.xml", "")).await;
    assert_eq!(reader.answer(false).await.status, 200);
    let mut first = Connection::open_from(one, server.http_addr).await;
    let mut second = Connection::open_from(one, server.http_addr).await;
    second.send(&get("/feeds/politics/rss.xml", "")).await;
    assert_eq!(second.answer(false).await.status, 200);
    // A third of that address's takes the place of its own first, not the reader's.
    let mut third = Connection::open_from(one, server.http_addr).await;
    third.send(&get("/feeds/politics/atom.xml", "")).await;
    assert_eq!(third.answer(false).await.status, 200);
    assert!(
        first.closed_by_server().await,
        "its own longest idle gave way"
    );
    assert_eq!(
        http_metric("feedpub_connections_evicted_total"),
        evicted + 1.0
    );
    reader.send(&get("/feeds/politics/atom.xml", "")).await;
    assert_eq!(
        reader.answer(false).await.status,
        200,
        "the reader kept its place"
    );
}

/// The head of a WebSub request announcing a form body of `length` bytes.
fn websub_head(length: usize) -> String {
    format!(
        "POST /websub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A request body sent a byte at a time, each soon enough to keep the connection from
/// idling out, must still arrive whole within the head's time: past it the request is
/// answered 408 and the connection closed, so that a few such clients cannot hold every
/// place of the HTTP port.
#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_at_the_heads_time() {
    let server = TestServer::start_with(|settings| {
        settings.limits.header_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let stream = TcpStream::connect(server.http_addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(websub_head(1_000).as_bytes())
        .await
        .unwrap();
    // Far slower than 1,000 bytes in the head's time, far faster than the idle timeout.
    let dribble = tokio::spawn(async move {
        for _ in 0..1_000 {
            if write.write_all(b"h").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, read.read_to_end(&mut answer))
        .await
        .expect("answered and closed while the body was still coming")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("did not arrive whole within 1 s"),
        "{answer}"
    );
    dribble.abort();
    server.stop().await;
}

/// A request still under way when the server stops (here a body that stopped coming,
/// within its time) holds the stop for a grace period at most, not for as long as its
/// client keeps the connection.
#[tokio::test]
async fn a_request_under_way_holds_the_stop_for_a_grace_period_at_most() {
    let server = TestServer::start_with(|settings| {
        settings.limits.header_timeout = std::time::Duration::from_secs(600);
    })
    .await;
    let mut slow = Connection::open(server.http_addr).await;
    slow.send(&websub_head(1_000)).await;
    slow.send("hub.mode=").await;
    // Under way (its head read and handed on) before the stop begins.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tokio::time::timeout(DEADLINE, server.stop())
        .await
        .expect("the server stops while a request is under way");
    assert!(slow.closed_by_server().await);
}
