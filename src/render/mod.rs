//! Pure renderers: the same feed metadata and articles always give the same bytes,
//! whatever the machine's time zone or locale.

pub mod atom;
pub mod json_feed;
pub mod opml;
#[cfg(test)]
mod reference;
pub mod rss;
mod xml;

use crate::domain::{Article, Tombstone};
use chrono::{DateTime, FixedOffset, Utc};
use std::borrow::Borrow;

/// The three formats every feed is published in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Rss,
    Atom,
    JsonFeed,
}

impl Format {
    /// Every format, in the order feeds are listed.
    pub const ALL: [Format; 3] = [Format::Rss, Format::Atom, Format::JsonFeed];

    /// File name of the format inside a feed's folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Rss => "rss.xml",
            Self::Atom => "atom.xml",
            Self::JsonFeed => "feed.json",
        }
    }

    /// Media type with charset, as served over HTTP.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Rss => "application/rss+xml; charset=utf-8",
            Self::Atom => "application/atom+xml; charset=utf-8",
            Self::JsonFeed => "application/feed+json; charset=utf-8",
        }
    }

    /// Short name used in metrics labels: `rss`, `atom`, `json`.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Rss => "rss",
            Self::Atom => "atom",
            Self::JsonFeed => "json",
        }
    }

    /// The format whose file name is `name`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.file_name() == name)
    }

    /// Media type without parameters, for `type` attributes of links.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Rss => "application/rss+xml",
            Self::Atom => "application/atom+xml",
            Self::JsonFeed => "application/feed+json",
        }
    }

    /// Human name of the format.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rss => "RSS 2.0",
            Self::Atom => "Atom 1.0",
            Self::JsonFeed => "JSON Feed 1.1",
        }
    }

    /// Renders `articles` (newest first) as a document of this format.
    ///
    /// The document is returned without spare capacity: it is held for as long as it is
    /// served, and the buffer it was written into is sized once for the worst case. Spare
    /// room in held documents (up to half of each when JSON Feed's buffer grew by
    /// doubling) was 58 MB of heap with 206 author and tag feeds.
    pub fn render(self, meta: &FeedMeta, articles: &[impl Borrow<Article>]) -> Vec<u8> {
        let mut bytes = match self {
            Self::Rss => rss::render(meta, articles),
            Self::Atom => atom::render(meta, articles),
            Self::JsonFeed => json_feed::render(meta, articles),
        };
        bytes.shrink_to_fit();
        bytes
    }
}

/// The XSL stylesheet that shows RSS and Atom feeds as a page in browsers.
pub const STYLESHEET: &str = include_str!("feed.xsl");
/// When [`STYLESHEET`] last changed (its Last-Modified), pinned to its digest by a test so
/// that a new stylesheet cannot keep the old date.
const STYLESHEET_UPDATED: &str = "2026-11-28T16:17:54Z";

/// [`STYLESHEET_UPDATED`] as a time.
pub fn stylesheet_updated() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(STYLESHEET_UPDATED)
        .map(|t| t.to_utc())
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

/// File name of the stylesheet in `feeds/`.
pub const STYLESHEET_FILE: &str = "feed.xsl";
/// Its media type.
pub const STYLESHEET_CONTENT_TYPE: &str = "text/xsl; charset=utf-8";

