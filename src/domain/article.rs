//! Articles: the draft a partner sends, the validated content, and the stored record.

use super::lint;
use super::media::{Media, MediaDraft};
use super::text::{self, clean};
use super::{ArticleId, FeedScope, PartnerId, SectionSlug, Violations};
use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Longest accepted author name or tag, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Length of a derived summary, in user-perceived characters.
const SUMMARY_GRAPHEMES: usize = 160;
/// How far past the server's clock a partner's `update_time` may be: the partner's clock
/// may run a little ahead, but an article cannot have been edited in the future.
pub const UPDATE_TIME_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// How large the fields of an article may be (`[limits]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// Longest accepted headline, subtitle or kicker, in characters.
    pub title_chars: usize,
    /// Longest accepted summary, in characters.
    pub summary_chars: usize,
    /// Largest accepted body, in bytes, for each of `content_html` and `content_text`.
    pub content_bytes: usize,
    /// Most authors one article may carry. Each name has feeds of its own, each carrying
    /// the whole body: an article's names multiply its size in feeds.
    pub authors: usize,
    /// Most tags one article may carry (feeds of their own, as authors).
    pub tags: usize,
    /// Most media files one article may carry.
    pub media: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        Self {
            title_chars: 500,
            summary_chars: 5_000,
            content_bytes: 1 << 20,
            authors: 50,
            tags: 100,
            media: super::MAX_MEDIA,
        }
    }
}

/// An article as a partner sent it, before validation. Times are already instants.
#[derive(Debug, Clone, Default)]
pub struct ArticleDraft {
    pub id: String,
    pub section: String,
    pub title: String,
    pub subtitle: String,
    pub kicker: String,
    pub authors: Vec<String>,
    pub summary: String,
    pub content_html: String,
    pub content_text: String,
    pub tags: Vec<String>,
    pub canonical_url: String,
    pub publish_time: Option<DateTime<Utc>>,
    pub update_time: Option<DateTime<Utc>>,
    pub expire_time: Option<DateTime<Utc>>,
    pub embargo_time: Option<DateTime<Utc>>,
    pub media: Vec<MediaDraft>,
    /// BCP 47 tag of the copy; empty for the site's language.
    pub language: String,
    /// What was found wrong before validation (a timestamp that could not be read, and
    /// left empty above; a section the site does not have): validation reports it with
    /// every other violation.
    pub prior_violations: Violations,
}

/// Validated article content: every field clean, sanitised and within limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArticleContent {
    pub section: SectionSlug,
    pub title: String,
    pub subtitle: String,
    pub kicker: String,
    pub authors: Vec<String>,
    /// Plain text; derived from the body when the partner sent none.
    pub summary: String,
    /// Sanitised HTML body (made from `content_text` when only that was sent).
    pub content_html: String,
    /// The plain-text body, when the partner sent one.
    pub content_text: Option<String>,
    pub tags: Vec<String>,
    pub canonical_url: Option<String>,
    pub publish_time: DateTime<Utc>,
    /// The partner's own edit time, when it sent one.
    pub update_time: Option<DateTime<Utc>>,
    pub expire_time: Option<DateTime<Utc>>,
    /// Until this instant the article is in no feed, whatever its `publish_time`.
    // Skipped when absent (like `media` when empty) so that content stored before these
    // fields existed keeps its ETag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embargo_time: Option<DateTime<Utc>>,
    /// Images, audio and video, in the partner's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    /// BCP 47 tag of the copy, when it is not the site's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl ArticleContent {
    /// A strong validator of the content: equal exactly when the content is equal.
    pub fn etag(&self) -> String {
        // The hash of the content's JSON, which is hashed as it is written, not kept.
        let mut canonical = Sha256::new();
        serde_json::to_writer(&mut canonical, self).expect("article content always serialises");
        hex::encode(&canonical.finalize()[..12])
    }

    /// True while an embargo keeps the article out of every feed at `now`.
    pub fn is_embargoed(&self, now: DateTime<Utc>) -> bool {
        self.embargo_time.is_some_and(|t| t > now)
    }

    /// True when a published article of this content belongs in feeds at `now`: its
    /// publish time reached, not expired, no embargo running.
    pub fn in_view_at(&self, now: DateTime<Utc>) -> bool {
        self.publish_time <= now
            && self.expire_time.is_none_or(|t| t > now)
            && !self.is_embargoed(now)
    }
}

/// Whether HTML `a` and `b` are the same but for how they write a no-break space: U+00A0
/// itself (as HTML made from text was written before feedpub wrote `&nbsp;`), or `&nbsp;`.
pub fn same_html(a: &str, b: &str) -> bool {
    a == b
        || ((a.contains("&nbsp;") || b.contains("&nbsp;"))
            && a.replace("&nbsp;", "\u{a0}") == b.replace("&nbsp;", "\u{a0}"))
}

/// Whether `a` and `b` are the same content but for how their HTML writes a no-break
/// space: U+00A0 itself, or `&nbsp;`.
fn same_but_no_break_spaces(a: &ArticleContent, b: &ArticleContent) -> bool {
    (a.content_html.contains("&nbsp;") || b.content_html.contains("&nbsp;"))
        && same_html(&a.content_html, &b.content_html)
        && ArticleContent {
            content_html: String::new(),
            ..a.clone()
        } == ArticleContent {
            content_html: String::new(),
            ..b.clone()
        }
}

/// Where an article was seen before a write: see [`Article::seen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub section: SectionSlug,
    pub embargoed: bool,
}

impl Article {
    /// Where the article is seen at `now`, while it is published: its section, and
    /// whether an embargo runs (then only readers with the embargo right, and its own
    /// partner, see it).
    pub fn seen(&self, now: DateTime<Utc>) -> Option<Seen> {
        (self.state == ArticleState::Published).then(|| Seen {
            section: self.content.section.clone(),
            embargoed: self.content.is_embargoed(now),
        })
    }

    /// Where a write that made `self` took the article out of view, when it was `before`
    /// ([`Self::seen`] of the article replaced): its section, when it moved to another,
    /// and also when an embargo was put on again (for readers without the right).
    pub fn left(&self, before: Option<Seen>, now: DateTime<Utc>) -> Option<Seen> {
        let before = before?;
        let moved = self.state != ArticleState::Published || self.content.section != before.section;
        let hidden = !before.embargoed && self.content.is_embargoed(now);
        (moved || hidden).then_some(before)
    }

    /// The order of feeds: newest `publish_time` first, then by GUID.
    pub fn feed_order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .content
            .publish_time
            .cmp(&self.content.publish_time)
            .then_with(|| self.guid.cmp(&other.guid))
    }

    /// The latest instant up to `now` at which what a feed shows of the article changed: a
    /// write that did (`shown_change_time`), or its publish time coming (unless an embargo
    /// still runs), its embargo ending or its expire time passing (unless it was retracted
    /// before), each only once reached; `None` when none has. The times count only if the
    /// article was not written after it expired with nothing of it shown before (stored
    /// already expired, or moved into the feed after it): no reader saw it come or go.
    pub fn last_shown_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // As storage's `NOT_UNSEEN_AFTER_EXPIRY`: otherwise `shown_change_time` is `None`
        // too, and nothing counts.
        let may_have_been_seen = self.shown_change_time.is_some()
            || self
                .content
                .expire_time
                .is_none_or(|expiry| self.change_time < expiry);
        may_have_been_seen
            .then(|| self.last_page_change(now))
            .flatten()
    }

    /// As [`Self::last_shown_change`], for an archive page that holds the article: its
    /// times count even when it was written after it expired, as the page kept its slot
    /// wherever it showed (a move out of view clears what the row keeps of that,
    /// `Revision::left_seen`).
    pub fn last_page_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let c = &self.content;
        let published = self.state == ArticleState::Published;
        let expired_in_feeds =
            |expiry: &DateTime<Utc>| published || self.retract_time.is_some_and(|r| r > *expiry);
        [
            Some(c.publish_time).filter(|_| published && !c.is_embargoed(now)),
            c.embargo_time.filter(|_| published),
            c.expire_time.filter(expired_in_feeds),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t <= now)
        .chain(self.shown_change_time)
        .max()
    }

    /// True when feeds show the article at `now`, or show its retraction: retracted while
    /// in view, it left a tombstone (as `SHOWN_WHEN_RETRACTED` in storage decides; whether
    /// the tombstone's window has ended is not known here, so a retraction is taken as
    /// shown after it too).
    fn in_feeds(&self, now: DateTime<Utc>) -> bool {
        match (self.state, self.retract_time) {
            (ArticleState::Published, _) => self.is_visible(now),
            (ArticleState::Retracted, Some(gone)) => self.content.in_view_at(gone),
            (ArticleState::Retracted, None) => false,
        }
    }

    /// Sets `shown_change_time` for the write at `now` that made `self` from `before` (the
    /// article as it stood, by [`Self::in_feeds`] and [`Self::last_shown_change`]): the
    /// write's change time when feeds showed the article (or its tombstone) before it or
    /// show it after, else what feeds last saw change of it, which never goes back.
    fn note_shown_change(
        &mut self,
        (in_feeds, seen): (bool, Option<DateTime<Utc>>),
        now: DateTime<Utc>,
    ) {
        self.shown_change_time = if in_feeds || self.is_visible(now) {
            Some(self.change_time)
        } else {
            seen
        };
    }

    /// What [`Self::note_shown_change`] needs of the article before a write at `now`.
    fn before_write(&self, now: DateTime<Utc>) -> (bool, Option<DateTime<Utc>>) {
        (self.in_feeds(now), self.last_shown_change(now))
    }

    /// True while the article is yet to come into feeds: published, but its publish time
    /// or the end of its embargo still to come.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.state == ArticleState::Published
            && (self.content.publish_time > now || self.content.is_embargoed(now))
    }

    /// True when the article belongs in public feeds at `now`: published, its publish time
    /// reached, not expired, no embargo running.
    pub fn is_visible(&self, now: DateTime<Utc>) -> bool {
        self.state == ArticleState::Published && self.content.in_view_at(now)
    }
}

/// The trace a retracted article leaves in the feeds that showed it: an RFC 6721
/// `at:deleted-entry` in Atom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The GUID the entry had (its Atom id).
    pub guid: String,
    /// When the article was retracted.
    pub when: DateTime<Utc>,
}

/// Where an article stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArticleState {
    /// In its section's feeds once `publish_time` has come, until `expire_time`.
    Published,
    /// Taken out of every feed.
    Retracted,
}

/// A stored article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub partner: PartnerId,
    pub id: ArticleId,
    /// Permanent, unique id used as RSS guid, Atom id and JSON Feed id.
    pub guid: String,
    pub content: ArticleContent,
    /// When the content last really changed.
    pub updated: DateTime<Utc>,
    /// When feedpub first stored the article.
    pub create_time: DateTime<Utc>,
    /// When anything a feed shows of the article last changed (store, edit, retraction).
    /// Every write of the article moves it on, by a nanosecond at least even if the clock
    /// did not: a version of the article is known by it.
    pub change_time: DateTime<Utc>,
    /// What the feeds the article is in last saw change of it: the change time of its last
    /// write with the article in view before or after it, or a later instant it came into
    /// view or left it, as of its last write. `None` while none has (an article stored and
    /// edited only under embargo or before its publish time), and after a write out of
    /// view moved it into other feeds: a feed's date and ETag do not give such writes
    /// away.
    pub shown_change_time: Option<DateTime<Utc>>,
    pub state: ArticleState,
    pub retract_time: Option<DateTime<Utc>>,
    pub retract_reason: String,
    /// `content.etag()`, kept with the record.
    pub etag: String,
    /// Version of the content, from 1; each publish that changes the content adds one.
    pub version: u32,
}

/// What a publish did to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// Identical content was already published: nothing changed.
    Unchanged(Article),
    /// A new article.
    Created(Article),
    /// An existing article got new content (or came back from retraction).
    Updated {
        article: Article,
        previous_section: SectionSlug,
        /// The authors and the tags the article had before, whose feeds showed it.
        previous_names: Box<(Vec<String>, Vec<String>)>,
        /// True when the content changed (a new version); false when identical content
        /// came back from retraction.
        new_version: bool,
        /// When the write moved the article into or out of feeds while none showed it:
        /// what those it was in last saw change of it. They keep that date (its row, which
        /// other feeds now read, no longer carries it).
        left_seen: Option<DateTime<Utc>>,
    },
}

impl Revision {
    /// The event a stored revision makes: none when nothing changed.
    pub fn event_kind(&self) -> Option<super::EventKind> {
        match self {
            Revision::Unchanged(_) => None,
            Revision::Created(_) => Some(super::EventKind::Published),
            Revision::Updated { .. } => Some(super::EventKind::Updated),
        }
    }

    /// The article as it now stands.
    pub fn article(&self) -> &Article {
        match self {
            Self::Unchanged(article) | Self::Created(article) => article,
            Self::Updated { article, .. } => article,
        }
    }

    /// The article as it now stands, taken out of the revision.
    pub fn into_article(self) -> Article {
        match self {
            Self::Unchanged(article) | Self::Created(article) => article,
            Self::Updated { article, .. } => article,
        }
    }

    /// True when the revision stored a new version of the content.
    pub fn is_new_version(&self) -> bool {
        match self {
            Self::Unchanged(_) => false,
            Self::Created(_) => true,
            Self::Updated { new_version, .. } => *new_version,
        }
    }

    /// The sections whose feeds must be rebuilt because of this revision.
    pub fn touched_sections(&self) -> Vec<SectionSlug> {
        match self {
            Self::Unchanged(_) => Vec::new(),
            Self::Created(article) => vec![article.content.section.clone()],
            Self::Updated {
                article,
                previous_section,
                ..
            } => {
                let mut sections = vec![article.content.section.clone()];
                if *previous_section != article.content.section {
                    sections.push(previous_section.clone());
                }
                sections
            }
        }
    }

