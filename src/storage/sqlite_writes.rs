//! The article write path of the SQLite writer: publishes, retractions and embargo lifts,
//! each with its past version, event, request id and pending embargo lift. A job's rows are
//! gathered and written by multi-row statements (one per table, or per 64 articles), not
//! statements per article, so that the per-statement cost is shared by a whole batch; and
//! those statements go to the connection as one script, since each command is a round trip
//! to the connection's thread, which costs more than most of the statements themselves.

use super::sqlite::{ARTICLE_COLUMNS, article_from_row, nanos, select_article, state_code};
use super::sqlite_audit as audit;
use super::sqlite_history::{
    EVENT_HEAD, RequestRecord, VERSION_COLUMNS, head_of, kind_code, request_records,
};
use super::sqlite_partners as partners;
use super::{ArticleWrite, Holder, Retraction, StoreError, WriteChecks};
use crate::domain::{
    Article, ArticleId, ArticleState, AuditEntry, EventKind, PartnerId, RequestKey, Revision, Seen,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};
use sqlx::{Arguments, Encode, Type};
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Publishes `writes` in order, each made at its own time (the writes of several calls can
/// be applied together) and refused when the checks given with it do not let it replace
/// the stored article ([`WriteChecks`]); the audit entries `audit` makes of the results
/// are written in the same script as the last of their rows. One result per write: a
/// refused write (failed precondition, reused request id, rights, a token changed) writes nothing and does
/// not affect the others; a database error fails them all. With [`Span::Whole`], the job is
/// the writer's whole transaction, and the newest event once it is committed is returned too.
pub(super) async fn apply_publishes(
    conn: &mut SqliteConnection,
    (partner, page): (PartnerId, usize),
    writes: Vec<(ArticleWrite, DateTime<Utc>, &WriteChecks)>,
    span: Span,
    audit: impl FnOnce(&[Result<Revision, StoreError>]) -> Vec<AuditEntry>,
) -> Result<(Vec<Result<Revision, StoreError>>, Option<u64>), StoreError> {
    let ids: Vec<&str> = writes.iter().map(|(w, _, _)| w.id.as_str()).collect();
    let prefix = match span {
        Span::Whole => BEGIN,
        Span::Inside => "",
    };
    let wants_holder = writes.iter().any(|(_, _, checks)| checks.wants_holder());
    let (mut current, holder) =
        select_articles_after(conn, prefix, partner, &ids, wants_holder).await?;
    let holder = holder.as_ref();
    let request_ids: Vec<&str> = writes
        .iter()
        .filter_map(|(w, _, _)| w.request.as_ref().map(|r| r.id()))
        .collect();
    // Only an article written again later in the job needs its new version kept here.
    let mut seen = HashSet::with_capacity(writes.len());
    let written_again: HashSet<ArticleId> = writes
        .iter()
        .filter(|(w, _, _)| !seen.insert(&w.id))
        .map(|(w, _, _)| w.id.clone())
        .collect();
    drop(seen);
    if request_ids.is_empty() && written_again.is_empty() {
        let target = (partner, page);
        return apply_pipelined(conn, target, writes, current, holder, span, audit).await;
    }
    let mut requests = request_records(conn, partner, &request_ids).await?;
    let mut staged = Staged::for_pages_of(page);
    let mut results = Vec::with_capacity(writes.len());
    for (write, now, checks) in writes {
        let keep = written_again.contains(&write.id);
        let result = publish_one(
            conn,
            &mut staged,
            &mut current,
            &mut requests,
            partner,
            write,
            now,
            (checks, holder),
            keep,
        )
        .await;
        answer(&mut results, result)?;
    }
    staged.audit = audit(&results);
    let committed = staged.finish(conn, span).await?;
    Ok((results, committed))
}

/// How a publish job stands to the writer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span {
    /// Inside a transaction that the writer begins and commits.
    Inside,
    /// The whole transaction: begun in the command of the job's first read and committed in
    /// the command of its last write, so that a publish alone costs the writer two round
    /// trips to the connection's thread rather than three. Each is a wake-up of that thread,
    /// which waits for a core whenever feeds are being built.
    Whole,
}

/// Articles staged together while the rows of the ones before them are written.
const PIPELINE_SLICE: usize = 256;