/// `<?xml-stylesheet?>`, written right after the XML declaration when the feed has a
/// stylesheet.
fn stylesheet(x: &mut xml::Xml, meta: &FeedMeta) {
    if let Some(href) = &meta.stylesheet {
        x.raw(r#"<?xml-stylesheet type="text/xsl" href=""#)
            .raw(&html_escape::encode_double_quoted_attribute(href))
            .raw(r#""?>"#);
    }
}

/// Room for an XML document, so that it is written without growing its buffer: the
/// feed's text, each item's text, markup and dates, and a quarter more of the body when
/// it is `escaped` (Atom's body is escaped text, where tags grow by about that much).
fn capacity(meta: &FeedMeta, articles: &[impl Borrow<Article>], escaped: bool) -> usize {
    const MARKUP: usize = 2048;
    const ITEM_MARKUP: usize = 640;
    let feed = MARKUP
        + meta.title.len() * 2
        + meta.description.len()
        + meta.rights.len()
        + meta
            .tombstones
            .iter()
            .map(|t| t.guid.len() + 80)
            .sum::<usize>();
    articles
        .iter()
        .map(Borrow::borrow)
        .fold(feed, |total, a: &Article| {
            let c = &a.content;
            let body = c.content_html.len() + c.subtitle.len() + 32;
            total
                + ITEM_MARKUP
                + body
                + if escaped { body / 4 } else { 0 }
                + c.title.len()
                + c.summary.len() * 2
                + a.guid.len()
                + c.canonical_url.as_ref().map_or(0, String::len)
                + c.authors
                    .iter()
                    .chain(&c.tags)
                    .map(|s| s.len() + 32)
                    .sum::<usize>()
                + c.kicker.len()
                + if c.authors.is_empty() {
                    meta.publisher.len() + 32
                } else {
                    0
                }
                + c.media
                    .iter()
                    .map(|m| 2 * (m.url.len() + m.caption.len()) + 160)
                    .sum::<usize>()
        })
}

/// Absolute URLs of one document in each format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatUrls {
    pub rss: String,
    pub atom: String,
    pub json: String,
}

impl FormatUrls {
    /// The URL of the document in `format`.
    pub fn get(&self, format: Format) -> &str {
        match format {
            Format::Rss => &self.rss,
            Format::Atom => &self.atom,
            Format::JsonFeed => &self.json,
        }
    }
}

/// RFC 5005 links of a feed document to its archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveLinks {
    /// The document is an archive page (`fh:archive`), not the subscription document.
    pub is_archive: bool,
    /// The subscription document (`rel="current"`), given on archive pages.
    pub current: Option<FormatUrls>,
    /// The next older archive page (`rel="prev-archive"`; JSON Feed `next_url`).
    pub prev: Option<FormatUrls>,
    /// The next newer archive page (`rel="next-archive"`).
    pub next: Option<FormatUrls>,
}

impl ArchiveLinks {
    /// `(rel, urls)` of every link the document carries.
    pub fn links(&self) -> impl Iterator<Item = (&'static str, &FormatUrls)> {
        [
            ("current", self.current.as_ref()),
            ("prev-archive", self.prev.as_ref()),
            ("next-archive", self.next.as_ref()),
        ]
        .into_iter()
        .filter_map(|(rel, urls)| urls.map(|u| (rel, u)))
    }
}

/// Namespace of RFC 5005 feed history (`fh:archive`).
pub const FEED_HISTORY: &str = "http://purl.org/syndication/history/1.0";

/// What a feed says about itself.
#[derive(Debug, Clone)]
pub struct FeedMeta {
    /// Feed title, plain text (e.g. "朔州日报 · 时政").
    pub title: String,
    /// One-sentence description, plain text; never empty.
    pub description: String,
    /// BCP 47 language of the copy.
    pub language: String,
    /// The site's home page.
    pub site_url: String,
    /// Who publishes the feed; the author of entries that name none.
    pub publisher: String,
    /// Copyright statement, plain text; empty for none.
    pub rights: String,
    /// Absolute URL of a small square image (favicon).
    pub icon: Option<String>,
    /// Absolute URL of a wide image (logo).
    pub logo: Option<String>,
    /// Absolute URL of a large square image (avatar).
    pub avatar: Option<String>,
    /// The feed's permanent Atom id: the Atom document's URL when the site first served
    /// it, which stays when the site moves.
    pub atom_id: String,
    /// Absolute URL of the feed's Atom document.
    pub atom_url: String,
    /// Absolute URL of the feed's RSS document.
    pub rss_url: String,
    /// Absolute URL of the feed's JSON Feed document.
    pub json_url: String,
    /// Absolute URL of the WebSub hub that pushes this feed's changes.
    pub hub_url: String,
    /// Path of the XSL stylesheet browsers use to show RSS and Atom; `None` for none.
    pub stylesheet: Option<String>,
    /// When what the feed shows last changed (never "now").
    pub updated: DateTime<Utc>,
    /// Offset dates are written in.
    pub offset: FixedOffset,
    /// Entries retracted recently (RFC 6721), newest first; only Atom shows them.
    pub tombstones: Vec<Tombstone>,
    /// Links to the archive (RFC 5005).
    pub archive: ArchiveLinks,
}

impl FeedMeta {
    /// `time` in the feed's offset.
    pub fn local(&self, time: DateTime<Utc>) -> DateTime<FixedOffset> {
        time.with_timezone(&self.offset)
    }

