//! JSON Feed 1.1 (https://jsonfeed.org/version/1.1).
//!
//! Written directly into one buffer, sized once, byte for byte as `serde_json`'s pretty
//! printer wrote the serde structs this renderer used to build: two-space indentation,
//! `"key": value`, the same fields in the same order with the same ones left out, and
//! serde_json's string escaping. Printing through serde was the largest renderer cost in
//! regeneration (every item's dates and lists built first, the body copied once more when
//! it had a subtitle, the output grown by doubling); `reference.rs` keeps that version as
//! the reference the tests compare with.

use super::xml::rfc3339;
use super::{FeedMeta, categories, language};
use crate::domain::{Article, Media};
use chrono::{DateTime, Utc};
use std::borrow::Borrow;

/// Line starts, indented as serde_json's pretty printer indents each level: the feed's
/// fields, an item's fields, the elements of an item's lists (and the fields of its
/// `_feedpub` object), and the fields of objects in those lists.
const FEED_FIELD: &str = "\n  ";
const ITEM_FIELD: &str = "\n      ";
const ITEM_LIST: &str = "\n        ";
const ITEM_LIST_FIELD: &str = "\n          ";

/// Renders a JSON Feed 1.1 document with RFC 3339 dates in the feed's offset.
pub fn render(meta: &FeedMeta, articles: &[impl Borrow<Article>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity(meta, articles));
    out.push(b'{');
    field(&mut out, FEED_FIELD, "version");
    string(&mut out, "https://jsonfeed.org/version/1.1");
    field(&mut out, FEED_FIELD, "title");
    string(&mut out, &meta.title);
    field(&mut out, FEED_FIELD, "home_page_url");
    string(&mut out, &meta.site_url);
    field(&mut out, FEED_FIELD, "feed_url");
    string(&mut out, &meta.json_url);
    if let Some(urls) = &meta.archive.prev {
        // The next older page of the feed's archive.
        field(&mut out, FEED_FIELD, "next_url");
        string(&mut out, &urls.json);
    }
    field(&mut out, FEED_FIELD, "description");
    string(&mut out, &meta.description);
    field(&mut out, FEED_FIELD, "language");
    string(&mut out, &meta.language);
    if let Some(avatar) = &meta.avatar {
        field(&mut out, FEED_FIELD, "icon");
        string(&mut out, avatar);
    }
    if let Some(icon) = &meta.icon {
        field(&mut out, FEED_FIELD, "favicon");
        string(&mut out, icon);
    }
    field(&mut out, FEED_FIELD, "authors");
    out.extend_from_slice(b"[\n    {\n      \"name\": ");
    string(&mut out, &meta.publisher);
    end(&mut out, "\n    }\n  ],");
    // Archive pages do not change as the feed does: no hub to subscribe to them at.
    if !meta.archive.is_archive {
        field(&mut out, FEED_FIELD, "hubs");
        out.extend_from_slice(b"[\n    {\n      \"type\": \"WebSub\",\n      \"url\": ");
        string(&mut out, &meta.hub_url);
        end(&mut out, "\n    }\n  ],");
    }
    field(&mut out, FEED_FIELD, "items");
    if articles.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        out.push(b'[');
        for article in articles {
            out.extend_from_slice(b"\n    {");
            item(&mut out, meta, article.borrow());
            out.extend_from_slice(b"\n    },");
        }
        end(&mut out, "\n  ]");
    }
    out.extend_from_slice(b"\n}\n");
    out
}

