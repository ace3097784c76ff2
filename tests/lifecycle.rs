//! An article's life in the feeds beyond publish: embargoes that lift on their own (also
//! across a restart), RFC 6721 tombstones of retracted articles and the end of their window,
//! and media files as enclosures, media:content and attachments. Real gRPC, real HTTP,
//! feeds read back with feed-rs.

mod common;

use chrono::{DateTime, FixedOffset, SecondsFormat, SubsecRound, Utc};
use common::{DEADLINE, TestServer, all_feed_paths, assert_invalid, authed};
use feedpub::app::Application;
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{FeedScope, SectionGrant, SectionSlug};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{
    self, ArticleState, GetArticleRequest, PublishArticleRequest, PublishArticleResponse,
    RetractArticleRequest,
};
use feedpub::publication::http_date;
use feedpub::publishing;
use feedpub::storage::{SqliteStore, Store};
use prost_types::Timestamp;
use reqwest::header::{ETAG, HeaderMap, LAST_MODIFIED};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

const TITLE_EMBARGOED: &str = "禁发稿：右玉县农旅融合助力乡村振兴";

fn parse(body: &str) -> feed_rs::model::Feed {
    feed_rs::parser::parse(body.as_bytes()).expect("feed-rs parses every feed")
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

fn instant(ts: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).unwrap()
}

/// A whole second between `seconds - 1` and `seconds` from now.
fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp {
        seconds: Utc::now().timestamp() + seconds,
        nanos: 0,
    }
}