    /// The author and tag feeds that must be rebuilt because of this revision: those of
    /// the article's names now and, after an edit, before.
    pub fn touched_names(&self) -> Vec<FeedScope> {
        let mut scopes = std::collections::BTreeSet::new();
        match self {
            Self::Unchanged(_) => {}
            Self::Created(article) => scopes.extend(article.name_scopes()),
            Self::Updated {
                article,
                previous_names,
                ..
            } => {
                scopes.extend(article.name_scopes());
                let (authors, tags) = &**previous_names;
                scopes.extend(authors.iter().map(|a| FeedScope::author(a)));
                scopes.extend(tags.iter().map(|t| FeedScope::tag(t)));
            }
        }
        scopes.into_iter().collect()
    }

    /// The feeds whose archives an article already stored joined (`1`) or left (`-1`) by
    /// this revision: both sections of a move, and the authors and tags added or taken
    /// off ([`Self::moved_scopes`]); none for a new or unchanged article.
    pub fn archive_moves(&self) -> Vec<(FeedScope, i64)> {
        let before = self.previous_scopes();
        let moved: std::collections::BTreeSet<FeedScope> =
            self.moved_scopes().into_iter().collect();
        moved
            .into_iter()
            .map(|scope| {
                let by = if before.contains(&scope) { -1 } else { 1 };
                (scope, by)
            })
            .collect()
    }

    /// The feeds the article was in before this revision, `all` included; none for a new
    /// or unchanged article.
    pub fn previous_scopes(&self) -> Vec<FeedScope> {
        let Self::Updated {
            previous_section,
            previous_names,
            ..
        } = self
        else {
            return Vec::new();
        };
        let (authors, tags) = &**previous_names;
        [FeedScope::All, FeedScope::Section(previous_section.clone())]
            .into_iter()
            .chain(authors.iter().map(|a| FeedScope::author(a)))
            .chain(tags.iter().map(|t| FeedScope::tag(t)))
            .collect()
    }

    /// The feeds an article already stored joined or left by this revision: both sections
    /// of a move, and the authors and tags added or taken off. Each of their archives
    /// (ordered by when articles were first stored) shifts by one from the article's place
    /// on, where a new article only ever lands on the open page after the archive's.
    pub fn moved_scopes(&self) -> Vec<FeedScope> {
        let Self::Updated {
            article,
            previous_section,
            previous_names,
            ..
        } = self
        else {
            return Vec::new();
        };
        let mut scopes = Vec::new();
        if *previous_section != article.content.section {
            scopes.push(FeedScope::Section(previous_section.clone()));
            scopes.push(FeedScope::Section(article.content.section.clone()));
        }
        let changed = |before: &[String], after: &[String], scope: fn(&str) -> FeedScope| {
            let gone = before.iter().filter(|n| !after.contains(n));
            let came = after.iter().filter(|n| !before.contains(n));
            gone.chain(came).map(|n| scope(n)).collect::<Vec<_>>()
        };
        let (authors, tags) = &**previous_names;
        scopes.extend(changed(
            authors,
            &article.content.authors,
            FeedScope::author,
        ));
        scopes.extend(changed(tags, &article.content.tags, FeedScope::tag));
        scopes
    }
}

impl Article {
    /// The feeds of the article's authors and of its tags.
    pub fn name_scopes(&self) -> impl Iterator<Item = FeedScope> + '_ {
        self.content.name_scopes()
    }
}

impl ArticleContent {
    /// The feeds of these authors and of these tags.
    pub fn name_scopes(&self) -> impl Iterator<Item = FeedScope> + '_ {
        let authors = self.authors.iter().map(|a| FeedScope::author(a));
        authors.chain(self.tags.iter().map(|t| FeedScope::tag(t)))
    }
}

impl Article {
    /// Applies a publish of `content` on top of what is stored (`existing`), at `now`.
    /// The GUID is kept from `existing`, or made by `new_guid` for a new article.
    pub fn revise(
        existing: Option<Article>,
        partner: PartnerId,
        id: ArticleId,
        content: ArticleContent,
        now: DateTime<Utc>,
        new_guid: impl FnOnce(&ArticleContent) -> String,
    ) -> Revision {
        Self::revise_sent(existing, partner, id, content.into(), now, new_guid)
    }

    /// [`Article::revise`] with what validation and the request handler found out about
    /// the content: its etag, computed off the writer's path, which every publish waits
    /// for in turn, and its summary as sent.
    pub fn revise_sent(
        existing: Option<Article>,
        partner: PartnerId,
        id: ArticleId,
        sent: SentContent,
        now: DateTime<Utc>,
        new_guid: impl FnOnce(&ArticleContent) -> String,
    ) -> Revision {
        let SentContent {
            mut content,
            etag: content_etag,
            summary_as_sent,
        } = sent;
        debug_assert_eq!(content_etag, content.etag());
        // The summary sent is the stored one: as the partner read it, entities decoded or
        // not (a summary made from a body that reads like an entity, "a &lt; b", reads so).
        let same_summary = |content: &ArticleContent, old: &Article| {
            content.summary == old.content.summary
                || summary_as_sent.as_deref() == Some(old.content.summary.as_str())
        };
        // An update time that is not later than the stored version's says nothing new: an
        // article read and sent back carries the one it was shown with (which feedpub chose
        // when the partner gave none, or moved on from an earlier one the partner gave),
        // and a client may leave it out, or send the publish time it defaults to. None of
        // these is a change of its own; with other changes, the edit dates the version.
        let etag = match &existing {
            Some(old)
                if content.update_time != old.content.update_time
                    && content.update_time.is_none_or(|t| t <= old.updated) =>
            {
                let sent = std::mem::replace(&mut content.update_time, old.content.update_time);
                let etag = content.etag();
                // The one it was read with stands for the stored one, edited or not.
                if etag == old.etag
                    || same_but_no_break_spaces(&old.content, &content)
                    || sent == Some(old.updated)
                {
                    etag
                } else {
                    content.update_time = sent;
                    content_etag
                }
            }
            _ => content_etag,
        };
        // An article sent as text, read back with the HTML made from that text and the
        // summary made from it (when it was), and sent again with its text edited: the
        // HTML is made again from the edit when the one sent is the stored one (a client
        // that sends no HTML has it made from the edit already), and so is the summary when
        // the one sent is the stored one. Only text is summarised here, on the writer's
        // path; HTML is not parsed.
        let etag = match &existing {
            Some(old)
                if let (Some(new_text), Some(old_text)) =
                    (&content.content_text, &old.content.content_text)
                    && new_text != old_text =>
            {
                let mut remade = false;
                if same_html(&content.content_html, &old.content.content_html)
                    && same_html(&old.content.content_html, &text::text_to_html(old_text))
                {
                    content.content_html = text::text_to_html(new_text);
                    remade = true;
                }
                if same_summary(&content, old) && old.content.summary == derived_summary(old_text) {
                    content.summary = derived_summary(new_text);
                    remade = true;
                }
                if remade { content.etag() } else { etag }
            }
            _ => etag,
        };
        // An article sent as HTML, read back with the summary made from it, and sent again
        // with the HTML edited beside that summary: the summary is made again from the
        // edit. Both bodies are parsed on the writer's path, but only for an edited HTML
        // beside an unchanged summary.
        let etag = match &existing {
            Some(old)
                if old.content.content_text.is_none()
                    && content.content_text.is_none()
                    && same_summary(&content, old)
                    && !same_html(&content.content_html, &old.content.content_html)
                    && old.content.summary == summary_of_html(&old.content.content_html) =>
            {
                let made = summary_of_html(&content.content_html);
                if made == content.summary {
                    etag
                } else {
                    content.summary = made;
                    content.etag()
                }
            }
            _ => etag,
        };
        // The same content but for how its HTML writes a no-break space (U+00A0 or
        // `&nbsp;`: HTML made from text wrote the character before, the sanitiser writes
        // the entity) is the same content: sent again, it is not a new version.
        let etag = match &existing {
            Some(old) if old.etag != etag && same_but_no_break_spaces(&old.content, &content) => {
                content = old.content.clone();
                old.etag.clone()
            }
            _ => etag,
        };
        match existing {
            Some(old) if old.etag == etag && old.state == ArticleState::Published => {
                Revision::Unchanged(old)
            }
            Some(old) => {
                let updated = content.update_time.unwrap_or_else(|| {
                    if old.etag == etag {
                        old.updated
                    } else {
                        now.max(content.publish_time)
                    }
                });
                // Feed readers take an entry whose `updated` did not move on as unchanged:
                // a correction dated no later than the version it replaces is dated by the
                // edit itself (never before that version). A version no feed ever showed
                // (still to come: scheduled ahead, or under embargo, since its first write)
                // binds nothing: one scheduled for 20:00 and brought forward to 18:00 is not
                // dated 20:00. Any other may have been seen (one moved while expired keeps
                // no shown change time, but readers saw it before it expired).
                let pending = old.state == ArticleState::Published
                    && (old.content.publish_time > now || old.content.is_embargoed(now));
                let seen = old.shown_change_time.is_some() || !pending;
                // What readers saw is dated no later than the version replaced; a version
                // shown nowhere now (scheduled ahead, or under embargo again, after it was
                // shown) was not what they saw: they saw an earlier one, dated before now.
                // Its own date, its publish time ahead of now, say, binds nothing: kept, it
                // would date a version moved back into view in the future.
                let floor = if pending {
                    old.updated.min(now)
                } else {
                    old.updated
                };
                let updated = if !seen {
                    updated
                } else if old.etag != etag && updated <= floor {
                    now.max(floor)
                } else {
                    updated.max(floor)
                };
                // A retracted article published again is dated by that write, after its
                // retraction: a reader that kept the tombstone (RFC 6721) takes an entry no
                // newer than the tombstone's `when` as still deleted.
                let updated = match (old.state, old.retract_time) {
                    // After the tombstone's `when` also when this server's clock is behind
                    // the one that retracted it.
                    (ArticleState::Retracted, Some(gone)) => updated
                        .max(now)
                        .max(gone + chrono::TimeDelta::nanoseconds(1)),
                    (ArticleState::Retracted, None) => updated.max(now),
                    _ => updated,
                };
                let previous_section = old.content.section.clone();
                let previous_names =
                    Box::new((old.content.authors.clone(), old.content.tags.clone()));
                let new_version = old.etag != etag;
                // Import refuses a stored version of u32::MAX (see `transfer`), and four
                // billion edits are out of reach; saturating all the same, so that a row
                // edited by hand can never panic a writer or wrap to 0.
                let version = old.version.saturating_add(u32::from(new_version));
                let before = old.before_write(now);
                let mut article = Article {
                    content,
                    updated,
                    change_time: old.next_change(now),
                    state: ArticleState::Published,
                    retract_time: None,
                    retract_reason: String::new(),
                    etag,
                    version,
                    ..old
                };
                article.note_shown_change(before, now);
                let mut revision = Revision::Updated {
                    article,
                    previous_section,
                    previous_names,
                    new_version,
                    left_seen: None,
                };
                // Out of view, into or out of feeds: those it joins never saw it change,
                // and those it was in keep what they saw (the store dates them by it).
                let moved = !revision.moved_scopes().is_empty();
                if let Revision::Updated {
                    article, left_seen, ..
                } = &mut revision
                    && moved
                    && article.shown_change_time != Some(article.change_time)
                {
                    *left_seen = article.shown_change_time.take();
                }
                revision
            }
            None => {
                let mut article = Article {
                    partner,
                    id,
                    guid: new_guid(&content),
                    updated: content.update_time.unwrap_or(content.publish_time),
                    content,
                    create_time: now,
                    change_time: now,
                    shown_change_time: None,
                    state: ArticleState::Published,
                    retract_time: None,
                    retract_reason: String::new(),
                    etag,
                    version: 1,
                };
                article.note_shown_change((false, None), now);
                Revision::Created(article)
            }
        }
    }
}

/// A validated draft: the id, the content and what was changed on the way in.
#[derive(Debug, Clone)]
pub struct ValidDraft {
    pub id: ArticleId,
    pub content: ArticleContent,
    /// The summary as sent, when decoding its entities changed it (see [`SentContent`]).
    pub summary_as_sent: Option<String>,
    /// Notes for the editor about what ingest changed, e.g. removed control characters.
    pub warnings: Vec<String>,
}

/// Validated content as a revision takes it.
#[derive(Debug, Clone)]
pub struct SentContent {
    pub content: ArticleContent,
    /// The content's [`ArticleContent::etag`].
    pub etag: String,
    /// The summary as the partner sent it, when decoding its entities changed it. A
    /// partner that read a summary made from a body that reads like an entity ("a &lt;
    /// b") and sends it back beside an edited body sends the stored summary: the revision
    /// makes it again from the edit, as it does for any summary made from the body.
    pub summary_as_sent: Option<String>,
}

impl From<ArticleContent> for SentContent {
    /// Content whose summary was sent as it is stored.
    fn from(content: ArticleContent) -> Self {
        Self {
            etag: content.etag(),
            content,
            summary_as_sent: None,
        }
    }
}

impl From<ValidDraft> for SentContent {
    fn from(valid: ValidDraft) -> Self {
        Self {
            etag: valid.content.etag(),
            content: valid.content,
            summary_as_sent: valid.summary_as_sent,
        }
    }
}

