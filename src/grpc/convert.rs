//! Conversions between protobuf messages and domain types, at the edge of the API.

use super::proto;
use super::status::rpc_status;
use crate::domain::{
    Article, ArticleDraft, ArticleEvent, ArticleId, ArticleState, EventKind, Media, MediaDraft,
    RequestKey, Section, VersionSummary, Violations,
};
use crate::publishing::{ArticleRead, PublishError, PublishRequest, Published, RetractRequest};
use crate::storage::ListCursor;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use prost::Message;
use prost_types::Timestamp;

/// A protobuf timestamp as an instant; `Err` names what is wrong with it.
pub(crate) fn instant(ts: &Timestamp) -> Result<DateTime<Utc>, &'static str> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or("has nanos outside 0..999999999")?;
    DateTime::from_timestamp(ts.seconds, nanos).ok_or("is out of range")
}

fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The draft in a publish request; field paths in violations start with `article.`.
pub fn draft_from_proto(article: Option<proto::Article>) -> Result<ArticleDraft, Violations> {
    let Some(a) = article else {
        return Err(Violations::one("article", "is required"));
    };
    let mut violations = Violations::default();
    let mut time = |name: &str, ts: Option<Timestamp>| {
        ts.and_then(|ts| {
            instant(&ts)
                .map_err(|e| violations.add(format!("article.{name}"), e))
                .ok()
        })
    };
    let publish_time = time("publish_time", a.publish_time);
    let update_time = time("update_time", a.update_time);
    let expire_time = time("expire_time", a.expire_time);
    let embargo_time = time("embargo_time", a.embargo_time);
    // Unreadable times are reported by validation, with every other violation.
    Ok(ArticleDraft {
        id: a.id,
        section: a.section,
        title: a.title,
        subtitle: a.subtitle,
        kicker: a.kicker,
        authors: a.authors,
        summary: a.summary,
        content_html: a.content_html,
        content_text: a.content_text,
        tags: a.tags,
        canonical_url: a.canonical_url,
        publish_time,
        update_time,
        expire_time,
        embargo_time,
        media: a.media.into_iter().map(media_draft).collect(),
        language: a.language,
        prior_violations: violations,
    })
}

/// A publish request: the draft, its etag precondition and its request id.
pub fn publish_request(
    request: proto::PublishArticleRequest,
) -> Result<PublishRequest, Violations> {
    // The request without its id is what a retry must repeat.
    let key = if request.request_id.is_empty() {
        Ok(None)
    } else {
        let payload = request.article.as_ref().map(Message::encode_to_vec);
        request_key(&request.request_id, "publish", &payload.unwrap_or_default())
    };
    let expected_etag = request
        .article
        .as_ref()
        .map(|a| a.etag.clone())
        .filter(|etag| !etag.is_empty());
    let draft = draft_from_proto(request.article);
    match (draft, key) {
        (Ok(draft), Ok(request)) => Ok(PublishRequest {
            draft,
            expected_etag,
            request,
        }),
        // Validated all the same, so that the answer names every bad field; the request id's
        // violation refuses it whatever the article holds.
        (Ok(mut draft), Err(violations)) => {
            draft.prior_violations.extend(violations);
            Ok(PublishRequest {
                draft,
                expected_etag,
                request: None,
            })
        }
        (Err(mut violations), key) => {
            if let Err(more) = key {
                violations.extend(more);
            }
            Err(violations)
        }
    }
}

/// A retract request, with its etag precondition and its request id. A bad request id
/// goes with the request, refused by the retraction with the other fields' faults, and
/// audited as they are.
pub fn retract_request(request: proto::RetractArticleRequest) -> RetractRequest {
    let payload = proto::RetractArticleRequest {
        request_id: String::new(),
        ..request.clone()
    }
    .encode_to_vec();
    let (key, prior_violations) = match request_key(&request.request_id, "retract", &payload) {
        Ok(key) => (key, Violations::default()),
        Err(bad_key) => (None, bad_key),
    };
    RetractRequest {
        request: key,
        expected_etag: Some(request.etag).filter(|etag| !etag.is_empty()),
        id: request.id,
        reason: request.reason,
        prior_violations,
    }
}

fn request_key(raw: &str, kind: &str, payload: &[u8]) -> Result<Option<RequestKey>, Violations> {
    RequestKey::parse(raw, kind, payload).map_err(|e| Violations::one("request_id", e))
}

/// The version asked for by GetArticle: 0 means the current one.
pub fn version(raw: i32) -> Result<Option<u32>, Violations> {
    match u32::try_from(raw) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(Violations::one("version", "must not be negative")),
    }
}

