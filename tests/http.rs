//! The HTTP side: content types, strong ETags and conditional GET, files on disk, the index
//! page and health.

mod common;

use common::{TestServer, all_feed_paths};
use feedpub::demo::sample_edition;
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, VARY,
};

async fn server_with_sample() -> TestServer {
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    server
}

#[tokio::test]
async fn feeds_have_their_media_types_and_caching_headers() {
    let server = server_with_sample().await;
    for (file, media_type) in [
        ("rss.xml", "application/rss+xml; charset=utf-8"),
        ("atom.xml", "application/atom+xml; charset=utf-8"),
        ("feed.json", "application/feed+json; charset=utf-8"),
    ] {
        let response = reqwest::get(server.url(&format!("/feeds/politics/{file}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], media_type);
        let etag = headers[ETAG].to_str().unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
            "{etag}"
        );
        assert!(headers.contains_key(LAST_MODIFIED));
        let vary = if file == "feed.json" {
            "Accept-Encoding"
        } else {
            "Accept-Encoding, Accept"
        };
        assert_eq!(headers[VARY], vary);
        assert_eq!(
            headers["access-control-allow-origin"], "*",
            "readable from any origin"
        );
        assert_eq!(headers["access-control-expose-headers"], "ETag, Link");
        assert!(
            headers[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        assert!(!headers.contains_key("expires"));
    }
}

/// A feed showing an article with an `expire_time` is kept by caches no longer than until
/// then: its `max-age` counts down to the expiry; feeds without it keep their own.
#[tokio::test]
async fn a_feed_is_cached_no_longer_than_until_its_first_article_expires() {
    let server = TestServer::start().await;
    let expires = chrono::Utc::now().timestamp() + 40;
    let mut expiring = common::brief("expiring", "限时公示");
    expiring.tags = vec!["公示".into()];
    expiring.expire_time = Some(common::ts(expires));
    server.publish_as_newsroom(expiring).await;
    server
        .publish_as_newsroom(feedpub::grpc::proto::Article {
            section: "rural".into(),
            ..common::brief("lasting", "长期稿件")
        })
        .await;
    server.settle().await;
    let max_age = async |path: &str| {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let value = response.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .to_owned();
        let seconds = value.strip_prefix("public, max-age=").expect(&value);
        (
            seconds.parse::<i64>().unwrap(),
            response.text().await.unwrap(),
        )
    };
    let tag = feedpub::domain::FeedScope::tag("公示");
    let tag_feed = format!("/feeds/{}/atom.xml", tag.path_segment());
    for path in [
        "/feeds/politics/rss.xml",
        "/feeds/politics/atom.xml",
        "/feeds/politics/feed.json",
        "/feeds/all/atom.xml",
        &tag_feed,
    ] {
        let left = || expires - chrono::Utc::now().timestamp();
        let before = left();
        let (seconds, body) = max_age(path).await;
        let after = left();
        assert!(body.contains("限时公示"), "{path}: {body}");
        assert!(
            (after - 1..=before).contains(&seconds),
            "{path}: max-age={seconds} with {before} to {after} s left"
        );
    }
    let (seconds, _) = max_age("/feeds/rural/atom.xml").await;
    assert_eq!(seconds, 60, "a feed without the article");
}

/// The heads (path, ETag, Last-Modified) of the index page and the OPML list.
async fn derived_heads(server: &TestServer) -> Vec<(&'static str, String, String)> {
    let mut heads = Vec::new();
    for path in ["/", "/feeds.opml"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name| response.headers()[name].to_str().unwrap().to_owned();
        heads.push((path, header(ETAG), header(LAST_MODIFIED)));
    }
    heads
}

/// The status of a GET of `path` with `If-Modified-Since: date` and no entity tag.
async fn revalidated_by_date(server: &TestServer, path: &str, date: &str) -> StatusCode {
    reqwest::Client::new()
        .get(server.url(path))
        .header(IF_MODIFIED_SINCE, date)
        .send()
        .await
        .unwrap()
        .status()
}

/// The index page and the OPML list keep the date the store records for their bytes: the
/// same after a restart (and on every replica), so that a client's If-Modified-Since is
/// answered alike, even when what they show changed in between in a way that leaves their
/// bytes as they were (a correction of a summary).
#[tokio::test]
async fn the_index_and_the_opml_list_keep_their_dates_across_a_restart() {
    let server = server_with_sample().await;
    server.settle().await;
    let before = derived_heads(&server).await;
    // A second later, a correction of a summary: the feeds move, not the index or the list.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let mut corrected = sample_edition()[0].clone();
    corrected.summary = "更正后的摘要".to_owned();
    server.publish_as_newsroom(corrected).await;
    server.settle().await;
    let server = server.restart().await;
    server.settle().await;
    assert_eq!(derived_heads(&server).await, before);
    for (path, _, date) in &before {
        assert_eq!(
            revalidated_by_date(&server, path, date).await,
            StatusCode::NOT_MODIFIED,
            "{path}"
        );
    }
}

/// A restart that changes their bytes with no article written (a section added to the
/// configuration, an upgrade) dates the index page and the OPML list anew: a client holding
/// the version from before is sent the new one, not told it has it.
#[tokio::test]
async fn the_index_and_the_opml_list_changed_by_a_restart_are_not_answered_304() {
    let server = server_with_sample().await;
    server.settle().await;
    let before = derived_heads(&server).await;
    let mut settings = server.settings.clone();
    let (dir, tokens) = server.stop().await;
    let mut added = settings.sections[0].clone();
    added.slug = feedpub::domain::SectionSlug::parse("sport").unwrap();
    added.title = "体育".to_owned();
    settings.sections.push(added);
    let server = TestServer::start_with_settings(dir, tokens, settings).await;
    server.settle().await;
    let after = derived_heads(&server).await;
    for ((path, etag_before, date), (_, etag_after, _)) in before.iter().zip(&after) {
        assert_ne!(etag_before, etag_after, "{path} lists the new section");
        assert_eq!(
            revalidated_by_date(&server, path, date).await,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn conditional_requests_are_answered_with_304_and_no_body() {
    let server = server_with_sample().await;
    // The sample edition's versions came within a second or two: one more, alone in a
    // later second, so that its date names it alone.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    server
        .correct_title("右玉县农旅融合助力乡村振兴（更正）")
        .await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/all/atom.xml");
    let first = client.get(&url).send().await.unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    let modified = first.headers()[LAST_MODIFIED].to_str().unwrap().to_owned();

    for if_none_match in [
        etag.clone(),
        format!("\"other\", {etag}"),
        format!("W/{etag}"),
        "*".into(),
    ] {
        let response = client
            .get(&url)
            .header(IF_NONE_MATCH, &if_none_match)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_MODIFIED,
            "{if_none_match}"
        );
        assert_eq!(response.headers()[ETAG].to_str().unwrap(), etag);
        assert_eq!(response.headers()[VARY], "Accept-Encoding, Accept");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let stale = "\"stale\"";
    let old_date = "Wed, 07 Jun 2023 00:00:00 GMT";
    for (if_none_match, if_modified_since, expected) in [
        (Some(stale), None, StatusCode::OK),
        (None, Some(modified.as_str()), StatusCode::NOT_MODIFIED),
        (None, Some(old_date), StatusCode::OK),
        // If-None-Match wins over If-Modified-Since.
        (Some(stale), Some(modified.as_str()), StatusCode::OK),
    ] {
        let mut request = client.get(&url);
        if let Some(value) = if_none_match {
            request = request.header(IF_NONE_MATCH, value);
        }
        if let Some(value) = if_modified_since {
            request = request.header(IF_MODIFIED_SINCE, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            expected,
            "If-None-Match {if_none_match:?}, If-Modified-Since {if_modified_since:?}"
        );
    }

    // RFC 9110: one list over several lines, the three date forms, and If-Match and
    // If-Unmodified-Since answered 412 when false.
    let rfc850 = chrono::DateTime::parse_from_rfc2822(&modified)
        .unwrap()
        .format("%A, %d-%b-%y %H:%M:%S GMT")
        .to_string();
    let asctime = chrono::DateTime::parse_from_rfc2822(&modified)
        .unwrap()
        .format("%a %b %e %H:%M:%S %Y")
        .to_string();
    let cases: [(&[(&str, &str)], StatusCode); 7] = [
        (
            &[("if-none-match", "\"other\""), ("if-none-match", &etag)],
            StatusCode::NOT_MODIFIED,
        ),
        (&[("if-modified-since", &rfc850)], StatusCode::NOT_MODIFIED),
        (&[("if-modified-since", &asctime)], StatusCode::NOT_MODIFIED),
        (&[("if-match", &etag)], StatusCode::OK),
        (
            &[("if-match", "\"other\"")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            &[("if-match", "\"other\""), ("if-none-match", &etag)],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            &[("if-unmodified-since", old_date)],
            StatusCode::PRECONDITION_FAILED,
        ),
    ];
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for client in [&client, &h2] {
        for (headers, expected) in cases {
            let mut request = client.get(&url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                expected,
                "{headers:?} over {:?}",
                response.version()
            );
        }
    }
    // A 304 over HTTP/2 either has no Content-Length or the 200's (RFC 9110 §8.6).
    let full = h2.get(&url).send().await.unwrap().bytes().await.unwrap();
    let revalidated = h2
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.version(), reqwest::Version::HTTP_2);
    if let Some(length) = revalidated.headers().get("content-length") {
        assert_eq!(length.to_str().unwrap(), full.len().to_string());
    }
}

/// Two versions of a feed within one second share their Last-Modified: a client holding
/// the first, revalidating by date alone, gets the second; by its entity tag, it is told
/// its copy is current.
#[tokio::test]
async fn a_date_two_versions_share_does_not_make_the_first_current() {
    let server = server_with_sample().await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/all/atom.xml");
    let served = || async {
        let response = client.get(&url).send().await.unwrap();
        let header = |name| response.headers()[name].to_str().unwrap().to_owned();
        (header(ETAG), header(LAST_MODIFIED))
    };
    // A second may turn between two corrections: each try starts as a second does.
    for attempt in 0..5 {
        let into_second = chrono::Utc::now().timestamp_subsec_millis().min(999);
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(
            1_000 - into_second,
        )))
        .await;
        server
            .correct_title(&format!("第{attempt}次更正：第一版"))
            .await;
        let (_, first_date) = served().await;
        server
            .correct_title(&format!("第{attempt}次更正：第二版"))
            .await;
        let (etag, date) = served().await;
        if date != first_date {
            continue;
        }
        let by_date = client.get(&url).header(IF_MODIFIED_SINCE, &date);
        let response = by_date.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[ETAG].to_str().unwrap(), etag);
        let by_tag = client.get(&url).header(IF_NONE_MATCH, &etag);
        let response = by_tag.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        return;
    }
    panic!("no two versions within one second");
}

/// A feed whose date is ahead of the server's clock (a replica's clock ahead of the one
/// that dated it, a clock set back, a file edited) is never sent with a Last-Modified
/// later than the response's Date (RFC 9110 §8.8.2.1): then with the Date, before its own
/// date, so that revalidating by it gets the feed, not 304.
#[tokio::test]
async fn a_feed_dated_ahead_of_the_clock_is_never_sent_with_a_later_last_modified() {
    let server = server_with_sample().await;
    server.settle().await;
    let settings = server.settings.clone();
    let (dir, tokens) = server.stop().await;
    // After a restart, the feed on disk is the version before: its date is taken up.
    let atom = settings.server.feeds_dir.join("politics/atom.xml");
    let text = std::fs::read_to_string(&atom).unwrap();
    let start = text.find("<updated>").unwrap() + "<updated>".len();
    let end = start + text[start..].find("</updated>").unwrap();
    // Hours ahead, as a clock set back leaves it (a day ahead or more is not taken up).
    let ahead_date = (chrono::Utc::now() + chrono::TimeDelta::hours(2))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let ahead = text.replace(&text[start..end], &ahead_date);
    std::fs::write(&atom, ahead).unwrap();
    let server = TestServer::start_with_settings(dir, tokens, settings).await;
    server.settle().await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/politics/atom.xml");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let date = |name| {
        let value = response.headers()[name].to_str().unwrap().to_owned();
        let parsed = chrono::DateTime::parse_from_rfc2822(&value)
            .unwrap()
            .to_utc();
        (value, parsed)
    };
    let ((sent, last_modified), (answered, _)) = (date(LAST_MODIFIED), date(reqwest::header::DATE));
    // The answer's own time, one reading of the clock for both (RFC 9110 §8.8.2.1).
    assert_eq!(sent, answered);
    assert!(
        last_modified < chrono::DateTime::parse_from_rfc3339(&ahead_date).unwrap(),
        "{last_modified}"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains(&ahead_date), "dated ahead: {body}");
    let again = client
        .get(&url)
        .header(IF_MODIFIED_SINCE, &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK, "a date before its own");
    // The date sent is no date the document has: a client repeating it as a condition to
    // act on an unchanged copy is not refused for it.
    let unchanged = client
        .get(&url)
        .header(reqwest::header::IF_UNMODIFIED_SINCE, &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::OK, "an unchanged copy");
}

#[tokio::test]
async fn the_etag_changes_exactly_when_the_bytes_change() {
    let server = server_with_sample().await;
    let url = server.url("/feeds/rural/rss.xml");
    let etag_and_body = || async {
        let response = reqwest::get(&url).await.unwrap();
        let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
        (etag, response.bytes().await.unwrap())
    };
    let (etag, body) = etag_and_body().await;

    // Republishing identical content changes neither.
    let article = sample_edition().pop().unwrap();
    server.publish_as_newsroom(article.clone()).await;
    server.settle().await;
    assert_eq!(etag_and_body().await, (etag.clone(), body.clone()));

    // A correction changes both.
    let mut corrected = article;
    corrected.title = "右玉县农旅融合助力乡村振兴（更正）".into();
    server.publish_as_newsroom(corrected).await;
    server.settle().await;
    let (new_etag, new_body) = etag_and_body().await;
    assert_ne!(new_body, body);
    assert_ne!(new_etag, etag);
}

#[tokio::test]
async fn the_files_in_the_feeds_folder_are_the_bytes_served() {
    let server = server_with_sample().await;
    let feeds = server.dir.path().join("feeds");
    for path in all_feed_paths() {
        let on_disk = std::fs::read(feeds.join(path.trim_start_matches("/feeds/"))).unwrap();
        assert_eq!(server.get_bytes(&path).await, on_disk, "{path}");
    }
    for entry in std::fs::read_dir(feeds.join("all")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
    }
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let server = TestServer::start().await;
    for path in [
        "/feeds/sports/rss.xml",
        "/feeds/all/rss.json",
        "/feeds/../data/feedpub.sqlite3",
        "/feeds/",
        "/feeds",
        "/nope",
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        // (The client takes `..` out of a path before sending it.)
        if response.url().path().starts_with("/feeds") {
            // A cache keeps it five seconds at most: an author or tag feed is 404 until its
            // first article. A script on another origin may read it.
            let headers = response.headers();
            assert_eq!(headers[CACHE_CONTROL], "public, max-age=5", "{path}");
            assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
        }
    }
}

/// A script on another origin that revalidates a feed itself sends `If-None-Match`, which
/// a browser asks the server about first (a CORS preflight): it is allowed, and the answer
/// kept a day.
#[tokio::test]
async fn a_script_on_another_origin_may_revalidate_a_feed() {
    let server = server_with_sample().await;
    for path in ["/feeds/politics/feed.json", "/feeds.opml", "/"] {
        revalidated_from_another_origin(&server.url(path)).await;
    }
}

/// Asserts that a script on another origin may revalidate `url` by its ETag: its preflight
/// is answered, and so is the conditional GET, readably.
async fn revalidated_from_another_origin(url: &str) {
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, url)
        .header("Origin", "https://reader.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "if-none-match")
        .send()
        .await
        .unwrap();
    assert!(
        preflight.status().is_success(),
        "{url}: {}",
        preflight.status()
    );
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-methods"], "GET, HEAD");
    assert_eq!(headers["access-control-allow-headers"], "*");
    assert_eq!(headers["access-control-max-age"], "86400");
    // What the resource allows, as an answer to OPTIONS says (RFC 9110, 9.3.7).
    assert_eq!(headers["allow"], "GET, HEAD, OPTIONS");
    let first = client.get(url).send().await.unwrap();
    let etag = first.headers()[ETAG].clone();
    let again = client
        .get(url)
        .header("Origin", "https://reader.example")
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        again.headers()["access-control-expose-headers"],
        "ETag, Link"
    );
}

#[tokio::test]
async fn the_index_lists_every_section_with_autodiscovery_links() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">"));
    for title in ["党建", "时政", "公示公告", "综述", "乡村振兴"] {
        assert!(html.contains(title), "{title}");
    }
    for path in all_feed_paths() {
        assert!(
            html.contains(&format!("<a href=\"{path}\">")),
            "link to {path}"
        );
    }
    for (media_type, path) in [
        ("application/rss+xml", "/feeds/rural/rss.xml"),
        ("application/atom+xml", "/feeds/rural/atom.xml"),
        ("application/feed+json", "/feeds/rural/feed.json"),
    ] {
        let autodiscovery = format!("<link rel=\"alternate\" type=\"{media_type}\"");
        let line = html
            .lines()
            .find(|l| l.starts_with(&autodiscovery) && l.contains(path))
            .unwrap_or_else(|| panic!("no autodiscovery link for {path}"));
        assert!(line.contains("乡村振兴"), "{line}");
    }
}

