//! The built-in WebSub hub end to end: a real feedpub server on port 0, real subscribers (a
//! small HTTP server on 127.0.0.1 that answers verifications and records deliveries),
//! articles published over real gRPC.

mod common;
mod websub_support;

use axum::http::{Method, StatusCode};
use feedpub::websub::{CallbackClient, signature};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use url::Url;
use websub_support::{BASE, Behaviour, Options, Server, Subscriber, Verify, brief, header, topic};

/// The verification echoes the topic URL as the subscriber wrote it (WebSub §5.3), not as
/// the hub writes it; the subscription is the feed's all the same.
#[tokio::test]
async fn the_verification_echoes_the_topic_as_the_subscriber_wrote_it() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    let written = topic("politics/../politics/atom.xml").replacen("http://", "HTTP://", 1);
    let callback = subscriber.url("/cb");
    let (status, body) = server
        .hub_request(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", &written),
            ("hub.callback", &callback),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let verification = &subscriber.wait_for(Method::GET, "/cb", 1).await[0];
    assert_eq!(verification.query["hub.topic"], written);
    server
        .wait_until("verified", |hub| hub.verifications_ok() == 1)
        .await;
    server.publish("websub-written", "politics").await;
    let delivery = subscriber.wait_for(Method::POST, "/cb", 1).await[0].clone();
    assert_eq!(delivery.body, server.feed_bytes("politics/atom.xml").await);
}

#[tokio::test]
async fn a_verified_subscriber_gets_a_signed_copy_of_the_new_feed_within_a_second() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    let callback = subscriber.url("/reader?list=politics");
    server
        .subscribe("politics/atom.xml", &callback, &[("hub.secret", "s3cret")])
        .await;

    let verification = &subscriber.wait_for(Method::GET, "/reader", 1).await[0];
    assert_eq!(verification.query["hub.mode"], "subscribe");
    assert_eq!(verification.query["hub.topic"], topic("politics/atom.xml"));
    assert_eq!(verification.query["hub.lease_seconds"], "864000");
    assert_eq!(
        verification.query["list"], "politics",
        "the callback's own query stays"
    );
    assert!(verification.query["hub.challenge"].len() >= 32);
    server
        .wait_until("one verified subscription", |hub| {
            hub.verifications_ok() == 1
        })
        .await;

    let answered = server.publish("websub-signed", "politics").await;
    let delivery = subscriber.wait_for(Method::POST, "/reader", 1).await[0].clone();
    let latency = delivery.at.saturating_duration_since(answered);
    // How fast is measured by the benchmark suite; tests assert no timings.
    eprintln!("WebSub delivery arrived {latency:?} after PublishArticle answered");

    assert_eq!(delivery.body, server.feed_bytes("politics/atom.xml").await);
    assert!(String::from_utf8_lossy(&delivery.body).contains("快讯 websub-signed"));
    assert_eq!(
        header(&delivery, "content-type"),
        "application/atom+xml; charset=utf-8"
    );
    assert_eq!(
        header(&delivery, "link"),
        format!(
            "<{BASE}websub>; rel=\"hub\", <{}>; rel=\"self\"",
            topic("politics/atom.xml")
        )
    );
    assert_eq!(
        header(&delivery, "x-hub-signature"),
        signature(b"s3cret", &delivery.body)
    );
    assert_eq!(
        header(&delivery, "x-hub-signature"),
        hmac_sha256_hex(b"s3cret", &delivery.body)
    );
    server.wait_idle().await;
    assert_eq!(server.hub.deliveries_ok(), 1);
    assert_eq!(server.hub.deliveries_failed(), 0);
    let metrics = reqwest::get(format!("http://{}/metrics", server.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"feedpub_websub_deliveries_total{result="ok"}"#),
        "{metrics}"
    );
}

/// Optional parameters sent empty (as some client libraries send every field) are taken
/// as left out: `hub.secret` too, whose deliveries then go unsigned, as without one.
#[tokio::test]
async fn optional_parameters_sent_empty_are_left_out() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    server
        .subscribe(
            "politics/atom.xml",
            &subscriber.url("/empty"),
            &[("hub.secret", ""), ("hub.lease_seconds", "")],
        )
        .await;
    let verification = &subscriber.wait_for(Method::GET, "/empty", 1).await[0];
    assert_eq!(verification.query["hub.lease_seconds"], "864000");
    server
        .wait_until("verified", |hub| hub.verifications_ok() == 1)
        .await;
    server.publish("websub-unsigned", "politics").await;
    let delivery = subscriber.wait_for(Method::POST, "/empty", 1).await[0].clone();
    assert!(
        delivery.headers.get("x-hub-signature").is_none(),
        "{:?}",
        delivery.headers
    );
}

/// An independent computation of the signature the hub should send.
fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_subscriber_answering_500_gets_retries_with_backoff_until_it_succeeds() {
    let subscriber = Subscriber::start().await;
    subscriber.set(
        "/flaky",
        Behaviour {
            first: VecDeque::from([500, 503]),
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    server
        .subscribed("rural/feed.json", &subscriber.url("/flaky"))
        .await;

    server.publish("websub-retried", "rural").await;
    let attempts = subscriber.wait_for(Method::POST, "/flaky", 3).await;
    server
        .wait_until("delivered", |hub| hub.deliveries_ok() == 1)
        .await;
    assert!(attempts.iter().all(|a| a.body == attempts[0].body));
    assert_eq!(
        header(&attempts[0], "content-type"),
        "application/feed+json; charset=utf-8"
    );
    assert!(
        header(&attempts[0], "x-hub-signature").is_empty(),
        "no secret, no signature"
    );
    // Base delay 20 ms, doubled for each retry.
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(20));
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(40));
    server.wait_idle().await;
    assert_eq!(subscriber.hits(Method::POST, "/flaky").len(), 3);
    assert_eq!(server.hub.deliveries_failed(), 0);
}