    /// The absolute URL of this feed in `format`.
    pub fn url(&self, format: Format) -> &str {
        match format {
            Format::Rss => &self.rss_url,
            Format::Atom => &self.atom_url,
            Format::JsonFeed => &self.json_url,
        }
    }
}

/// The article body as feed readers get it: the subtitle (plain text, escaped) as a
/// leading paragraph, then the sanitised HTML.
pub fn body_html(article: &Article) -> std::borrow::Cow<'_, str> {
    let content = &article.content;
    if content.subtitle.is_empty() {
        return std::borrow::Cow::Borrowed(&content.content_html);
    }
    std::borrow::Cow::Owned(format!(
        "<p><strong>{}</strong></p>\n{}",
        html_escape::encode_text(&content.subtitle),
        content.content_html
    ))
}

/// The entry's plain-text body, when the partner sent one: headed by its subtitle, as
/// [`body_html`] heads the HTML, so that a text-only reader shows the same copy.
pub fn body_text(article: &Article) -> Option<std::borrow::Cow<'_, str>> {
    let content = &article.content;
    let text = content.content_text.as_deref()?;
    Some(if content.subtitle.is_empty() || text.is_empty() {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("{}\n\n{text}", content.subtitle))
    })
}

/// The language of an entry's copy: its own, else the feed's.
pub fn language<'a>(meta: &'a FeedMeta, article: &'a Article) -> &'a str {
    article
        .content
        .language
        .as_deref()
        .unwrap_or(&meta.language)
}

