//! Archived feeds (RFC 5005): every feed's whole history is reachable from its current
//! document and the archive pages its `prev-archive` links lead to, and an archive page
//! (only full pages are) never changes its entries.

mod common;

use common::{TestServer, authed, ts};
use feedpub::grpc::proto::{self, PublishArticleRequest, RetractArticleRequest};
use reqwest::StatusCode;
use std::collections::{HashMap, HashSet};

const BASE: &str = "http://127.0.0.1:8080";

async fn publish_range(server: &TestServer, range: std::ops::Range<usize>) {
    let client = server.client().await;
    let mut tasks = Vec::new();
    for i in range {
        let mut client = client.clone();
        let token = server.tokens.newsroom.clone();
        tasks.push(tokio::spawn(async move {
            let article = proto::Article {
                id: format!("arc-{i:03}"),
                section: "politics".into(),
                title: format!("档案 {i:03}"),
                authors: vec!["陈淑兰".into()],
                content_text: format!("第 {i} 篇。"),
                publish_time: Some(ts(1_686_092_400 + i as i64 * 60)),
                ..Default::default()
            };
            let request = PublishArticleRequest {
                article: Some(article),
                ..Default::default()
            };
            client
                .publish_article(authed(&token, request))
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.settle().await;
}

/// The `href` of the `<link>` (Atom) or `<atom:link>` (RSS) with this `rel`.
fn link(xml: &str, rel: &str) -> Option<String> {
    let marker = format!("rel=\"{rel}\"");
    let at = xml.find(&marker)?;
    let start = xml[..at].rfind('<')?;
    let tag = &xml[start..at];
    let href = tag.split("href=\"").nth(1)?.split('"').next()?;
    Some(href.to_owned())
}

fn path_of(url: &str) -> &str {
    url.strip_prefix(BASE).expect("a URL of this site")
}

fn entry_ids(xml: &str) -> Vec<String> {
    feed_rs::parser::parse(xml.as_bytes())
        .expect("feed-rs parses every archive page")
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Keeps a copy of an archive document for the independent validators run by CI.
fn keep_for_validators(path: &str, body: &str) {
    let file = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/feed-samples/archive"
    ))
    .join(path.trim_start_matches("/feeds/"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, body).unwrap();
}

/// Follows `prev-archive` from the current document: `(path, body)` newest page first.
async fn walk(server: &TestServer, current: &str) -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut body = String::from_utf8(server.get_bytes(current).await).unwrap();
    while let Some(prev) = link(&body, "prev-archive") {
        let path = path_of(&prev).to_owned();
        body = String::from_utf8(server.get_bytes(&path).await).unwrap();
        keep_for_validators(&path, &body);
        pages.push((path, body.clone()));
        assert!(pages.len() < 100, "prev-archive links loop");
    }
    pages
}

#[tokio::test]
async fn the_whole_history_is_reachable_through_prev_archive_links_in_atom_and_rss() {
    let server = TestServer::start().await;
    // Two full pages, then twenty on the open page (all among the newest fifty).
    publish_range(&server, 0..100).await;
    publish_range(&server, 100..120).await;

    for (current, format) in [
        ("/feeds/politics/atom.xml", "atom.xml"),
        ("/feeds/politics/rss.xml", "rss.xml"),
    ] {
        let current_body = String::from_utf8(server.get_bytes(current).await).unwrap();
        let current_ids = entry_ids(&current_body);
        assert_eq!(current_ids.len(), 50);
        assert!(
            !current_body.contains("fh:archive"),
            "the current document is no archive"
        );
        let pages = walk(&server, current).await;
        let paths: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [2, 1].map(|n| format!("/feeds/politics/archive/{n}/{format}")),
            "newest full page first"
        );
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (path, body) in &pages {
            assert!(body.contains("<fh:archive"), "{path}");
            assert!(
                body.contains(r#"xmlns:fh="http://purl.org/syndication/history/1.0""#),
                "{path}"
            );
            assert_eq!(
                link(body, "current").as_deref(),
                Some(&*format!("{BASE}{current}")),
                "{path}"
            );
            let ids = entry_ids(body);
            assert_eq!(ids.len(), 50, "only full pages are archive pages: {path}");
            for id in ids {
                *seen.entry(id).or_default() += 1;
            }
        }
        assert!(seen.values().all(|n| *n == 1), "each on exactly one page");
        let all: HashSet<&String> = seen.keys().chain(&current_ids).collect();
        assert_eq!(all.len(), 120, "every article is in the archive or current");
        assert_eq!(
            link(&pages[0].1, "next-archive"),
            None,
            "page 2 is the newest"
        );
        assert_eq!(
            link(&pages[1].1, "next-archive").as_deref(),
            Some(&*format!("{BASE}/feeds/politics/archive/2/{format}"))
        );
    }

    // JSON Feed pages through next_url.
    let mut json: serde_json::Value =
        serde_json::from_slice(&server.get_bytes("/feeds/politics/feed.json").await).unwrap();
    let mut json_pages = 0;
    while let Some(next) = json["next_url"].as_str() {
        let body = server.get_bytes(path_of(next)).await;
        keep_for_validators(path_of(next), std::str::from_utf8(&body).unwrap());
        json = serde_json::from_slice(&body).unwrap();
        json_pages += 1;
        assert!(json_pages < 10);
    }
    assert_eq!(json_pages, 2);
}

/// A reader that keeps a feed's whole history as RFC 5005 §4.2 says: it takes the
/// entries of the current document, then follows `prev-archive` until it meets an archive
/// page it has already read, which it may take as unchanged.
#[derive(Default)]
struct HistoryReader {
    pages_read: HashSet<String>,
    entries: HashSet<String>,
}

impl HistoryReader {
    async fn poll(&mut self, server: &TestServer, current: &str) {
        let body = String::from_utf8(server.get_bytes(current).await).unwrap();
        self.entries.extend(entry_ids(&body));
        let mut prev = link(&body, "prev-archive");
        while let Some(url) = prev {
            let path = path_of(&url).to_owned();
            if !self.pages_read.insert(path.clone()) {
                break;
            }
            let page = String::from_utf8(server.get_bytes(&path).await).unwrap();
            self.entries.extend(entry_ids(&page));
            prev = link(&page, "prev-archive");
        }
    }
}

/// More articles between two polls than the current document holds: a reader following
/// RFC 5005 still ends with every one, since no page it has read gains entries later.
#[tokio::test]
async fn a_reader_that_stops_at_pages_it_has_read_misses_no_article() {
    let server = TestServer::start().await;
    let mut reader = HistoryReader::default();
    // Ends on a full page, so that every article is in the archive.
    for range in [0..30, 30..110, 110..190, 190..250] {
        publish_range(&server, range).await;
        reader.poll(&server, "/feeds/politics/atom.xml").await;
    }
    let every: HashSet<String> = walk(&server, "/feeds/politics/atom.xml")
        .await
        .iter()
        .flat_map(|(_, body)| entry_ids(body))
        .collect();
    assert_eq!(every.len(), 250);
    let missed: Vec<_> = every.difference(&reader.entries).collect();
    assert!(missed.is_empty(), "the reader missed {missed:?}");
}

/// A correction of an article that has left the newest, which readers saw on a page they
/// need never fetch again, is in the current documents of its section and `all`, in
/// every format, as well as on its page.
#[tokio::test]
async fn a_correction_of_an_archived_article_is_in_the_current_documents() {
    let server = TestServer::start().await;
    // One full page, then ten on the open page, all among the newest fifty: published at
    // once, the last ten stored could be older ones, which the current documents then
    // show too (the open page is in them).
    publish_range(&server, 0..50).await;
    publish_range(&server, 50..60).await;
    let corrected = proto::Article {
        id: "arc-000".into(),
        section: "politics".into(),
        title: "更正：档案 000".into(),
        authors: vec!["陈淑兰".into()],
        content_text: "第 0 篇，已更正。".into(),
        publish_time: Some(ts(1_686_092_400)),
        ..Default::default()
    };
    let mut client = server.client().await;
    let request = PublishArticleRequest {
        article: Some(corrected),
        ..Default::default()
    };
    let answer = client
        .publish_article(authed(&server.tokens.newsroom, request))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!(answer.version, 2);
    for feed in ["politics", "all"] {
        for format in ["atom.xml", "rss.xml", "feed.json"] {
            let path = format!("/feeds/{feed}/{format}");
            let body = server.wait_for_feed(&path, |b| b.contains("已更正")).await;
            assert!(body.contains("更正：档案 000"), "{path}");
            if format == "atom.xml" {
                // The newest 50, and the one corrected.
                assert_eq!(entry_ids(&body).len(), 51, "{path}");
            }
        }
    }
    let page =
        String::from_utf8(server.get_bytes("/feeds/politics/archive/1/atom.xml").await).unwrap();
    assert!(page.contains("已更正"), "the page holds the correction too");
}

#[tokio::test]
async fn a_full_archive_page_never_changes_and_a_new_page_starts_when_the_last_fills() {
    let server = TestServer::start().await;
    // Pages follow the order articles were first stored, and concurrent publishes commit in
    // any order: `arc-000`, retracted below, goes in alone first so that it is on page 1.
    publish_range(&server, 0..1).await;
    publish_range(&server, 1..120).await;
    let page1 = server.get_bytes("/feeds/politics/archive/1/atom.xml").await;
    let page2 = server.get_bytes("/feeds/politics/archive/2/atom.xml").await;
    let open = reqwest::get(server.url("/feeds/politics/archive/3/atom.xml"))
        .await
        .unwrap();
    assert_eq!(
        open.status(),
        StatusCode::NOT_FOUND,
        "the open page is no archive page"
    );

    publish_range(&server, 120..151).await;
    let same = |a: &[u8], b: &[u8]| a == b;
    let page1_now = server.get_bytes("/feeds/politics/archive/1/atom.xml").await;
    assert!(
        same(&page1_now, &page1),
        "a full page changed when newer articles came"
    );
    let page2_now =
        String::from_utf8(server.get_bytes("/feeds/politics/archive/2/atom.xml").await).unwrap();
    assert_eq!(
        entry_ids(&page2_now),
        entry_ids(std::str::from_utf8(&page2).unwrap()),
        "the newest page kept its entries when the next filled"
    );
    assert_eq!(
        link(&page2_now, "next-archive").as_deref(),
        Some(&*format!("{BASE}/feeds/politics/archive/3/atom.xml")),
        "and links the page after it"
    );
    let page3 =
        String::from_utf8(server.get_bytes("/feeds/politics/archive/3/atom.xml").await).unwrap();
    assert_eq!(entry_ids(&page3).len(), 50);
    let current = String::from_utf8(server.get_bytes("/feeds/politics/atom.xml").await).unwrap();
    assert_eq!(
        link(&current, "prev-archive").as_deref(),
        Some(&*format!("{BASE}/feeds/politics/archive/3/atom.xml"))
    );
    let open = reqwest::get(server.url("/feeds/politics/archive/4/atom.xml"))
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::NOT_FOUND, "one on the open page");

    // A retraction takes the article off its page; no other article moves.
    let page1_ids = entry_ids(std::str::from_utf8(&page1).unwrap());
    let mut client = server.client().await;
    let request = RetractArticleRequest {
        id: "arc-000".into(),
        reason: "测试".into(),
        ..Default::default()
    };
    let gone = client
        .retract_article(authed(&server.tokens.newsroom, request))
        .await
        .unwrap()
        .into_inner();
    server.settle().await;
    assert!(page1_ids.contains(&gone.guid), "{} is on page 1", gone.guid);
    let page1_now =
        String::from_utf8(server.get_bytes("/feeds/politics/archive/1/atom.xml").await).unwrap();
    let expected: Vec<_> = page1_ids
        .into_iter()
        .filter(|id| *id != gone.guid)
        .collect();
    assert_eq!(entry_ids(&page1_now), expected);
    let page2_after = server.get_bytes("/feeds/politics/archive/2/atom.xml").await;
    assert!(
        same(&page2_after, page2_now.as_bytes()),
        "a retraction on page 1 changed page 2"
    );
}

#[tokio::test]
async fn archive_pages_answer_conditional_requests_and_unknown_pages_are_not_found() {
    let server = TestServer::start().await;
    publish_range(&server, 0..60).await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/all/archive/1/rss.xml");
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        first.headers()["content-type"],
        "application/rss+xml; charset=utf-8"
    );
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    for path in [
        "/feeds/all/archive/2/rss.xml",
        "/feeds/all/archive/3/rss.xml",
        "/feeds/all/archive/0/rss.xml",
        "/feeds/all/archive/01/rss.xml",
        "/feeds/all/archive/x/rss.xml",
        "/feeds/sports/archive/1/rss.xml",
        "/feeds/all/archive/1/other.xml",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn author_and_tag_feeds_have_archives_too() {
    let server = TestServer::start().await;
    publish_range(&server, 0..60).await;
    let author = format!(
        "/feeds/authors/{}/atom.xml",
        feedpub::domain::name_slug("陈淑兰")
    );
    let pages = walk(&server, &author).await;
    assert_eq!(pages.len(), 1, "60 articles fill one page of 50");
    let ids: usize = pages.iter().map(|(_, body)| entry_ids(body).len()).sum();
    assert_eq!(ids, 50);
    for (path, body) in &pages {
        assert!(path.starts_with("/feeds/authors/"), "{path}");
        assert!(body.contains("<fh:archive"), "{path}");
    }
}

/// A page holding an article still under embargo changes when the embargo ends, full or
/// not: it is cached like the newest page until then, never for a day.
#[tokio::test]
async fn a_full_page_with_an_article_under_embargo_is_not_cached_as_final() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let embargo = ts(chrono::Utc::now().timestamp() + 3_600);
    let embargoed = |title: &str| PublishArticleRequest {
        article: Some(proto::Article {
            id: "arc-embargoed".into(),
            section: "politics".into(),
            title: title.into(),
            authors: vec!["陈淑兰".into()],
            content_text: "禁发稿。".into(),
            publish_time: Some(ts(1_686_092_400)),
            embargo_time: Some(embargo),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .publish_article(authed(&server.tokens.newsroom, embargoed("禁发稿 档案")))
        .await
        .unwrap();
    // Two full pages: the embargoed article's is not the newest.
    publish_range(&server, 1..100).await;
    let cache_control = |path: &'static str| {
        let url = server.url(path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let value = response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .to_owned();
            (value, response.text().await.unwrap())
        }
    };
    let (page1, body) = cache_control("/feeds/politics/archive/1/atom.xml").await;
    assert_eq!(
        entry_ids(&body).len(),
        49,
        "the embargoed slot shows nothing yet"
    );
    assert!(!body.contains("禁发稿"));
    assert!(!page1.contains("86400"), "{page1}");
    let (page2, _) = cache_control("/feeds/politics/archive/2/atom.xml").await;
    let (current, _) = cache_control("/feeds/politics/atom.xml").await;
    assert_eq!(page1, current, "cached like the newest page");
    assert_eq!(page2, current);
}

/// The newest archive page is cached like the current documents: with the section's own
/// `max_age` when it has one. A page before it is cached for a tenth of the time since it
/// last changed, no less than its feed's `max_age`: just filled, as here, like the newest
/// (a day only once ten days have passed; the unit test of `page_max_age` covers it).
#[tokio::test]
async fn the_newest_page_takes_the_max_age_of_its_section() {
    let politics = feedpub::domain::SectionSlug::parse("politics").unwrap();
    let server = TestServer::start_with(|s| s.feeds.section_max_age.push((politics, 7))).await;
    publish_range(&server, 0..100).await;
    for (path, expected) in [
        ("/feeds/politics/atom.xml", "public, max-age=7"),
        ("/feeds/politics/archive/2/atom.xml", "public, max-age=7"),
        ("/feeds/politics/archive/1/atom.xml", "public, max-age=7"),
        ("/feeds/all/archive/2/atom.xml", "public, max-age=60"),
        ("/feeds/all/archive/1/atom.xml", "public, max-age=60"),
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["cache-control"], expected, "{path}");
    }
}
