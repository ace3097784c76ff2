//! The PostgreSQL backend, for several replicas on one database: every write is one
//! transaction on a pooled connection; the locks it takes, not one writer task, keep
//! concurrent writes (of this process or of other replicas) equal to some serial order.
//!
//! The rows are those of the SQLite backend, in the same encodings, and read back by the
//! same decoders (`rows.rs`), so both answer every call with the same values.

use super::article_cache::{ArticleCache, FEED_CACHE_BYTES, Placed};
use super::postgres_partners as partners;
use super::postgres_writes as writes;
use super::rows::Columns;
use super::sqlite::{
    ARTICLE_COLUMNS, ArchiveFilter, NAME_TABLES, NOT_UNSEEN_AFTER_EXPIRY, SHOWN_WHEN_RETRACTED,
    archive_page_of, article_from_row, current_keys, feed_content_of, feed_source, from_nanos,
    nanos,
};
use super::sqlite_audit::entry_from_row;
use super::sqlite_checkpoint::FaultReport;
use super::sqlite_history::{TAKEN_DOWN, VERSIONED_COLUMNS, event_from_row, version_from_row};
use super::sqlite_partners::{partner_from_row, record_from_row};
use super::sqlite_websub::subscription_from_row;
use super::{
    ArchivePage, ArticleWrite, CallRate, DocumentDate, EventFilter, FeedContent, ListCursor,
    NewPartner, NewToken, Retraction, Store, StoreError, WriteChecks,
};
use crate::domain::{
    Actor, Article, ArticleEvent, ArticleId, AuditEntry, AuditFilter, FeedScope, Partner,
    PartnerId, PartnerName, PartnerRecord, Revision, RightsChange, SectionSlug, TokenHash,
    VersionSummary,
};
use crate::websub::{Callback, Subscription, Topic};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The channel a commit that logs events notifies, so every replica's `event_head` follows.
pub(super) const EVENTS_CHANNEL: &str = "feedpub_events";
/// How often a transaction that lost a race (deadlock, serialization failure) is run again.
const RETRIES: u32 = 8;
/// How often a transaction that found PostgreSQL's lock table full is run again, each time
/// after a pause ([`lock_table_pause`]): the transactions holding the table's locks
/// release them at their commit, within a chunk's time.
const LOCK_TABLE_RETRIES: u32 = 12;
/// How often the newest event is read even without a notification (a lost connection).
const HEAD_POLL: Duration = Duration::from_secs(5);

/// PostgreSQL storage shared by any number of feedpub processes.
pub struct PostgresStore {
    /// Articles to an archive page, as the feeds link them ([`Store::set_archive_page`]).
    archive_page: std::sync::atomic::AtomicUsize,
    pool: PgPool,
    head: Arc<watch::Sender<u64>>,
    event_head: watch::Receiver<u64>,
    /// Follows the other replicas' events; stopped by `close`.
    follower: Mutex<Option<tokio::task::AbortHandle>>,
    /// Names this process in the events it logs (`article_events.origin`).
    origin: String,
    /// Articles the feeds' reads decoded, for the next regeneration, by partner and article
    /// id. Each process keeps its own: an entry is used only in the version (change time and
    /// GUID) the feed's keys name in the read's snapshot, so no replica serves an article
    /// another has changed since.
    feed_articles: ArticleCache<ArticleKey>,
    /// Where the follower reports that the database is out of reach, once the service
    /// gives it ([`Store::report_faults_to`]).
    faults: FaultReport,
}

/// An article's key in the feed cache: its partner's id and its own.
type ArticleKey = (i64, String);

/// A transaction on a connection of the pool, which goes back to the pool only once the
/// transaction has ended: dropped before (its call cancelled by the partner's deadline or
/// hang-up, or the server stopping), it closes its connection, and PostgreSQL rolls the
/// transaction back. (A connection that sqlx's own transaction returns after a `BEGIN` cut
/// off mid-way is still in the transaction, where every call that borrowed it next would
/// run, and fail once it aborted.)
pub(super) struct Tx {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    open: bool,
}

impl Tx {
    /// Begins a transaction with `statement` (`BEGIN`, with its isolation level if any).
    pub(super) async fn begin(pool: &PgPool, statement: &'static str) -> Result<Self, sqlx::Error> {
        let mut tx = Self {
            conn: pool.acquire().await?,
            open: true,
        };
        sqlx::Executor::execute(&mut *tx.conn, statement).await?;
        Ok(tx)
    }