#[tokio::test]
async fn healthz_answers_while_serving() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(bytes, 4096), &mut out).unwrap();
    out
}

#[tokio::test]
async fn precompressed_codings_are_chosen_by_accept_encoding_with_their_own_etags() {
    let server = server_with_sample().await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/all/rss.xml");
    let identity = client.get(&url).send().await.unwrap();
    let identity_etag = identity.headers()[ETAG].to_str().unwrap().to_owned();
    let identity_body = identity.bytes().await.unwrap();

    let mut etags = vec![identity_etag.clone()];
    for (accept, coding, decode) in [
        ("gzip", "gzip", gunzip as fn(&[u8]) -> Vec<u8>),
        ("gzip;q=0.5, br", "br", unbrotli),
        ("br;q=0.1, gzip", "gzip", gunzip),
    ] {
        let response = client
            .get(&url)
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], coding, "{accept}");
        assert_eq!(response.headers()[VARY], "Accept-Encoding, Accept");
        let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
        let body = response.bytes().await.unwrap();
        assert_eq!(decode(&body), identity_body, "{accept}");
        assert!(
            body.len() < identity_body.len() / 2,
            "{accept}: {} bytes",
            body.len()
        );
        // The coding's own ETag validates it, and only it.
        let revalidated = client
            .get(&url)
            .header("accept-encoding", accept)
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED, "{accept}");
        let other = client
            .get(&url)
            .header("accept-encoding", accept)
            .header(IF_NONE_MATCH, &identity_etag)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{accept}");
        etags.push(etag);
    }
    etags.sort();
    etags.dedup();
    assert_eq!(
        etags.len(),
        3,
        "identity, gzip and brotli have distinct ETags"
    );

    // The siblings on disk are the very bytes served.
    let feeds = server.dir.path().join("feeds/all");
    let served_gzip = client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(feeds.join("rss.xml.gz")).unwrap(),
        served_gzip.bytes().await.unwrap()
    );
    let served_br = client
        .get(&url)
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(feeds.join("rss.xml.br")).unwrap(),
        served_br.bytes().await.unwrap()
    );
}

