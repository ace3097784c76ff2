//! Atom 1.0 (RFC 4287), with RFC 6721 tombstones of retracted entries.

use super::{FEED_HISTORY, FeedMeta, Format, body_html, categories};
use crate::domain::{Article, Media};
use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Text};
use chrono::SecondsFormat;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The namespace of RFC 6721 `deleted-entry`, prefix `at`.
const TOMBSTONES: &str = "http://purl.org/atompub/tombstones/1.0";

/// Renders an Atom document: permanent ids, `updated` from real edits, the publisher as
/// feed-level author for entries without a byline, `xml:lang` on the feed.
pub fn render(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
    let feed = Feed {
        title: Text::plain(meta.title.clone()),
        id: meta.atom_url.clone(),
        updated: meta.local(meta.updated),
        authors: vec![person(&meta.publisher)],
        generator: Some(Generator {
            value: "feedpub".into(),
            ..Generator::default()
        }),
        links: [
            link(&meta.atom_url, "self", Format::Atom.media_type()),
            link(&meta.site_url, "alternate", "text/html"),
            Link {
                href: meta.hub_url.clone(),
                rel: "hub".into(),
                ..Link::default()
            },
        ]
        .into_iter()
        .chain(
            meta.archive
                .links()
                .map(|(rel, urls)| link(&urls.atom, rel, Format::Atom.media_type())),
        )
        .collect(),
        subtitle: Some(Text::plain(meta.description.clone())),
        rights: (!meta.rights.is_empty()).then(|| Text::plain(meta.rights.clone())),
        icon: meta.icon.clone(),
        logo: meta.logo.clone(),
        entries: articles.iter().map(|a| entry(meta, a)).collect(),
        lang: Some(meta.language.clone()),
        namespaces: feed_namespaces(meta),
        ..Feed::default()
    };
    let xml = feed
        .write_to(Vec::with_capacity(4096 + articles.len() * 4096))
        .expect("writing XML into memory cannot fail");
    with_tombstones(xml, meta)
}

/// `xmlns:at` when the feed has tombstones, `xmlns:fh` when it is an archive page.
fn feed_namespaces(meta: &FeedMeta) -> BTreeMap<String, String> {
    let tombstones =
        (!meta.tombstones.is_empty()).then(|| ("at".to_owned(), TOMBSTONES.to_owned()));
    let history = meta
        .archive
        .is_archive
        .then(|| ("fh".to_owned(), FEED_HISTORY.to_owned()));
    tombstones.into_iter().chain(history).collect()
}

/// Adds an `<at:deleted-entry ref when/>` per tombstone (RFC 6721) between the feed's
/// metadata and its entries. atom_syndication can carry them as feed extensions, but writes
/// those after the entries (RFC 4287 wants a feed's metadata, extensions included, before
/// its entries) and writes extension attribute values unescaped; so they are written here,
/// escaped. In the crate's output every metadata value is escaped text and an entry starts
/// with exactly `<entry>`, so its first `<entry>` is where the entries begin; with no
/// entries they go just before `</feed>`.
fn with_tombstones(mut xml: Vec<u8>, meta: &FeedMeta) -> Vec<u8> {
    if meta.tombstones.is_empty() && !meta.archive.is_archive {
        return xml;
    }
    let mut elements = String::new();
    if meta.archive.is_archive {
        // RFC 5005: this document is an archive page; it goes with the feed's metadata too.
        elements.push_str("<fh:archive/>");
    }
    for tombstone in &meta.tombstones {
        let when = meta
            .local(tombstone.when)
            .to_rfc3339_opts(SecondsFormat::AutoSi, false);
        let _ = write!(
            elements,
            r#"<at:deleted-entry ref="{}" when="{when}"/>"#,
            html_escape::encode_double_quoted_attribute(&tombstone.guid)
        );
    }
    let find = |needle: &[u8]| xml.windows(needle.len()).position(|w| w == needle);
    let at = find(b"<entry>")
        .or_else(|| xml.windows(7).rposition(|w| w == b"</feed>"))
        .unwrap_or(xml.len());
    xml.splice(at..at, elements.into_bytes());
    xml
}