    /// Commits it: the connection goes back to the pool.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    /// Rolls it back: the connection goes back to the pool (closed if that failed).
    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        sqlx::Executor::execute(&mut *self.conn, statement).await?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// Runs `$body` (an expression using `$conn: &mut PgConnection`, giving a future of
/// `Result<T, StoreError>`) in a transaction, committed when it succeeds, and runs it again
/// when it lost a race to another transaction, or, after a pause, when the lock table was
/// full (batch chunks at once each hold a lock per article: some found the table full).
macro_rules! in_transaction {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let mut attempt = 0;
        let mut paused = 0;
        loop {
            let result: Result<_, StoreError> = async {
                let mut tx = Tx::begin(&$store.pool, "BEGIN").await?;
                let value = {
                    let $conn: &mut sqlx::PgConnection = &mut tx;
                    $body.await
                };
                match value {
                    Ok(value) => {
                        tx.commit().await?;
                        Ok(value)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
            .await;
            match result {
                Err(e) if attempt < RETRIES && lost_race(&e) => attempt += 1,
                Err(e) if paused < LOCK_TABLE_RETRIES && lock_table_full(&e) => {
                    paused += 1;
                    tokio::time::sleep(lock_table_pause(paused)).await;
                }
                other => break other,
            }
        }
    }};
}

/// True for the error of a transaction that found PostgreSQL's shared lock table full
/// (`out of shared memory`: it holds `max_locks_per_transaction` times `max_connections`
/// locks in all); aborted, the transaction released every lock it held.
fn lock_table_full(error: &StoreError) -> bool {
    let StoreError::Database(e) = error else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "53200")
}

/// The pause before the `nth` run again of a transaction that found the lock table full:
/// 10 ms, doubled each time up to 1 s, and drawn between half and all of that, so that the
/// transactions that failed together do not try again together.
fn lock_table_pause(nth: u32) -> Duration {
    let most = Duration::from_millis(10 << nth.min(7)).min(Duration::from_secs(1));
    let share = getrandom::u32().unwrap_or(u32::MAX) as f64 / f64::from(u32::MAX);
    most.mul_f64(0.5 + share / 2.0)
}

/// True for the errors PostgreSQL gives a transaction it aborted for a concurrent one.
fn lost_race(error: &StoreError) -> bool {
    let StoreError::Database(e) = error else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40001" || code == "40P01")
}

/// Changes `?1`-style parameters (SQLite's) into `$1`-style ones (PostgreSQL's).
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// As SQLite's `CAME_INTO_VIEW`: a name row whose article has come into view by `$1`.
const CAME_INTO_VIEW: &str = "row.publish_time <= $1
    AND (row.embargo_time IS NULL OR row.embargo_time <= $1)
    AND NOT (row.state = 2
             AND row.retract_time <= GREATEST(row.publish_time, COALESCE(row.embargo_time, 0)))
    AND (row.expire_time IS NULL
         OR (row.expire_time > GREATEST(row.publish_time, COALESCE(row.embargo_time, 0))
             AND row.change_time < row.expire_time))";

/// A partner's allowance shared by every replica, taken from by GCRA (the algorithm of the
/// in-memory limiters a store of its own uses): one row a partner in `table`, holding its
/// theoretical arrival time. Nanoseconds: one unit every `interval` on average, at most
/// `tolerance` ahead of now.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    table: &'static str,
    interval: i64,
    tolerance: i64,
}

impl PostgresStore {
    /// Takes `units` at once from `partner`'s `allowance` (at most what `tolerance` holds):
    /// `None` when they are admitted, else how long until they would be. One statement, so
    /// replicas taking from one partner's allowance at once queue on its row.
    async fn take_from(
        &self,
        allowance: Allowance,
        partner: PartnerId,
        units: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let cost = allowance.interval.saturating_mul(i64::from(units));
        let now = nanos(now);
        let (admitted, tat): (bool, i64) = sqlx::query_as(&format!(
            "INSERT INTO {} AS r (partner_id, tat, admitted) VALUES ($1, $2 + $3, TRUE)
             ON CONFLICT (partner_id) DO UPDATE SET
                 admitted = GREATEST(r.tat, $2) + $3 - $2 <= $4,
                 tat = CASE WHEN GREATEST(r.tat, $2) + $3 - $2 <= $4
                            THEN GREATEST(r.tat, $2) + $3 ELSE r.tat END
             RETURNING admitted, tat",
            allowance.table
        ))
        .bind(partner.0)
        .bind(now)
        .bind(cost)
        .bind(allowance.tolerance)
        .fetch_one(&self.pool)
        .await?;
        if admitted {
            return Ok(None);
        }
        // The earliest instant at which they fit.
        let wait = tat
            .saturating_add(cost)
            .saturating_sub(allowance.tolerance)
            .saturating_sub(now);
        Ok(Some(Duration::from_nanos(
            u64::try_from(wait).unwrap_or(0).max(1),
        )))
    }

    /// How many archive pages of `size` the scope fills, and its shift.
    async fn archive_size(
        &self,
        scope: &FeedScope,
        size: usize,
    ) -> Result<super::ArchiveSize, StoreError> {
        // Kept by every write (`postgres_writes`): no count of the scope's whole history.
        let (kind, name) = super::feed_size_key(scope);
        let row = sqlx::query_as(&numbered(super::FEED_SIZE_SQL))
            .bind(kind)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(super::ArchiveSize::of(row, size))
    }

    /// Connects to the database at `url` (`postgres://…`) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with these options and brings the schema up to date.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let origin = super::new_origin()?;
        // Every connection names this process: the events it logs carry the name. And a
        // transaction of it that waits on this process for longer than
        // `IDLE_IN_TRANSACTION` (a process paused, or cut off from the database by the
        // network) is ended by the server, which releases its locks: rows every write
        // locks (the `all` feed's size, say) would otherwise stop the writes of every
        // replica for as long.
        let options = options.options([
            ("feedpub.origin", origin.as_str()),
            ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION),
        ]);
        reach(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        let (head, event_head) = watch::channel(writes::event_head(&pool).await?);
        let head = Arc::new(head);
        let faults = FaultReport::default();
        let follower = tokio::spawn(follow_events(
            pool.clone(),
            head.clone(),
            EVENTS_CHANNEL,
            HEAD_POLL,
            faults.clone(),
        ))
        .abort_handle();
        Ok(Self {
            archive_page: std::sync::atomic::AtomicUsize::new(crate::config::DEFAULT_MAX_ITEMS),
            pool,
            head,
            event_head,
            follower: Mutex::new(Some(follower)),
            origin,
            feed_articles: ArticleCache::new(FEED_CACHE_BYTES),
            faults,
        })
    }

    /// How many rows feed reads have fetched whole (those not found decoded) and offered to
    /// the cache.
    #[cfg(test)]
    pub(super) fn feed_rows_kept(&self) -> usize {
        self.feed_articles.offered()
    }

    /// `Store::events`, without those this process logged when `skip` is its origin.
    async fn events_from(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
        skip: Option<&str>,
    ) -> Result<Vec<ArticleEvent>, StoreError> {
        let sections: Option<Vec<String>> = filter
            .sections
            .as_ref()
            .map(|sections| sections.iter().map(|s| s.as_str().to_owned()).collect());
        // As in the SQLite store: in view, or told as having left.
        let in_view = "(($3::text[] IS NULL OR e.section = ANY($3))
                        AND (NOT e.embargoed OR $4))";
        let rows = sqlx::query(&format!(
            "SELECT e.seq, e.kind, e.event_time, p.name AS owner, e.left_section,
                    {TAKEN_DOWN}, {in_view} AS in_view, {}
             FROM article_events AS e
             JOIN articles AS a ON a.partner_id = e.partner_id AND a.article_id = e.article_id
             JOIN partners AS p ON p.id = e.partner_id
             LEFT JOIN article_versions AS v ON v.partner_id = e.partner_id
                 AND v.article_id = e.article_id AND v.version = e.version
             WHERE e.seq > $1 AND e.seq <= $2
               AND ({in_view} OR (e.left_section IS NOT NULL
                                  AND ($3::text[] IS NULL OR e.left_section = ANY($3))
                                  AND (NOT e.left_embargoed OR $4)))
               AND ($6::text IS NULL OR e.origin IS DISTINCT FROM $6)
             ORDER BY e.seq LIMIT $5",
            *VERSIONED_COLUMNS
        ))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(until).unwrap_or(i64::MAX))
        .bind(sections)
        .bind(filter.embargoed)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(skip)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Announces the newest event after a commit of this process.
    async fn announce(&self) {
        match writes::event_head(&self.pool).await {
            Ok(seq) => super::raise_event_head(&self.head, seq),
            Err(e) => tracing::error!(error = %e, "cannot read the newest event"),
        }
    }
}