/// Whether `html` has the shape of HTML made from text (paragraphs and line breaks, no
/// other markup): only such HTML can be made again from a text sent beside it.
fn made_from_text_shape(html: &str) -> bool {
    // Every `<` opens one of the three tags (no copy of the body is made: this runs on
    // every publish of a text beside HTML).
    html.match_indices('<').all(|(at, _)| {
        let tag = &html[at..];
        tag.starts_with("<p>") || tag.starts_with("</p>") || tag.starts_with("<br>")
    })
}

/// The summary of an article sent without one, from its body's text: its paragraphs folded
/// into one line and cut. A direction control left open in a line ends with it, as it does
/// in the body (a line is a paragraph to the bidirectional algorithm, and so is the `<p>`
/// or `<br>` made of it): it is closed there before the lines are joined, or it would run
/// on into the next; and one still open at the cut is closed after it.
fn derived_summary(body_text: &str) -> String {
    // Only what the summary is cut from is balanced (a line past it is never read, however
    // long the body).
    let head = &body_text[..text::floor_char_boundary(
        body_text,
        text::summary_reads(SUMMARY_GRAPHEMES).saturating_add(1),
    )];
    let body_text = if head.contains(text::is_bidi_control) {
        let mut balanced = head
            .split('\n')
            .map(|line| text::balance_bidi(line.to_owned()).0)
            .collect::<Vec<_>>()
            .join("\n");
        balanced.push_str(&body_text[head.len()..]);
        Cow::Owned(balanced)
    } else {
        Cow::Borrowed(body_text)
    };
    text::composed(text::balance_bidi(text::summarize(&body_text, SUMMARY_GRAPHEMES)).0)
}

/// The summary made from a (sanitised) HTML body, as validation makes it when none is sent.
fn summary_of_html(html: &str) -> String {
    derived_summary(&text::html_to_text(html))
}

/// Decodings of a plain-text field's entities tried at most: text a system escaped twice
/// (`&amp;amp;`) is decoded twice.
const MAX_ENTITY_DECODINGS: usize = 4;

/// `text` with its HTML entities decoded once, when it has any.
fn decoded_once(text: &str) -> Option<String> {
    // Most text has no `&` at all, which memchr finds at once (the decoder looks at one
    // byte at a time).
    if !text.contains('&') {
        return None;
    }
    match html_escape::decode_html_entities(text) {
        Cow::Owned(decoded) if decoded != text => Some(decoded),
        _ => None,
    }
}

/// Collects cleaned fields, violations and warnings while a draft is checked.
pub(super) struct Checker {
    pub(super) violations: Violations,
    pub(super) warnings: Vec<String>,
    pub(super) limits: FieldLimits,
}

/// The warning that `field`'s HTML entities were decoded.
pub fn entities_decoded(field: &str) -> String {
    format!("{field}: decoded HTML entities (plain-text fields are text, not HTML)")
}

impl Checker {
    /// Plain text: HTML entities decoded (the field is text, not HTML), then cleaned.
    pub(super) fn text(&mut self, field: &str, raw: &str, single_line: bool) -> String {
        let mut cleaned = self.clean(field, raw, single_line);
        // Entities decoded and the text cleaned again until nothing decodes: what cleaning
        // removes may join an entity (`&am\u{1}p;`), and decoding may give characters
        // cleaning removes (`&#x7f;`). Text with more layers than MAX_ENTITY_DECODINGS is
        // kept as sent, cleaned. Either way the stored text, sent again, stays as it is.
        let warned = self.warnings.len();
        let sent = cleaned.contains('&').then(|| cleaned.clone());
        let mut passes = 0;
        while let Some(decoded) = decoded_once(&cleaned) {
            passes += 1;
            if passes > MAX_ENTITY_DECODINGS {
                self.warnings.truncate(warned);
                if let Some(sent) = sent {
                    cleaned = sent;
                }
                passes = 0;
                break;
            }
            cleaned = self.clean(field, &decoded, single_line);
        }
        if passes > 0 {
            self.warnings.push(entities_decoded(field));
        }
        // Text, not markup, is put in NFC (see `text::composed`).
        if text::composes(&cleaned) {
            self.warnings.push(format!(
                "{field}: put in Unicode NFC (letters and their combining marks composed, as \
                 one character where Unicode has one)"
            ));
            text::composed(cleaned)
        } else {
            cleaned
        }
    }

    fn clean(&mut self, field: &str, raw: &str, single_line: bool) -> String {
        let cleaned = clean(raw, single_line);
        if cleaned.removed > 0 {
            self.warnings.push(format!(
                "{field}: removed {} character(s) that feeds cannot carry (control characters or non-characters)",
                cleaned.removed
            ));
        }
        if cleaned.folded > 0 {
            self.warnings.push(format!(
                "{field}: folded {} line break(s) into spaces (the field is one line)",
                cleaned.folded
            ));
        }
        self.note_balanced(field, cleaned.bidi_balanced);
        cleaned.text
    }

    /// Warns that `balanced` bidirectional controls of `field` were closed or removed.
    fn note_balanced(&mut self, field: &str, balanced: usize) {
        if balanced > 0 {
            self.warnings.push(format!(
                "{field}: balanced its bidirectional controls ({balanced} closed or removed), \
                 so that they end with the field"
            ));
        }
    }

    /// A one-line field (title, subtitle, kicker). One that is not `required` and shows
    /// nothing (only zero-width or other invisible characters) is left out, with a
    /// warning: a reader would show an empty subtitle, or a category with no name.
    fn line(&mut self, field: &str, raw: &str, required: bool) -> String {
        let line = self.text(field, raw, true);
        if required && text::is_blank(&line) {
            self.violations.add(field, "is required");
        } else if !line.is_empty() && text::is_blank(&line) {
            self.warnings.push(format!(
                "{field}: has nothing a reader can see (only invisible characters), so it \
                 is left out"
            ));
            return String::new();
        } else if line.chars().count() > self.limits.title_chars {
            let max = self.limits.title_chars;
            self.violations
                .add(field, format!("is longer than {max} characters"));
        }
        line
    }

    /// The names of `field` (authors, or tags), as stored; `people`: names of people, whose
    /// padding is removed (see [`text::without_padding`]).
    fn names(&mut self, field: &str, raw: &[String], max: usize, people: bool) -> Vec<String> {
        if raw.len() > max {
            self.violations.add(
                field,
                format!("has {} entries; at most {max} are allowed", raw.len()),
            );
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::with_capacity(raw.len());
        for (i, name) in raw.iter().enumerate() {
            let item = format!("{field}[{i}]");
            let unpadded = people.then(|| text::without_padding(name)).flatten();
            if let Some(unpadded) = &unpadded {
                self.warnings.push(format!(
                    "{item}: removed the full-width spaces that pad it ({:?} is {unpadded:?})",
                    name.trim()
                ));
            }
            let name = unpadded.as_deref().unwrap_or(name);
            let mut name = text::normalize_name(&self.text(&item, name, true));
            // Invisible characters normalising removed may have split an entity.
            if decoded_once(&name).is_some() {
                name = text::normalize_name(&self.text(&item, &name, true));
            }
            if text::is_blank(&name) {
                self.violations.add(item, "is empty");
            } else if name.chars().count() > MAX_NAME_CHARS {
                self.violations
                    .add(item, format!("is longer than {MAX_NAME_CHARS} characters"));
            } else if names.contains(&name) {
                self.warnings
                    .push(format!("{item}: {name:?} is listed twice; kept once"));
            } else {
                names.push(name);
            }
        }
        names
    }

    fn body(&mut self, field: &str, raw: &str, html: bool) -> String {
        if raw.len() > self.limits.content_bytes {
            let max = self.limits.content_bytes;
            self.violations
                .add(field, format!("is larger than {max} bytes"));
            return String::new();
        }
        if html {
            // Sanitised (and measured, see `HtmlPolicy::sanitize`) as the last step, once
            // the characters feeds cannot carry are gone: `<\u{1}div>` is a tag then.
            self.clean(field, raw, false)
        } else {
            self.text(field, raw, false)
        }
    }
}

impl ArticleDraft {
    /// Checks every field within the default limits; see [`ArticleDraft::validate_within`].
    pub fn validate(
        self,
        prefix: &str,
        policy: &text::HtmlPolicy,
    ) -> Result<ValidDraft, Violations> {
        self.validate_within(prefix, policy, FieldLimits::default())
    }

    /// Checks every field, returning all violations at once; field paths start with `prefix`.
    /// The HTML body is sanitised by `policy` as the last step.
    pub fn validate_within(
        self,
        prefix: &str,
        policy: &text::HtmlPolicy,
        limits: FieldLimits,
    ) -> Result<ValidDraft, Violations> {
        self.validate_at(prefix, policy, limits, Utc::now())
    }

