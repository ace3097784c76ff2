//! The publisher end to end: a real gRPC client publishes, real HTTP serves the feeds, and
//! an independent parser (feed-rs) reads them back.

mod common;

use common::{TestServer, all_feed_paths, assert_invalid, authed, brief, ts};
use feedpub::demo::sample_edition;
use feedpub::domain::{FeedScope, SectionSlug};
use feedpub::grpc::proto::{
    self, ArticleState, GetArticleRequest, ListArticlesRequest, ListSectionsRequest,
    PublishArticleRequest, RetractArticleRequest,
};
use std::collections::HashSet;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

fn parse(bytes: &[u8]) -> feed_rs::model::Feed {
    feed_rs::parser::parse(bytes).expect("feed-rs parses every feed")
}

fn publish(article: proto::Article) -> PublishArticleRequest {
    PublishArticleRequest {
        article: Some(article),
        ..Default::default()
    }
}

async fn publish_sample(server: &TestServer) -> Vec<proto::Article> {
    server.publish_sample_edition().await
}

#[tokio::test]
async fn the_sample_edition_reaches_every_feed_in_every_format_exactly_as_sent() {
    let server = TestServer::start().await;
    let sent = sample_edition();
    let stored = publish_sample(&server).await;
    server.settle().await;
    // The notice expired on 2023-06-14, so the feeds carry the other six, newest first.
    let visible: Vec<_> = sent.iter().filter(|a| a.section != "notices").collect();

    for format in ["rss.xml", "atom.xml", "feed.json"] {
        let path = format!("/feeds/all/{format}");
        let body = server
            .wait_for_feed(&path, |body| body.contains("右玉县农旅融合助力乡村振兴"))
            .await;
        let feed = parse(body.as_bytes());
        assert_eq!(feed.entries.len(), visible.len(), "{path}");
        for (entry, article) in feed.entries.iter().zip(&visible) {
            let stored = stored.iter().find(|s| s.id == article.id).unwrap();
            assert_eq!(
                entry.title.as_ref().unwrap().content,
                article.title,
                "{path}"
            );
            assert_eq!(entry.id, stored.guid, "{path}");
            let authors: Vec<_> = entry.authors.iter().map(|p| p.name.as_str()).collect();
            if article.authors.is_empty() {
                // Atom and JSON Feed name the publisher when the copy has no byline.
                assert!(
                    authors.is_empty() || authors == ["朔州日报"],
                    "{path}: {authors:?}"
                );
            } else {
                assert_eq!(authors, article.authors, "{path}");
            }
            let published = article.publish_time.as_ref().unwrap();
            assert_eq!(
                entry.published.unwrap().timestamp(),
                published.seconds,
                "{path}"
            );
            let body = entry
                .content
                .as_ref()
                .and_then(|c| c.body.as_ref())
                .unwrap();
            for paragraph in article.content_text.split("\n\n") {
                assert!(
                    body.contains(&format!("<p>{paragraph}</p>")),
                    "{path}: {paragraph}"
                );
            }
            // The column name (kicker) comes first among the categories, then the tags.
            let categories: Vec<_> = entry.categories.iter().map(|c| c.term.as_str()).collect();
            let mut expected: Vec<&str> = Vec::new();
            if !article.kicker.is_empty() {
                expected.push(&article.kicker);
            }
            expected.extend(article.tags.iter().map(String::as_str));
            assert_eq!(categories, expected, "{path}");
            if !article.subtitle.is_empty() {
                let deck = format!("<p><strong>{}</strong></p>", article.subtitle);
                assert!(body.starts_with(&deck), "{path}: {body}");
            }
        }
    }

    // Section feeds hold only their own section.
    let politics = parse(&server.get_bytes("/feeds/politics/atom.xml").await);
    let titles: Vec<_> = politics
        .entries
        .iter()
        .map(|e| e.title.clone().unwrap().content)
        .collect();
    assert_eq!(
        titles,
        [
            "何向荣主持召开全市打击私采滥挖工作推进会",
            "全市“十四五”高速及国省道干线公路规划中期调整研讨会召开",
            "我市奋力谱写档案事业发展新篇章"
        ]
    );
    let notices = parse(&server.get_bytes("/feeds/notices/rss.xml").await);
    assert!(
        notices.entries.is_empty(),
        "the expired notice is in no feed"
    );

    // Beijing time, with its real offset, in the raw documents.
    let rss = String::from_utf8(server.get_bytes("/feeds/rural/rss.xml").await).unwrap();
    assert!(
        rss.contains("<pubDate>Wed, 7 Jun 2023 06:54:00 +0800</pubDate>"),
        "{rss}"
    );
    let json = String::from_utf8(server.get_bytes("/feeds/rural/feed.json").await).unwrap();
    assert!(
        json.contains(r#""date_published": "2023-06-07T06:54:00+08:00""#),
        "{json}"
    );

    // The API gives back the copy exactly as sent.
    let mut client = server.client().await;
    for article in &sent {
        let got = client
            .get_article(authed(
                &server.tokens.newsroom,
                GetArticleRequest {
                    id: article.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.content_text, article.content_text);
        assert_eq!(got.title, article.title);
        assert_eq!(got.subtitle, article.subtitle);
        assert_eq!(got.kicker, article.kicker);
        assert_eq!(got.authors, article.authors);
        assert_eq!(got.publish_time, article.publish_time);
        let expected_state = if article.section == "notices" {
            ArticleState::Expired
        } else {
            ArticleState::Published
        };
        assert_eq!(got.state(), expected_state, "{}", article.id);
    }
}

#[tokio::test]
async fn republishing_keeps_one_entry_with_the_same_guid_and_shows_the_correction() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let first = client
        .publish_article(authed(token, publish(brief("brief-1", "原标题"))))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    let again = client
        .publish_article(authed(token, publish(brief("brief-1", "原标题"))))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!(again.guid, first.guid);
    assert_eq!(again.etag, first.etag, "identical content changes nothing");
    assert_eq!(again.update_time, first.update_time);

    let corrected = client
        .publish_article(authed(token, publish(brief("brief-1", "更正后的标题"))))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!(corrected.guid, first.guid);
    assert_ne!(corrected.etag, first.etag);
    assert!(
        corrected.update_time.as_ref().unwrap().seconds
            > first.update_time.as_ref().unwrap().seconds
    );

    for path in [
        "/feeds/politics/atom.xml",
        "/feeds/all/rss.xml",
        "/feeds/all/feed.json",
    ] {
        let body = server
            .wait_for_feed(path, |b| b.contains("更正后的标题"))
            .await;
        let feed = parse(body.as_bytes());
        assert_eq!(feed.entries.len(), 1, "{path}");
        assert_eq!(feed.entries[0].id, first.guid, "{path}");
        assert!(!body.contains("原标题"), "{path}");
    }
}

/// A client that reads an article and sends it back as read changes nothing, whatever
/// the text held (entities decoded on the way in); one that edits only the text beside the
/// HTML it read stores the edit, the HTML and the summary made again from it, in every
/// format; one that edits the HTML beside the text it read keeps that HTML, warned.
#[tokio::test]
async fn an_article_read_edited_and_sent_back_is_stored_as_edited() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let sent = proto::Article {
        title: "AT&amp;amp;T 与 R&amp;D".into(),
        ..brief("rmw-1", "")
    };
    let first = client
        .publish_article(authed(token, publish(sent.clone())))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!(first.title, "AT&T 与 R&D");
    let reader = client.clone();
    let read = || {
        let mut client = reader.clone();
        let request = authed(
            token,
            GetArticleRequest {
                id: "rmw-1".into(),
                version: 0,
            },
        );
        async move { client.get_article(request).await.unwrap().into_inner() }
    };
    let got = read().await;
    assert!(!got.content_html.is_empty() && !got.content_text.is_empty());
    let answer = client
        .publish_article(authed(token, publish(got.clone())))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!((answer.version, &answer.etag), (1, &first.etag));

    // Only the text edited, beside the HTML and the summary made from the stored text:
    // both are made again from the edit.
    let edited = "本报讯 更正后的正文。";
    let second = client
        .publish_article(authed(
            token,
            publish(proto::Article {
                content_text: edited.into(),
                ..got.clone()
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.content_html, "<p>本报讯 更正后的正文。</p>");
    assert_eq!(second.summary, edited);
    assert_eq!(read().await.etag, second.etag);
    for path in ["/feeds/politics/rss.xml", "/feeds/politics/atom.xml"] {
        let body = server
            .wait_for_feed(path, |b| b.contains("更正后的正文"))
            .await;
        assert!(!body.contains("研讨会召开"), "{path}: {body}");
    }

    // The HTML edited beside its old text is the HTML: kept, with a warning.
    let answer = client
        .publish_article(authed(
            token,
            publish(proto::Article {
                content_html: "<p>本报讯 <b>再次</b>更正。</p>".into(),
                etag: second.etag.clone(),
                ..got
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    let third = answer.article.unwrap();
    assert_eq!(third.content_html, "<p>本报讯 <b>再次</b>更正。</p>");
    assert!(
        answer
            .warnings
            .iter()
            .any(|w| w.starts_with("article.content_text: its words differ")),
        "{:?}",
        answer.warnings
    );

    // Sent as HTML, read back with the summary made from it, and sent again with only the
    // HTML edited: the summary is made from the edit, and the feeds carry it. So too when
    // the body's text reads like an entity, and the summary made from it with it: sent
    // back, that summary is the stored one, not an escape to decode.
    for (id, html, summary, edited, edited_summary) in [
        (
            "rmw-2",
            "<p>事故造成<b>10</b>人受伤。</p>",
            "事故造成10人受伤。",
            "<p>事故造成<del>10</del><ins>12</ins>人受伤。</p>",
            "事故造成12人受伤。",
        ),
        (
            "rmw-3",
            "<p>用 &amp;lt;br&amp;gt; 换行。</p>",
            "用 &lt;br&gt; 换行。",
            "<p>用 &amp;lt;hr&amp;gt; 分隔。</p>",
            "用 &lt;hr&gt; 分隔。",
        ),
    ] {
        let html_born = proto::Article {
            content_text: String::new(),
            content_html: html.into(),
            ..brief(id, "事故")
        };
        let first = client
            .publish_article(authed(token, publish(html_born)))
            .await
            .unwrap()
            .into_inner()
            .article
            .unwrap();
        assert_eq!(first.summary, summary);
        let answer = client
            .publish_article(authed(
                token,
                publish(proto::Article {
                    content_html: edited.into(),
                    ..first
                }),
            ))
            .await
            .unwrap()
            .into_inner();
        // The summary sent back was the stored one, made again: no note says it was
        // decoded, which was not what was stored.
        assert!(
            !answer.warnings.iter().any(|w| w.contains("summary")),
            "{id}: {:?}",
            answer.warnings
        );
        let corrected = answer.article.unwrap();
        assert_eq!(corrected.version, 2, "{id}");
        assert_eq!(corrected.summary, edited_summary);
        let feed = server
            .wait_for_feed("/feeds/politics/feed.json", |b| b.contains(edited_summary))
            .await;
        assert!(!feed.contains(summary), "{feed}");
        // Nor the summary decoded, kept beside a body that no longer says it.
        assert!(
            !feed.contains(&summary.replace("&lt;", "<").replace("&gt;", ">")),
            "{feed}"
        );
    }
}

#[tokio::test]
async fn a_retracted_article_leaves_every_feed_but_stays_readable_by_its_partner() {
    let server = TestServer::start().await;
    publish_sample(&server).await;
    let title = "右玉县农旅融合助力乡村振兴";
    server
        .wait_for_feed("/feeds/rural/rss.xml", |b| b.contains(title))
        .await;

    let mut client = server.client().await;
    let retracted = client
        .retract_article(authed(
            &server.tokens.newsroom,
            RetractArticleRequest {
                id: "2023-06-07-youyu-nonglv-ronghe".into(),
                reason: "事实有误".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retracted.state(), ArticleState::Retracted);
    assert_eq!(retracted.retract_reason, "事实有误");
    assert!(retracted.retract_time.is_some());

    for path in [
        "/feeds/rural/rss.xml",
        "/feeds/rural/atom.xml",
        "/feeds/rural/feed.json",
    ]
    .into_iter()
    .chain([
        "/feeds/all/rss.xml",
        "/feeds/all/atom.xml",
        "/feeds/all/feed.json",
    ]) {
        server.wait_for_feed(path, |b| !b.contains(title)).await;
    }
    let all = parse(&server.get_bytes("/feeds/all/atom.xml").await);
    assert_eq!(all.entries.len(), 5);

    // Retracting again is harmless, and the article is still there for its partner.
    let again = client
        .retract_article(authed(
            &server.tokens.newsroom,
            RetractArticleRequest {
                id: "2023-06-07-youyu-nonglv-ronghe".into(),
                reason: "again".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.retract_reason, "事实有误");
    assert_eq!(again.retract_time, retracted.retract_time);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let status = client
        .list_sections(ListSectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("authorization"),
        "{}",
        status.message()
    );

    for token in ["fp_not-a-real-token", ""] {
        let statuses = [
            client
                .publish_article(authed(token, publish(brief("x", "t"))))
                .await
                .unwrap_err(),
            client
                .get_article(authed(
                    token,
                    GetArticleRequest {
                        id: "x".into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap_err(),
            client
                .list_articles(authed(token, ListArticlesRequest::default()))
                .await
                .unwrap_err(),
            client
                .retract_article(authed(token, RetractArticleRequest::default()))
                .await
                .unwrap_err(),
            client
                .list_sections(authed(token, ListSectionsRequest {}))
                .await
                .unwrap_err(),
        ];
        for status in statuses {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
    }
}

#[tokio::test]
async fn a_partner_cannot_publish_outside_its_sections_nor_see_others_articles() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let status = client
        .publish_article(authed(
            &server.tokens.county,
            publish(brief("c-1", "县里的消息")),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("politics"),
        "{}",
        status.message()
    );

    let mut rural = brief("c-1", "县里的消息");
    rural.section = "rural".into();
    client
        .publish_article(authed(&server.tokens.county, publish(rural)))
        .await
        .unwrap();
    // Ids are scoped to the partner: the newsroom has no article c-1.
    let status = client
        .get_article(authed(
            &server.tokens.newsroom,
            GetArticleRequest {
                id: "c-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_fields_are_invalid_arguments_that_name_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let stored = client
        .publish_article(authed(token, publish(brief("keep-me", "保留"))))
        .await
        .unwrap()
        .into_inner()
        .article
        .unwrap();

    let base = || brief("keep-me", "保留");
    let cases: Vec<(&str, Option<proto::Article>)> = vec![
        ("article", None),
        (
            "article.id",
            Some(proto::Article {
                id: "".into(),
                ..base()
            }),
        ),
        (
            "article.id",
            Some(proto::Article {
                id: "has space".into(),
                ..base()
            }),
        ),
        (
            "article.id",
            Some(proto::Article {
                id: "x".repeat(129),
                ..base()
            }),
        ),
        (
            "article.section",
            Some(proto::Article {
                section: "".into(),
                ..base()
            }),
        ),
        (
            "article.section",
            Some(proto::Article {
                section: "sports".into(),
                ..base()
            }),
        ),
        (
            "article.section",
            Some(proto::Article {
                section: "all".into(),
                ..base()
            }),
        ),
        (
            "article.title",
            Some(proto::Article {
                title: " \u{7} ".into(),
                ..base()
            }),
        ),
        (
            "article.title",
            Some(proto::Article {
                title: "长".repeat(501),
                ..base()
            }),
        ),
        (
            "article.authors[1]",
            Some(proto::Article {
                authors: vec!["甲".into(), " ".into()],
                ..base()
            }),
        ),
        (
            "article.tags",
            Some(proto::Article {
                tags: vec!["t".into(); 101],
                ..base()
            }),
        ),
        (
            "article.content_html",
            Some(proto::Article {
                content_text: "".into(),
                ..base()
            }),
        ),
        (
            "article.content_html",
            Some(proto::Article {
                content_html: "<script>x</script>".into(),
                content_text: "".into(),
                ..base()
            }),
        ),
        (
            "article.canonical_url",
            Some(proto::Article {
                canonical_url: "javascript:alert(1)".into(),
                ..base()
            }),
        ),
        (
            "article.canonical_url",
            Some(proto::Article {
                canonical_url: "/relative".into(),
                ..base()
            }),
        ),
        (
            "article.publish_time",
            Some(proto::Article {
                publish_time: None,
                ..base()
            }),
        ),
        (
            "article.publish_time",
            Some(proto::Article {
                publish_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 2_000_000_000,
                }),
                ..base()
            }),
        ),
        (
            "article.publish_time",
            Some(proto::Article {
                publish_time: Some(ts(-10_000_000_000)),
                ..base()
            }),
        ),
        (
            "article.expire_time",
            Some(proto::Article {
                expire_time: Some(ts(1_686_000_000)),
                ..base()
            }),
        ),
    ];
    for (field, article) in cases {
        let status = client
            .publish_article(authed(
                token,
                PublishArticleRequest {
                    article,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_invalid(&status, field);
    }

    for id in ["", "a/b"] {
        let status = client
            .get_article(authed(
                token,
                GetArticleRequest {
                    id: id.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("id"));
    }
    for (request, field) in [
        (
            ListArticlesRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListArticlesRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListArticlesRequest {
                section: "Bad".into(),
                ..Default::default()
            },
            "section",
        ),
    ] {
        let status = client
            .list_articles(authed(token, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }

    let after = client
        .get_article(authed(
            token,
            GetArticleRequest {
                id: "keep-me".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after, stored,
        "no rejected request changed the stored article"
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let status = client
        .get_article(authed(
            token,
            GetArticleRequest {
                id: "nope".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"));
    let status = client
        .retract_article(authed(
            token,
            RetractArticleRequest {
                id: "nope".into(),
                reason: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn list_articles_pages_newest_first_and_filters_by_section() {
    let server = TestServer::start().await;
    publish_sample(&server).await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;

    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_articles(authed(
                token,
                ListArticlesRequest {
                    section: String::new(),
                    page_size: 3,
                    page_token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.articles.len() <= 3);
        ids.extend(page.articles.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: Vec<_> = sample_edition().into_iter().map(|a| a.id).collect();
    assert_eq!(
        ids, expected,
        "page order is newest first, every article once"
    );

    let politics = client
        .list_articles(authed(
            token,
            ListArticlesRequest {
                section: "politics".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(politics.articles.len(), 3);
    assert!(politics.next_page_token.is_empty());
    assert!(politics.articles.iter().all(|a| a.section == "politics"));

    let county = client
        .list_articles(authed(
            &server.tokens.county,
            ListArticlesRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        county.articles.is_empty(),
        "a partner lists only its own articles"
    );
}

#[tokio::test]
async fn list_sections_returns_the_configured_sections_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let sections = client
        .list_sections(authed(&server.tokens.county, ListSectionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .sections;
    let slugs: Vec<_> = sections.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(
        slugs,
        ["party-building", "politics", "notices", "features", "rural"]
    );
    assert_eq!(sections[4].title, "乡村振兴");
}

#[tokio::test]
async fn health_and_reflection_serve_generic_clients() {
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "feedpub.v1.PublisherService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status(), ServingStatus::Serving);
    // A database out of reach takes the replica out of a balancer, and its return puts it
    // back: the health service follows the replication fault as it starts and ends.
    let mut statuses = health
        .watch(HealthCheckRequest {
            service: "feedpub.v1.PublisherService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), statuses.message())
            .await
            .expect("the health service reports the change");
        message.unwrap().unwrap().status()
    };
    assert_eq!(next().await, ServingStatus::Serving);
    use feedpub::health::Component;
    server
        .health
        .fault(Component::Replication, "connection refused");
    assert_eq!(next().await, ServingStatus::NotServing);
    server.health.recovered(Component::Replication);
    assert_eq!(next().await, ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: HashSet<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains("feedpub.v1.PublisherService"), "{names:?}");
    assert!(names.contains("grpc.health.v1.Health"), "{names:?}");
}

/// A health watch and a reflection stream, which never end by themselves, do not hold the
/// server up when it stops: the health service says NOT_SERVING, and both streams end with
/// UNAVAILABLE, `SHUTTING_DOWN`, as `WatchArticles` streams do.
#[tokio::test]
async fn open_health_and_reflection_streams_end_when_the_server_stops() {
    use tokio_stream::StreamExt;

    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut statuses = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = statuses.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    // A reflection stream whose client keeps its side open.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let requests = tokio_stream::once(request).chain(tokio_stream::pending());
    let mut reflection = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    assert!(reflection.message().await.unwrap().is_some());

    let deadline = std::time::Duration::from_secs(20);
    tokio::time::timeout(deadline, server.stop())
        .await
        .expect("the server stops though the streams are open");
    let ended = loop {
        match statuses.message().await {
            Ok(Some(status)) => assert_eq!(status.status(), ServingStatus::NotServing),
            Ok(None) => panic!("the health watch ended without a status"),
            Err(status) => break status,
        }
    };
    for ended in [ended, reflection.message().await.unwrap_err()] {
        assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
        assert_eq!(common::error_reason(&ended), "SHUTTING_DOWN");
    }
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_article_and_regenerates_identical_bytes() {
    let server = TestServer::start().await;
    let stored = publish_sample(&server).await;
    server.settle().await;
    let mut before = Vec::new();
    for path in all_feed_paths() {
        let response = reqwest::get(server.url(&path)).await.unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let modified = response.headers()["last-modified"]
            .to_str()
            .unwrap()
            .to_owned();
        before.push((path, etag, modified, response.bytes().await.unwrap()));
    }

    let server = server.restart().await;
    for (path, etag, modified, bytes) in &before {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.headers()["etag"].to_str().unwrap(), etag, "{path}");
        assert_eq!(
            response.headers()["last-modified"].to_str().unwrap(),
            modified,
            "{path}"
        );
        assert_eq!(&response.bytes().await.unwrap(), bytes, "{path}");
    }
    let mut client = server.client().await;
    for article in &stored {
        let got = client
            .get_article(authed(
                &server.tokens.newsroom,
                GetArticleRequest {
                    id: article.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got, article);
    }
}

#[tokio::test]
async fn a_burst_of_publishes_to_one_section_is_coalesced_into_few_regenerations() {
    const BURST: usize = 200;
    let server = TestServer::start().await;
    let scope = FeedScope::Section(SectionSlug::parse("politics").unwrap());
    let before = server.publication.regenerations(&scope);
    let client = server.client().await;
    let mut tasks = Vec::new();
    for i in 0..BURST {
        let mut client = client.clone();
        let token = server.tokens.newsroom.clone();
        tasks.push(tokio::spawn(async move {
            let mut article = brief(&format!("burst-{i:03}"), &format!("快讯 {i:03}"));
            article.publish_time = Some(ts(1_686_092_400 + i as i64));
            client
                .publish_article(authed(&token, publish(article)))
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every publish is answered, so settled feeds hold all 200. (The first feed to show the
    // last may be older: built while the burst was still being stored, it also carried the
    // open archive page of the articles stored so far.)
    server.settle().await;
    let body = String::from_utf8(server.get_bytes("/feeds/politics/rss.xml").await).unwrap();
    assert!(body.contains(&format!("快讯 {:03}", BURST - 1)), "{body}");
    assert_eq!(
        parse(body.as_bytes()).entries.len(),
        50,
        "a feed carries the newest 50 (200 articles fill four archive pages: none is open)"
    );
    let regenerations = server.publication.regenerations(&scope) - before;
    eprintln!("{BURST} publishes to one section: {regenerations} regenerations");
    assert!(
        regenerations * 4 <= BURST as u64,
        "{BURST} publishes caused {regenerations} regenerations of the section's feeds"
    );
}

#[tokio::test]
async fn every_item_carries_its_language_and_a_bad_tag_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = &server.tokens.newsroom;
    let mut english = brief("en-1", "Shuozhou opens its archives");
    english.language = "en".into();
    english.publish_time = Some(ts(1_686_092_500));
    for article in [english, brief("zh-1", "档案日")] {
        client
            .publish_article(authed(token, publish(article)))
            .await
            .unwrap();
    }
    server.settle().await;

    let json: serde_json::Value =
        serde_json::from_slice(&server.get_bytes("/feeds/politics/feed.json").await).unwrap();
    assert_eq!(json["language"], "zh-CN");
    assert_eq!(json["items"][0]["language"], "en");
    assert_eq!(json["items"][1]["language"], "zh-CN");

    let rss = String::from_utf8(server.get_bytes("/feeds/politics/rss.xml").await).unwrap();
    assert!(rss.contains("<dc:language>en</dc:language>"), "{rss}");
    assert!(rss.contains("<dc:language>zh-CN</dc:language>"), "{rss}");

    let atom = String::from_utf8(server.get_bytes("/feeds/politics/atom.xml").await).unwrap();
    assert!(
        atom.contains(r#"<title type="text" xml:lang="en">Shuozhou opens its archives</title>"#)
            || atom.contains(r#"<title xml:lang="en">Shuozhou opens its archives</title>"#),
        "{atom}"
    );
    assert_eq!(
        atom.matches(r#"xml:lang="en""#).count(),
        3,
        "title, summary, content: {atom}"
    );

    let mut bad = brief("bad-lang", "x");
    bad.language = "english please".into();
    let status = client
        .publish_article(authed(token, publish(bad)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("article.language"),
        "{}",
        status.message()
    );
}