/// Applies the migrations in `migrations/postgres` that the database lacks. Replicas that
/// start together are safe: the migrator holds a database-wide lock while it runs.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let migrator = sqlx::migrate!("src/storage/migrations/postgres");
    migrator
        .run(pool)
        .await
        .map_err(|e| super::migration_failed(e, &migrator))
}

/// How long the server lets a transaction of this process wait for its next statement
/// before it ends the session: far above the time between two statements of any of its
/// transactions (at most milliseconds), far below the request timeout.
const IDLE_IN_TRANSACTION: &str = "10s";

/// How long opening the store waits for its first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects once, within [`CONNECT_TIMEOUT`]: a database out of reach (refused, unknown
/// host, a wrong password) is reported with its cause at once, where a pool would retry for
/// its acquire timeout and then say only that it timed out. Done before opening a pool.
pub(super) async fn reach(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let first = tokio::time::timeout(
        CONNECT_TIMEOUT,
        <sqlx::PgConnection as sqlx::Connection>::connect_with(options),
    )
    .await
    .map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from the database within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ))
    })??;
    let _ = sqlx::Connection::close(first).await;
    Ok(())
}

/// How long a call waits for a connection of the pool (one of 16, or a new one) before it
/// fails with the storage error, UNAVAILABLE to a partner: within the request timeout (30 s
/// by default), so that a partner calling while the database is out of reach learns so, not
/// that its call was cancelled at the request timeout; and long enough for a healthy
/// database under heavy load, where batch streams each hold a connection for a chunk's
/// transaction (5 s was measured too short for 18 streams of large articles beside 64
/// single publishes).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the follower waits for the newest event before it reports the database out of
/// reach (the pool itself waits [`ACQUIRE_TIMEOUT`] for a connection).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps `head` at the newest event any replica committed: as soon as it listens, on every
/// notification of `channel` ([`EVENTS_CHANNEL`]), and every `poll` ([`HEAD_POLL`]) in case
/// one was missed. Each read that fails, or takes longer than [`HEAD_READ_TIMEOUT`],
/// reports the database out of reach to `faults` (`/healthz` degraded, so that a load
/// balancer can take the replica out); the next that succeeds reports it back.
pub(super) async fn follow_events(
    pool: PgPool,
    head: Arc<watch::Sender<u64>>,
    channel: &str,
    poll: Duration,
    faults: FaultReport,
) {
    use crate::health::Component;
    let report = |failure: Option<String>| {
        if let Some(health) = faults.get() {
            match failure {
                Some(e) => health.fault(Component::Replication, e),
                None => health.recovered(Component::Replication),
            }
        }
    };
    // Notifications wake the reads below from a task of their own: a listener whose
    // connection is lost can wait a long time to reconnect, and the reads must go on
    // meanwhile, to find the database out of reach and to report it.
    let notified = Arc::new(tokio::sync::Notify::new());
    let listening = tokio::spawn(listen_for_events(
        pool.clone(),
        channel.to_owned(),
        poll,
        notified.clone(),
    ));
    // Aborted with the follower.
    let _listening = tokio_util::task::AbortOnDropHandle::new(listening);
    // A connection of its own: a pool taken by a burst of writes is no database out of
    // reach.
    let mut own = None;
    loop {
        // Read first: what other replicas committed before this one listened was announced
        // to no one here. Then after a notification, a reconnection or a quiet period.
        let read = tokio::time::timeout(HEAD_READ_TIMEOUT, read_head(&mut own, &pool)).await;
        if !matches!(read, Ok(Ok(_))) {
            own = None;
        }
        match read {
            Ok(Ok(seq)) => {
                super::raise_event_head(&head, seq);
                report(None);
            }
            // Tried again after the next notification or `poll`.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the event head");
                report(Some(format!("cannot read the other replicas' events: {e}")));
            }
            Err(_) => {
                tracing::warn!("no answer for the event head");
                report(Some(format!(
                    "no answer from the database within {} s for the other replicas' events",
                    HEAD_READ_TIMEOUT.as_secs()
                )));
            }
        }
        let _ = tokio::time::timeout(poll, notified.notified()).await;
    }
}

