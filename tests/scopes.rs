//! Author and tag feeds: the sample edition published over real gRPC, the feeds of its
//! authors and tags fetched over real HTTP and read back with feed-rs; corrections,
//! retractions, embargoes, same-pinyin names, OPML, metrics and restarts.

mod common;

use common::{TestServer, authed, ts};
use feedpub::demo::sample_edition;
use feedpub::domain::{FeedScope, name_slug};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{self, PublishArticleRequest, RetractArticleRequest};
use tonic::transport::Channel;

const FORMATS: [&str; 3] = ["rss.xml", "atom.xml", "feed.json"];
const RURAL_ID: &str = "2023-06-07-youyu-nonglv-ronghe";
const RURAL_TITLE: &str = "右玉县农旅融合助力乡村振兴";

fn parse(body: &[u8]) -> feed_rs::model::Feed {
    feed_rs::parser::parse(body).expect("feed-rs parses every feed")
}

fn author_path(name: &str, format: &str) -> String {
    format!("/feeds/authors/{}/{format}", name_slug(name))
}

fn tag_path(name: &str, format: &str) -> String {
    format!("/feeds/tags/{}/{format}", name_slug(name))
}

fn titles(feed: &feed_rs::model::Feed) -> Vec<String> {
    feed.entries
        .iter()
        .map(|e| e.title.clone().unwrap().content)
        .collect()
}

async fn publish(client: &mut PublisherServiceClient<Channel>, token: &str, a: proto::Article) {
    let request = PublishArticleRequest {
        article: Some(a),
        ..Default::default()
    };
    client
        .publish_article(authed(token, request))
        .await
        .expect("the article publishes");
}

async fn publish_sample(server: &TestServer) -> PublisherServiceClient<Channel> {
    let mut client = server.client().await;
    for article in sample_edition() {
        publish(&mut client, &server.tokens.newsroom, article).await;
    }
    server.settle().await;
    client
}

fn rural_report() -> proto::Article {
    sample_edition()
        .into_iter()
        .find(|a| a.id == RURAL_ID)
        .expect("the sample edition has the rural report")
}

/// Every format of a feed, parsed; the titles must agree across formats.
async fn entry_titles(server: &TestServer, path: impl Fn(&str) -> String) -> Vec<String> {
    let mut seen: Option<Vec<String>> = None;
    for format in FORMATS {
        let feed = parse(&server.get_bytes(&path(format)).await);
        let titles = titles(&feed);
        if let Some(previous) = &seen {
            assert_eq!(&titles, previous, "{}", path(format));
        }
        seen = Some(titles);
    }
    seen.unwrap()
}

