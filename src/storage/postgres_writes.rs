//! The article write path of the PostgreSQL backend: publishes, retractions and embargo
//! lifts, each run inside the caller's transaction (partners: `postgres_partners.rs`).
//!
//! Concurrent writers, in this process or in other replicas, stay equal to some serial
//! order through locks held to the commit, always taken in the same order (so they never
//! deadlock): first the articles and request ids a write touches (transaction advisory
//! locks, in key order), then the rows of `feed_sizes` (in key order), last the event log.

use super::postgres::EVENTS_CHANNEL;
use super::postgres_partners::insert_audit;
use super::sqlite::{ARTICLE_COLUMNS, article_from_row, nanos, state_code};
use super::sqlite_history::{
    RequestRecord, VERSION_COLUMNS, VERSIONED_COLUMNS, kind_code, request_from_row,
};
use super::sqlite_partners as partners;
use super::sqlite_writes::{UPDATES, check_precondition};
use super::{ArticleWrite, Holder, Retraction, StoreError, WriteChecks};
use crate::domain::{
    Actor, Article, ArticleId, ArticleState, AuditEntry, AuditOperation, EventKind, Outcome,
    PartnerId, Revision, Seen,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Executor;
use sqlx::postgres::{PgConnection, Postgres};
use std::collections::{BTreeSet, HashMap};

/// The advisory lock of the event log (`feedpub` in ASCII, then 1).
const EVENT_LOG_LOCK: i64 = 0x6665_6564_7075_6201;

/// The advisory lock key of one article or one request id of a partner.
fn lock_key(kind: &str, partner: PartnerId, id: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(partner.0.to_be_bytes())
        .chain_update(id)
        .finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the locks of these keys, in key order, until the transaction ends.
async fn lock(conn: &mut PgConnection, keys: BTreeSet<i64>) -> Result<(), StoreError> {
    let keys: Vec<i64> = keys.into_iter().collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(key)
         FROM unnest($1::bigint[]) WITH ORDINALITY AS keys (key, n) ORDER BY n",
    )
    .bind(keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// The sequence number of the newest event (0 for none).
pub(super) async fn event_head<'c>(
    executor: impl Executor<'c, Database = Postgres>,
) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM article_events")
        .fetch_one(executor)
        .await?;
    Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

/// One event to log.
struct Event {
    partner: i64,
    article: String,
    version: i64,
    kind: i64,
    section: String,
    embargoed: bool,
    time: i64,
    /// Where the write took the article out of view ([`Article::left`]): the section, and
    /// whether an embargo ran there.
    left: Option<String>,
    left_embargoed: bool,
}

impl Event {
    fn of(article: &Article, kind: EventKind, left: Option<Seen>, now: DateTime<Utc>) -> Self {
        Self {
            partner: article.partner.0,
            article: article.id.to_string(),
            version: i64::from(article.version),
            kind: kind_code(kind),
            section: article.content.section.to_string(),
            embargoed: article.content.is_embargoed(now),
            time: nanos(now),
            left_embargoed: left.as_ref().is_some_and(|s| s.embargoed),
            left: left.map(|s| s.section.to_string()),
        }
    }
}

/// What one transaction adds to the event log, and to the archive sizes of the feeds.
#[derive(Default)]
struct Changes {
    events: Vec<Event>,
    /// What the writes changed of the feeds' archives ([`super::add_archive_changes`]).
    archives: super::ArchiveChanges,
    /// Articles to an archive page, as the feeds link them (0: not known, not dated).
    page: usize,
}

impl Changes {
    /// Writes the sizes and shifts (in key order), then logs the events under the event log's lock and
    /// notifies the other replicas, who hear of it at the commit.
    async fn apply(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let rows = self.archives;
        if !rows.is_empty() {
            let kinds: Vec<&str> = rows.keys().map(|(k, _)| *k).collect();
            let names: Vec<&str> = rows.keys().map(|(_, n)| n.as_str()).collect();
            let by: Vec<i64> = rows.values().map(|m| m.added).collect();
            let shift = |part: fn(&super::ArchiveChange) -> Option<i64>| -> Vec<Option<i64>> {
                rows.values().map(part).collect()
            };
            // GREATEST and LEAST pass over NULLs.
            // A name given its first article now is stored now (`first_stored`, migration
            // 0014): of names whose slugs collide, the one stored first keeps the folder.
            sqlx::query(
                "INSERT INTO feed_sizes (kind, name, articles, shift_time, shift_from,
                     shown_shift_time, first_stored)
                 SELECT kind, name, by, shift_time, shift_from, shown_shift_time, first_stored
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                             $6::bigint[], $7::bigint[])
                     WITH ORDINALITY AS changes (kind, name, by, shift_time, shift_from,
                                                 shown_shift_time, first_stored, n)
                 ORDER BY n
                 ON CONFLICT (kind, name) DO UPDATE SET
                     articles = feed_sizes.articles + excluded.articles,
                     shift_time = GREATEST(feed_sizes.shift_time, excluded.shift_time),
                     shift_from = LEAST(feed_sizes.shift_from, excluded.shift_from),
                     shown_shift_time = GREATEST(feed_sizes.shown_shift_time,
                                                 excluded.shown_shift_time),
                     first_stored = COALESCE(feed_sizes.first_stored, excluded.first_stored)",
            )
            .bind(&kinds)
            .bind(&names)
            .bind(&by)
            .bind(shift(|m| m.time))
            .bind(shift(|m| m.from))
            .bind(shift(|m| m.shown))
            .bind(shift(|m| m.resized.filter(|_| m.added > 0)))
            .execute(&mut *conn)
            .await?;
            if self.page > 0 && by.iter().any(|by| *by != 0) {
                // `articles` is the size after the write now. A feed whose number of archive
                // pages changed got another `prev-archive` link, dated by the write even
                // when what filled or emptied a page is out of view.
                sqlx::query(
                    "UPDATE feed_sizes SET shown_shift_time = GREATEST(shown_shift_time, ch.at)
                     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                         AS ch (kind, name, added, at)
                     WHERE feed_sizes.kind = ch.kind AND feed_sizes.name = ch.name
                       AND feed_sizes.articles / $5
                           <> (feed_sizes.articles - ch.added) / $5",
                )
                .bind(&kinds)
                .bind(&names)
                .bind(&by)
                .bind(shift(|m| m.resized))
                .bind(self.page as i64)
                .execute(&mut *conn)
                .await?;
            }
        }
        log_events(conn, self.events).await
    }
}

