//! The renderers as they were written with the `rss` and `atom_syndication` crates and
//! serde_json's pretty printer, kept as the reference the direct renderers must match byte
//! for byte.

pub mod rss_crate {

    use super::super::{FEED_HISTORY, FeedMeta, Format, body_html, categories, language};
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
    pub fn rss(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
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
        if meta.archive.is_archive {
            links.retain(|link| link.rel != "hub");
        }
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
            // Names in dc:creator (RSS `author` is for e-mail addresses), the publisher's
            // for copy that names none; the copy's language in dc:language, on every item.
            dublin_core_ext: Some(DublinCoreExtension {
                creators: if content.authors.is_empty() {
                    vec![meta.publisher.clone()]
                } else {
                    content.authors.clone()
                },
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
}

pub mod atom_crate {

    use super::super::{FEED_HISTORY, FeedMeta, Format, body_html, categories};
    use crate::domain::{Article, Media};
    use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Text};
    use chrono::SecondsFormat;
    use std::collections::BTreeMap;
    use std::fmt::Write;

    /// The namespace of RFC 6721 `deleted-entry`, prefix `at`.
    const TOMBSTONES: &str = "http://purl.org/atompub/tombstones/1.0";

    /// Renders an Atom document: permanent ids, `updated` from real edits, the publisher as
    /// feed-level author for entries without a byline, `xml:lang` on the feed.
    pub fn atom(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
        let feed = Feed {
            title: Text::plain(meta.title.clone()),
            id: meta.atom_id.clone(),
            updated: crate::render::xml::to_the_microsecond(meta.local(meta.updated)),
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
            .filter(|link| !(meta.archive.is_archive && link.rel == "hub"))
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
        with_tombstones(declaring_utf8(xml), meta)
    }

    /// The crate's document with its XML declaration naming the encoding, as RSS's does:
    /// a copy of the file served without a charset (a CDN, a plain file server) is still
    /// read as what it is.
    fn declaring_utf8(mut xml: Vec<u8>) -> Vec<u8> {
        const BARE: &[u8] = br#"<?xml version="1.0"?>"#;
        if xml.starts_with(BARE) {
            xml.splice(
                ..BARE.len(),
                br#"<?xml version="1.0" encoding="utf-8"?>"#.iter().copied(),
            );
        }
        xml
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
            let when = crate::render::xml::to_the_microsecond(meta.local(tombstone.when))
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
        let own_language = Some(super::super::language(meta, article))
            .filter(|lang| *lang != meta.language)
            .map(str::to_owned);
        let content = &article.content;
        Entry {
            title: Text {
                lang: own_language.clone(),
                ..Text::plain(content.title.clone())
            },
            id: article.guid.clone(),
            updated: crate::render::xml::to_the_microsecond(meta.local(article.updated)),
            published: Some(crate::render::xml::to_the_microsecond(
                meta.local(content.publish_time),
            )),
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
}

pub mod serde_json_pretty {
    //! JSON Feed 1.1 as it was written: serde structs printed by `serde_json::to_vec_pretty`.

    use super::super::{FeedMeta, body_html, body_text, categories, language};
    use crate::domain::{Article, Media};
    use chrono::SecondsFormat;
    use serde::Serialize;

    #[derive(Serialize)]
    struct JsonFeed<'a> {
        version: &'static str,
        title: &'a str,
        home_page_url: &'a str,
        feed_url: &'a str,
        /// The next older page of the feed's archive.
        #[serde(skip_serializing_if = "Option::is_none")]
        next_url: Option<&'a str>,
        description: &'a str,
        language: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        icon: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        favicon: Option<&'a str>,
        authors: [Author<'a>; 1],
        #[serde(skip_serializing_if = "Vec::is_empty")]
        hubs: Vec<Hub<'a>>,
        items: Vec<Item<'a>>,
    }

    #[derive(Serialize)]
    struct Hub<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        url: &'a str,
    }

    #[derive(Serialize)]
    struct Author<'a> {
        name: &'a str,
    }

    #[derive(Serialize)]
    struct Item<'a> {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<&'a str>,
        title: &'a str,
        summary: &'a str,
        content_html: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        content_text: Option<std::borrow::Cow<'a, str>>,
        language: &'a str,
        date_published: String,
        date_modified: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        authors: Vec<Author<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tags: Vec<&'a str>,
        /// The first image among the media files.
        #[serde(skip_serializing_if = "Option::is_none")]
        image: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment<'a>>,
        #[serde(rename = "_feedpub", skip_serializing_if = "Extension::is_empty")]
        extension: Extension<'a>,
    }

    /// A media file; the caption is its title, the size is left out when unknown.
    #[derive(Serialize)]
    struct Attachment<'a> {
        url: &'a str,
        mime_type: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        title: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        size_in_bytes: Option<u64>,
    }

    impl<'a> From<&'a Media> for Attachment<'a> {
        fn from(media: &'a Media) -> Self {
            Self {
                url: &media.url,
                mime_type: &media.mime_type,
                title: &media.caption,
                size_in_bytes: (media.length > 0).then_some(media.length),
            }
        }
    }

