//! JSON Feed 1.1 (https://jsonfeed.org/version/1.1).

use super::{FeedMeta, body_html, categories, language};
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
    hubs: [Hub<'a>; 1],
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
    content_text: Option<&'a str>,
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
pub fn render(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
    let date = |t| meta.local(t).to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let feed = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: &meta.title,
        home_page_url: &meta.site_url,
        feed_url: &meta.json_url,
        next_url: meta.archive.prev.as_ref().map(|urls| urls.json.as_str()),
        description: &meta.description,
        language: &meta.language,
        icon: meta.logo.as_deref(),
        favicon: meta.icon.as_deref(),
        authors: [Author {
            name: &meta.publisher,
        }],
        hubs: [Hub {
            kind: "WebSub",
            url: &meta.hub_url,
        }],
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
                    content_text: content.content_text.as_deref(),
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

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn json_feed_round_trips_through_an_independent_parser() {
        let articles = fixtures::articles();
        let bytes = render(&fixtures::meta(), &articles);
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        assert_eq!(feed.entries.len(), 2);
        let first = &feed.entries[0];
        assert_eq!(first.id, "tag:127.0.0.1,2023-06-06:newsroom/brief-1");
        assert_eq!(
            first.title.as_ref().unwrap().content,
            "何向荣主持召开 <推进会> & ]]> 会议"
        );
        assert_eq!(first.published.unwrap(), articles[0].content.publish_time);
        let names: Vec<_> = feed.entries[1]
            .authors
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["刘磊", "张智宙"]);
    }

    #[test]
    fn json_feed_has_the_version_url_string_ids_and_offset_dates() {
        let value: serde_json::Value =
            serde_json::from_slice(&render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert_eq!(value["version"], "https://jsonfeed.org/version/1.1");
        assert_eq!(
            value["items"][0]["date_published"],
            "2023-06-07T07:00:00+08:00"
        );
        assert!(value["items"][0]["id"].is_string());
        assert_eq!(value["authors"][0]["name"], "朔州日报");
        assert_eq!(value["hubs"][0]["type"], "WebSub");
        assert_eq!(value["icon"], "http://127.0.0.1:8080/logo.png");
        assert_eq!(value["favicon"], "http://127.0.0.1:8080/icon.png");
        assert_eq!(value["items"][0]["tags"][0], "时政 快讯");
        assert_eq!(value["items"][0]["_feedpub"]["kicker"], "时政 快讯");
        assert_eq!(value["items"][0]["_feedpub"]["subtitle"], "副题 <i> & ]]>");
        assert!(value["items"][1].get("_feedpub").is_none());
        assert_eq!(value["hubs"][0]["url"], "http://127.0.0.1:8080/websub");
    }

    #[test]
    fn json_feed_lists_media_as_attachments_and_the_first_image_as_image() {
        let bytes = render(&fixtures::meta(), &fixtures::articles_with_media());
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let item = &value["items"][0];
        assert_eq!(item["image"], "https://img.example.com/youyu.jpg?w=1&h=2");
        assert_eq!(
            item["attachments"],
            serde_json::json!([
                {
                    "url": "https://img.example.com/youyu.jpg?w=1&h=2",
                    "mime_type": "image/jpeg",
                    "title": r#"右玉 "农旅" <融合> & ]]>"#,
                    "size_in_bytes": 12345
                },
                { "url": "https://cdn.example.com/youyu.mp3", "mime_type": "audio/mpeg" }
            ])
        );
        assert!(value["items"][1].get("attachments").is_none());
        assert!(value["items"][1].get("image").is_none());

        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        let hrefs: Vec<_> = feed.entries[0]
            .links
            .iter()
            .map(|l| l.href.as_str())
            .collect();
        assert!(
            hrefs.contains(&"https://cdn.example.com/youyu.mp3"),
            "{hrefs:?}"
        );
        let photo = feed.entries[0]
            .links
            .iter()
            .find(|l| l.href == "https://img.example.com/youyu.jpg?w=1&h=2")
            .unwrap();
        assert_eq!(photo.media_type.as_deref(), Some("image/jpeg"));
        assert_eq!(photo.length, Some(12_345));
    }

    #[test]
    fn a_feed_whose_media_has_no_image_has_no_image() {
        let mut articles = fixtures::articles();
        articles[0].content.media = fixtures::media().split_off(1);
        let value: serde_json::Value =
            serde_json::from_slice(&render(&fixtures::meta(), &articles)).unwrap();
        assert!(value["items"][0].get("image").is_none());
        assert_eq!(
            value["items"][0]["attachments"].as_array().unwrap().len(),
            1
        );
    }
}
