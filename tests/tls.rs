//! TLS on both listeners, with a certificate authority and a server certificate made by the
//! test (rcgen), checked by real TLS clients: tonic's and reqwest's, both rustls.

mod common;

use common::pki::pki;
use common::{TestServer, authed, ts};
use feedpub::app::Application;
use feedpub::config::TlsFiles;
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{self, ListSectionsRequest, PublishArticleRequest};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// An HTTPS client trusting the test CA, `localhost` resolved to the server's HTTP port,
/// and the base URL it is reached at.
fn https_client(pki: &common::pki::Pki, server: &TestServer) -> (reqwest::Client, String) {
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", server.http_addr)
        .build()
        .unwrap();
    (
        https,
        format!("https://localhost:{}", server.http_addr.port()),
    )
}

/// A server with TLS on both ports, with the certificate of `pki`, and its settings as
/// `change` leaves them.
async fn tls_server(
    pki: &common::pki::Pki,
    change: impl FnOnce(&mut feedpub::config::Settings),
) -> TestServer {
    let files = pki.files.clone();
    TestServer::start_with(|settings| {
        settings.server.tls = Some(files);
        change(settings);
    })
    .await
}

/// A connection, accepted by the server by now, that never starts its TLS handshake.
async fn hanging_handshake(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let hanging = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    hanging
}

/// Whether the server closes `stream` within 5 s: well before a handshake's 10 s.
async fn closed_soon(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// A tonic channel to the server's gRPC port over TLS, trusting the test CA.
async fn tls_channel(pki: &common::pki::Pki, server: &TestServer) -> tonic::transport::Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://{}", server.grpc_addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to the gRPC API")
}

