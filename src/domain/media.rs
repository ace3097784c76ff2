//! Media files attached to an article: what feeds carry as enclosures and attachments.

use super::article::{Checker, check_url};
use serde::{Deserialize, Serialize};

/// Most media files one article may carry, unless `[limits] media` says otherwise.
pub const MAX_MEDIA: usize = 20;
/// Longest accepted caption, in characters.
const MAX_CAPTION_CHARS: usize = 1000;

/// A media file as a partner sent it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaDraft {
    pub url: String,
    pub mime_type: String,
    /// Size in bytes; 0 when unknown.
    pub length: i64,
    pub caption: String,
    /// Pixels; 0 when unknown.
    pub width: u32,
    pub height: u32,
}

/// A media file's URL: required, an absolute http(s) URL.
pub(super) fn media_url(raw: &str) -> Result<String, String> {
    check_url(raw)?.ok_or_else(|| "is required".to_owned())
}

/// A validated media file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Absolute http(s) URL.
    pub url: String,
    /// `type/subtype` in lower case, without parameters.
    pub mime_type: String,
    /// Size in bytes; 0 when unknown.
    pub length: u64,
    /// Caption or credit: plain text on one line; empty for none.
    pub caption: String,
    /// Width in pixels, when known.
    pub width: Option<u32>,
    /// Height in pixels, when known.
    pub height: Option<u32>,
}

impl Media {
    /// True for `image/*`.
    pub fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }

    /// Media RSS `medium` (`image`, `audio` or `video`), when the type says which.
    pub fn medium(&self) -> Option<&'static str> {
        match self.mime_type.split('/').next() {
            Some("image") => Some("image"),
            Some("audio") => Some("audio"),
            Some("video") => Some("video"),
            _ => None,
        }
    }
}

impl Checker {
    /// The media list of a draft; violations are named `{field}[i].url` and so on.
    /// A URL listed twice is kept once, with a warning.
    pub(super) fn media(&mut self, field: &str, raw: &[MediaDraft]) -> Vec<Media> {
        if raw.len() > self.limits.media {
            self.violations.add(
                field,
                format!(
                    "has {} entries; at most {} are allowed",
                    raw.len(),
                    self.limits.media
                ),
            );
            return Vec::new();
        }
        let mut media: Vec<Media> = Vec::with_capacity(raw.len());
        for (i, draft) in raw.iter().enumerate() {
            let item = format!("{field}[{i}]");
            let url = media_url(&draft.url)
                .map_err(|e| self.violations.add(format!("{item}.url"), e))
                .ok();
            let mime_type = media_type(&draft.mime_type)
                .map_err(|e| self.violations.add(format!("{item}.mime_type"), e))
                .ok();
            let length = u64::try_from(draft.length)
                .map_err(|_| {
                    self.violations
                        .add(format!("{item}.length"), "must not be negative")
                })
                .ok();
            let caption_field = format!("{item}.caption");
            let caption = self.text(&caption_field, &draft.caption, true);
            if caption.chars().count() > MAX_CAPTION_CHARS {
                self.violations.add(
                    caption_field,
                    format!("is longer than {MAX_CAPTION_CHARS} characters"),
                );
            }
            let (Some(url), Some(mime_type), Some(length)) = (url, mime_type, length) else {
                continue;
            };
            if media.iter().any(|m| m.url == url) {
                self.warnings
                    .push(format!("{item}: {url:?} is listed twice; kept once"));
                continue;
            }
            media.push(Media {
                url,
                mime_type,
                length,
                caption,
                width: (draft.width > 0).then_some(draft.width),
                height: (draft.height > 0).then_some(draft.height),
            });
        }
        media
    }
}

/// A media type of the shape `type/subtype` (RFC 6838 restricted names, no parameters),
/// in lower case.
fn media_type(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is required");
    }
    let name = |n: &str| {
        (1..=127).contains(&n.len())
            && n.as_bytes()[0].is_ascii_alphanumeric()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match raw.split_once('/') {
        Some((kind, subtype)) if name(kind) && name(subtype) => Ok(raw.to_ascii_lowercase()),
        _ => Err("must be a media type of the shape type/subtype, such as \"image/jpeg\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Violations;

    fn check(raw: &[MediaDraft]) -> (Vec<Media>, Checker) {
        let mut checker = Checker {
            violations: Violations::default(),
            warnings: Vec::new(),
            limits: crate::domain::FieldLimits::default(),
        };
        let media = checker.media("article.media", raw);
        (media, checker)
    }

    fn photo() -> MediaDraft {
        MediaDraft {
            url: "https://img.example.com/右玉.jpg?w=1&h=2".into(),
            mime_type: "Image/JPEG".into(),
            length: 12_345,
            caption: "右玉县 &amp; 农旅\u{7}融合".into(),
            width: 1200,
            height: 0,
        }
    }

    #[test]
    fn a_good_media_file_is_normalised_and_its_caption_cleaned() {
        let (media, checker) = check(&[photo()]);
        assert!(checker.violations.is_empty(), "{}", checker.violations);
        assert_eq!(
            media,
            [Media {
                url: "https://img.example.com/%E5%8F%B3%E7%8E%89.jpg?w=1&h=2".into(),
                mime_type: "image/jpeg".into(),
                length: 12_345,
                caption: "右玉县 & 农旅融合".into(),
                width: Some(1200),
                height: None,
            }]
        );
        assert!(media[0].is_image());
        assert_eq!(media[0].medium(), Some("image"));
        assert_eq!(checker.warnings.len(), 2, "{:?}", checker.warnings);
    }

    #[test]
    fn every_bad_media_field_is_named_with_its_index() {
        let bad = MediaDraft {
            url: "ftp://x/a.mp3".into(),
            mime_type: "audio".into(),
            length: -1,
            caption: "长".repeat(1001),
            ..MediaDraft::default()
        };
        let missing = MediaDraft::default();
        let (media, checker) = check(&[photo(), bad, missing]);
        assert!(media.len() == 1);
        let fields: Vec<_> = checker
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "article.media[1].url",
                "article.media[1].mime_type",
                "article.media[1].length",
                "article.media[1].caption",
                "article.media[2].url",
                "article.media[2].mime_type",
            ]
        );
    }

    #[test]
    fn media_types_must_have_the_type_subtype_shape() {
        for good in [
            "image/jpeg",
            "video/mp4",
            "application/vnd.apple.mpegurl",
            "audio/x-m4a",
        ] {
            assert!(media_type(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "image",
            "image/",
            "/jpeg",
            "image/jpeg; q=1",
            "image/jp eg",
            "text/<b>",
            "a/b/c",
        ] {
            assert!(media_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn more_than_twenty_media_files_are_refused_and_a_repeated_url_is_kept_once() {
        let (_, checker) = check(&vec![photo(); MAX_MEDIA + 1]);
        let fields: Vec<_> = checker
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["article.media"]);
        let (media, checker) = check(&[photo(), photo()]);
        assert_eq!(media.len(), 1);
        assert!(checker.violations.is_empty());
        assert!(
            checker
                .warnings
                .iter()
                .any(|w| w.starts_with("article.media[1]: ") && w.contains("twice")),
            "{:?}",
            checker.warnings
        );
    }
}
