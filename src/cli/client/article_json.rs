//! The JSON shape of an article on the partner client's command line: one object per line
//! for `feedpub publish`, and what `get`/`list --json` print. It mirrors the API's `Article`
//! with the same field names, times as RFC 3339 text and the state as a word, so that what
//! `get --json` prints can be edited and published again.

use crate::grpc::proto;
use chrono::{DateTime, SecondsFormat};
use prost_types::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

/// An article as a JSON object. Empty values are left out when printed; `null` reads as empty.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleJson {
    #[serde(default, deserialize_with = "or_empty")]
    pub id: String,
    #[serde(default, deserialize_with = "or_empty")]
    pub section: String,
    #[serde(default, deserialize_with = "or_empty")]
    pub title: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub subtitle: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub kicker: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty_list"
    )]
    pub authors: Vec<String>,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub summary: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty_list"
    )]
    pub tags: Vec<String>,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub canonical_url: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embargo_time: Option<String>,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty_list"
    )]
    pub media: Vec<MediaJson>,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub content_text: String,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub content_html: String,
    /// On input, a precondition: the article is replaced only if its etag is still this.
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub etag: String,
    /// Output only, like the fields below: read back and ignored on input. A line that has
    /// it is a stored article, whose `update_time` is the server's, so it is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retract_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retract_reason: Option<String>,
}

/// A media file of an article.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaJson {
    #[serde(default, deserialize_with = "or_empty")]
    pub url: String,
    #[serde(default, deserialize_with = "or_empty")]
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: i64,
    #[serde(
        default,
        deserialize_with = "or_empty",
        skip_serializing_if = "is_empty"
    )]
    pub caption: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub width: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub height: u32,
}

/// What is wrong with one line, and in which field when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Like the server's `ErrorInfo` reasons: `INVALID_JSON`, `INVALID_FIELD`…
    pub reason: &'static str,
    pub field: Option<String>,
    pub message: String,
}

fn or_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