#[tokio::test]
async fn a_slow_subscriber_delays_no_other() {
    let subscriber = Subscriber::start().await;
    subscriber.set(
        "/slow",
        Behaviour {
            // In flight all through the test, yet under the hub's 10 s request timeout.
            stall: Duration::from_secs(8),
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    for path in ["/slow", "/quick"] {
        server
            .subscribe("politics/feed.json", &subscriber.url(path), &[])
            .await;
    }
    server
        .wait_until("both verified", |hub| hub.verifications_ok() == 2)
        .await;

    server.publish("websub-slow", "politics").await;
    subscriber.wait_for(Method::POST, "/slow", 1).await;
    server
        .wait_until("the quick one acknowledged", |hub| hub.deliveries_ok() == 1)
        .await;
    assert_eq!(subscriber.hits(Method::POST, "/quick").len(), 1);
    assert_eq!(
        server.hub.deliveries_in_flight(),
        1,
        "the slow one is still waiting"
    );
}

#[tokio::test]
async fn after_a_verified_unsubscribe_nothing_is_delivered_and_a_refused_one_changes_nothing() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    let (leaving, clingy, staying) = (
        subscriber.url("/leaving"),
        subscriber.url("/clingy"),
        subscriber.url("/staying"),
    );
    server.subscribe("politics/atom.xml", &leaving, &[]).await;
    server.subscribe("politics/atom.xml", &clingy, &[]).await;
    server.subscribe("rural/atom.xml", &staying, &[]).await;
    server
        .wait_until("three verified", |hub| hub.verifications_ok() == 3)
        .await;

    subscriber.set(
        "/clingy",
        Behaviour {
            verify: Verify::Refuse,
            ..Behaviour::default()
        },
    );
    for callback in [&leaving, &clingy] {
        let (status, body) = server
            .hub_request(&[
                ("hub.mode", "unsubscribe"),
                ("hub.topic", &topic("politics/atom.xml")),
                ("hub.callback", callback),
            ])
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    server
        .wait_until("one unsubscribe confirmed, one refused", |hub| {
            hub.verifications_ok() == 4 && hub.verifications_failed() == 1
        })
        .await;
    let asked = subscriber.hits(Method::GET, "/leaving");
    assert_eq!(asked.last().unwrap().query["hub.mode"], "unsubscribe");
    assert!(
        !asked
            .last()
            .unwrap()
            .query
            .contains_key("hub.lease_seconds")
    );

    server.publish("websub-politics", "politics").await;
    server.publish("websub-rural", "rural").await;
    subscriber.wait_for(Method::POST, "/staying", 1).await;
    subscriber.wait_for(Method::POST, "/clingy", 1).await;
    // The politics change was handed out before the rural one: by now its deliveries have
    // all started, and once none is in flight, every one of them has ended.
    server.wait_idle().await;
    assert!(subscriber.hits(Method::POST, "/leaving").is_empty());
}

#[tokio::test]
async fn a_lease_ends_deliveries_and_requested_leases_are_capped() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    let feed = "politics/rss.xml";
    server
        .subscribe(
            feed,
            &subscriber.url("/brief"),
            &[("hub.lease_seconds", "1")],
        )
        .await;
    server
        .subscribe(
            feed,
            &subscriber.url("/greedy"),
            &[("hub.lease_seconds", "99999999")],
        )
        .await;
    server
        .wait_until("both verified", |hub| hub.verifications_ok() == 2)
        .await;
    let verified = Instant::now();
    assert_eq!(
        subscriber.hits(Method::GET, "/brief")[0].query["hub.lease_seconds"],
        "1"
    );
    assert_eq!(
        subscriber.hits(Method::GET, "/greedy")[0].query["hub.lease_seconds"],
        "2592000",
        "capped at max_lease_seconds (30 days)"
    );

    // The condition is the passing of time itself: the lease began before `verified`.
    tokio::time::sleep_until((verified + Duration::from_millis(1100)).into()).await;
    server.publish("websub-after-lease", "politics").await;
    subscriber.wait_for(Method::POST, "/greedy", 1).await;
    server.wait_idle().await;
    assert!(subscriber.hits(Method::POST, "/brief").is_empty());
    assert_eq!(server.hub.deliveries_ok(), 1);
}

#[tokio::test]
async fn subscriptions_survive_a_restart() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    server
        .subscribe(
            "all/atom.xml",
            &subscriber.url("/durable"),
            &[("hub.secret", "kept")],
        )
        .await;
    server
        .wait_until("verified", |hub| hub.verifications_ok() == 1)
        .await;

    let server = server.restart().await;
    server.publish("websub-after-restart", "features").await;
    let delivery = &subscriber.wait_for(Method::POST, "/durable", 1).await[0];
    assert_eq!(delivery.body, server.feed_bytes("all/atom.xml").await);
    assert_eq!(
        header(delivery, "x-hub-signature"),
        hmac_sha256_hex(b"kept", &delivery.body)
    );
}

#[tokio::test]
async fn a_delivery_waiting_to_retry_when_the_server_stops_is_made_once_it_starts_again() {
    let subscriber = Subscriber::start().await;
    let server = one_document_left_retrying(&subscriber).await;

    // The server that starts again delivers the same document, unasked.
    let (server, posts) = restarted_with_left_delivered(server, &subscriber, Duration::ZERO).await;
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body, posts[0].body, "the same document");
    assert_eq!(posts[1].body, server.feed_bytes("rural/feed.json").await);
}

/// Documents superseded while they waited to retry are left too when the server stops: after
/// it starts again only the document each feed shows is delivered, once, however many of the
/// others there were (more than the hub reads at a time).
#[tokio::test]
async fn after_a_restart_only_the_documents_the_feeds_show_are_delivered_however_many_were_left() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options {
        retry_base_ms: 60_000,
        ..Options::default()
    })
    .await;
    // Six topics a publish to rural changes, each with its own callback path.
    let mut topics = Vec::new();
    for scope in ["rural", "all"] {
        for format in ["feed.json", "atom.xml", "rss.xml"] {
            let (topic, path) = (
                format!("{scope}/{format}"),
                format!("/behind/{scope}/{format}"),
            );
            subscriber.set(
                &path,
                Behaviour {
                    then: 503,
                    ..Behaviour::default()
                },
            );
            server.subscribe(&topic, &subscriber.url(&path), &[]).await;
            topics.push((topic, path));
        }
    }
    server
        .wait_until("verified", |hub| hub.verifications_ok() == 6)
        .await;
    // 72 documents left waiting to retry, 66 of them superseded.
    for n in 1..=12 {
        server.publish(&format!("websub-behind-{n}"), "rural").await;
        for (_, path) in &topics {
            subscriber.wait_for(Method::POST, path, n).await;
        }
    }

    // Answered before the restart, as in `restarted_with_left_delivered`, once every
    // delivery has had its 503.
    for (_, path) in &topics {
        assert_eq!(subscriber.wait_answered(path, 12).await, [503; 12]);
    }
    for (_, path) in &topics {
        subscriber.set(path, Behaviour::default());
    }
    let server = server.restart().await;
    server
        .wait_until("delivered", |hub| hub.deliveries_ok() == 6)
        .await;
    server.wait_idle().await;
    for (topic, path) in &topics {
        let posts = subscriber.hits(Method::POST, path);
        assert_eq!(
            posts.len(),
            13,
            "{topic}: one more, not one per document left"
        );
        assert_eq!(posts[12].body, server.feed_bytes(topic).await, "{topic}");
    }
}

/// A server whose subscriber of `rural/feed.json` answers 503, retrying a minute later, and
/// has had one document (left waiting to retry) sent to `/left`.
async fn one_document_left_retrying(subscriber: &Subscriber) -> Server {
    one_document_of_left_retrying(subscriber, "rural/feed.json").await
}

/// [`one_document_left_retrying`] for the subscriber of `topic`, a feed a publish to rural
/// changes; an author feed is made first.
async fn one_document_of_left_retrying(subscriber: &Subscriber, topic: &str) -> Server {
    subscriber.set(
        "/left",
        Behaviour {
            then: 503,
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options {
        retry_base_ms: 60_000,
        ..Options::default()
    })
    .await;
    if topic.starts_with("authors/") {
        server.publish("websub-first", "rural").await;
        server.settle().await;
    }
    server.subscribed(topic, &subscriber.url("/left")).await;
    server.publish("websub-left", "rural").await;
    subscriber.wait_for(Method::POST, "/left", 1).await;
    // Answered before it returns: a callback set to 200 before the answer would let this
    // delivery succeed, and leave nothing.
    assert_eq!(subscriber.wait_answered("/left", 1).await, [503]);
    server
}

/// Stops `server`, waits `pause` and starts it again with `/left` answering 200; returns it
/// once it has delivered a document, with every POST `/left` got.
async fn restarted_with_left_delivered(
    server: Server,
    subscriber: &Subscriber,
    pause: Duration,
) -> (Server, Vec<websub_support::Hit>) {
    // Before the restart: the new server may deliver before it is even returned, and a
    // delivery still refused then would wait a minute to be tried again. The one waiting
    // in the running server is not due for a minute either.
    subscriber.set("/left", Behaviour::default());
    let server = server.restart_after(pause).await;
    server
        .wait_until("delivered", |hub| hub.deliveries_ok() >= 1)
        .await;
    server.wait_idle().await;
    let posts = subscriber.hits(Method::POST, "/left");
    (server, posts)
}

/// An embargoed article of rural, its embargo ending `after` from now.
fn embargoed(id: &str, after: Duration) -> feedpub::grpc::proto::Article {
    let end = std::time::SystemTime::now() + after;
    let seconds = end.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    feedpub::grpc::proto::Article {
        embargo_time: Some(prost_types::Timestamp {
            seconds: i64::try_from(seconds).unwrap() + 1,
            nanos: 0,
        }),
        ..brief(id, "rural")
    }
}

/// A change served but not yet written when the server is told to stop is written at
/// shutdown and announced then: its delivery is recorded before the hub stops, and made,
/// by this run or the next.
#[tokio::test]
async fn a_change_the_server_writes_while_it_stops_is_delivered() {
    let subscriber = Subscriber::start().await;
    let mut server = Server::start(Options::default()).await;
    server
        .subscribed("rural/feed.json", &subscriber.url("/stopping"))
        .await;
    for n in 1..=2 {
        let id = format!("websub-stopping-{n}");
        server.publish(&id, "rural").await;
        let start = Instant::now();
        while !String::from_utf8_lossy(&server.feed_bytes("rural/feed.json").await).contains(&id) {
            assert!(start.elapsed() < common::DEADLINE, "never served");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // At once: its files may not be written yet.
        server = server.restart_after(Duration::ZERO).await;
        let posts = subscriber.wait_for(Method::POST, "/stopping", n).await;
        assert!(
            String::from_utf8_lossy(&posts[n - 1].body).contains(&id),
            "round {n}: the document with the change"
        );
    }
}

/// The same for an author feed, though a start builds the author and tag feeds after it
/// listens: the left delivery is looked at once they are, not dropped as if its feed were
/// gone.
#[tokio::test]
async fn a_delivery_of_an_author_feed_left_when_the_server_stops_is_made_once_it_starts_again() {
    let topic = format!(
        "{}/feed.json",
        feedpub::domain::FeedScope::author("陈淑兰").path_segment()
    );
    let subscriber = Subscriber::start().await;
    let server = one_document_of_left_retrying(&subscriber, &topic).await;

    let (server, posts) = restarted_with_left_delivered(server, &subscriber, Duration::ZERO).await;
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body, posts[0].body, "the same document");
    assert_eq!(posts[1].body, server.feed_bytes(&topic).await);
}

/// Embargoed copy filed after the document was left re-dates the JSON Feed (it has no date
/// of its own) without changing a byte: after a restart the feed still shows that document,
/// and it is sent again.
#[tokio::test]
async fn a_left_document_the_feed_still_shows_under_a_later_date_is_sent_after_a_restart() {
    let subscriber = Subscriber::start().await;
    let server = one_document_left_retrying(&subscriber).await;
    server
        .publish_article(embargoed("websub-secret", Duration::from_secs(3600)))
        .await;

    let (server, posts) = restarted_with_left_delivered(server, &subscriber, Duration::ZERO).await;
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body, posts[0].body, "the same document");
    assert_eq!(posts[1].body, server.feed_bytes("rural/feed.json").await);
}