/// The outcome of one article of a batch, at position `index`.
pub fn publish_result(
    index: usize,
    result: Result<Published, PublishError>,
    id: String,
) -> proto::PublishArticleResult {
    let index = i32::try_from(index).unwrap_or(i32::MAX);
    match result {
        Ok(published) => {
            let article = &published.article;
            proto::PublishArticleResult {
                index,
                id,
                status: Some(tonic_types::pb::Status::default()),
                etag: article.resource_etag(),
                version: version_number(article.version),
                state: state(article) as i32,
                update_time: Some(timestamp(article.updated)),
                changed: published.changed,
                warnings: published.warnings,
            }
        }
        Err(error) => proto::PublishArticleResult {
            index,
            id,
            status: Some(rpc_status(error)),
            ..Default::default()
        },
    }
}

/// Most bytes of results one PublishArticles answer gives in full: ten thousand articles
/// with twenty warnings each, or refused with a hundred bad fields each, would take the
/// answer past the 4 MiB a client reads at once.
const BATCH_LISTED_BYTES: usize = 2 << 20;
/// What a result past [`BATCH_LISTED_BYTES`] keeps of its id and its error message, in
/// bytes: at most ten thousand of them, each then a few hundred bytes at most.
const BATCH_SHORT_BYTES: usize = 48;

/// Keeps a PublishArticles answer within what a client reads at once: `results` in order
/// are given in full up to [`BATCH_LISTED_BYTES`]; each one past it has its warnings
/// counted in one line, its error without details and its id and message cut short.
pub fn bound_batch_answer(results: &mut [proto::PublishArticleResult]) {
    use prost::Message;
    let mut listed = 0;
    for result in results {
        let size = result.encoded_len();
        if listed + size <= BATCH_LISTED_BYTES {
            listed += size;
            continue;
        }
        if !result.warnings.is_empty() {
            let count = result.warnings.len();
            result.warnings = vec![format!("{count} warning(s) not listed (answer size)")];
        }
        if let Some(status) = result.status.as_mut()
            && status.code != 0
        {
            status.details.clear();
            status.message =
                super::status::bounded(std::mem::take(&mut status.message), BATCH_SHORT_BYTES);
        }
        result.id = super::status::bounded(std::mem::take(&mut result.id), BATCH_SHORT_BYTES);
    }
}

fn version_number(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

/// One stored version, as ListArticleVersions shows it.
pub fn version_to_proto(v: &VersionSummary) -> proto::ArticleVersion {
    proto::ArticleVersion {
        version: version_number(v.version),
        etag: v.etag.clone(),
        title: v.title.clone(),
        update_time: Some(timestamp(v.updated)),
    }
}

/// An event of the log, as WatchArticles shows it.
pub fn event_to_proto(event: &ArticleEvent) -> proto::ArticleEvent {
    let kind = match (&event.left, event.kind) {
        (Some(_), _) => proto::ArticleEventType::Left,
        (None, EventKind::Published) => proto::ArticleEventType::Published,
        (None, EventKind::Updated) => proto::ArticleEventType::Updated,
        (None, EventKind::Retracted) => proto::ArticleEventType::Retracted,
        (None, EventKind::EmbargoLifted) => proto::ArticleEventType::EmbargoLifted,
    };
    // A reader the article left is told which, and where it left: nothing of where it
    // went or what it now says. Copy retracted (by this event or since) is told as which
    // article it was and where, not what it said, whichever event replays it.
    let which = |section: &crate::domain::SectionSlug| proto::Article {
        id: event.article.id.to_string(),
        guid: event.article.guid.clone(),
        section: section.to_string(),
        ..Default::default()
    };
    let article = match &event.left {
        Some(section) => which(section),
        None if event.taken_down => proto::Article {
            state: proto::ArticleState::Retracted as i32,
            version: version_number(event.article.version),
            ..which(&event.article.content.section)
        },
        None => article_to_proto(&event.article),
    };
    proto::ArticleEvent {
        r#type: kind as i32,
        article: Some(article),
        partner: event.owner.to_string(),
        event_time: Some(timestamp(event.time)),
        cursor: watch_cursor(event.seq),
    }
}

/// The opaque cursor of a position in the event log.
pub fn watch_cursor(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("events:{seq}"))
}

/// The position in a WatchArticles cursor; empty means from now.
pub fn position_from_cursor(cursor: &str) -> Result<Option<u64>, Violations> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let invalid = || Violations::one("cursor", "is not a cursor returned by WatchArticles");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let seq = raw.strip_prefix("events:").ok_or_else(invalid)?;
    seq.parse().map(Some).map_err(|_| invalid())
}