/// The entry's categories: the kicker (column name) first, then the tags, a tag that is the
/// kicker again left out (tags are unique already).
pub fn categories(article: &Article) -> impl Iterator<Item = &str> {
    let content = &article.content;
    let kicker = content.kicker.as_str();
    (!kicker.is_empty()).then_some(kicker).into_iter().chain(
        content
            .tags
            .iter()
            .map(String::as_str)
            .filter(move |tag| *tag != kicker),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kicker that is also one of the tags is one category, not two.
    #[test]
    fn a_kicker_that_is_a_tag_is_one_category() {
        let mut article = fixtures::articles().remove(0);
        article.content.kicker = "乡村振兴".into();
        article.content.tags = vec!["农旅".into(), "乡村振兴".into()];
        assert_eq!(
            categories(&article).collect::<Vec<_>>(),
            ["乡村振兴", "农旅"]
        );
        article.content.kicker.clear();
        assert_eq!(
            categories(&article).collect::<Vec<_>>(),
            ["农旅", "乡村振兴"]
        );
    }

    /// Fails when `feed.xsl` changes: set [`STYLESHEET_UPDATED`] to the time of the change
    /// and the digest here to the new one, so clients revalidating by date fetch it again.
    #[test]
    fn the_stylesheet_date_follows_its_content() {
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(STYLESHEET.as_bytes())),
            "6939bd022c9848a93f4f810b79537e3667f1c97350cdc3fba1efee05b87d5fe5",
            "feed.xsl changed: update STYLESHEET_UPDATED and this digest"
        );
        assert_eq!(
            stylesheet_updated().to_rfc3339(),
            "2026-11-28T16:17:54+00:00"
        );
    }

    /// Both XML feeds declare their encoding: a copy served without a charset (a CDN, a
    /// plain file server) is read as UTF-8 all the same.
    #[test]
    fn xml_feeds_name_the_stylesheet_right_after_the_declaration() {
        let meta = fixtures::meta();
        for format in [Format::Rss, Format::Atom] {
            let text = String::from_utf8(format.render(&meta, &fixtures::articles())).unwrap();
            let (declaration, rest) = text.split_at(text.find("?>").unwrap() + 2);
            assert_eq!(declaration, r#"<?xml version="1.0" encoding="utf-8"?>"#);
            assert!(
                rest.starts_with(r#"<?xml-stylesheet type="text/xsl" href="/feeds/feed.xsl"?>"#),
                "{rest}"
            );
            assert!(feed_rs::parser::parse(text.as_bytes()).is_ok());
        }
        let json = Format::JsonFeed.render(&meta, &fixtures::articles());
        assert!(!String::from_utf8(json).unwrap().contains("xml-stylesheet"));
    }

    /// A document is held for as long as it is served: what it holds is what it is.
    #[test]
    fn documents_hold_no_spare_capacity() {
        let meta = fixtures::meta();
        let articles = fixtures::articles_with_media();
        for format in Format::ALL {
            let bytes = format.render(&meta, &articles);
            assert_eq!(bytes.capacity(), bytes.len(), "{format:?}");
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Articles and metadata shared by the renderer tests.

    use super::FeedMeta;
    use crate::domain::{Article, ArticleDraft, Media, PartnerId, Revision};
    use chrono::{FixedOffset, TimeZone, Utc};

    /// A photo whose URL and caption need escaping, then an audio file of unknown size.
    pub fn media() -> Vec<Media> {
        vec![
            Media {
                url: "https://img.example.com/youyu.jpg?w=1&h=2".into(),
                mime_type: "image/jpeg".into(),
                length: 12_345,
                caption: r#"右玉 "农旅" <融合> & ]]>"#.into(),
                width: Some(1200),
                height: Some(800),
            },
            Media {
                url: "https://cdn.example.com/youyu.mp3".into(),
                mime_type: "audio/mpeg".into(),
                length: 0,
                caption: String::new(),
                width: None,
                height: None,
            },
        ]
    }

    /// `articles()`, the first carrying `media()`.
    pub fn articles_with_media() -> Vec<Article> {
        let mut articles = articles();
        articles[0].content.media = media();
        articles
    }

    pub fn meta() -> FeedMeta {
        FeedMeta {
            title: "朔州日报 · 时政".into(),
            description: "时政快讯与新闻发布".into(),
            language: "zh-CN".into(),
            site_url: "http://127.0.0.1:8080/".into(),
            publisher: "朔州日报".into(),
            rights: "© 朔州日报社".into(),
            icon: Some("http://127.0.0.1:8080/icon.png".into()),
            logo: Some("http://127.0.0.1:8080/logo.png".into()),
            avatar: Some("http://127.0.0.1:8080/avatar.png".into()),
            atom_id: "http://127.0.0.1:8080/feeds/politics/atom.xml".into(),
            atom_url: "http://127.0.0.1:8080/feeds/politics/atom.xml".into(),
            rss_url: "http://127.0.0.1:8080/feeds/politics/rss.xml".into(),
            json_url: "http://127.0.0.1:8080/feeds/politics/feed.json".into(),
            hub_url: "http://127.0.0.1:8080/websub".into(),
            stylesheet: Some("/feeds/feed.xsl".into()),
            updated: Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap(),
            offset: FixedOffset::east_opt(8 * 3600).unwrap(),
            tombstones: Vec::new(),
            archive: super::ArchiveLinks::default(),
        }
    }

    /// Two articles: one with HTML that tests escaping, one with two authors and no URL.
    pub fn articles() -> Vec<Article> {
        let drafts = [
            ArticleDraft {
                id: "brief-1".into(),
                section: "politics".into(),
                title: "何向荣主持召开 <推进会> & ]]> 会议".into(),
                kicker: "时政 快讯".into(),
                subtitle: "副题 <i> & ]]>".into(),
                authors: vec!["赵福胜".into()],
                tags: vec!["私挖滥采".into()],
                content_html: "<p>本报讯 a &amp; b ]]&gt; <b>粗</b></p>".into(),
                canonical_url: "https://example.com/a?x=1&y=2".into(),
                publish_time: Some(Utc.with_ymd_and_hms(2023, 6, 6, 23, 0, 0).unwrap()),
                ..Default::default()
            },
            ArticleDraft {
                id: "rural-1".into(),
                section: "politics".into(),
                title: "右玉县农旅融合助力乡村振兴".into(),
                authors: vec!["刘磊".into(), "张智宙".into()],
                content_text: "第一段 𠮷\n\n第二段".into(),
                publish_time: Some(Utc.with_ymd_and_hms(2023, 6, 6, 22, 54, 0).unwrap()),
                ..Default::default()
            },
        ];
        drafts
            .into_iter()
            .map(|draft| {
                let valid = draft
                    .validate("", &crate::domain::HtmlPolicy::default())
                    .unwrap();
                let guid = format!("tag:127.0.0.1,2023-06-06:newsroom/{}", valid.id);
                let revision = Article::revise(
                    None,
                    PartnerId(1),
                    valid.id,
                    valid.content,
                    meta().updated,
                    |_| guid,
                );
                match revision {
                    Revision::Created(article) => article,
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect()
    }
}
