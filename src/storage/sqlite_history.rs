//! An article's history in SQLite, as read back: past versions, the event log partners
//! follow, the results recorded under request ids, and the embargoes still to lift.

use super::rows::Columns;
use super::sqlite::{
    ARTICLE_COLUMNS, article_from_row, from_nanos, nanos, state_code, state_from_code,
};
use super::{EventFilter, StoreError};
use crate::domain::{
    Article, ArticleEvent, ArticleId, ArticleState, EventKind, PartnerId, PartnerName, RequestKey,
    SectionSlug, VersionSummary,
};
use chrono::{DateTime, Utc};
use sqlx::Executor;
use sqlx::sqlite::{Sqlite, SqliteConnection};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The columns of `article_versions`: the key, the version number and the content.
pub(super) const VERSION_COLUMNS: &str = "partner_id, article_id, version, section, title, \
     subtitle, kicker, authors, summary, content_html, content_text, tags, canonical_url, \
     publish_time, update_time, updated, expire_time, embargo_time, media, language, etag";

/// `ARTICLE_COLUMNS` of an article as of a version: the content from its past version
/// (`v`) when the version is a past one, else from the current row (`a`), which also gives
/// everything else.
pub(super) static VERSIONED_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let versioned: Vec<&str> = VERSION_COLUMNS.split(',').map(str::trim).collect();
    ARTICLE_COLUMNS
        .split(',')
        .map(str::trim)
        .map(|c| {
            if versioned.contains(&c) && !matches!(c, "partner_id" | "article_id") {
                format!("CASE WHEN v.version IS NULL THEN a.{c} ELSE v.{c} END AS {c}")
            } else {
                format!("a.{c} AS {c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// Event kinds as stored in `article_events.kind`.
pub(super) fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Published => 1,
        EventKind::Updated => 2,
        EventKind::Retracted => 3,
        EventKind::EmbargoLifted => 4,
    }
}

pub(super) fn kind_from_code(code: i64) -> Result<EventKind, StoreError> {
    Ok(match code {
        1 => EventKind::Published,
        2 => EventKind::Updated,
        3 => EventKind::Retracted,
        4 => EventKind::EmbargoLifted,
        other => return Err(StoreError::Corrupt(format!("event kind: {other}"))),
    })
}

/// Reads the sequence number of the newest event ever logged (no row for none).
pub(super) const EVENT_HEAD: &str = "SELECT seq FROM sqlite_sequence WHERE name = 'article_events'";

/// The sequence number of the newest event ever logged (0 for none).
pub(super) async fn event_head(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar(EVENT_HEAD).fetch_optional(conn).await?;
    Ok(head_of(seq))
}

/// The event head [`EVENT_HEAD`] read: 0 when it found no row.
pub(super) fn head_of(seq: Option<i64>) -> u64 {
    seq.map_or(0, |s| u64::try_from(s).unwrap_or(0))
}

/// An article with the content of `version`, current or past.
pub(super) async fn article_at<'c>(
    executor: impl Executor<'c, Database = Sqlite>,
    partner: PartnerId,
    id: &ArticleId,
    version: u32,
) -> Result<Option<Article>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM articles AS a
         LEFT JOIN article_versions AS v ON v.partner_id = a.partner_id
             AND v.article_id = a.article_id AND v.version = ?3
         WHERE a.partner_id = ?1 AND a.article_id = ?2
           AND (a.version = ?3 OR v.version IS NOT NULL)",
        *VERSIONED_COLUMNS
    ))
    .bind(partner.0)
    .bind(id.as_str())
    .bind(i64::from(version))
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut article = article_from_row(&row)?;
    article.version = version;
    Ok(Some(article))
}

