//! Limits that protect the service: field and message sizes from `[limits]`, and per-partner
//! rate limits that leave the other partners unaffected.

mod common;

use common::{TestServer, assert_invalid, authed, ts};
use feedpub::grpc::proto::{self, GetArticleRequest, ListSectionsRequest, PublishArticleRequest};
use std::num::NonZeroU32;
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;

fn article(id: &str) -> proto::Article {
    proto::Article {
        id: id.into(),
        section: "politics".into(),
        title: "推进会召开".into(),
        content_text: "第一段。".into(),
        publish_time: Some(ts(1_686_092_400)),
        ..Default::default()
    }
}

fn photo(n: usize) -> proto::Media {
    proto::Media {
        url: format!("https://img.example.com/{n}.jpg"),
        mime_type: "image/jpeg".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn fields_over_the_configured_limits_are_invalid_arguments_naming_the_field() {
    let server = TestServer::start_with(|settings| {
        let fields = &mut settings.limits.fields;
        fields.title_chars = 10;
        fields.summary_chars = 20;
        fields.content_bytes = 100;
        fields.tags = 2;
        fields.media = 1;
        settings.limits.max_message_bytes = 4_000;
    })
    .await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let cases: Vec<(&str, proto::Article)> = vec![
        (
            "article.title",
            proto::Article {
                title: "标".repeat(11),
                ..article("a")
            },
        ),
        (
            "article.subtitle",
            proto::Article {
                subtitle: "副".repeat(11),
                ..article("a")
            },
        ),
        (
            "article.summary",
            proto::Article {
                summary: "摘".repeat(21),
                ..article("a")
            },
        ),
        (
            "article.content_text",
            proto::Article {
                content_text: "x".repeat(101),
                ..article("a")
            },
        ),
        (
            "article.content_html",
            proto::Article {
                content_text: String::new(),
                content_html: format!("<p>{}</p>", "x".repeat(100)),
                ..article("a")
            },
        ),
        (
            "article.tags",
            proto::Article {
                tags: vec!["甲".into(), "乙".into(), "丙".into()],
                ..article("a")
            },
        ),
        (
            "article.media",
            proto::Article {
                media: vec![photo(1), photo(2)],
                ..article("a")
            },
        ),
    ];
    for (field, bad) in cases {
        let status = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article: Some(bad),
                    ..Default::default()
                },
            ))
            .await
            .expect_err(field);
        assert_invalid(&status, field);
    }

    // Exactly at every limit is fine.
    let at_limits = proto::Article {
        title: "标".repeat(10),
        summary: "摘".repeat(20),
        content_text: "x".repeat(100),
        tags: vec!["甲".into(), "乙".into()],
        media: vec![photo(1)],
        ..article("at-limits")
    };
    client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(at_limits),
                ..Default::default()
            },
        ))
        .await
        .expect("an article exactly at every limit");

    // A message over the size limit is refused before it is decoded, and nothing is stored.
    let huge = proto::Article {
        content_html: "x".repeat(5_000),
        ..article("huge")
    };
    let status = client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(huge),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a message over max_message_bytes");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("4000"), "{}", status.message());
    let missing = client
        .get_article(authed(
            token,
            GetArticleRequest {
                id: "huge".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the huge article was not stored");
    assert_eq!(missing.code(), Code::NotFound);
}

/// HTML whose parsing cost explodes (elements nested thousands deep, formatting elements
/// left open to be reopened in every later block) is refused before it is parsed, naming
/// the field; a large ordinary body (validated off the runtime) is stored.
#[tokio::test]
async fn html_that_would_make_the_parser_explode_is_refused_and_large_bodies_are_stored() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let distinct: String = (0..100).map(|i| format!("<b id=a{i}>")).collect();
    for (html, says) in [
        ("<blockquote>".repeat(50_000) + "x", "deep"),
        ("<table><tr><td>".repeat(20_000) + "x", "deep"),
        (
            format!("<div>{distinct}</div>") + &"<p>x</p>".repeat(4_000),
            "unclosed",
        ),
    ] {
        let status = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article: Some(proto::Article {
                        content_text: String::new(),
                        content_html: html,
                        ..article("deep")
                    }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_invalid(&status, "article.content_html");
        assert!(status.message().contains(says), "{}", status.message());
    }
    let paragraph = "<p>推进会召开，<b>全面</b>部署下一阶段工作。<a href=\"https://example.com/\">详见</a></p>\n";
    let large = paragraph.repeat(1_000);
    assert!(large.len() > 100 << 10, "{} bytes", large.len());
    let stored = client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(proto::Article {
                    content_text: String::new(),
                    content_html: large.clone(),
                    ..article("large")
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let article = stored.article.unwrap();
    assert_eq!(article.version, 1);
    assert!(article.content_html.contains("全面"));
    assert!(article.content_html.len() >= large.len() - 1_000);
}

#[tokio::test]
async fn a_partner_over_its_rate_limit_is_told_when_to_retry_and_others_are_unaffected() {
    const BURST: u32 = 3;
    let server = TestServer::start_with(|settings| {
        settings.limits.requests_per_second = NonZeroU32::new(1).unwrap();
        settings.limits.burst = NonZeroU32::new(BURST).unwrap();
    })
    .await;
    let mut client = server.client().await;

    // county floods: after its burst, it is refused, however fast or slow the calls are.
    let mut refused = None;
    for _ in 0..200 {
        match client
            .list_sections(authed(&server.tokens.county, ListSectionsRequest {}))
            .await
        {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("a flood beyond the limit is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "at one call per second the wait is at most a second: {retry:?}"
    );
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("RATE_LIMITED", "feedpub")
    );
    assert_eq!(
        info.metadata.get("partner").map(String::as_str),
        Some("county")
    );

    // newsroom's bucket is its own: its whole burst goes through while county is refused.
    for i in 0..BURST {
        let call = if i == 0 {
            client
                .publish_article(authed(
                    &server.tokens.newsroom,
                    PublishArticleRequest {
                        article: Some(article("while-county-floods")),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        } else {
            client
                .list_sections(authed(&server.tokens.newsroom, ListSectionsRequest {}))
                .await
                .map(drop)
        };
        call.unwrap_or_else(|status| panic!("newsroom call {i} was refused: {status:?}"));
    }
    // Calls without a valid token are refused as such, not counted against anyone.
    let status = client
        .list_sections(authed("fp_unknown", ListSectionsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// Most bytes a gRPC client takes in one message unless told otherwise (tonic's and
/// grpcio's default): every answer must fit, however large the stored articles.
const CLIENT_MESSAGE_BYTES: usize = 4 << 20;

/// Distinct paragraphs of Chinese copy, about `bytes` long: nothing for the lint to flag.
fn long_copy(bytes: usize) -> String {
    let mut copy = String::new();
    let mut n = 0;
    while copy.len() < bytes {
        copy.push_str(&format!(
            "第{n}段：这是一段用于测试消息大小的中文文字，内容各不相同。\n\n"
        ));
        n += 1;
    }
    copy
}

/// Articles near the body limit fill answers of several megabytes: pages of ListArticles
/// and updates of WatchArticles hold fewer of them, each within what a client takes at
/// once, and every article still comes; a body the HTML escaping would take past the limit
/// is refused, and copy of thousands of repeated paragraphs gets a short list of warnings.
#[tokio::test]
async fn every_answer_fits_in_what_a_client_takes_in_one_message() {
    use feedpub::grpc::proto::{ListArticlesRequest, WatchArticlesRequest};
    use prost::Message;
    let server = TestServer::start().await;
    let token = &server.tokens.newsroom;
    let mut client = server.client().await;

    // 1 MiB of `<` is 4 MiB of HTML, sent alone or beside HTML (which a text edited beside
    // the HTML made from the stored one would replace).
    for html in ["", "<p>正文。</p>"] {
        let mut escaped = article("escaped");
        escaped.content_text = "<".repeat(1 << 20);
        escaped.content_html = html.into();
        let refused = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article: Some(escaped),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_invalid(&refused, "article.content_text");
        assert!(
            refused.message().contains("once made HTML"),
            "{html}: {}",
            refused.message()
        );
    }
    // Beside HTML of the partner's own, which no text replaces, the text is not made HTML.
    let mut own = article("own-html");
    own.content_text = "<".repeat(1 << 20);
    own.content_html = "<p><b>正文</b>。</p>".into();
    client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(own),
                ..Default::default()
            },
        ))
        .await
        .expect("a long text beside HTML of the partner's own");

    let mut repeated = article("repeated");
    repeated.content_text = format!("{}\n\n", "文字".repeat(10)).repeat(12_000);
    let answer = client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(repeated),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.warnings.len(), 21, "twenty listed, then a count");
    assert!(
        answer.warnings[20].contains("11979 more"),
        "{}",
        answer.warnings[20]
    );

    // Where the log stands before the large articles: a watch resumed from there replays
    // them all at once.
    let request = WatchArticlesRequest::default();
    let mut watch = client
        .watch_articles(authed(token, request))
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().expect("a first message");
    assert!(first.events.is_empty());
    drop(watch);
    let large: Vec<String> = (0..5).map(|n| format!("large-{n}")).collect();
    for id in &large {
        let mut a = article(id);
        a.content_text = long_copy(900_000);
        let stored = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article: Some(a),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(stored.encoded_len() < CLIENT_MESSAGE_BYTES);
    }

    let mut listed = Vec::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let request = ListArticlesRequest {
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client
            .list_articles(authed(token, request))
            .await
            .expect("a page the client can read")
            .into_inner();
        assert!(page.encoded_len() < CLIENT_MESSAGE_BYTES);
        pages += 1;
        listed.extend(page.articles.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for id in &large {
        assert!(listed.contains(id), "{id} listed in {pages} pages");
    }
    assert!(pages >= 3, "{pages} pages");

    let request = WatchArticlesRequest {
        cursor: first.cursor,
        ..Default::default()
    };
    let mut watch = client
        .watch_articles(authed(token, request))
        .await
        .unwrap()
        .into_inner();
    let mut watched = Vec::new();
    let mut updates = 0;
    while watched.len() < large.len() {
        let update = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the watch stream answered in time")
            .expect("an update the client can read")
            .expect("the stream goes on");
        assert!(update.encoded_len() < CLIENT_MESSAGE_BYTES);
        let Some(last) = update.events.last() else {
            continue; // The stream's first message.
        };
        assert_eq!(
            update.cursor, last.cursor,
            "each update ends at its last event"
        );
        updates += 1;
        watched.extend(
            update
                .events
                .into_iter()
                .filter_map(|e| e.article.map(|a| a.id))
                .filter(|id| id.starts_with("large-")),
        );
    }
    assert_eq!(watched, large);
    assert!(updates >= 3, "{updates} updates");
}

/// A retraction's reason is kept whole or refused by name, never cut short; a refused
/// retraction leaves the article in its feeds.
#[tokio::test]
async fn a_retraction_reason_over_its_limit_is_refused_not_cut() {
    use feedpub::grpc::proto::RetractArticleRequest;
    let server = TestServer::start().await;
    let token = &server.tokens.newsroom;
    let mut client = server.client().await;
    client
        .publish_article(authed(
            token,
            PublishArticleRequest {
                article: Some(article("reasoned")),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let retract = |reason: String| RetractArticleRequest {
        id: "reasoned".into(),
        reason,
        ..Default::default()
    };
    for long in ["误".repeat(1001), format!("a{}", "\u{301}".repeat(20_000))] {
        let refused = client
            .retract_article(authed(token, retract(long)))
            .await
            .unwrap_err();
        assert_invalid(&refused, "reason");
    }
    let stored = client
        .get_article(authed(
            token,
            GetArticleRequest {
                id: "reasoned".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, proto::ArticleState::Published as i32);
    server.settle().await;
    let feed = String::from_utf8(server.get_bytes("/feeds/politics/atom.xml").await).unwrap();
    assert!(feed.contains(&stored.guid), "still in its feed");
    // 1000 characters once its white space is folded.
    let whole = "误".repeat(1000);
    let retracted = client
        .retract_article(authed(token, retract(format!("  {whole}\n"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retracted.retract_reason, whole);
}

/// A partner may start at most `[limits] new_names_per_hour` author and tag feeds an hour:
/// an article whose names would start more is refused RESOURCE_EXHAUSTED, naming the
/// field and saying when to retry, and nothing of it is stored. Names charged moments ago
/// (a batch under one new tag) cost nothing again, and each partner has an allowance of
/// its own.
#[tokio::test]
async fn a_partner_starts_at_most_its_allowance_of_new_author_and_tag_feeds() {
    use feedpub::grpc::proto::PublishArticlesRequest;
    let server = TestServer::start_with(|settings| {
        settings.limits.new_names_per_hour = NonZeroU32::new(4).unwrap();
    })
    .await;
    let mut client = server.client().await;
    let named = |id: &str, section: &str, authors: &[&str], tags: &[&str]| PublishArticleRequest {
        article: Some(proto::Article {
            section: section.into(),
            authors: authors.iter().map(|a| a.to_string()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..article(id)
        }),
        ..Default::default()
    };
    let newsroom = &server.tokens.newsroom;

    // One batch, three articles under one new author and one new tag (two names charged),
    // and one with three more new tags: refused, as it would be alone.
    let batch = [
        named("a1", "politics", &["王芳"], &["防汛"]),
        named("a2", "politics", &["王芳"], &["防汛"]),
        named("a3", "politics", &["王芳"], &["防汛"]),
        named("a4", "politics", &[], &["甲", "乙", "丙"]),
    ]
    .map(|request| PublishArticlesRequest {
        requests: vec![request],
    });
    let results = client
        .publish_articles(authed(newsroom, tokio_stream::iter(batch)))
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert_eq!(
        common::result_codes(&results),
        [Code::Ok, Code::Ok, Code::Ok, Code::ResourceExhausted],
        "{results:?}"
    );
    // Two more: the last of the four.
    client
        .publish_article(authed(
            newsroom,
            named("b", "politics", &["王芳"], &["防汛", "抗旱", "春耕"]),
        ))
        .await
        .expect("the allowance's last two names");
    // One more is refused, and nothing of it stored.
    let status = client
        .publish_article(authed(
            newsroom,
            named("c", "politics", &["李明"], &["防汛"]),
        ))
        .await
        .expect_err("a fifth new name in the hour");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with(
            "article.authors: 1 name with no feed yet, more than partner \"newsroom\" may start now"
        ),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "NEW_NAMES_EXHAUSTED");
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay");
    // Four an hour: one name comes back every 15 minutes.
    assert!(
        retry > Duration::from_secs(800) && retry <= Duration::from_secs(900),
        "{retry:?}"
    );
    let missing = client
        .get_article(authed(
            newsroom,
            GetArticleRequest {
                id: "c".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the refused article was not stored");
    assert_eq!(missing.code(), Code::NotFound);
    // Names charged already cost nothing; another partner's allowance is its own.
    client
        .publish_article(authed(
            newsroom,
            named("d", "politics", &["王芳"], &["春耕"]),
        ))
        .await
        .expect("names charged already");
    client
        .publish_article(authed(
            &server.tokens.county,
            named("e", "rural", &["李明"], &["秋收"]),
        ))
        .await
        .expect("county's own allowance");
}