fn person(name: &str) -> Person {
    Person {
        name: name.to_owned(),
        ..Person::default()
    }
}

fn link(href: &str, rel: &str, mime_type: &str) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: Some(mime_type.to_owned()),
        ..Link::default()
    }
}

/// `<link rel="enclosure">` with the caption as its title and the length when known.
fn enclosure(media: &Media) -> Link {
    Link {
        href: media.url.clone(),
        rel: "enclosure".into(),
        mime_type: Some(media.mime_type.clone()),
        title: (!media.caption.is_empty()).then(|| media.caption.clone()),
        length: (media.length > 0).then(|| media.length.to_string()),
        ..Link::default()
    }
}

fn entry(meta: &FeedMeta, article: &Article) -> Entry {
    // Entries inherit the feed's xml:lang; copy in another language says so on its text.
    let own_language = Some(super::language(meta, article))
        .filter(|lang| *lang != meta.language)
        .map(str::to_owned);
    let content = &article.content;
    Entry {
        title: Text {
            lang: own_language.clone(),
            ..Text::plain(content.title.clone())
        },
        id: article.guid.clone(),
        updated: meta.local(article.updated),
        published: Some(meta.local(content.publish_time)),
        authors: content.authors.iter().map(|name| person(name)).collect(),
        categories: categories(article)
            .map(|term| Category {
                term: term.to_owned(),
                ..Category::default()
            })
            .collect(),
        links: content
            .canonical_url
            .iter()
            .map(|url| link(url, "alternate", "text/html"))
            .chain(content.media.iter().map(enclosure))
            .collect(),
        summary: Some(Text {
            lang: own_language.clone(),
            ..Text::plain(content.summary.clone())
        }),
        content: Some(Content {
            value: Some(body_html(article).into_owned()),
            content_type: Some("html".into()),
            lang: own_language,
            ..Content::default()
        }),
        ..Entry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn atom_round_trips_through_an_independent_parser() {
        let articles = fixtures::articles();
        let bytes = render(&fixtures::meta(), &articles);
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        assert_eq!(feed.id, "http://127.0.0.1:8080/feeds/politics/atom.xml");
        assert_eq!(feed.language.as_deref(), Some("zh-CN"));
        assert_eq!(feed.rights.as_ref().unwrap().content, "© 朔州日报社");
        assert_eq!(
            feed.icon.as_ref().unwrap().uri,
            "http://127.0.0.1:8080/icon.png"
        );
        assert_eq!(
            feed.logo.as_ref().unwrap().uri,
            "http://127.0.0.1:8080/logo.png"
        );
        let first = &feed.entries[0];
        assert_eq!(
            first.title.as_ref().unwrap().content,
            "何向荣主持召开 <推进会> & ]]> 会议"
        );
        assert_eq!(first.updated.unwrap(), articles[0].updated);
        let body = first.content.as_ref().unwrap().body.as_ref().unwrap();
        assert_eq!(
            body,
            "<p><strong>副题 &lt;i&gt; &amp; ]]&gt;</strong></p>\n<p>本报讯 a &amp; b ]]&gt; <b>粗</b></p>"
        );
        let categories: Vec<_> = first.categories.iter().map(|c| c.term.as_str()).collect();
        assert_eq!(categories, ["时政 快讯", "私挖滥采"]);
        assert_eq!(first.authors[0].name, "赵福胜");
        let second = &feed.entries[1];
        assert!(second.summary.as_ref().unwrap().content.contains("𠮷"));
    }

    #[test]
    fn atom_dates_carry_the_real_offset() {
        let text = String::from_utf8(render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert!(
            text.contains("<published>2023-06-07T07:00:00+08:00</published>"),
            "{text}"
        );
        assert!(text.contains(r#"xml:lang="zh-CN""#));
        assert!(text.contains(r#"<link href="http://127.0.0.1:8080/websub" rel="hub"/>"#));
    }

    fn tombstones() -> Vec<crate::domain::Tombstone> {
        use chrono::TimeZone;
        let at = |h, ms| {
            chrono::Utc.with_ymd_and_hms(2023, 6, 7, h, 0, 0).unwrap()
                + chrono::Duration::milliseconds(ms)
        };
        vec![
            crate::domain::Tombstone {
                guid: "tag:127.0.0.1,2023-06-06:newsroom/gone-2".into(),
                when: at(1, 500),
            },
            crate::domain::Tombstone {
                guid: r#"tag:x,2023:a&b"<c>"#.into(),
                when: at(0, 0),
            },
        ]
    }

    #[test]
    fn tombstones_come_before_the_entries_escaped_in_the_feed_offset() {
        let meta = FeedMeta {
            title: "标题 <entry> & ]]>".into(),
            tombstones: tombstones(),
            ..fixtures::meta()
        };
        let bytes = render(&meta, &fixtures::articles());
        let text = String::from_utf8(bytes.clone()).unwrap();
        let root = &text[text.find("<feed").unwrap()..];
        let root = &root[..root.find('>').unwrap()];
        assert!(
            root.contains(r#"xmlns:at="http://purl.org/atompub/tombstones/1.0""#),
            "{root}"
        );
        let expected = concat!(
            r#"<at:deleted-entry ref="tag:127.0.0.1,2023-06-06:newsroom/gone-2" when="2023-06-07T09:00:00.500+08:00"/>"#,
            r#"<at:deleted-entry ref="tag:x,2023:a&amp;b&quot;&lt;c&gt;" when="2023-06-07T08:00:00+08:00"/>"#,
            "<entry>"
        );
        assert!(text.contains(expected), "{text}");
        let first_entry = text.find("<entry>").unwrap();
        assert_eq!(
            first_entry + 7,
            text.find(expected).unwrap() + expected.len()
        );

        // feed-rs still reads two entries; the crate itself reads the tombstones back.
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(feed.title.unwrap().content, "标题 <entry> & ]]>");
        let parsed = Feed::read_from(&bytes[..]).unwrap();
        let refs: Vec<_> = parsed.extensions()["at"]["deleted-entry"]
            .iter()
            .map(|e| e.attrs()["ref"].as_str())
            .collect();
        assert_eq!(
            refs,
            [tombstones()[0].guid.as_str(), tombstones()[1].guid.as_str()]
        );
    }

    #[test]
    fn tombstones_of_an_empty_feed_go_before_its_end_and_none_means_no_namespace() {
        let meta = FeedMeta {
            tombstones: tombstones(),
            ..fixtures::meta()
        };
        let text = String::from_utf8(render(&meta, &[])).unwrap();
        assert!(
            text.ends_with(r#"when="2023-06-07T08:00:00+08:00"/></feed>"#),
            "{text}"
        );
        assert!(
            feed_rs::parser::parse(text.as_bytes())
                .unwrap()
                .entries
                .is_empty()
        );
        let plain = String::from_utf8(render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert!(!plain.contains("xmlns:at") && !plain.contains("deleted-entry"));
    }

    #[test]
    fn atom_entries_link_every_media_file_as_an_enclosure() {
        let bytes = render(&fixtures::meta(), &fixtures::articles_with_media());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(concat!(
            r#"<link href="https://img.example.com/youyu.jpg?w=1&amp;h=2" rel="enclosure" type="image/jpeg" "#,
            r#"title="右玉 &quot;农旅&quot; &lt;融合&gt; &amp; ]]&gt;" length="12345"/>"#
        )), "{text}");
        assert!(text.contains(
            r#"<link href="https://cdn.example.com/youyu.mp3" rel="enclosure" type="audio/mpeg"/>"#
        ));
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        let enclosures: Vec<_> = feed.entries[0]
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
                (
                    "https://img.example.com/youyu.jpg?w=1&h=2",
                    Some("image/jpeg"),
                    Some(r#"右玉 "农旅" <融合> & ]]>"#),
                    Some(12_345)
                ),
                (
                    "https://cdn.example.com/youyu.mp3",
                    Some("audio/mpeg"),
                    None,
                    None
                ),
            ]
        );
        assert_eq!(feed.entries[0].links[0].rel.as_deref(), Some("alternate"));
    }
}