fn is_empty_list<T>(v: &[T]) -> bool {
    v.is_empty()
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// Reads one line: a JSON object in the shape of [`ArticleJson`], as the API message.
pub fn parse_line(line: &str) -> Result<proto::Article, LineError> {
    // serde would also read a struct from an array of its fields in order.
    if !line.trim_start().starts_with('{') {
        return Err(LineError {
            reason: "INVALID_JSON",
            field: None,
            message: "a line must be one JSON object".to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let article: ArticleJson =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            // A syntax error is the line's, whatever field it happened in.
            let field = (e.inner().is_data() && path != "." && !path.contains('?')).then_some(path);
            LineError {
                reason: if field.is_some() {
                    "INVALID_FIELD"
                } else {
                    "INVALID_JSON"
                },
                field,
                message: e.inner().to_string(),
            }
        })?;
    deserializer.end().map_err(|e| LineError {
        reason: "INVALID_JSON",
        field: None,
        message: e.to_string(),
    })?;
    article.into_proto()
}

impl ArticleJson {
    /// The API message; an error names the first time that is not RFC 3339.
    pub fn into_proto(self) -> Result<proto::Article, LineError> {
        let time = |field: &str, raw: Option<String>| -> Result<Option<Timestamp>, LineError> {
            let Some(raw) = raw.filter(|r| !r.is_empty()) else {
                return Ok(None);
            };
            let parsed = DateTime::parse_from_rfc3339(raw.trim()).map_err(|e| LineError {
                reason: "INVALID_FIELD",
                field: Some(field.to_owned()),
                message: format!(
                    "is not an RFC 3339 time such as 2023-06-07T07:00:00+08:00: {raw:?} ({e})"
                ),
            })?;
            // A leap second (23:59:60) comes as nanoseconds past a second, which a
            // Timestamp cannot carry: it is held at the last instant of the minute's 59th.
            let nanos = parsed.timestamp_subsec_nanos().min(999_999_999);
            Ok(Some(Timestamp {
                seconds: parsed.timestamp(),
                nanos: nanos as i32,
            }))
        };
        // A retracted article read back would be published again, undoing its retraction
        // without a word (`list --json` of everything, then `publish` of that file).
        // Written by hand in any case ("Retracted"), it is still retracted; a word that is
        // no state (a typo) could hide one, so it is refused too.
        if let Some(state) = self
            .state
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let refused = |message: String| LineError {
                reason: "INVALID_FIELD",
                field: Some("state".to_owned()),
                message,
            };
            if state.eq_ignore_ascii_case("retracted") {
                return Err(refused("the article is retracted: remove `state` from the line (or the line) to publish it again".to_owned()));
            }
            if !is_state_name(state) {
                return Err(refused(format!(
                    "is not a state feedpub prints ({}): {state:?}; remove `state` to \
                     publish the article",
                    state_names().join(", ")
                )));
            }
        }
        // A stored article's update_time is the server's; sending it back would pin the
        // time of the next edit to the last one.
        let update_time = if self.version.is_some() {
            None
        } else {
            self.update_time
        };
        Ok(proto::Article {
            publish_time: time("publish_time", self.publish_time)?,
            update_time: time("update_time", update_time)?,
            expire_time: time("expire_time", self.expire_time)?,
            embargo_time: time("embargo_time", self.embargo_time)?,
            id: self.id,
            section: self.section,
            title: self.title,
            subtitle: self.subtitle,
            kicker: self.kicker,
            authors: self.authors,
            summary: self.summary,
            content_html: self.content_html,
            content_text: self.content_text,
            tags: self.tags,
            canonical_url: self.canonical_url,
            media: self
                .media
                .into_iter()
                .map(|m| proto::Media {
                    url: m.url,
                    mime_type: m.mime_type,
                    length: m.length,
                    caption: m.caption,
                    width: m.width,
                    height: m.height,
                })
                .collect(),
            language: self.language,
            etag: self.etag,
            ..Default::default()
        })
    }

    /// A stored article as JSON, with the server's fields.
    pub fn from_proto(a: &proto::Article) -> Self {
        Self {
            id: a.id.clone(),
            section: a.section.clone(),
            title: a.title.clone(),
            subtitle: a.subtitle.clone(),
            kicker: a.kicker.clone(),
            authors: a.authors.clone(),
            summary: a.summary.clone(),
            tags: a.tags.clone(),
            canonical_url: a.canonical_url.clone(),
            language: a.language.clone(),
            publish_time: a.publish_time.as_ref().map(rfc3339),
            update_time: a.update_time.as_ref().map(rfc3339),
            expire_time: a.expire_time.as_ref().map(rfc3339),
            embargo_time: a.embargo_time.as_ref().map(rfc3339),
            media: a
                .media
                .iter()
                .map(|m| MediaJson {
                    url: m.url.clone(),
                    mime_type: m.mime_type.clone(),
                    length: m.length,
                    caption: m.caption.clone(),
                    width: m.width,
                    height: m.height,
                })
                .collect(),
            content_text: a.content_text.clone(),
            content_html: if html_made_from_text(a) {
                String::new()
            } else {
                a.content_html.clone()
            },
            etag: a.etag.clone(),
            version: Some(a.version),
            state: Some(state_name(a.state)),
            guid: Some(a.guid.clone()).filter(|g| !g.is_empty()),
            create_time: a.create_time.as_ref().map(rfc3339),
            retract_time: a.retract_time.as_ref().map(rfc3339),
            retract_reason: Some(a.retract_reason.clone()).filter(|r| !r.is_empty()),
        }
    }
}

/// The HTML of an article sent as plain text, which the server made from that text: left
/// out of what `get` prints, so that a line whose text is edited is published as the
/// new text, not as the old HTML beside it.
fn html_made_from_text(a: &proto::Article) -> bool {
    !a.content_text.is_empty()
        && crate::domain::same_html(
            &a.content_html,
            &crate::domain::text_to_html(&a.content_text),
        )
}

/// A timestamp as RFC 3339 in UTC, with as many fraction digits as it needs.
pub fn rfc3339(ts: &Timestamp) -> String {
    crate::grpc::convert::instant(ts).ok().map_or_else(
        || format!("{}s{}ns", ts.seconds, ts.nanos),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

/// The states the protocol names, as [`state_name`] writes them (`unspecified` aside).
fn state_names() -> Vec<String> {
    // Protobuf enums number their values from 0, densely here: the first gap ends them.
    (1..)
        .map_while(|n| proto::ArticleState::try_from(n).ok())
        .map(|state| state_name(state.into()))
        .collect()
}

/// Whether `word` is a state as [`state_name`] writes it, in any case: one of
/// [`state_names`], `unspecified`, or `state N` for a state this client does not know.
fn is_state_name(word: &str) -> bool {
    let known =
        proto::ArticleState::from_str_name(&format!("ARTICLE_STATE_{}", word.to_ascii_uppercase()))
            .is_some();
    let numbered = word
        .strip_prefix("state ")
        .is_some_and(|n| n.parse::<i32>().is_ok());
    known || numbered
}

/// The state as a lower-case word: `published`, `retracted`, `expired`, `embargoed`.
pub fn state_name(state: i32) -> String {
    proto::ArticleState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("ARTICLE_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leap second is a valid RFC 3339 time; the message carries the instant before the
    /// next minute, which the API takes.
    #[test]
    fn a_leap_second_becomes_the_last_instant_of_its_minute() {
        let line = r#"{"id":"a-1","section":"politics","title":"T","content_text":"x",
            "publish_time":"2016-12-31T23:59:60.5Z"}"#;
        let article = parse_line(line).unwrap();
        let publish = article.publish_time.unwrap();
        assert_eq!(
            (publish.seconds, publish.nanos),
            (1_483_228_799, 999_999_999)
        );
    }

    #[test]
    fn a_line_with_every_field_becomes_the_api_message() {
        let line = r#"{"id":"a-1","section":"politics","title":"T","subtitle":"S","kicker":"K",
            "authors":["陈淑兰"],"summary":"Sum","tags":["x","y"],
            "canonical_url":"https://example.com/a-1","language":"en",
            "publish_time":"2023-06-07T07:00:00+08:00","update_time":"2023-06-07T08:00:00Z",
            "expire_time":"2023-06-14T00:00:00+08:00","embargo_time":"2023-06-07T06:00:00.5Z",
            "media":[{"url":"https://example.com/a.jpg","mime_type":"image/jpeg","length":10,
                      "caption":"C","width":640,"height":480}],
            "content_text":"Body","content_html":"<p>Body</p>","etag":"e1"}"#
            .replace('\n', "");
        let a = parse_line(&line).unwrap();
        assert_eq!(a.id, "a-1");
        assert_eq!(a.authors, ["陈淑兰"]);
        assert_eq!(a.publish_time.unwrap().seconds, 1_686_092_400);
        assert_eq!(a.update_time.unwrap().seconds, 1_686_124_800);
        assert_eq!(a.embargo_time.unwrap().nanos, 500_000_000);
        assert_eq!(a.media[0].width, 640);
        assert_eq!(a.etag, "e1");
        assert_eq!(a.content_html, "<p>Body</p>");
        assert_eq!(a.language, "en");
    }

    #[test]
    fn what_get_prints_reads_back_as_the_same_article_without_the_server_fields() {
        let stored = proto::Article {
            id: "a-1".into(),
            section: "politics".into(),
            title: "T".into(),
            content_text: "Body".into(),
            publish_time: Some(Timestamp {
                seconds: 1_686_092_400,
                nanos: 0,
            }),
            update_time: Some(Timestamp {
                seconds: 1_686_092_500,
                nanos: 0,
            }),
            etag: "e1".into(),
            version: 3,
            state: proto::ArticleState::Published as i32,
            guid: "tag:x".into(),
            ..Default::default()
        };
        let line = serde_json::to_string(&ArticleJson::from_proto(&stored)).unwrap();
        assert!(line.contains(r#""state":"published""#), "{line}");
        assert!(
            line.contains(r#""publish_time":"2023-06-06T23:00:00Z""#),
            "{line}"
        );
        let back = parse_line(&line).unwrap();
        assert_eq!(
            back,
            proto::Article {
                update_time: None,
                version: 0,
                state: 0,
                guid: String::new(),
                ..stored
            }
        );
    }

    #[test]
    fn get_prints_the_body_sent_not_the_html_made_from_a_text() {
        let text = "第一段。\n\n第二段。";
        let sent_as_text = proto::Article {
            id: "a-1".into(),
            content_text: text.into(),
            content_html: crate::domain::text_to_html(text),
            ..Default::default()
        };
        let line = serde_json::to_string(&ArticleJson::from_proto(&sent_as_text)).unwrap();
        assert!(!line.contains("content_html"), "{line}");
        let edited = parse_line(&line.replace("第二段", "更正后的第二段")).unwrap();
        assert_eq!(edited.content_text, "第一段。\n\n更正后的第二段。");
        assert_eq!(edited.content_html, "");

        // Both bodies sent by the partner are printed as they are.
        let sent_both = proto::Article {
            content_html: "<p>第一段。</p><p><b>第二段。</b></p>".into(),
            ..sent_as_text
        };
        let line = serde_json::to_string(&ArticleJson::from_proto(&sent_both)).unwrap();
        assert_eq!(
            parse_line(&line).unwrap().content_html,
            sent_both.content_html
        );
    }

    /// A retracted article's line is refused whatever the case of its state, and so is a
    /// state feedpub never prints; every state `state_name` writes reads back.
    #[test]
    fn a_line_of_a_retracted_article_is_refused_however_its_state_is_written() {
        let line = |state: &str| {
            format!(
                r#"{{"id":"a-1","section":"politics","title":"T","content_text":"x",
                "state":"{state}"}}"#
            )
        };
        for state in ["retracted", "Retracted", "RETRACTED", " retracted "] {
            let refused = parse_line(&line(state)).unwrap_err();
            assert_eq!(refused.field.as_deref(), Some("state"), "{state}");
            assert!(refused.message.contains("retracted"), "{state}");
        }
        for state in ["bogus", "retract", "state x"] {
            let refused = parse_line(&line(state)).unwrap_err();
            assert_eq!(refused.field.as_deref(), Some("state"), "{state:?}");
            assert!(refused.message.contains("is not a state"), "{state:?}");
            // The message lists every state the protocol names.
            assert!(
                refused
                    .message
                    .contains("(published, retracted, expired, embargoed)"),
                "{}",
                refused.message
            );
        }
        for state in [1, 3, 4, 0, 99] {
            let name = state_name(state);
            if name != "retracted" {
                assert!(parse_line(&line(&name)).is_ok(), "{name}");
            }
        }
        assert!(parse_line(&line("Published")).is_ok());
        assert!(parse_line(&line("")).is_ok(), "an empty state is none");
    }

    #[test]
    fn bad_lines_name_the_field_to_blame() {
        let cases = [
            (r#"{"id":"a","title":"t""#, None),
            (r#"{"id":"a","authors":"x"}"#, Some("authors")),
            (r#"{"id":"a","titel":"t"}"#, Some("titel")),
            (
                r#"{"id":"a","media":[{"width":-1}]}"#,
                Some("media[0].width"),
            ),
            (
                r#"{"id":"a","publish_time":"7 June"}"#,
                Some("publish_time"),
            ),
            (r#"{"id":"a"} {"id":"b"}"#, None),
            ("[1]", None),
        ];
        for (line, field) in cases {
            let error = parse_line(line).unwrap_err();
            assert_eq!(error.field.as_deref(), field, "{line}: {error:?}");
        }
        let unknown = parse_line(r#"{"titel":"t"}"#).unwrap_err();
        assert!(unknown.message.contains("titel"), "{unknown:?}");
    }

    #[test]
    fn nulls_read_as_empty_values() {
        let a =
            parse_line(r#"{"id":"a","authors":null,"summary":null,"expire_time":null}"#).unwrap();
        assert!(a.authors.is_empty() && a.summary.is_empty() && a.expire_time.is_none());
    }
}