    /// feedpub's own item fields (JSON Feed extensions start with `_`).
    #[derive(Serialize)]
    struct Extension<'a> {
        #[serde(skip_serializing_if = "str::is_empty")]
        kicker: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        subtitle: &'a str,
    }

    impl Extension<'_> {
        fn is_empty(&self) -> bool {
            self.kicker.is_empty() && self.subtitle.is_empty()
        }
    }

    /// Renders a JSON Feed 1.1 document with RFC 3339 dates in the feed's offset.
    pub fn json_feed(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
        let date = |t| {
            crate::render::xml::to_the_microsecond(meta.local(t))
                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
        };
        let feed = JsonFeed {
            version: "https://jsonfeed.org/version/1.1",
            title: &meta.title,
            home_page_url: &meta.site_url,
            feed_url: &meta.json_url,
            next_url: meta.archive.prev.as_ref().map(|urls| urls.json.as_str()),
            description: &meta.description,
            language: &meta.language,
            icon: meta.avatar.as_deref(),
            favicon: meta.icon.as_deref(),
            authors: [Author {
                name: &meta.publisher,
            }],
            hubs: (!meta.archive.is_archive)
                .then_some(Hub {
                    kind: "WebSub",
                    url: &meta.hub_url,
                })
                .into_iter()
                .collect(),
            items: articles
                .iter()
                .map(|article| {
                    let content = &article.content;
                    Item {
                        id: &article.guid,
                        url: content.canonical_url.as_deref(),
                        title: &content.title,
                        summary: &content.summary,
                        content_html: body_html(article),
                        content_text: body_text(article),
                        language: language(meta, article),
                        date_published: date(content.publish_time),
                        date_modified: date(article.updated),
                        authors: content.authors.iter().map(|name| Author { name }).collect(),
                        tags: categories(article).collect(),
                        image: content
                            .media
                            .iter()
                            .find(|m| m.is_image())
                            .map(|m| m.url.as_str()),
                        attachments: content.media.iter().map(Attachment::from).collect(),
                        extension: Extension {
                            kicker: &content.kicker,
                            subtitle: &content.subtitle,
                        },
                    }
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&feed).expect("JSON Feed always serialises");
        bytes.push(b'\n');
        bytes
    }
}

/// The documents as `Format::render` made them with the crates and serde_json.
pub fn render(
    format: super::Format,
    meta: &super::FeedMeta,
    articles: &[crate::domain::Article],
) -> Vec<u8> {
    match format {
        super::Format::Rss => with_stylesheet(rss_crate::rss(meta, articles), meta),
        super::Format::Atom => with_stylesheet(atom_crate::atom(meta, articles), meta),
        super::Format::JsonFeed => serde_json_pretty::json_feed(meta, articles),
    }
}

use super::FeedMeta;

/// Adds `<?xml-stylesheet?>` right after the XML declaration, when the feed has a stylesheet.
fn with_stylesheet(mut xml: Vec<u8>, meta: &FeedMeta) -> Vec<u8> {
    let Some(href) = &meta.stylesheet else {
        return xml;
    };
    let instruction = format!(
        "<?xml-stylesheet type=\"text/xsl\" href=\"{}\"?>",
        html_escape::encode_double_quoted_attribute(href)
    );
    let at = if xml.starts_with(b"<?xml") {
        xml.windows(2).position(|w| w == b"?>").map_or(0, |i| i + 2)
    } else {
        0
    };
    xml.splice(at..at, instruction.into_bytes());
    xml
}

#[cfg(test)]
mod tests {
    //! The direct renderers against the crate-built documents, byte for byte.

    use super::super::fixtures;
    use super::super::{ArchiveLinks, FeedMeta, Format, FormatUrls};
    use crate::domain::{Article, HtmlPolicy, Media, PartnerId, Revision, Tombstone};
    use chrono::{FixedOffset, TimeZone, Utc};
    use proptest::prelude::*;

    fn assert_same(meta: &FeedMeta, articles: &[Article]) {
        for format in Format::ALL {
            let ours = String::from_utf8(format.render(meta, articles)).unwrap();
            let theirs = String::from_utf8(super::render(format, meta, articles)).unwrap();
            assert_eq!(ours, theirs, "{format:?}");
        }
    }

    fn urls(page: &str) -> FormatUrls {
        FormatUrls {
            rss: format!("http://127.0.0.1:8080/feeds/archive/{page}/rss.xml?a=1&b=2"),
            atom: format!("http://127.0.0.1:8080/feeds/archive/{page}/atom.xml"),
            json: format!("http://127.0.0.1:8080/feeds/archive/{page}/feed.json"),
        }
    }

    #[test]
    fn every_fixture_renders_as_the_crates_rendered_it() {
        let meta = fixtures::meta();
        assert_same(&meta, &fixtures::articles());
        assert_same(&meta, &fixtures::articles_with_media());
        assert_same(&meta, &[]);
        let bare = FeedMeta {
            stylesheet: None,
            icon: None,
            logo: None,
            avatar: None,
            rights: String::new(),
            offset: FixedOffset::west_opt(5 * 3600 + 1800).unwrap(),
            ..fixtures::meta()
        };
        assert_same(&bare, &fixtures::articles_with_media());
        let archive = FeedMeta {
            title: "标题 <entry> & ]]> \"'".into(),
            stylesheet: Some("/feeds/feed.xsl?a=1&b=\"2\"".into()),
            tombstones: vec![
                Tombstone {
                    guid: r#"tag:x,2023:a&b"<c>'"#.into(),
                    when: Utc.with_ymd_and_hms(2023, 6, 7, 1, 0, 0).unwrap()
                        + chrono::Duration::microseconds(1500),
                },
                Tombstone {
                    guid: "tag:x,2023:gone".into(),
                    when: Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap(),
                },
            ],
            archive: ArchiveLinks {
                is_archive: true,
                current: Some(urls("current")),
                prev: Some(urls("2")),
                next: Some(urls("4")),
            },
            ..fixtures::meta()
        };
        assert_same(&archive, &fixtures::articles_with_media());
        assert_same(&archive, &[]);
        // An archive page names no hub to subscribe to it at; the current documents do.
        let hub = fixtures::meta().hub_url;
        for format in Format::ALL {
            let page = String::from_utf8(format.render(&archive, &[] as &[Article])).unwrap();
            assert!(!page.contains(&hub), "{format:?}: {page}");
            let current =
                String::from_utf8(format.render(&fixtures::meta(), &[] as &[Article])).unwrap();
            assert!(current.contains(&hub), "{format:?}: {current}");
        }
        let mut other_language = fixtures::articles();
        other_language[1].content.language = Some("en-GB".into());
        other_language[1].updated += chrono::Duration::nanoseconds(123_456_789);
        assert_same(&fixtures::meta(), &other_language);
        // Every optional field of an item left out, and an extension with a subtitle only.
        let mut sparse = fixtures::articles();
        for article in &mut sparse {
            let c = &mut article.content;
            c.authors.clear();
            c.tags.clear();
            c.kicker.clear();
            c.canonical_url = None;
            c.content_text = None;
        }
        sparse[1].content.subtitle = "只有副题 \"引号\"".into();
        assert_same(&fixtures::meta(), &sparse);
        let mut tags_only = fixtures::articles_with_media();
        tags_only[0].content.kicker.clear();
        tags_only[0].content.subtitle.clear();
        tags_only[0].content.media.reverse();
        assert_same(&bare, &tags_only);
    }

    #[test]
    fn the_sample_edition_renders_as_the_crates_rendered_it_in_a_buffer_sized_once() {
        let policy = HtmlPolicy::default();
        let meta = fixtures::meta();
        let articles: Vec<Article> = crate::demo::sample_edition()
            .into_iter()
            .map(|article| {
                let draft = crate::grpc::convert::draft_from_proto(Some(article)).unwrap();
                let valid = draft.validate("", &policy).unwrap();
                let guid = format!("tag:127.0.0.1,2023-06-07:newsroom/{}", valid.id);
                match Article::revise(
                    None,
                    PartnerId(1),
                    valid.id,
                    valid.content,
                    meta.updated,
                    |_| guid,
                ) {
                    Revision::Created(article) => article,
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect();
        assert!(articles.len() >= 5);
        assert_same(&meta, &articles);
        // The buffer is sized once: room for the whole document, without much to spare.
        for format in Format::ALL {
            let made = format.render(&meta, &articles).len();
            let room = match format {
                Format::Rss => super::super::capacity(&meta, &articles, false),
                Format::Atom => super::super::capacity(&meta, &articles, true),
                Format::JsonFeed => super::super::json_feed::capacity(&meta, &articles),
            };
            assert!(
                made <= room && room < made * 3 / 2,
                "{format:?}: {made} in {room}"
            );
        }
    }

    /// Text with every character XML, HTML, CDATA and JSON treat specially (control
    /// characters JSON escapes by name and as `\u00XX`), and others it does not escape
    /// (`/`, DEL, U+2028).
    fn text() -> impl Strategy<Value = String> {
        r#"[a-z <>&'"\]\n朔州𠮷©\\/\x00\x01\x08\t\x0c\r\x1f\x7f\x{2028}]{0,24}"#
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_renders_as_the_crates_rendered_it(
            title in text(), subtitle in text(), summary in text(), html in text(),
            kicker in text(), tag in text(), author in text(), guid in text(),
            url in text(), caption in text(), language in text(), feed_title in text(),
            seconds in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000,
            offset in -50_000i32..50_000,
        ) {
            let mut articles = fixtures::articles_with_media();
            let time = Utc.timestamp_opt(seconds, nanos).unwrap();
            {
                let a = &mut articles[0];
                a.guid = guid;
                a.updated = time;
                let c = &mut a.content;
                c.title = title;
                c.subtitle = subtitle;
                c.summary = summary;
                c.content_text = Some(html.clone());
                c.content_html = html;
                c.kicker = kicker;
                c.tags = vec![tag.clone(), tag];
                c.authors = vec![author];
                c.canonical_url = Some(url.clone());
                c.language = Some(language);
                c.publish_time = time;
                c.media.push(Media { url, caption, ..c.media[0].clone() });
            }
            let meta = FeedMeta {
                title: feed_title.clone(),
                description: feed_title.clone(),
                rights: feed_title.clone(),
                publisher: feed_title.clone(),
                language: "zh-CN".into(),
                offset: FixedOffset::east_opt(offset).unwrap(),
                tombstones: vec![Tombstone { guid: feed_title, when: time }],
                ..fixtures::meta()
            };
            for format in Format::ALL {
                prop_assert_eq!(
                    String::from_utf8(format.render(&meta, &articles)).unwrap(),
                    String::from_utf8(super::render(format, &meta, &articles)).unwrap()
                );
            }
        }
    }
}