/// A feed that changed while no server ran (an embargo ended) is pushed, after the
/// restart, to the subscriber whose delivery was left: nothing else would tell it.
#[tokio::test]
async fn a_feed_that_changed_while_the_server_was_stopped_is_sent_to_a_subscriber_left_behind() {
    let subscriber = Subscriber::start().await;
    let server = one_document_left_retrying(&subscriber).await;
    // The embargo ends while the server is stopped, not before: a server still running then
    // would push the change itself (to a callback that still fails), and leave nothing
    // for the restart to send. Five seconds leave a loaded machine time to stop it.
    server
        .publish_article(embargoed("websub-lifted", Duration::from_secs(5)))
        .await;

    // Stopped until the embargo has ended (at most 6 s after it was filed).
    let (server, posts) =
        restarted_with_left_delivered(server, &subscriber, Duration::from_secs(7)).await;
    let shown = server.feed_bytes("rural/feed.json").await;
    assert!(String::from_utf8_lossy(&shown).contains("websub-lifted"));
    // The document the feed shows now, once: for the delivery left and as the feed's change
    // at start alike.
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body, shown, "the document the feed shows now");
}

/// A feed that changed while no server ran (an embargo ended) is pushed to its subscribers
/// once the server starts, though nothing of theirs was pending; one unchanged is not.
#[tokio::test]
async fn feeds_that_changed_while_the_server_was_stopped_are_pushed_when_it_starts() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    for (feed, path) in [
        ("rural/feed.json", "/rural"),
        ("politics/feed.json", "/politics"),
    ] {
        server.subscribe(feed, &subscriber.url(path), &[]).await;
    }
    server
        .wait_until("verified", |hub| hub.verifications_ok() == 2)
        .await;
    server.publish("websub-seen", "rural").await;
    subscriber.wait_for(Method::POST, "/rural", 1).await;
    server
        .publish_article(embargoed("websub-lifted", Duration::from_secs(2)))
        .await;
    server.wait_idle().await;

    // Stopped until the embargo has ended.
    let server = server.restart_after(Duration::from_secs(4)).await;
    let posts = subscriber.wait_for(Method::POST, "/rural", 2).await;
    let shown = server.feed_bytes("rural/feed.json").await;
    assert_eq!(posts[1].body, shown);
    assert!(String::from_utf8_lossy(&shown).contains("websub-lifted"));
    server.wait_idle().await;
    assert_eq!(subscriber.hits(Method::POST, "/rural").len(), 2);
    assert!(subscriber.hits(Method::POST, "/politics").is_empty());
}

#[tokio::test]
async fn callbacks_on_addresses_that_are_not_allowed_are_never_called() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options {
        allow_loopback: false,
        ..Options::default()
    })
    .await;
    let port = subscriber.addr.port();
    let feed = topic("politics/atom.xml");
    for literal in [
        format!("http://127.0.0.1:{port}/direct"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://[::1]:{port}/v6"),
    ] {
        let (status, body) = server
            .hub_request(&[
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", &literal),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{literal}");
        assert!(body.starts_with("hub.callback:"), "{body}");
    }
    // A name is accepted, but what it resolves to is checked when connecting.
    server
        .subscribe(
            "politics/atom.xml",
            &format!("http://localhost:{port}/named"),
            &[],
        )
        .await;
    server
        .wait_until("the verification refused", |hub| {
            hub.verifications_failed() == 1
        })
        .await;
    assert_eq!(server.hub.verifications_ok(), 0);

    // The checked client refuses both forms too, before any connection.
    let client = CallbackClient::new(Vec::new()).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/client"),
        format!("http://localhost:{port}/client"),
    ] {
        let error = client.get(&Url::parse(&url).unwrap()).await.unwrap_err();
        assert!(error.is_refused(), "{url}: {error}");
    }
    assert_eq!(
        subscriber.all_hits(),
        0,
        "nothing ever reached the subscriber"
    );
}

#[tokio::test]
async fn redirects_and_wrong_answers_count_as_failures() {
    let subscriber = Subscriber::start().await;
    let with = |verify: Verify, then: u16| Behaviour {
        verify,
        then,
        ..Behaviour::default()
    };
    subscriber.set("/hop", with(Verify::Redirect, 200));
    subscriber.set("/fibber", with(Verify::Wrong, 200));
    subscriber.set("/moved", with(Verify::Echo, 307));
    let server = Server::start(Options::default()).await;
    for path in ["/hop", "/fibber", "/moved", "/fine"] {
        server
            .subscribe("politics/atom.xml", &subscriber.url(path), &[])
            .await;
    }
    server
        .wait_until("two verified, two failed", |hub| {
            hub.verifications_ok() == 2 && hub.verifications_failed() == 2
        })
        .await;

    server.publish("websub-redirects", "politics").await;
    server
        .wait_until("one delivered, one given up", |hub| {
            hub.deliveries_ok() == 1 && hub.deliveries_failed() == 1
        })
        .await;
    server.wait_idle().await;
    assert_eq!(subscriber.hits(Method::POST, "/fine").len(), 1);
    assert_eq!(
        subscriber.hits(Method::POST, "/moved").len(),
        5,
        "five attempts"
    );
    for path in ["/hop", "/fibber"] {
        assert!(subscriber.hits(Method::POST, path).is_empty(), "{path}");
    }
    assert!(subscriber.hits(Method::GET, "/elsewhere").is_empty());
    assert!(subscriber.hits(Method::POST, "/elsewhere").is_empty());
}