/// [`apply_publishes`] for writes that never need the connection while they are staged (no
/// request id to look up or record, no article written twice): the rows of each slice of
/// writes are written while the next slice is staged (its revisions and etags computed, its
/// rows gathered), so that the connection's thread and the writer's task work at once.
async fn apply_pipelined(
    conn: &mut SqliteConnection,
    (partner, page): (PartnerId, usize),
    writes: Vec<(ArticleWrite, DateTime<Utc>, &WriteChecks)>,
    mut current: HashMap<ArticleId, Article>,
    holder: Option<&Holder>,
    span: Span,
    audit: impl FnOnce(&[Result<Revision, StoreError>]) -> Vec<AuditEntry>,
) -> Result<(Vec<Result<Revision, StoreError>>, Option<u64>), StoreError> {
    let mut results = Vec::with_capacity(writes.len());
    let mut writes = writes.into_iter();
    let mut writing: Option<Staged> = None;
    loop {
        let slice: Vec<_> = writes.by_ref().take(PIPELINE_SLICE).collect();
        if slice.is_empty() {
            break;
        }
        let stage = || stage_slice(slice, &mut current, holder, (partner, page), &mut results);
        let staged = match writing.take() {
            // `join!` polls the flush first, which hands its statements to SQLite's thread;
            // the staging then runs on this task while SQLite writes.
            Some(mut previous) => {
                let (written, staged) = tokio::join!(previous.flush(conn), async { stage() });
                written?;
                staged?
            }
            None => stage()?,
        };
        writing = Some(staged);
    }
    let mut last = writing.unwrap_or_default();
    last.audit = audit(&results);
    let committed = last.finish(conn, span).await?;
    Ok((results, committed))
}

/// Stages a slice of writes that never need the connection (see [`apply_pipelined`]),
/// adding each write's result to `results`.
fn stage_slice(
    slice: Vec<(ArticleWrite, DateTime<Utc>, &WriteChecks)>,
    current: &mut HashMap<ArticleId, Article>,
    holder: Option<&Holder>,
    (partner, page): (PartnerId, usize),
    results: &mut Vec<Result<Revision, StoreError>>,
) -> Result<Staged, StoreError> {
    let mut staged = Staged::for_pages_of(page);
    for (write, now, checks) in slice {
        let result = checks
            .check(holder, &write, current.get(&write.id), now)
            .and_then(|()| stage_one(&mut staged, current, partner, write, now, false))
            .map(|(revision, _)| revision);
        answer(results, result)?;
    }
    Ok(staged)
}