    /// [`ArticleDraft::validate_within`] with the server's clock reading `now` (an
    /// `update_time` may not be later than it, give or take [`UPDATE_TIME_CLOCK_SKEW`]).
    pub fn validate_at(
        mut self,
        prefix: &str,
        policy: &text::HtmlPolicy,
        limits: FieldLimits,
        now: DateTime<Utc>,
    ) -> Result<ValidDraft, Violations> {
        let f = |name: &str| format!("{prefix}{name}");
        let mut check = Checker {
            violations: std::mem::take(&mut self.prior_violations),
            warnings: Vec::new(),
            limits,
        };
        let id = ArticleId::parse(&self.id)
            .map_err(|e| check.violations.add(f("id"), e))
            .ok();
        let section = SectionSlug::parse(&self.section)
            .map_err(|e| check.violations.add(f("section"), e))
            .ok();
        let title = check.line(&f("title"), &self.title, true);
        let subtitle = check.line(&f("subtitle"), &self.subtitle, false);
        let kicker = check.line(&f("kicker"), &self.kicker, false);
        let authors = check.names(&f("authors"), &self.authors, limits.authors, true);
        let tags = check.names(&f("tags"), &self.tags, limits.tags, false);

        // The base of the body's relative URLs, so read before it (and refused, if it
        // must be, in the order of the fields).
        let canonical_url = check_url(&self.canonical_url);
        let base = canonical_url
            .as_ref()
            .ok()
            .and_then(Option::as_deref)
            .and_then(|url| url::Url::parse(url).ok());

        let violations_before_body = check.violations.iter().count();
        let content_text = check.body(&f("content_text"), &self.content_text, false);
        let content_html = check.body(&f("content_html"), &self.content_html, true);
        // A body refused as too large, or too costly to parse, is named once, not also as
        // missing.
        let mut body_refused = check.violations.iter().count() > violations_before_body;
        let mut relative_urls_removed = 0;
        let html_sent = !content_html.is_empty();
        let content_html = if html_sent {
            // Character references (`&#1;`) decode to characters feeds cannot carry:
            // they are removed after sanitising, like raw ones before it.
            let html = policy
                .sanitize_for(&content_html, base.as_ref())
                .and_then(|sanitized| {
                    relative_urls_removed = sanitized.relative_urls_removed;
                    if sanitized.relative_urls_removed > 0 {
                        check.warnings.push(format!(
                            "{}: removed {} relative URL(s): without a canonical_url to \
                             resolve them against, they would point at the feed's host",
                            f("content_html"),
                            sanitized.relative_urls_removed
                        ));
                    }
                    let sanitized = sanitized.html;
                    let cleaned = check.clean(&f("content_html"), &sanitized, false);
                    // What the removal leaves may parse differently (a U+FEFF that is now
                    // first is dropped as a byte order mark): sanitised again, it is what a
                    // re-send stores.
                    if cleaned == sanitized {
                        Ok(cleaned)
                    } else {
                        policy
                            .sanitize_for(&cleaned, base.as_ref())
                            .map(|again| again.html)
                    }
                });
            let html = html.unwrap_or_else(|fault| {
                check.violations.add(f("content_html"), fault);
                body_refused = true;
                String::new()
            });
            // Sanitising closes what was left open, so it may grow the body.
            if html.len() > limits.content_bytes {
                check.violations.add(
                    f("content_html"),
                    format!(
                        "is larger than {} bytes once sanitised ({} bytes)",
                        limits.content_bytes,
                        html.len()
                    ),
                );
            }
            html
        } else {
            text::text_to_html(&content_text)
        };
        // Escaping and markup grow the text (`<` takes four bytes as `&lt;`, a paragraph
        // gains `<p></p>`): the HTML, which answers and feeds carry beside the text, may take
        // twice the limit of a body, no more. Sent beside HTML, the text may have its HTML
        // made too (see `Article::revise_sent`).
        let most = limits.content_bytes.saturating_mul(2);
        let made_len = if !html_sent {
            content_html.len()
        } else if !content_text.is_empty() && made_from_text_shape(&content_html) {
            text::text_to_html(&content_text).len()
        } else {
            0
        };
        if made_len > most && !body_refused {
            check.violations.add(
                f("content_text"),
                format!(
                    "is larger than {most} bytes once made HTML ({made_len} bytes: `<`, `>` \
                     and `&` are escaped, paragraphs marked up)"
                ),
            );
            body_refused = true;
        }
        let html_text =
            (html_sent || content_text.is_empty()).then(|| text::html_to_text(&content_html));
        let body_text: &str = if content_text.is_empty() {
            html_text.as_deref().unwrap_or_default()
        } else {
            &content_text
        };
        let body_field = f(if content_text.is_empty() {
            "content_html"
        } else {
            "content_text"
        });
        // Asked only of a blank body.
        let shows_media = || text::shows_media(&content_html);
        if content_html.trim().is_empty() && !body_refused {
            let (field, why) = if html_sent {
                (
                    "content_html",
                    "has nothing left once sanitised (only markup that is removed, such as <script>)",
                )
            } else if !self.content_text.is_empty() {
                // Sent, and cleaned to nothing: the text is what to fix.
                (
                    "content_text",
                    "has no visible text (only white space, or characters feeds cannot carry, \
                     which are removed)",
                )
            } else {
                (
                    "content_html",
                    "one of content_html and content_text is required",
                )
            };
            check.violations.add(f(field), why);
        } else if !body_refused {
            // `<p> </p>`, or only zero-width characters: a body no reader can see. Each body
            // sent must show something: feeds carry the HTML, JSON Feed's content_text the
            // text.
            let html_blank = html_text.as_deref().is_some_and(text::is_blank) && !shows_media();
            if html_sent && html_blank {
                let why = if relative_urls_removed > 0 {
                    format!(
                        "has no visible text and no image or embed once its \
                         {relative_urls_removed} relative URL(s) are removed: give \
                         canonical_url to resolve them"
                    )
                } else {
                    "has no visible text and no image or embed".to_owned()
                };
                check.violations.add(f("content_html"), why);
            }
            if !content_text.is_empty() && text::is_blank(&content_text) && !shows_media() {
                check.violations.add(
                    f("content_text"),
                    "has no visible text and no image or embed",
                );
            }
        }
        // Both bodies sent: RSS and Atom carry the HTML, JSON Feed both, so a warning says
        // when their words differ (a text edited beside the HTML made from the stored one
        // is the edit: see `Article::revise_sent`). Words are compared in NFC.
        let words = |text: &str| {
            text.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<Vec<_>>()
        };
        // A blank body, or HTML with no words at all (only images), is judged above.
        if let Some(html_words) = html_text
            .as_deref()
            .map(|html_text| words(&text::composed(html_text.to_owned())))
            && !html_words.is_empty()
            && !text::is_blank(&content_text)
            && !body_refused
            && html_words != words(&content_text)
        {
            check.warnings.push(format!(
                "{}: its words differ from those of content_html, which RSS and Atom carry \
                 (JSON Feed both), unless that is the HTML made from the stored text, which \
                 is then made again from this one: send one body, and the other is made \
                 from it",
                f("content_text")
            ));
        }
        let paragraphs: Vec<&str> = text::paragraphs(body_text).collect();
        check.warnings.extend(lint::lint(&body_field, &paragraphs));

        // The summary the body makes, sent back as it was read: where the body's text reads
        // like an entity ("a &lt; b"), so does that summary, and decoding it would make it
        // differ from the body and the article a new version.
        let mut summary =
            if self.summary.contains('&') && self.summary == derived_summary(body_text) {
                self.summary.clone()
            } else {
                check.text(&f("summary"), &self.summary, false)
            };
        // Kept only where it may be a stored summary (which never exceeds the limit): a
        // write holds it until it is stored, and a batch holds many writes.
        let as_sent = self.summary.trim();
        let summary_as_sent = (as_sent.contains('&')
            && summary != as_sent
            && as_sent.len() <= limits.summary_chars.saturating_mul(4)
            && as_sent.chars().count() <= limits.summary_chars)
            .then(|| as_sent.to_owned());
        if summary.chars().count() > limits.summary_chars {
            check.violations.add(
                f("summary"),
                format!("is longer than {} characters", limits.summary_chars),
            );
        }
        if !summary.is_empty() {
            // Shown beside the title in every reader's list: a control left open would
            // reverse what follows it there, as in a title.
            let (balanced, closed) = text::balance_bidi(summary);
            check.note_balanced(&f("summary"), closed);
            // A closer removed from between a letter and its mark leaves them to compose.
            summary = if closed > 0 {
                text::composed(balanced)
            } else {
                balanced
            };
        }
        if !summary.is_empty() && text::is_blank(&summary) {
            check.warnings.push(format!(
                "{}: has nothing a reader can see (only invisible characters), so it is \
                 made from the body",
                f("summary")
            ));
            summary.clear();
        }
        if summary.is_empty() {
            // None sent, only closers with nothing to close, or nothing visible: its
            // paragraphs folded into one line and cut (a direction control left open in a
            // paragraph would now run on into the next, or past the cut).
            summary = derived_summary(body_text);
        }

        let language = Some(self.language.trim())
            .filter(|tag| !tag.is_empty())
            .and_then(|tag| {
                let canonical = super::canonical_language_tag(tag)
                    .map_err(|e| check.violations.add(f("language"), e))
                    .ok()?;
                if canonical != tag {
                    check.warnings.push(format!(
                        "{}: written {canonical:?}, in the case BCP 47 recommends (tags are \
                         case-insensitive)",
                        f("language")
                    ));
                }
                Some(canonical)
            });
        let canonical_url = canonical_url
            .map_err(|e| check.violations.add(f("canonical_url"), e))
            .ok()
            .flatten();
        let media = check.media(&f("media"), &self.media);

        let times = [
            ("publish_time", self.publish_time),
            ("update_time", self.update_time),
            ("expire_time", self.expire_time),
            ("embargo_time", self.embargo_time),
        ];
        for (name, time) in times {
            if let Some(t) = time
                && !(1800..=2200).contains(&t.year())
            {
                check
                    .violations
                    .add(f(name), "must be between the years 1800 and 2200");
            }
        }
        if self.publish_time.is_none() {
            let field = f("publish_time");
            if !check.violations.iter().any(|v| v.field == field) {
                check.violations.add(field, "is required");
            }
        }
        // The content cannot have changed before it was published, nor after now: Atom's
        // `updated` would precede `published`, or be overtaken, and so go backwards, by
        // the next correction's real time. The publish time itself is always accepted: it
        // is what an article scheduled ahead shows as its update time when read back.
        let update_field = f("update_time");
        if let Some(update) = self.update_time
            && !check.violations.iter().any(|v| v.field == update_field)
        {
            if self.publish_time.is_some_and(|publish| update < publish) {
                check
                    .violations
                    .add(update_field, "must not be earlier than publish_time");
            } else if update > now + UPDATE_TIME_CLOCK_SKEW && Some(update) != self.publish_time {
                check.violations.add(
                    update_field,
                    format!(
                        "must not be later than the server's time (with {} minutes for clock \
                         skew)",
                        UPDATE_TIME_CLOCK_SKEW.num_minutes()
                    ),
                );
            }
        }
        if let (Some(publish), Some(expire)) = (self.publish_time, self.expire_time)
            && expire <= publish
        {
            check
                .violations
                .add(f("expire_time"), "must be later than publish_time");
        }
        // An embargo at or before publish_time changes nothing: it is accepted with a note,
        // and not kept (kept, it would show the article as embargoed, need the embargo right
        // and report its end as a lift while the article is merely scheduled). One that
        // lasts until expiry would keep the article out of every feed for good.
        let mut embargo_time = self.embargo_time;
        if let (Some(embargo), Some(publish)) = (self.embargo_time, self.publish_time)
            && embargo <= publish
        {
            check.warnings.push(format!(
                "{}: is not after publish_time, so it has no effect (it is not kept)",
                f("embargo_time")
            ));
            embargo_time = None;
        }
        if let (Some(embargo), Some(expire)) = (self.embargo_time, self.expire_time)
            && embargo >= expire
        {
            check.violations.add(
                f("embargo_time"),
                "must be earlier than expire_time (the article would never appear)",
            );
        }

        let Checker {
            violations,
            warnings,
            ..
        } = check;
        match (id, section, self.publish_time) {
            (Some(id), Some(section), Some(publish_time)) if violations.is_empty() => {
                Ok(ValidDraft {
                    id,
                    content: ArticleContent {
                        section,
                        title,
                        subtitle,
                        kicker,
                        authors,
                        summary,
                        content_html,
                        content_text: (!content_text.is_empty()).then_some(content_text),
                        tags,
                        canonical_url,
                        publish_time,
                        update_time: self.update_time,
                        expire_time: self.expire_time,
                        embargo_time,
                        media,
                        language,
                    },
                    summary_as_sent,
                    warnings,
                })
            }
            _ => Err(violations),
        }
    }
}

/// The longest URL an article may carry, in bytes as it is stored and as feeds carry it:
/// written as the URL standard writes it, percent-encoded.
const MAX_URL_BYTES: usize = 2048;

/// How long a stored URL may be: versions before measured the URL as sent, before it was
/// percent-encoded (which writes a byte as three, and a host in Unicode as its longer
/// ASCII form), so their rows and exports hold some longer than [`MAX_URL_BYTES`].
const MAX_STORED_URL_BYTES: usize = 4 * MAX_URL_BYTES;

/// Accepts an empty value (no URL) or an absolute http(s) URL of at most 2048 bytes once
/// written as stored (so that an article read back can be sent again), without a user
/// name or password: feeds would hand them to every reader, and
/// `https://trusted.example@elsewhere.example/` leads elsewhere than it reads.
pub(super) fn check_url(raw: &str) -> Result<Option<String>, String> {
    let url = check_stored_url(raw)?;
    if url.as_ref().is_some_and(|url| url.len() > MAX_URL_BYTES) {
        return Err(format!(
            "is longer than {MAX_URL_BYTES} bytes, written as stored (percent-encoded)"
        ));
    }
    if let Some(parsed) = url.as_deref().and_then(|u| url::Url::parse(u).ok())
        && (!parsed.username().is_empty() || parsed.password().is_some())
    {
        return Err("must not carry a user name or password".into());
    }
    Ok(url)
}

/// [`check_url`] as stored rows and exports are held to it: credentials in a URL, which
/// versions before refused none, are let through (they are not the store's fault), and so
/// are URLs those versions let grow past [`MAX_URL_BYTES`] (see [`MAX_STORED_URL_BYTES`]).
pub(super) fn check_stored_url(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let too_long = || format!("is longer than {MAX_URL_BYTES} bytes");
    if raw.len() > MAX_STORED_URL_BYTES {
        return Err(too_long());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let url = url.to_string();
    if url.len() > MAX_STORED_URL_BYTES {
        return Err(too_long());
    }
    Ok(Some(url))
}

impl Article {
    /// About how many bytes the article takes in an answer of the API: its text, and a
    /// little for the rest. Pages and watch updates are cut by it, so that each message
    /// stays within what a client takes at once.
    pub fn approx_bytes(&self) -> usize {
        let (bytes, items) = self.text_bytes();
        256 + bytes + 16 * items
    }

    /// The bytes of every string the article holds, and how many names, tags and media
    /// files carry some of them (each costs a little more wherever the article is kept).
    pub fn text_bytes(&self) -> (usize, usize) {
        let c = &self.content;
        let names = c.authors.iter().chain(&c.tags).map(String::len);
        let media = c
            .media
            .iter()
            .map(|m| m.url.len() + m.mime_type.len() + m.caption.len());
        let optional = [&c.content_text, &c.canonical_url, &c.language]
            .into_iter()
            .map(|s| s.as_ref().map_or(0, String::len));
        let bytes = [
            self.id.as_str(),
            &self.guid,
            &self.etag,
            &self.retract_reason,
            c.section.as_str(),
            &c.title,
            &c.subtitle,
            &c.kicker,
            &c.summary,
            &c.content_html,
        ]
        .iter()
        .map(|s| s.len())
        .chain(optional)
        .chain(names)
        .chain(media)
        .sum();
        (bytes, c.authors.len() + c.tags.len() + c.media.len())
    }

    /// The etag partners see and give as a precondition: the content's while the article
    /// is published, another one made from it and the retraction time once retracted, so
    /// that a retraction, too, fails a precondition read before it.
    pub fn resource_etag(&self) -> String {
        match (self.state, self.retract_time) {
            (ArticleState::Retracted, Some(when)) => {
                let mut hash = Sha256::new();
                hash.update(self.etag.as_bytes());
                hash.update(when.timestamp_nanos_opt().unwrap_or(i64::MAX).to_be_bytes());
                hex::encode(&hash.finalize()[..12])
            }
            _ => self.etag.clone(),
        }
    }

    /// Takes the article out of every feed at `now`; false when it was already retracted.
    pub fn retract(&mut self, reason: String, now: DateTime<Utc>) -> bool {
        if self.state == ArticleState::Retracted {
            return false;
        }
        let before = self.before_write(now);
        self.state = ArticleState::Retracted;
        self.retract_time = Some(now);
        self.retract_reason = reason;
        self.change_time = self.next_change(now);
        self.note_shown_change(before, now);
        true
    }

    /// The change time of the article's next write at `now`: later than its last.
    fn next_change(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.max(self.change_time + chrono::TimeDelta::nanoseconds(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn draft() -> ArticleDraft {
        ArticleDraft {
            id: "a-1".into(),
            section: "politics".into(),
            title: "标题".into(),
            authors: vec!["陈淑兰".into()],
            content_text: "第一段。\n\n第二段。".into(),
            publish_time: Some(Utc.with_ymd_and_hms(2023, 6, 6, 22, 0, 0).unwrap()),
            ..Default::default()
        }
    }

    /// Only paragraphs and line breaks make HTML of the shape text is made into; any other
    /// `<` (another tag, a tag cut short) does not.
    #[test]
    fn html_made_from_text_has_paragraphs_and_line_breaks_only() {
        for made in ["", "a &lt; b", "<p>一</p><p>二<br>三</p>", "<br><br>"] {
            assert!(made_from_text_shape(made), "{made}");
        }
        for other in [
            "<p>一<b>二</b></p>",
            "<p",
            "一</p",
            "<br/>",
            "<p class=x>",
            "<</p>",
        ] {
            assert!(!made_from_text_shape(other), "{other}");
        }
        let text = "第一段 a < b & c\n\n第二段\n第三行";
        assert!(made_from_text_shape(&text::text_to_html(text)));
    }

    /// Feed readers resolve a relative URL against the feed's host: a body's relative links
    /// and images are resolved against the article's canonical URL, or removed, with a
    /// warning, when it has none.
    #[test]
    fn relative_urls_in_a_body_resolve_against_the_canonical_url_or_are_removed() {
        let policy = text::HtmlPolicy::default();
        let body = |canonical_url: &str| {
            ArticleDraft {
                content_html: r#"<p><a href="/2023-06-06/b.html">前文</a><img src="a.jpg"></p>"#
                    .into(),
                content_text: String::new(),
                canonical_url: canonical_url.into(),
                ..draft()
            }
            .validate("article.", &policy)
            .unwrap()
        };
        let resolved = body("https://example.com/2023-06-07/daji.html");
        let html = &resolved.content.content_html;
        assert!(
            html.contains(r#"href="https://example.com/2023-06-06/b.html""#)
                && html.contains(r#"src="https://example.com/2023-06-07/a.jpg""#),
            "{html}"
        );
        assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
        let removed = body("");
        let html = &removed.content.content_html;
        assert!(!html.contains("href=") && !html.contains("src="), "{html}");
        assert!(html.contains("前文"), "{html}");
        assert!(
            removed
                .warnings
                .iter()
                .any(|w| w.starts_with("article.content_html: removed 2 relative URL(s)")),
            "{:?}",
            removed.warnings
        );
    }

    /// Each violation refusing `draft`, as `field: description`.
    fn refusals(
        draft: ArticleDraft,
        policy: &text::HtmlPolicy,
        limits: FieldLimits,
    ) -> Vec<String> {
        draft
            .validate_within("article.", policy, limits)
            .unwrap_err()
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect()
    }

    /// HTML that would make the parser's work explode is refused before it is parsed,
    /// and a body that sanitising grows past the limit is refused too.
    #[test]
    fn html_too_deep_or_growing_past_the_limit_is_refused_naming_content_html() {
        let policy = text::HtmlPolicy::default();
        let refused = |html: String, limits: FieldLimits| {
            let draft = ArticleDraft {
                content_html: html,
                content_text: String::new(),
                ..draft()
            };
            let found = refusals(draft, &policy, limits);
            assert_eq!(found.len(), 1, "{found:?}");
            found[0].clone()
        };
        let deep = refused("<blockquote>".repeat(50_000) + "x", FieldLimits::default());
        assert!(
            deep.starts_with("article.content_html: nests elements"),
            "{deep}"
        );
        let distinct: String = (0..100).map(|i| format!("<b id=a{i}>")).collect();
        let reopened = refused(
            format!("<div>{distinct}</div>") + &"<p>x</p>".repeat(4000),
            FieldLimits::default(),
        );
        assert!(reopened.contains("unclosed"), "{reopened}");
        // A control character in each tag hides it until it is removed.
        let hidden = refused(
            "<\u{1}blockquote>".repeat(5_000) + "x",
            FieldLimits::default(),
        );
        assert!(hidden.contains("deep"), "{hidden}");
        // Within the measure's budgets, but grown by sanitising past a small body limit:
        // one long link left open, reopened in each later paragraph.
        let link = format!("<a href=\"https://example.com/{}\">", "a".repeat(1_000));
        let html = format!("<div>{link}</div>") + &"<p>x</p>".repeat(50);
        let limits = FieldLimits {
            content_bytes: html.len() * 2,
            ..FieldLimits::default()
        };
        let grown = refused(html, limits);
        assert!(grown.contains("once sanitised"), "{grown}");
    }

    /// The configured number of authors and tags, each refused past its own limit.
    #[test]
    fn authors_and_tags_are_held_to_their_limits() {
        let policy = text::HtmlPolicy::default();
        let limits = FieldLimits {
            authors: 2,
            tags: 3,
            ..FieldLimits::default()
        };
        let names = |n: usize| (0..n).map(|i| format!("名{i}")).collect::<Vec<_>>();
        let within = ArticleDraft {
            authors: names(2),
            tags: names(3),
            ..draft()
        };
        assert!(within.validate_within("article.", &policy, limits).is_ok());
        for (authors, tags, field) in [(3, 3, "article.authors"), (2, 4, "article.tags")] {
            let draft = ArticleDraft {
                authors: names(authors),
                tags: names(tags),
                ..draft()
            };
            let found = refusals(draft, &policy, limits);
            assert_eq!(
                found,
                [format!(
                    "{field}: has {} entries; at most {} are allowed",
                    authors.max(tags),
                    if field.ends_with("authors") { 2 } else { 3 }
                )]
            );
        }
    }

    #[test]
    fn urls_with_a_user_name_or_password_are_refused_new_and_kept_stored() {
        for url in [
            "https://user:pass@example.com/a",
            "https://trusted.example@elsewhere.example/",
        ] {
            let refused = ArticleDraft {
                canonical_url: url.into(),
                media: vec![super::super::MediaDraft {
                    url: url.into(),
                    mime_type: "image/jpeg".into(),
                    ..Default::default()
                }],
                ..draft()
            }
            .validate("", &super::super::HtmlPolicy::default())
            .unwrap_err();
            let fields: Vec<_> = refused.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(
                fields,
                ["canonical_url", "media[0].url"],
                "{url}: {refused:?}"
            );
            assert_eq!(super::super::stored::url_fault(url), None, "{url}");
        }
    }

    /// A URL is measured as stored, percent-encoded: one that grows past 2048 bytes so is
    /// refused, so that every URL read back can be sent again; rows that versions before
    /// stored so (measured as sent) are still taken by import.
    #[test]
    fn urls_are_measured_as_stored() {
        let policy = super::super::HtmlPolicy::default();
        let with = |url: &str| ArticleDraft {
            canonical_url: url.into(),
            media: vec![super::super::MediaDraft {
                url: url.into(),
                mime_type: "image/jpeg".into(),
                ..Default::default()
            }],
            ..draft()
        };
        let base = "https://e.com/";
        // 1,000 × é: 2,014 bytes sent, 6,014 stored.
        let grows = format!("{base}{}", "é".repeat(1000));
        let refused = with(&grows).validate("", &policy).unwrap_err();
        let fields: Vec<_> = refused.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["canonical_url", "media[0].url"], "{refused:?}");
        assert!(refused.to_string().contains("percent-encoded"), "{refused}");
        let stored = check_stored_url(&grows).unwrap().unwrap();
        assert_eq!(stored.len(), 6014);
        assert_eq!(super::super::stored::url_fault(&stored), None);
        // At the limit as stored: taken, and taken again as read back.
        let fits = format!("{base}{}", "%C3%A9".repeat(339));
        assert_eq!(fits.len(), 2048);
        let valid = with(&fits).validate("", &policy).unwrap();
        let read_back = valid.content.canonical_url.clone().unwrap();
        assert_eq!(read_back, fits);
        assert!(with(&read_back).validate("", &policy).is_ok());
        // Shorter as stored than as sent (a default port, an upper-case scheme): measured
        // as stored.
        let shrinks = format!("HTTPS://E.COM:443/{}", "a".repeat(2034));
        assert!(shrinks.len() > 2048);
        assert!(with(&shrinks).validate("", &policy).is_ok());
    }

    #[test]
    fn text_fields_are_kept_in_nfc_and_markup_is_not_composed() {
        let valid = ArticleDraft {
            title: "Cafe\u{301}".into(),
            content_text: "x\n\ny ne\u{301}e".into(),
            content_html: "<p>\u{338}x</p><p>y n\u{e9}e</p>".into(),
            ..draft()
        }
        .validate("", &super::super::HtmlPolicy::default())
        .unwrap();
        assert_eq!(valid.content.title, "Café");
        assert_eq!(valid.content.content_text.as_deref(), Some("x\n\ny née"));
        // `>` and U+0338 composed would be `≯`, and the paragraph lost with its tag.
        assert!(
            valid.content.content_html.contains('x'),
            "{}",
            valid.content.content_html
        );
    }

    #[test]
    fn two_bodies_that_differ_in_their_words_are_accepted_with_a_warning() {
        let both = |text: &str, html: &str| {
            ArticleDraft {
                content_text: text.into(),
                content_html: html.into(),
                ..draft()
            }
            .validate("article.", &super::super::HtmlPolicy::default())
            .unwrap()
            .warnings
        };
        let differ = both("更正后的内容。", "<p>内容。</p>");
        assert_eq!(differ.len(), 1, "{differ:?}");
        assert!(
            differ[0].starts_with("article.content_text: its words differ from those of"),
            "{differ:?}"
        );
        // The same words, however laid out, punctuated or composed, are one body.
        for (text, html) in [
            ("第一段。\n\n第二段。", "<p>第一段。</p>\n<p>第二段。</p>"),
            ("Two  words", "<div>Two <b>words</b>!</div>"),
            ("A & B", "<p>A &amp; B</p>"),
            ("café", "<p>cafe\u{301}</p>"),
            ("", "<p>内容。</p>"),
        ] {
            assert!(both(text, html).is_empty(), "{text:?}");
        }
    }

    /// An article moved to a later publish time without an update time is dated by that
    /// edit, never before it is published: the stored update time is taken only for the
    /// same content.
    #[test]
    fn a_rescheduled_article_is_not_dated_before_its_publish_time() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, _) = created(t0);
        let scheduled = ArticleContent {
            update_time: Some(valid.content.publish_time),
            ..valid.content.clone()
        };
        let Revision::Created(first) = Article::revise(
            None,
            PartnerId(1),
            valid.id.clone(),
            scheduled.clone(),
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        ) else {
            panic!("a new article")
        };
        let later = valid.content.publish_time + chrono::Duration::days(30);
        let moved = ArticleContent {
            publish_time: later,
            update_time: None,
            ..scheduled
        };
        let Revision::Updated { article, .. } = revised(&first, moved, t0) else {
            panic!("a new version")
        };
        assert_eq!(article.updated, later);
        assert_eq!(article.content.update_time, None);

        // Scheduled two hours ahead, then brought forward before any feed showed it, read
        // back with the update time it was stored with (its old publish time): dated by
        // its new publish time, and a later correction by its edit.
        let ahead = t0 + chrono::Duration::hours(2);
        let Revision::Created(scheduled) = Article::revise(
            None,
            PartnerId(1),
            ArticleId::parse("a-2").unwrap(),
            ArticleContent {
                publish_time: ahead,
                update_time: None,
                ..valid.content.clone()
            },
            t0,
            |_| "tag:x,2023-06-06:p/a-2".into(),
        ) else {
            panic!("a new article")
        };
        assert_eq!(scheduled.updated, ahead);
        let sooner = t0 + chrono::Duration::minutes(10);
        let brought = ArticleContent {
            publish_time: sooner,
            update_time: Some(ahead),
            ..scheduled.content.clone()
        };
        let Revision::Updated { article, .. } = revised(&scheduled, brought, t0) else {
            panic!("a new version")
        };
        assert_eq!(article.updated, sooner);
        let edit_time = sooner + chrono::Duration::minutes(5);
        let corrected = ArticleContent {
            title: "更正".into(),
            update_time: Some(article.updated),
            ..article.content.clone()
        };
        let Revision::Updated { article, .. } = revised(&article, corrected, edit_time) else {
            panic!("a new version")
        };
        assert_eq!(article.updated, edit_time);
    }

    /// An article readers saw, expired, then moved while out of view (which keeps no shown
    /// change time), is still one readers saw: its next version is not dated before the
    /// last one, whatever update time is sent.
    #[test]
    fn an_article_moved_while_expired_is_still_dated_after_what_readers_saw() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let hour = chrono::Duration::hours(1);
        let (valid, _) = created(t0);
        let Revision::Created(first) = Article::revise(
            None,
            PartnerId(1),
            valid.id.clone(),
            ArticleContent {
                expire_time: Some(t0 + hour),
                ..valid.content.clone()
            },
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        ) else {
            panic!("a new article")
        };
        let moved = ArticleContent {
            section: SectionSlug::parse("rural").unwrap(),
            ..first.content.clone()
        };
        let Revision::Updated { article: moved, .. } = revised(&first, moved, t0 + hour * 2) else {
            panic!("a new version")
        };
        let again = ArticleContent {
            expire_time: Some(t0 + hour * 48),
            update_time: Some(valid.content.publish_time + hour),
            ..moved.content.clone()
        };
        let edit = t0 + hour * 3;
        let Revision::Updated { article, .. } = revised(&moved, again, edit) else {
            panic!("a new version")
        };
        assert!(
            article.updated >= moved.updated,
            "{} < {}",
            article.updated,
            moved.updated
        );
        assert_eq!(article.updated, edit);
    }

    /// A client that reads an article sent as text gets the HTML (and the summary) made
    /// from it; sent back with only the text edited, both are made again from the edit.
    #[test]
    fn a_text_edited_beside_the_html_made_from_the_stored_text_is_the_edit() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, first) = created(t0);
        assert!(valid.content.content_text.is_some());
        let read_back = |text: &str| {
            ArticleDraft {
                content_text: text.into(),
                content_html: first.content.content_html.clone(),
                summary: first.content.summary.clone(),
                ..draft()
            }
            .validate("", &super::super::HtmlPolicy::default())
            .unwrap()
            .content
        };
        let Revision::Updated { article, .. } = revised(&first, read_back("更正后的正文。"), t0)
        else {
            panic!("a new version")
        };
        assert_eq!(article.content.content_html, "<p>更正后的正文。</p>");
        assert_eq!(article.content.summary, "更正后的正文。");
        // Sent without the HTML (as `feedpub get --json` prints it), beside the summary
        // made from the stored text: that summary is made again too.
        let without_html = ArticleContent {
            content_html: text::text_to_html("更正后的正文。"),
            ..read_back("更正后的正文。")
        };
        let Revision::Updated { article, .. } = revised(&first, without_html, t0) else {
            panic!("a new version")
        };
        assert_eq!(article.content.summary, "更正后的正文。");
        assert_eq!(article.etag, article.content.etag());
        // The HTML of a partner's own is kept.
        let Revision::Updated { article, .. } = revised(
            &first,
            ArticleContent {
                content_html: "<p><b>另一个</b>正文。</p>".into(),
                ..read_back("更正后的正文。")
            },
            t0,
        ) else {
            panic!("a new version")
        };
        assert_eq!(article.content.content_html, "<p><b>另一个</b>正文。</p>");

        // A summary of the partner's own is kept.
        let own = ArticleContent {
            summary: "编辑写的摘要。".into(),
            ..first.content.clone()
        };
        let with_own = Article {
            etag: own.etag(),
            content: own.clone(),
            ..first.clone()
        };
        let Revision::Updated { article, .. } = revised(
            &with_own,
            ArticleContent {
                summary: own.summary.clone(),
                ..read_back("更正后的正文。")
            },
            t0,
        ) else {
            panic!("a new version")
        };
        assert_eq!(article.content.summary, "编辑写的摘要。");
        assert_eq!(article.content.content_html, "<p>更正后的正文。</p>");
    }

    /// An article sent as HTML only, read back with the summary made from it and sent
    /// again with its HTML edited, is summarised from the edit; a summary of the partner's
    /// own, or one edited beside the HTML, is kept.
    #[test]
    fn an_html_edited_beside_the_summary_made_from_the_stored_html_is_summarised_again() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let sent = |html: &str, summary: &str| sent_as_html(html, summary).content;
        let first = Article::revise(
            None,
            PartnerId(1),
            ArticleId::parse("a-1").unwrap(),
            sent("<p>事故造成<b>10</b>人受伤。</p>", ""),
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        );
        let Revision::Created(first) = first else {
            panic!("a new article")
        };
        assert_eq!(first.content.summary, "事故造成10人受伤。");
        let edited = "<p>事故造成<del>10</del><ins>12</ins>人受伤。</p>";
        let Revision::Updated { article, .. } =
            revised(&first, sent(edited, &first.content.summary), t0)
        else {
            panic!("a new version")
        };
        assert_eq!(article.content.summary, "事故造成12人受伤。");
        assert_eq!(article.etag, article.content.etag());
        // Sent again as stored, it is the same article.
        let again = revised(&article, article.content.clone(), t0);
        assert!(matches!(again, Revision::Unchanged(_)), "{again:?}");
        // A summary edited beside the HTML, or the partner's own sent again, is kept.
        let own = ArticleContent {
            summary: "编辑写的摘要。".into(),
            ..first.content.clone()
        };
        let with_own = Article {
            etag: own.etag(),
            content: own,
            ..first.clone()
        };
        for base in [&first, &with_own] {
            let Revision::Updated { article, .. } =
                revised(base, sent(edited, "编辑写的摘要。"), t0)
            else {
                panic!("a new version")
            };
            assert_eq!(article.content.summary, "编辑写的摘要。");
        }
    }