/// The newest event, read on `own` (connected first when it is not, with the options of
/// `pool`).
async fn read_head(own: &mut Option<sqlx::PgConnection>, pool: &PgPool) -> Result<u64, StoreError> {
    let conn = match own {
        Some(conn) => conn,
        None => own.insert(
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&pool.connect_options()).await?,
        ),
    };
    writes::event_head(conn).await
}

/// Listens on `channel` and wakes `notified` on every notification and every
/// reconnection (a notification may have been missed while the connection was down).
async fn listen_for_events(
    pool: PgPool,
    channel: String,
    poll: Duration,
    notified: Arc<tokio::sync::Notify>,
) {
    // A store closed (a command done, a server stopping) closes its pool: no fault then.
    let mut listener = loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await.map(|()| listener)
        };
        match listening.await {
            Ok(listener) => break listener,
            Err(_) if pool.is_closed() => return,
            Err(e) => tracing::warn!(error = %e, "cannot listen for events"),
        }
        tokio::time::sleep(poll).await;
    };
    notified.notify_one();
    loop {
        match listener.try_recv().await {
            Ok(_) => notified.notify_one(),
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "lost the event notifications");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// The statements that read a feed, as `sqlite::FeedSql` (same parameters, the keys binding
/// only the first three), for PostgreSQL: there is no rowid, so an article's key is its
/// partner and article ids, and `GREATEST` skips NULLs where SQLite's `MAX` returns NULL.
struct FeedSql {
    /// `partner_id`, `article_id`, `change_time` and `guid` of the visible articles, in feed
    /// order. Author and tag feeds read them from the name's rows alone.
    keys: String,
    summary: String,
}

impl FeedSql {
    fn of(scope: &FeedScope) -> Self {
        let sqlite = super::sqlite::FeedSql::of(scope);
        let (source, filter3) = feed_source(scope);
        let filter3 = numbered(filter3);
        let keys = numbered(&current_keys(scope, true));
        let last_change = format!(
            "GREATEST(
                 (SELECT MAX(shown_change_time) FROM {source} WHERE {filter3} TRUE),
                 (SELECT MAX(publish_time) FROM {source}
                  WHERE {filter3} state = 1 AND publish_time <= $1
                    AND (embargo_time IS NULL OR embargo_time <= $1)
                    AND {NOT_UNSEEN_AFTER_EXPIRY}),
                 (SELECT MAX(expire_time) FROM {source}
                  WHERE {filter3} expire_time <= $1
                    AND (state = 1 OR retract_time > expire_time)
                    AND {NOT_UNSEEN_AFTER_EXPIRY}),
                 (SELECT MAX(embargo_time) FROM {source}
                  WHERE {filter3} state = 1 AND embargo_time <= $1
                    AND {NOT_UNSEEN_AFTER_EXPIRY}),
                 (SELECT MAX(retract_time) FROM {source}
                  WHERE {filter3} {SHOWN_WHEN_RETRACTED} AND retract_time <= $1 - $4) + $4)"
        );
        let tombstones = without_index_hints(&numbered(&sqlite.tombstones));
        let summary = numbered(&super::sqlite::feed_summary_sql(
            scope,
            &last_change,
            &tombstones,
            "TRUE",
        ));
        Self { keys, summary }
    }
}

/// Whole rows of the articles whose keys `$1` (partner ids) and `$2` (article ids) list,
/// pair by pair (built once: feeds are read on every publish).
fn feed_rows_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles
             WHERE (partner_id, article_id) IN (SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[]))"
        )
    });
    &SQL
}

