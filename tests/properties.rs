//! Property tests of ingest, sanitising and rendering (issue 8, item 3) on generated input:
//! arbitrary Unicode (controls, non-characters, bidi, ZWJ sequences, astral CJK) mixed with
//! the strings that break XML and HTML, in every field of a publish request, with arbitrary
//! timestamps and media. What must hold for every input:
//! - nothing panics; a refused article names a field of the request;
//! - an accepted article carries no forbidden character, its HTML is sanitised to a fixed
//!   point, and ingesting what was stored again stores exactly the same content;
//! - every feed rendered from accepted articles parses in roxmltree (strict XML 1.0) and
//!   feed-rs (JSON Feed in serde_json and feed-rs), with every entry and its title intact;
//! - sanitising arbitrary markup built from tags, attributes and text is idempotent.
//!
//! `src/domain/text.rs` already checks sanitising on a fixed alphabet of hostile fragments,
//! and `tests/corpus.rs` a deterministic hostile corpus end to end; these add generated
//! input. `PROPTEST_CASES` sets the number of cases of each property (defaults below).

// The corpus's checks, written independently of the product's code.
#[allow(dead_code)]
#[path = "corpus/inspect.rs"]
mod inspect;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use feedpub::domain::{Article, HtmlPolicy, PartnerId, Revision, Tombstone, stored, text_to_html};
use feedpub::grpc::convert;
use feedpub::grpc::proto;
use feedpub::render::{ArchiveLinks, FeedMeta, Format};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;

/// The number of cases: `PROPTEST_CASES` when set, else `default`.
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // A failure is reported with its minimal input; no files are left behind.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `property` on `cases` inputs of `strategy`, fails with the minimal failing input,
/// and prints how many cases ran and how many `property` counted (`counted` says what).
fn check<S: Strategy>(
    name: &str,
    counted: &str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> (u32, usize)
where
    S::Value: std::fmt::Debug,
{
    let config = config(default_cases);
    let cases = config.cases;
    let interesting = Cell::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        if property(value)? {
            interesting.set(interesting.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!("{name}: {cases} cases, {} {counted}", interesting.get());
    (cases, interesting.get())
}

/// Strings that break XML, HTML, JSON or text handling.
const NASTY: &[&str] = &[
    "]]>",
    "<![CDATA[",
    "&",
    "&amp;",
    "&lt;script&gt;",
    "&#0;",
    "&#x1;",
    "&#xD800;",
    "&#1114112;",
    "&nbsp;",
    "&copy",
    "<",
    ">",
    "\"",
    "'",
    "<!--",
    "-->",
    "<?xml version=\"1.0\"?>",
    "<script>alert(1)</script>",
    "<p>",
    "</p>",
    "<b><i>",
    "\u{0}",
    "\u{8}",
    "\u{b}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{fdd0}",
    "\u{fffe}",
    "\u{ffff}",
    "\u{10ffff}",
    "\u{feff}",
    "\u{202e}",
    "\u{202c}",
    "\u{2067}",
    " \u{2069} ",
    "\u{2069}\u{301}",
    "\u{2028}",
    "\u{200d}",
    "👩\u{200d}👩\u{200d}👧",
    "e\u{301}",
    "𠮷",
    "朔州日报",
    "\r\n",
    "\r",
    "\n\n",
    "\t",
    " ",
    "\\u0000",
    "{\"a\":1}",
];

/// Text made of arbitrary characters (controls and non-characters included) and nasty
/// strings.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::collection::vec(any::<char>(), 0..12)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        2 => proptest::sample::select(NASTY).prop_map(str::to_owned),
        2 => "[a-z 朔州右玉县农旅融合]{0,16}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// A timestamp anywhere in the range of the protobuf type, valid or not.
fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    let seconds = prop_oneof![
        4 => 0i64..4_102_444_800,
        1 => any::<i64>(),
    ];
    let nanos = prop_oneof![4 => 0i32..1_000_000_000, 1 => any::<i32>()];
    proptest::option::weighted(0.9, (seconds, nanos))
        .prop_map(|t| t.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }))
}

fn media() -> impl Strategy<Value = proto::Media> {
    let url = prop_oneof![
        Just("https://img.example.com/a.jpg?x=1&y=2".to_owned()),
        Just("javascript:alert(1)".to_owned()),
        text(),
    ];
    let mime = prop_oneof![
        Just("image/jpeg".to_owned()),
        Just("audio/mpeg".to_owned()),
        text()
    ];
    (url, mime, any::<i64>(), text(), any::<u32>(), any::<u32>()).prop_map(
        |(url, mime_type, length, caption, width, height)| proto::Media {
            url,
            mime_type,
            length,
            caption,
            width,
            height,
        },
    )
}