#[tokio::test]
async fn grpc_and_http_are_served_over_tls_to_clients_that_trust_the_certificate() {
    let pki = pki();
    let server = tls_server(&pki, |_| {}).await;

    // gRPC: tonic over TLS, checking the certificate against the test CA.
    let mut client = PublisherServiceClient::new(tls_channel(&pki, &server).await);
    let sections = client
        .list_sections(authed(&server.tokens.newsroom, ListSectionsRequest {}))
        .await
        .expect("ListSections over TLS")
        .into_inner()
        .sections;
    assert_eq!(sections.len(), 5);
    let title = "全市打击私采滥挖工作推进会召开";
    client
        .publish_article(authed(
            &server.tokens.newsroom,
            PublishArticleRequest {
                article: Some(proto::Article {
                    id: "over-tls".into(),
                    section: "politics".into(),
                    title: title.into(),
                    content_text: "第一段。".into(),
                    publish_time: Some(ts(1_686_092_400)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("PublishArticle over TLS");

    // A plain-text client gets no answer from the TLS port.
    if let Ok(mut plain) =
        PublisherServiceClient::connect(format!("http://{}", server.grpc_addr)).await
    {
        plain
            .list_sections(authed(&server.tokens.newsroom, ListSectionsRequest {}))
            .await
            .expect_err("plain HTTP/2 on the TLS port");
    }

    // HTTPS: reqwest (rustls) trusting the test CA; ALPN offers HTTP/2.
    let (https, base) = https_client(&pki, &server);
    let health = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let start = Instant::now();
    loop {
        let feed = https
            .get(format!("{base}/feeds/politics/rss.xml"))
            .send()
            .await
            .unwrap();
        assert_eq!(feed.status(), 200);
        if feed.text().await.unwrap().contains(title) {
            break;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "the feed never showed the article"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Neither plain HTTP nor a client that does not trust the certificate gets through.
    reqwest::get(format!("http://{}/healthz", server.http_addr))
        .await
        .expect_err("plain HTTP on the TLS port");
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", server.http_addr)
        .build()
        .unwrap();
    let error = untrusting
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect_err("a certificate the client does not trust");
    assert!(error.is_connect(), "{error:?}");
}

/// On the TLS port, a gRPC client must send the HTTP/2 preface within the header timeout
/// of its handshake's end: the handshake's own bytes are no preface. A client that
/// completes TLS and then sends nothing is closed (a header timeout), not left open until
/// a newer connection takes its place.
#[tokio::test]
async fn a_grpc_client_silent_after_its_tls_handshake_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let header_timeouts = || {
        common::in_process_metric(
            "feedpub_connection_timeouts_total{listener=\"grpc\",reason=\"header\"}",
        )
    };
    let pki = pki();
    let server = tls_server(&pki, |settings| {
        settings.limits.header_timeout = Duration::from_secs(1)
    })
    .await;
    let before = header_timeouts();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.grpc_addr)
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2");
    // Silent from now on: what the server sends (its SETTINGS), then its close, within
    // eight times the header timeout.
    let mut chunk = [0; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(n) = tls.read(&mut chunk).await
            && n > 0
        {}
    })
    .await;
    assert!(closed.is_ok(), "still open 8 s after its handshake");
    assert!(header_timeouts() > before, "counted as a header timeout");
}

/// A TLS handshake holds its connection's place under the gRPC cap, and gives it up when a
/// newer connection takes that place, as a connection that has made no call does: a
/// handshake left hanging is closed at once, not at the end of its 10 s.
#[tokio::test]
async fn a_tls_handshake_whose_place_a_newer_connection_takes_is_given_up() {
    let pki = pki();
    let server = tls_server(&pki, |settings| settings.limits.max_grpc_connections = 1).await;
    let mut hanging = hanging_handshake(server.grpc_addr).await;
    // A partner's channel takes its place and is answered.
    PublisherServiceClient::new(tls_channel(&pki, &server).await)
        .list_sections(authed(&server.tokens.newsroom, ListSectionsRequest {}))
        .await
        .expect("ListSections");
    assert!(
        closed_soon(&mut hanging).await,
        "the hanging handshake still open"
    );
}

/// On the HTTP port too, a TLS handshake holds its connection's place under the cap, as a
/// connection that has sent no request yet, counted as waiting from a second after it
/// began: over the cap, connections idle meanwhile give way first (a rush of new
/// connections does not keep every handshake from finishing), then the handshake (left
/// hanging, it keeps no reader out).
#[tokio::test]
async fn an_http_tls_handshake_left_hanging_gives_its_place_to_a_reader() {
    // The first part must happen within the handshake's first second; on a machine too
    // busy for that, it is tried again on a fresh server rather than told wrongly.
    let mut took = Vec::new();
    for _ in 0..3 {
        match handshake_gives_way_to_a_reader().await {
            Ok(()) => return,
            Err(elapsed) => took.push(elapsed),
        }
    }
    panic!("too slow, three times, to tell within the handshake's first second: {took:?}");
}

/// One try of [`an_http_tls_handshake_left_hanging_gives_its_place_to_a_reader`]; how long
/// its first part took if that was longer than the handshake's first second.
async fn handshake_gives_way_to_a_reader() -> Result<(), Duration> {
    use tokio::io::AsyncReadExt;
    let pki = pki();
    let server = tls_server(&pki, |settings| settings.limits.max_http_connections = 2).await;
    let feed = |client: reqwest::Client, base: String| async move {
        let answer = client
            .get(format!("{base}/feeds/politics/rss.xml"))
            .send()
            .await
            .expect("a reader answered");
        answer.status()
    };
    let began = Instant::now();
    let mut hanging = hanging_handshake(server.http_addr).await;
    // A reader, idle after its answer, then another: the first gives way, though it has
    // waited less long than the handshake.
    let (first, base) = https_client(&pki, &server);
    assert_eq!(feed(first, base.clone()).await, 200);
    let (second, _) = https_client(&pki, &server);
    assert_eq!(feed(second.clone(), base.clone()).await, 200);
    let mut chunk = [0; 64];
    let read = tokio::time::timeout(Duration::from_millis(100), hanging.read(&mut chunk)).await;
    if began.elapsed() >= Duration::from_secs(1) {
        return Err(began.elapsed());
    }
    assert!(read.is_err(), "the handshake kept its place: {read:?}");
    // Past that second, the second reader asks again; a third reader takes the place of
    // the handshake, idle longest.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(began.elapsed())).await;
    assert_eq!(feed(second, base.clone()).await, 200);
    let (third, _) = https_client(&pki, &server);
    assert_eq!(feed(third, base).await, 200);
    assert!(
        closed_soon(&mut hanging).await,
        "the hanging handshake still open"
    );
    Ok(())
}

/// A client that speaks plain text to a TLS port is sent the alert that says why, and can
/// read it: the server reads and drops what the client sent before it closes, since a
/// socket closed with bytes unread answers with a reset, which can make the client's
/// system discard the alert (a gRPC client then only sees the connection lost, and cannot
/// tell its user to give `https://`).
#[tokio::test]
async fn a_client_that_does_not_speak_tls_reads_the_alert_on_either_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki();
    let server = tls_server(&pki, |_| {}).await;
    for addr in [server.grpc_addr, server.http_addr] {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        // An HTTP/2 preface and more than the server reads of it before it gives up.
        let mut plain = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        plain.resize(256 * 1024, b'x');
        let _ = client.write_all(&plain).await;
        // Time for the server to answer and close, and for a reset to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
            .await
            .expect("closed within 5 s");
        assert!(read.is_ok(), "{addr}: {read:?} after {answer:?}");
        // A TLS record of type alert (21), fatal (2).
        assert!(
            answer.len() >= 7 && answer[0] == 21 && answer[5] == 2,
            "{addr}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_file_or_a_key_of_another_certificate_stops_start_up() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: pki.files.key.clone(),
            },
            "missing.pem".to_owned(),
        ),
        (
            TlsFiles {
                cert: pki.files.key.clone(),
                key: pki.files.key.clone(),
            },
            "no PEM certificate".to_owned(),
        ),
        (
            TlsFiles {
                cert: pki.files.cert.clone(),
                key: pki.other_key.clone(),
            },
            format!(
                "the key {} cannot be used together",
                pki.other_key.display()
            ),
        ),
    ];
    for (files, expected) in cases {
        let mut settings = common::settings(&dir);
        settings.server.tls = Some(files);
        let Err(error) = Application::build(settings).await else {
            panic!("the server started with a bad TLS configuration ({expected})");
        };
        let message = format!("{error}");
        assert!(message.contains(&expected), "{message}");
        // As `serve` prints it, with its causes: each said once.
        let printed = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(printed.matches(&expected).count(), 1, "{printed}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing is opened before the certificate is checked"
        );
    }
}