#[tokio::test]
async fn author_and_tag_feeds_carry_exactly_the_articles_with_that_name() {
    let server = TestServer::start().await;
    publish_sample(&server).await;

    for format in FORMATS {
        let feed = parse(&server.get_bytes(&author_path("陈淑兰", format)).await);
        assert_eq!(
            feed.title.clone().unwrap().content,
            "朔州日报 · 作者：陈淑兰",
            "{format}"
        );
        assert_eq!(
            titles(&feed),
            [
                "全市“十四五”高速及国省道干线公路规划中期调整研讨会召开",
                "我市奋力谱写档案事业发展新篇章",
            ],
            "{format}"
        );
        for entry in &feed.entries {
            let authors: Vec<_> = entry.authors.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(authors, ["陈淑兰"], "{format}");
        }
    }
    // The co-authored report is in the feed of each of its authors.
    for author in ["刘磊", "张智宙"] {
        let feed = parse(&server.get_bytes(&author_path(author, "atom.xml")).await);
        assert_eq!(
            feed.title.clone().unwrap().content,
            format!("朔州日报 · 作者：{author}")
        );
        assert_eq!(titles(&feed), [RURAL_TITLE]);
        let authors: Vec<_> = feed.entries[0]
            .authors
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(authors, ["刘磊", "张智宙"]);
    }
    for format in FORMATS {
        let feed = parse(&server.get_bytes(&tag_path("乡村振兴", format)).await);
        assert_eq!(
            feed.title.clone().unwrap().content,
            "朔州日报 · 标签：乡村振兴",
            "{format}"
        );
        assert_eq!(titles(&feed), [RURAL_TITLE], "{format}");
    }
    // Same visibility rules as the sections: the notice, stored already expired, was never
    // seen, so its tag has no feed at all (a feed's title would name it).
    for format in FORMATS {
        let path = tag_path("干部任前公示", format);
        let response = reqwest::get(server.url(&path)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // The files are on disk too, beside their precompressed siblings.
    let dir = server
        .dir
        .path()
        .join("feeds/authors")
        .join(name_slug("陈淑兰"));
    for name in ["rss.xml", "atom.xml.gz", "feed.json.br"] {
        assert!(dir.join(name).is_file(), "{}", dir.join(name).display());
    }
}

#[tokio::test]
async fn a_correction_moves_the_article_between_author_and_tag_feeds() {
    let server = TestServer::start().await;
    let mut client = publish_sample(&server).await;

    let corrected = proto::Article {
        authors: vec!["张智宙".into()],
        tags: vec!["右玉县".into(), "文旅融合".into()],
        ..rural_report()
    };
    publish(&mut client, &server.tokens.newsroom, corrected).await;
    server.settle().await;

    assert!(
        entry_titles(&server, |f| author_path("刘磊", f))
            .await
            .is_empty()
    );
    assert!(
        entry_titles(&server, |f| tag_path("乡村振兴", f))
            .await
            .is_empty()
    );
    assert_eq!(
        entry_titles(&server, |f| author_path("张智宙", f)).await,
        [RURAL_TITLE]
    );
    assert_eq!(
        entry_titles(&server, |f| tag_path("文旅融合", f)).await,
        [RURAL_TITLE]
    );
}

#[tokio::test]
async fn a_retraction_leaves_author_and_tag_feeds_with_a_tombstone_in_atom() {
    let server = TestServer::start().await;
    let mut client = publish_sample(&server).await;
    let guid = parse(&server.get_bytes(&author_path("刘磊", "atom.xml")).await).entries[0]
        .id
        .clone();

    let request = RetractArticleRequest {
        id: RURAL_ID.into(),
        reason: "署名有误".into(),
        ..Default::default()
    };
    client
        .retract_article(authed(&server.tokens.newsroom, request))
        .await
        .unwrap();
    server.settle().await;

    for path in [
        author_path("刘磊", "atom.xml"),
        tag_path("乡村振兴", "atom.xml"),
    ] {
        let body = server.get_bytes(&path).await;
        assert!(parse(&body).entries.is_empty(), "{path}");
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.contains(&format!("<at:deleted-entry ref=\"{guid}\"")),
            "{path}: {body}"
        );
    }
    assert!(
        entry_titles(&server, |f| author_path("张智宙", f))
            .await
            .is_empty()
    );
    // The other authors' feeds are untouched.
    assert_eq!(
        entry_titles(&server, |f| author_path("陈淑兰", f))
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn names_with_the_same_pinyin_get_two_slugs_and_two_feeds() {
    let server = TestServer::start().await;
    let mut client = publish_sample(&server).await;
    let other = proto::Article {
        id: "2023-06-07-liu-lei-brief".into(),
        section: "politics".into(),
        title: "刘雷采写的快讯".into(),
        authors: vec!["刘雷".into()],
        content_text: "本报讯 6月6日，会议召开。".into(),
        publish_time: Some(ts(1_686_092_400)),
        ..Default::default()
    };
    publish(&mut client, &server.tokens.newsroom, other).await;
    server.settle().await;

    let (lei_stone, lei_thunder) = (name_slug("刘磊"), name_slug("刘雷"));
    assert_ne!(lei_stone, lei_thunder);
    assert!(lei_stone.starts_with("liu-lei-") && lei_thunder.starts_with("liu-lei-"));
    assert_eq!(
        entry_titles(&server, |f| author_path("刘磊", f)).await,
        [RURAL_TITLE]
    );
    assert_eq!(
        entry_titles(&server, |f| author_path("刘雷", f)).await,
        ["刘雷采写的快讯"]
    );
}

#[tokio::test]
async fn an_embargoed_article_enters_its_author_feed_when_the_embargo_ends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let embargo = chrono::Utc::now().timestamp() + 2;
    let article = proto::Article {
        id: "embargoed".into(),
        section: "politics".into(),
        title: "禁发稿：新作者的报道".into(),
        authors: vec!["王新".into()],
        tags: vec!["禁发".into()],
        content_text: "本报讯 6月6日，会议召开。".into(),
        publish_time: Some(ts(1_686_092_400)),
        embargo_time: Some(ts(embargo)),
        ..Default::default()
    };
    publish(&mut client, &server.tokens.newsroom, article).await;
    server.settle().await;
    if chrono::Utc::now().timestamp() < embargo {
        // Its names have no feeds yet: a feed's title would give them away.
        for path in [
            author_path("王新", "atom.xml"),
            tag_path("禁发", "feed.json"),
        ] {
            let early = reqwest::get(format!("http://{}{path}", server.http_addr))
                .await
                .unwrap();
            assert_eq!(early.status(), 404, "{path} before the embargo ends");
            let folder = server.dir.path().join(path.trim_start_matches('/'));
            assert!(!folder.parent().unwrap().exists(), "{path} written to disk");
        }
        let opml = server.get_bytes("/feeds.opml").await;
        assert!(!String::from_utf8_lossy(&opml).contains("禁发"));
        let politics = parse(&server.get_bytes("/feeds/politics/atom.xml").await);
        assert!(!titles(&politics).iter().any(|t| t.contains("禁发稿")));
    }
    for path in [
        author_path("王新", "feed.json"),
        tag_path("禁发", "rss.xml"),
    ] {
        server
            .wait_for_feed(&path, |body| body.contains("禁发稿：新作者的报道"))
            .await;
    }
}

#[tokio::test]
async fn opml_lists_author_and_tag_feeds_under_their_own_outlines_and_the_index_does_not() {
    let server = TestServer::start().await;
    let mut client = publish_sample(&server).await;

    let opml = String::from_utf8(server.get_bytes("/feeds.opml").await).unwrap();
    let authors = opml.find("<outline text=\"作者 · Authors\"").expect(&opml);
    let tags = opml.find("<outline text=\"标签 · Tags\"").expect(&opml);
    assert!(authors < tags);
    let chen = opml
        .find(&format!("feeds/authors/{}/atom.xml", name_slug("陈淑兰")))
        .expect(&opml);
    let rural = opml
        .find(&format!("feeds/tags/{}/atom.xml", name_slug("乡村振兴")))
        .expect(&opml);
    assert!(authors < chen && chen < tags && tags < rural, "{opml}");
    assert!(opml.contains("朔州日报 · 作者：陈淑兰\""), "{opml}");
    // Once each, in Atom.
    assert!(
        !opml.contains("/rss.xml") && !opml.contains("/feed.json"),
        "{opml}"
    );
    // Only names whose feeds show something: the expired notice's tag is not listed.
    assert!(!opml.contains(&name_slug("干部任前公示")), "{opml}");
    // The same store lists the same feeds in the same order.
    assert_eq!(
        opml,
        String::from_utf8(server.get_bytes("/feeds.opml").await).unwrap()
    );

    let index = String::from_utf8(server.get_bytes("/").await).unwrap();
    assert!(!index.contains("/feeds/authors/"), "{index}");
    assert!(!index.contains("/feeds/tags/"), "{index}");

    // Served as a feed is: compressed, with a strong ETag that a new name changes.
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = server.url("/feeds.opml");
    let fetch = |headers: &[(&str, &str)]| {
        let mut request = http.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let first = fetch(&[]).await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(first.headers().contains_key("cache-control"));
    assert!(first.headers().contains_key("last-modified"));
    let again = fetch(&[("if-none-match", &etag)]).await.unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::NOT_MODIFIED);
    let gzipped = fetch(&[("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    publish(
        &mut client,
        &server.tokens.newsroom,
        proto::Article {
            id: "new-byline".into(),
            authors: vec!["新署名".into()],
            ..rural_report()
        },
    )
    .await;
    server.settle().await;
    let changed = fetch(&[("if-none-match", &etag)]).await.unwrap();
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let listed = changed.text().await.unwrap();
    assert!(listed.contains(&name_slug("新署名")), "{listed}");
    // By date alone, the first list is not current either: the new one is dated later, or
    // within the same second (most runs), which then names neither.
    let first_date = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let by_date = fetch(&[("if-modified-since", &first_date)]).await.unwrap();
    assert_eq!(by_date.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn author_and_tag_requests_are_counted_under_one_label_each() {
    let server = TestServer::start().await;
    publish_sample(&server).await;
    server.get_bytes(&author_path("陈淑兰", "atom.xml")).await;
    server.get_bytes(&tag_path("乡村振兴", "feed.json")).await;

    let metrics = String::from_utf8(server.get_bytes("/metrics").await).unwrap();
    let requests = |feed: &str, format: &str| {
        metrics.lines().any(|line| {
            line.starts_with("feedpub_http_requests_total{")
                && line.contains(&format!("feed=\"{feed}\""))
                && line.contains(&format!("format=\"{format}\""))
        })
    };
    assert!(requests("author", "atom"), "{metrics}");
    assert!(requests("tag", "json"), "{metrics}");
    assert!(!metrics.contains(&name_slug("陈淑兰")), "{metrics}");
}

#[tokio::test]
async fn slugs_and_feeds_are_the_same_after_a_restart() {
    let server = TestServer::start().await;
    let mut client = publish_sample(&server).await;
    // 刘磊 leaves the byline: his feed is emptied now, and removed at the next start.
    let corrected = proto::Article {
        authors: vec!["张智宙".into()],
        ..rural_report()
    };
    publish(&mut client, &server.tokens.newsroom, corrected).await;
    server.settle().await;
    assert!(
        entry_titles(&server, |f| author_path("刘磊", f))
            .await
            .is_empty()
    );
    let mut before = Vec::new();
    for name in ["陈淑兰", "张智宙", "武跃林"] {
        for format in FORMATS {
            let path = author_path(name, format);
            before.push((path.clone(), server.get_bytes(&path).await));
        }
    }
    let tag_before = server.get_bytes(&tag_path("乡村振兴", "atom.xml")).await;

    let server = server.restart().await;
    // The author and tag feeds the start found are built after it listens.
    server.settle().await;
    for (path, bytes) in before {
        assert_eq!(server.get_bytes(&path).await, bytes, "{path}");
    }
    assert_eq!(
        server.get_bytes(&tag_path("乡村振兴", "atom.xml")).await,
        tag_before
    );
    let gone = reqwest::get(server.url(&author_path("刘磊", "atom.xml")))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let folder = server
        .dir
        .path()
        .join("feeds/authors")
        .join(name_slug("刘磊"));
    assert!(!folder.exists(), "{}", folder.display());
}

/// A name whose only article is put back under embargo keeps its (emptied) feeds while
/// they are served, and the archive page they link to answers.
#[tokio::test]
async fn a_name_whose_only_article_goes_back_under_embargo_keeps_a_working_archive_link() {
    // Pages of one article: the name's one fills its first.
    let server = TestServer::start_with(|s| s.feeds.max_items = 1).await;
    let mut client = server.client().await;
    let article = |embargo: Option<i64>| proto::Article {
        id: "re-embargoed".into(),
        section: "politics".into(),
        title: "又被禁发的稿件".into(),
        authors: vec!["回禁作者".into()],
        content_text: "本报讯 6月6日，会议召开。".into(),
        publish_time: Some(ts(1_686_092_400)),
        embargo_time: embargo.map(ts),
        ..Default::default()
    };
    publish(&mut client, &server.tokens.newsroom, article(None)).await;
    let path = author_path("回禁作者", "atom.xml");
    server
        .wait_for_feed(&path, |body| body.contains("又被禁发的稿件"))
        .await;
    let later = chrono::Utc::now().timestamp() + 3_600;
    publish(&mut client, &server.tokens.newsroom, article(Some(later))).await;
    let body = server
        .wait_for_feed(&path, |body| !body.contains("又被禁发的稿件"))
        .await;
    let start = body
        .find("rel=\"prev-archive\"")
        .expect("a prev-archive link");
    let tag_start = body[..start].rfind('<').unwrap();
    let href = body[tag_start..start]
        .split("href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let archive = href.split_once("/feeds/").unwrap().1;
    let page = reqwest::get(server.url(&format!("/feeds/{archive}")))
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{href}");
}

/// A start serves `all` and the sections before the author and tag feeds it finds, which the
/// scheduler builds after (there can be tens of thousands): until then a request for one is
/// answered 503 with `Retry-After`, not 404, and no cache keeps that answer. Here the
/// scheduler is held back, so the window stays open until the test lets it run.
#[tokio::test]
async fn after_a_restart_a_name_feed_not_built_yet_asks_to_be_fetched_again() {
    use feedpub::publication::Publication;
    use std::sync::Arc;
    let server = TestServer::start().await;
    publish_sample(&server).await;
    server.settle().await;
    let author = author_path("陈淑兰", "atom.xml");
    let politics = "/feeds/politics/atom.xml";
    let (author_before, politics_before) = (
        server.get_bytes(&author).await,
        server.get_bytes(politics).await,
    );
    let settings = server.settings.clone();
    let (dir, _tokens) = server.stop().await;

    // The server's parts as `serve` puts them together, but the scheduler.
    let store = feedpub::storage::open(&settings.server).await.unwrap();
    let health = feedpub::health::Health::new();
    let folder = feedpub::app::lock_feeds_folder(&settings.server).unwrap();
    let (publication, scheduler) = Publication::start(
        store.clone(),
        Arc::new(settings.clone()),
        health.clone(),
        folder,
    )
    .await
    .unwrap();
    let (hub, _hub_tasks) =
        feedpub::websub::Hub::start(store.clone(), &settings, publication.clone()).unwrap();
    let base_url = settings.site.base_url.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = |path: &str| format!("http://{addr}{path}");
    let (author_url, politics_url) = (url(&author), url(politics));
    let unknown_url = url(&author_path("无名氏", "atom.xml"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut until_stopped = stopped.clone();
    let http = tokio::spawn({
        let (publication, settings) = (publication.clone(), settings.clone());
        async move {
            let stopped = async move {
                let _ = until_stopped.wait_for(|stop| *stop).await;
            };
            feedpub::http::serve(
                listener,
                publication,
                &settings,
                &hub,
                health,
                None,
                stopped,
            )
            .await
        }
    });

    let response = reqwest::get(&politics_url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), politics_before);
    let response = reqwest::get(&author_url).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(reqwest::get(&unknown_url).await.unwrap().status(), 404);
    let unbuilt = publication.unbuilt();
    assert!(unbuilt > 0);
    // Alive, but not ready for a load balancer to send it every reader yet.
    let starting = format!("starting: {unbuilt} author and tag feeds still to build\n");
    let health = reqwest::get(url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), format!("ok\n{starting}"));
    let ready = reqwest::get(url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "1");
    assert_eq!(ready.text().await.unwrap(), starting);
    // A subscription to it is taken meanwhile, as to any feed; to a name with none, not.
    let subscribe = async |path: &str| {
        let topic = format!("{base_url}{}", path.trim_start_matches('/'));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("hub.mode", "subscribe"),
                ("hub.topic", topic.as_str()),
                ("hub.callback", "https://8.8.8.8/cb"),
            ])
            .finish();
        let response = reqwest::Client::new()
            .post(url("/websub"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(subscribe(&author).await.0, 202);
    let (status, text) = subscribe(&author_path("无名氏", "atom.xml")).await;
    assert_eq!(status, 400);
    assert!(text.contains("hub.topic"), "{text}");
    assert!(
        publication
            .named_scopes()
            .contains(&FeedScope::author("陈淑兰")),
        "listed from the start"
    );

    let scheduler = tokio::spawn(scheduler.run(stopped));
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let response = loop {
        let response = reqwest::get(&author_url).await.unwrap();
        if response.status() != 503 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "never built");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), author_before);
    // Every feed found is built once the last of them is served.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while publication.unbuilt() > 0 {
        assert!(std::time::Instant::now() < deadline, "never all built");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let ready = reqwest::get(url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\n");
    let health = reqwest::get(url("/healthz")).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let _ = stop.send(true);
    scheduler.await.unwrap();
    http.await.unwrap().unwrap();
    store.close().await;
    drop(dir);
}