/// A publish request's article with every field generated.
fn article() -> impl Strategy<Value = proto::Article> {
    let id = prop_oneof![4 => "[A-Za-z0-9._~-]{1,24}", 1 => text()];
    let section = prop_oneof![
        4 => proptest::sample::select(&["politics", "rural", "features"][..]).prop_map(str::to_owned),
        1 => text(),
    ];
    let names = || proptest::collection::vec(text(), 0..4);
    let body = prop_oneof![
        Just((String::new(), String::new())),
        text().prop_map(|html| (html, String::new())),
        text().prop_map(|plain| (String::new(), plain)),
        (text(), text()),
    ];
    let language = prop_oneof![
        Just(String::new()),
        Just("zh-CN".to_owned()),
        Just("en".to_owned()),
        text()
    ];
    (
        (id, section, text(), text(), text(), names(), names()),
        (text(), body, text(), language),
        (timestamp(), timestamp(), timestamp(), timestamp()),
        proptest::collection::vec(media(), 0..3),
    )
        .prop_map(
            |(
                (id, section, title, subtitle, kicker, authors, tags),
                (summary, (content_html, content_text), canonical_url, language),
                (publish_time, update_time, expire_time, embargo_time),
                media,
            )| proto::Article {
                id,
                section,
                title,
                subtitle,
                kicker,
                authors,
                tags,
                summary,
                content_html,
                content_text,
                canonical_url,
                language,
                publish_time,
                update_time,
                expire_time,
                embargo_time,
                media,
                ..Default::default()
            },
        )
}

fn policy() -> HtmlPolicy {
    HtmlPolicy::new(&["player.example.com".to_owned()])
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

/// Ingests `article` as the API does: the stored article, or the violations' field names.
fn ingest(article: proto::Article, policy: &HtmlPolicy) -> Result<Article, Vec<String>> {
    let names =
        |v: feedpub::domain::Violations| v.iter().map(|v| v.field.clone()).collect::<Vec<_>>();
    let draft = convert::draft_from_proto(Some(article)).map_err(names)?;
    let valid = draft.validate("article.", policy).map_err(names)?;
    let guid = format!("tag:example.com,2023-06-07:newsroom/{}", valid.id);
    match Article::revise(None, PartnerId(1), valid.id, valid.content, now(), |_| guid) {
        Revision::Created(article) => Ok(article),
        other => panic!("a first publish creates: {other:?}"),
    }
}

/// What a partner would send to publish `stored` again unchanged.
fn as_request(stored: &Article) -> proto::Article {
    let mut request = convert::article_to_proto(stored);
    // The answer's update_time is when the article last changed; the partner's own edit
    // time is what goes back.
    request.update_time = stored.content.update_time.map(|t| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    });
    // HTML that ingest made from the plain text is not sent back; HTML the partner sent
    // beside it is.
    if stored.content.content_text.as_deref().map(text_to_html)
        == Some(request.content_html.clone())
    {
        request.content_html.clear();
    }
    request
}

fn meta() -> FeedMeta {
    FeedMeta {
        title: "朔州日报 · 时政 <&> ]]>".into(),
        description: "时政快讯与新闻发布".into(),
        language: "zh-CN".into(),
        site_url: "https://example.com/".into(),
        publisher: "朔州日报".into(),
        rights: "© 朔州日报社".into(),
        icon: None,
        logo: None,
        avatar: None,
        atom_id: "https://example.com/feeds/politics/atom.xml".into(),
        atom_url: "https://example.com/feeds/politics/atom.xml".into(),
        rss_url: "https://example.com/feeds/politics/rss.xml".into(),
        json_url: "https://example.com/feeds/politics/feed.json".into(),
        hub_url: "https://example.com/websub".into(),
        stylesheet: Some("/feeds/feed.xsl".into()),
        updated: Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap(),
        offset: FixedOffset::east_opt(8 * 3600).unwrap(),
        tombstones: vec![Tombstone {
            guid: "tag:example.com,2023-06-06:newsroom/gone".into(),
            when: Utc.with_ymd_and_hms(2023, 6, 6, 12, 0, 0).unwrap(),
        }],
        archive: ArchiveLinks::default(),
    }
}

/// The plain-text fields of a stored article.
fn text_fields(article: &Article) -> Vec<&String> {
    let c = &article.content;
    let mut fields = vec![&c.title, &c.subtitle, &c.kicker, &c.summary];
    fields.extend(c.content_text.iter());
    fields.extend(c.authors.iter().chain(&c.tags));
    fields.extend(c.media.iter().map(|m| &m.caption));
    fields
}