/// `sql` without SQLite's `INDEXED BY name` clauses: PostgreSQL's planner has statistics
/// and no such syntax.
fn without_index_hints(sql: &str) -> String {
    const HINT: &str = " INDEXED BY ";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(HINT) {
        out.push_str(&rest[..at]);
        let name = &rest[at + HINT.len()..];
        rest = &name[name.find(char::is_whitespace).unwrap_or(name.len())..];
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn report_faults_to(&self, health: &crate::health::Health) {
        let _ = self.faults.set(health.clone());
    }

    async fn add_partner(
        &self,
        partner: NewPartner,
        now: DateTime<Utc>,
    ) -> Result<Partner, StoreError> {
        in_transaction!(self, |conn| partners::add_partner(
            conn,
            partner.clone(),
            now
        ))
    }

    async fn partner_by_token(&self, hash: &TokenHash) -> Result<Option<Partner>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM partners WHERE token_hash = $1 AND revoke_time IS NULL",
            partners::PARTNER_COLUMNS
        ))
        .bind(&hash.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(partner_from_row).transpose()
    }

    async fn partner_by_name(&self, name: &PartnerName) -> Result<Option<Partner>, StoreError> {
        let found = partners::partner_record(&self.pool, name, false).await?;
        Ok(found.filter(|r| r.revoke_time.is_none()).map(|r| r.partner))
    }

    async fn retract(
        &self,
        partner: PartnerId,
        retraction: Retraction,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<(Article, bool)>, StoreError> {
        let result = in_transaction!(self, |conn| writes::retract(
            conn,
            partner,
            retraction.clone(),
            now,
            actor
        ));
        if matches!(result, Ok(Some((_, true)))) {
            self.announce().await;
        }
        result
    }

    async fn article(
        &self,
        partner: PartnerId,
        id: &ArticleId,
    ) -> Result<Option<Article>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE partner_id = $1 AND article_id = $2"
        ))
        .bind(partner.0)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(article_from_row).transpose()
    }

    async fn list_articles(
        &self,
        partner: PartnerId,
        section: Option<&SectionSlug>,
        cursor: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Article>, StoreError> {
        let (after_time, after_id) = match cursor {
            Some(c) => (nanos(c.publish_time), c.id.as_str()),
            None => (i64::MAX, ""),
        };
        let rows = sqlx::query(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles
             WHERE partner_id = $1 AND ($2::text IS NULL OR section = $2)
               AND (publish_time < $3 OR (publish_time = $3 AND ($4 = '' OR article_id < $4)))
             ORDER BY publish_time DESC, article_id DESC LIMIT $5"
        ))
        .bind(partner.0)
        .bind(section.map(SectionSlug::as_str))
        .bind(after_time)
        .bind(after_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(article_from_row).collect()
    }

    async fn feed_content(
        &self,
        scope: &FeedScope,
        now: DateTime<Utc>,
        limit: usize,
        tombstone_window: TimeDelta,
    ) -> Result<FeedContent, StoreError> {
        let window = tombstone_window.num_nanoseconds().unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let value = match scope {
            FeedScope::All => None,
            FeedScope::Section(slug) => Some(slug.as_str()),
            FeedScope::Author(named) | FeedScope::Tag(named) => Some(named.name()),
        };
        static SQL: [std::sync::OnceLock<FeedSql>; 4] = [const { std::sync::OnceLock::new() }; 4];
        let sql = super::per_feed_kind(&SQL, scope, || FeedSql::of(scope));
        // One snapshot for the keys, the summary and the rows the cache lacks, so they agree
        // with each other; begun in one statement with its isolation level.
        let mut tx = Tx::begin(
            &self.pool,
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        )
        .await?;
        let mut query = sqlx::query(&sql.keys).bind(nanos(now)).bind(limit);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let keys = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let key: ArticleKey = (row.value("partner_id")?, row.value("article_id")?);
                Ok((
                    key,
                    from_nanos(row.value("change_time")?),
                    row.value("guid")?,
                ))
            })
            .collect::<Result<Vec<(ArticleKey, DateTime<Utc>, String)>, StoreError>>()?;
        let summary = sqlx::query(&sql.summary)
            .bind(nanos(now))
            .bind(limit)
            .bind(value.unwrap_or(""))
            .bind(window)
            .fetch_all(&mut *tx)
            .await?;
        let cache = &self.feed_articles;
        let mut gathering = cache.gather(keys);
        let rows = if gathering.missing().next().is_none() {
            Vec::new()
        } else {
            let (partners, ids): (Vec<i64>, Vec<&str>) = gathering
                .missing()
                .map(|(partner, id)| (*partner, id.as_str()))
                .unzip();
            sqlx::query(feed_rows_sql())
                .bind(partners)
                .bind(ids)
                .fetch_all(&mut *tx)
                .await?
        };
        tx.commit().await?;
        // Within one snapshot a row can only be missing or another article's by a fault of
        // the database, not a race. A name row out of step with its article gives another
        // version than its key named: the article's row is the truth, shown but not kept.
        let changed =
            |what: &str| StoreError::Corrupt(format!("a feed's {what} within a snapshot"));
        for row in &rows {
            let article = article_from_row(row)?;
            let key = (article.partner.0, article.id.as_str().to_owned());
            if gathering.place(cache, &key, article) == Placed::NotMissing {
                return Err(changed("rows are not those its keys named"));
            }
        }
        let articles = gathering.finish().ok_or_else(|| changed("rows vanished"))?;
        feed_content_of(articles, &summary)
    }

    async fn next_transition(
        &self,
        now: DateTime<Utc>,
        tombstone_window: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT LEAST(
                 (SELECT MIN(publish_time) FROM articles WHERE state = 1 AND publish_time > $1),
                 (SELECT MIN(expire_time) FROM articles WHERE expire_time > $1),
                 (SELECT MIN(embargo_time) FROM articles WHERE state = 1 AND embargo_time > $1),
                 (SELECT MIN(retract_time) FROM articles
                  WHERE {SHOWN_WHEN_RETRACTED} AND retract_time > $1 - $2) + $2)"
        ))
        .bind(nanos(now))
        .bind(tombstone_window.num_nanoseconds().unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(next.map(from_nanos))
    }

    async fn save_subscription(
        &self,
        subscription: Subscription,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        partners::save_subscription(&self.pool, &subscription, address, now).await
    }

    async fn count_subscriptions(
        &self,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Two statements, so that each finds its index.
        let count: i64 = match address {
            None => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM websub_subscriptions WHERE expire_time > $1",
                )
                .bind(nanos(now))
                .fetch_one(&self.pool)
                .await?
            }
            Some(address) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM websub_subscriptions
                     WHERE callback_address = $1 AND expire_time > $2",
                )
                .bind(address)
                .bind(nanos(now))
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn delete_subscription(
        &self,
        topic: &Topic,
        callback: &Callback,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM websub_subscriptions WHERE topic = $1 AND callback = $2")
                .bind(topic.path())
                .bind(callback.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn active_subscriptions(
        &self,
        topic: &Topic,
        callback: Option<&Callback>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query(
            "SELECT topic, callback, secret, verify_time, expire_time FROM websub_subscriptions
             WHERE topic = $1 AND expire_time > $2 AND ($3::text IS NULL OR callback = $3)
             ORDER BY callback",
        )
        .bind(topic.path())
        .bind(nanos(now))
        .bind(callback.map(Callback::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Claims of deliveries a day old are of no use any more.
        sqlx::query("DELETE FROM websub_deliveries WHERE claim_time < $1")
            .bind(nanos(now - TimeDelta::days(1)))
            .execute(&self.pool)
            .await?;
        let done = sqlx::query("DELETE FROM websub_subscriptions WHERE expire_time <= $1")
            .bind(nanos(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(super::FORGET_UNSUBSCRIBED_CLAIMS_SQL)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn archive_page(
        &self,
        scope: &FeedScope,
        page: usize,
        size: usize,
        now: DateTime<Utc>,
    ) -> Result<ArchivePage, StoreError> {
        let super::ArchiveSize { pages, shift } = self.archive_size(scope, size).await?;
        if page == 0 || page > pages || size == 0 {
            return Ok(ArchivePage {
                pages,
                ..ArchivePage::default()
            });
        }
        let (sql, binds, value) = ArchiveFilter::of(scope).page(page, size);
        let sql = numbered(&sql);
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        archive_page_of(&rows, page, (pages, shift), now)
    }

    async fn archive_pages(&self, scope: &FeedScope, size: usize) -> Result<usize, StoreError> {
        Ok(self.archive_size(scope, size).await?.pages)
    }

    fn set_archive_page(&self, size: usize) {
        self.archive_page
            .store(size, std::sync::atomic::Ordering::Relaxed);
    }

    async fn named_scopes(&self, now: DateTime<Utc>) -> Result<Vec<FeedScope>, StoreError> {
        let mut scopes = Vec::new();
        for (table, scope) in NAME_TABLES {
            let names: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT name FROM {table} AS row WHERE {CAME_INTO_VIEW} ORDER BY name"
            ))
            .bind(nanos(now))
            .fetch_all(&self.pool)
            .await?;
            scopes.extend(names.iter().map(|name| scope(name)));
        }
        Ok(scopes)
    }

    async fn first_carried(&self, scopes: &[FeedScope]) -> Result<Option<FeedScope>, StoreError> {
        let Some((table, kind, names)) = super::contenders(scopes) else {
            return Ok(None);
        };
        let sql = super::FIRST_CARRIED_SQL
            .replace("{table}", table)
            .replace("{kind}", kind)
            .replace("{names}", "SELECT unnest($1::text[])");
        let name: Option<String> = sqlx::query_scalar(&sql)
            .bind(&names)
            .fetch_optional(&self.pool)
            .await?;
        Ok(super::contender_named(scopes, name))
    }

    async fn has_feeds(&self, scope: &FeedScope, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(name) = scope.name() else {
            return Ok(true);
        };
        let table = super::sqlite::names_table(scope);
        let found: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {table} AS row WHERE row.name = $2 AND {CAME_INTO_VIEW})"
        ))
        .bind(nanos(now))
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    async fn named_scopes_in_transition(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tombstone_window: TimeDelta,
    ) -> Result<Vec<FeedScope>, StoreError> {
        if until <= after {
            return Ok(Vec::new());
        }
        let window = tombstone_window.num_nanoseconds().unwrap_or(i64::MAX);
        let mut scopes = Vec::new();
        for (table, scope) in NAME_TABLES {
            let names: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT named.name FROM (
                     SELECT partner_id, article_id FROM articles
                         WHERE state = 1 AND publish_time > $1 AND publish_time <= $2
                     UNION SELECT partner_id, article_id FROM articles
                         WHERE expire_time > $1 AND expire_time <= $2
                     UNION SELECT partner_id, article_id FROM articles
                         WHERE embargo_time > $1 AND embargo_time <= $2
                     UNION SELECT partner_id, article_id FROM articles
                         WHERE state = 2 AND retract_time > $1 - $3 AND retract_time <= $2 - $3
                 ) AS due JOIN {table} AS named USING (partner_id, article_id)
                 ORDER BY named.name"
            ))
            .bind(nanos(after))
            .bind(nanos(until))
            .bind(window)
            .fetch_all(&self.pool)
            .await?;
            scopes.extend(names.iter().map(|name| scope(name)));
        }
        Ok(scopes)
    }

    async fn close(&self) {
        let follower = self.follower.lock().ok().and_then(|mut f| f.take());
        if let Some(follower) = follower {
            follower.abort();
        }
        self.pool.close().await;
    }

    async fn partner_records(&self) -> Result<Vec<PartnerRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM partners ORDER BY name",
            partners::PARTNER_COLUMNS
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn partner_record(
        &self,
        name: &PartnerName,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        partners::partner_record(&self.pool, name, false).await
    }

    async fn revoke_partner(
        &self,
        name: &PartnerName,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        in_transaction!(self, |conn| partners::revoke_partner(conn, name, now))
    }

    async fn new_token(
        &self,
        name: &PartnerName,
        token: NewToken,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        in_transaction!(self, |conn| partners::replace_token(
            conn,
            name,
            token.clone(),
            now
        ))
    }

    async fn change_rights(
        &self,
        name: &PartnerName,
        change: RightsChange,
        configured: Vec<SectionSlug>,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        in_transaction!(self, |conn| partners::change_rights(
            conn,
            name,
            change.clone(),
            configured.clone(),
            now
        ))
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        partners::insert_audit(&self.pool, &entry).await
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT time, partner, operation, article_id, peer, outcome, detail FROM audit_log
             WHERE ($1::text IS NULL OR partner = $1) AND ($2::bigint IS NULL OR time >= $2)
             ORDER BY time DESC, id DESC LIMIT $3",
        )
        .bind(filter.partner.as_ref().map(|p| p.as_str()))
        .bind(filter.since.map(nanos))
        .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn publish_checked(
        &self,
        partner: PartnerId,
        checks: &WriteChecks,
        writes: Vec<ArticleWrite>,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Vec<Result<Revision, StoreError>>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let page = self.archive_page.load(std::sync::atomic::Ordering::Relaxed);
        let results = in_transaction!(self, |conn| writes::publish(
            conn,
            (partner, page),
            checks,
            writes.clone(),
            now,
            actor
        ))?;
        let logged = results
            .iter()
            .any(|r| matches!(r, Ok(Revision::Created(_)) | Ok(Revision::Updated { .. })));
        if logged {
            self.announce().await;
        }
        Ok(results)
    }

    async fn article_version(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        version: u32,
    ) -> Result<Option<Article>, StoreError> {
        writes::article_at(&self.pool, partner, id, version).await
    }

    async fn article_versions(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        before: Option<u32>,
        limit: usize,
    ) -> Result<Vec<VersionSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, etag, title, updated FROM (
                 SELECT version, etag, title, updated FROM articles
                     WHERE partner_id = $1 AND article_id = $2
                 UNION ALL
                 SELECT version, etag, title, updated FROM article_versions
                     WHERE partner_id = $1 AND article_id = $2) AS every_version
             WHERE version < $3 ORDER BY version DESC LIMIT $4",
        )
        .bind(partner.0)
        .bind(id.as_str())
        .bind(before.map_or(i64::MAX, i64::from))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn events(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<ArticleEvent>, StoreError> {
        self.events_from(after, until, filter, limit, None).await
    }

    async fn events_of_others(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<ArticleEvent>, StoreError> {
        self.events_from(after, until, filter, limit, Some(&self.origin))
            .await
    }

    fn event_head(&self) -> watch::Receiver<u64> {
        self.event_head.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// A chunk's transaction holds a lock per article and per request id to its commit,
    /// in a lock table all connections share (`max_locks_per_transaction` times
    /// `max_connections`, 6,400 by default): at 100 articles, 16 chunks at once, a whole
    /// pool's, hold at most 3,200.
    fn batch_chunk(&self) -> usize {
        100
    }

    // The `etag` column holds the document's key: its entity tag and the stored change it
    // shows (see `Store::claim_delivery`).
    async fn claim_delivery(
        &self,
        topic: &Topic,
        document: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A claim made is also the topic's last (see `Store::last_claims`), in one statement.
        let claimed: i64 = sqlx::query_scalar(
            "WITH claimed AS (
                 INSERT INTO websub_deliveries
                     (topic, etag, claim_time, lease_until, done, claimant)
                 VALUES ($1, $2, $3, $4, FALSE, $5)
                 ON CONFLICT (topic, etag) DO UPDATE SET
                     claim_time = excluded.claim_time, lease_until = excluded.lease_until,
                     claimant = excluded.claimant
                 WHERE NOT websub_deliveries.done AND websub_deliveries.lease_until <= $3
                 RETURNING topic, etag
             ), kept AS (
                 INSERT INTO websub_last_claims (topic, document)
                 SELECT topic, etag FROM claimed
                 ON CONFLICT (topic) DO UPDATE SET document = excluded.document
             )
             SELECT count(*) FROM claimed",
        )
        .bind(topic.path())
        .bind(document)
        .bind(nanos(now))
        .bind(nanos(until))
        .bind(&self.origin)
        .fetch_one(&self.pool)
        .await?;
        Ok(claimed == 1)
    }

    async fn atom_id_base(&self, proposed: &str) -> Result<String, StoreError> {
        // Replicas asking at once: the first insert stands, and every one reads it.
        sqlx::query(
            "INSERT INTO site_identity (one, atom_id_base) VALUES (1, $1)
             ON CONFLICT (one) DO NOTHING",
        )
        .bind(proposed)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT atom_id_base FROM site_identity WHERE one = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn date_document(
        &self,
        name: &str,
        etag: &str,
        now: DateTime<Utc>,
    ) -> Result<DocumentDate, StoreError> {
        // The row is made first (an empty entity tag: no version), then locked: replicas
        // dating a document at once take turns, and the second finds the first's version.
        let mut tx = Tx::begin(&self.pool, "BEGIN").await?;
        sqlx::query(
            "INSERT INTO document_dates (name, etag, last_modified) VALUES ($1, '', 0)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let recorded: super::RecordedDate = sqlx::query_as(
            "SELECT etag, last_modified, replaced FROM document_dates WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let recorded = (!recorded.0.is_empty()).then_some(recorded);
        let (dated, record) = DocumentDate::of(recorded, etag, now);
        if record {
            sqlx::query(
                "UPDATE document_dates SET etag = $2, last_modified = $3, replaced = $4
                 WHERE name = $1",
            )
            .bind(name)
            .bind(etag)
            .bind(nanos(dated.date))
            .bind(dated.replaced.map(nanos))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(dated)
    }

    async fn last_claims(&self) -> Result<Vec<(Topic, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT topic, document FROM websub_last_claims ORDER BY topic")
                .fetch_all(&self.pool)
                .await?;
        super::claimed_deliveries(rows)
    }

    async fn renew_delivery(
        &self,
        topic: &Topic,
        document: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE websub_deliveries SET lease_until = $3
             WHERE topic = $1 AND etag = $2 AND claimant = $4 AND NOT done",
        )
        .bind(topic.path())
        .bind(document)
        .bind(nanos(until))
        .bind(&self.origin)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn finish_delivery(&self, topic: &Topic, document: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE websub_deliveries SET done = TRUE WHERE topic = $1 AND etag = $2")
            .bind(topic.path())
            .bind(document)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lapsed_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Topic, String)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT topic, etag FROM websub_deliveries
             WHERE NOT done AND lease_until <= $1 ORDER BY lease_until, topic, etag LIMIT $2",
        )
        .bind(nanos(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        super::claimed_deliveries(rows)
    }

    async fn take_call(
        &self,
        partner: PartnerId,
        rate: CallRate,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let interval = 1_000_000_000 / i64::from(rate.per_second.get());
        let allowance = Allowance {
            table: "call_rates",
            interval,
            tolerance: interval.saturating_mul(i64::from(rate.burst.get())),
        };
        self.take_from(allowance, partner, 1, now).await
    }

    async fn take_new_names(
        &self,
        partner: PartnerId,
        names: std::num::NonZeroU32,
        per_hour: std::num::NonZeroU32,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let interval = 3_600_000_000_000 / i64::from(per_hour.get());
        let allowance = Allowance {
            table: "name_allowances",
            interval,
            tolerance: interval.saturating_mul(i64::from(per_hour.get())),
        };
        self.take_from(allowance, partner, names.get(), now).await
    }

    async fn lift_embargoes(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let lifted = in_transaction!(self, |conn| writes::lift_embargoes(conn, now))?;
        if lifted > 0 {
            self.announce().await;
        }
        Ok(lifted)
    }

    async fn next_embargo_lift(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(embargo_time) FROM embargo_lifts")
            .fetch_one(&self.pool)
            .await?;
        Ok(next.map(from_nanos))
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        // A transaction id makes the commit write (and flush) a commit record.
        let mut tx = Tx::begin(&self.pool, "BEGIN").await?;
        sqlx::query("SELECT txid_current()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM request_ids WHERE create_time < $1")
                .bind(nanos(before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    /// The pauses before running again a transaction that found the lock table full grow
    /// from 5-10 ms to 0.5-1 s, and differ between transactions that failed together.
    #[test]
    fn lock_table_pauses_grow_to_a_second_and_are_spread() {
        use std::time::Duration;
        for nth in 1..=super::LOCK_TABLE_RETRIES {
            let most = Duration::from_millis((10 << nth.min(7)).min(1000));
            let pauses: Vec<Duration> = (0..50).map(|_| super::lock_table_pause(nth)).collect();
            assert!(
                pauses.iter().all(|p| *p >= most / 2 && *p <= most),
                "{nth}: {pauses:?}"
            );
            assert!(pauses.iter().any(|p| *p != pauses[0]), "{nth}: {pauses:?}");
        }
        assert_eq!(
            super::lock_table_pause(super::LOCK_TABLE_RETRIES).max(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    /// A call cut off in the middle of a transaction (a partner's deadline, a hang-up) at
    /// any point, its `BEGIN` not yet answered included, leaves no connection in the pool
    /// inside a transaction: every connection the pool lends after is outside one, where
    /// the next call's statements run on their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_cut_off_anywhere_leaves_no_connection_of_the_pool_inside_it() {
        use crate::storage::Store;
        for backend in crate::storage::contract_tests::backends().await {
            if let Some(store) = backend.postgres() {
                let now = chrono::Utc::now();
                let mut cut = 0;
                for n in 0..90_u64 {
                    let mut call = std::pin::pin!(store.date_document("cut", "etag", now));
                    // Dropped once it has waited `waits` times (for a connection, then for
                    // each statement's answer): at every step of it in turn.
                    let waits = n % 6 + 1;
                    let mut waited = 0;
                    let finished = std::future::poll_fn(|cx| {
                        match std::future::Future::poll(call.as_mut(), cx) {
                            std::task::Poll::Ready(_) => std::task::Poll::Ready(true),
                            std::task::Poll::Pending if waited == waits => {
                                std::task::Poll::Ready(false)
                            }
                            std::task::Poll::Pending => {
                                waited += 1;
                                std::task::Poll::Pending
                            }
                        }
                    })
                    .await;
                    if !finished {
                        cut += 1;
                    }
                    // Connections dropped go back (or close) on a task of their own. Every
                    // one the pool then holds is looked at, before a call could end what
                    // a cut one left open.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let mut lent = Vec::new();
                    while store.pool.num_idle() > 0 {
                        let mut conn = store.pool.acquire().await.unwrap();
                        // A savepoint is refused outside a transaction, and only there.
                        let probe = sqlx::Executor::execute(&mut *conn, "SAVEPOINT probe").await;
                        let refused = probe.err().map(|e| e.to_string()).unwrap_or_default();
                        assert!(
                            refused.contains("can only be used in transaction blocks"),
                            "call {n}, cut after {waits} waits, left its connection inside \
                             a transaction: {refused:?}"
                        );
                        lent.push(conn);
                    }
                }
                assert!(cut > 30, "only {cut} calls were cut off");
                // And calls made after go through.
                let (a, b) = tokio::join!(
                    store.date_document("whole-a", "etag", now),
                    store.date_document("whole-b", "etag", now),
                );
                a.unwrap();
                b.unwrap();
            }
            backend.finish().await;
        }
    }

    /// A transaction whose process stops talking in the middle of it (paused, or cut off
    /// by the network) is ended by the server, its locks released: the writes waiting on
    /// them, of every replica, go on instead of waiting as long as it is away.
    #[tokio::test]
    async fn a_transaction_left_idle_is_ended_and_frees_the_writes_waiting_on_its_locks() {
        use crate::storage::Store;
        for backend in crate::storage::contract_tests::backends().await {
            if let Some(store) = backend.postgres() {
                let now = chrono::Utc::now();
                store.date_document("held", "a", now).await.unwrap();
                // A write of a process that then goes quiet, its row locked.
                let mut stuck = super::Tx::begin(&store.pool, "BEGIN").await.unwrap();
                sqlx::query("SELECT 1 FROM document_dates WHERE name = 'held' FOR UPDATE")
                    .execute(&mut *stuck)
                    .await
                    .unwrap();
                let waiting = store.date_document("held", "b", now);
                let dated = tokio::time::timeout(std::time::Duration::from_secs(60), waiting)
                    .await
                    .expect("the write waiting on the lock goes on");
                dated.unwrap();
                let ended = sqlx::query("SELECT 1").execute(&mut *stuck).await;
                let message = ended.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(message.contains("idle-in-transaction"), "{message:?}");
            }
            backend.finish().await;
        }
    }

    /// A database out of reach is reported with its cause (the pool alone would say only
    /// that it timed out waiting for a connection, after 30 s).
    #[tokio::test]
    async fn a_database_out_of_reach_is_reported_with_its_cause() {
        // Port 1 on the loopback: nothing listens there.
        let refused = super::PostgresStore::connect("postgres://feedpub:x@127.0.0.1:1/feedpub")
            .await
            .err()
            .expect("nothing listens on port 1");
        let message = format!("{refused}: {:?}", refused);
        assert!(message.to_lowercase().contains("refused"), "{message}");
        assert!(!message.contains("timed out"), "{message}");
    }
}