/// The versions of an article below `before`, newest first.
pub(super) async fn versions<'c>(
    executor: impl Executor<'c, Database = Sqlite>,
    partner: PartnerId,
    id: &ArticleId,
    before: Option<u32>,
    limit: usize,
) -> Result<Vec<VersionSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, etag, title, updated FROM (
             SELECT version, etag, title, updated FROM articles
                 WHERE partner_id = ?1 AND article_id = ?2
             UNION ALL
             SELECT version, etag, title, updated FROM article_versions
                 WHERE partner_id = ?1 AND article_id = ?2)
         WHERE version < ?3 ORDER BY version DESC LIMIT ?4",
    )
    .bind(partner.0)
    .bind(id.as_str())
    .bind(before.map_or(i64::MAX, i64::from))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    rows.iter().map(version_from_row).collect()
}

/// A row of `version, etag, title, updated`.
pub(super) fn version_from_row(row: &impl Columns) -> Result<VersionSummary, StoreError> {
    Ok(VersionSummary {
        version: u32::try_from(row.value::<i64>("version")?)
            .map_err(|e| StoreError::Corrupt(format!("version: {e}")))?,
        etag: row.value("etag")?,
        title: row.value("title")?,
        updated: from_nanos(row.value("updated")?),
    })
}

/// Whether the copy of event `e` (of article `a`) was taken down: the article is retracted
/// now, or was retracted by this event or a later one, though published again since (the
/// copy a retraction took down stays down). The same text in both stores' SQL; a partial
/// index finds an article's retractions.
pub(super) const TAKEN_DOWN: &str = "(a.state = 2 OR EXISTS (
        SELECT 1 FROM article_events AS r
        WHERE r.partner_id = e.partner_id AND r.article_id = e.article_id
          AND r.kind = 3 AND r.seq >= e.seq)) AS taken_down";

/// Events with `after < seq <= until` that `filter` lets through, in order, with the
/// article as of each.
pub(super) async fn events<'c>(
    executor: impl Executor<'c, Database = Sqlite>,
    after: u64,
    until: u64,
    filter: &EventFilter,
    limit: usize,
) -> Result<Vec<ArticleEvent>, StoreError> {
    let sections = filter.sections.as_ref().map(|sections| {
        let slugs: Vec<&str> = sections.iter().map(SectionSlug::as_str).collect();
        serde_json::to_string(&slugs).expect("strings always serialise")
    });
    // An event is in the reader's view (its section followed, its embargo readable), or
    // else told as having left, to a reader of the section it took its article out of.
    let followed =
        |column: &str| format!("(?3 IS NULL OR {column} IN (SELECT value FROM json_each(?3)))");
    let in_view = format!("({} AND (e.embargoed = 0 OR ?4))", followed("e.section"));
    let rows = sqlx::query(&format!(
        "SELECT e.seq, e.kind, e.event_time, p.name AS owner, e.left_section,
                {TAKEN_DOWN}, {in_view} AS in_view, {}
         FROM article_events AS e
         JOIN articles AS a ON a.partner_id = e.partner_id AND a.article_id = e.article_id
         JOIN partners AS p ON p.id = e.partner_id
         LEFT JOIN article_versions AS v ON v.partner_id = e.partner_id
             AND v.article_id = e.article_id AND v.version = e.version
         WHERE e.seq > ?1 AND e.seq <= ?2
           AND ({in_view} OR (e.left_section IS NOT NULL AND {}
                              AND (e.left_embargoed = 0 OR ?4)))
         ORDER BY e.seq LIMIT ?5",
        *VERSIONED_COLUMNS,
        followed("e.left_section")
    ))
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(i64::try_from(until).unwrap_or(i64::MAX))
    .bind(sections)
    .bind(filter.embargoed)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) fn event_from_row(row: &impl Columns) -> Result<ArticleEvent, StoreError> {
    let kind = kind_from_code(row.value("kind")?)?;
    let time = from_nanos(row.value("event_time")?);
    let owner: String = row.value("owner")?;
    let mut article = article_from_row(row)?;
    let taken_down = kind == EventKind::Retracted || row.value::<bool>("taken_down")?;
    // The article as the event left it; the reason of a retraction stays with its partner.
    article.retract_reason.clear();
    if kind == EventKind::Retracted {
        article.state = ArticleState::Retracted;
        article.retract_time = Some(time);
    } else {
        article.state = ArticleState::Published;
        article.retract_time = None;
    }
    let left = match row.value::<bool>("in_view")? {
        true => None,
        false => row
            .value::<Option<String>>("left_section")?
            .map(|s| SectionSlug::parse(&s).map_err(StoreError::Corrupt))
            .transpose()?,
    };
    Ok(ArticleEvent {
        seq: u64::try_from(row.value::<i64>("seq")?)
            .map_err(|e| StoreError::Corrupt(format!("event seq: {e}")))?,
        kind,
        owner: PartnerName::parse(&owner).map_err(StoreError::Corrupt)?,
        article,
        time,
        left,
        taken_down,
    })
}

