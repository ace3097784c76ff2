//! State replicas on one PostgreSQL database share, checked on real `feedpub serve`
//! processes: a partner's call rate and its allowance of new names hold across replicas,
//! and a replica does not rebuild
//! the feeds of its own writes a second time when it follows the event log, and a WebSub
//! delivery left unfinished by a killed replica is delivered by another, or, left unclaimed
//! by a lone one, once it starts again.

mod common;
#[allow(dead_code)]
mod websub_support;

use axum::http::Method;
use common::binary::Running;
use common::postgres::fresh_database;
use common::{authed, brief, ts};
use feedpub::grpc::proto::{ListSectionsRequest, PublishArticleRequest, PublishArticlesRequest};
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;
use websub_support::{Behaviour, Subscriber};

/// A fresh database with the newsroom partner, a folder, the newsroom's token and a
/// configuration file there: the sample's with `extra` (TOML tables) after it. `None`
/// without a PostgreSQL server to test on.
async fn configured(
    extra: &str,
) -> Option<(
    common::postgres::TestDatabase,
    tempfile::TempDir,
    String,
    std::path::PathBuf,
)> {
    let database = fresh_database().await?;
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let config = dir.path().join("replicas.toml");
    std::fs::write(
        &config,
        format!("{}\n{extra}", feedpub::config::EMBEDDED_CONFIG),
    )
    .unwrap();
    Some((database, dir, token, config))
}

#[tokio::test]
async fn a_partner_flooding_two_replicas_gets_its_rate_once_not_once_per_replica() {
    const RATE: u32 = 5;
    const BURST: u32 = 5;
    const CALLS_PER_REPLICA: usize = 20;
    let Some((database, dir, token, config)) = configured(&format!(
        "[limits]\nrequests_per_second = {RATE}\nburst = {BURST}\n"
    ))
    .await
    else {
        return;
    };
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), Some(&config));
    let (client_a, client_b) = (on_a.client().await, on_b.client().await);
    let flood =
        |mut client: feedpub::grpc::proto::publisher_service_client::PublisherServiceClient<
            tonic::transport::Channel,
        >,
         token: String| async move {
            let mut outcomes = Vec::new();
            for _ in 0..CALLS_PER_REPLICA {
                let call = client
                    .list_sections(authed(&token, ListSectionsRequest {}))
                    .await;
                outcomes.push(call.map(drop));
            }
            outcomes
        };
    let started = std::time::Instant::now();
    let (on_a_outcomes, on_b_outcomes) = tokio::join!(
        flood(client_a.clone(), token.clone()),
        flood(client_b.clone(), token.clone())
    );
    let elapsed = started.elapsed();

    let mut admitted = 0;
    for (replica, outcomes) in [("a", &on_a_outcomes), ("b", &on_b_outcomes)] {
        let mut refused = 0;
        for outcome in outcomes {
            match outcome {
                Ok(()) => admitted += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    let retry = status
                        .get_details_retry_info()
                        .and_then(|info| info.retry_delay)
                        .expect("a RetryInfo with a delay");
                    assert!(retry <= std::time::Duration::from_secs(1), "{retry:?}");
                    refused += 1;
                }
            }
        }
        assert!(
            refused > 0,
            "replica {replica} refused nothing of the flood"
        );
    }
    // One allowance for both: the burst, then RATE a second for as long as the flood ran
    // (one more for a call at the edge). Per replica, it would be at least twice the burst.
    let allowance = BURST as usize + (elapsed.as_secs_f64() * f64::from(RATE)).ceil() as usize + 1;
    assert!(
        admitted >= BURST as usize,
        "the burst goes through: {admitted} admitted"
    );
    assert!(
        admitted <= allowance,
        "{admitted} calls admitted in {elapsed:?}; the shared limit allows {allowance}"
    );
    a.kill();
    b.kill();
    database.remove().await;
}