#[tokio::test]
async fn a_subscriber_answering_410_gone_is_unsubscribed() {
    let subscriber = Subscriber::start().await;
    subscriber.set(
        "/gone",
        Behaviour {
            then: 410,
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    server
        .subscribe("features/atom.xml", &subscriber.url("/gone"), &[])
        .await;
    server
        .subscribe("features/atom.xml", &subscriber.url("/fine"), &[])
        .await;
    server
        .wait_until("both verified", |hub| hub.verifications_ok() == 2)
        .await;

    server.publish("websub-gone-1", "features").await;
    subscriber.wait_for(Method::POST, "/fine", 1).await;
    server.wait_idle().await;
    server.publish("websub-gone-2", "features").await;
    subscriber.wait_for(Method::POST, "/fine", 2).await;
    server.wait_idle().await;
    assert_eq!(
        subscriber.hits(Method::POST, "/gone").len(),
        1,
        "no retry, no second delivery"
    );
}

#[tokio::test]
async fn configured_external_hubs_are_pinged_on_every_change() {
    let external = Subscriber::start().await;
    let server = Server::start(Options {
        external_hubs: vec![external.url("/hub")],
        ..Options::default()
    })
    .await;
    server.publish("websub-ping", "rural").await;
    // The article's section, all sections, and its author's feed (the harness signs
    // every article 陈淑兰, with no tags).
    let author = format!("authors/{}", feedpub::domain::name_slug("陈淑兰"));
    let expected: Vec<String> = ["rural", "all", author.as_str()]
        .iter()
        .flat_map(|s| ["rss.xml", "atom.xml", "feed.json"].map(|f| topic(&format!("{s}/{f}"))))
        .collect();
    let pings = external
        .wait_for(Method::POST, "/hub", expected.len())
        .await;
    let mut pinged: Vec<String> = pings
        .iter()
        .map(|ping| {
            assert_eq!(
                header(ping, "content-type"),
                "application/x-www-form-urlencoded"
            );
            let form: HashMap<String, String> = url::form_urlencoded::parse(&ping.body)
                .into_owned()
                .collect();
            assert_eq!(form["hub.mode"], "publish");
            form["hub.url"].clone()
        })
        .collect();
    pinged.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(pinged, expected);
}

/// An external hub that hangs holds the pings sent to it, never the subscribers'
/// deliveries: after one article touching some hundred feeds (about a hundred pings, more
/// than the deliveries' slots), the next is still delivered while every ping the hub took
/// hangs, and no more than the pings' own few are sent to it meanwhile.
#[tokio::test]
async fn an_external_hub_that_hangs_delays_no_delivery() {
    let external = Subscriber::start_on("127.0.0.2").await;
    external.set(
        "/hub",
        Behaviour {
            stall: Duration::from_secs(600),
            ..Behaviour::default()
        },
    );
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options {
        external_hubs: vec![external.url("/hub")],
        ..Options::default()
    })
    .await;
    server
        .subscribed("rural/atom.xml", &subscriber.url("/rural"))
        .await;
    let tags: Vec<String> = (0..30).map(|n| format!("标签{n}")).collect();
    server
        .publish_article(feedpub::grpc::proto::Article {
            tags,
            ..brief("websub-many-feeds", "rural")
        })
        .await;
    subscriber.wait_for(Method::POST, "/rural", 1).await;
    external.wait_for(Method::POST, "/hub", 8).await;
    server.publish("websub-after-them", "rural").await;
    subscriber.wait_for(Method::POST, "/rural", 2).await;
    let pinged = external.hits(Method::POST, "/hub").len();
    assert_eq!(
        pinged, 8,
        "pings reached the hanging hub before the delivery"
    );
}

#[tokio::test]
async fn bad_hub_requests_are_refused_naming_the_parameter() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    let feed = topic("politics/atom.xml");
    let callback = subscriber.url("/never");
    let long_secret = "s".repeat(200);
    let unknown_feed = format!("{BASE}feeds/sports/atom.xml");
    let with_query = format!("{feed}?page=2");
    // Served beside the feeds, but no feed: nothing would ever be delivered.
    let stylesheet = format!("{BASE}feeds/feed.xsl");
    let table: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &stylesheet),
                ("hub.callback", &callback),
            ],
            "hub.topic",
        ),
        (
            vec![("hub.topic", &feed), ("hub.callback", &callback)],
            "hub.mode",
        ),
        (
            vec![
                ("hub.mode", "watch"),
                ("hub.topic", &feed),
                ("hub.callback", &callback),
            ],
            "hub.mode",
        ),
        (
            vec![("hub.mode", "subscribe"), ("hub.callback", &callback)],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                (
                    "hub.topic",
                    "https://elsewhere.example/feeds/politics/atom.xml",
                ),
                ("hub.callback", &callback),
            ],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &unknown_feed),
                ("hub.callback", &callback),
            ],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &with_query),
                ("hub.callback", &callback),
            ],
            "hub.topic",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.topic", &feed),
                ("hub.callback", &callback),
            ],
            "hub.topic",
        ),
        (
            vec![("hub.mode", "subscribe"), ("hub.topic", &feed)],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", "/relative"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", "ftp://x/"),
            ],
            "hub.callback",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", &callback),
                ("hub.lease_seconds", "soon"),
            ],
            "hub.lease_seconds",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", &callback),
                ("hub.lease_seconds", "0"),
            ],
            "hub.lease_seconds",
        ),
        (
            vec![
                ("hub.mode", "subscribe"),
                ("hub.topic", &feed),
                ("hub.callback", &callback),
                ("hub.secret", &long_secret),
            ],
            "hub.secret",
        ),
        (vec![("hub.mode", "publish")], "hub.url"),
        (
            vec![
                ("hub.mode", "publish"),
                ("hub.url", "https://elsewhere.example/feed"),
            ],
            "hub.url",
        ),
    ];
    for (pairs, parameter) in &table {
        let (status, body) = server.hub_request(pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pairs:?}: {body}");
        assert!(
            body.starts_with(&format!("{parameter}:")),
            "{pairs:?}: {body}"
        );
    }

    let (status, _) = server
        .hub_request(&[("hub.mode", "publish"), ("hub.url", &feed)])
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a ping about our own feed is fine"
    );
    let client = reqwest::Client::new();
    let url = format!("http://{}/websub", server.http_addr);
    let json = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status().as_u16(), 415);
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(subscriber.all_hits(), 0);
    assert_eq!(
        server.hub.verifications_ok() + server.hub.verifications_failed(),
        0
    );
}

/// Addresses of this machine that are not public: a loopback alias, IPv6 loopback, and the
/// non-loopback interface addresses (e.g. a private fd00::/8 one), each proven local by
/// binding a listener on it, so a callback that slipped through could only reach this
/// machine. Each comes with its listener, which counts the connections it accepts.
async fn local_non_public_listeners() -> Vec<(std::net::IpAddr, u16, Arc<AtomicUsize>)> {
    use std::net::{IpAddr, UdpSocket};
    let mut candidates: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()];
    // IPv6 interface addresses (link-local ones need a scope, which URLs cannot carry).
    if let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") {
        for hex in table.lines().filter_map(|l| l.split_whitespace().next()) {
            if let Ok(bits) = u128::from_str_radix(hex, 16) {
                let ip = std::net::Ipv6Addr::from(bits);
                if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    candidates.push(IpAddr::V6(ip));
                }
            }
        }
    }
    // The IPv4 address of the default route: connecting a UDP socket sends nothing.
    if let Some(ip) = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and(s.local_addr()))
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    {
        candidates.push(ip);
    }
    let policy = feedpub::websub::AddressPolicy::default();
    let mut listeners = Vec::new();
    for ip in candidates {
        if policy.permits(ip) {
            continue;
        }
        let Ok(listener) = tokio::net::TcpListener::bind((ip, 0)).await else {
            continue;
        };
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        listeners.push((ip, port, accepted));
    }
    listeners
}

/// Lines added to `/etc/hosts` for the life of the value, and removed after.
struct HostsEntries {
    lines: Vec<String>,
}

impl HostsEntries {
    const FILE: &str = "/etc/hosts";

    fn add(lines: Vec<String>) -> std::io::Result<Self> {
        let mut hosts = std::fs::OpenOptions::new().append(true).open(Self::FILE)?;
        std::io::Write::write_all(&mut hosts, format!("\n{}\n", lines.join("\n")).as_bytes())?;
        Ok(Self { lines })
    }
}

impl Drop for HostsEntries {
    /// Writes the other lines over the file's start and cuts off the rest: in place (it may
    /// be a mount) and never emptied, since the other tests of this binary resolve
    /// `localhost` meanwhile and an empty file would send that name to DNS. With our lines
    /// last, the write leaves the bytes before them as they were.
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(Self::FILE) else {
            return;
        };
        let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(Self::FILE) else {
            return;
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !self.lines.iter().any(|ours| ours == l))
            .collect();
        let kept = format!("{}\n", kept.join("\n").trim_end());
        if std::io::Write::write_all(&mut file, kept.as_bytes()).is_ok() {
            let _ = file.set_len(kept.len() as u64);
        }
    }
}