/// One item's fields, between its braces.
fn item(out: &mut Vec<u8>, meta: &FeedMeta, article: &Article) {
    let content = &article.content;
    let date = |out: &mut Vec<u8>, time: DateTime<Utc>| {
        out.push(b'"');
        rfc3339(out, meta.local(time));
        out.extend_from_slice(b"\",");
    };
    field(out, ITEM_FIELD, "id");
    string(out, &article.guid);
    if let Some(url) = &content.canonical_url {
        field(out, ITEM_FIELD, "url");
        string(out, url);
    }
    field(out, ITEM_FIELD, "title");
    string(out, &content.title);
    field(out, ITEM_FIELD, "summary");
    string(out, &content.summary);
    field(out, ITEM_FIELD, "content_html");
    body_html(out, article);
    if let Some(text) = super::body_text(article) {
        field(out, ITEM_FIELD, "content_text");
        string(out, &text);
    }
    field(out, ITEM_FIELD, "language");
    string(out, language(meta, article));
    field(out, ITEM_FIELD, "date_published");
    date(out, content.publish_time);
    field(out, ITEM_FIELD, "date_modified");
    date(out, article.updated);
    objects(out, "authors", &content.authors, |out, name| {
        field(out, ITEM_LIST_FIELD, "name");
        string(out, name);
    });
    let mut tags = categories(article).peekable();
    if tags.peek().is_some() {
        field(out, ITEM_FIELD, "tags");
        out.push(b'[');
        for tag in tags {
            out.extend_from_slice(ITEM_LIST.as_bytes());
            string(out, tag);
        }
        end(out, "\n      ],");
    }
    // The first image among the media files.
    if let Some(image) = content.media.iter().find(|m| m.is_image()) {
        field(out, ITEM_FIELD, "image");
        string(out, &image.url);
    }
    objects(out, "attachments", &content.media, |out, media| {
        attachment(out, media, &content.media)
    });
    // feedpub's own item fields (JSON Feed extensions start with `_`).
    if !content.kicker.is_empty() || !content.subtitle.is_empty() {
        field(out, ITEM_FIELD, "_feedpub");
        out.push(b'{');
        if !content.kicker.is_empty() {
            field(out, ITEM_LIST, "kicker");
            string(out, &content.kicker);
        }
        if !content.subtitle.is_empty() {
            field(out, ITEM_LIST, "subtitle");
            string(out, &content.subtitle);
        }
        end(out, "\n      },");
    }
    // Every field ends with a comma; the item's last one has none.
    out.pop();
}

/// An item's field `name` listing `items` as objects, each written by `fields`; left out
/// when there are none.
fn objects<T>(out: &mut Vec<u8>, name: &str, items: &[T], fields: impl Fn(&mut Vec<u8>, &T)) {
    if items.is_empty() {
        return;
    }
    field(out, ITEM_FIELD, name);
    out.push(b'[');
    for item in items {
        out.extend_from_slice(b"\n        {");
        fields(out, item);
        end(out, "\n        },");
    }
    end(out, "\n      ],");
}

/// A media file's fields; the caption is its title unless another of the item's media
/// (`all`) has the same one (JSON Feed 1.1: attachments of one title are alternate forms of
/// one thing, where a photo and a video credited alike are two); the size is left out when
/// unknown.
fn attachment(out: &mut Vec<u8>, media: &Media, all: &[Media]) {
    field(out, ITEM_LIST_FIELD, "url");
    string(out, &media.url);
    field(out, ITEM_LIST_FIELD, "mime_type");
    string(out, &media.mime_type);
    let shared = all
        .iter()
        .filter(|other| other.caption == media.caption)
        .count()
        > 1;
    if !media.caption.is_empty() && !shared {
        field(out, ITEM_LIST_FIELD, "title");
        string(out, &media.caption);
    }
    if media.length > 0 {
        field(out, ITEM_LIST_FIELD, "size_in_bytes");
        number(out, media.length);
        out.push(b',');
    }
}

/// `indent"name": ` (names need no escaping).
fn field(out: &mut Vec<u8>, indent: &str, name: &str) {
    out.extend_from_slice(indent.as_bytes());
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
}

