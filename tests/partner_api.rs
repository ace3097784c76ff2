//! The partner API's safety and follow features end to end, with a real gRPC client and a
//! real SQLite file: idempotent retries, etag preconditions, batches, versions, and the
//! event stream across disconnects and restarts.

mod common;

use common::{
    DEADLINE, TestServer, assert_invalid, assert_invalid_fields, authed, brief, error_reason, ts,
};
use feedpub::domain::{FeedScope, SectionSlug};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{
    self, ArticleEventType, ArticleState, GetArticleRequest, ListArticleVersionsRequest,
    ListArticlesRequest, PublishArticleRequest, PublishArticlesRequest, RetractArticleRequest,
    WatchArticlesRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = PublisherServiceClient<Channel>;

fn request(article: proto::Article, request_id: &str) -> PublishArticleRequest {
    PublishArticleRequest {
        article: Some(article),
        request_id: request_id.into(),
    }
}

async fn publish(client: &mut Client, token: &str, article: proto::Article) -> proto::Article {
    publish_with(client, token, request(article, ""))
        .await
        .expect("the article publishes")
}

async fn publish_with(
    client: &mut Client,
    token: &str,
    request: PublishArticleRequest,
) -> Result<proto::Article, Status> {
    let response = client.publish_article(authed(token, request)).await?;
    Ok(response.into_inner().article.expect("an article"))
}

async fn get(
    client: &mut Client,
    token: &str,
    id: &str,
    version: i32,
) -> Result<proto::Article, Status> {
    let request = GetArticleRequest {
        id: id.into(),
        version,
    };
    Ok(client
        .get_article(authed(token, request))
        .await?
        .into_inner())
}

async fn retract(
    client: &mut Client,
    token: &str,
    request: RetractArticleRequest,
) -> Result<proto::Article, Status> {
    Ok(client
        .retract_article(authed(token, request))
        .await?
        .into_inner())
}

async fn versions(client: &mut Client, token: &str, id: &str) -> Vec<i32> {
    let request = ListArticleVersionsRequest {
        id: id.into(),
        ..Default::default()
    };
    let page = client
        .list_article_versions(authed(token, request))
        .await
        .unwrap()
        .into_inner();
    page.versions.iter().map(|v| v.version).collect()
}

fn politics() -> FeedScope {
    FeedScope::Section(SectionSlug::parse("politics").unwrap())
}

/// A brief of `section` with its own title.
fn in_section(id: &str, section: &str) -> proto::Article {
    proto::Article {
        section: section.into(),
        ..brief(id, &format!("{section} {id}"))
    }
}

#[tokio::test]
async fn republishing_identical_content_keeps_the_etag_and_rebuilds_no_feed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let first = publish(&mut client, token, brief("same-1", "原标题")).await;
    server.settle().await;
    let feed = || async {
        let response = reqwest::get(server.url("/feeds/politics/atom.xml"))
            .await
            .unwrap();
        response.headers()["etag"].to_str().unwrap().to_owned()
    };
    let feed_etag = feed().await;
    let regenerations = server.publication.regenerations(&politics());

    let again = publish(&mut client, token, brief("same-1", "原标题")).await;
    server.settle().await;
    assert_eq!(again.etag, first.etag);
    assert_eq!(again.version, 1);
    assert_eq!(again, first, "nothing of the stored article changed");
    assert_eq!(server.publication.regenerations(&politics()), regenerations);
    assert_eq!(feed().await, feed_etag);
    assert_eq!(versions(&mut client, token, "same-1").await, [1]);
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_gets_the_first_result_and_stores_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let rid = "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a3b";

    // Two copies of one request racing: one is stored, both get its result.
    let (mut one, mut other) = (client.clone(), client.clone());
    let (a, b) = tokio::join!(
        publish_with(&mut one, token, request(brief("rid-1", "第一版"), rid)),
        publish_with(&mut other, token, request(brief("rid-1", "第一版"), rid)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.version, 1);

    // A correction by another request, then the first request retried: the retry gets the
    // first answer and does not undo the correction.
    let corrected = publish(&mut client, token, brief("rid-1", "第二版")).await;
    assert_eq!(corrected.version, 2);
    let retried = publish_with(&mut client, token, request(brief("rid-1", "第一版"), rid))
        .await
        .unwrap();
    assert_eq!(retried, a);
    let now = get(&mut client, token, "rid-1", 0).await.unwrap();
    assert_eq!(now.title, "第二版");
    assert_eq!(versions(&mut client, token, "rid-1").await, [2, 1]);

    // The same id with another request is refused by name, and changes nothing.
    let status = publish_with(&mut client, token, request(brief("rid-1", "第三版"), rid))
        .await
        .unwrap_err();
    assert_invalid(&status, "request_id");
    assert_eq!(error_reason(&status), "REQUEST_ID_REUSED");
    assert_eq!(get(&mut client, token, "rid-1", 0).await.unwrap(), now);

    // Request ids belong to their partner: the same id is a new request for another one.
    let county = publish_with(
        &mut client,
        &server.tokens.county,
        request(in_section("rid-1", "rural"), rid),
    )
    .await
    .unwrap();
    assert_eq!(county.section, "rural");

    // Retractions too: a retry gets the first retraction, even after a republish.
    let retraction = RetractArticleRequest {
        id: "rid-1".into(),
        reason: "事实有误".into(),
        request_id: "retract-1".into(),
        ..Default::default()
    };
    let retracted = retract(&mut client, token, retraction.clone())
        .await
        .unwrap();
    assert_eq!(retracted.state(), ArticleState::Retracted);
    publish(&mut client, token, brief("rid-1", "第四版")).await;
    let again = retract(&mut client, token, retraction).await.unwrap();
    assert_eq!(again, retracted);
    let now = get(&mut client, token, "rid-1", 0).await.unwrap();
    assert_eq!(
        now.state(),
        ArticleState::Published,
        "the retry retracted nothing"
    );

    let status = publish_with(
        &mut client,
        token,
        request(brief("rid-2", "x"), &"x".repeat(37)),
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "request_id");
    assert_eq!(
        error_reason(&status),
        "INVALID_FIELD",
        "a malformed request id is not a reused one"
    );
    // Beside a bad article, both are named, and nothing is stored.
    let status = publish_with(&mut client, token, request(brief("a/b", "x"), "a b"))
        .await
        .unwrap_err();
    common::assert_invalid_fields(&status, &["request_id", "article.id"]);
    // A good article beside a bad request id is refused all the same.
    let status = publish_with(&mut client, token, request(brief("rid-3", "x"), "a b"))
        .await
        .unwrap_err();
    assert_invalid(&status, "request_id");
    assert_eq!(
        get(&mut client, token, "rid-3", 0)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_stale_etag_is_aborted_for_publish_and_retract() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let v1 = publish(&mut client, token, brief("etag-1", "第一版")).await;
    let v2 = publish(&mut client, token, brief("etag-1", "第二版")).await;
    assert_ne!(v1.etag, v2.etag);

    let stale = proto::Article {
        etag: v1.etag.clone(),
        ..brief("etag-1", "基于旧版的修改")
    };
    let status = publish_with(&mut client, token, request(stale, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");
    assert_eq!(get(&mut client, token, "etag-1", 0).await.unwrap(), v2);

    let fresh = proto::Article {
        etag: v2.etag.clone(),
        ..brief("etag-1", "第三版")
    };
    let v3 = publish_with(&mut client, token, request(fresh, ""))
        .await
        .unwrap();
    assert_eq!(v3.version, 3);

    let stale_retraction = RetractArticleRequest {
        id: "etag-1".into(),
        etag: v2.etag.clone(),
        ..Default::default()
    };
    let status = retract(&mut client, token, stale_retraction)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_reason(&status), "ETAG_MISMATCH");
    let still = get(&mut client, token, "etag-1", 0).await.unwrap();
    assert_eq!(still.state(), ArticleState::Published);

    let retraction = RetractArticleRequest {
        id: "etag-1".into(),
        etag: v3.etag.clone(),
        ..Default::default()
    };
    let retracted = retract(&mut client, token, retraction).await.unwrap();
    assert_eq!(retracted.state(), ArticleState::Retracted);
    assert_ne!(retracted.etag, v3.etag, "a retraction changes the etag");

    // An edit based on what was read before the retraction would undo it: aborted.
    let undo = proto::Article {
        etag: v3.etag.clone(),
        ..brief("etag-1", "第三版")
    };
    let status = publish_with(&mut client, token, request(undo, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    // A precondition on an article that does not exist cannot hold.
    let missing = proto::Article {
        etag: v3.etag.clone(),
        ..brief("etag-2", "新稿")
    };
    let status = publish_with(&mut client, token, request(missing, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        get(&mut client, token, "etag-2", 0)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn past_versions_are_kept_and_get_article_returns_them() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let titles = ["第一版", "第二版", "第三版"];
    let mut stored = Vec::new();
    for title in titles {
        stored.push(publish(&mut client, token, brief("ver-1", title)).await);
    }
    for (i, title) in titles.iter().enumerate() {
        let version = i32::try_from(i + 1).unwrap();
        let got = get(&mut client, token, "ver-1", version).await.unwrap();
        assert_eq!(got.title, *title);
        assert_eq!(got.version, version);
        assert_eq!(got.etag, stored[i].etag);
        assert_eq!(got.update_time, stored[i].update_time);
        assert_eq!(got.guid, stored[0].guid, "every version keeps the GUID");
    }
    assert_eq!(
        get(&mut client, token, "ver-1", 0).await.unwrap(),
        stored[2]
    );
    // Read, then sent back as it was read: no new version.
    let read = get(&mut client, token, "ver-1", 0).await.unwrap();
    let sent_back = publish(&mut client, token, read.clone()).await;
    assert_eq!(sent_back, read, "the same version, etag and update time");

    let status = get(&mut client, token, "ver-1", 9).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "VERSION_NOT_FOUND");
    let status = get(&mut client, token, "ver-1", -1).await.unwrap_err();
    assert_invalid(&status, "version");
    // Paging the versions of an article that does not exist is NOT_FOUND too.
    let status = client
        .list_article_versions(authed(
            token,
            ListArticleVersionsRequest {
                id: "no-such".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // A past version shows its own content, and the state of the article as it is now:
    // its first version was under an embargo that the second took off.
    let embargo = chrono::Utc::now().timestamp() + 86_400;
    let first = proto::Article {
        embargo_time: Some(ts(embargo)),
        ..brief("ver-2", "禁发")
    };
    let first = publish(&mut client, token, first).await;
    assert_eq!(first.state(), ArticleState::Embargoed);
    publish(&mut client, token, brief("ver-2", "公开")).await;
    let past = get(&mut client, token, "ver-2", 1).await.unwrap();
    assert_eq!(past.title, "禁发");
    assert_eq!(past.embargo_time, Some(ts(embargo)));
    assert_eq!(past.state(), ArticleState::Published, "the state of now");

    // Retracted: a past version keeps the etag its version has in the list; the current
    // one, asked by its number or as the current one, has the article's, which the
    // retraction changed.
    let mut versions = Vec::new();
    for title in ["撤前一", "撤前二"] {
        versions.push(publish(&mut client, token, brief("ver-3", title)).await);
    }
    let retracted = client
        .retract_article(authed(
            token,
            proto::RetractArticleRequest {
                id: "ver-3".into(),
                reason: "撤稿".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(retracted.etag, versions[1].etag);
    let got = get(&mut client, token, "ver-3", 1).await.unwrap();
    assert_eq!(got.state(), ArticleState::Retracted);
    assert_eq!(got.etag, versions[0].etag, "the etag it is listed with");
    for version in [0, 2] {
        let got = get(&mut client, token, "ver-3", version).await.unwrap();
        assert_eq!(got.etag, retracted.etag, "version {version}");
    }

    // Listed newest first, a page at a time.
    let page = |page_token: String| ListArticleVersionsRequest {
        id: "ver-1".into(),
        page_size: 2,
        page_token,
    };
    let first = client
        .list_article_versions(authed(token, page(String::new())))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<_> = first
        .versions
        .iter()
        .map(|v| (v.version, v.title.as_str()))
        .collect();
    assert_eq!(listed, [(3, "第三版"), (2, "第二版")]);
    let rest = client
        .list_article_versions(authed(token, page(first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.versions.len(), 1);
    assert_eq!(rest.versions[0].etag, stored[0].etag);
    assert!(rest.next_page_token.is_empty());

    // The feeds show the newest version only; the versions survive a restart.
    let body = server
        .wait_for_feed("/feeds/politics/rss.xml", |b| b.contains("第三版"))
        .await;
    assert!(
        !body.contains("第二版") && !body.contains("第一版"),
        "{body}"
    );
    let server = server.restart().await;
    let mut client = server.client().await;
    let got = get(&mut client, &server.tokens.newsroom, "ver-1", 1)
        .await
        .unwrap();
    assert_eq!(got.title, "第一版");
}

/// A batch request of one article per message.
fn batch_of(requests: Vec<PublishArticleRequest>) -> Vec<PublishArticlesRequest> {
    requests
        .into_iter()
        .map(|r| PublishArticlesRequest { requests: vec![r] })
        .collect()
}

async fn publish_batch(
    client: &mut Client,
    token: &str,
    messages: Vec<PublishArticlesRequest>,
) -> Vec<proto::PublishArticleResult> {
    client
        .publish_articles(authed(token, tokio_stream::iter(messages)))
        .await
        .expect("the batch is answered")
        .into_inner()
        .results
}

/// The error a batch result carries, as the status a call would have returned.
fn result_status(result: &proto::PublishArticleResult) -> Status {
    let status = result.status.clone().expect("a status");
    Status::with_details(
        Code::from(status.code),
        status.message.clone(),
        prost::Message::encode_to_vec(&status).into(),
    )
}

/// Sends three articles named `prefix-n` on a PublishArticles stream it leaves open (with
/// `client_deadline` as its `grpc-timeout`, if any) and checks how the call ends: a little
/// before the deadline, DEADLINE_EXCEEDED saying the three were handled, all three stored.
async fn leave_a_stream_open(
    server: &TestServer,
    prefix: &str,
    client_deadline: Option<std::time::Duration>,
) {
    let token = &server.tokens.newsroom;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    for n in 0..3 {
        let message = PublishArticlesRequest {
            requests: vec![request(brief(&format!("{prefix}-{n}"), "未完"), "")],
        };
        sender.send(message).await.unwrap();
    }
    let mut call = authed(token, tokio_stream::wrappers::ReceiverStream::new(receiver));
    if let Some(deadline) = client_deadline {
        call.set_timeout(deadline);
    }
    let mut client = server.client().await;
    let ended = client
        .publish_articles(call)
        .await
        .expect_err("the stream stays open past the deadline");
    drop(sender);
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert_eq!(error_reason(&ended), "STREAM_TIMEOUT");
    assert!(
        ended
            .message()
            .contains("the 3 articles before it were handled"),
        "{ended:?}"
    );
    for n in 0..3 {
        get(&mut client, token, &format!("{prefix}-{n}"), 0)
            .await
            .expect("stored");
    }
}

/// A stream left open ends a little before the request timeout would cancel it, with
/// DEADLINE_EXCEEDED saying how many articles were handled: those are stored, all of them,
/// not only the chunks already handed to the store.
#[tokio::test]
async fn a_stream_left_open_stores_what_it_received_and_says_so() {
    let server =
        TestServer::start_with(|s| s.limits.request_timeout = std::time::Duration::from_secs(2))
            .await;
    leave_a_stream_open(&server, "open", None).await;
}

/// A message received in time whose articles take longer to handle than the stream has
/// left is cut at the deadline, not handled to its end while the call is cancelled: the
/// call ends with DEADLINE_EXCEEDED saying how many articles were handled, and those, the
/// first ones sent, are stored, and no other.
#[tokio::test]
async fn a_message_whose_articles_outlast_the_stream_is_cut_at_its_deadline() {
    let server =
        TestServer::start_with(|s| s.limits.request_timeout = std::time::Duration::from_secs(3))
            .await;
    let token = &server.tokens.newsroom;
    // One message, taken whole before the deadline; its articles each carry a body of
    // sanitised HTML: handling them all takes many times the stream's 2.25 s.
    let body = "<p><b>朔州</b>日报<i>记者</i>报道。</p>".repeat(20);
    let total = 3_500;
    let requests = (0..total)
        .map(|n| {
            let mut article = brief(&format!("slow-{n}"), "长稿");
            article.content_text = String::new();
            article.content_html = body.clone();
            request(article, "")
        })
        .collect();
    let mut client = server.client().await;
    let ended = client
        .publish_articles(authed(
            token,
            tokio_stream::iter([PublishArticlesRequest { requests }]),
        ))
        .await
        .expect_err("the message outlasts the stream");
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert_eq!(error_reason(&ended), "STREAM_TIMEOUT");
    let handled: usize = ended
        .message()
        .rsplit_once("(the ")
        .and_then(|(_, after)| after.split_once(" articles before it were handled"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {ended:?}"));
    assert!(
        handled > 0 && handled < total,
        "{handled} of {total}: {ended:?}"
    );
    for n in [0, handled - 1] {
        get(&mut client, token, &format!("slow-{n}"), 0)
            .await
            .expect("a handled article is stored");
    }
    assert!(
        get(&mut client, token, &format!("slow-{handled}"), 0)
            .await
            .is_err(),
        "an article after the cut is not stored"
    );
}

/// A stream cancelled (its deadline passed) while its last chunk waits to be stored: the
/// chunk is stored all the same, and its articles reach the feeds without a restart.
#[tokio::test]
async fn a_chunk_stored_after_its_call_was_cancelled_reaches_the_feeds() {
    use sqlx::Connection;
    let server = TestServer::start().await;
    // Another connection holds the database's write lock: the chunk waits for it.
    let mut lock = common::database_connection(&server.data_dir()).await;
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let requests = (0..3)
        .map(|n| request(brief(&format!("late-{n}"), &format!("迟到的稿件{n}")), ""))
        .collect();
    let mut call = authed(
        &server.tokens.newsroom,
        tokio_stream::iter([PublishArticlesRequest { requests }]),
    );
    call.set_timeout(std::time::Duration::from_millis(1_500));
    let ended = server
        .client()
        .await
        .publish_articles(call)
        .await
        .expect_err("cancelled while its chunk waits for the database");
    assert!(
        matches!(ended.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{ended:?}"
    );
    sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    server
        .wait_for_feed("/feeds/politics/feed.json", |feed| {
            (0..3).all(|n| feed.contains(&format!("迟到的稿件{n}")))
        })
        .await;
}

/// A database whose pages are damaged answers INTERNAL, saying so: trying again does not
/// help, so the partner is not told UNAVAILABLE, to retry forever.
#[tokio::test]
async fn a_damaged_database_is_no_reason_to_retry() {
    use sqlx::Connection;
    let server = TestServer::start().await;
    let token = server.tokens.newsroom.clone();
    let mut client = server.client().await;
    publish(&mut client, &token, brief("damaged", "损坏的页")).await;
    let data_dir = server.data_dir();
    let (dir, tokens) = server.stop().await;
    // The root pages of the article versions' table and of its indexes overwritten.
    let file = data_dir.join("feedpub.sqlite3");
    let mut conn = common::database_connection(&data_dir).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    let roots: Vec<(i64,)> = sqlx::query_as(
        "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'article_versions' AND rootpage > 0",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    {
        use std::io::{Seek, Write};
        let mut db = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        for (root,) in roots {
            db.seek(std::io::SeekFrom::Start(
                u64::try_from((root - 1) * page_size).unwrap(),
            ))
            .unwrap();
            db.write_all(&vec![0xff; usize::try_from(page_size).unwrap()])
                .unwrap();
        }
        db.sync_all().unwrap();
    }
    let server = TestServer::start_in(dir, tokens).await;
    let mut client = server.client().await;
    let refused = client
        .list_article_versions(authed(
            &token,
            ListArticleVersionsRequest {
                id: "damaged".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the versions' pages are damaged");
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert_eq!(error_reason(&refused), "STORAGE_FAILED");
    assert!(refused.message().contains("damaged"), "{refused:?}");
}

/// A GUID is a tag URI dated with the article's publish date, in the site's offset; one
/// scheduled ahead is dated the day it was stored, as a tag is never dated in the future
/// (RFC 4151).
#[tokio::test]
async fn a_guid_is_dated_by_publication_and_never_in_the_future() {
    let server = TestServer::start().await;
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = || {
        chrono::Utc::now()
            .with_timezone(&beijing)
            .format("%Y-%m-%d")
            .to_string()
    };
    let before = today();
    let ahead = chrono::Utc::now() + chrono::TimeDelta::days(400);
    let scheduled = server
        .publish_as_newsroom(proto::Article {
            publish_time: Some(ts(ahead.timestamp())),
            ..brief("ahead", "预告")
        })
        .await;
    let dated = |day: &str| scheduled.guid.ends_with(&format!(",{day}:newsroom/ahead"));
    assert!(dated(&before) || dated(&today()), "{}", scheduled.guid);
    let published = server
        .publish_as_newsroom(proto::Article {
            publish_time: Some(ts(1_686_096_000)), // 2023-06-07 08:00 +08:00
            ..brief("past", "旧闻")
        })
        .await;
    assert!(
        published.guid.starts_with("tag:") && published.guid.ends_with(",2023-06-07:newsroom/past"),
        "{}",
        published.guid
    );
}

/// A stream still open near the client's own deadline (`grpc-timeout`) ends a little
/// before it, as before the server's timeout: the client gets the answer, saying how many
/// articles were handled, and every one it sent is stored.
#[tokio::test]
async fn a_stream_past_the_clients_deadline_stores_every_article_it_sent() {
    let server = TestServer::start().await;
    leave_a_stream_open(
        &server,
        "cancelled",
        Some(std::time::Duration::from_secs(2)),
    )
    .await;
}

#[tokio::test]
async fn a_bad_article_in_a_batch_gets_its_own_error_and_the_others_are_stored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let mut untitled = brief("batch-2", "");
    untitled.title = String::new();
    let messages = vec![
        PublishArticlesRequest {
            requests: vec![
                request(brief("batch-0", "第一条"), ""),
                request(brief("batch-1", "第二条"), "batch-rid"),
            ],
        },
        PublishArticlesRequest {
            requests: vec![
                request(untitled, ""),
                request(brief("batch-3", "第四条"), ""),
            ],
        },
        PublishArticlesRequest {
            requests: vec![
                // The same request again within the batch: answered, stored once.
                request(brief("batch-1", "第二条"), "batch-rid"),
                request(in_section("batch-5", "sports"), ""),
            ],
        },
    ];
    let results = publish_batch(&mut client, token, messages).await;
    let indexes: Vec<_> = results.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
    let ids: Vec<_> = results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "batch-0", "batch-1", "batch-2", "batch-3", "batch-1", "batch-5"
        ]
    );
    let codes: Vec<_> = results.iter().map(|r| result_status(r).code()).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::Ok,
            Code::InvalidArgument,
            Code::Ok,
            Code::Ok,
            Code::InvalidArgument
        ]
    );
    for (index, field) in [(2, "article.title"), (5, "article.section")] {
        let status = result_status(&results[index]);
        assert_invalid(&status, field);
        assert_eq!(error_reason(&status), "INVALID_FIELD");
        assert!(results[index].etag.is_empty());
    }
    assert!(results[1].changed);
    assert!(!results[4].changed, "the repeated request changed nothing");
    assert_eq!(results[4].etag, results[1].etag);

    for (id, result) in [
        ("batch-0", &results[0]),
        ("batch-1", &results[1]),
        ("batch-3", &results[3]),
    ] {
        let stored = get(&mut client, token, id, 0).await.unwrap();
        assert_eq!(stored.etag, result.etag);
        assert_eq!(stored.version, 1);
        assert_eq!(stored.update_time, result.update_time);
    }
    for id in ["batch-2", "batch-5"] {
        let status = get(&mut client, token, id, 0).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{id}");
    }
    assert_eq!(versions(&mut client, token, "batch-1").await, [1]);
    server
        .wait_for_feed("/feeds/politics/atom.xml", |b| {
            b.contains("第一条") && b.contains("第二条") && b.contains("第四条")
        })
        .await;

    // A partner's rights hold per article.
    let results = publish_batch(
        &mut client,
        &server.tokens.county,
        batch_of(vec![
            request(in_section("c-0", "politics"), ""),
            request(in_section("c-1", "rural"), ""),
        ]),
    )
    .await;
    assert_eq!(result_status(&results[0]).code(), Code::PermissionDenied);
    assert_eq!(
        error_reason(&result_status(&results[0])),
        "SECTION_NOT_GRANTED"
    );
    assert_eq!(result_status(&results[1]).code(), Code::Ok);
}

#[tokio::test]
async fn a_batch_of_many_articles_stores_each_with_its_version_and_refuses_only_stale_etags() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    // Stored before the batch: corrected in it with the right etag, with a stale one, and
    // with none.
    let mut stored = Vec::new();
    for n in [10, 300, 600] {
        stored.push(publish(&mut client, token, brief(&format!("long-{n}"), "初稿")).await);
    }
    let total = 700;
    let requests: Vec<_> = (0..total)
        .map(|n| {
            let mut article = brief(&format!("long-{n}"), &format!("第{n}条"));
            article.etag = match n {
                10 => stored[0].etag.clone(),
                300 => "stale".into(),
                _ => String::new(),
            };
            request(article, "")
        })
        .collect();
    // Messages of 250, as a partner streams them; the store takes them in slices of its own.
    let mut requests = requests.into_iter();
    let mut messages = Vec::new();
    loop {
        let chunk: Vec<_> = requests.by_ref().take(250).collect();
        if chunk.is_empty() {
            break;
        }
        messages.push(PublishArticlesRequest { requests: chunk });
    }
    let results = publish_batch(&mut client, token, messages).await;
    assert_eq!(results.len(), total);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.index, n as i32);
        let expected = if n == 300 { Code::Aborted } else { Code::Ok };
        assert_eq!(result_status(result).code(), expected, "article {n}");
    }
    for n in [0, 10, 255, 256, 299, 301, 511, 512, 600, 699] {
        let id = format!("long-{n}");
        let article = get(&mut client, token, &id, 0).await.unwrap();
        assert_eq!(article.title, format!("第{n}条"), "{id}");
        assert_eq!(article.etag, results[n].etag, "{id}");
        let expected = if [10, 600].contains(&n) {
            vec![2, 1]
        } else {
            vec![1]
        };
        assert_eq!(versions(&mut client, token, &id).await, expected, "{id}");
    }
    let refused = get(&mut client, token, "long-300", 0).await.unwrap();
    assert_eq!(refused.title, "初稿");
    assert_eq!(refused.etag, stored[1].etag);
    assert_eq!(versions(&mut client, token, "long-300").await, [1]);
    server
        .wait_for_feed("/feeds/politics/atom.xml", |b| {
            // The feed's 50 come first by GUID, `long-10` among them, `long-300` not.
            b.contains("第0条") && b.contains("第10条") && !b.contains("初稿")
        })
        .await;
}

#[tokio::test]
async fn a_batch_rebuilds_each_feed_it_touches_once() {
    const ARTICLES: usize = 1_500;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    server.settle().await;
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let features = FeedScope::Section(SectionSlug::parse("features").unwrap());
    let author = FeedScope::author("陈淑兰");
    let scopes = [
        politics(),
        rural.clone(),
        FeedScope::All,
        author.clone(),
        features.clone(),
    ];
    let before: Vec<u64> = scopes
        .iter()
        .map(|s| server.publication.regenerations(s))
        .collect();

    // Three messages of 500, crossing the store's chunks of 1,000.
    let requests: Vec<_> = (0..ARTICLES)
        .map(|i| {
            let section = if i % 2 == 0 { "politics" } else { "rural" };
            let mut article = in_section(&format!("bulk-{i:04}"), section);
            article.publish_time = Some(ts(1_686_092_400 + i as i64));
            request(article, "")
        })
        .collect();
    let messages = requests
        .chunks(500)
        .map(|chunk| PublishArticlesRequest {
            requests: chunk.to_vec(),
        })
        .collect();
    let results = publish_batch(&mut client, token, messages).await;
    assert_eq!(results.len(), ARTICLES);
    assert!(
        results
            .iter()
            .all(|r| result_status(r).code() == Code::Ok && r.changed)
    );
    server.settle().await;

    let after: Vec<u64> = scopes
        .iter()
        .map(|s| server.publication.regenerations(s))
        .collect();
    let rebuilt: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        rebuilt,
        [1, 1, 1, 1, 0],
        "politics, rural, all, the author, features"
    );
    let body = server
        .wait_for_feed("/feeds/rural/rss.xml", |b| b.contains("bulk-1499"))
        .await;
    assert!(
        body.contains("bulk-1401") && !body.contains("bulk-1399"),
        "the newest 50 of rural's 750"
    );
}

/// A WatchArticles stream, past its first (empty) message.
struct Watch {
    stream: tonic::Streaming<proto::WatchArticlesResponse>,
    /// The cursor of the first message.
    start: String,
}

async fn watch(
    server: &TestServer,
    token: &str,
    sections: &[&str],
    cursor: &str,
) -> Result<Watch, Status> {
    let request = WatchArticlesRequest {
        sections: sections.iter().map(|s| s.to_string()).collect(),
        cursor: cursor.into(),
    };
    let mut stream = server
        .client()
        .await
        .watch_articles(authed(token, request))
        .await?
        .into_inner();
    let first = next(&mut stream).await.expect("a first message");
    assert!(first.events.is_empty(), "the first message has no events");
    Ok(Watch {
        stream,
        start: first.cursor,
    })
}

async fn next(
    stream: &mut tonic::Streaming<proto::WatchArticlesResponse>,
) -> Result<proto::WatchArticlesResponse, Status> {
    tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("the watch stream answered in time")?
        .ok_or_else(|| Status::unknown("the stream ended"))
}

impl Watch {
    /// The next `n` events; each message's cursor is that of its last event.
    async fn events(&mut self, n: usize) -> Vec<proto::ArticleEvent> {
        let mut events = Vec::new();
        while events.len() < n {
            let message = next(&mut self.stream).await.expect("more events");
            assert!(
                !message.events.is_empty(),
                "only the first message is empty"
            );
            assert_eq!(message.cursor, message.events.last().unwrap().cursor);
            events.extend(message.events);
        }
        assert_eq!(events.len(), n, "no more events than expected: {events:?}");
        events
    }
}

fn summary(events: &[proto::ArticleEvent]) -> Vec<(ArticleEventType, String)> {
    events
        .iter()
        .map(|e| (e.r#type(), e.article.as_ref().unwrap().id.clone()))
        .collect()
}

/// Retracted copy is told to other partners' streams as which article it was and where,
/// never what it said: not in its RETRACTED event, nor in the events before it that a
/// stream replays from an older cursor (copy taken down on a legal order must not stay
/// readable), also once the article is published again. What was not retracted replays
/// whole.
#[tokio::test]
async fn retracted_copy_is_not_replayed_to_watch_streams() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let newsroom = &server.tokens.newsroom;
    let before = watch(&server, &server.tokens.county, &["rural"], "")
        .await
        .unwrap()
        .start;
    let rural = |id: &str, title: &str| proto::Article {
        section: "rural".into(),
        ..brief(id, title)
    };
    publish(&mut client, newsroom, rural("kept", "留下的稿件")).await;
    publish(&mut client, newsroom, rural("down", "必须撤下的标题")).await;
    let request = RetractArticleRequest {
        id: "down".into(),
        reason: "法院裁定".into(),
        ..Default::default()
    };
    retract(&mut client, newsroom, request).await.unwrap();
    let mut replay = watch(&server, &server.tokens.county, &["rural"], &before)
        .await
        .unwrap();
    let events = replay.events(3).await;
    assert_eq!(
        summary(&events),
        [
            (ArticleEventType::Published, "kept".into()),
            (ArticleEventType::Published, "down".into()),
            (ArticleEventType::Retracted, "down".into()),
        ]
    );
    let kept = events[0].article.as_ref().unwrap();
    assert_eq!(kept.title, "留下的稿件");
    for event in &events[1..] {
        let down = event.article.as_ref().unwrap();
        assert_eq!(
            (down.guid.is_empty(), down.section.as_str(), down.state()),
            (false, "rural", proto::ArticleState::Retracted),
            "{down:?}"
        );
        assert!(
            down.title.is_empty()
                && down.content_html.is_empty()
                && down.content_text.is_empty()
                && down.summary.is_empty()
                && down.authors.is_empty(),
            "{down:?}"
        );
    }
    // Published again with other copy: the copy taken down stays down in every event
    // before the retraction, and the new copy is told whole.
    publish(&mut client, newsroom, rural("down", "重新发布的稿件")).await;
    let mut replay = watch(&server, &server.tokens.county, &["rural"], &before)
        .await
        .unwrap();
    let events = replay.events(4).await;
    let titles: Vec<&str> = events
        .iter()
        .map(|event| event.article.as_ref().unwrap().title.as_str())
        .collect();
    assert_eq!(titles, ["留下的稿件", "", "", "重新发布的稿件"]);
}

/// Each WatchArticles stream holds its own updates: a partner may have `watch_streams`
/// open on one server, no more; another partner's are its own, and a closed stream gives
/// its place back.
#[tokio::test]
async fn a_partner_may_open_so_many_watch_streams_and_no_more() {
    let server = TestServer::start_with(|s| s.limits.watch_streams = 2).await;
    let newsroom = &server.tokens.newsroom;
    let first = watch(&server, newsroom, &[], "").await.unwrap();
    let _second = watch(&server, newsroom, &[], "").await.unwrap();
    let refused = watch(&server, newsroom, &[], "")
        .await
        .err()
        .expect("a third is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(error_reason(&refused), "TOO_MANY_STREAMS");
    assert!(
        refused.message().contains("2 WatchArticles streams"),
        "{refused:?}"
    );
    // Another partner's count is its own.
    let _other = watch(&server, &server.tokens.county, &[], "")
        .await
        .unwrap();
    // A stream the client closes gives its place back, once the server sees it closed.
    drop(first);
    let start = std::time::Instant::now();
    loop {
        match watch(&server, newsroom, &[], "").await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    start.elapsed() < DEADLINE,
                    "the closed stream's place never came back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_watch_replays_from_its_cursor_then_follows_with_no_gap_and_no_duplicate() {
    use ArticleEventType::{Published, Retracted, Updated};
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    publish(&mut client, token, brief("before", "开始之前")).await;

    let mut watching = watch(&server, token, &[], "").await.unwrap();
    publish(&mut client, token, brief("w-a", "甲")).await;
    publish(&mut client, token, in_section("w-b", "rural")).await;
    publish(&mut client, token, brief("w-a", "甲（更正）")).await;
    let events = watching.events(3).await;
    assert_eq!(
        summary(&events),
        [
            (Published, "w-a".into()),
            (Published, "w-b".into()),
            (Updated, "w-a".into())
        ],
        "only what was stored after the stream started, in order"
    );
    let update = events[2].article.as_ref().unwrap();
    assert_eq!((update.title.as_str(), update.version), ("甲（更正）", 2));
    assert_eq!(
        events[0].article.as_ref().unwrap().title,
        "甲",
        "as of that version"
    );
    assert_eq!(events[0].partner, "newsroom");
    let cursor = events[1].cursor.clone();
    drop(watching);

    // While nobody watches: a retraction and a new article.
    retract(
        &mut client,
        token,
        RetractArticleRequest {
            id: "w-b".into(),
            reason: "不公开的理由".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish(&mut client, token, brief("w-c", "丙")).await;

    // Back from the second event: the rest replayed, then new ones live.
    let mut watching = watch(&server, token, &[], &cursor).await.unwrap();
    assert_eq!(watching.start, cursor);
    let replayed = watching.events(3).await;
    assert_eq!(
        summary(&replayed),
        [
            (Updated, "w-a".into()),
            (Retracted, "w-b".into()),
            (Published, "w-c".into())
        ]
    );
    let retracted = replayed[1].article.as_ref().unwrap();
    assert_eq!(retracted.state(), ArticleState::Retracted);
    assert!(
        retracted.retract_reason.is_empty(),
        "the reason is never published"
    );
    publish(&mut client, token, brief("w-d", "丁")).await;
    assert_eq!(
        summary(&watching.events(1).await),
        [(Published, "w-d".into())]
    );
}

#[tokio::test]
async fn a_watch_resumes_after_a_server_restart_with_nothing_lost() {
    use ArticleEventType::{EmbargoLifted, Published};
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = server.tokens.newsroom.clone();
    let mut watching = watch(&server, &token, &["politics"], "").await.unwrap();
    publish(&mut client, &token, brief("r-1", "一")).await;
    publish(&mut client, &token, brief("r-2", "二")).await;
    let cursor = watching.events(1).await[0].cursor.clone();
    // An embargo that ends while the server is down is logged when it is back (far enough
    // ahead that a loaded machine still publishes and stops before it ends).
    let embargo_end = chrono::Utc::now().timestamp() + 5;
    let embargoed = proto::Article {
        embargo_time: Some(ts(embargo_end)),
        ..brief("r-3", "三")
    };
    publish(&mut client, &token, embargoed).await;

    let (dir, tokens) = server.stop().await;
    while chrono::Utc::now().timestamp() <= embargo_end {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let server = TestServer::start_in(dir, tokens).await;
    // The old stream delivers what it had, then says the server went away.
    let status = loop {
        match next(&mut watching.stream).await {
            Ok(message) => assert!(!message.events.is_empty()),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_reason(&status), "SHUTTING_DOWN");
    let mut client = server.client().await;
    publish(&mut client, &token, brief("r-4", "四")).await;

    let mut watching = watch(&server, &token, &["politics"], &cursor)
        .await
        .unwrap();
    let events = watching.events(4).await;
    assert_eq!(
        summary(&events),
        [
            (Published, "r-2".into()),
            (Published, "r-3".into()),
            (EmbargoLifted, "r-3".into()),
            (Published, "r-4".into())
        ],
        "the lift is logged at start, before any new write"
    );
    assert_eq!(
        events[2].event_time,
        Some(ts(embargo_end)),
        "lifted at the embargo time"
    );
}

#[tokio::test]
async fn a_partner_watches_only_the_sections_it_may_read() {
    use ArticleEventType::Published;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let newsroom = &server.tokens.newsroom;
    let county = &server.tokens.county;
    let mut county_all = watch(&server, county, &[], "").await.unwrap();
    let mut newsroom_rural = watch(&server, newsroom, &["rural"], "").await.unwrap();
    publish(&mut client, newsroom, brief("s-politics", "时政")).await;
    publish(&mut client, newsroom, in_section("s-rural", "rural")).await;
    publish(&mut client, county, in_section("s-county", "rural")).await;
    for watching in [&mut county_all, &mut newsroom_rural] {
        assert_eq!(
            summary(&watching.events(2).await),
            [
                (Published, "s-rural".into()),
                (Published, "s-county".into())
            ]
        );
    }
    // Moved to a section the county may not read: it hears only that it left, and nothing
    // of it after (its retraction is in politics).
    publish(&mut client, newsroom, brief("s-rural", "移走")).await;
    client
        .retract_article(authed(
            newsroom,
            RetractArticleRequest {
                id: "s-rural".into(),
                reason: "移走".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    publish(&mut client, county, in_section("s-after", "rural")).await;
    let seen = county_all.events(2).await;
    assert_eq!(
        summary(&seen),
        [
            (ArticleEventType::Left, "s-rural".into()),
            (Published, "s-after".into())
        ]
    );
    let left = seen[0].article.as_ref().unwrap();
    assert_eq!(left.section, "rural", "the section it left");
    assert!(
        left.title.is_empty() && left.content_text.is_empty() && !left.guid.is_empty(),
        "{left:?}"
    );

    let status = watch(&server, county, &["politics"], "")
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "SECTION_NOT_GRANTED");
    for (sections, cursor, field) in [
        (&["sports"][..], "", "sections[0]"),
        (&["rural", "Bad"][..], "", "sections[1]"),
        (&[][..], "not-a-cursor", "cursor"),
        (&[][..], "ZXZlbnRzOjk5OTk5", "cursor"),
    ] {
        let status = watch(&server, newsroom, sections, cursor)
            .await
            .err()
            .unwrap();
        assert_invalid(&status, field);
        assert_eq!(error_reason(&status), "INVALID_FIELD");
    }
    // Every bad field is named: an unknown section beside a malformed one, and a bad
    // cursor beside them.
    let status = watch(&server, newsroom, &["sports", "Bad"], "")
        .await
        .err()
        .unwrap();
    common::assert_invalid_fields(&status, &["sections[0]", "sections[1]"]);
    for cursor in ["not-a-cursor", "ZXZlbnRzOjk5OTk5"] {
        let status = watch(&server, newsroom, &["sports"], cursor)
            .await
            .err()
            .unwrap();
        common::assert_invalid_fields(&status, &["sections[0]", "cursor"]);
    }
}

#[tokio::test]
async fn an_embargoed_article_reaches_other_partners_when_its_embargo_lifts() {
    use ArticleEventType::{EmbargoLifted, Published};
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let newsroom = &server.tokens.newsroom;
    let mut county = watch(&server, &server.tokens.county, &[], "")
        .await
        .unwrap();
    let mut owner = watch(&server, newsroom, &["rural"], "").await.unwrap();

    // Far enough ahead that both publishes come before it ends on a loaded machine.
    let embargo_end = chrono::Utc::now().timestamp() + 6;
    let embargoed = proto::Article {
        embargo_time: Some(ts(embargo_end)),
        ..in_section("e-1", "rural")
    };
    publish(&mut client, newsroom, embargoed).await;
    publish(&mut client, newsroom, in_section("e-2", "rural")).await;

    // Its partner sees it at once, embargoed; the county only once the embargo ends.
    let seen = owner.events(3).await;
    assert_eq!(
        summary(&seen),
        [
            (Published, "e-1".into()),
            (Published, "e-2".into()),
            (EmbargoLifted, "e-1".into())
        ]
    );
    assert_eq!(
        seen[0].article.as_ref().unwrap().embargo_time,
        Some(ts(embargo_end))
    );
    let seen = county.events(2).await;
    assert_eq!(
        summary(&seen),
        [(Published, "e-2".into()), (EmbargoLifted, "e-1".into())]
    );
    let lifted = seen[1].article.as_ref().unwrap();
    assert_eq!(lifted.state(), ArticleState::Published);
    assert_eq!(lifted.title, "rural e-1");
    assert_eq!(seen[1].event_time, Some(ts(embargo_end)));
}

#[tokio::test]
async fn a_partner_with_the_embargo_right_follows_embargoed_articles_at_once() {
    use feedpub::domain::{
        Actor, ArticleDraft, EventKind, HtmlPolicy, PartnerName, Rights, SectionGrant, Token,
    };
    use feedpub::storage::{ArticleWrite, EventFilter, NewPartner, SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let now = chrono::Utc::now();
    let token = Token::generate().unwrap();
    let partner = NewPartner {
        name: PartnerName::parse("wire").unwrap(),
        rights: Rights {
            sections: SectionGrant::All,
            embargoed: false,
        },
        token_hash: token.hash(),
        token_prefix: token.visible_prefix(),
    };
    let owner = &store.add_partner(partner, now).await.unwrap();
    let embargo_end = now + chrono::Duration::hours(1);
    let valid = ArticleDraft {
        id: "e-1".into(),
        section: "politics".into(),
        title: "禁发稿".into(),
        content_text: "正文。".into(),
        publish_time: Some(now - chrono::Duration::hours(1)),
        embargo_time: Some(embargo_end),
        ..Default::default()
    }
    .validate("article.", &HtmlPolicy::default())
    .unwrap();
    let write = ArticleWrite::new(
        valid.id,
        valid.content,
        "tag:example.com,2023-06-07:wire/e-1".into(),
    );
    let actor = Actor {
        partner: owner.name.clone(),
        peer: None,
    };
    store.publish(owner.id, write, now, &actor).await.unwrap();

    // What a partner follows depends on its rights alone, its own articles included.
    let filter = |embargoed: bool, section: Option<&str>| EventFilter {
        sections: section.map(|s| vec![SectionSlug::parse(s).unwrap()]),
        embargoed,
    };
    let kinds = |events: Vec<feedpub::domain::ArticleEvent>| {
        events.into_iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    let head = *store.event_head().borrow();
    assert_eq!(head, 1);
    let events = |f: EventFilter| {
        let store = &store;
        async move { store.events(0, u64::MAX, &f, 100).await.unwrap() }
    };
    assert!(
        events(filter(false, None)).await.is_empty(),
        "without the right, not even its own partner (denied it since) reads it"
    );
    assert_eq!(
        kinds(events(filter(true, None)).await),
        [EventKind::Published],
        "with the right, at once"
    );
    assert!(events(filter(true, Some("rural"))).await.is_empty());

    assert_eq!(store.next_embargo_lift().await.unwrap(), Some(embargo_end));
    assert_eq!(store.lift_embargoes(embargo_end).await.unwrap(), 1);
    assert_eq!(*store.event_head().borrow(), 2);
    let lifted = events(filter(false, None)).await;
    assert_eq!(kinds(lifted.clone()), [EventKind::EmbargoLifted]);
    assert_eq!((lifted[0].seq, lifted[0].time), (2, embargo_end));
    assert_eq!(lifted[0].owner.as_str(), "wire");
    assert_eq!(store.next_embargo_lift().await.unwrap(), None);
    assert_eq!(
        store.lift_embargoes(embargo_end).await.unwrap(),
        0,
        "lifted once"
    );
    store.close().await;
}

#[tokio::test]
async fn a_stream_past_the_batch_limit_ends_with_resource_exhausted_and_keeps_what_was_stored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    // One real article, then empty requests (refused one by one) up to the limit, then one
    // more.
    let mut requests = vec![request(brief("kept", "保留"), "")];
    requests.resize(
        feedpub::publishing::MAX_BATCH_ARTICLES + 1,
        PublishArticleRequest::default(),
    );
    let status = client
        .publish_articles(authed(
            token,
            tokio_stream::iter(vec![PublishArticlesRequest { requests }]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(&status), "TOO_MANY_ARTICLES");
    assert!(
        status
            .message()
            .contains("the 10000 articles before it were handled"),
        "{status:?}"
    );
    assert_eq!(
        get(&mut client, token, "kept", 0).await.unwrap().title,
        "保留"
    );
    server
        .wait_for_feed("/feeds/politics/rss.xml", |b| b.contains("保留"))
        .await;
}

/// A request whose bytes are not the protobuf message the method takes (not UTF-8 where
/// a string is, a truncated field) is the caller's fault: INVALID_ARGUMENT naming what
/// did not decode, never INTERNAL.
/// Requests compressed with gzip or deflate, as gRPC clients offer, are taken; one whose
/// message decompressed passes `max_message_bytes` is refused, however small compressed.
#[tokio::test]
async fn compressed_requests_are_taken_within_the_size_limit() {
    use tonic::codec::CompressionEncoding::{Deflate, Gzip};
    let server = TestServer::start_with(|s| s.limits.max_message_bytes = 64 * 1024).await;
    let token = &server.tokens.newsroom;
    for (id, encoding) in [("gzipped", Gzip), ("deflated", Deflate)] {
        let mut client = server.client().await.send_compressed(encoding);
        let stored = publish(&mut client, token, brief(id, "压缩的请求")).await;
        assert_eq!(stored.title, "压缩的请求");
    }
    let mut client = server.client().await.send_compressed(Gzip);
    let big = proto::Article {
        content_text: "长".repeat(40_000),
        ..brief("too-big", "x")
    };
    let status = publish_with(&mut client, token, request(big, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_an_invalid_argument() {
    let server = TestServer::start().await;
    for (method, message) in [
        // GetArticleRequest.id (field 1) of two bytes that are not UTF-8.
        ("GetArticle", &[0x0a, 0x02, 0xff, 0xfe][..]),
        // A length-delimited field cut short.
        ("PublishArticle", &[0x0a, 0x7f, 0x01]),
        ("ListSections", &[0xff]),
    ] {
        let (status, message) = raw_call(&server, method, &[message]).await;
        assert_eq!(status, "3", "{method}: {status:?} {message}");
        assert!(message.contains("protobuf"), "{method}: {message}");
    }
}

/// A body that is not framed as gRPC frames it (a message cut short, a compressed flag
/// without `grpc-encoding` or one that is neither 0 nor 1, a payload that does not
/// decompress, no message at all) is the caller's fault, INVALID_ARGUMENT with ErrorInfo
/// `MALFORMED_REQUEST`, not the INTERNAL the gRPC library answers, which would tell a
/// partner the server failed; in a batch, after the articles before it are handled.
#[tokio::test]
async fn a_request_not_framed_as_grpc_is_an_invalid_argument() {
    use prost::Message;
    let server = TestServer::start().await;
    let one = GetArticleRequest {
        id: "a".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let framed = |flag: u8, declared: usize, payload: &[u8]| {
        let mut body = vec![flag];
        body.extend_from_slice(&(declared as u32).to_be_bytes());
        body.extend_from_slice(payload);
        body
    };
    for (what, body, encoding) in [
        ("no message", Vec::new(), None),
        ("cut short", framed(0, one.len() + 50, &one), None),
        ("a header cut short", vec![0, 0, 0], None),
        ("compressed, no encoding", framed(1, one.len(), &one), None),
        ("flag 2", framed(2, one.len(), &one), None),
        ("flag 0x80", framed(0x80, one.len(), &one), None),
        ("not gzip", framed(1, one.len(), &one), Some("gzip")),
    ] {
        let (status, message) = raw_body_call(&server, "GetArticle", body, encoding).await;
        assert_eq!(status, "3", "{what}: {message}");
        assert!(
            message.contains("not framed as gRPC frames"),
            "{what}: {message}"
        );
    }
    let batch = PublishArticlesRequest {
        requests: vec![request(brief("before-frame", "坏帧之前"), "")],
    }
    .encode_to_vec();
    let mut body = framed(0, batch.len(), &batch);
    body.extend_from_slice(&[0, 0]);
    let (status, message) = raw_body_call(&server, "PublishArticles", body, None).await;
    assert_eq!(status, "3", "{message}");
    assert!(message.contains("not framed as gRPC frames"), "{message}");
    assert!(
        message.contains("the 1 articles before it were handled"),
        "{message}"
    );
    let mut client = server.client().await;
    let stored = get(&mut client, &server.tokens.newsroom, "before-frame", 0)
        .await
        .unwrap();
    assert_eq!(stored.title, "坏帧之前");
}

/// A PublishArticles stream whose second message is not valid protobuf ends with
/// INVALID_ARGUMENT, saying how many articles came before it; those were handled, and the
/// valid one among them is stored, though the batch had not filled a chunk.
#[tokio::test]
async fn a_batch_cut_by_an_unreadable_message_handles_the_articles_before_it() {
    use prost::Message;
    let server = TestServer::start().await;
    let first = PublishArticlesRequest {
        requests: vec![
            request(brief("before-cut", "截断之前"), ""),
            PublishArticleRequest::default(),
        ],
    }
    .encode_to_vec();
    let unreadable = [0x0a, 0x03, 0xff, 0xff, 0xff];
    let (status, message) = raw_call(&server, "PublishArticles", &[&first, &unreadable]).await;
    assert_eq!(status, "3", "{message}");
    assert!(message.contains("protobuf"), "{message}");
    assert!(
        message.contains("the 2 articles before it were handled"),
        "{message}"
    );
    let mut client = server.client().await;
    let stored = get(&mut client, &server.tokens.newsroom, "before-cut", 0)
        .await
        .unwrap();
    assert_eq!(stored.title, "截断之前");
}

/// A call of `method` as the newsroom with these messages, framed as gRPC does but not
/// encoded by a client (so that they may be anything): the `grpc-status` and the
/// `grpc-message` of its error, sent before any answer as headers alone ("trailers-only").
async fn raw_call(server: &TestServer, method: &str, messages: &[&[u8]]) -> (String, String) {
    let mut body = Vec::new();
    for message in messages {
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
    }
    raw_body_call(server, method, body, None).await
}

/// A call of `method` as the newsroom with `body` as its whole gRPC body (framed or not),
/// and `encoding` as its `grpc-encoding`: as [`raw_call`].
async fn raw_body_call(
    server: &TestServer,
    method: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (String, String) {
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let mut call = h2
        .post(format!(
            "http://{}/feedpub.v1.PublisherService/{method}",
            server.grpc_addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(
            "authorization",
            format!("Bearer {}", server.tokens.newsroom),
        );
    if let Some(encoding) = encoding {
        call = call.header("grpc-encoding", encoding);
    }
    let response = call.body(body).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // Every error carries an ErrorInfo of feedpub's domain, read from the same headers.
    let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
    let reason = error_reason(&status);
    assert!(!reason.is_empty(), "{method}");
    if status.message().contains("not valid protobuf") {
        assert_eq!(reason, "INVALID_PROTOBUF", "{method}");
    }
    if status.message().contains("not framed as gRPC frames") {
        assert_eq!(reason, "MALFORMED_REQUEST", "{method}");
    }
    (
        header("grpc-status"),
        percent_decoded(&header("grpc-message")),
    )
}

/// A `grpc-message` as sent: percent-encoded UTF-8.
fn percent_decoded(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// One call names every bad field: an unreadable timestamp, a section the site does not
/// have and the fields validation refuses, together, not one after another.
#[tokio::test]
async fn an_invalid_publish_names_every_bad_field_at_once() {
    use tonic_types::StatusExt;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let status = client
        .publish_article(authed(
            &server.tokens.newsroom,
            request(
                proto::Article {
                    id: "x".repeat(200),
                    section: "nope".into(),
                    title: String::new(),
                    content_text: "正文".into(),
                    publish_time: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: -1,
                    }),
                    expire_time: Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "",
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "article.expire_time",
            "article.id",
            "article.publish_time",
            "article.section",
            "article.title"
        ],
        "{}",
        status.message()
    );
    // An unreadable publish_time is named once, for that (not also as missing).
    assert!(status.message().contains("nanos"), "{}", status.message());
}

/// Every call names all its bad fields in one answer, as a publish does: a partner fixes
/// them at once, not one per try.
#[tokio::test]
async fn every_call_names_all_its_bad_fields_at_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let get = GetArticleRequest {
        id: String::new(),
        version: -1,
    };
    let refused = client.get_article(authed(token, get)).await.unwrap_err();
    assert_invalid_fields(&refused, &["id", "version"]);
    let versions = ListArticleVersionsRequest {
        id: "a b".into(),
        page_size: -1,
        page_token: "zz".into(),
    };
    let refused = client
        .list_article_versions(authed(token, versions))
        .await
        .unwrap_err();
    assert_invalid_fields(&refused, &["id", "page_size", "page_token"]);
    let list = ListArticlesRequest {
        page_size: -1,
        page_token: "zz".into(),
        section: "NOPE".into(),
    };
    let refused = client.list_articles(authed(token, list)).await.unwrap_err();
    assert_invalid_fields(&refused, &["page_size", "page_token", "section"]);
    for (request, fields) in [
        (
            RetractArticleRequest {
                id: String::new(),
                reason: "x".repeat(1001),
                ..Default::default()
            },
            &["id", "reason"][..],
        ),
        (
            RetractArticleRequest {
                id: String::new(),
                request_id: "a b".into(),
                ..Default::default()
            },
            &["id", "request_id"],
        ),
    ] {
        let refused = client
            .retract_article(authed(token, request))
            .await
            .unwrap_err();
        assert_invalid_fields(&refused, fields);
    }
}