async fn log_events(conn: &mut PgConnection, events: Vec<Event>) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    lock(conn, BTreeSet::from([EVENT_LOG_LOCK])).await?;
    let column = |f: fn(&Event) -> i64| events.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO article_events
             (partner_id, article_id, version, kind, section, embargoed, event_time,
              left_section, left_embargoed)
         SELECT partner_id, article_id, version, kind, section, embargoed, event_time,
                left_section, left_embargoed
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                     $6::boolean[], $7::bigint[], $8::text[], $9::boolean[]) WITH ORDINALITY
             AS e (partner_id, article_id, version, kind, section, embargoed, event_time,
                   left_section, left_embargoed, n)
         ORDER BY n",
    )
    .bind(column(|e| e.partner))
    .bind(events.iter().map(|e| e.article.clone()).collect::<Vec<_>>())
    .bind(column(|e| e.version))
    .bind(column(|e| e.kind))
    .bind(events.iter().map(|e| e.section.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.embargoed).collect::<Vec<_>>())
    .bind(column(|e| e.time))
    .bind(events.iter().map(|e| e.left.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.left_embargoed).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    notify(conn).await
}

async fn notify(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Publishes `writes` in order, each recorded in the audit log; see `Store::publish_batch`.
pub(super) async fn publish(
    conn: &mut PgConnection,
    (partner, page): (PartnerId, usize),
    checks: &WriteChecks,
    writes: Vec<ArticleWrite>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Vec<Result<Revision, StoreError>>, StoreError> {
    let mut keys: BTreeSet<i64> = BTreeSet::new();
    for write in &writes {
        keys.insert(lock_key("article", partner, write.id.as_str()));
        if let Some(request) = &write.request {
            keys.insert(lock_key("request", partner, request.id()));
        }
    }
    lock(conn, keys).await?;
    let ids: Vec<String> = writes.iter().map(|w| w.id.to_string()).collect();
    let mut current = select_articles(conn, partner, &ids).await?;
    let holder = match checks.wants_holder() {
        // Shared until the commit: a rotation, revocation or change of rights waits for
        // this write, or this write for it.
        true => sqlx::query(&format!("{} FOR SHARE", partners::holder_sql("$1")))
            .bind(partner.0)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(partners::holder_from_row)
            .transpose()?,
        false => None,
    };
    let request_ids: Vec<String> = writes
        .iter()
        .filter_map(|w| w.request.as_ref().map(|r| r.id().to_owned()))
        .collect();
    let mut requests = request_records(conn, partner, &request_ids).await?;
    let mut changes = Changes {
        page,
        ..Changes::default()
    };
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let id = write.id.to_string();
        let result = publish_one(
            conn,
            &mut changes,
            &mut current,
            &mut requests,
            partner,
            write,
            now,
            (checks, holder.as_ref()),
        )
        .await;
        if let Ok(revision) = &result {
            let outcome = match revision {
                Revision::Unchanged(_) => Outcome::Unchanged,
                Revision::Created(_) | Revision::Updated { .. } => Outcome::Ok,
            };
            let entry = AuditEntry::new(actor, AuditOperation::Publish, Some(&id), outcome, now)
                .with_detail(format!("section {}", revision.article().content.section));
            insert_audit(&mut *conn, &entry).await?;
        }
        match result {
            Err(e) if !e.is_refusal() => return Err(e),
            result => results.push(result),
        }
    }
    changes.apply(conn).await?;
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
async fn publish_one(
    conn: &mut PgConnection,
    changes: &mut Changes,
    current: &mut HashMap<ArticleId, Article>,
    requests: &mut HashMap<String, RequestRecord>,
    partner: PartnerId,
    write: ArticleWrite,
    now: DateTime<Utc>,
    (checks, holder): (&WriteChecks, Option<&Holder>),
) -> Result<Revision, StoreError> {
    checks.check(holder, &write, current.get(&write.id), now)?;
    if let Some(key) = &write.request
        && let Some(record) = requests.get(key.id())
    {
        if record.key != *key {
            return Err(StoreError::RequestIdReused(key.id().to_owned()));
        }
        return Ok(Revision::Unchanged(replay(conn, record, partner).await?));
    }
    let existing = current.get(&write.id).cloned();
    check_precondition(existing.as_ref(), write.expected_etag.as_deref())?;
    let (revision, request) = write.revise(existing.clone(), partner, now);
    let article = revision.article();
    if let Some(kind) = revision.event_kind() {
        let superseded = matches!(revision, Revision::Updated { .. }) && revision.is_new_version();
        write_article(conn, existing.as_ref(), article, superseded, now).await?;
        super::add_archive_changes(&mut changes.archives, &revision, now);
        let left = article.left(existing.as_ref().and_then(|a| a.seen(now)), now);
        changes.events.push(Event::of(article, kind, left, now));
    }
    current.insert(article.id.clone(), article.clone());
    if let Some(key) = request {
        let record = RequestRecord::of(key, article);
        insert_request(conn, &record, partner, now).await?;
        requests.insert(record.key.id().to_owned(), record);
    }
    Ok(revision)
}

/// Retracts an article and records it in the audit log; see `Store::retract`.
pub(super) async fn retract(
    conn: &mut PgConnection,
    partner: PartnerId,
    retraction: Retraction,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Option<(Article, bool)>, StoreError> {
    let article_id = retraction.id.to_string();
    let asked = (retraction.reason.clone(), retraction.by_operator);
    let result = retract_article(conn, partner, retraction, now).await?;
    let retracted = result.as_ref().map(|(a, done)| (a, *done));
    let entry = AuditEntry::retraction(actor, &article_id, (&asked.0, asked.1), retracted, now);
    insert_audit(conn, &entry).await?;
    Ok(result)
}

async fn retract_article(
    conn: &mut PgConnection,
    partner: PartnerId,
    retraction: Retraction,
    now: DateTime<Utc>,
) -> Result<Option<(Article, bool)>, StoreError> {
    let mut keys = BTreeSet::from([lock_key("article", partner, retraction.id.as_str())]);
    if let Some(request) = &retraction.request {
        keys.insert(lock_key("request", partner, request.id()));
    }
    lock(conn, keys).await?;
    if let Some(key) = &retraction.request
        && let Some(record) = request_records(conn, partner, &[key.id().to_owned()])
            .await?
            .remove(key.id())
    {
        if record.key != *key {
            return Err(StoreError::RequestIdReused(key.id().to_owned()));
        }
        return Ok(Some((replay(conn, &record, partner).await?, false)));
    }
    let mut found = select_articles(conn, partner, &[retraction.id.to_string()]).await?;
    let Some(existing) = found.remove(&retraction.id) else {
        return Ok(None);
    };
    check_precondition(Some(&existing), retraction.expected_etag.as_deref())?;
    let mut article = existing.clone();
    let changed = article.retract(retraction.reason, now);
    let mut changes = Changes::default();
    if changed {
        // A retraction moves the article out of no feed's archive.
        write_article(conn, Some(&existing), &article, false, now).await?;
        changes
            .events
            .push(Event::of(&article, EventKind::Retracted, None, now));
    }
    if let Some(key) = retraction.request {
        insert_request(conn, &RequestRecord::of(key, &article), partner, now).await?;
    }
    changes.apply(conn).await?;
    Ok(Some((article, changed)))
}

/// Logs the end of every embargo that ended by `now`; see `Store::lift_embargoes`. The
/// event log's lock comes first, so two replicas lifting at once log each end once.
pub(super) async fn lift_embargoes(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    lock(conn, BTreeSet::from([EVENT_LOG_LOCK])).await?;
    let logged = sqlx::query(
        "INSERT INTO article_events
             (partner_id, article_id, version, kind, section, embargoed, event_time)
         SELECT a.partner_id, a.article_id, a.version, $2, a.section, FALSE, l.embargo_time
         FROM embargo_lifts AS l JOIN articles AS a USING (partner_id, article_id)
         WHERE l.embargo_time <= $1 AND a.state = 1 AND a.embargo_time = l.embargo_time
         ORDER BY l.embargo_time, a.partner_id, a.article_id",
    )
    .bind(nanos(now))
    .bind(kind_code(EventKind::EmbargoLifted))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM embargo_lifts WHERE embargo_time <= $1")
        .bind(nanos(now))
        .execute(&mut *conn)
        .await?;
    if logged > 0 {
        notify(conn).await?;
    }
    Ok(logged)
}

/// Replaces the stored row of `new` (whose stored row is `old`, if any), keeping the old
/// content as a past version when `superseded`, with its names and pending embargo lift.
async fn write_article(
    conn: &mut PgConnection,
    old: Option<&Article>,
    a: &Article,
    superseded: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (partner, id) = (a.partner.0, a.id.as_str());
    if superseded && old.is_some() {
        sqlx::query(&format!(
            "INSERT INTO article_versions ({VERSION_COLUMNS})
             SELECT {VERSION_COLUMNS} FROM articles WHERE partner_id = $1 AND article_id = $2"
        ))
        .bind(partner)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    let columns = ARTICLE_COLUMNS.split(',').count();
    let placeholders: Vec<String> = (1..=columns).map(|n| format!("${n}")).collect();
    let c = &a.content;
    sqlx::query(&format!(
        "INSERT INTO articles ({ARTICLE_COLUMNS}) VALUES ({})
         ON CONFLICT (partner_id, article_id) DO UPDATE SET {}",
        placeholders.join(", "),
        UPDATES.as_str()
    ))
    .bind(partner)
    .bind(id)
    .bind(&a.guid)
    .bind(c.section.as_str())
    .bind(state_code(a.state))
    .bind(&c.title)
    .bind(&c.subtitle)
    .bind(&c.kicker)
    .bind(serde_json::to_string(&c.authors).expect("strings always serialise"))
    .bind(&c.summary)
    .bind(&c.content_html)
    .bind(c.content_text.as_deref())
    .bind(serde_json::to_string(&c.tags).expect("strings always serialise"))
    .bind(c.canonical_url.as_deref())
    .bind(nanos(c.publish_time))
    .bind(c.update_time.map(nanos))
    .bind(nanos(a.updated))
    .bind(c.expire_time.map(nanos))
    .bind(nanos(a.create_time))
    .bind(nanos(a.change_time))
    .bind(a.retract_time.map(nanos))
    .bind(&a.retract_reason)
    .bind(&a.etag)
    .bind(c.embargo_time.map(nanos))
    .bind(serde_json::to_string(&c.media).expect("media always serialise"))
    .bind(c.language.as_deref())
    .bind(i64::from(a.version))
    .bind(a.shown_change_time.map(nanos))
    .execute(&mut *conn)
    .await?;
    for (table, names) in [("article_authors", &c.authors), ("article_tags", &c.tags)] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE partner_id = $1 AND article_id = $2"
        ))
        .bind(partner)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if !names.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {table} (name, partner_id, article_id, guid, state, publish_time,
                     expire_time, embargo_time, change_time, retract_time, shown_change_time,
                     create_time)
                 SELECT n.name, a.partner_id, a.article_id, a.guid, a.state, a.publish_time,
                        a.expire_time, a.embargo_time, a.change_time, a.retract_time,
                        a.shown_change_time, a.create_time
                 FROM articles AS a, unnest($3::text[]) AS n (name)
                 WHERE a.partner_id = $1 AND a.article_id = $2
                 ON CONFLICT DO NOTHING"
            ))
            .bind(partner)
            .bind(id)
            .bind(names.clone())
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("DELETE FROM embargo_lifts WHERE partner_id = $1 AND article_id = $2")
        .bind(partner)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if let (ArticleState::Published, Some(end), true) =
        (a.state, c.embargo_time, c.is_embargoed(now))
    {
        sqlx::query(
            "INSERT INTO embargo_lifts (partner_id, article_id, embargo_time) VALUES ($1, $2, $3)",
        )
        .bind(partner)
        .bind(id)
        .bind(nanos(end))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A partner's stored articles with these ids, by id.
async fn select_articles(
    conn: &mut PgConnection,
    partner: PartnerId,
    ids: &[String],
) -> Result<HashMap<ArticleId, Article>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ARTICLE_COLUMNS} FROM articles WHERE partner_id = $1 AND article_id = ANY($2)"
    ))
    .bind(partner.0)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| article_from_row(row).map(|a| (a.id.clone(), a)))
        .collect()
}