/// Many batch streams at once, on two replicas, each article with a request id: every
/// article is stored. A chunk's transaction holds a lock per article and per request id
/// to its commit, and PostgreSQL keeps every connection's locks in one table (6,400 at its
/// defaults): chunks of 1,000 articles, twelve at once, found it full.
#[tokio::test]
async fn many_batch_streams_at_once_on_two_replicas_store_every_article() {
    const STREAMS_PER_REPLICA: usize = 6;
    const MESSAGES: usize = 10;
    const PER_MESSAGE: usize = 100;
    let Some((database, dir, token, config)) = configured("").await else {
        return;
    };
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), Some(&config));
    let mut calls = Vec::new();
    for (replica, running) in [("a", &on_a), ("b", &on_b)] {
        for stream in 0..STREAMS_PER_REPLICA {
            let mut client = running.client().await;
            let token = token.clone();
            let messages: Vec<PublishArticlesRequest> = (0..MESSAGES)
                .map(|m| PublishArticlesRequest {
                    requests: (0..PER_MESSAGE)
                        .map(|n| {
                            let id = format!("{replica}{stream}-{m}-{n}");
                            PublishArticleRequest {
                                request_id: format!("req-{id}"),
                                article: Some(brief(&id, "批量稿件")),
                            }
                        })
                        .collect(),
                })
                .collect();
            calls.push(tokio::spawn(async move {
                client
                    .publish_articles(authed(&token, tokio_stream::iter(messages)))
                    .await
                    .map(|answer| answer.into_inner().results)
            }));
        }
    }
    for call in calls {
        let results = call.await.unwrap().expect("the batch is answered");
        assert_eq!(results.len(), MESSAGES * PER_MESSAGE);
        for result in &results {
            let status = result.status.clone().unwrap_or_default();
            assert_eq!(status.code, Code::Ok as i32, "{}", status.message);
        }
    }
    a.kill();
    b.kill();
    database.remove().await;
}

/// A partner's allowance of new author and tag feeds holds across replicas: the names it
/// starts on one count on the other, as its call rate does.
#[tokio::test]
async fn a_partners_allowance_of_new_names_is_one_for_every_replica() {
    let Some((database, dir, token, config)) =
        configured("[limits]\nnew_names_per_hour = 3\n").await
    else {
        return;
    };
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), Some(&config));
    let (mut client_a, mut client_b) = (on_a.client().await, on_b.client().await);
    let tagged = |id: &str, tags: &[&str]| {
        authed(
            &token,
            PublishArticleRequest {
                article: Some(feedpub::grpc::proto::Article {
                    authors: Vec::new(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    ..brief(id, id)
                }),
                ..Default::default()
            },
        )
    };
    client_a
        .publish_article(tagged("names-a", &["甲", "乙"]))
        .await
        .expect("two new names of three, on one replica");
    let refused = client_b
        .publish_article(tagged("names-b", &["丙", "丁"]))
        .await
        .expect_err("two more on the other, with one left");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("article.tags: 2 names with no feed yet"),
        "{refused:?}"
    );
    let retry = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay");
    assert!(retry > Duration::from_secs(600), "{retry:?}");
    let never = client_b
        .publish_article(tagged("names-d", &["戊", "己", "庚", "辛"]))
        .await
        .expect_err("more than the whole allowance");
    assert!(never.message().ends_with("send fewer names"), "{never:?}");
    client_b
        .publish_article(tagged("names-c", &["丙"]))
        .await
        .expect("the last one");
    a.kill();
    b.kill();
    database.remove().await;
}