/// The page token of ListArticleVersions of `partner`'s article `id`: the page continues
/// below this version. Taken only for that article (AIP-158).
pub fn version_page_token(below: u32, partner: crate::domain::PartnerId, id: &str) -> String {
    let mark = listing_mark(partner, "versions", id);
    URL_SAFE_NO_PAD.encode(format!("versions:{below}:{mark}"))
}

/// The version a ListArticleVersions page token of `partner`'s article `id` continues
/// below; empty means the first page.
pub fn version_from_page_token(
    token: &str,
    partner: crate::domain::PartnerId,
    id: &str,
) -> Result<Option<u32>, Violations> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Violations::one(
            "page_token",
            "is not a token returned by ListArticleVersions",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let below = raw.strip_prefix("versions:").ok_or_else(invalid)?;
    let (below, mark) = below.split_once(':').ok_or_else(invalid)?;
    if mark != listing_mark(partner, "versions", id) {
        return Err(Violations::one(
            "page_token",
            "was returned for another article's versions: ask with the id of the request \
             that returned it, or start again without a page_token",
        ));
    }
    below.parse().map(Some).map_err(|_| invalid())
}

fn media_draft(m: proto::Media) -> MediaDraft {
    MediaDraft {
        url: m.url,
        mime_type: m.mime_type,
        length: m.length,
        caption: m.caption,
        width: m.width,
        height: m.height,
    }
}

fn media_to_proto(m: &Media) -> proto::Media {
    proto::Media {
        url: m.url.clone(),
        mime_type: m.mime_type.clone(),
        // Validation keeps lengths within i64.
        length: i64::try_from(m.length).unwrap_or(i64::MAX),
        caption: m.caption.clone(),
        width: m.width.unwrap_or(0),
        height: m.height.unwrap_or(0),
    }
}

/// Where an article stands now, as the API says it.
fn state(article: &Article) -> proto::ArticleState {
    let c = &article.content;
    let now = Utc::now();
    match article.state {
        ArticleState::Retracted => proto::ArticleState::Retracted,
        ArticleState::Published if c.expire_time.is_some_and(|t| t <= now) => {
            proto::ArticleState::Expired
        }
        ArticleState::Published if c.is_embargoed(now) => proto::ArticleState::Embargoed,
        ArticleState::Published => proto::ArticleState::Published,
    }
}

/// A stored article as the API shows it.
pub fn article_to_proto(article: &Article) -> proto::Article {
    let c = &article.content;
    proto::Article {
        id: article.id.to_string(),
        section: c.section.to_string(),
        title: c.title.clone(),
        subtitle: c.subtitle.clone(),
        kicker: c.kicker.clone(),
        authors: c.authors.clone(),
        summary: c.summary.clone(),
        content_html: c.content_html.clone(),
        content_text: c.content_text.clone().unwrap_or_default(),
        tags: c.tags.clone(),
        canonical_url: c.canonical_url.clone().unwrap_or_default(),
        publish_time: Some(timestamp(c.publish_time)),
        update_time: Some(timestamp(article.updated)),
        expire_time: c.expire_time.map(timestamp),
        embargo_time: c.embargo_time.map(timestamp),
        media: c.media.iter().map(media_to_proto).collect(),
        language: c.language.clone().unwrap_or_default(),
        state: state(article) as i32,
        guid: article.guid.clone(),
        etag: article.resource_etag(),
        create_time: Some(timestamp(article.create_time)),
        retract_time: article.retract_time.map(timestamp),
        retract_reason: article.retract_reason.clone(),
        version: version_number(article.version),
    }
}

/// A version of an article as the API shows it: its content, and the state and
/// retraction of the article as it is now. A past version's etag is its content's, as
/// ListArticleVersions lists it; the current version's is the article's.
pub fn read_to_proto(read: &ArticleRead) -> proto::Article {
    let now = &read.current;
    let etag = if read.article.version == now.version {
        now.resource_etag()
    } else {
        read.article.etag.clone()
    };
    proto::Article {
        state: state(now) as i32,
        retract_time: now.retract_time.map(timestamp),
        retract_reason: now.retract_reason.clone(),
        etag,
        ..article_to_proto(&read.article)
    }
}

/// A configured section as the API shows it.
pub fn section_to_proto(section: &Section) -> proto::Section {
    proto::Section {
        slug: section.slug.to_string(),
        title: section.title.clone(),
        description: section.description.clone(),
    }
}

