//! What partners can follow: the changes to articles, in the order they were stored, and
//! the versions an article went through.

use super::{Article, PartnerName, SectionSlug};
use chrono::{DateTime, Utc};

/// What happened to an article.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// First stored.
    Published,
    /// New content, or published again after a retraction.
    Updated,
    /// Retracted.
    Retracted,
    /// Its embargo ended.
    EmbargoLifted,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleEvent {
    /// Position in the log: strictly increasing in the order changes were committed.
    pub seq: u64,
    pub kind: EventKind,
    /// The partner that owns the article.
    pub owner: PartnerName,
    /// The article as of the event: the content of the version it produced, retracted for
    /// a retraction.
    pub article: Article,
    /// When it happened; an embargo lift happens at the embargo time.
    pub time: DateTime<Utc>,
    /// For a reader who saw the article in this section and no longer may: the event
    /// moved it to a section the reader does not follow, or put it under an embargo the
    /// reader has no right to. Such a reader is told only that it left.
    pub left: Option<SectionSlug>,
    /// The article was retracted by this event or a later one (though published again
    /// since), or is retracted now: readers of the log are told only which article it
    /// was, not what it said (copy taken down must not stay readable, also from an old
    /// cursor, nor come back with the article). Replicas still read the whole event.
    pub taken_down: bool,
}

/// One stored version of an article's content, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub version: u32,
    /// The etag of that version's content.
    pub etag: String,
    pub title: String,
    /// The article's update time as of that version.
    pub updated: DateTime<Utc>,
}