    /// A body whose text reads like an entity ("a &lt; b", written `a &amp;lt; b` in HTML)
    /// makes a summary that reads so too: sent back as read, that summary is the one the
    /// body makes, not an escape to decode, and the article is unchanged. A summary of the
    /// partner's own still has its entities decoded.
    #[test]
    fn a_summary_made_from_a_body_that_reads_like_an_entity_is_sent_back_unchanged() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let sent = sent_as_html;
        for (html, reads) in [
            ("<p>a &amp;lt; b</p>", "a &lt; b"),
            ("<p>Tom &amp;amp; Jerry</p>", "Tom &amp; Jerry"),
            ("<p>x &amp;#65; y</p>", "x &#65; y"),
        ] {
            let first = Article::revise(
                None,
                PartnerId(1),
                ArticleId::parse("a-1").unwrap(),
                sent(html, "").content,
                t0,
                |_| "tag:x,2023-06-06:p/a-1".into(),
            );
            let Revision::Created(first) = first else {
                panic!("a new article")
            };
            assert_eq!(first.content.summary, reads);
            let again = sent(&first.content.content_html, &first.content.summary);
            assert!(
                !again.warnings.iter().any(|w| w.contains("entities")),
                "{:?}",
                again.warnings
            );
            let again = revised(&first, again.content, t0);
            assert!(matches!(again, Revision::Unchanged(_)), "{html}: {again:?}");
        }
        let own = sent("<p>a &amp;lt; b</p>", "a &lt; c");
        assert_eq!(own.content.summary, "a < c");
    }

    /// That summary sent back beside an edited body is the stored one though decoded: it
    /// is made again from the edit. A summary of the partner's own is kept, entities
    /// decoded, whether or not it reads like the stored one once decoded.
    #[test]
    fn a_summary_that_reads_like_an_entity_sent_back_beside_an_edit_is_made_again() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let Revision::Created(first) = Article::revise(
            None,
            PartnerId(1),
            ArticleId::parse("a-1").unwrap(),
            sent_as_html("<p>a &amp;lt; b</p>", "").content,
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        ) else {
            panic!("a new article")
        };
        assert_eq!(first.content.summary, "a &lt; b");
        let edit = |summary: &str| {
            let revision = revised(&first, sent_as_html("<p>a &amp;lt; c</p>", summary), t0);
            let Revision::Updated { article, .. } = revision else {
                panic!("an edit: {revision:?}")
            };
            article.content.summary
        };
        assert_eq!(edit(&first.content.summary), "a &lt; c");
        // As a form's text area sends it back, with a line end.
        assert_eq!(edit(&format!("{}\n", first.content.summary)), "a &lt; c");
        // Longer than any stored summary, it is not kept to be compared.
        let long = sent_as_html("<p>a &amp;lt; c</p>", &"&amp;".repeat(1_200));
        assert_eq!(long.content.summary, "&".repeat(1_200));
        assert_eq!(long.summary_as_sent, None);
        assert_eq!(edit("a < b"), "a < b");
        assert_eq!(edit("a &#60; b"), "a < b");
    }

    /// HTML made from text before feedpub wrote a no-break space as `&nbsp;` held the
    /// character itself: read back (sanitised, it says `&nbsp;`) with the update time it
    /// was read with, it is the same article; with its text edited, the edit.
    #[test]
    fn an_article_stored_with_a_raw_no_break_space_reads_back_as_itself() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (_, first) = created(t0);
        let legacy = ArticleContent {
            content_text: Some("甲\u{a0}乙".into()),
            content_html: "<p>甲\u{a0}乙</p>".into(),
            summary: derived_summary("甲\u{a0}乙"),
            ..first.content.clone()
        };
        let stored = Article {
            etag: legacy.etag(),
            content: legacy.clone(),
            ..first
        };
        let read = |text: &str| ArticleContent {
            content_text: Some(text.into()),
            content_html: "<p>甲&nbsp;乙</p>".into(),
            update_time: Some(stored.updated),
            ..legacy.clone()
        };
        assert_eq!(
            revised(&stored, read("甲\u{a0}乙"), t0),
            Revision::Unchanged(stored.clone())
        );
        let Revision::Updated { article, .. } = revised(&stored, read("甲\u{a0}丙"), t0) else {
            panic!("a new version")
        };
        assert_eq!(article.content.content_html, "<p>甲&nbsp;丙</p>");
        assert_eq!(article.content.summary, derived_summary("甲\u{a0}丙"));
    }

    #[test]
    fn a_text_body_cleaned_to_nothing_is_named_as_the_field_at_fault() {
        for text in ["\u{1}\u{2}", "\u{fffe}", "  \n "] {
            let refused = ArticleDraft {
                content_text: text.into(),
                content_html: String::new(),
                ..draft()
            }
            .validate("", &super::super::HtmlPolicy::default())
            .unwrap_err();
            let fields: Vec<_> = refused.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, ["content_text"], "{text:?}: {refused:?}");
        }
    }

    #[test]
    fn a_text_only_draft_gets_html_paragraphs_and_a_summary() {
        let valid = draft()
            .validate("article.", &text::HtmlPolicy::default())
            .unwrap();
        assert_eq!(
            valid.content.content_html,
            "<p>第一段。</p>\n<p>第二段。</p>"
        );
        assert_eq!(valid.content.summary, "第一段。第二段。");
        assert!(valid.warnings.is_empty());
    }

    #[test]
    fn every_bad_field_is_reported_by_name() {
        let bad = ArticleDraft {
            id: "a b".into(),
            section: "".into(),
            title: " ".into(),
            authors: vec!["".into()],
            content_text: String::new(),
            canonical_url: "ftp://x".into(),
            publish_time: None,
            ..Default::default()
        };
        let violations = bad
            .validate("article.", &text::HtmlPolicy::default())
            .unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "article.id",
                "article.section",
                "article.title",
                "article.authors[0]",
                "article.content_html",
                "article.canonical_url",
                "article.publish_time"
            ]
        );
    }

    #[test]
    fn html_left_by_removed_references_is_sanitised_again() {
        let policy = text::HtmlPolicy::default();
        // Only a byte order mark is left once the reference to U+0001 is removed.
        let empty = ArticleDraft {
            content_html: "&#x1;\u{feff}".into(),
            content_text: String::new(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap_err();
        let fields: Vec<_> = empty.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["article.content_html"]);
        let kept = ArticleDraft {
            content_html: "&#x1;\u{feff}<p>正文</p>".into(),
            content_text: String::new(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap();
        let html = kept.content.content_html;
        assert_eq!(policy.sanitize(&html).unwrap(), html);
    }

    /// A summary, subtitle or kicker of invisible characters alone (zero-width spaces, a
    /// byte order mark, a Braille blank) shows nothing: the summary is made from the body,
    /// the others are left out, each with a warning; a visible one beside them is kept.
    #[test]
    fn optional_fields_that_show_nothing_are_left_out_or_made_from_the_body() {
        let policy = text::HtmlPolicy::default();
        let made = ArticleDraft {
            summary: String::new(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap()
        .content
        .summary;
        let invisible = ArticleDraft {
            summary: "\u{200b}\u{200b}".into(),
            subtitle: "\u{feff}".into(),
            kicker: " \u{2800}\u{200d} ".into(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap();
        assert_eq!(invisible.content.summary, made);
        assert!(!made.is_empty());
        assert_eq!(invisible.content.subtitle, "");
        assert_eq!(invisible.content.kicker, "");
        let nothing = "has nothing a reader can see (only invisible characters)";
        assert_eq!(
            invisible.warnings,
            [
                format!("article.subtitle: {nothing}, so it is left out"),
                format!("article.kicker: {nothing}, so it is left out"),
                format!("article.summary: {nothing}, so it is made from the body"),
            ]
        );
        let visible = ArticleDraft {
            summary: "摘要\u{200b}".into(),
            subtitle: "副题".into(),
            kicker: "\u{200b}引题".into(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap();
        assert_eq!(visible.content.summary, "摘要\u{200b}");
        assert_eq!(visible.content.subtitle, "副题");
        assert_eq!(visible.content.kicker, "\u{200b}引题");
        assert!(visible.warnings.is_empty(), "{:?}", visible.warnings);
    }

    /// A language tag is stored in the case BCP 47 recommends, so that `zh-cn` is the
    /// site's `zh-CN` (no `xml:lang` of its own in Atom), with a warning when it was not.
    #[test]
    fn a_language_tag_is_stored_in_its_recommended_case() {
        let policy = text::HtmlPolicy::default();
        let lower = ArticleDraft {
            language: "zh-cn".into(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap();
        assert_eq!(lower.content.language.as_deref(), Some("zh-CN"));
        assert_eq!(
            lower.warnings,
            [
                "article.language: written \"zh-CN\", in the case BCP 47 recommends (tags are \
              case-insensitive)"
            ]
        );
        let canonical = ArticleDraft {
            language: "zh-Hant-TW".into(),
            ..draft()
        }
        .validate("article.", &policy)
        .unwrap();
        assert_eq!(canonical.content.language.as_deref(), Some("zh-Hant-TW"));
        assert!(canonical.warnings.is_empty(), "{:?}", canonical.warnings);
    }

    #[test]
    fn folding_line_breaks_and_composing_characters_are_reported() {
        let valid = ArticleDraft {
            title: "\na\u{2028}b\r\nc\td\r\n".into(),
            kicker: "Cafe\u{301}".into(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(valid.content.title, "a b c d");
        assert_eq!(valid.content.kicker, "Café");
        assert_eq!(
            valid.warnings,
            [
                "article.title: folded 2 line break(s) into spaces (the field is one line)",
                "article.kicker: put in Unicode NFC (letters and their combining marks \
                 composed, as one character where Unicode has one)",
            ]
        );
    }

    #[test]
    fn plain_text_sent_again_as_stored_is_stored_as_it_is() {
        let deep = format!("A &{}lt; B", "amp;".repeat(6));
        for (sent, stored) in [
            ("AT&amp;T", "AT&T"),
            ("A &amp;amp; B", "A & B"),
            (
                "Tutorial: write &amp;lt; in HTML",
                "Tutorial: write < in HTML",
            ),
            (&deep, &deep),
            ("R&D &copy; 2023", "R&D © 2023"),
            // A character cleaning removes joins an entity, decoded too.
            ("x&am\u{1}p;lt;y", "x<y"),
            ("&am\u{7f}p;#x202E;abc", "\u{202e}abc\u{202c}"),
        ] {
            let title = |title: &str| {
                ArticleDraft {
                    title: title.into(),
                    ..draft()
                }
                .validate("article.", &text::HtmlPolicy::default())
                .unwrap()
            };
            let first = title(sent);
            assert_eq!(first.content.title, stored, "{sent:?}");
            let again = title(&first.content.title);
            assert_eq!(again.content, first.content, "{sent:?}");
            assert!(again.warnings.is_empty(), "{sent:?}: {:?}", again.warnings);
        }
    }

    /// Names and entities peeled a layer at a time by what cleaning removes: stored as
    /// they read back (decoded when they settle, else kept as sent).
    #[test]
    fn names_and_layered_entities_are_stored_as_they_read_back() {
        let with = |author: &str, title: &str| {
            ArticleDraft {
                authors: vec![author.into()],
                title: title.into(),
                ..draft()
            }
            .validate("article.", &text::HtmlPolicy::default())
        };
        let first = with("AT&am\u{200b}p;T", "标题").unwrap();
        assert_eq!(first.content.authors, ["AT&T"]);
        let again = with("AT&T", "标题").unwrap();
        assert_eq!(again.content, first.content);
        let layered = "&a&a&a&a&a&amp;#127;mp;#127;mp;#127;mp;#127;mp;#127;mp;";
        let stored = with("陈淑兰", layered).unwrap();
        let again = with("陈淑兰", &stored.content.title).unwrap();
        assert_eq!(again.content, stored.content);
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    }

    #[test]
    fn entities_in_plain_text_are_decoded_once_and_reported() {
        let valid = ArticleDraft {
            title: "AT&amp;T &lt;b&gt; ]]> & <i>".into(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(valid.content.title, "AT&T <b> ]]> & <i>");
        assert!(valid.warnings[0].starts_with("article.title: decoded HTML entities"));
        let plain = ArticleDraft {
            title: "R&D ]]> & <i>".into(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(plain.content.title, "R&D ]]> & <i>");
        assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
    }

    #[test]
    fn control_characters_are_removed_with_a_warning() {
        let valid = ArticleDraft {
            title: "标\u{7}题".into(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(valid.content.title, "标题");
        assert_eq!(valid.warnings.len(), 1);
        assert!(valid.warnings[0].starts_with("article.title:"));
    }

    #[test]
    fn an_embargo_must_end_before_expiry_but_may_precede_publication() {
        let publish = draft().publish_time.unwrap();
        let hour = chrono::Duration::hours(1);
        let refused = ArticleDraft {
            expire_time: Some(publish + hour),
            embargo_time: Some(publish + hour),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap_err();
        let fields: Vec<_> = refused.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["article.embargo_time"]);
        let out_of_range = ArticleDraft {
            embargo_time: Some(Utc.with_ymd_and_hms(2201, 1, 1, 0, 0, 0).unwrap()),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap_err();
        assert_eq!(
            out_of_range.iter().next().unwrap().field,
            "article.embargo_time"
        );

        let early = ArticleDraft {
            embargo_time: Some(publish - hour),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(early.content.embargo_time, None, "not kept");
        assert_eq!(
            early.warnings,
            [
                "article.embargo_time: is not after publish_time, so it has no effect (it is not kept)"
            ]
        );
        // Merely scheduled before its publish_time, never embargoed: it needs no embargo
        // right, and its coming into view is a publish, not an embargo's end.
        assert!(!early.content.is_embargoed(publish));
        assert!(!early.content.is_embargoed(publish - hour - hour));
        let at_publish = ArticleDraft {
            embargo_time: Some(publish),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(at_publish.content.embargo_time, None);
    }

    #[test]
    fn content_without_embargo_or_media_keeps_the_etag_it_had_before_they_existed() {
        let content = draft()
            .validate("", &text::HtmlPolicy::default())
            .unwrap()
            .content;
        let canonical = serde_json::to_string(&content).unwrap();
        assert!(!canonical.contains("embargo_time") && !canonical.contains("media"));
        // What is stored and what partners hold: the first 12 bytes of the SHA-256 of that
        // JSON, however it is computed.
        assert_eq!(
            content.etag(),
            hex::encode(&Sha256::digest(canonical.as_bytes())[..12])
        );
        let mut with_media = content.clone();
        with_media.media.push(Media {
            url: "https://img.example.com/a.jpg".into(),
            mime_type: "image/jpeg".into(),
            length: 1,
            caption: String::new(),
            width: None,
            height: None,
        });
        assert_ne!(with_media.etag(), content.etag());
        let embargoed = ArticleContent {
            embargo_time: Some(content.publish_time),
            ..content.clone()
        };
        assert_ne!(embargoed.etag(), content.etag());
    }

    /// The valid draft, and the article its first publish at `t0` creates.
    fn created(t0: DateTime<Utc>) -> (ValidDraft, Article) {
        let valid = draft().validate("", &text::HtmlPolicy::default()).unwrap();
        let revision = Article::revise(
            None,
            PartnerId(1),
            valid.id.clone(),
            valid.content.clone(),
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        );
        let Revision::Created(article) = revision else {
            panic!("expected a new article")
        };
        (valid, article)
    }

    /// A draft with `html` as its only body and `summary`, validated.
    fn sent_as_html(html: &str, summary: &str) -> ValidDraft {
        ArticleDraft {
            content_text: String::new(),
            content_html: html.into(),
            summary: summary.into(),
            ..draft()
        }
        .validate("", &super::super::HtmlPolicy::default())
        .unwrap()
    }

    /// `content` published over `old` at `now`.
    fn revised(old: &Article, content: impl Into<SentContent>, now: DateTime<Utc>) -> Revision {
        Article::revise_sent(
            Some(old.clone()),
            old.partner,
            old.id.clone(),
            content.into(),
            now,
            |_| unreachable!("an existing article keeps its guid"),
        )
    }

    #[test]
    fn republishing_identical_content_is_unchanged_and_an_edit_keeps_the_guid() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, first) = created(t0);
        assert_eq!(first.updated, valid.content.publish_time);

        let again = Article::revise(
            Some(first.clone()),
            PartnerId(1),
            valid.id.clone(),
            valid.content.clone(),
            t0,
            |_| unreachable!("an existing article keeps its guid"),
        );
        assert_eq!(again, Revision::Unchanged(first.clone()));
        // Also with the update time it is read with (feedpub's, the publish time here).
        let read_back = ArticleContent {
            update_time: Some(first.updated),
            ..valid.content.clone()
        };
        let again = Article::revise(
            Some(first.clone()),
            PartnerId(1),
            valid.id.clone(),
            read_back,
            t0,
            |_| unreachable!("an existing article keeps its guid"),
        );
        assert_eq!(again, Revision::Unchanged(first.clone()));
        // Also when feedpub moved the update time on from an earlier one the partner gave
        // (a correction is never dated before the version it replaces).
        let t2 = t0 + chrono::Duration::hours(2);
        let t3 = t2 + chrono::Duration::hours(1);
        let corrected = ArticleContent {
            title: "更正".into(),
            ..valid.content.clone()
        };
        let Revision::Updated {
            article: second, ..
        } = revised(&first, corrected.clone(), t2)
        else {
            panic!("a new version")
        };
        let backdated = ArticleContent {
            title: "再更正".into(),
            update_time: Some(t0),
            ..corrected
        };
        let Revision::Updated { article: third, .. } = revised(&second, backdated.clone(), t3)
        else {
            panic!("a new version")
        };
        assert_eq!(third.updated, t3, "dated by the edit, not back");
        let read_back = ArticleContent {
            update_time: Some(third.updated),
            ..backdated
        };
        let again = revised(&third, read_back.clone(), t3);
        assert_eq!(again, Revision::Unchanged(third.clone()));
        // Sent without an update time, or with the publish time it defaults to: unchanged.
        for update_time in [None, Some(read_back.publish_time), Some(t0)] {
            let sent = ArticleContent {
                update_time,
                ..read_back.clone()
            };
            assert_eq!(
                revised(&third, sent, t3 + chrono::Duration::hours(1)),
                Revision::Unchanged(third.clone()),
                "{update_time:?}"
            );
        }

        let mut edited = valid.content.clone();
        edited.title = "新标题".into();
        let t1 = t0 + chrono::Duration::hours(1);
        let revision = Article::revise(
            Some(first.clone()),
            PartnerId(1),
            valid.id,
            edited,
            t1,
            |_| unreachable!("an existing article keeps its guid"),
        );
        assert!(revision.is_new_version());
        let Revision::Updated { article, .. } = revision else {
            panic!("expected an update")
        };
        assert_eq!(article.guid, first.guid);
        assert_eq!(article.updated, t1);
        assert_ne!(article.etag, first.etag);
        assert_eq!((first.version, article.version), (1, 2));
    }

    /// Text made only of invisible characters (zero-width spaces, fillers, blanks) is no
    /// title, name or body.
    #[test]
    fn invisible_text_is_no_title_name_tag_or_body() {
        let policy = text::HtmlPolicy::default();
        let fields = |draft: ArticleDraft| -> Vec<String> {
            match draft.validate("article.", &policy) {
                Ok(_) => Vec::new(),
                Err(violations) => violations.iter().map(|v| v.field.clone()).collect(),
            }
        };
        for title in [
            "\u{200b}\u{feff}\u{2060}",
            "\u{3164}",
            "\u{2800}",
            "\u{115f}\u{1160}\u{ffa0}",
            "\u{180e}\u{fe0f}\u{3000}",
            // Format controls that are not default-ignorable, but show nothing either.
            "\u{fff9}\u{fffa}\u{fffb}",
            "\u{13430}\u{1343f}",
        ] {
            let draft = ArticleDraft {
                title: title.into(),
                ..draft()
            };
            assert_eq!(fields(draft), ["article.title"], "{title:?}");
        }
        let names = ArticleDraft {
            authors: vec!["\u{200b}".into()],
            tags: vec!["乡村振兴".into(), "\u{2800}".into()],
            ..draft()
        };
        assert_eq!(fields(names), ["article.authors[0]", "article.tags[1]"]);
        for (html, text, field) in [
            ("<p> </p>", "", "article.content_html"),
            ("<p>\u{200b}</p><p>&nbsp;</p>", "", "article.content_html"),
            ("", "\u{200b}\u{3164}", "article.content_text"),
            // Each body sent must show something: the feeds carry the HTML one.
            ("<p> </p>", "正文。", "article.content_html"),
            ("<p>正文</p>", "\u{200b}", "article.content_text"),
        ] {
            let body = ArticleDraft {
                content_html: html.into(),
                content_text: text.into(),
                ..draft()
            };
            assert_eq!(fields(body), [field], "{html:?} {text:?}");
        }
        // HTML sanitising leaves nothing of, beside text: the message says so.
        let scripted = ArticleDraft {
            content_html: "<script>x</script>".into(),
            content_text: "正文。".into(),
            ..draft()
        };
        let refused = scripted.validate("article.", &policy).unwrap_err();
        let messages: Vec<String> = refused
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("nothing left once sanitised"),
            "{messages:?}"
        );
        // Visible text, or an image alone, is a body; a title with a zero-width character
        // among visible ones is a title.
        for (html, title) in [
            (
                r#"<p><img src="https://example.com/a.jpg"></p>"#,
                "标\u{200b}题",
            ),
            ("<p>正文</p>", "T"),
        ] {
            let draft = ArticleDraft {
                content_html: html.into(),
                content_text: String::new(),
                title: title.into(),
                ..draft()
            };
            assert_eq!(fields(draft), Vec::<String>::new(), "{html}");
        }
        // An image whose relative URL was removed for want of a canonical_url: the refusal
        // says so.
        let removed = ArticleDraft {
            content_html: r#"<p><img src="img/a.png"></p>"#.into(),
            content_text: String::new(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .err()
        .unwrap();
        let refusal: Vec<_> = removed.iter().collect();
        assert_eq!(refusal.len(), 1, "{refusal:?}");
        assert!(
            refusal[0].description.contains("canonical_url"),
            "{refusal:?}"
        );
        // A summary derived from paragraphs folded into one line keeps its direction
        // controls balanced.
        let derived = ArticleDraft {
            content_html: String::new(),
            content_text: "用户\u{202e}gnp.exe 文件\n\n第二段".into(),
            summary: String::new(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        // Closed where its paragraph ends, as in the body: the next paragraph, run on
        // into the same line, is not reversed.
        assert_eq!(
            derived.content.summary,
            "用户\u{202e}gnp.exe 文件\u{202c}第二段"
        );
        // Closed before the break, it keeps no space from coming between Chinese
        // punctuation and what follows it.
        assert_eq!(
            derived_summary("\u{202b}他说“好。”\n“Hello”"),
            "\u{202b}他说“好。”\u{202c}“Hello”"
        );
        // So does a summary sent, with a warning.
        let sent = ArticleDraft {
            summary: "用户\u{202e}gnp.exe 文件".into(),
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(sent.content.summary, "用户\u{202e}gnp.exe 文件\u{202c}");
        assert_eq!(
            sent.warnings,
            [
                "article.summary: balanced its bidirectional controls (1 closed or removed), so \
              that they end with the field"
            ]
        );
    }

    /// A Chinese name padded with full-width spaces to the width of three characters, as
    /// bylines are printed, is the name itself, with a warning; other spaces stay.
    #[test]
    fn a_name_padded_with_full_width_spaces_is_the_name() {
        let valid = ArticleDraft {
            authors: vec![
                "王　芳".into(),
                "王芳".into(),
                "王　John".into(),
                "记者 全角　空格".into(),
            ],
            tags: vec!["少先队　　工作".into()],
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        // Only a name of nothing but wide characters is padded; a tag is not a name.
        assert_eq!(valid.content.authors, ["王芳", "王 John", "记者 全角 空格"]);
        assert_eq!(valid.content.tags, ["少先队 工作"]);
        assert_eq!(
            valid.warnings,
            [
                "article.authors[0]: removed the full-width spaces that pad it (\"王\\u{3000}芳\" \
                 is \"王芳\")",
                "article.authors[1]: \"王芳\" is listed twice; kept once",
            ]
        );
        assert_eq!(text::without_padding("王芳"), None);
        assert_eq!(text::without_padding("　王芳　"), None);
    }

    /// One name has one feed: precomposed and decomposed accents, and zero-width
    /// characters typed into a name, make the same name.
    #[test]
    fn names_are_normalised_before_they_are_stored_and_slugged() {
        let valid = ArticleDraft {
            authors: vec![
                "Jose\u{301}".into(),
                "José".into(),
                "刘\u{200b}磊\t\u{feff}".into(),
            ],
            tags: vec!["Ame\u{301}lie \u{2060} Poulain".into()],
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(valid.content.authors, ["José", "刘磊"]);
        assert_eq!(valid.content.tags, ["Amélie Poulain"]);
        assert_eq!(
            FeedScope::author("José"),
            FeedScope::author(&valid.content.authors[0])
        );
        // Joiners that shape a name (Persian, Indic scripts, emoji) stay.
        let kept = ArticleDraft {
            authors: vec!["می\u{200c}خواهم".into()],
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(kept.content.authors, ["می\u{200c}خواهم"]);
        // Invisible characters make no second name with a title that looks the same:
        // variation selectors, invisible operators, soft hyphens, and joiners beside a
        // Chinese character or at an end; a joiner between emoji stays.
        let invisible = ArticleDraft {
            authors: vec![
                "刘磊".into(),
                "刘磊\u{200c}\u{fe07}\u{fe07}\u{fe02}\u{200d}\u{fe09}\u{200d}".into(),
                "刘\u{2062}磊".into(),
                "\u{200d}刘磊\u{e0041}".into(),
                "An\u{ad}na".into(),
                "👩\u{200d}💻 陈".into(),
                "1\u{fe0f}\u{20e3} 🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}".into(),
            ],
            ..draft()
        }
        .validate("article.", &text::HtmlPolicy::default())
        .unwrap();
        assert_eq!(
            invisible.content.authors,
            [
                "刘磊",
                "Anna",
                "👩\u{200d}💻 陈",
                "1\u{fe0f}\u{20e3} 🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}"
            ]
        );
        // A bidirectional control around the whole name is not part of it; one around a
        // part of it is.
        let names = |authors: &[&str]| {
            ArticleDraft {
                authors: authors.iter().map(|a| (*a).to_owned()).collect(),
                ..draft()
            }
            .validate("article.", &text::HtmlPolicy::default())
            .unwrap()
            .content
            .authors
        };
        assert_eq!(
            names(&[
                "محمد",
                "\u{202b}محمد",
                "\u{202b}محمد\u{202c}",
                " \u{2067}\u{202b}محمد\u{202c}\u{2069} ",
                "\u{200b}\u{2067}محمد",
                // An opener after the name, closed at the end of the line: it encloses
                // nothing.
                "محمد\u{202e}",
                "محمد \u{2066}",
            ]),
            ["محمد"]
        );
        assert_eq!(names(&["王芳", "王芳\u{202a}"]), ["王芳"]);
        assert_eq!(names(&["\u{202e}Bob"]), ["Bob"]);
        for kept in [
            "\u{202b}محمد\u{202c} و \u{202b}علي\u{202c}",
            "Ali \u{2067}محمد\u{2069}",
            "\u{2067}محمد\u{2069} Ali",
        ] {
            assert_eq!(names(&[kept]), [kept]);
        }
    }

    /// A partner's update_time may be neither before publish_time nor in the future (past
    /// a few minutes of clock skew): Atom's `updated` would precede `published`, or go
    /// backwards at the next correction.
    #[test]
    fn an_update_time_before_publishing_or_in_the_future_is_refused_by_name() {
        let now = Utc.with_ymd_and_hms(2023, 6, 7, 8, 0, 0).unwrap();
        let publish = draft().publish_time.unwrap();
        let minutes = chrono::TimeDelta::minutes;
        let year_2199 = Utc.with_ymd_and_hms(2199, 1, 1, 0, 0, 0).unwrap();
        let policy = text::HtmlPolicy::default();
        let check = |draft: ArticleDraft| {
            draft.validate_at("article.", &policy, FieldLimits::default(), now)
        };
        // An article scheduled ahead shows its publish time as its update time: sent back
        // as read, that is accepted, though later than now.
        let tomorrow = now + chrono::TimeDelta::days(1);
        let scheduled = check(ArticleDraft {
            publish_time: Some(tomorrow),
            update_time: Some(tomorrow),
            ..draft()
        });
        assert_eq!(scheduled.unwrap().content.update_time, Some(tomorrow));
        for (update, refused) in [
            (publish, None),
            (now, None),
            (now + UPDATE_TIME_CLOCK_SKEW - minutes(1), None),
            (publish - minutes(1), Some("earlier than publish_time")),
            (
                now + UPDATE_TIME_CLOCK_SKEW + minutes(1),
                Some("later than the server's"),
            ),
            (year_2199, Some("later than the server's")),
        ] {
            let checked = check(ArticleDraft {
                update_time: Some(update),
                ..draft()
            });
            match (checked, refused) {
                (Ok(valid), None) => assert_eq!(valid.content.update_time, Some(update)),
                (Err(violations), Some(says)) => {
                    let found: Vec<_> = violations.iter().collect();
                    assert_eq!(found.len(), 1, "{update}: {found:?}");
                    assert_eq!(found[0].field, "article.update_time");
                    assert!(found[0].description.contains(says), "{found:?}");
                }
                (other, _) => panic!("{update}: {other:?}"),
            }
        }
    }

    /// A correction whose update_time is earlier than the version it replaces is dated
    /// with that version: `updated` never goes backwards.
    #[test]
    fn a_correction_never_moves_updated_backwards() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, first) = created(t0);
        let mut edited = valid.content.clone();
        edited.title = "新标题".into();
        let t1 = t0 + chrono::Duration::hours(1);
        let Revision::Updated { article, .. } = Article::revise(
            Some(first),
            PartnerId(1),
            valid.id.clone(),
            edited.clone(),
            t1,
            |_| unreachable!(),
        ) else {
            panic!("expected an update")
        };
        assert_eq!(article.updated, t1);
        edited.title = "再次更正".into();
        edited.update_time = Some(edited.publish_time);
        let t2 = t1 + chrono::Duration::hours(1);
        let Revision::Updated { article: again, .. } = revised(&article, edited, t2) else {
            panic!("expected an update")
        };
        assert_eq!(
            again.updated, t2,
            "dated by the edit, so that readers see it"
        );
    }

    /// An article shown, then scheduled ahead, then brought back into view is dated by the
    /// edit that brought it back, not by the publish time it was scheduled for, and reads
    /// back as an article the server takes again.
    #[test]
    fn an_article_scheduled_ahead_and_brought_back_is_not_dated_in_the_future() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let hour = |h: i64| t0 + chrono::TimeDelta::hours(h);
        let (valid, shown) = created(hour(1));
        let at = |publish: DateTime<Utc>| ArticleContent {
            publish_time: publish,
            ..valid.content.clone()
        };
        let ahead = revised(&shown, at(hour(3)), hour(2)).into_article();
        assert_eq!(
            ahead.updated,
            hour(3),
            "dated by its publish time, unseen till then"
        );
        let back = revised(&ahead, at(t0 - chrono::TimeDelta::hours(1)), hour(2)).into_article();
        assert_eq!(
            back.updated,
            hour(2),
            "dated by the edit that brought it back"
        );
        assert!(back.updated > shown.updated, "after what readers saw");
        let read_back = ArticleContent {
            update_time: Some(back.updated),
            ..back.content.clone()
        };
        assert!(
            matches!(revised(&back, read_back, hour(2)), Revision::Unchanged(_)),
            "sent back as read, it is unchanged"
        );
    }

    /// A version number at its limit (a row edited by hand: import refuses one) neither
    /// panics nor wraps to 0 on the next edit.
    #[test]
    fn an_edit_at_the_last_version_number_does_not_wrap() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, mut last) = created(t0);
        last.version = u32::MAX;
        let mut edited = valid.content;
        edited.title = "新标题".into();
        let revision = Article::revise(Some(last), PartnerId(1), valid.id, edited, t0, |_| {
            unreachable!("an existing article keeps its guid")
        });
        assert_eq!(revision.article().version, u32::MAX);
    }

    /// Only a write with the article in view before or after it changes what feeds show,
    /// and moves `shown_change_time`; an embargo's end dates the feeds of one never shown.
    #[test]
    fn only_writes_with_the_article_in_view_before_or_after_them_date_its_feeds() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let hour = |h: i64| t0 + chrono::TimeDelta::hours(h);
        let (valid, shown) = created(t0);
        assert_eq!(shown.shown_change_time, Some(t0));
        let under_embargo = |title: &str| ArticleContent {
            title: title.into(),
            embargo_time: Some(hour(100)),
            ..valid.content.clone()
        };
        let hidden = revised(&shown, under_embargo("甲"), hour(1)).into_article();
        assert_eq!(
            hidden.shown_change_time,
            Some(hour(1)),
            "put back under embargo"
        );
        let edited = revised(&hidden, under_embargo("乙"), hour(2)).into_article();
        assert_eq!(
            edited.shown_change_time,
            Some(hour(1)),
            "edited under embargo"
        );
        let mut retracted = edited.clone();
        assert!(retracted.retract("撤稿".into(), hour(3)));
        assert_eq!(
            retracted.shown_change_time,
            Some(hour(1)),
            "retracted unseen"
        );
        let back = revised(&retracted, valid.content.clone(), hour(4)).into_article();
        assert_eq!(back.shown_change_time, Some(hour(4)), "back in view");
        let mut gone = back.clone();
        assert!(gone.retract("撤稿".into(), hour(5)));
        assert_eq!(gone.shown_change_time, Some(hour(5)), "retracted in view");
        // Its tombstone leaves the feeds that showed it when it comes back under embargo.
        let buried = revised(&gone, under_embargo("丁"), hour(6)).into_article();
        assert_eq!(
            buried.shown_change_time,
            Some(hour(6)),
            "tombstone taken away"
        );
        // What feeds saw last of an article never goes back: its expiry, here.
        let expiring = ArticleContent {
            expire_time: Some(hour(7)),
            ..valid.content.clone()
        };
        let expired =
            revised(&buried, expiring, hour(6) + chrono::TimeDelta::minutes(30)).into_article();
        let hidden_again = revised(&expired, under_embargo("戊"), hour(8)).into_article();
        assert_eq!(
            hidden_again.shown_change_time,
            Some(hour(7)),
            "expired, then hidden"
        );

        let Revision::Created(unseen) = Article::revise(
            None,
            PartnerId(1),
            valid.id.clone(),
            under_embargo("丙"),
            hour(6),
            |_| "tag:x,2023-06-06:p/a-2".into(),
        ) else {
            panic!("expected a new article")
        };
        assert_eq!(unseen.shown_change_time, None);
        // Its publish time has passed, but under embargo that shows nothing.
        assert_eq!(unseen.last_shown_change(hour(7)), None);
        assert_eq!(unseen.last_shown_change(hour(101)), Some(hour(100)));
    }

    #[test]
    fn a_retraction_changes_the_etag_partners_see_and_identical_content_restores_it() {
        let valid = draft().validate("", &text::HtmlPolicy::default()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let revision = Article::revise(
            None,
            PartnerId(1),
            valid.id.clone(),
            valid.content.clone(),
            t0,
            |_| "tag:x,2023-06-06:p/a-1".into(),
        );
        let published = revision.article().clone();
        assert_eq!(published.resource_etag(), published.etag);

        let mut retracted = published.clone();
        assert!(retracted.retract("更正".into(), t0 + chrono::Duration::hours(1)));
        assert_ne!(retracted.resource_etag(), published.etag);
        assert_eq!(retracted.etag, published.etag, "the content did not change");

        let back = Article::revise(
            Some(retracted),
            PartnerId(1),
            valid.id,
            valid.content,
            t0 + chrono::Duration::hours(2),
            |_| unreachable!("an existing article keeps its guid"),
        );
        assert!(
            !back.is_new_version(),
            "the same content is the same version"
        );
        assert_eq!(back.article().version, 1);
        assert_eq!(back.article().resource_etag(), published.etag);
        // Dated by its return, after the tombstone's `when`.
        assert_eq!(back.article().updated, t0 + chrono::Duration::hours(2));
        assert!(back.article().updated > published.updated);
    }

    /// HTML that differs only in how it writes a no-break space is the same content: an
    /// article stored with U+00A0 (as HTML made from text was) and sent again with
    /// `&nbsp;` (as the sanitiser and now HTML made from text write it) is unchanged, and
    /// the other way round; any other difference is a new version.
    #[test]
    fn a_no_break_space_written_either_way_is_the_same_content() {
        let t0 = Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap();
        let (valid, mut stored) = created(t0);
        let later = t0 + chrono::Duration::hours(1);
        let revise = |stored: &Article, html: &str| {
            let content = ArticleContent {
                content_html: html.into(),
                ..valid.content.clone()
            };
            Article::revise(
                Some(stored.clone()),
                PartnerId(1),
                valid.id.clone(),
                content,
                later,
                |_| unreachable!("an existing article keeps its guid"),
            )
        };
        for (was, sent) in [
            ("<p>甲\u{a0}乙\u{a0}丙</p>", "<p>甲&nbsp;乙&nbsp;丙</p>"),
            ("<p>甲&nbsp;乙</p>", "<p>甲\u{a0}乙</p>"),
        ] {
            stored.content.content_html = was.into();
            stored.etag = stored.content.etag();
            let again = revise(&stored, sent);
            assert!(matches!(again, Revision::Unchanged(_)), "{was} then {sent}");
            assert_eq!(again.article().content.content_html, was);
            assert_eq!(again.article().etag, stored.etag);
        }
        let changed = revise(&stored, "<p>甲&nbsp;丁</p>");
        assert!(changed.is_new_version());
    }
}