/// Closes a list or object whose every element was written with a comma after it: the
/// last comma goes, and `close` (its line break, indentation, bracket and own comma)
/// follows.
fn end(out: &mut Vec<u8>, close: &str) {
    out.pop();
    out.extend_from_slice(close.as_bytes());
}

/// `"text",`, escaped.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text);
    out.extend_from_slice(b"\",");
}

/// `n` in decimal, as serde_json writes integers.
fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The body as `super::body_html` makes it (the subtitle, HTML-escaped, as a leading
/// paragraph, then the HTML), as a JSON string, without making it first.
fn body_html(out: &mut Vec<u8>, article: &Article) {
    let content = &article.content;
    out.push(b'"');
    if !content.subtitle.is_empty() {
        out.extend_from_slice(b"<p><strong>");
        escape_into(out, &html_escape::encode_text(&content.subtitle));
        out.extend_from_slice(b"</strong></p>\\n");
    }
    escape_into(out, &content.content_html);
    out.extend_from_slice(b"\",");
}

/// What each byte becomes inside a JSON string, as serde_json escapes it: 0 for itself,
/// `u` for `\u00XX`, else the letter after the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` escaped as serde_json escapes strings: `"` and `\` with a backslash,
/// control characters as `\b \t \n \f \r` or `\u00XX` (lowercase hex), everything else
/// (`/`, non-ASCII, U+2028) as it is. The runs between escapes are copied whole.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        let byte = bytes[at];
        match ESCAPE[byte as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 0xf) as usize]);
            }
            letter => out.extend_from_slice(&[b'\\', letter]),
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The index of the first byte from `from` on that needs escaping. Whole blocks of
/// [`BLOCK`] bytes are checked at once (a loop the compiler turns into vector compares),
/// then the block that holds one byte by byte.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(block) = bytes.get(at..).and_then(<[u8]>::first_chunk::<BLOCK>) {
        let escapes = block.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if escapes {
            break;
        }
        at += BLOCK;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| ESCAPE[b as usize] != 0)
        .map(|i| at + i)
}

/// Bytes checked at once for escapes: body text mostly runs for longer than this between
/// line breaks and quotes. The sample edition's bodies (40 KB, release build) were escaped
/// in 3.8 µs with blocks of 64, 4.6 µs with blocks of 16, 8.8 µs looking at eight bytes
/// as one `u64`, and 21 µs by serde_json; copying them unescaped took 3.6 µs.
const BLOCK: usize = 64;