fn article(id: &str, title: &str) -> proto::Article {
    proto::Article {
        id: id.into(),
        section: "politics".into(),
        title: title.into(),
        authors: vec!["陈淑兰".into()],
        content_text: "本报讯 6月6日，研讨会召开。".into(),
        publish_time: Some(Timestamp {
            seconds: 1_686_092_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn publish(
    client: &mut PublisherServiceClient<Channel>,
    token: &str,
    article: proto::Article,
) -> Result<PublishArticleResponse, Status> {
    let request = PublishArticleRequest {
        article: Some(article),
        ..Default::default()
    };
    Ok(client
        .publish_article(authed(token, request))
        .await?
        .into_inner())
}

async fn get_article(
    client: &mut PublisherServiceClient<Channel>,
    token: &str,
    id: &str,
) -> proto::Article {
    let request = GetArticleRequest {
        id: id.into(),
        ..Default::default()
    };
    client
        .get_article(authed(token, request))
        .await
        .unwrap()
        .into_inner()
}

async fn retract(
    client: &mut PublisherServiceClient<Channel>,
    token: &str,
    id: &str,
) -> proto::Article {
    let request = RetractArticleRequest {
        id: id.into(),
        reason: "事实有误".into(),
        ..Default::default()
    };
    client
        .retract_article(authed(token, request))
        .await
        .unwrap()
        .into_inner()
}

/// GETs `url`: headers and body of a 200 answer.
async fn fetch(url: &str) -> (HeaderMap, String) {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

/// Polls `url` until its body satisfies `done`; returns that answer and when it arrived
/// (the server made that body at or before that instant).
async fn wait_until(url: &str, done: impl Fn(&str) -> bool) -> (HeaderMap, String, DateTime<Utc>) {
    let start = Instant::now();
    loop {
        let (headers, body) = fetch(url).await;
        let arrived = Utc::now();
        if done(&body) {
            return (headers, body, arrived);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{url} never reached the expected state:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The feed documents of `politics` and of `all`, where a politics article shows.
fn politics_paths() -> Vec<String> {
    ["politics", "all"]
        .iter()
        .flat_map(|s| ["rss.xml", "atom.xml", "feed.json"].map(|f| format!("/feeds/{s}/{f}")))
        .collect()
}

/// Keeps a feed document under `target/feed-samples/lifecycle/{case}/` for the independent
/// validators of `.ci/validate-feeds` (lxml, feedparser, the JSON Feed schema).
fn keep(case: &str, path: &str, body: &str) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/feed-samples/lifecycle")
        .join(case)
        .join(path.trim_start_matches("/feeds/"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, body).unwrap();
}

/// The `when` of a retraction at `when` in an Atom feed shown in Beijing time, to the
/// microsecond.
fn beijing_when(when: &Timestamp) -> String {
    instant(when)
        .with_timezone(&beijing())
        .trunc_subsecs(6)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// The exact element a retraction at `when` leaves in an Atom feed shown in Beijing time.
fn tombstone(guid: &str, when: &Timestamp) -> String {
    let when = beijing_when(when);
    format!(r#"<at:deleted-entry ref="{guid}" when="{when}"/>"#)
}

/// The `at:deleted-entry` tombstones of an Atom feed as `(ref, when)`, in document order,
/// read with atom_syndication as the renderer's own tests read them.
fn tombstones_in(body: &str) -> Vec<(String, String)> {
    let feed = atom_syndication::Feed::read_from(body.as_bytes()).expect("an Atom feed");
    let Some(tombstones) = feed
        .extensions()
        .get("at")
        .and_then(|at| at.get("deleted-entry"))
    else {
        return Vec::new();
    };
    tombstones
        .iter()
        .map(|t| (t.attrs()["ref"].clone(), t.attrs()["when"].clone()))
        .collect()
}

/// Asserts that no feed document at all shows the article with this guid or title.
async fn assert_in_no_feed(server: &TestServer, guid: &str, title: &str) {
    for path in all_feed_paths() {
        let (_, body) = fetch(&server.url(&path)).await;
        assert!(!body.contains(guid), "{path} shows {guid}:\n{body}");
        assert!(!body.contains(title), "{path} shows {title:?}");
    }
}

#[tokio::test]
async fn an_embargoed_article_is_acknowledged_but_in_no_feed_until_its_embargo_ends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    // A visible article in the same section shows the feeds are being written.
    publish(&mut client, token, article("visible", "可见的稿件"))
        .await
        .unwrap();
    // Far enough ahead for the checks below to run before it ends on a loaded machine.
    let embargo = seconds_from_now(8);
    let sent = proto::Article {
        embargo_time: Some(embargo),
        ..article("embargoed", TITLE_EMBARGOED)
    };
    let stored = publish(&mut client, token, sent)
        .await
        .expect("an embargoed article is acknowledged")
        .article
        .unwrap();
    assert_eq!(stored.state(), ArticleState::Embargoed);
    assert_eq!(stored.embargo_time, Some(embargo));
    server.settle().await;
    server
        .wait_for_feed("/feeds/politics/atom.xml", |b| b.contains("可见的稿件"))
        .await;

    assert_in_no_feed(&server, &stored.guid, TITLE_EMBARGOED).await;
    let got = get_article(&mut client, token, "embargoed").await;
    assert_eq!(got.state(), ArticleState::Embargoed);
    assert_eq!(got.embargo_time, Some(embargo));

    // It appears on its own once the embargo is over, never before.
    let lifted = instant(&embargo);
    for path in politics_paths() {
        let (headers, body, arrived) =
            wait_until(&server.url(&path), |b| b.contains(TITLE_EMBARGOED)).await;
        assert!(
            arrived >= lifted,
            "{path} showed the article at {arrived}, before its embargo ended at {lifted}"
        );
        keep("embargo-lifted", &path, &body);
        let feed = parse(&body);
        assert!(feed.entries.iter().any(|e| e.id == stored.guid), "{path}");
        // What the feed shows changed when the embargo ended: Last-Modified says so.
        assert_eq!(headers[LAST_MODIFIED], http_date(lifted).as_str(), "{path}");
        if path.ends_with("atom.xml") {
            assert_eq!(feed.updated.unwrap(), lifted, "{path}");
        }
    }
    let got = get_article(&mut client, token, "embargoed").await;
    assert_eq!(got.state(), ArticleState::Published);
}

/// Storing, editing and retracting copy under embargo, or scheduled for later, changes no
/// byte an aggregator polls: the feeds such an article would join (its section's, `all`,
/// its author's) are regenerated and come out as they were, ETags and dates included, so
/// nobody outside can tell that such copy is being written, nor when.
#[tokio::test]
async fn writing_copy_under_embargo_changes_no_feed_an_aggregator_polls() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    publish(&mut client, token, article("visible", "可见的稿件"))
        .await
        .unwrap();
    server.settle().await;
    let author = FeedScope::author("陈淑兰");
    let mut paths = politics_paths();
    paths.extend(
        ["rss.xml", "atom.xml", "feed.json"]
            .map(|file| format!("/feeds/{}/{file}", author.path_segment())),
    );
    let polled = || async {
        let mut seen = Vec::new();
        for path in &paths {
            let (headers, body) = fetch(&server.url(path)).await;
            let etag = headers[ETAG].to_str().unwrap().to_owned();
            let modified = headers[LAST_MODIFIED].to_str().unwrap().to_owned();
            seen.push((path.clone(), etag, modified, body));
        }
        seen
    };
    let before = polled().await;
    assert!(
        before
            .iter()
            .all(|(_, _, _, body)| body.contains("可见的稿件"))
    );
    let politics = FeedScope::Section(SectionSlug::parse("politics").unwrap());
    let regenerated = server.publication.regenerations(&politics);
    // A second apart at least, so that a date moved by any write would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let embargoed = |title: &str| proto::Article {
        embargo_time: Some(seconds_from_now(24 * 3600)),
        ..article("embargoed", title)
    };
    publish(&mut client, token, embargoed(TITLE_EMBARGOED))
        .await
        .unwrap();
    publish(&mut client, token, embargoed("禁发稿（更正）"))
        .await
        .unwrap();
    let scheduled = proto::Article {
        publish_time: Some(seconds_from_now(24 * 3600)),
        ..article("scheduled", "预发稿")
    };
    publish(&mut client, token, scheduled).await.unwrap();
    retract(&mut client, token, "scheduled").await;
    server.settle().await;
    assert!(
        server.publication.regenerations(&politics) > regenerated,
        "the section's feeds were rebuilt after the writes"
    );
    assert_eq!(polled().await, before);
}

#[tokio::test]
async fn an_embargo_survives_a_restart_and_lifts_on_time_afterwards() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Far enough ahead for a restart and the checks after it on a loaded machine.
    let embargo = seconds_from_now(10);
    let sent = proto::Article {
        embargo_time: Some(embargo),
        ..article("embargoed", TITLE_EMBARGOED)
    };
    let stored = publish(&mut client, &server.tokens.newsroom, sent)
        .await
        .unwrap()
        .article
        .unwrap();
    server.settle().await;
    drop(client);

    let server = server.restart().await;
    assert_in_no_feed(&server, &stored.guid, TITLE_EMBARGOED).await;
    let lifted = instant(&embargo);
    assert!(
        Utc::now() < lifted,
        "the restart took so long that the embargo ended before it could be checked"
    );
    let mut client = server.client().await;
    let got = get_article(&mut client, &server.tokens.newsroom, "embargoed").await;
    assert_eq!(got.state(), ArticleState::Embargoed);
    assert_eq!(got.etag, stored.etag);

    // Nothing is written after the restart: only the scheduler can bring it in.
    for path in politics_paths() {
        let (_, body, arrived) =
            wait_until(&server.url(&path), |b| b.contains(TITLE_EMBARGOED)).await;
        assert!(
            arrived >= lifted,
            "{path} showed it at {arrived}, before {lifted}"
        );
        assert!(parse(&body).entries.iter().any(|e| e.id == stored.guid));
    }
}

#[tokio::test]
async fn retracting_an_embargoed_article_leaves_no_trace_in_any_feed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let sent = proto::Article {
        embargo_time: Some(seconds_from_now(24 * 3600)),
        ..article("embargoed", TITLE_EMBARGOED)
    };
    let stored = publish(&mut client, token, sent)
        .await
        .unwrap()
        .article
        .unwrap();
    let retracted = retract(&mut client, token, "embargoed").await;
    assert_eq!(retracted.state(), ArticleState::Retracted);
    server.settle().await;
    // No tombstone either: it would tell readers about an article they never saw.
    assert_in_no_feed(&server, &stored.guid, TITLE_EMBARGOED).await;
    for path in all_feed_paths() {
        let (_, body) = fetch(&server.url(&path)).await;
        assert!(!body.contains("deleted-entry"), "{path}");
    }
}

#[tokio::test]
async fn a_retracted_article_leaves_a_tombstone_in_every_atom_feed_that_showed_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let first = publish(&mut client, token, article("first", "第一篇"))
        .await
        .unwrap()
        .article
        .unwrap();
    let second = publish(&mut client, token, article("second", "第二篇"))
        .await
        .unwrap()
        .article
        .unwrap();
    let rural = proto::Article {
        section: "rural".into(),
        ..article("rural", "乡村稿件")
    };
    publish(&mut client, token, rural).await.unwrap();
    server
        .wait_for_feed("/feeds/all/atom.xml", |b| {
            b.contains("第一篇") && b.contains("第二篇") && b.contains("乡村稿件")
        })
        .await;

    let retracted_first = retract(&mut client, token, "first").await;
    let retracted_second = retract(&mut client, token, "second").await;
    let first_when = retracted_first.retract_time.unwrap();
    let second_when = retracted_second.retract_time.unwrap();
    // Newest retraction first.
    let expected = format!(
        "{}{}",
        tombstone(&second.guid, &second_when),
        tombstone(&first.guid, &first_when)
    );
    for path in ["/feeds/politics/atom.xml", "/feeds/all/atom.xml"] {
        let (_, body, _) = wait_until(&server.url(path), |b| b.contains(&expected)).await;
        keep("tombstones", path, &body);
        let root = &body[body.find("<feed").unwrap()..];
        let root = &root[..root.find('>').unwrap()];
        assert!(
            root.contains(r#"xmlns:at="http://purl.org/atompub/tombstones/1.0""#),
            "{path}: {root}"
        );
        assert_eq!(
            tombstones_in(&body),
            [
                (second.guid.clone(), beijing_when(&second_when)),
                (first.guid.clone(), beijing_when(&first_when)),
            ],
            "{path}"
        );
        // Tombstones stand between the feed's metadata and its entries, and are no entries.
        if let Some(entry) = body.find("<entry>") {
            assert!(body.find(&expected).unwrap() < entry, "{path}");
        }
        let feed = parse(&body);
        let ids: Vec<_> = feed.entries.iter().map(|e| e.id.as_str()).collect();
        assert!(!ids.contains(&first.guid.as_str()), "{path}");
        assert!(!ids.contains(&second.guid.as_str()), "{path}");
        let expected_entries = if path.contains("/all/") { 1 } else { 0 };
        assert_eq!(feed.entries.len(), expected_entries, "{path}");
    }
    // RSS and JSON Feed simply drop the article; another section never showed it.
    for path in [
        "/feeds/politics/rss.xml",
        "/feeds/politics/feed.json",
        "/feeds/all/rss.xml",
        "/feeds/all/feed.json",
        "/feeds/rural/atom.xml",
        "/feeds/rural/rss.xml",
    ] {
        let (_, body) = fetch(&server.url(path)).await;
        keep("tombstones", path, &body);
        assert!(!body.contains(&first.guid), "{path}");
        assert!(!body.contains("deleted-entry"), "{path}");
    }

    // The tombstones depend on the store alone: a restart serves the same bytes.
    let (before_headers, before) = fetch(&server.url("/feeds/all/atom.xml")).await;
    drop(client);
    let server = server.restart().await;
    let (after_headers, after) = fetch(&server.url("/feeds/all/atom.xml")).await;
    assert_eq!(after, before);
    assert_eq!(after_headers["etag"], before_headers["etag"]);

    // Republishing brings the article back and takes its tombstone away.
    let mut client = server.client().await;
    publish(
        &mut client,
        &server.tokens.newsroom,
        article("first", "第一篇"),
    )
    .await
    .unwrap();
    let (_, body, _) = wait_until(&server.url("/feeds/politics/atom.xml"), |b| {
        b.contains("第一篇")
    })
    .await;
    assert_eq!(
        tombstones_in(&body),
        [(second.guid.clone(), beijing_when(&second_when))]
    );
    assert!(body.contains(&tombstone(&second.guid, &second_when)));
}

/// A server like [`TestServer`] whose configuration keeps tombstones for `window_seconds`.
struct ShortWindowServer {
    _dir: tempfile::TempDir,
    grpc_addr: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ShortWindowServer {
    async fn start(window_seconds: u32) -> Self {
        feedpub::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let config = EMBEDDED_CONFIG.replacen(
            "tombstone_days = 7",
            &format!("tombstone_seconds = {window_seconds}"),
            1,
        );
        assert_ne!(
            config, EMBEDDED_CONFIG,
            "the sample configuration sets tombstone_days"
        );
        let settings = Settings::parse(
            "short tombstone window",
            &config,
            Overrides::isolated_in(dir.path()),
        )
        .unwrap();
        let store = SqliteStore::open(&settings.server.data_dir).await.unwrap();
        let (_, token) = publishing::add_partner(&store, &settings, "newsroom", SectionGrant::All)
            .await
            .unwrap();
        store.close().await;
        let app = Application::build(settings).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
        tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("the server stops cleanly");
        });
        Self {
            _dir: dir,
            grpc_addr,
            http_addr,
            token: token.expose().to_owned(),
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }
}

impl Drop for ShortWindowServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test]
async fn a_tombstone_leaves_the_feed_when_its_window_ends_and_last_modified_says_so() {
    const WINDOW: u32 = 3;
    let server = ShortWindowServer::start(WINDOW).await;
    let mut client = PublisherServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();
    let stored = publish(&mut client, &server.token, article("gone", "将被撤回"))
        .await
        .unwrap()
        .article
        .unwrap();
    let url = server.url("/feeds/politics/atom.xml");
    wait_until(&url, |b| b.contains("将被撤回")).await;

    let retracted = retract(&mut client, &server.token, "gone").await;
    let when = retracted.retract_time.unwrap();
    let element = tombstone(&stored.guid, &when);
    wait_until(&url, |b| b.contains(&element)).await;

    // Without any further write, the tombstone goes when its window ends, not before.
    let window_end = instant(&when) + chrono::Duration::seconds(WINDOW.into());
    let (headers, body, arrived) = wait_until(&url, |b| !b.contains("deleted-entry")).await;
    assert!(
        arrived >= window_end,
        "the tombstone left at {arrived}, before its window ended at {window_end}"
    );
    assert!(!body.contains("xmlns:at="), "no tombstones, no namespace");
    assert!(parse(&body).entries.is_empty());
    assert_eq!(headers[LAST_MODIFIED], http_date(window_end).as_str());
}

fn photo() -> proto::Media {
    proto::Media {
        url: "https://img.example.com/youyu.jpg?w=1200&h=800".into(),
        mime_type: "image/jpeg".into(),
        length: 245_760,
        caption: "右玉县 &amp; 农旅融合\u{7} <示范园>".into(),
        width: 1200,
        height: 800,
    }
}

fn audio() -> proto::Media {
    proto::Media {
        url: "https://cdn.example.com/youyu.mp3".into(),
        mime_type: "audio/mpeg".into(),
        length: 0,
        caption: String::new(),
        width: 0,
        height: 0,
    }
}

#[tokio::test]
async fn media_files_reach_every_format_as_enclosures_media_content_and_attachments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let sent = proto::Article {
        media: vec![photo(), audio()],
        ..article("with-media", "有图有声")
    };
    let response = publish(&mut client, token, sent.clone()).await.unwrap();
    let caption = "右玉县 & 农旅融合 <示范园>";
    let stored = response.article.unwrap();
    assert_eq!(stored.media.len(), 2);
    assert_eq!(stored.media[0].caption, caption, "the caption is cleaned");
    assert_eq!(stored.media[0].width, 1200);
    assert_eq!(stored.media[1], audio());
    assert!(
        response
            .warnings
            .iter()
            .any(|w| w.starts_with("article.media[0].caption:")),
        "{:?}",
        response.warnings
    );
    assert_eq!(
        get_article(&mut client, token, "with-media").await.media,
        stored.media
    );
    let photo_url = "https://img.example.com/youyu.jpg?w=1200&h=800";
    let audio_url = "https://cdn.example.com/youyu.mp3";
    let escaped_photo_url = "https://img.example.com/youyu.jpg?w=1200&amp;h=800";

    // RSS: the first file as <enclosure>, every file as <media:content>.
    let rss = server
        .wait_for_feed("/feeds/politics/rss.xml", |b| b.contains("有图有声"))
        .await;
    keep("media", "/feeds/politics/rss.xml", &rss);
    assert!(rss.contains(r#"xmlns:media="http://search.yahoo.com/mrss/""#));
    assert!(rss.contains(&format!(
        r#"<enclosure url="{escaped_photo_url}" length="245760" type="image/jpeg"/>"#
    )));
    assert!(rss.contains(&format!(
        r#"<media:content fileSize="245760" height="800" medium="image" type="image/jpeg" url="{escaped_photo_url}" width="1200"><media:description type="plain">"#
    )), "{rss}");
    assert!(rss.contains(&format!(
        r#"<media:content medium="audio" type="audio/mpeg" url="{audio_url}">"#
    )));
    let entry = &parse(&rss).entries[0];
    let urls: Vec<_> = entry
        .media
        .iter()
        .flat_map(|m| &m.content)
        .map(|c| c.url.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(
        urls,
        [photo_url, photo_url, audio_url],
        "enclosure, then both"
    );
    assert_eq!(entry.media[0].content[0].size, Some(245_760));
    assert_eq!(
        entry.media[0].description.as_ref().unwrap().content,
        caption
    );

    // Atom: a link rel="enclosure" per file, the caption as its title.
    let atom = server
        .wait_for_feed("/feeds/all/atom.xml", |b| b.contains("有图有声"))
        .await;
    keep("media", "/feeds/all/atom.xml", &atom);
    assert!(atom.contains(&format!(
        r#"<link href="{escaped_photo_url}" rel="enclosure" type="image/jpeg" title="右玉县 &amp; 农旅融合 &lt;示范园&gt;" length="245760"/>"#
    )), "{atom}");
    let entry = &parse(&atom).entries[0];
    let enclosures: Vec<_> = entry
        .links
        .iter()
        .filter(|l| l.rel.as_deref() == Some("enclosure"))
        .map(|l| {
            (
                l.href.as_str(),
                l.media_type.as_deref(),
                l.title.as_deref(),
                l.length,
            )
        })
        .collect();
    assert_eq!(
        enclosures,
        [
            (photo_url, Some("image/jpeg"), Some(caption), Some(245_760)),
            (audio_url, Some("audio/mpeg"), None, None)
        ]
    );

    // JSON Feed: attachments, and the first image as the item's image.
    let json = server
        .wait_for_feed("/feeds/politics/feed.json", |b| b.contains("有图有声"))
        .await;
    keep("media", "/feeds/politics/feed.json", &json);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let item = &value["items"][0];
    assert_eq!(item["image"], photo_url);
    assert_eq!(
        item["attachments"],
        serde_json::json!([
            {"url": photo_url, "mime_type": "image/jpeg", "title": caption, "size_in_bytes": 245760},
            {"url": audio_url, "mime_type": "audio/mpeg"}
        ])
    );
    let links: Vec<_> = parse(&json).entries[0]
        .links
        .iter()
        .map(|l| (l.href.clone(), l.media_type.clone()))
        .collect();
    assert!(links.contains(&(photo_url.into(), Some("image/jpeg".into()))));
    assert!(links.contains(&(audio_url.into(), Some("audio/mpeg".into()))));

    // Media are content: the same files again change nothing, another caption does.
    let again = publish(&mut client, token, sent.clone())
        .await
        .unwrap()
        .article
        .unwrap();
    assert_eq!(again.etag, stored.etag);
    let mut recaptioned = sent;
    recaptioned.media[0].caption = "新的图片说明".into();
    let changed = publish(&mut client, token, recaptioned)
        .await
        .unwrap()
        .article
        .unwrap();
    assert_ne!(changed.etag, stored.etag);
    assert_eq!(changed.guid, stored.guid);
}

#[tokio::test]
async fn bad_media_and_embargo_fields_are_invalid_arguments_that_name_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let with = |media: Vec<proto::Media>| proto::Article {
        media,
        ..article("bad", "坏稿件")
    };
    let second = |change: &dyn Fn(&mut proto::Media)| {
        let mut bad = audio();
        change(&mut bad);
        with(vec![photo(), bad])
    };
    let cases: Vec<(&str, proto::Article)> = vec![
        (
            "article.media[1].url",
            second(&|m| m.url = "ftp://x/a.mp3".into()),
        ),
        ("article.media[1].url", second(&|m| m.url = String::new())),
        (
            "article.media[1].url",
            second(&|m| m.url = "/relative.mp3".into()),
        ),
        (
            "article.media[1].url",
            second(&|m| m.url = format!("https://x.example/{}", "a".repeat(2048))),
        ),
        (
            "article.media[1].mime_type",
            second(&|m| m.mime_type = String::new()),
        ),
        (
            "article.media[1].mime_type",
            second(&|m| m.mime_type = "mp3".into()),
        ),
        (
            "article.media[1].mime_type",
            second(&|m| m.mime_type = "audio/mpeg; q=1".into()),
        ),
        ("article.media[1].length", second(&|m| m.length = -1)),
        (
            "article.media[1].caption",
            second(&|m| m.caption = "长".repeat(1001)),
        ),
        ("article.media", with(vec![audio(); 21])),
        (
            "article.embargo_time",
            proto::Article {
                embargo_time: Some(Timestamp {
                    seconds: 1_686_092_400,
                    nanos: -1,
                }),
                ..article("bad", "坏稿件")
            },
        ),
        (
            "article.embargo_time",
            proto::Article {
                embargo_time: Some(seconds_from_now(7200)),
                expire_time: Some(seconds_from_now(3600)),
                ..article("bad", "坏稿件")
            },
        ),
    ];
    for (field, article) in cases {
        let status = publish(&mut client, token, article).await.unwrap_err();
        assert_invalid(&status, field);
    }
    let status = client
        .get_article(authed(
            token,
            GetArticleRequest {
                id: "bad".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing refused was stored");

    // An embargo before publish_time is accepted and changes nothing.
    let early = proto::Article {
        embargo_time: Some(Timestamp {
            seconds: 1_686_000_000,
            nanos: 0,
        }),
        ..article("early", "提前解禁")
    };
    let response = publish(&mut client, token, early).await.unwrap();
    let warned =
        ["article.embargo_time: is not after publish_time, so it has no effect (it is not kept)"];
    assert_eq!(response.warnings, warned);
    let stored = response.article.unwrap();
    assert_eq!(stored.state(), ArticleState::Published);
    assert_eq!(stored.embargo_time, None, "not kept");
    server
        .wait_for_feed("/feeds/politics/atom.xml", |b| b.contains("提前解禁"))
        .await;

    // Nor does one before a publish_time still to come: the article is merely scheduled,
    // so a partner without the embargo right may publish it, and it is not EMBARGOED.
    let now = chrono::Utc::now().timestamp();
    let scheduled = proto::Article {
        section: "rural".into(),
        publish_time: Some(Timestamp {
            seconds: now + 86_400,
            nanos: 0,
        }),
        embargo_time: Some(Timestamp {
            seconds: now + 3_600,
            nanos: 0,
        }),
        ..article("scheduled", "定时发布")
    };
    let response = publish(&mut client, &server.tokens.county, scheduled)
        .await
        .unwrap();
    assert_eq!(response.warnings, warned);
    let stored = response.article.unwrap();
    assert_ne!(stored.state(), ArticleState::Embargoed);
    assert_eq!(stored.embargo_time, None);
}

/// The Atom id and the self link of the feed at `body`.
fn id_and_self_link(body: &str) -> (String, String) {
    let feed = parse(body);
    let link = feed
        .links
        .iter()
        .find(|l| l.rel.as_deref() == Some("self"))
        .map(|l| l.href.clone())
        .expect("a self link");
    (feed.id, link)
}

/// A site that moves (its `base_url` changed: to `https://`, or from a first port to the
/// one readers use) keeps its feeds' Atom ids, which RFC 4287 says never change, while
/// their links follow it; so does a copy of its database made by export and import, served
/// elsewhere again.
#[tokio::test]
async fn a_moved_site_keeps_its_feeds_atom_ids_while_their_links_follow_it() {
    const PATH: &str = "/feeds/politics/atom.xml";
    const MOVED: &str = "https://news.example/";
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    let before = server.wait_for_feed(PATH, |b| b.contains("<entry>")).await;
    let (id, link) = id_and_self_link(&before);
    assert_eq!(id, link, "a first site's ids are its feeds' URLs");
    let (dir, tokens) = server.stop().await;

    let mut settings = common::settings(&dir);
    settings.site.base_url = url::Url::parse(MOVED).unwrap();
    let moved = TestServer::start_with_settings(dir, tokens, settings.clone()).await;
    let after = moved.wait_for_feed(PATH, |b| b.contains(MOVED)).await;
    assert_eq!(
        id_and_self_link(&after),
        (id.clone(), format!("{MOVED}feeds/politics/atom.xml"))
    );
    let data = moved.data_dir();
    let (dir, tokens) = moved.stop().await;

    let exported = common::binary::on_data(dir.path(), &data, &["export"]);
    let export = dir.path().join("site.jsonl");
    std::fs::write(&export, common::binary::stdout_of(&exported)).unwrap();
    let copy = dir.path().join("copy");
    let imported = common::binary::run(
        common::binary::feedpub(dir.path())
            .arg("import")
            .arg(&export)
            .arg("--data-dir")
            .arg(&copy),
    );
    assert!(imported.status.success(), "{imported:?}");
    settings.server.data_dir = copy;
    settings.server.feeds_dir = dir.path().join("copy-feeds");
    let copied = TestServer::start_with_settings(dir, tokens, settings).await;
    let served = copied.wait_for_feed(PATH, |b| b.contains("<entry>")).await;
    assert_eq!(
        id_and_self_link(&served),
        (id, format!("{MOVED}feeds/politics/atom.xml"))
    );
    copied.stop().await;
}

/// What the server acknowledged before it was told to stop is in the files of its feeds once
/// it has stopped, for whatever serves `feeds/` while no server runs: a publish and a
/// retraction answered while the server was busy building the feeds of a batch (a new
/// author and tag per article) reach every feed they touch, not only what was already
/// served when the stop came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_acknowledged_before_a_stop_are_in_the_files_it_leaves() {
    use feedpub::grpc::proto::PublishArticlesRequest;
    let server = TestServer::start().await;
    let newsroom = server.tokens.newsroom.clone();
    let mut client = server.client().await;
    let doomed = article("stop-retracted", "停止前撤回的稿件");
    publish(&mut client, &newsroom, doomed).await.unwrap();
    server.settle().await;
    let feeds = server.settings.server.feeds_dir.clone();
    let files = ["politics/feed.json", "politics/rss.xml", "all/atom.xml"];
    for file in files {
        let body = std::fs::read_to_string(feeds.join(file)).unwrap();
        assert!(body.contains("停止前撤回的稿件"), "{file} before");
    }

    let batch: Vec<PublishArticlesRequest> = (0..400)
        .map(|n| PublishArticlesRequest {
            requests: vec![PublishArticleRequest {
                article: Some(proto::Article {
                    section: "rural".into(),
                    authors: vec![format!("记者{n}")],
                    tags: vec![format!("专题{n}")],
                    ..article(&format!("stop-batch-{n}"), &format!("批量稿件{n}"))
                }),
                ..Default::default()
            }],
        })
        .collect();
    let results = client
        .publish_articles(authed(&newsroom, tokio_stream::iter(batch)))
        .await
        .unwrap()
        .into_inner()
        .results;
    let codes = common::result_codes(&results);
    assert!(codes.iter().all(|code| *code == Code::Ok), "{codes:?}");
    // The last two changes, and at once the stop, while the batch's feeds are built.
    let last = proto::Article {
        publish_time: Some(Timestamp {
            seconds: 1_686_200_000,
            nanos: 0,
        }),
        ..article("stop-published", "停止前最后发布的稿件")
    };
    publish(&mut client, &newsroom, last).await.unwrap();
    retract(&mut client, &newsroom, "stop-retracted").await;
    // The folders stay while `_dir` lives.
    let (_dir, _) = server.stop().await;

    for file in files {
        let body = std::fs::read_to_string(feeds.join(file)).unwrap();
        assert!(body.contains("停止前最后发布的稿件"), "{file}: the publish");
        assert!(!body.contains("停止前撤回的稿件"), "{file}: the retraction");
    }
    let author = FeedScope::author("记者399");
    let file = feeds.join(format!("{}/feed.json", author.path_segment()));
    let body = std::fs::read_to_string(file).unwrap();
    assert!(body.contains("批量稿件399"), "the batch's last author feed");
}