/// The records of these request ids of a partner, by id.
async fn request_records(
    conn: &mut PgConnection,
    partner: PartnerId,
    ids: &[String],
) -> Result<HashMap<String, RequestRecord>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT request_id, fingerprint, article_id, version, state, retract_time, retract_reason
         FROM request_ids WHERE partner_id = $1 AND request_id = ANY($2)",
    )
    .bind(partner.0)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| request_from_row(row).map(|record| (record.key.id().to_owned(), record)))
        .collect()
}

async fn insert_request(
    conn: &mut PgConnection,
    record: &RequestRecord,
    partner: PartnerId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = record.row(partner, now);
    sqlx::query(
        "INSERT INTO request_ids (partner_id, request_id, fingerprint, article_id, version,
             state, retract_time, retract_reason, create_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.0)
    .bind(row.1)
    .bind(row.2)
    .bind(row.3)
    .bind(i64::from(row.4))
    .bind(row.5)
    .bind(row.6)
    .bind(row.7)
    .bind(row.8)
    .execute(conn)
    .await?;
    Ok(())
}

/// The first answer to a request id again: the article as it was then.
async fn replay(
    conn: &mut PgConnection,
    record: &RequestRecord,
    partner: PartnerId,
) -> Result<Article, StoreError> {
    let mut article = article_at(conn, partner, &record.article_id, record.version)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "request {:?} names a version that is not stored",
                record.key.id()
            ))
        })?;
    article.state = record.state;
    article.retract_time = record.retract_time;
    article.retract_reason = record.retract_reason.clone();
    Ok(article)
}

/// An article with the content of `version`, current or past.
pub(super) async fn article_at<'c>(
    executor: impl Executor<'c, Database = Postgres>,
    partner: PartnerId,
    id: &ArticleId,
    version: u32,
) -> Result<Option<Article>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM articles AS a
         LEFT JOIN article_versions AS v ON v.partner_id = a.partner_id
             AND v.article_id = a.article_id AND v.version = $3
         WHERE a.partner_id = $1 AND a.article_id = $2
           AND (a.version = $3 OR v.version IS NOT NULL)",
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