/// Room for the document, so that it is written without growing its buffer: the text it
/// carries (the kicker, subtitle and first image's URL twice), the markup, the dates, and
/// a sixteenth more of the long text for escapes (`\n` between paragraphs, quotes in HTML).
pub(super) fn capacity(meta: &FeedMeta, articles: &[impl Borrow<Article>]) -> usize {
    const MARKUP: usize = 512;
    const ITEM_MARKUP: usize = 320;
    let feed = MARKUP
        + meta.title.len()
        + meta.site_url.len()
        + meta.json_url.len()
        + meta.archive.prev.as_ref().map_or(0, |urls| urls.json.len())
        + meta.description.len()
        + meta.language.len()
        + meta.avatar.as_ref().map_or(0, String::len)
        + meta.icon.as_ref().map_or(0, String::len)
        + meta.publisher.len()
        + meta.hub_url.len();
    articles
        .iter()
        .map(Borrow::borrow)
        .fold(feed, |total, a: &Article| {
            let c = &a.content;
            let long = c.content_html.len() + c.content_text.as_ref().map_or(0, String::len);
            total
                + ITEM_MARKUP
                + long
                + long / 16
                + a.guid.len()
                + c.canonical_url.as_ref().map_or(0, String::len)
                + c.title.len()
                + c.summary.len()
                + c.language.as_ref().map_or(meta.language.len(), String::len)
                + 2 * (c.kicker.len() + c.subtitle.len() + 48)
                // The subtitle heads content_text too.
                + c.content_text.as_ref().map_or(0, |_| c.subtitle.len() + 4)
                + c.authors.iter().map(|s| s.len() + 40).sum::<usize>()
                + c.tags.iter().map(|s| s.len() + 12).sum::<usize>()
                + c.media
                    .iter()
                    .map(|m| 2 * m.url.len() + m.mime_type.len() + m.caption.len() + 120)
                    .sum::<usize>()
        })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// Every ASCII character, and a few others, at every place in and around the blocks
    /// scanned at once, escaped as serde_json escapes it.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['\u{80}', '\u{2028}', '朔', '𠮷'])
        {
            for at in 0..3 * BLOCK {
                let text: String = (0..3 * BLOCK)
                    .map(|i| if i == at { c } else { 'a' })
                    .collect();
                let json = serde_json::to_string(&text).unwrap();
                assert_eq!(format!("\"{}\"", escaped(&text)), json, "{c:?} at {at}");
            }
        }
        let text = "\u{0}\u{1f}\t\u{8}\u{c}\r\n\\\"/\u{2028}\u{7f} 朔州";
        assert_eq!(
            format!("\"{}\"", escaped(text)),
            serde_json::to_string(text).unwrap()
        );
        assert_eq!(escaped("\u{1}\u{1b}"), "\\u0001\\u001b");
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

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

    /// The text body is headed by the subtitle, as the HTML body is: a text-only reader
    /// shows the same copy.
    #[test]
    fn content_text_starts_with_the_subtitle_as_content_html_does() {
        let mut articles = fixtures::articles();
        articles[1].content.subtitle = "——全市少先队工作综述".into();
        let value: serde_json::Value =
            serde_json::from_slice(&render(&fixtures::meta(), &articles)).unwrap();
        let item = &value["items"][1];
        assert_eq!(
            item["content_text"],
            "——全市少先队工作综述\n\n第一段 𠮷\n\n第二段"
        );
        let html = item["content_html"].as_str().unwrap();
        assert!(
            html.starts_with("<p><strong>——全市少先队工作综述</strong></p>"),
            "{html}"
        );
        assert!(
            value["items"][0].get("content_text").is_none(),
            "sent as HTML only"
        );
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
        assert_eq!(value["icon"], "http://127.0.0.1:8080/avatar.png");
        assert_eq!(value["favicon"], "http://127.0.0.1:8080/icon.png");
        assert_eq!(value["items"][0]["tags"][0], "时政 快讯");
        assert_eq!(value["items"][0]["_feedpub"]["kicker"], "时政 快讯");
        assert_eq!(value["items"][0]["_feedpub"]["subtitle"], "副题 <i> & ]]>");
        assert!(value["items"][1].get("_feedpub").is_none());
        assert_eq!(value["hubs"][0]["url"], "http://127.0.0.1:8080/websub");
        // The icon is a square avatar: the wide logo never takes its place.
        let meta = FeedMeta {
            avatar: None,
            ..fixtures::meta()
        };
        let value: serde_json::Value =
            serde_json::from_slice(&render(&meta, &fixtures::articles())).unwrap();
        assert!(value.get("icon").is_none(), "{value}");
        assert_eq!(value["favicon"], "http://127.0.0.1:8080/icon.png");
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
    fn attachments_credited_alike_carry_no_title_that_would_make_them_alternates() {
        let mut articles = fixtures::articles();
        let mut media = fixtures::media();
        for file in &mut media {
            file.caption = "新华社".into();
        }
        media.push(Media {
            caption: "右玉县城".into(),
            ..media[0].clone()
        });
        articles[0].content.media = media;
        let value: serde_json::Value =
            serde_json::from_slice(&render(&fixtures::meta(), &articles)).unwrap();
        let titles: Vec<_> = value["items"][0]["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.get("title").and_then(|t| t.as_str()))
            .collect();
        assert_eq!(titles, [None, None, Some("右玉县城")]);
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