/// The optional section filter of ListArticles.
/// `page_size` of ListArticles: 0 means the default; negative values are refused.
pub fn page_size(raw: i32) -> Result<usize, Violations> {
    usize::try_from(raw).map_err(|_| Violations::one("page_size", "must not be negative"))
}

/// An opaque page token for a cursor.
pub fn page_token(cursor: &ListCursor, listing: Listing<'_>) -> String {
    let nanos = cursor
        .publish_time
        .timestamp_nanos_opt()
        .unwrap_or(i64::MAX);
    URL_SAFE_NO_PAD.encode(format!("{nanos}:{}:{}", cursor.id, listing.mark()))
}

/// The client's deadline in a `grpc-timeout` header: at most 8 digits and a unit, `H`,
/// `M`, `S`, `m`, `u` or `n` (gRPC over HTTP/2); `None` when it is not one.
pub fn grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// What a ListArticles page token belongs to: the partner listing and the section asked
/// for (empty for all). A token is taken only with the request it was returned for
/// (AIP-158): with another section, or by another partner, it would page through a list
/// it was not made for.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    pub partner: crate::domain::PartnerId,
    pub section: &'a str,
}

impl Listing<'_> {
    /// A short digest of the listing, carried in its tokens.
    fn mark(&self) -> String {
        listing_mark(self.partner, "articles", self.section)
    }
}

/// A short digest of what a page token pages through: the partner, the RPC, and what it
/// was asked for (a section, an article's id).
fn listing_mark(partner: crate::domain::PartnerId, rpc: &str, asked: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\n{rpc}\n{asked}", partner.0));
    hex::encode(&digest[..6])
}