/// The value of the counter `name` on a running server's `/metrics`.
async fn counter(running: &Running, name: &str) -> u64 {
    let text = reqwest::get(running.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no counter {name} in\n{text}"))
}

/// Waits until the politics Atom feed of `running` carries `title`.
async fn wait_for_title(running: &Running, title: &str) {
    wait_for_politics(running, title, |body| body.contains(title)).await;
}

/// Waits until `done` holds of the politics Atom feed of `running`; returns its ETag and
/// bytes.
async fn wait_for_politics(
    running: &Running,
    title: &str,
    done: impl Fn(&str) -> bool,
) -> (String, String) {
    let start = std::time::Instant::now();
    loop {
        let response = reqwest::get(running.url("/feeds/politics/atom.xml"))
            .await
            .unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body = response.text().await.unwrap();
        if done(&body) {
            return (etag, body);
        }
        assert!(
            start.elapsed() < common::binary::DEADLINE,
            "{title} never reached {}:\n{body}",
            running.http
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replica_follows_only_the_other_replicas_events_not_its_own() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), None);
    let publish = |id: &str, title: &str| PublishArticleRequest {
        article: Some(brief(id, title)),
        ..Default::default()
    };
    on_a.client()
        .await
        .publish_article(authed(&token, publish("on-a", "甲副本发布")))
        .await
        .unwrap();
    wait_for_title(&on_b, "甲副本发布").await;
    on_b.client()
        .await
        .publish_article(authed(&token, publish("on-b", "乙副本发布")))
        .await
        .unwrap();
    // A follows the log in order: once it shows B's write it has read past its own.
    wait_for_title(&on_a, "乙副本发布").await;

    let followed = "feedpub_replica_events_followed_total";
    assert_eq!(
        (
            counter(&on_a, followed).await,
            counter(&on_b, followed).await
        ),
        (1, 1),
        "each replica follows the other's one event, not its own\n{}\n{}",
        a.log(),
        b.log()
    );
    a.kill();
    b.kill();
    database.remove().await;
}

#[tokio::test]
async fn a_delivery_left_unfinished_by_a_killed_replica_is_made_by_another() {
    let Some((database, dir, token, config)) = configured(
        "[websub]\nallowed_callback_networks = [\"127.0.0.0/8\"]\n\
             retry_base_ms = 20\ndelivery_lease_ms = 1000\n",
    )
    .await
    else {
        return;
    };
    let subscriber = Subscriber::start().await;
    // Deliveries are recorded on arrival and answered a minute later: in flight until then.
    subscriber.set(
        "/slow",
        Behaviour {
            stall: Duration::from_secs(60),
            ..Behaviour::default()
        },
    );
    let mut a = database.replica(dir.path(), "a", Some(&config));
    let on_a = a.wait_ready();
    let topic = websub_support::topic("politics/atom.xml");
    let callback = subscriber.url("/slow");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("hub.mode", "subscribe"),
            ("hub.topic", topic.as_str()),
            ("hub.callback", callback.as_str()),
        ])
        .finish();
    let asked = reqwest::Client::new()
        .post(on_a.url("/websub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    // Verified: the subscription is stored.
    let store = feedpub::storage::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    let politics = feedpub::websub::Topic::new("politics/atom.xml").unwrap();
    let start = std::time::Instant::now();
    while feedpub::storage::Store::active_subscriptions(&store, &politics, None, chrono::Utc::now())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(start.elapsed() < common::binary::DEADLINE, "{}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    on_a.client()
        .await
        .publish_article(authed(
            &token,
            PublishArticleRequest {
                article: Some(brief("lost-delivery", "投递中断")),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let first = subscriber.wait_for(Method::POST, "/slow", 1).await;
    assert!(String::from_utf8_lossy(&first[0].body).contains("投递中断"));
    // A dies mid-delivery: it never learns the answer, nor marks the delivery done.
    a.kill();

    let mut b = database.replica(dir.path(), "b", Some(&config));
    let on_b = b.wait_ready();
    let delivered = subscriber.wait_for(Method::POST, "/slow", 2).await;
    assert_eq!(delivered[1].body, first[0].body, "the same document again");
    let served = reqwest::get(on_b.url("/feeds/politics/atom.xml"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        delivered[1].body, served,
        "B delivers the document it serves"
    );
    feedpub::storage::Store::close(&store).await;
    b.kill();
    database.remove().await;
}

#[tokio::test]
async fn an_expiry_is_applied_by_every_replica_to_its_own_feeds_with_no_shared_write() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), None);
    // Expires seconds from now (enough for both to show it on a loaded machine): shown
    // first, then dropped by both replicas.
    let expires = chrono::Utc::now().timestamp() + 10;
    on_a.client()
        .await
        .publish_article(authed(
            &token,
            PublishArticleRequest {
                article: Some(feedpub::grpc::proto::Article {
                    expire_time: Some(ts(expires)),
                    ..brief("expiring", "限时公示")
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let title = "限时公示";
    // Both replicas show it first: a feed that never had it (the empty one of start-up)
    // would pass for one it has gone from.
    wait_for_title(&on_a, title).await;
    wait_for_title(&on_b, title).await;
    let gone_from_a = wait_for_politics(&on_a, title, |body| !body.contains(title)).await;
    let gone_from_b = wait_for_politics(&on_b, title, |body| !body.contains(title)).await;
    assert_eq!(gone_from_a, gone_from_b, "the same feed, bytes and ETag");

    // The expiry wrote nothing: the one event is the publish.
    let store = feedpub::storage::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    let head = *feedpub::storage::Store::event_head(&store).borrow();
    assert_eq!(head, 1, "no event logged for an expiry");
    feedpub::storage::Store::close(&store).await;
    a.kill();
    b.kill();
    database.remove().await;
}

/// A lone replica killed after writing a feed's new files and before claiming their
/// delivery: started again, it builds the same files, so hears no change, and still
/// delivers them, as the last claim of their topic is older.
#[tokio::test]
async fn a_change_a_lone_replica_wrote_but_never_claimed_is_delivered_once_it_restarts() {
    use sqlx::Connection;
    let Some((database, dir, token, config)) =
        configured("[websub]\nallowed_callback_networks = [\"127.0.0.0/8\"]\nretry_base_ms = 20\n")
            .await
    else {
        return;
    };
    let subscriber = Subscriber::start().await;
    let publish = async |running: &Running, id: &str| {
        running
            .client()
            .await
            .publish_article(authed(
                &token,
                PublishArticleRequest {
                    article: Some(brief(id, &format!("无人认领{id}"))),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    };
    let delivered = |id: &str| {
        subscriber
            .hits(Method::POST, "/cb")
            .iter()
            .any(|hit| String::from_utf8_lossy(&hit.body).contains(id))
    };
    let mut a = database.replica(dir.path(), "a", Some(&config));
    let mut on_a = a.wait_ready();
    let (status, body) = websub_support::hub_request(
        on_a.http,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &websub_support::topic("politics/feed.json")),
            ("hub.callback", &subscriber.url("/cb")),
        ],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    subscriber.wait_for(Method::GET, "/cb", 1).await;
    // Its delivery claimed and made: the topic has a last claim.
    publish(&on_a, "claimed-0").await;
    subscriber.wait_for(Method::POST, "/cb", 1).await;

    let feed = dir.path().join("a/feeds/politics/feed.json");
    let mut killed_with = None;
    // The lock is taken just after the publish is answered; in the rare run where the
    // claim came first, the document is delivered before the kill, and the next is tried.
    for n in 1..=5 {
        let id = format!("unclaimed-{n}");
        publish(&on_a, &id).await;
        let mut lock = sqlx::PgConnection::connect(&database.url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE websub_deliveries IN EXCLUSIVE MODE")
            .execute(&mut lock)
            .await
            .unwrap();
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(&feed).is_ok_and(|text| text.contains(&id)) {
            assert!(
                start.elapsed() < common::binary::DEADLINE,
                "{id} never written"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Files written, the claim waiting for the lock: killed, and its connections ended
        // before the lock goes, so that no claim it left waiting is made after it.
        a.kill();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND usename = current_user
                 AND pid <> pg_backend_pid()",
        )
        .execute(&mut lock)
        .await
        .unwrap();
        lock.close().await.unwrap();
        if delivered(&id) {
            a = database.replica(dir.path(), "a", Some(&config));
            on_a = a.wait_ready();
            continue;
        }
        killed_with = Some(id);
        break;
    }
    let id = killed_with.expect("the claim always came before the lock");
    // Started again on its folder: the files it finds are those it builds.
    let mut a = database.replica(dir.path(), "a", Some(&config));
    let on_a = a.wait_ready();
    on_a.settle().await;
    assert!(
        std::fs::read_to_string(&feed).unwrap().contains(&id),
        "the files the killed replica wrote are what it builds again"
    );
    let start = std::time::Instant::now();
    while !delivered(&id) {
        assert!(
            start.elapsed() < common::binary::DEADLINE,
            "{id} never delivered\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill();
    database.remove().await;
}
