//! Atom 1.0 (RFC 4287), with RFC 6721 tombstones of retracted entries.
//!
//! Written directly into one buffer, in the `atom_syndication` crate's element order and
//! escaping (see `xml.rs` for why); `reference.rs` keeps the crate-built document the
//! tests compare with.

use super::xml::Xml;
use super::{FEED_HISTORY, FeedMeta, Format, categories};
use crate::domain::{Article, Media};
use std::borrow::Borrow;

/// The namespace of RFC 6721 `deleted-entry`, prefix `at`.
const TOMBSTONES: &str = "http://purl.org/atompub/tombstones/1.0";

/// Renders an Atom document, with the stylesheet instruction when the feed has one:
/// permanent ids, `updated` from real edits, the publisher as feed-level author for entries
/// without a byline, `xml:lang` on the feed.
pub fn render(meta: &FeedMeta, articles: &[impl Borrow<Article>]) -> Vec<u8> {
    let mut x = Xml::with_capacity(super::capacity(meta, articles, true));
    x.raw(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    super::stylesheet(&mut x, meta);
    x.raw("\n<feed xmlns=\"http://www.w3.org/2005/Atom\"");
    if !meta.tombstones.is_empty() {
        x.raw(" xmlns:at=\"").raw(TOMBSTONES).raw("\"");
    }
    if meta.archive.is_archive {
        x.raw(" xmlns:fh=\"").raw(FEED_HISTORY).raw("\"");
    }
    x.attr("xml:lang", &meta.language).raw(">");
    x.element("title", &meta.title)
        .element("id", &meta.atom_id)
        .open("updated")
        .rfc3339(meta.local(meta.updated))
        .close("updated")
        .open("author")
        .element("name", &meta.publisher)
        .close("author")
        .element("generator", "feedpub");
    if let Some(icon) = &meta.icon {
        x.element("icon", icon);
    }
    link(
        &mut x,
        &meta.atom_url,
        "self",
        Some(Format::Atom.media_type()),
    );
    link(&mut x, &meta.site_url, "alternate", Some("text/html"));
    // Archive pages do not change as the feed does: no hub to subscribe to them at.
    if !meta.archive.is_archive {
        link(&mut x, &meta.hub_url, "hub", None);
    }
    for (rel, urls) in meta.archive.links() {
        link(&mut x, &urls.atom, rel, Some(Format::Atom.media_type()));
    }
    if let Some(logo) = &meta.logo {
        x.element("logo", logo);
    }
    if !meta.rights.is_empty() {
        x.element("rights", &meta.rights);
    }
    x.element("subtitle", &meta.description);
    tombstones(&mut x, meta);
    for article in articles {
        entry(&mut x, meta, article.borrow());
    }
    x.close("feed");
    x.finish()
}

/// `<fh:archive/>` on archive pages, then an `<at:deleted-entry ref when/>` per tombstone
/// (RFC 6721), between the feed's metadata and its entries: RFC 4287 wants a feed's
/// metadata, extensions included, before its entries. (atom_syndication would write them
/// after the entries, with attribute values unescaped; the reference renderer spliced them
/// in.) `ref` is escaped as an HTML double-quoted attribute, as it always was.
fn tombstones(x: &mut Xml, meta: &FeedMeta) {
    if meta.archive.is_archive {
        // RFC 5005: this document is an archive page; it goes with the feed's metadata too.
        x.raw("<fh:archive/>");
    }
    for tombstone in &meta.tombstones {
        x.raw(r#"<at:deleted-entry ref=""#)
            .raw(&html_escape::encode_double_quoted_attribute(
                &tombstone.guid,
            ))
            .raw(r#"" when=""#)
            .rfc3339(meta.local(tombstone.when))
            .raw(r#""/>"#);
    }
}

/// `<link href rel type/>`.
fn link(x: &mut Xml, href: &str, rel: &str, mime_type: Option<&str>) {
    x.raw("<link").attr("href", href).attr("rel", rel);
    if let Some(mime_type) = mime_type {
        x.attr("type", mime_type);
    }
    x.raw("/>");
}

/// `<link rel="enclosure">` with the caption as its title and the length when known.
fn enclosure(x: &mut Xml, media: &Media) {
    x.raw("<link")
        .attr("href", &media.url)
        .attr("rel", "enclosure")
        .attr("type", &media.mime_type);
    if !media.caption.is_empty() {
        x.attr("title", &media.caption);
    }
    if media.length > 0 {
        x.attr("length", &media.length.to_string());
    }
    x.raw("/>");
}

/// `<name xml:lang="…">` when the entry's copy is in another language than the feed's.
fn open_text(x: &mut Xml, name: &str, own_language: Option<&str>) {
    x.raw("<").raw(name);
    if let Some(lang) = own_language {
        x.attr("xml:lang", lang);
    }
    x.raw(">");
}

fn entry(x: &mut Xml, meta: &FeedMeta, article: &Article) {
    // Entries inherit the feed's xml:lang; copy in another language says so on its text.
    let own_language = Some(super::language(meta, article)).filter(|lang| *lang != meta.language);
    let content = &article.content;
    x.open("entry");
    open_text(x, "title", own_language);
    x.text(&content.title)
        .close("title")
        .element("id", &article.guid)
        .open("updated")
        .rfc3339(meta.local(article.updated))
        .close("updated");
    for name in &content.authors {
        x.open("author").element("name", name).close("author");
    }
    for term in categories(article) {
        x.raw("<category").attr("term", term).raw("/>");
    }
    if let Some(url) = &content.canonical_url {
        link(x, url, "alternate", Some("text/html"));
    }
    for media in &content.media {
        enclosure(x, media);
    }
    x.open("published")
        .rfc3339(meta.local(content.publish_time))
        .close("published");
    open_text(x, "summary", own_language);
    x.text(&content.summary).close("summary");
    // The body as `body_html` makes it, escaped as text, without making it.
    x.raw("<content");
    if let Some(lang) = own_language {
        x.attr("xml:lang", lang);
    }
    x.raw(r#" type="html">"#);
    if !content.subtitle.is_empty() {
        x.text("<p><strong>")
            .html_text_as_text(&content.subtitle)
            .text("</strong></p>\n");
    }
    x.text(&content.content_html)
        .close("content")
        .close("entry");
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
        let parsed = atom_syndication::Feed::read_from(&bytes[..]).unwrap();
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
        let text = String::from_utf8(render(&meta, &[] as &[Article])).unwrap();
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