/// The first field of a stored article that holds a character no feed may carry.
fn forbidden_in(article: &Article) -> Option<&String> {
    let mut fields = text_fields(article);
    fields.push(&article.content.content_html);
    fields
        .into_iter()
        .find(|value| inspect::forbidden_count(value) > 0)
}

#[test]
fn ingest_never_panics_cleans_every_field_and_is_a_fixed_point() {
    let policy = policy();
    // Half the requests get a shape ingest accepts, so both outcomes are exercised often.
    let requests = (article(), any::<bool>()).prop_map(|(request, shaped)| {
        if shaped {
            publishable(request, 0)
        } else {
            request
        }
    });
    let (cases, accepted) = check("ingest", "accepted", 3000, requests, |request| {
        let stored = match ingest(request, &policy) {
            Err(fields) => {
                prop_assert!(!fields.is_empty());
                for field in fields {
                    prop_assert!(field.starts_with("article"), "{}", field);
                }
                return Ok(false);
            }
            Ok(stored) => stored,
        };
        prop_assert_eq!(forbidden_in(&stored), None);
        // The stored HTML is what the sanitiser keeps (HTML made from plain text writes
        // U+00A0 as itself, the sanitiser as `&nbsp;`: the same character).
        let html = &stored.content.content_html;
        let base = stored
            .content
            .canonical_url
            .as_deref()
            .and_then(|url| url::Url::parse(url).ok());
        prop_assert_eq!(
            policy.sanitize_for(html, base.as_ref()).unwrap().html,
            html.replace('\u{a0}', "&nbsp;")
        );
        // And `feedpub import` takes every stored field as it is.
        prop_assert_eq!(stored::html_fault(html, &policy, base.as_ref()), None);
        for text in text_fields(&stored) {
            prop_assert_eq!(stored::text_fault(text), None);
        }
        let content = &stored.content;
        prop_assert_eq!(
            stored::names_fault(&serde_json::to_string(&content.authors).unwrap()),
            None
        );
        prop_assert_eq!(
            stored::names_fault(&serde_json::to_string(&content.tags).unwrap()),
            None
        );
        prop_assert_eq!(
            stored::media_fault(&serde_json::to_string(&content.media).unwrap()),
            None
        );
        if let Some(url) = &content.canonical_url {
            prop_assert_eq!(stored::url_fault(url), None);
        }
        // Plain-text fields are decoded once: stored text that still reads as an entity
        // (sent double-encoded, or made one by a removed control character, as in
        // `&copy\0;`) is decoded again when sent again, by design.
        if text_fields(&stored)
            .iter()
            .any(|t| inspect::has_entity_like(t))
        {
            return Ok(true);
        }
        let again = ingest(as_request(&stored), &policy);
        prop_assert!(
            again.is_ok(),
            "stored content is refused: {:?}",
            again.err()
        );
        prop_assert_eq!(&again.unwrap().content, &stored.content);
        Ok(true)
    });
    assert!(
        accepted > 0 && accepted < cases as usize,
        "both outcomes are exercised"
    );
}

/// Tags, attributes and text that markup is built from.
const TAGS: &[&str] = &[
    "p",
    "b",
    "i",
    "a",
    "img",
    "iframe",
    "script",
    "style",
    "svg",
    "math",
    "table",
    "tr",
    "td",
    "ul",
    "li",
    "br",
    "blockquote",
    "figure",
    "figcaption",
    "object",
    "form",
    "noscript",
    "template",
    "select",
    "option",
    "textarea",
    "title",
    "xmp",
    "plaintext",
];
const ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "srcset",
    "style",
    "onclick",
    "onerror",
    "title",
    "alt",
    "class",
    "id",
    "rel",
    "target",
    "xmlns",
    "xlink:href",
];
const VALUES: &[&str] = &[
    "https://example.com/?a=1&b=2",
    "javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>",
    "https://player.example.com/v/1",
    "//evil.example/x",
    "\" onload=\"x",
    "'><script>",
    "",
];

fn markup() -> impl Strategy<Value = String> {
    markup_of(16, TAGS.to_vec())
}

/// Markup of up to `pieces` elements of `tags`, end tags and runs of text.
fn markup_of(pieces: usize, tags: Vec<&'static str>) -> impl Strategy<Value = String> {
    let element = (
        proptest::sample::select(tags.clone()),
        proptest::collection::vec(
            (
                proptest::sample::select(ATTRIBUTES),
                proptest::sample::select(VALUES),
            ),
            0..3,
        ),
        any::<bool>(),
        proptest::sample::select(&["", "\"", "'"][..]),
    )
        .prop_map(|(tag, attributes, close, quote)| {
            let attributes: String = attributes
                .iter()
                .map(|(name, value)| format!(" {name}={quote}{value}{quote}"))
                .collect();
            if close {
                format!("<{tag}{attributes}></{tag}>")
            } else {
                format!("<{tag}{attributes}>")
            }
        });
    let piece = prop_oneof![
        3 => element,
        1 => proptest::sample::select(tags).prop_map(|t| format!("</{t}>")),
        2 => text(),
    ];
    proptest::collection::vec(piece, 0..pieces).prop_map(|pieces| pieces.concat())
}