/// Adds a write's result to its job's: a refusal is that write's answer, any other error
/// ends the job.
fn answer(
    results: &mut Vec<Result<Revision, StoreError>>,
    result: Result<Revision, StoreError>,
) -> Result<(), StoreError> {
    match result {
        Err(e) if !e.is_refusal() => Err(e),
        result => {
            results.push(result);
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_one(
    conn: &mut SqliteConnection,
    staged: &mut Staged,
    current: &mut HashMap<ArticleId, Article>,
    requests: &mut HashMap<String, RequestRecord>,
    partner: PartnerId,
    write: ArticleWrite,
    now: DateTime<Utc>,
    (checks, holder): (&WriteChecks, Option<&Holder>),
    written_again: bool,
) -> Result<Revision, StoreError> {
    checks.check(holder, &write, current.get(&write.id), now)?;
    if let Some(key) = &write.request
        && let Some(record) = requests.get(key.id())
    {
        if record.key != *key {
            return Err(StoreError::RequestIdReused(key.id().to_owned()));
        }
        // The recorded version may be among the staged rows.
        staged.flush(conn).await?;
        return Ok(Revision::Unchanged(record.replay(conn, partner).await?));
    }
    if staged.holds(partner, &write.id) {
        // One row per article and flush: the stored row is always the previous version.
        staged.flush(conn).await?;
    }
    let (revision, request) = stage_one(staged, current, partner, write, now, written_again)?;
    if let Some(key) = request {
        let record = RequestRecord::of(key, revision.article());
        staged.request(&record, partner, now);
        requests.insert(record.key.id().to_owned(), record);
    }
    Ok(revision)
}

/// Stages the rows of a write whose article has none among `staged`, once its precondition
/// holds; with `written_again`, keeps its new version in `current` for the next write.
/// Returns the revision and the write's request key, for the caller to record.
fn stage_one(
    staged: &mut Staged,
    current: &mut HashMap<ArticleId, Article>,
    partner: PartnerId,
    write: ArticleWrite,
    now: DateTime<Utc>,
    written_again: bool,
) -> Result<(Revision, Option<RequestKey>), StoreError> {
    let existing = if written_again {
        current.get(&write.id).cloned()
    } else {
        current.remove(&write.id)
    };
    check_precondition(existing.as_ref(), write.expected_etag.as_deref())?;
    let seen_before = existing.as_ref().and_then(|a| a.seen(now));
    let (revision, request) = write.revise(existing, partner, now);
    let article = revision.article();
    if let Some(kind) = revision.event_kind() {
        let replaced = matches!(revision, Revision::Updated { .. });
        let superseded = replaced && revision.is_new_version();
        let left = article.left(seen_before, now);
        staged.article(article, (replaced, superseded), kind, left, now);
        super::add_archive_changes(&mut staged.archives, &revision, now);
    }
    if written_again {
        current.insert(article.id.clone(), article.clone());
    }
    Ok((revision, request))
}

/// Retracts an article; see `Store::retract`.
pub(super) async fn apply_retract(
    conn: &mut SqliteConnection,
    partner: PartnerId,
    retraction: Retraction,
    now: DateTime<Utc>,
) -> Result<Option<(Article, bool)>, StoreError> {
    if let Some(key) = &retraction.request
        && let Some(record) = request_records(conn, partner, &[key.id()])
            .await?
            .remove(key.id())
    {
        if record.key != *key {
            return Err(StoreError::RequestIdReused(key.id().to_owned()));
        }
        return Ok(Some((record.replay(conn, partner).await?, false)));
    }
    let Some(mut article) = select_article(conn, partner, &retraction.id).await? else {
        return Ok(None);
    };
    check_precondition(Some(&article), retraction.expected_etag.as_deref())?;
    let changed = article.retract(retraction.reason, now);
    let mut staged = Staged::default();
    if changed {
        staged.article(&article, (true, false), EventKind::Retracted, None, now);
    }
    if let Some(key) = retraction.request {
        staged.request(&RequestRecord::of(key, &article), partner, now);
    }
    staged.flush(conn).await?;
    if changed && retraction.by_operator {
        // The event just logged: the newest, in this write transaction.
        sqlx::query("INSERT INTO operator_events (seq) SELECT MAX(seq) FROM article_events")
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some((article, changed)))
}

/// Logs the end of every embargo that ended by `now`, at its embargo time, for the articles
/// still published with that embargo; returns how many. The CROSS JOIN makes the few
/// embargoes due the outer loop: joined the other way, SQLite walked every published article.
pub(super) async fn apply_lifts(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let logged = sqlx::query(
        "INSERT INTO article_events
             (partner_id, article_id, version, kind, section, embargoed, event_time)
         SELECT a.partner_id, a.article_id, a.version, ?2, a.section, 0, l.embargo_time
         FROM embargo_lifts AS l CROSS JOIN articles AS a USING (partner_id, article_id)
         WHERE l.embargo_time <= ?1 AND a.state = 1 AND a.embargo_time = l.embargo_time
         ORDER BY l.embargo_time, a.partner_id, a.article_id",
    )
    .bind(nanos(now))
    .bind(kind_code(EventKind::EmbargoLifted))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM embargo_lifts WHERE embargo_time <= ?")
        .bind(nanos(now))
        .execute(&mut *conn)
        .await?;
    Ok(logged)
}

/// Forgets the request ids recorded before `before`.
pub(super) async fn forget_requests(
    conn: &mut SqliteConnection,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM request_ids WHERE create_time < ?")
        .bind(nanos(before))
        .execute(conn)
        .await?
        .rows_affected())
}

/// Sets the database's `user_version` to what it holds: the header page is written again,
/// unchanged, so that the commit appends it to the WAL and syncs it, as any write does.
pub(super) async fn probe_write(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(&format!("PRAGMA user_version = {version}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Fails unless `expected` is absent or the etag partners see of `existing`.
pub(super) fn check_precondition(
    existing: Option<&Article>,
    expected: Option<&str>,
) -> Result<(), StoreError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match existing {
        Some(article) if article.resource_etag() == expected => Ok(()),
        Some(article) => Err(StoreError::EtagMismatch(format!(
            "the article's etag is {:?}, not {expected:?}: it changed since it was read",
            article.resource_etag()
        ))),
        None => Err(StoreError::EtagMismatch(format!(
            "etag {expected:?} was given, but there is no such article"
        ))),
    }
}

/// Begins the writer's transaction, taking the write lock at once.
pub(super) const BEGIN: &str = "BEGIN IMMEDIATE;";

/// A partner's stored articles with these ids, by id, and with `wants_holder` the
/// partner's row ([`WriteChecks::Remembered`]; `None` when there is none), read in one
/// command after the statements of `prefix` (which take no parameters and return no rows).
async fn select_articles_after(
    conn: &mut SqliteConnection,
    prefix: &str,
    partner: PartnerId,
    ids: &[&str],
    wants_holder: bool,
) -> Result<(HashMap<ArticleId, Article>, Option<Holder>), StoreError> {
    use sqlx::{Either, Row};
    use tokio_stream::StreamExt;
    let holder_sql = match wants_holder {
        true => format!("{};", partners::holder_sql("?1")),
        false => String::new(),
    };
    let query = format!(
        "{prefix} {holder_sql} SELECT {ARTICLE_COLUMNS} FROM articles
         WHERE partner_id = ?1 AND article_id IN (SELECT value FROM json_each(?2))"
    );
    let query = sqlx::query(&query)
        .bind(partner.0)
        .bind(serde_json::to_string(ids).expect("strings always serialise"));
    // One command for both statements: the partner's row is the only one with a token.
    let mut steps = sqlx::Executor::fetch_many(conn, query);
    let (mut current, mut holder) = (HashMap::with_capacity(ids.len()), None);
    while let Some(step) = steps.next().await {
        if let Either::Right(row) = step? {
            if row.try_column("token_hash").is_ok() {
                holder = Some(partners::holder_from_row(&row)?);
            } else {
                let article = article_from_row(&row)?;
                current.insert(article.id.clone(), article);
            }
        }
    }
    Ok((current, holder))
}

/// Rows of `articles` written by one `INSERT` (28 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 64;

/// Every column but the key set from the row being inserted: an update, not a delete and
/// insert, for a stored article, so that the triggers that count each feed's articles
/// (migration 0007) see a new article once and a moved one as a move.
pub(super) static UPDATES: LazyLock<String> = LazyLock::new(|| {
    ARTICLE_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| !matches!(*c, "partner_id" | "article_id"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Adds the statements that insert or update the rows of these articles: bound
/// parameters, `ROWS_PER_INSERT` rows per statement.
fn write_articles<'q>(script: &mut Script<'q>, articles: &'q [Article]) -> Result<(), StoreError> {
    let columns = ARTICLE_COLUMNS.split(',').count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    for chunk in articles.chunks(ROWS_PER_INSERT) {
        script.statement(&format!(
            "INSERT INTO articles ({ARTICLE_COLUMNS}) VALUES {}
             ON CONFLICT (partner_id, article_id) DO UPDATE SET {}",
            vec![row.as_str(); chunk.len()].join(", "),
            UPDATES.as_str()
        ));
        for a in chunk {
            let c = &a.content;
            script.bind(a.partner.0)?;
            script.bind(a.id.as_str())?;
            script.bind(a.guid.as_str())?;
            script.bind(c.section.as_str())?;
            script.bind(state_code(a.state))?;
            script.bind(c.title.as_str())?;
            script.bind(c.subtitle.as_str())?;
            script.bind(c.kicker.as_str())?;
            script.bind(json(&c.authors))?;
            script.bind(c.summary.as_str())?;
            script.bind(c.content_html.as_str())?;
            script.bind(c.content_text.as_deref())?;
            script.bind(json(&c.tags))?;
            script.bind(c.canonical_url.as_deref())?;
            script.bind(nanos(c.publish_time))?;
            script.bind(c.update_time.map(nanos))?;
            script.bind(nanos(a.updated))?;
            script.bind(c.expire_time.map(nanos))?;
            script.bind(nanos(a.create_time))?;
            script.bind(nanos(a.change_time))?;
            script.bind(a.retract_time.map(nanos))?;
            script.bind(a.retract_reason.as_str())?;
            script.bind(a.etag.as_str())?;
            script.bind(c.embargo_time.map(nanos))?;
            script.bind(json(&c.media))?;
            script.bind(c.language.as_deref())?;
            script.bind(i64::from(a.version))?;
            script.bind(a.shown_change_time.map(nanos))?;
        }
    }
    Ok(())
}

/// Statements sent to the connection as one command, their anonymous parameters bound in
/// order across all of them; they run in order, and the first that fails ends the script.
#[derive(Default)]
pub(super) struct Script<'q> {
    sql: String,
    args: SqliteArguments<'q>,
}

impl<'q> Script<'q> {
    /// Appends a statement; its `?` parameters take the next values bound.
    pub(super) fn statement(&mut self, sql: &str) {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
    }

    /// Binds the next parameter.
    pub(super) fn bind<T>(&mut self, value: T) -> Result<(), StoreError>
    where
        T: 'q + Encode<'q, Sqlite> + Type<Sqlite>,
    {
        self.args
            .add(value)
            .map_err(|e| StoreError::from(sqlx::Error::Encode(e)))
    }

    /// Runs the statements, if any.
    async fn run(self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        if !self.sql.is_empty() {
            sqlx::query_with(&self.sql, self.args).execute(conn).await?;
        }
        Ok(())
    }

    /// Runs the statements, then commits the writer's transaction, and returns the newest
    /// event it leaves, read in the same command just before the commit (the writer holds
    /// the write lock, so that is the head once committed).
    pub(super) async fn commit_reading_event_head(
        mut self,
        conn: &mut SqliteConnection,
    ) -> Result<u64, StoreError> {
        self.statement(EVENT_HEAD);
        self.statement("COMMIT");
        let seq: Vec<i64> = sqlx::query_scalar_with(&self.sql, self.args)
            .fetch_all(conn)
            .await?;
        Ok(head_of(seq.first().copied()))
    }
}

/// The rows a job writes, gathered so that each table gets few statements per flush. It
/// holds at most one row per article: writing an article twice needs a flush in between.
#[derive(Default)]
struct Staged {
    /// The new `articles` rows.
    articles: Vec<Article>,
    keys: HashSet<(PartnerId, ArticleId)>,
    /// True when one of the articles has a stored row, whose names and pending embargo
    /// lift must go; new articles have none.
    replaced: bool,
    /// Articles whose stored row becomes a past version before being replaced.
    superseded: Vec<(i64, String)>,
    /// `(name, partner, article)` rows of `article_authors` and `article_tags`.
    authors: Vec<(String, i64, String)>,
    tags: Vec<(String, i64, String)>,
    /// `article_events` rows.
    events: Vec<EventRow>,
    /// `request_ids` rows, serialised.
    requests: Vec<String>,
    /// Embargoes still running among the articles written: partner, article, end.
    lifts: Vec<(i64, String, i64)>,
    /// Rows of `feed_sizes` whose archives the writes changed ([`super::add_archive_changes`]).
    archives: super::ArchiveChanges,
    /// Articles to an archive page, as the feeds link them (0: not known, not dated).
    page: usize,
    /// Audit entries of the job, written last.
    audit: Vec<AuditEntry>,
}

/// An `article_events` row: partner, article, version, kind, section, embargoed, time, and
/// where the write took the article out of view (section, and whether an embargo ran).
type EventRow = (
    i64,
    String,
    u32,
    i64,
    String,
    bool,
    i64,
    Option<String>,
    bool,
);

impl Staged {
    /// True when the partner's article `id` already has a row here.
    fn holds(&self, partner: PartnerId, id: &ArticleId) -> bool {
        self.keys.contains(&(partner, id.clone()))
    }

    /// Stages the article's new row, its names, its event and its pending embargo lift;
    /// `replaced` when it has a stored row, `superseded` when that row becomes a past
    /// version, `left` where the write took it out of view ([`Article::left`]).
    fn article(
        &mut self,
        a: &Article,
        (replaced, superseded): (bool, bool),
        kind: EventKind,
        left: Option<Seen>,
        now: DateTime<Utc>,
    ) {
        let (partner, id) = (a.partner.0, a.id.to_string());
        self.keys.insert((a.partner, a.id.clone()));
        self.replaced |= replaced;
        self.articles.push(a.clone());
        if superseded {
            self.superseded.push((partner, id.clone()));
        }
        let names = |list: &[String]| {
            list.iter()
                .map(|name| (name.clone(), partner, id.clone()))
                .collect::<Vec<_>>()
        };
        self.authors.extend(names(&a.content.authors));
        self.tags.extend(names(&a.content.tags));
        let embargoed = a.content.is_embargoed(now);
        self.events.push((
            partner,
            id.clone(),
            a.version,
            kind_code(kind),
            a.content.section.to_string(),
            embargoed,
            nanos(now),
            left.as_ref().map(|s| s.section.to_string()),
            left.is_some_and(|s| s.embargoed),
        ));
        if let (ArticleState::Published, Some(end), true) =
            (a.state, a.content.embargo_time, embargoed)
        {
            self.lifts.push((partner, id, nanos(end)));
        }
    }

    /// Stages the record of a request id.
    fn request(&mut self, record: &RequestRecord, partner: PartnerId, now: DateTime<Utc>) {
        self.requests
            .push(serde_json::to_string(&record.row(partner, now)).expect("rows always serialise"));
    }

    /// Nothing staged yet, for feeds with archive pages of `page` articles.
    fn for_pages_of(page: usize) -> Self {
        Self {
            page,
            ..Self::default()
        }
    }

    /// Writes every staged row, with one command, and starts afresh.
    async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        self.finish(conn, Span::Inside).await.map(drop)
    }

    /// Writes every staged row and, when the job is the whole transaction, commits it in
    /// the same command: then returns the newest event.
    async fn finish(
        &mut self,
        conn: &mut SqliteConnection,
        span: Span,
    ) -> Result<Option<u64>, StoreError> {
        // What is staged next (after a flush in the middle of a job) goes to the same feeds.
        let staged = std::mem::replace(self, Staged::for_pages_of(self.page));
        let script = staged.script()?;
        match span {
            Span::Inside => script.run(conn).await.map(|()| None),
            Span::Whole => script.commit_reading_event_head(conn).await.map(Some),
        }
    }

    /// The statements that write every staged row.
    fn script(&self) -> Result<Script<'_>, StoreError> {
        let mut script = Script::default();
        if !self.superseded.is_empty() {
            script.statement(&format!(
                "INSERT INTO article_versions ({VERSION_COLUMNS})
                 SELECT {VERSION_COLUMNS} FROM articles
                 WHERE (partner_id, article_id) IN
                     (SELECT value ->> 0, value ->> 1 FROM json_each(?))"
            ));
            script.bind(json(&self.superseded))?;
        }
        if !self.articles.is_empty() {
            write_articles(&mut script, &self.articles)?;
            let keys: Vec<(i64, &str)> =
                self.keys.iter().map(|(p, id)| (p.0, id.as_str())).collect();
            let keys = json(&keys);
            for (table, rows) in [
                ("article_authors", &self.authors),
                ("article_tags", &self.tags),
            ] {
                if self.replaced {
                    script.statement(&format!(
                        "DELETE FROM {table} WHERE (partner_id, article_id) IN
                             (SELECT value ->> 0, value ->> 1 FROM json_each(?))"
                    ));
                    script.bind(keys.clone())?;
                }
                if !rows.is_empty() {
                    // Each name row carries its article's state, feed times, GUID and
                    // create time (migrations 0007, 0016 and 0021), copied from the row
                    // just written.
                    script.statement(&format!(
                        "INSERT OR IGNORE INTO {table} (name, partner_id, article_id, guid,
                             state, publish_time, expire_time, embargo_time, change_time,
                             retract_time, shown_change_time, create_time)
                         SELECT n.value ->> 0, a.partner_id, a.article_id, a.guid, a.state,
                                a.publish_time, a.expire_time, a.embargo_time, a.change_time,
                                a.retract_time, a.shown_change_time, a.create_time
                         FROM json_each(?) AS n JOIN articles AS a
                             ON a.partner_id = n.value ->> 1 AND a.article_id = n.value ->> 2"
                    ));
                    script.bind(json(rows))?;
                }
            }
            if self.replaced {
                script.statement(
                    "DELETE FROM embargo_lifts WHERE (partner_id, article_id) IN
                         (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
                );
                script.bind(keys)?;
            }
            if !self.lifts.is_empty() {
                script.statement(
                    "INSERT INTO embargo_lifts (partner_id, article_id, embargo_time)
                     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
                );
                script.bind(json(&self.lifts))?;
            }
            script.statement(
                "INSERT INTO article_events (partner_id, article_id, version, kind, section,
                     embargoed, event_time, left_section, left_embargoed)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                        value ->> 5, value ->> 6, value ->> 7, value ->> 8
                 FROM json_each(?) ORDER BY key",
            );
            script.bind(json(&self.events))?;
        }
        if !self.requests.is_empty() {
            script.statement(
                "INSERT INTO request_ids (partner_id, request_id, fingerprint, article_id,
                     version, state, retract_time, retract_reason, create_time)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                        value ->> 5, value ->> 6, value ->> 7, value ->> 8
                 FROM json_each(?)",
            );
            script.bind(format!("[{}]", self.requests.join(",")))?;
        }
        let moved = |m: &&super::ArchiveChange| m.time.is_some() || m.shown.is_some();
        if self.archives.values().any(|m| moved(&m)) {
            // After the names: their triggers have made the rows of the feeds joined.
            // SQLite's max and min of two are NULL when either is: the coalesces keep the
            // one that is not.
            script.statement(
                "INSERT INTO feed_sizes (kind, name, articles, shift_time, shift_from,
                     shown_shift_time)
                 SELECT value ->> 0, value ->> 1, 0, value ->> '$[2].time',
                        value ->> '$[2].from', value ->> '$[2].shown'
                 FROM json_each(?) WHERE true
                 ON CONFLICT (kind, name) DO UPDATE SET
                     shift_time = coalesce(max(shift_time, excluded.shift_time),
                                           shift_time, excluded.shift_time),
                     shift_from = coalesce(min(shift_from, excluded.shift_from),
                                           shift_from, excluded.shift_from),
                     shown_shift_time = coalesce(max(shown_shift_time, excluded.shown_shift_time),
                                                 shown_shift_time, excluded.shown_shift_time)",
            );
            let rows: Vec<_> = self
                .archives
                .iter()
                .filter(|(_, moves)| moved(moves))
                .map(|((kind, name), moves)| (kind, name, moves))
                .collect();
            script.bind(json(&rows))?;
        }
        let resized: Vec<_> = self
            .archives
            .iter()
            .filter(|(_, moves)| moves.added != 0)
            .map(|((kind, name), moves)| (kind, name, moves.added, moves.resized))
            .collect();
        if resized.iter().any(|(_, _, added, _)| *added > 0) {
            // A name given its first article now is stored now (`first_stored`, migration
            // 0022): of names whose slugs collide, the one stored first keeps the folder.
            script.statement(
                "UPDATE feed_sizes SET first_stored = ch.at
                 FROM (SELECT value ->> 0 AS kind, value ->> 1 AS name, value ->> 3 AS at
                       FROM json_each(?) WHERE value ->> 2 > 0) AS ch
                 WHERE feed_sizes.kind = ch.kind AND feed_sizes.name = ch.name
                   AND feed_sizes.first_stored IS NULL",
            );
            script.bind(json(&resized))?;
        }
        if !resized.is_empty() && self.page > 0 {
            // The counting triggers have run: `articles` is the size after this script. A
            // feed whose number of archive pages changed got another `prev-archive` link,
            // dated by the write even when what filled or emptied a page is out of view.
            script.statement(
                "UPDATE feed_sizes
                 SET shown_shift_time = coalesce(max(shown_shift_time, ch.at), ch.at)
                 FROM (SELECT ? AS page, value ->> 0 AS kind, value ->> 1 AS name,
                              value ->> 2 AS added, value ->> 3 AS at
                       FROM json_each(?)) AS ch
                 WHERE feed_sizes.kind = ch.kind AND feed_sizes.name = ch.name
                   AND feed_sizes.articles / ch.page
                       <> (feed_sizes.articles - ch.added) / ch.page",
            );
            script.bind(self.page as i64)?;
            script.bind(json(&resized))?;
        }
        audit::add_all(&mut script, &self.audit)?;
        Ok(script)
    }
}

fn json(rows: &impl Serialize) -> String {
    serde_json::to_string(rows).expect("rows always serialise")
}
