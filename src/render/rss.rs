//! RSS 2.0 with the content, Dublin Core, Atom and (for media files) Media RSS namespaces.
//!
//! Written directly into one buffer, in the `rss` crate's element order and escaping (see
//! `xml.rs` for why); `reference.rs` keeps the crate-built document the tests compare with.

use super::xml::Xml;
use super::{FEED_HISTORY, FeedMeta, Format, categories, language};
use crate::domain::{Article, Media};
use std::borrow::Borrow;

/// The Media RSS namespace (https://www.rssboard.org/media-rss), prefix `media`.
const MEDIA_RSS: &str = "http://search.yahoo.com/mrss/";
const ATOM: &str = "http://www.w3.org/2005/Atom";
const CONTENT: &str = "http://purl.org/rss/1.0/modules/content/";
const DUBLIN_CORE: &str = "http://purl.org/dc/elements/1.1/";

/// Renders an RSS 2.0 document, with the stylesheet instruction when the feed has one:
/// names in `dc:creator`, full HTML in `content:encoded`, the summary as escaped HTML in
/// `description`, dates in RFC 822 with the real offset.
pub fn render(meta: &FeedMeta, articles: &[impl Borrow<Article>]) -> Vec<u8> {
    let mut x = Xml::with_capacity(super::capacity(meta, articles, false));
    x.raw(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    super::stylesheet(&mut x, meta);
    x.raw(r#"<rss version="2.0""#);
    // Namespaces in the crate's order (by prefix); `content` and `dc` come with items.
    let has_items = !articles.is_empty();
    let has_media = (articles.iter()).any(|a| !a.borrow().content.media.is_empty());
    for (used, prefix, uri) in [
        (true, "xmlns:atom", ATOM),
        (has_items, "xmlns:content", CONTENT),
        (has_items, "xmlns:dc", DUBLIN_CORE),
        (meta.archive.is_archive, "xmlns:fh", FEED_HISTORY),
        (has_media, "xmlns:media", MEDIA_RSS),
    ] {
        if used {
            x.attr(prefix, uri);
        }
    }
    x.raw(">").open("channel");
    x.element("title", &meta.title)
        .element("link", &meta.site_url)
        .element("description", &meta.description)
        .element("language", &meta.language);
    if !meta.rights.is_empty() {
        x.element("copyright", &meta.rights);
    }
    x.open("lastBuildDate")
        .rfc2822(meta.local(meta.updated))
        .close("lastBuildDate")
        .element("generator", "feedpub")
        .element("docs", "https://www.rssboard.org/rss-specification");
    if let Some(url) = &meta.logo {
        x.open("image")
            .element("url", url)
            .element("title", &meta.title)
            .element("link", &meta.site_url)
            .close("image");
    }
    if meta.archive.is_archive {
        x.raw("<fh:archive></fh:archive>");
    }
    atom_link(
        &mut x,
        &meta.rss_url,
        "self",
        Some(Format::Rss.media_type()),
    );
    // Archive pages do not change as the feed does: no hub to subscribe to them at.
    if !meta.archive.is_archive {
        atom_link(&mut x, &meta.hub_url, "hub", None);
    }
    for (rel, urls) in meta.archive.links() {
        atom_link(&mut x, &urls.rss, rel, Some(Format::Rss.media_type()));
    }
    for article in articles {
        item(&mut x, meta, article.borrow());
    }
    x.close("channel").close("rss");
    x.finish()
}

/// `<atom:link href rel type/>`.
fn atom_link(x: &mut Xml, href: &str, rel: &str, mime_type: Option<&str>) {
    x.raw("<atom:link").attr("href", href).attr("rel", rel);
    if let Some(mime_type) = mime_type {
        x.attr("type", mime_type);
    }
    x.raw("/>");
}

fn item(x: &mut Xml, meta: &FeedMeta, article: &Article) {
    let content = &article.content;
    x.open("item").element("title", &content.title);
    if let Some(link) = &content.canonical_url {
        x.element("link", link);
    }
    // `description` is HTML in RSS; the summary is plain text, so it is escaped once here.
    // Escaped HTML has no `>`, so it never holds the `]]>` that would split the CDATA.
    x.raw("<description><![CDATA[")
        .html_text(&content.summary)
        .raw("]]></description>");
    for name in categories(article) {
        x.element("category", name);
    }
    // RSS allows one enclosure; Media RSS carries every file.
    if let Some(media) = content.media.first() {
        x.raw("<enclosure")
            .attr("url", &media.url)
            .attr("length", &media.length.to_string())
            .attr("type", &media.mime_type)
            .raw("/>");
    }
    x.raw(r#"<guid isPermaLink="false">"#)
        .text(&article.guid)
        .close("guid")
        .open("pubDate")
        .rfc2822(meta.local(content.publish_time))
        .close("pubDate");
    // The body as `body_html` makes it, without making it: each piece split where it
    // holds `]]>`. No `]]>` can span two pieces: the subtitle is escaped HTML (no `>`)
    // and the HTML follows a line break.
    x.raw("<content:encoded><![CDATA[");
    if !content.subtitle.is_empty() {
        x.raw("<p><strong>")
            .html_text(&content.subtitle)
            .raw("</strong></p>\n");
    }
    x.cdata_text(&content.content_html)
        .raw("]]></content:encoded>");
    for media in &content.media {
        media_content(x, media);
    }
    // Names in dc:creator (RSS `author` is for e-mail addresses), the publisher's for copy
    // that names no author, as Atom and JSON Feed give it; the copy's language in
    // dc:language, on every item.
    if content.authors.is_empty() {
        x.element("dc:creator", &meta.publisher);
    }
    for name in &content.authors {
        x.element("dc:creator", name);
    }
    x.element("dc:language", language(meta, article))
        .close("item");
}

/// One `<media:content>` per file, its attributes in name order, with its caption as
/// `<media:description type="plain">`.
fn media_content(x: &mut Xml, m: &Media) {
    x.raw("<media:content");
    if m.length > 0 {
        x.attr("fileSize", &m.length.to_string());
    }
    if let Some(h) = m.height {
        x.attr("height", &h.to_string());
    }
    if let Some(medium) = m.medium() {
        x.attr("medium", medium);
    }
    x.attr("type", &m.mime_type).attr("url", &m.url);
    if let Some(w) = m.width {
        x.attr("width", &w.to_string());
    }
    x.raw(">");
    if !m.caption.is_empty() {
        x.raw(r#"<media:description type="plain">"#)
            .text(&m.caption)
            .raw("</media:description>");
    }
    x.raw("</media:content>");
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn rss_round_trips_through_an_independent_parser() {
        let articles = fixtures::articles();
        let bytes = render(&fixtures::meta(), &articles);
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(feed.rights.as_ref().unwrap().content, "© 朔州日报社");
        assert_eq!(
            feed.logo.as_ref().unwrap().uri,
            "http://127.0.0.1:8080/logo.png"
        );
        let first = &feed.entries[0];
        assert_eq!(
            first.title.as_ref().unwrap().content,
            "何向荣主持召开 <推进会> & ]]> 会议"
        );
        assert_eq!(first.id, "tag:127.0.0.1,2023-06-06:newsroom/brief-1");
        assert_eq!(first.published.unwrap(), articles[0].content.publish_time);
        assert_eq!(first.authors[0].name, "赵福胜");
        assert_eq!(first.links[0].href, "https://example.com/a?x=1&y=2");
        let body = first.content.as_ref().unwrap().body.as_ref().unwrap();
        assert_eq!(
            body,
            "<p><strong>副题 &lt;i&gt; &amp; ]]&gt;</strong></p>\n<p>本报讯 a &amp; b ]]&gt; <b>粗</b></p>"
        );
        let categories: Vec<_> = first.categories.iter().map(|c| c.term.as_str()).collect();
        assert_eq!(categories, ["时政 快讯", "私挖滥采"]);
        let names: Vec<_> = feed.entries[1]
            .authors
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["刘磊", "张智宙"]);
    }

    #[test]
    fn rss_names_the_publisher_as_creator_of_copy_without_a_byline() {
        let mut articles = fixtures::articles();
        articles[1].content.authors.clear();
        let meta = fixtures::meta();
        let bytes = render(&meta, &articles);
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        let names = |i: usize| -> Vec<String> {
            feed.entries[i]
                .authors
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(
            names(0),
            ["赵福胜"],
            "a byline is not joined by the publisher"
        );
        assert_eq!(names(1), [meta.publisher.as_str()]);
    }

    #[test]
    fn rss_uses_beijing_offset_guid_not_permalink_and_declares_namespaces() {
        let text = String::from_utf8(render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert!(
            text.contains("<pubDate>Wed, 7 Jun 2023 07:00:00 +0800</pubDate>"),
            "{text}"
        );
        assert!(text.contains(r#"<guid isPermaLink="false">"#));
        for ns in ["xmlns:dc=", "xmlns:content=", "xmlns:atom="] {
            assert!(text.contains(ns), "{ns} missing");
        }
        assert!(text.contains(
            r#"<atom:link href="http://127.0.0.1:8080/feeds/politics/rss.xml" rel="self""#
        ));
        assert!(text.contains(r#"<atom:link href="http://127.0.0.1:8080/websub" rel="hub"/>"#));
    }

    #[test]
    fn rss_carries_the_first_media_file_as_enclosure_and_every_one_as_media_content() {
        let bytes = render(&fixtures::meta(), &fixtures::articles_with_media());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#"xmlns:media="http://search.yahoo.com/mrss/""#));
        assert!(
            text.contains(
                r#"<enclosure url="https://img.example.com/youyu.jpg?w=1&amp;h=2" length="12345" type="image/jpeg"/>"#
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("<enclosure ").count(),
            1,
            "one per item at most"
        );
        assert!(text.contains(
            r#"<media:content fileSize="12345" height="800" medium="image" type="image/jpeg" url="https://img.example.com/youyu.jpg?w=1&amp;h=2" width="1200">"#
        ), "{text}");
        assert!(text.contains(
            r#"<media:content medium="audio" type="audio/mpeg" url="https://cdn.example.com/youyu.mp3"></media:content>"#
        ), "{text}");
        assert!(!text.contains("<融合>"), "captions are escaped");

        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        let media = &feed.entries[0].media;
        let urls: Vec<_> = media
            .iter()
            .flat_map(|m| &m.content)
            .map(|c| c.url.as_ref().unwrap().as_str())
            .collect();
        // feed-rs reads the enclosure as media content too.
        assert_eq!(
            urls,
            [
                "https://img.example.com/youyu.jpg?w=1&h=2",
                "https://img.example.com/youyu.jpg?w=1&h=2",
                "https://cdn.example.com/youyu.mp3"
            ]
        );
        let photo = &media[0].content[1];
        assert_eq!(photo.size, Some(12_345));
        assert_eq!(
            photo.content_type.as_ref().unwrap().to_string(),
            "image/jpeg"
        );
        assert_eq!((photo.width, photo.height), (Some(1200), Some(800)));
        assert_eq!(
            media[0].description.as_ref().unwrap().content,
            r#"右玉 "农旅" <融合> & ]]>"#
        );
        assert!(feed.entries[1].media.is_empty());
    }

    #[test]
    fn rss_without_media_declares_no_media_namespace() {
        let text = String::from_utf8(render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert!(!text.contains("xmlns:media"));
        assert!(!text.contains("<enclosure"));
    }
}