/// The measure that refuses HTML too costly to parse runs the parser itself: on generated
/// hostile markup (tags, quotes, raw text, foreign content), small as real copy is, it
/// never refuses and never panics.
#[test]
fn the_parse_cost_measure_refuses_no_small_markup() {
    check(
        "parse cost",
        "tagged",
        3000,
        markup_of(64, TAGS.to_vec()),
        |html| {
            let cost = feedpub::domain::nesting::measure(&html);
            prop_assert_eq!(cost.fault(), None, "{:?}", cost);
            Ok(cost.elements > 0)
        },
    );
}

#[test]
fn sanitising_generated_markup_is_idempotent_and_leaves_nothing_that_runs() {
    let policy = policy();
    check(
        "sanitise",
        "changed by sanitising",
        3000,
        markup(),
        |html| {
            let once = policy.sanitize(&html).unwrap();
            prop_assert_eq!(&policy.sanitize(&once).unwrap(), &once);
            let changed = once != html;
            let problems = inspect::unsafe_markup(&once);
            prop_assert!(problems.is_empty(), "{:?} in {}", problems, once);
            Ok(changed)
        },
    );
}

/// Checks one rendered document; returns the problem, if any.
fn render_problem(format: Format, bytes: &[u8], articles: &[Article]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Some(format!("not UTF-8: {e}")),
    };
    if format == Format::JsonFeed {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return Some(format!("not JSON: {e}")),
        };
        let items = value["items"].as_array().map(Vec::len);
        if items != Some(articles.len()) {
            return Some(format!("{items:?} items"));
        }
    } else if let Err(e) = roxmltree::Document::parse(text) {
        return Some(format!("not well-formed XML: {e}"));
    }
    let feed = match feed_rs::parser::Builder::new()
        .sanitize_content(false)
        .build()
        .parse(bytes)
    {
        Ok(feed) => feed,
        Err(e) => return Some(format!("feed-rs: {e}")),
    };
    if feed.entries.len() != articles.len() {
        return Some(format!("{} entries", feed.entries.len()));
    }
    for (entry, article) in feed.entries.iter().zip(articles) {
        if entry.id != article.guid {
            return Some(format!("entry id {} for {}", entry.id, article.guid));
        }
        let title = entry
            .title
            .as_ref()
            .map(|t| t.content.as_str())
            .unwrap_or("");
        if title != article.content.title {
            return Some(format!("title {title:?} for {:?}", article.content.title));
        }
    }
    None
}

/// A request with arbitrary text in every text field but a shape ingest accepts: a known
/// section, a valid publish time, exactly one body, no other times or media.
fn publishable(mut request: proto::Article, n: usize) -> proto::Article {
    request.id = format!("a{n}");
    request.section = "politics".into();
    request.publish_time = Some(prost_types::Timestamp {
        seconds: 1_686_096_000 + n as i64 * 60,
        nanos: 0,
    });
    (
        request.update_time,
        request.expire_time,
        request.embargo_time,
    ) = (None, None, None);
    request.media.clear();
    request.canonical_url.clear();
    request.language.clear();
    if !request.content_text.is_empty() {
        request.content_html.clear();
    } else if request.content_html.is_empty() {
        request.content_text = "正文。".into();
    }
    request
}

#[test]
fn every_feed_of_accepted_articles_parses_strictly_with_every_entry() {
    let policy = policy();
    let requests = proptest::collection::vec(article(), 1..5);
    let (_, rendered) = check("render", "with entries", 1000, requests, |requests| {
        let mut articles: Vec<Article> = requests
            .into_iter()
            .enumerate()
            .filter_map(|(n, request)| ingest(publishable(request, n), &policy).ok())
            .collect();
        // Feeds list articles newest first, as the store returns them.
        articles.sort_by(Article::feed_order);
        let meta = meta();
        for format in Format::ALL {
            let bytes = format.render(&meta, &articles);
            let problem = render_problem(format, &bytes, &articles);
            prop_assert!(
                problem.is_none(),
                "{:?}: {}\n{}",
                format,
                problem.unwrap_or_default(),
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(!articles.is_empty())
    });
    assert!(rendered > 0, "some feeds had entries");
}