#[tokio::test]
async fn head_answers_like_get_without_a_body_and_other_methods_are_refused() {
    let server = server_with_sample().await;
    let client = reqwest::Client::new();
    let url = server.url("/feeds/politics/atom.xml");
    let get = client.get(&url).send().await.unwrap();
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for name in [ETAG, LAST_MODIFIED, CONTENT_TYPE, CACHE_CONTROL, VARY] {
        assert_eq!(head.headers()[&name], get.headers()[&name], "{name}");
    }
    assert_eq!(
        head.headers()["content-length"],
        get.headers()["content-length"]
    );
    assert!(head.bytes().await.unwrap().is_empty());

    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
    }
}

#[tokio::test]
async fn feeds_advertise_their_hub_and_self_in_link_headers() {
    let server = server_with_sample().await;
    let response = reqwest::get(server.url("/feeds/rural/feed.json"))
        .await
        .unwrap();
    let link = response.headers()["link"].to_str().unwrap();
    assert!(
        link.contains("<http://127.0.0.1:8080/websub>; rel=\"hub\""),
        "{link}"
    );
    assert!(
        link.contains("<http://127.0.0.1:8080/feeds/rural/feed.json>; rel=\"self\""),
        "{link}"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_feed_format_and_status_and_bytes_sent() {
    let server = server_with_sample().await;
    let ok = r#"feedpub_http_requests_total{feed="features",format="atom",status="200"}"#;
    let not_modified = r#"feedpub_http_requests_total{feed="features",format="atom",status="304"}"#;
    let gzip_bytes =
        r#"feedpub_http_response_bytes_total{feed="features",format="atom",encoding="gzip"}"#;
    let (ok_before, nm_before, bytes_before) = (
        server.metric(ok).await,
        server.metric(not_modified).await,
        server.metric(gzip_bytes).await,
    );

    let client = reqwest::Client::new();
    let url = server.url("/feeds/features/atom.xml");
    let first = client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    let size = first.bytes().await.unwrap().len() as f64;
    for _ in 0..3 {
        let response = client
            .get(&url)
            .header("accept-encoding", "gzip")
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    }
    // Counters only grow, and other tests in this process may add to them too.
    assert!(server.metric(ok).await >= ok_before + 1.0);
    assert!(server.metric(not_modified).await >= nm_before + 3.0);
    assert!(server.metric(gzip_bytes).await >= bytes_before + size);

    // HEAD sends no body: counted as a request, not as bytes (a feed no other test asks
    // for in brotli).
    let head_ok =
        r#"feedpub_http_requests_total{feed="party-building",format="json",status="200"}"#;
    let head_bytes =
        r#"feedpub_http_response_bytes_total{feed="party-building",format="json",encoding="br"}"#;
    let (ok_before, bytes_before) = (
        server.metric(head_ok).await,
        server.metric(head_bytes).await,
    );
    for _ in 0..3 {
        let response = client
            .head(server.url("/feeds/party-building/feed.json"))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-encoding"], "br");
    }
    assert!(server.metric(head_ok).await >= ok_before + 3.0);
    assert_eq!(server.metric(head_bytes).await, bytes_before);

    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "feedpub_feed_regenerations_total",
        "feedpub_feed_regeneration_seconds_bucket",
        "feedpub_publish_total",
        "feedpub_publish_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn the_index_shows_each_sections_latest_headlines() {
    let server = server_with_sample().await;
    let html = reqwest::get(server.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = |title: &str| {
        let start = html
            .find(&format!("<h2>{title}</h2>"))
            .unwrap_or_else(|| panic!("{title}"));
        let end = html[start..].find("</section>").unwrap() + start;
        html[start..end].to_owned()
    };
    let rural = section("乡村振兴");
    assert!(rural.contains("<li>右玉县农旅融合助力乡村振兴<time datetime=\"2023-06-07T06:54:00+08:00\">2023-06-07 06:54</time></li>"), "{rural}");
    let politics = section("时政");
    assert_eq!(politics.matches("<li>").count(), 3, "{politics}");
    assert!(politics.contains("全市“十四五”高速及国省道干线公路规划中期调整研讨会召开"));
    // The expired notice is not a headline.
    assert!(!section("公示公告").contains("<li>"));
    assert!(section("全部栏目 · All sections").matches("<li>").count() == 5);
}

/// The index page is answered like a feed: a strong ETag kept while the page comes out the
/// same, 304 to a client that has it, compressed codings; a new headline gives it a new
/// ETag.
#[tokio::test]
async fn the_index_answers_conditional_requests_and_changes_with_its_headlines() {
    let server = server_with_sample().await;
    let http = reqwest::Client::new();
    let get = |headers: &[(&'static str, &str)]| {
        let mut request = http.get(server.url("/"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let first = get(&[]).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(first.headers().contains_key("last-modified"));
    assert!(
        first
            .text()
            .await
            .unwrap()
            .contains("右玉县农旅融合助力乡村振兴")
    );
    for if_none_match in [etag.as_str(), "*"] {
        let again = get(&[("if-none-match", if_none_match)]).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{if_none_match}");
    }
    let compressed = get(&[("accept-encoding", "gzip")]).await.unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    server
        .correct_title("右玉县农旅融合助力乡村振兴（更正）")
        .await;
    let changed = get(&[("if-none-match", etag.as_str())]).await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    assert!(changed.text().await.unwrap().contains("（更正）"));
}

#[tokio::test]
async fn the_opml_lists_every_feed_once() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/feeds.opml")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/x-opml; charset=utf-8"
    );
    let opml = response.text().await.unwrap();
    assert!(opml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<opml version=\"2.0\">"));
    // Each feed once, in Atom: a reader importing the list subscribes to each once.
    let atom: Vec<String> = all_feed_paths()
        .into_iter()
        .filter(|path| path.ends_with("/atom.xml"))
        .collect();
    for path in all_feed_paths() {
        let url = format!("xmlUrl=\"http://127.0.0.1:8080{path}\"");
        let listed = usize::from(atom.contains(&path));
        assert_eq!(opml.matches(&url).count(), listed, "{url}");
    }
    assert_eq!(opml.matches("type=\"rss\"").count(), atom.len());
}

#[tokio::test]
async fn xml_feeds_name_a_stylesheet_that_is_served_and_written_beside_them() {
    let server = server_with_sample().await;
    let rss = String::from_utf8(server.get_bytes("/feeds/all/rss.xml").await).unwrap();
    assert!(rss.contains(r#"<?xml-stylesheet type="text/xsl" href="/feeds/feed.xsl"?>"#));
    let response = reqwest::get(server.url("/feeds/feed.xsl")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/xsl; charset=utf-8");
    // Dated by its content, not 1970; the hub pushes feeds, not the stylesheet.
    assert_eq!(
        response.headers()["last-modified"],
        "Sat, 28 Nov 2026 16:17:54 GMT"
    );
    assert_eq!(
        response.headers()["link"],
        "<http://127.0.0.1:8080/feeds/feed.xsl>; rel=\"self\""
    );
    let xsl = response.bytes().await.unwrap();
    assert!(
        std::str::from_utf8(&xsl)
            .unwrap()
            .contains("<xsl:stylesheet")
    );
    assert_eq!(
        std::fs::read(server.dir.path().join("feeds/feed.xsl")).unwrap(),
        xsl
    );
}

#[tokio::test]
async fn a_browser_gets_xml_feeds_as_generic_xml_so_the_stylesheet_applies() {
    let server = server_with_sample().await;
    let client = reqwest::Client::new();
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    // A feed reader's (SimplePie's, in FreshRSS and WordPress): it lists HTML too, below
    // the feed types, and must get the feed's own type.
    let reader_accept = "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, \
        application/xml;q=0.8, text/xml;q=0.8, text/html;q=0.7, unknown/unknown;q=0.1, \
        application/unknown;q=0.1, */*;q=0.1";
    for (path, feed_type) in [
        ("/feeds/all/rss.xml", "application/rss+xml; charset=utf-8"),
        ("/feeds/all/atom.xml", "application/atom+xml; charset=utf-8"),
    ] {
        let url = server.url(path);
        for coding in ["identity", "gzip", "br"] {
            let get = |accept: &str| {
                client
                    .get(&url)
                    .header("accept", accept)
                    .header("accept-encoding", coding)
            };
            let reader = get(reader_accept).send().await.unwrap();
            assert_eq!(reader.headers()[CONTENT_TYPE], feed_type);
            let reader_etag = reader.headers()[ETAG].to_str().unwrap().to_owned();
            let reader_body = reader.bytes().await.unwrap();
            let browser = get(browser_accept).send().await.unwrap();
            assert_eq!(
                browser.headers()[CONTENT_TYPE],
                "application/xml; charset=utf-8"
            );
            assert_eq!(browser.headers()[VARY], "Accept-Encoding, Accept");
            // Another Content-Type is another representation: a strong ETag of its own (the
            // coding's, with -xml), so a cache revalidating one is never told it may serve
            // the other.
            let browser_etag = browser.headers()[ETAG].to_str().unwrap().to_owned();
            let expected = format!("{}-xml\"", reader_etag.trim_end_matches('"'));
            assert_eq!(browser_etag, expected, "{path}, {coding}");
            assert_eq!(
                browser.bytes().await.unwrap(),
                reader_body,
                "same bytes either way ({path}, {coding})"
            );
            for (accept, etag, status) in [
                (browser_accept, &browser_etag, StatusCode::NOT_MODIFIED),
                (browser_accept, &reader_etag, StatusCode::OK),
                (reader_accept, &browser_etag, StatusCode::OK),
                (reader_accept, &reader_etag, StatusCode::NOT_MODIFIED),
            ] {
                let answer = get(accept)
                    .header("if-none-match", etag)
                    .send()
                    .await
                    .unwrap();
                let context = format!("{path}, {coding}, Accept {accept}, {etag}");
                assert_eq!(answer.status(), status, "{context}");
                let sent_etag = if accept == browser_accept {
                    &browser_etag
                } else {
                    &reader_etag
                };
                assert_eq!(answer.headers()[ETAG], sent_etag.as_str(), "{context}");
            }
        }
    }
    let json = client
        .get(server.url("/feeds/all/feed.json"))
        .header("accept", browser_accept)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json.headers()[CONTENT_TYPE],
        "application/feed+json; charset=utf-8"
    );
}

/// An encoded slash is not a slash (RFC 3986, section 2.2): a target with `%2F` names no
/// document, on either path (the fast path and the router), while an encoded unreserved
/// character is the character itself. Encoded bytes that are not UTF-8 (`%FF`, valid
/// syntax) name no document either: 404, as any unknown feed, not a framework's 400.
#[tokio::test]
async fn an_encoded_slash_or_a_byte_that_is_not_utf8_names_no_feed() {
    let server = server_with_sample().await;
    for (path, expected) in [
        ("/feeds/politics/rss.xml", StatusCode::OK),
        ("/feeds/politics%2Frss.xml", StatusCode::NOT_FOUND),
        ("/feeds/politics%2frss.xml", StatusCode::NOT_FOUND),
        ("/feeds/party%2Dbuilding/rss.xml", StatusCode::OK),
        ("/feeds/%FF/rss.xml", StatusCode::NOT_FOUND),
        ("/feeds/authors/%C3%28/atom.xml", StatusCode::NOT_FOUND),
        ("/feeds/all/archive/%FF/feed.json", StatusCode::NOT_FOUND),
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), expected, "{path}");
        if expected == StatusCode::NOT_FOUND {
            assert_eq!(response.text().await.unwrap(), "no such feed\n", "{path}");
        }
    }
}
