//! RSS 2.0 with the content, Dublin Core, Atom and (for media files) Media RSS namespaces.

use super::{FEED_HISTORY, FeedMeta, Format, body_html, categories, language};
use crate::domain::{Article, Media};
use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::extension::{Extension, ExtensionMap};
use rss::{Category, Channel, Enclosure, Guid, Image, Item};
use std::collections::BTreeMap;

/// The Media RSS namespace (https://www.rssboard.org/media-rss), prefix `media`.
const MEDIA_RSS: &str = "http://search.yahoo.com/mrss/";

/// Renders an RSS 2.0 document: names in `dc:creator`, full HTML in `content:encoded`,
/// the summary as escaped HTML in `description`, dates in RFC 822 with the real offset.
pub fn render(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
    let mut links = vec![
        Link {
            href: meta.rss_url.clone(),
            rel: "self".into(),
            mime_type: Some(Format::Rss.media_type().into()),
            ..Link::default()
        },
        Link {
            href: meta.hub_url.clone(),
            rel: "hub".into(),
            ..Link::default()
        },
    ];
    links.extend(meta.archive.links().map(|(rel, urls)| Link {
        href: urls.rss.clone(),
        rel: rel.into(),
        mime_type: Some(Format::Rss.media_type().into()),
        ..Link::default()
    }));
    let mut namespaces = media_namespace(articles);
    let mut extensions = rss::extension::ExtensionMap::new();
    if meta.archive.is_archive {
        namespaces.insert("fh".into(), FEED_HISTORY.into());
        let archive = rss::extension::Extension {
            name: "fh:archive".into(),
            ..Default::default()
        };
        extensions.insert(
            "fh".into(),
            [("archive".to_owned(), vec![archive])]
                .into_iter()
                .collect(),
        );
    }
    let channel = Channel {
        title: meta.title.clone(),
        link: meta.site_url.clone(),
        description: meta.description.clone(),
        language: Some(meta.language.clone()),
        copyright: (!meta.rights.is_empty()).then(|| meta.rights.clone()),
        image: meta.logo.as_ref().map(|url| Image {
            url: url.clone(),
            title: meta.title.clone(),
            link: meta.site_url.clone(),
            ..Image::default()
        }),
        last_build_date: Some(meta.local(meta.updated).to_rfc2822()),
        generator: Some("feedpub".into()),
        docs: Some("https://www.rssboard.org/rss-specification".into()),
        atom_ext: Some(AtomExtension { links }),
        items: articles.iter().map(|a| item(meta, a)).collect(),
        namespaces,
        extensions,
        ..Channel::default()
    };
    channel
        .write_to(Vec::with_capacity(4096 + articles.len() * 4096))
        .expect("writing XML into memory cannot fail")
}

fn item(meta: &FeedMeta, article: &Article) -> Item {
    let content = &article.content;
    Item {
        title: Some(content.title.clone()),
        link: content.canonical_url.clone(),
        // `description` is HTML in RSS; the summary is plain text, so it is escaped once here.
        description: Some(html_escape::encode_text(&content.summary).into_owned()),
        content: Some(body_html(article).into_owned()),
        categories: categories(article)
            .map(|name| Category {
                name: name.to_owned(),
                domain: None,
            })
            .collect(),
        guid: Some(Guid {
            value: article.guid.clone(),
            permalink: false,
        }),
        pub_date: Some(meta.local(content.publish_time).to_rfc2822()),
        // Names in dc:creator (RSS `author` is for e-mail addresses); the copy's language
        // in dc:language, on every item.
        dublin_core_ext: Some(DublinCoreExtension {
            creators: content.authors.clone(),
            languages: vec![language(meta, article).to_owned()],
            ..DublinCoreExtension::default()
        }),
        // RSS allows one enclosure; Media RSS carries every file.
        enclosure: content.media.first().map(enclosure),
        extensions: media_extensions(&content.media),
        ..Item::default()
    }
}

/// `xmlns:media`, declared only when some item carries media.
fn media_namespace(articles: &[Article]) -> BTreeMap<String, String> {
    articles
        .iter()
        .any(|a| !a.content.media.is_empty())
        .then(|| ("media".to_owned(), MEDIA_RSS.to_owned()))
        .into_iter()
        .collect()
}

/// `<enclosure>`: its three attributes are required; 0 is the length to give when unknown.
fn enclosure(media: &Media) -> Enclosure {
    Enclosure {
        url: media.url.clone(),
        length: media.length.to_string(),
        mime_type: media.mime_type.clone(),
    }
}

/// One `<media:content>` per file, with its caption as `<media:description type="plain">`.
/// The rss crate escapes attribute values and text of extensions.
fn media_extensions(media: &[Media]) -> ExtensionMap {
    if media.is_empty() {
        return ExtensionMap::new();
    }
    let contents = media
        .iter()
        .map(|m| {
            let mut attrs = BTreeMap::from([
                ("url".to_owned(), m.url.clone()),
                ("type".to_owned(), m.mime_type.clone()),
            ]);
            let optional = [
                ("fileSize", (m.length > 0).then(|| m.length.to_string())),
                ("medium", m.medium().map(str::to_owned)),
                ("width", m.width.map(|w| w.to_string())),
                ("height", m.height.map(|h| h.to_string())),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    attrs.insert(name.to_owned(), value);
                }
            }
            let description = (!m.caption.is_empty()).then(|| Extension {
                name: "media:description".into(),
                value: Some(m.caption.clone()),
                attrs: BTreeMap::from([("type".to_owned(), "plain".to_owned())]),
                children: BTreeMap::new(),
            });
            Extension {
                name: "media:content".into(),
                value: None,
                attrs,
                children: description
                    .map(|d| ("description".to_owned(), vec![d]))
                    .into_iter()
                    .collect(),
            }
        })
        .collect();
    BTreeMap::from([(
        "media".to_owned(),
        BTreeMap::from([("content".to_owned(), contents)]),
    )])
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