/// The cursor in a page token of `listing`; empty means the first page.
pub fn cursor_from_token(
    token: &str,
    listing: Listing<'_>,
) -> Result<Option<ListCursor>, Violations> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Violations::one("page_token", "is not a token returned by ListArticles");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (nanos, rest) = raw.split_once(':').ok_or_else(invalid)?;
    let (id, mark) = rest.split_once(':').ok_or_else(invalid)?;
    if mark != listing.mark() {
        return Err(Violations::one(
            "page_token",
            "was returned for another listing (another partner's, or another section's or \
             article's): ask as the request that returned it did, or start again without a \
             page_token",
        ));
    }
    Ok(Some(ListCursor {
        publish_time: DateTime::from_timestamp_nanos(nanos.parse().map_err(|_| invalid())?),
        id: ArticleId::parse(id).map_err(|_| invalid())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten thousand articles warned of twenty things each: the first ones' warnings are
    /// listed up to 2 MiB, the others counted, and the answer stays under 4 MiB.
    #[test]
    fn a_batch_answer_lists_warnings_up_to_its_budget_and_counts_the_rest() {
        use prost::Message;
        let warning = "article.content_text: paragraph 2 repeats paragraph 1 (“文字文字文字文字…”)";
        let long_id = |index: i32| format!("{index:0>128}");
        let stored = (0..10_000).map(|index| proto::PublishArticleResult {
            index,
            id: long_id(index),
            etag: "0123456789abcdef01234567".into(),
            update_time: Some(prost_types::Timestamp::default()),
            version: 3,
            warnings: vec![warning.to_owned(); 21],
            ..Default::default()
        });
        // Refused with a hundred bad fields each, named in a detail.
        let violations: Vec<String> = (0..100).map(|n| format!("article.tags[{n}]")).collect();
        let refused = (0..10_000).map(|index| proto::PublishArticleResult {
            index,
            id: long_id(index),
            status: Some(tonic_types::pb::Status {
                code: 3,
                message: violations.join(": is blank; "),
                details: vec![prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                    value: violations.join("").into_bytes(),
                }],
            }),
            ..Default::default()
        });
        for (kind, results) in [
            ("stored", stored.collect::<Vec<_>>()),
            ("refused", refused.collect()),
        ] {
            let mut results = results;
            let whole = proto::PublishArticlesResponse {
                results: results.clone(),
            };
            assert!(
                whole.encoded_len() > 4 << 20,
                "{kind}: {}",
                whole.encoded_len()
            );
            bound_batch_answer(&mut results);
            assert_eq!(
                results[0], whole.results[0],
                "{kind}: the first given in full"
            );
            let last = &results[9_999];
            assert!(
                last.id.len() < 64 && last.id.ends_with('…'),
                "{kind}: {}",
                last.id
            );
            match kind {
                "stored" => assert_eq!(last.warnings, ["21 warning(s) not listed (answer size)"]),
                _ => {
                    let status = last.status.as_ref().unwrap();
                    assert_eq!(status.code, 3, "the error kept");
                    assert!(status.details.is_empty() && status.message.len() <= 48);
                }
            }
            let bounded = proto::PublishArticlesResponse { results };
            assert!(
                bounded.encoded_len() < 4 << 20,
                "{kind}: {}",
                bounded.encoded_len()
            );
        }
    }

    #[test]
    fn grpc_timeouts_are_read_as_the_protocol_writes_them() {
        use std::time::Duration;
        for (value, expected) in [
            ("2S", Some(Duration::from_secs(2))),
            ("1500m", Some(Duration::from_millis(1500))),
            ("99999999H", Some(Duration::from_secs(99_999_999 * 3600))),
            ("7u", Some(Duration::from_micros(7))),
            ("3n", Some(Duration::from_nanos(3))),
            ("1M", Some(Duration::from_secs(60))),
            ("", None),
            ("S", None),
            ("100000000S", None),
            ("1x", None),
            ("-1S", None),
            ("1é", None),
        ] {
            assert_eq!(grpc_timeout(value), expected, "{value:?}");
        }
    }

    /// Checks that a page token was refused, naming `page_token`, as one returned for
    /// another request (`why`).
    fn refused_as_another<T: std::fmt::Debug>(read: Result<T, Violations>, why: &str) {
        let refused = read.unwrap_err();
        let refused = refused.iter().next().unwrap();
        assert_eq!(refused.field, "page_token");
        assert!(refused.description.contains(why), "{refused:?}");
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let cursor = ListCursor {
            publish_time: DateTime::from_timestamp(1_686_092_400, 5).unwrap(),
            id: ArticleId::parse("a-1").unwrap(),
        };
        let listing = Listing {
            partner: crate::domain::PartnerId(7),
            section: "rural",
        };
        let token = page_token(&cursor, listing);
        assert_eq!(
            cursor_from_token(&token, listing).unwrap(),
            Some(cursor.clone())
        );
        assert_eq!(cursor_from_token("", listing).unwrap(), None);
        for bad in ["!!", "bm90LWEtY3Vyc29y", &URL_SAFE_NO_PAD.encode("x:a")] {
            assert!(cursor_from_token(bad, listing).is_err(), "{bad}");
        }
        // Another section, or another partner: refused, saying why.
        for other in [
            Listing {
                section: "",
                ..listing
            },
            Listing {
                partner: crate::domain::PartnerId(8),
                ..listing
            },
        ] {
            refused_as_another(cursor_from_token(&token, other), "another listing");
        }
        // Nor is one that names no listing (made by hand, say, for any section).
        let unmarked = URL_SAFE_NO_PAD.encode("1686092400000000005:a-1");
        assert!(cursor_from_token(&unmarked, listing).is_err());

        // ListArticleVersions: a token is taken for its own article only.
        let partner = crate::domain::PartnerId(7);
        let token = version_page_token(4, partner, "a-1");
        assert_eq!(
            version_from_page_token(&token, partner, "a-1").unwrap(),
            Some(4)
        );
        assert_eq!(version_from_page_token("", partner, "a-1").unwrap(), None);
        for (other, id) in [(partner, "a-2"), (crate::domain::PartnerId(8), "a-1")] {
            refused_as_another(
                version_from_page_token(&token, other, id),
                "another article",
            );
        }
        let unmarked = URL_SAFE_NO_PAD.encode("versions:4");
        assert!(version_from_page_token(&unmarked, partner, "a-1").is_err());
        // Nor is a ListArticles token one of ListArticleVersions, or the other way round.
        assert!(version_from_page_token(&page_token(&cursor, listing), partner, "a-1").is_err());
        assert!(cursor_from_token(&token, listing).is_err());
    }

    #[test]
    fn bad_timestamps_are_named() {
        let article = proto::Article {
            publish_time: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            expire_time: Some(Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            embargo_time: Some(Timestamp {
                seconds: 1,
                nanos: 1_000_000_000,
            }),
            ..Default::default()
        };
        // Kept in the draft, left empty, for validation to report with the rest.
        let draft = draft_from_proto(Some(article)).unwrap();
        assert_eq!(
            (draft.publish_time, draft.expire_time, draft.embargo_time),
            (None, None, None)
        );
        let violations = draft.prior_violations;
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "article.publish_time",
                "article.expire_time",
                "article.embargo_time"
            ]
        );
    }
}