/// What a request id was first answered with.
#[derive(Debug, Clone)]
pub(super) struct RequestRecord {
    pub key: RequestKey,
    pub article_id: ArticleId,
    pub version: u32,
    pub state: ArticleState,
    pub retract_time: Option<DateTime<Utc>>,
    pub retract_reason: String,
}

impl RequestRecord {
    /// The record of `key` answered with `article`.
    pub fn of(key: RequestKey, article: &Article) -> Self {
        Self {
            key,
            article_id: article.id.clone(),
            version: article.version,
            state: article.state,
            retract_time: article.retract_time,
            retract_reason: article.retract_reason.clone(),
        }
    }

    /// The row to insert into `request_ids`, in column order.
    pub fn row(
        &self,
        partner: PartnerId,
        now: DateTime<Utc>,
    ) -> (i64, &str, &str, &str, u32, i64, Option<i64>, &str, i64) {
        (
            partner.0,
            self.key.id(),
            self.key.fingerprint(),
            self.article_id.as_str(),
            self.version,
            state_code(self.state),
            self.retract_time.map(nanos),
            &self.retract_reason,
            nanos(now),
        )
    }

    /// The first answer again: the article as it was then.
    pub async fn replay(
        &self,
        conn: &mut SqliteConnection,
        partner: PartnerId,
    ) -> Result<Article, StoreError> {
        let mut article = article_at(conn, partner, &self.article_id, self.version)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "request {:?} names a version that is not stored",
                    self.key.id()
                ))
            })?;
        article.state = self.state;
        article.retract_time = self.retract_time;
        article.retract_reason = self.retract_reason.clone();
        Ok(article)
    }
}

/// The records of these request ids of a partner, by id.
pub(super) async fn request_records(
    conn: &mut SqliteConnection,
    partner: PartnerId,
    ids: &[&str],
) -> Result<HashMap<String, RequestRecord>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT request_id, fingerprint, article_id, version, state, retract_time, retract_reason
         FROM request_ids
         WHERE partner_id = ?1 AND request_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(partner.0)
    .bind(serde_json::to_string(ids).expect("strings always serialise"))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| request_from_row(row).map(|record| (record.key.id().to_owned(), record)))
        .collect()
}

/// A row of `request_ids`.
pub(super) fn request_from_row(row: &impl Columns) -> Result<RequestRecord, StoreError> {
    let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("request id {what}: {e}"));
    let id: String = row.value("request_id")?;
    let article_id: String = row.value("article_id")?;
    Ok(RequestRecord {
        key: RequestKey::from_stored(id, row.value("fingerprint")?),
        article_id: ArticleId::parse(&article_id).map_err(|e| corrupt("article", e))?,
        version: u32::try_from(row.value::<i64>("version")?)
            .map_err(|e| corrupt("version", e.to_string()))?,
        state: state_from_code(row.value("state")?)?,
        retract_time: row.value::<Option<i64>>("retract_time")?.map(from_nanos),
        retract_reason: row.value("retract_reason")?,
    })
}

/// When the next running embargo ends.
pub(super) async fn next_lift<'c>(
    executor: impl Executor<'c, Database = Sqlite>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let next: Option<i64> = sqlx::query_scalar("SELECT MIN(embargo_time) FROM embargo_lifts")
        .fetch_one(executor)
        .await?;
    Ok(next.map(from_nanos))
}