#[tokio::test]
async fn callback_names_resolving_to_loopback_or_private_addresses_of_this_machine_are_never_called()
 {
    let listeners = local_non_public_listeners().await;
    assert!(
        listeners.len() >= 2,
        "at least the loopback alias and ::1: {listeners:?}"
    );
    // One name per address, unique to this run.
    let names: Vec<String> = (0..listeners.len())
        .map(|n| format!("feedpub-callback-{}-{n}.test", std::process::id()))
        .collect();
    let lines = listeners
        .iter()
        .zip(&names)
        .map(|((ip, _, _), name)| format!("{ip} {name}"))
        .collect();
    let entries = match HostsEntries::add(lines) {
        Ok(entries) => Some(entries),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must be able to add names to /etc/hosts: {e}"
            );
            eprintln!("only `localhost` is tried: /etc/hosts is not writable ({e})");
            None
        }
    };
    let mut callbacks: Vec<(String, &Arc<AtomicUsize>)> = Vec::new();
    for ((ip, port, accepted), name) in listeners.iter().zip(&names) {
        if entries.is_some() {
            let resolved: Vec<_> = tokio::net::lookup_host((name.as_str(), *port))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .unwrap_or_default();
            assert_eq!(
                resolved,
                [*ip],
                "{name} resolves to {ip} through /etc/hosts"
            );
            callbacks.push((format!("http://{name}:{port}/cb"), accepted));
        }
        if ip.is_loopback() {
            callbacks.push((format!("http://localhost:{port}/cb"), accepted));
        }
    }

    let server = Server::start(Options {
        allow_loopback: false,
        ..Options::default()
    })
    .await;
    let client = CallbackClient::new(Vec::new()).unwrap();
    for (n, (callback, _)) in callbacks.iter().enumerate() {
        let error = client
            .get(&Url::parse(callback).unwrap())
            .await
            .unwrap_err();
        assert!(error.is_refused(), "{callback}: {error}");
        server.subscribe("politics/atom.xml", callback, &[]).await;
        server
            .wait_until("the verification refused", |hub| {
                hub.verifications_failed() == n as u64 + 1
            })
            .await;
    }
    assert_eq!(server.hub.verifications_ok(), 0);
    for (callback, accepted) in &callbacks {
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "{callback} was connected to"
        );
    }
    println!(
        "websub: {} callbacks by name refused: {:?}",
        callbacks.len(),
        callbacks.iter().map(|(c, _)| c).collect::<Vec<_>>()
    );
    drop(entries);
}

