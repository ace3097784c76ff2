//! Pure renderers: the same feed metadata and articles always give the same bytes,
//! whatever the machine's time zone or locale.

pub mod atom;
pub mod json_feed;
pub mod rss;

use crate::domain::Article;
use chrono::{DateTime, FixedOffset, Utc};

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
    pub fn render(self, meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
        match self {
            Self::Rss => rss::render(meta, articles),
            Self::Atom => atom::render(meta, articles),
            Self::JsonFeed => json_feed::render(meta, articles),
        }
    }
}

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
    /// Absolute URL of a larger image (logo).
    pub logo: Option<String>,
    /// Absolute URL of the feed's Atom document; also its permanent Atom id.
    pub atom_url: String,
    /// Absolute URL of the feed's RSS document.
    pub rss_url: String,
    /// Absolute URL of the feed's JSON Feed document.
    pub json_url: String,
    /// Absolute URL of the WebSub hub that pushes this feed's changes.
    pub hub_url: String,
    /// When what the feed shows last changed (never "now").
    pub updated: DateTime<Utc>,
    /// Offset dates are written in.
    pub offset: FixedOffset,
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

/// The entry's categories: the kicker (column name) first, then the tags.
pub fn categories(article: &Article) -> impl Iterator<Item = &str> {
    let content = &article.content;
    (!content.kicker.is_empty())
        .then_some(content.kicker.as_str())
        .into_iter()
        .chain(content.tags.iter().map(String::as_str))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Articles and metadata shared by the renderer tests.

    use super::FeedMeta;
    use crate::domain::{Article, ArticleDraft, PartnerId, Revision};
    use chrono::{FixedOffset, TimeZone, Utc};

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
            atom_url: "http://127.0.0.1:8080/feeds/politics/atom.xml".into(),
            rss_url: "http://127.0.0.1:8080/feeds/politics/rss.xml".into(),
            json_url: "http://127.0.0.1:8080/feeds/politics/feed.json".into(),
            hub_url: "http://127.0.0.1:8080/websub".into(),
            updated: Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap(),
            offset: FixedOffset::east_opt(8 * 3600).unwrap(),
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