/// On replicas, a document waiting to be tried again (its subscriber answered 500) is not
/// sent once the feed has moved on, though another replica delivered the newer document:
/// the subscriber's last copy is the current one.
#[tokio::test]
async fn on_replicas_a_retry_never_sends_an_older_document_after_a_newer_one() {
    let Some(database) = common::postgres::fresh_database().await else {
        return;
    };
    let subscriber = Subscriber::start().await;
    let a = Server::start(Options {
        database_url: Some(database.url.clone()),
        retry_base_ms: 2_000,
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    a.subscribed("politics/atom.xml", &subscriber.url("/order"))
        .await;
    for n in 0..4 {
        // Each replica in turn stores the older document: whichever delivers the newer
        // one, the other may hold the older's retry.
        let (older, newer) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let before = subscriber.hits(Method::POST, "/order").len();
        subscriber.set(
            "/order",
            Behaviour {
                first: std::collections::VecDeque::from([500]),
                ..Behaviour::default()
            },
        );
        older.publish(&format!("older-{n}"), "politics").await;
        subscriber
            .wait_for(Method::POST, "/order", before + 1)
            .await;
        newer.publish(&format!("newer-{n}"), "politics").await;
        subscriber
            .wait_for(Method::POST, "/order", before + 2)
            .await;
        // The older document's retry, due a second after its failure, has ended.
        a.wait_idle().await;
        b.wait_idle().await;
        let posts = subscriber.hits(Method::POST, "/order");
        let last = &posts.last().unwrap().body;
        let current = a.feed_bytes("politics/atom.xml").await;
        assert!(
            *last == current,
            "round {n}: the last copy sent is not the current one"
        );
    }
    drop((a, b));
    database.remove().await;
}

#[tokio::test]
async fn replicas_on_one_database_deliver_each_change_once() {
    let Some(database) = common::postgres::fresh_database().await else {
        return;
    };
    let subscriber = Subscriber::start().await;
    let a = Server::start(Options {
        database_url: Some(database.url.clone()),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    a.subscribe("politics/atom.xml", &subscriber.url("/both"), &[])
        .await;
    a.wait_until("verified", |hub| hub.verifications_ok() == 1)
        .await;
    // Publishes through either replica; each time, both serve the same new document.
    for n in 0..6 {
        let id = format!("replicated-{n}");
        let server = if n % 2 == 0 { &a } else { &b };
        server.publish(&id, "politics").await;
        let start = Instant::now();
        loop {
            let (on_a, on_b) = (
                a.feed_bytes("politics/atom.xml").await,
                b.feed_bytes("politics/atom.xml").await,
            );
            let shown = String::from_utf8_lossy(&on_a).contains(&format!("快讯 {id}"));
            if shown && on_a == on_b {
                break;
            }
            assert!(
                start.elapsed() < websub_support::DEADLINE,
                "{id} never on both"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        subscriber.wait_for(Method::POST, "/both", n + 1).await;
    }
    a.wait_idle().await;
    b.wait_idle().await;
    let deliveries = subscriber.hits(Method::POST, "/both");
    let mut bodies: Vec<&[u8]> = deliveries.iter().map(|hit| &hit.body[..]).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        deliveries.len(),
        "a document was delivered twice"
    );
    assert_eq!(deliveries.len(), 6);
    assert_eq!(
        a.hub.deliveries_ok() + b.hub.deliveries_ok(),
        6,
        "each change delivered by one replica"
    );
    assert_eq!(
        deliveries.last().unwrap().body,
        a.feed_bytes("politics/atom.xml").await
    );
    drop((a, b));
    database.remove().await;
}

/// A delivery that failed and waits to retry is superseded by a newer document for the
/// same subscriber, even when the newer one was acknowledged before the wait ended: the
/// subscriber's last copy is the current one.
#[tokio::test]
async fn an_older_document_waiting_to_retry_is_not_sent_after_a_newer_one() {
    let subscriber = Subscriber::start().await;
    subscriber.set(
        "/recovering",
        Behaviour {
            first: VecDeque::from([500]),
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options {
        retry_base_ms: 1_500,
        ..Options::default()
    })
    .await;
    server
        .subscribed("rural/feed.json", &subscriber.url("/recovering"))
        .await;

    server.publish("websub-older", "rural").await;
    subscriber.wait_for(Method::POST, "/recovering", 1).await;
    server.publish("websub-newer", "rural").await;
    server
        .wait_until("the newer document acknowledged", |hub| {
            hub.deliveries_ok() == 1
        })
        .await;
    // The older delivery's retry comes due 1.5 s after its failure, and must stop there.
    server.wait_idle().await;
    let posts = subscriber.hits(Method::POST, "/recovering");
    assert_eq!(posts.len(), 2, "the older document was sent again");
    assert!(String::from_utf8_lossy(&posts[1].body).contains("websub-newer"));
    assert_eq!(
        posts[1].body,
        server.feed_bytes("rural/feed.json").await,
        "the subscriber's last copy is the current one"
    );
}

/// Deliveries to subscribers behind a host that hangs take at most a few of the shared
/// slots: another host's subscriber gets its change while they all still wait.
#[tokio::test]
async fn subscribers_behind_a_hanging_host_hold_up_no_other_host() {
    let hanging = Subscriber::start().await;
    // Another host: on the same address, another port would share the hanging one's slots.
    let quick = Subscriber::start_on("127.0.0.2").await;
    let server = Server::start(Options::default()).await;
    // More than the hub's 64 shared slots, each answering after 9 s (its timeout is 10 s).
    let paths: Vec<String> = (0..70).map(|n| format!("/hang/{n}")).collect();
    for path in &paths {
        hanging.set(
            path,
            Behaviour {
                stall: Duration::from_secs(9),
                ..Behaviour::default()
            },
        );
        server
            .subscribe("politics/feed.json", &hanging.url(path), &[])
            .await;
    }
    subscribe_the_quick_host(&server, &quick, 71).await;

    server.publish("websub-hanging", "politics").await;
    // Some of the hanging host's deliveries are in flight before the other change is made.
    let deadline = Instant::now() + websub_support::DEADLINE;
    while paths
        .iter()
        .map(|path| hanging.hits(Method::POST, path).len())
        .sum::<usize>()
        == 0
    {
        assert!(Instant::now() < deadline, "no delivery to the hanging host");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publish_to_the_quick_host(&server, &quick).await;
    // Its delivery ends once the database has forgotten it; the hanging host's still wait.
    server
        .wait_until("the quick delivery ended", |hub| {
            hub.deliveries_in_flight() <= 70
        })
        .await;
    assert_eq!(server.hub.deliveries_ok(), 1);
    assert_eq!(
        server.hub.deliveries_in_flight(),
        70,
        "every delivery to the hanging host still waits"
    );
}

/// Subscribes `quick` to the rural feed, and waits until `verified` subscriptions are.
async fn subscribe_the_quick_host(server: &Server, quick: &Subscriber, verified: u64) {
    server
        .subscribe("rural/feed.json", &quick.url("/quick"), &[])
        .await;
    server
        .wait_until("all verified", |hub| hub.verifications_ok() == verified)
        .await;
}

/// Changes the rural feed, and checks that the first delivery acknowledged is `quick`'s.
async fn publish_to_the_quick_host(server: &Server, quick: &Subscriber) {
    server.publish("websub-quick", "rural").await;
    server
        .wait_until("a delivery acknowledged", |hub| hub.deliveries_ok() >= 1)
        .await;
    assert_eq!(
        quick.hits(Method::POST, "/quick").len(),
        1,
        "the first acknowledged delivery is the quick host's"
    );
}

/// Hosts whose last delivery failed share 16 slots of their own: seventeen hosts (more
/// than the 64 shared slots hold at 4 each) that failed and then hang at every retry hold
/// up no other host's delivery.
#[tokio::test]
async fn hosts_that_failed_and_hang_at_every_retry_hold_up_no_other_host() {
    let mut hanging = Vec::new();
    for n in 10..27 {
        hanging.push(Subscriber::start_on(&format!("127.0.0.{n}")).await);
    }
    let quick = Subscriber::start_on("127.0.0.2").await;
    // A second attempt two seconds after the first.
    let server = Server::start(Options {
        retry_base_ms: 2_000,
        ..Options::default()
    })
    .await;
    let paths: Vec<String> = (0..4).map(|n| format!("/hang/{n}")).collect();
    for host in &hanging {
        for path in &paths {
            let failing = Behaviour {
                then: 500,
                ..Behaviour::default()
            };
            host.set(path, failing);
            server
                .subscribe("politics/feed.json", &host.url(path), &[])
                .await;
        }
    }
    subscribe_the_quick_host(&server, &quick, 69).await;

    server.publish("websub-failing", "politics").await;
    for host in &hanging {
        for path in &paths {
            assert_eq!(host.wait_answered(path, 1).await, [500]);
        }
    }
    server
        .wait_until("every hanging host failed", |hub| hub.failing_hosts() == 17)
        .await;
    // From now on they answer only after 9 s (the hub's timeout is 10 s).
    for host in &hanging {
        for path in &paths {
            let hanging = Behaviour {
                stall: Duration::from_secs(9),
                ..Behaviour::default()
            };
            host.set(path, hanging);
        }
    }
    // Their second attempts are under way, as many as their slots hold.
    let posts = || {
        hanging
            .iter()
            .flat_map(|host| paths.iter().map(|path| host.hits(Method::POST, path).len()))
            .sum::<usize>()
    };
    let deadline = Instant::now() + websub_support::DEADLINE;
    while posts() < 68 + 16 {
        assert!(Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publish_to_the_quick_host(&server, &quick).await;
    assert_eq!(
        posts(),
        68 + 16,
        "second attempts beyond the failing hosts' slots"
    );
    assert_eq!(server.hub.failing_hosts(), 17);
}

/// A subscribe whose verification is slow, then an unsubscribe answered at once: the
/// unsubscribe is the subscriber's last word, and no later change is delivered to it.
#[tokio::test]
async fn the_later_of_a_subscribe_and_an_unsubscribe_holds_whichever_is_verified_first() {
    let subscriber = Subscriber::start().await;
    subscriber.set(
        "/undecided",
        Behaviour {
            verify: Verify::SlowSubscribe(Duration::from_millis(800)),
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    server
        .subscribe("politics/atom.xml", &subscriber.url("/steady"), &[])
        .await;
    server
        .wait_until("the steady one verified", |hub| hub.verifications_ok() == 1)
        .await;
    let undecided = subscriber.url("/undecided");
    server.subscribe("politics/atom.xml", &undecided, &[]).await;
    subscriber.wait_for(Method::GET, "/undecided", 1).await;
    let (status, body) = server
        .hub_request(&[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", &topic("politics/atom.xml")),
            ("hub.callback", &undecided),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server
        .wait_until("both intents verified", |hub| hub.verifications_ok() == 3)
        .await;
    let asked = subscriber.hits(Method::GET, "/undecided");
    assert_eq!(asked[0].query["hub.mode"], "subscribe");
    assert_eq!(asked[1].query["hub.mode"], "unsubscribe");

    server.publish("websub-undecided", "politics").await;
    subscriber.wait_for(Method::POST, "/steady", 1).await;
    server.wait_idle().await;
    assert!(
        subscriber.hits(Method::POST, "/undecided").is_empty(),
        "delivered after the subscriber unsubscribed"
    );
}

/// A JSON Feed carries no date: after a retraction it can go back to the very bytes it
/// had before. That is a change all the same, and is delivered, on either database (on
/// PostgreSQL, replicas claim each delivery in the database).
#[tokio::test]
async fn a_feed_back_to_bytes_it_had_before_is_delivered_again() {
    let database = common::postgres::fresh_database().await;
    let mut databases = vec![None];
    databases.extend(database.as_ref().map(|d| Some(d.url.clone())));
    for database_url in databases {
        let on = if database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let subscriber = Subscriber::start().await;
        let server = Server::start(Options {
            database_url,
            ..Options::default()
        })
        .await;
        server
            .subscribed("features/feed.json", &subscriber.url("/back"))
            .await;
        server.publish("websub-stays", "features").await;
        subscriber.wait_for(Method::POST, "/back", 1).await;
        server.publish("websub-goes", "features").await;
        subscriber.wait_for(Method::POST, "/back", 2).await;
        server.retract("websub-goes").await;
        let posts = subscriber.wait_for(Method::POST, "/back", 3).await;
        assert_eq!(
            posts[2].body, posts[0].body,
            "{on}: the retraction brought back the first document's bytes"
        );
        assert_eq!(
            posts[2].body,
            server.feed_bytes("features/feed.json").await,
            "{on}"
        );
    }
    if let Some(database) = database {
        database.remove().await;
    }
}

/// A subscriber that got a document, then failed to take the next one, is sent the first
/// document's bytes again when the feed goes back to them: what it has is the newer one's
/// attempt, not known to be the first one's any more.
#[tokio::test]
async fn a_feed_back_to_bytes_a_subscriber_got_before_a_failed_delivery_is_sent_again() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options::default()).await;
    server
        .subscribed("features/feed.json", &subscriber.url("/back"))
        .await;
    server.publish("websub-stays", "features").await;
    let first = subscriber.wait_for(Method::POST, "/back", 1).await;
    // Its delivery ended before the next starts: the subscriber is known to have it.
    server
        .wait_until("delivered", |hub| hub.deliveries_ok() == 1)
        .await;
    subscriber.set(
        "/back",
        Behaviour {
            then: 503,
            ..Behaviour::default()
        },
    );
    server.publish("websub-goes", "features").await;
    server
        .wait_until("the newer document given up", |hub| {
            hub.deliveries_failed() == 1
        })
        .await;
    let tried = subscriber.hits(Method::POST, "/back").len();
    subscriber.set("/back", Behaviour::default());
    server.retract("websub-goes").await;
    let posts = subscriber.wait_for(Method::POST, "/back", tried + 1).await;
    assert_eq!(
        posts[tried].body, first[0].body,
        "the first document's bytes"
    );
    assert_eq!(
        posts[tried].body,
        server.feed_bytes("features/feed.json").await
    );
}

/// One request at a time to a subscriber: a newer document is sent once the older one's
/// request has ended, so it arrives (and is answered) last.
#[tokio::test]
async fn a_newer_document_is_sent_after_the_older_request_to_the_same_callback_ends() {
    let subscriber = Subscriber::start().await;
    let stall = Duration::from_millis(700);
    subscriber.set(
        "/unhurried",
        Behaviour {
            stall,
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    server
        .subscribed("politics/feed.json", &subscriber.url("/unhurried"))
        .await;

    server.publish("websub-first", "politics").await;
    subscriber.wait_for(Method::POST, "/unhurried", 1).await;
    server.publish("websub-second", "politics").await;
    let posts = subscriber.wait_for(Method::POST, "/unhurried", 2).await;
    // The first request was answered after its stall; the second came after that.
    assert!(
        posts[1].at.duration_since(posts[0].at) >= stall,
        "the newer document came while the older request was still open"
    );
    assert!(String::from_utf8_lossy(&posts[1].body).contains("websub-second"));
    server.wait_idle().await;
    assert_eq!(subscriber.hits(Method::POST, "/unhurried").len(), 2);
}

/// While a request to a subscriber hangs, the documents that come meanwhile do not pile up
/// behind it: each newer one ends the older one waiting at once (its bytes are let go), so
/// one waits at most, and the subscriber gets the first and the last.
#[tokio::test]
async fn behind_a_hanging_request_only_the_newest_document_waits() {
    let subscriber = Subscriber::start().await;
    let stall = Duration::from_secs(6);
    subscriber.set(
        "/hung",
        Behaviour {
            stall,
            ..Behaviour::default()
        },
    );
    let server = Server::start(Options::default()).await;
    server
        .subscribed("politics/feed.json", &subscriber.url("/hung"))
        .await;

    server.publish("websub-hung-0", "politics").await;
    let first = subscriber.wait_for(Method::POST, "/hung", 1).await[0].at;
    // Ten more documents, each handed to the subscription's delivery before the next is
    // published (so each is a change of its own); while the first request hangs, no more
    // than it and the newest stay in flight.
    let hub = &server.hub;
    let started = || {
        hub.deliveries_ok()
            + hub.deliveries_failed()
            + hub.deliveries_superseded()
            + hub.deliveries_in_flight()
    };
    let mut most = 0;
    let last = "websub-hung-10";
    for n in 1..=10 {
        server
            .publish(&format!("websub-hung-{n}"), "politics")
            .await;
        let deadline = Instant::now() + websub_support::DEADLINE;
        while started() < 1 + n {
            assert!(Instant::now() < deadline, "document {n} not handed over");
            most = most.max(hub.deliveries_in_flight());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    while Instant::now() < first + stall - Duration::from_secs(1) {
        most = most.max(hub.deliveries_in_flight());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // For a moment the one a newer document ends is still counted, never more.
    assert!(most <= 3, "{most} deliveries were in flight at once");
    assert_eq!(
        hub.deliveries_in_flight(),
        2,
        "the hanging one and the newest"
    );
    assert_eq!(
        subscriber.hits(Method::POST, "/hung").len(),
        1,
        "the first request still hangs"
    );
    // The documents in between were handed over and ended, not sent.
    let ended = hub.deliveries_superseded();
    assert!(
        ended >= 9,
        "only {ended} deliveries were ended by newer ones"
    );
    server.wait_idle().await;
    let posts = subscriber.hits(Method::POST, "/hung");
    assert_eq!(posts.len(), 2, "the first document and the last");
    assert!(String::from_utf8_lossy(&posts[1].body).contains(last));
}

/// A retry reads the subscription again: once unsubscribed, the subscriber gets no retry of
/// a document whose first attempt failed; renewed with another secret, the retry is signed
/// with the new one.
#[tokio::test]
async fn a_retry_follows_the_subscription_as_it_is_now() {
    follows_the_subscription_as_it_is_now(Waits::ForRetry).await;
}

/// The same for a document that waited behind the subscriber's request for an earlier one.
#[tokio::test]
async fn a_document_waiting_behind_a_request_follows_the_subscription_as_it_is_now() {
    follows_the_subscription_as_it_is_now(Waits::BehindRequest).await;
}

/// Why a delivery waits while its subscription changes.
#[derive(PartialEq)]
enum Waits {
    /// Its first attempt failed; the retry comes 1.5 s later.
    ForRetry,
    /// The request for an earlier document takes 2 s to be answered.
    BehindRequest,
}

/// Two subscribers of politics/atom.xml: one unsubscribes and the other is renewed with a
/// new secret while a document waits for them as `waits` says. The first gets nothing more,
/// the second gets the document signed with its new secret.
async fn follows_the_subscription_as_it_is_now(waits: Waits) {
    let subscriber = Subscriber::start().await;
    let behaviour = match waits {
        Waits::ForRetry => Behaviour {
            first: VecDeque::from([500]),
            ..Behaviour::default()
        },
        Waits::BehindRequest => Behaviour {
            stall: Duration::from_secs(2),
            ..Behaviour::default()
        },
    };
    for path in ["/leaving", "/rekeyed"] {
        subscriber.set(path, behaviour.clone());
    }
    // Long enough to change the subscriptions between the first attempt and the retry.
    let server = Server::start(Options {
        retry_base_ms: 1500,
        ..Options::default()
    })
    .await;
    let (leaving, rekeyed) = (subscriber.url("/leaving"), subscriber.url("/rekeyed"));
    server.subscribe("politics/atom.xml", &leaving, &[]).await;
    server
        .subscribe(
            "politics/atom.xml",
            &rekeyed,
            &[("hub.secret", "old-secret")],
        )
        .await;
    server
        .wait_until("both verified", |hub| hub.verifications_ok() == 2)
        .await;

    server.publish("websub-followed", "politics").await;
    subscriber.wait_for(Method::POST, "/leaving", 1).await;
    let first = subscriber.wait_for(Method::POST, "/rekeyed", 1).await[0].clone();
    assert_eq!(
        header(&first, "x-hub-signature"),
        hmac_sha256_hex(b"old-secret", &first.body)
    );
    if waits == Waits::BehindRequest {
        // A second document, behind the requests for the first, which still hang.
        server.publish("websub-followed-2", "politics").await;
        server
            .wait_until("the second document handed over", |hub| {
                hub.deliveries_in_flight() == 4
            })
            .await;
    }
    let (status, body) = server
        .hub_request(&[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", &topic("politics/atom.xml")),
            ("hub.callback", &leaving),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server
        .subscribe(
            "politics/atom.xml",
            &rekeyed,
            &[("hub.secret", "new-secret")],
        )
        .await;
    server
        .wait_until("both changes verified", |hub| hub.verifications_ok() == 4)
        .await;
    assert_eq!(
        subscriber.hits(Method::POST, "/rekeyed").len(),
        1,
        "the document waiting was sent before the changes were verified"
    );

    server.wait_idle().await;
    let sent = subscriber.hits(Method::POST, "/rekeyed");
    assert_eq!(sent.len(), 2);
    match waits {
        Waits::ForRetry => assert_eq!(sent[1].body, first.body),
        Waits::BehindRequest => {
            assert!(String::from_utf8_lossy(&sent[1].body).contains("websub-followed-2"));
        }
    }
    assert_eq!(
        header(&sent[1], "x-hub-signature"),
        hmac_sha256_hex(b"new-secret", &sent[1].body)
    );
    assert_eq!(
        subscriber.hits(Method::POST, "/leaving").len(),
        1,
        "nothing more once unsubscribed"
    );
    assert_eq!(server.hub.deliveries_unsubscribed(), 1);
    let delivered = match waits {
        Waits::ForRetry => 1,
        Waits::BehindRequest => 3,
    };
    assert_eq!(server.hub.deliveries_ok(), delivered);
}

/// The hub holds at most so many subscriptions in all, and so many of callbacks reached at
/// one address: past the first, a new subscription is refused at once (503); past the
/// second, it is denied once verified (the callback is told, WebSub §5.2), and gets
/// nothing. Renewals always pass, and another address still has its own room.
#[tokio::test]
async fn subscriptions_are_capped_per_callback_address_and_in_all() {
    let here = Subscriber::start().await;
    let there = Subscriber::start_on("127.0.0.2").await;
    let server = Server::start(Options {
        max_subscriptions: (4, 2),
        ..Options::default()
    })
    .await;
    let politics = "politics/atom.xml";
    server.subscribed(politics, &here.url("/a")).await;
    server.subscribed("rural/atom.xml", &here.url("/b")).await;

    // A third at 127.0.0.1: verified, then denied.
    server.subscribe(politics, &here.url("/c"), &[]).await;
    let asked = here.wait_for(Method::GET, "/c", 2).await;
    assert_eq!(asked[0].query["hub.mode"], "subscribe");
    assert_eq!(asked[1].query["hub.mode"], "denied");
    assert_eq!(asked[1].query["hub.topic"], topic(politics));
    assert!(
        asked[1].query["hub.reason"].contains("127.0.0.1"),
        "{}",
        asked[1].query["hub.reason"]
    );
    assert_eq!(server.hub.verifications_failed(), 1);
    // A renewal at a full address passes.
    server.subscribed(politics, &here.url("/a")).await;

    // Another address has room of its own, up to the hub's four in all.
    server.subscribed(politics, &there.url("/d")).await;
    server.subscribed(politics, &there.url("/e")).await;
    let (status, body) = server
        .hub_request(&[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic(politics)),
            ("hub.callback", &there.url("/f")),
        ])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("most subscriptions"), "{body}");
    assert!(
        there.hits(Method::GET, "/f").is_empty(),
        "not even verified"
    );
    server.subscribed(politics, &there.url("/d")).await;
    assert_eq!(server.hub.verifications_failed(), 1);

    server.publish("websub-capped", "politics").await;
    for (subscriber, path) in [(&here, "/a"), (&there, "/d"), (&there, "/e")] {
        subscriber.wait_for(Method::POST, path, 1).await;
    }
    server.wait_idle().await;
    assert!(here.hits(Method::POST, "/c").is_empty(), "denied, not held");
}

/// A server killed after writing a feed's new files and before claiming their delivery
/// (here the database is locked by another connection, so the claim waits for it): the
/// next start builds the very files it finds, hears no change, and still sends the
/// document to the subscribers, as it differs from the last one whose delivery was claimed.
#[tokio::test]
async fn a_change_whose_files_were_written_before_the_server_was_killed_is_delivered_after() {
    use common::binary::{ServeOptions, ServeProcess};
    use sqlx::Connection;
    let subscriber = Subscriber::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, feeds_dir) = (dir.path().join("data"), dir.path().join("feeds"));
    let tokens = common::add_partners(&data_dir).await;
    let config = dir.path().join("feedpub.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[websub]\nallowed_callback_networks = [\"127.0.0.0/8\"]\nretry_base_ms = 20\n",
            feedpub::config::EMBEDDED_CONFIG
        ),
    )
    .unwrap();
    let start = || {
        let mut options = ServeOptions::new(&data_dir, &feeds_dir);
        options.config = Some(&config);
        let mut server = ServeProcess::start(options);
        let running = server.wait_ready();
        (server, running)
    };
    let publish = async |running: &common::binary::Running, id: &str| {
        let request = feedpub::grpc::proto::PublishArticleRequest {
            article: Some(brief(id, "politics")),
            ..Default::default()
        };
        let mut client = running.client().await;
        client
            .publish_article(common::authed(&tokens.newsroom, request))
            .await
            .unwrap();
    };
    let (mut server, mut running) = start();
    let (status, body) = websub_support::hub_request(
        running.http,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic("politics/feed.json")),
            ("hub.callback", &subscriber.url("/cb")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    subscriber.wait_for(Method::GET, "/cb", 1).await;
    // Its delivery claimed and made: the subscriber has the first document.
    publish(&running, "websub-killed-0").await;
    subscriber.wait_for(Method::POST, "/cb", 1).await;

    let database = data_dir.join("feedpub.sqlite3");
    let feed = feeds_dir.join("politics/feed.json");
    let mut killed_with = None;
    // The lock is taken just after the publish is answered; in the rare run where the
    // claim came first, the document is delivered before the kill, and the next is tried.
    for n in 1..=5 {
        let id = format!("websub-killed-{n}");
        publish(&running, &id).await;
        let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite:{}", database.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut lock)
            .await
            .unwrap();
        let deadline = Instant::now() + websub_support::DEADLINE;
        while !std::fs::read_to_string(&feed).is_ok_and(|text| text.contains(&id)) {
            assert!(Instant::now() < deadline, "{id} never written");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Files written, the claim waiting for the database: killed.
        server.kill();
        drop(lock);
        let sent = subscriber.hits(Method::POST, "/cb");
        if sent
            .iter()
            .any(|hit| String::from_utf8_lossy(&hit.body).contains(&id))
        {
            let restarted = start();
            (server, running) = restarted;
            continue;
        }
        killed_with = Some(id);
        break;
    }
    let id = killed_with.expect("the claim always came before the lock");
    let (mut server, running) = start();
    running.settle().await;
    assert!(
        std::fs::read_to_string(&feed).unwrap().contains(&id),
        "the files the killed server wrote are what the next one builds"
    );
    let deadline = Instant::now() + websub_support::DEADLINE;
    while !subscriber
        .hits(Method::POST, "/cb")
        .iter()
        .any(|hit| String::from_utf8_lossy(&hit.body).contains(&id))
    {
        assert!(Instant::now() < deadline, "{id} never delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop();
}

/// A subscribe that a later unsubscribe withdrew, verified last at a full address, is
/// neither recorded nor denied: the callback's last word holds.
#[tokio::test]
async fn a_withdrawn_subscribe_at_a_full_address_is_not_denied() {
    let subscriber = Subscriber::start().await;
    let server = Server::start(Options {
        max_subscriptions: (100, 1),
        ..Options::default()
    })
    .await;
    server
        .subscribed("politics/atom.xml", &subscriber.url("/held"))
        .await;
    subscriber.set(
        "/withdrawn",
        Behaviour {
            verify: Verify::SlowSubscribe(Duration::from_millis(500)),
            ..Behaviour::default()
        },
    );
    let withdrawn = subscriber.url("/withdrawn");
    server.subscribe("politics/atom.xml", &withdrawn, &[]).await;
    let (status, body) = server
        .hub_request(&[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", &topic("politics/atom.xml")),
            ("hub.callback", &withdrawn),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server
        .wait_until("both verified", |hub| hub.verifications_ok() == 3)
        .await;
    let asked: Vec<String> = subscriber
        .hits(Method::GET, "/withdrawn")
        .iter()
        .map(|hit| hit.query["hub.mode"].clone())
        .collect();
    assert_eq!(asked, ["subscribe", "unsubscribe"], "no denial");
    assert_eq!(server.hub.verifications_failed(), 0);
}

/// Verifications pending for callbacks of one host are capped (16 of the hub's 256): a host
/// that answers them slowly gets 503 past its share, and another host's subscriber is
/// verified meanwhile; once answered, its host has room again.
#[tokio::test]
async fn a_host_answering_verifications_slowly_holds_only_its_share() {
    let slow = Subscriber::start().await;
    let quick = Subscriber::start_on("127.0.0.2").await;
    let server = Server::start(Options::default()).await;
    let callbacks: Vec<String> = (0..=16).map(|n| slow.url(&format!("/slow/{n}"))).collect();
    for n in 0..=16 {
        slow.set(
            &format!("/slow/{n}"),
            Behaviour {
                verify: Verify::SlowSubscribe(Duration::from_secs(3)),
                ..Behaviour::default()
            },
        );
    }
    for callback in &callbacks[..16] {
        server.subscribe("politics/atom.xml", callback, &[]).await;
    }
    let past_share = [
        ("hub.mode", "subscribe"),
        ("hub.topic", &topic("politics/atom.xml")),
        ("hub.callback", &callbacks[16]),
    ];
    let (status, body) = server.hub_request(&past_share).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("callback's host"), "{body}");

    server
        .subscribed("politics/atom.xml", &quick.url("/quick"))
        .await;
    assert_eq!(
        server.hub.verifications_ok(),
        1,
        "the other host's, before any of the slow host's"
    );
    server
        .wait_until("the slow host's verified", |hub| {
            hub.verifications_ok() == 17
        })
        .await;
    let (status, body) = server.hub_request(&past_share).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
