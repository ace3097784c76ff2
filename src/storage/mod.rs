//! Durable storage behind a narrow trait that speaks domain types; one file per backend.

mod article_cache;
#[cfg(test)]
mod contract_tests;
mod postgres;
mod postgres_partners;
mod postgres_writes;
mod rows;
mod sqlite;
mod sqlite_audit;
mod sqlite_checkpoint;
#[cfg(test)]
mod sqlite_feed_tests;
mod sqlite_history;
mod sqlite_partners;
mod sqlite_websub;
mod sqlite_writes;
pub mod transfer;

pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, create_data_folder};

use crate::domain::{
    Actor, Article, ArticleEvent, ArticleId, AuditEntry, AuditFilter, FeedScope, Partner,
    PartnerId, PartnerName, PartnerRecord, Refusal, RequestKey, Revision, Rights, RightsChange,
    SectionSlug, SentContent, TokenHash, Tombstone, VersionSummary,
};
use crate::websub::{Callback, Subscription, Topic};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use std::sync::Arc;

/// Opens the store the settings name: PostgreSQL at `database_url` when one is given, else
/// SQLite in `data_dir`; either way with its schema brought up to date.
pub async fn open(server: &crate::config::Server) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &server.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url.expose()).await?),
        None => Arc::new(SqliteStore::open(&server.data_dir).await?),
    })
}

/// Where the settings keep data, for messages: the database URL without its password, or
/// the data folder.
pub fn location(server: &crate::config::Server) -> String {
    match &server.database_url {
        Some(url) => url.redacted(),
        None => server.data_dir.display().to_string(),
    }
}

/// Why running `migrator` failed: a database that holds a migration it does not know was
/// migrated by a newer feedpub ([`StoreError::UnknownSchema`]).
fn migration_failed(
    e: sqlx::migrate::MigrateError,
    migrator: &sqlx::migrate::Migrator,
) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(found) => StoreError::UnknownSchema {
            found,
            known: newest_migration(migrator),
        },
        e => StoreError::Migrate(Arc::new(e)),
    }
}

/// The newest of `migrator`'s migrations: the schema version this feedpub writes.
fn newest_migration(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique name or key is already taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The database refused or failed the operation.
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    /// The data folder or the database file could not be made.
    #[error("cannot create {}: {error}", .path.display())]
    Create {
        path: std::path::PathBuf,
        error: Arc<std::io::Error>,
    },
    /// The database file, or the folder where SQLite makes its log, may not be written (a
    /// read-only mount, permissions): what SQLite reports only as a file it cannot open.
    #[error("cannot write {}: {error}", .path.display())]
    Unwritable {
        path: std::path::PathBuf,
        error: Arc<std::io::Error>,
    },
    /// The database file is empty: emptied (truncated, or copied before it was written), as
    /// no database feedpub made is, not a new database to migrate and fill.
    #[error(
        "{} is an empty file (0 bytes), not a database feedpub left: restore the database \
         from a backup, or remove the file to begin a new, empty one",
        .0.display()
    )]
    Emptied(std::path::PathBuf),
    /// Migrating the schema failed.
    #[error("database migration failed: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
    /// The database holds a migration this feedpub does not know: another one (most
    /// likely a newer one) migrated it.
    #[error(
        "the database holds schema migration {found}, which this feedpub does not know (its \
         newest is {known}): it was migrated by a newer feedpub; use that one, or a later one"
    )]
    UnknownSchema { found: i64, known: i64 },
    /// A stored row could not be read back as a domain value.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The store is shutting down and takes no more writes.
    #[error("the store is shutting down")]
    Closed,
    /// A precondition failed: the article's etag is not the expected one (or there is no
    /// such article). Nothing was written.
    #[error("{0}")]
    EtagMismatch(String),
    /// A request id came back with a different request. Nothing was written.
    #[error("request id {0:?} was already used for a different request")]
    RequestIdReused(String),
    /// The partner's rights do not cover the stored article a write would replace (its
    /// section, or an embargo that still runs). Nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The partner a write was made for was remembered from an earlier call with a token
    /// that its row no longer holds (rotated), or the partner is revoked or gone. Nothing was
    /// written: the caller looks the token up again.
    #[error("the partner's token changed or was revoked since it was last looked up")]
    CredentialChanged,
}

impl StoreError {
    /// True when the message names the file or folder it is about.
    pub fn names_a_path(&self) -> bool {
        matches!(
            self,
            Self::Create { .. } | Self::Unwritable { .. } | Self::Emptied(_)
        )
    }

    /// True when the store refused one write for what it asked (a failed precondition, a
    /// reused request id, a stored article the partner may not change), as opposed to
    /// failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::EtagMismatch(_)
                | Self::RequestIdReused(_)
                | Self::Refused(_)
                | Self::CredentialChanged
        )
    }
}

/// What each write of a checked publish ([`Store::publish_checked`]) is held to, in the
/// write's own transaction, so that no read has to come first.
#[derive(Debug, Clone, Default)]
pub enum WriteChecks {
    /// Nothing: a partner with every right, or the operator's own writes.
    #[default]
    None,
    /// The partner's rights, looked up for this call: a write is refused when they do not
    /// cover the stored article it replaces ([`Partner::may_change`]).
    Rights(Partner),
    /// The partner as remembered with its token from an earlier call. The partner's row is
    /// read in the write's transaction: a write is refused with
    /// [`StoreError::CredentialChanged`] unless the row still holds that token, unrevoked,
    /// and is decided with the rights the row gives (the article's own section and embargo
    /// too, [`Partner::may_publish`], when they are not the ones remembered). A rotation,
    /// revocation or change of rights committed before the write thus holds for it, as if
    /// the token had been looked up for this call.
    Remembered(TokenHash, Partner),
}

impl WriteChecks {
    /// The checks of a publish made for `partner`: remembered with `token`, or looked up
    /// for this call (`None`).
    pub fn of(partner: &Partner, token: Option<&TokenHash>) -> Self {
        match token {
            Some(token) => Self::Remembered(token.clone(), partner.clone()),
            None if partner.is_unrestricted() => Self::None,
            None => Self::Rights(partner.clone()),
        }
    }

    /// True when the partner's row ([`Holder`]) has to be read in the write's transaction.
    fn wants_holder(&self) -> bool {
        matches!(self, Self::Remembered(..))
    }

    /// Refuses `write` when these checks do not let it replace `existing`, the stored
    /// article (if any); `holder` is the partner's row, read in the same transaction when
    /// [`Self::wants_holder`] (`None`: the partner is gone).
    fn check(
        &self,
        holder: Option<&Holder>,
        write: &ArticleWrite,
        existing: Option<&Article>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let rights = match self {
            Self::None => None,
            Self::Rights(partner) => Some(partner),
            Self::Remembered(token, remembered) => {
                let holder = holder
                    .filter(|h| h.holds(token))
                    .ok_or(StoreError::CredentialChanged)?;
                if holder.partner != *remembered {
                    // The caller checked the article against the rights remembered.
                    holder.partner.may_publish(&write.sent.content, now)?;
                }
                Some(&holder.partner)
            }
        };
        if let (Some(rights), Some(existing)) = (rights, existing) {
            rights.may_change(existing, now)?;
        }
        Ok(())
    }
}

/// A partner's row as a write's transaction reads it: what a remembered partner is checked
/// against ([`WriteChecks::Remembered`]).
#[derive(Debug)]
struct Holder {
    token: TokenHash,
    revoked: bool,
    partner: Partner,
}

impl Holder {
    /// True when the row holds `token` and is not revoked.
    fn holds(&self, token: &TokenHash) -> bool {
        !self.revoked && self.token == *token
    }
}

/// The result of a batch of one write: the stores answer every write of a batch, so a
/// missing answer is a store that broke that rule.
pub fn only_result(mut results: Vec<Result<Revision, StoreError>>) -> Result<Revision, StoreError> {
    match (results.pop(), results.is_empty()) {
        (Some(result), true) => result,
        _ => Err(StoreError::Corrupt(
            "a batch of one write did not give one result".into(),
        )),
    }
}

/// The primary result code of a SQLite error (`SQLITE_CANTOPEN` is 14): SQLite gives its
/// extended codes, in decimal, whose low byte is the primary one.
pub(crate) fn sqlite_code(e: &sqlx::Error) -> Option<i64> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    sqlx::error::DatabaseError::code(sqlite)
        .and_then(|code| code.parse::<i64>().ok())
        .map(|code| code & 0xff)
}

impl From<sqlx::Error> for StoreError {
    /// A database that says its own file or pages are damaged (SQLite's `SQLITE_CORRUPT`
    /// and `SQLITE_NOTADB`, with their extended codes; PostgreSQL's class XX001 and XX002)
    /// is [`StoreError::Corrupt`]: trying again does not help, so no partner is told to.
    fn from(e: sqlx::Error) -> Self {
        let damaged = match (&e, sqlite_code(&e)) {
            (_, Some(code)) => matches!(code, 11 | 26),
            // PostgreSQL's codes are SQLSTATEs, some all digits (22027).
            (sqlx::Error::Database(db), None) => db
                .code()
                .is_some_and(|code| matches!(code.as_ref(), "XX001" | "XX002")),
            _ => false,
        };
        if damaged {
            return Self::Corrupt(format!("the database is damaged: {e}"));
        }
        Self::Database(Arc::new(e))
    }
}

/// Where a page of `list_articles` continues: after this publish time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub publish_time: DateTime<Utc>,
    pub id: ArticleId,
}

/// The articles one feed shows, the tombstones of those recently retracted, when what the
/// feed shows last changed, and how large its archive is.
#[derive(Debug, Clone)]
pub struct FeedContent {
    /// Visible articles, newest `publish_time` first; shared with the backend's cache of
    /// decoded articles, if it has one.
    pub articles: Vec<Arc<Article>>,
    /// Articles of the scope retracted within the tombstone window that were in the feed
    /// when retracted; newest retraction first, then by GUID.
    pub tombstones: Vec<Tombstone>,
    /// Latest instant at which what the feed shows changed: a write to an article in view
    /// before or after it, an article coming into view or leaving it (an expiry, the end
    /// of a tombstone's window, a move out of the scope), a write that changed how many
    /// archive pages the feed links to ([`Store::set_archive_page`]); `None` while none has.
    pub last_change: Option<DateTime<Utc>>,
    /// How many articles the scope's history holds, in any state: its archive pages and
    /// the open page after them.
    pub archived: usize,
}

impl FeedContent {
    /// How many archive pages of `size` the scope's history fills, as
    /// [`Store::archive_pages`] answers.
    pub fn archive_pages(&self, size: usize) -> usize {
        pages_of(self.archived, size)
    }
}

/// How many archive pages of `size` articles `archived` articles fill; a size of 0 counts
/// as 1. Only full pages are archive pages: RFC 5005 §4 has the entries of an archive
/// document never change, and a reader that walks `prev-archive` stops at a page it has
/// read. The open page, the newest articles after the last full one, is no document: its
/// articles are in the current documents (the newest `max_items`), and in the archive once
/// the page fills.
pub(super) fn pages_of(archived: usize, size: usize) -> usize {
    archived / size.max(1)
}

/// One page of a feed's archive (RFC 5005): articles in the order they were first stored.
#[derive(Debug, Clone, Default)]
pub struct ArchivePage {
    /// The page's articles that are visible now, newest `publish_time` first.
    pub articles: Vec<Article>,
    /// How many archive pages the scope's history fills ([`pages_of`]: full pages only).
    pub pages: usize,
    /// Latest change of what the page shows: a write to an article on it in view before or
    /// after it, a publish, embargo or expire time of one of them reached by now, the
    /// filling of the next page (which gave this one its `next` link), and an article
    /// moving into or out of the scope up to the next page's end ([`Shift`]); `None` for an
    /// empty page.
    pub last_change: Option<DateTime<Utc>>,
    /// An article on the page is still to come into view (scheduled, or under embargo):
    /// the page will change when it does.
    pub pending: bool,
}

/// When articles already stored last joined or left a scope (a section move, an author or
/// tag added or taken off), kept with the scope's size: every archive page from a moved
/// article's place on shifts by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// The latest move.
    pub time: DateTime<Utc>,
    /// The earliest place any move touched: its article's create time.
    pub from: DateTime<Utc>,
}

impl Shift {
    /// From the two columns of `feed_sizes`, in nanoseconds, when the scope has had a move.
    pub(super) fn of(time: Option<i64>, from: Option<i64>) -> Option<Self> {
        Some(Self {
            time: sqlite::from_nanos(time?),
            from: sqlite::from_nanos(from?),
        })
    }
}

/// Inserts or renews a subscription, as both backends write it: `?1` topic, `?2` callback,
/// `?3` secret, `?4` now (the first verification, kept by a renewal), `?5` verify time,
/// `?6` expire time, `?7` the callback's address. A renewal stays counted where it was
/// first verified (it cannot move); a lapsed subscription not swept yet is a new one,
/// counted where it is verified now.
pub(super) const SAVE_SUBSCRIPTION_SQL: &str = "INSERT INTO websub_subscriptions
         (topic, callback, secret, create_time, verify_time, expire_time, callback_address)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (topic, callback) DO UPDATE SET
         secret = excluded.secret,
         verify_time = excluded.verify_time,
         expire_time = excluded.expire_time,
         callback_address = CASE
             WHEN websub_subscriptions.expire_time > excluded.create_time THEN COALESCE(
                 websub_subscriptions.callback_address, excluded.callback_address)
             ELSE excluded.callback_address END";

/// Forgets the last claims (`Store::last_claims`) of topics nobody subscribes to any more:
/// no subscriber is owed a document of theirs.
pub(super) const FORGET_UNSUBSCRIBED_CLAIMS_SQL: &str = "DELETE FROM websub_last_claims
     WHERE topic NOT IN (SELECT topic FROM websub_subscriptions)";

/// A scope's row of `feed_sizes` as both backends read it, `?1` its kind and `?2` its name
/// ([`feed_size_key`]); [`ArchiveSize::of`] reads the row.
pub(super) const FEED_SIZE_SQL: &str =
    "SELECT articles, shift_time, shift_from FROM feed_sizes WHERE kind = ?1 AND name = ?2";

/// How many archive pages a scope fills, and when articles last moved into or out of it.
pub(super) struct ArchiveSize {
    pub pages: usize,
    pub shift: Option<Shift>,
}

impl ArchiveSize {
    /// From the scope's row read by [`FEED_SIZE_SQL`] (none for a scope never written),
    /// for pages of `size`.
    pub(super) fn of(row: Option<(i64, Option<i64>, Option<i64>)>, size: usize) -> Self {
        let (count, time, from) = row.unwrap_or_default();
        Self {
            pages: pages_of(usize::try_from(count).unwrap_or(0), size),
            shift: Shift::of(time, from),
        }
    }
}

/// Rows of `feed_sizes` (kind and name) whose archives a transaction changes; in key
/// order, as both backends write them.
pub(super) type ArchiveChanges = std::collections::BTreeMap<(&'static str, String), ArchiveChange>;

/// How a transaction changes one feed's archive: its moves of articles into or out of
/// the feed, and how many articles it gained; times in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(super) struct ArchiveChange {
    /// Articles the archive gained (or, below 0, lost): new ones and moves.
    pub(super) added: i64,
    /// When the latest of those writes was made.
    pub(super) resized: Option<i64>,
    /// The latest move (`feed_sizes.shift_time`): it dates the archive pages it shifted.
    pub(super) time: Option<i64>,
    /// The earliest moved article's create time (`shift_from`).
    pub(super) from: Option<i64>,
    /// When the feed's current documents last changed by a move (`shown_shift_time`): a
    /// move of an article in view before or after it, or what they had seen change of an
    /// article moved out of view (see `Revision::Updated::left_seen`). A move of copy
    /// under embargo or scheduled changes nothing they show.
    pub(super) shown: Option<i64>,
}

impl ArchiveChange {
    fn merge(&mut self, other: ArchiveChange) {
        self.added += other.added;
        self.resized = self.resized.max(other.resized);
        self.time = self.time.max(other.time);
        self.from = match (self.from, other.from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.shown = self.shown.max(other.shown);
    }
}

/// Adds what `revision`, written at `now`, changes of the feeds' archives to `changes`:
/// the articles each gained (every feed of a new article) or lost
/// ([`Revision::archive_moves`]), the shift of each feed it moved an article into or out
/// of ([`Revision::moved_scopes`]), and, for a move out of view, the date of every feed
/// the article was in.
pub(super) fn add_archive_changes(
    changes: &mut ArchiveChanges,
    revision: &Revision,
    now: DateTime<Utc>,
) {
    let article = revision.article();
    let time = sqlite::nanos(now);
    // A write moves the article's shown change time on to its own change time exactly
    // when feeds showed the article before it or show it after.
    let shown = (article.shown_change_time == Some(article.change_time)).then_some(time);
    let moves = ArchiveChange {
        time: Some(time),
        from: Some(sqlite::nanos(article.create_time)),
        shown,
        ..ArchiveChange::default()
    };
    let mut add = |(kind, name): (&'static str, &str), change: ArchiveChange| {
        changes
            .entry((kind, name.to_owned()))
            .or_default()
            .merge(change);
    };
    let resized = |added| ArchiveChange {
        added,
        resized: Some(time),
        ..ArchiveChange::default()
    };
    if let Revision::Created(article) = revision {
        // Keyed by name alone: a feed scope of an author or tag would work out its slug
        // (pinyin) on the writer's path, for every new article.
        let c = &article.content;
        let feeds: std::collections::BTreeSet<(&'static str, &str)> =
            [(FEED_KINDS[0], ""), (FEED_KINDS[1], c.section.as_str())]
                .into_iter()
                .chain(c.authors.iter().map(|a| (FEED_KINDS[2], a.as_str())))
                .chain(c.tags.iter().map(|t| (FEED_KINDS[3], t.as_str())))
                .collect();
        for key in feeds {
            add(key, resized(1));
        }
    }
    for (scope, added) in revision.archive_moves() {
        add(feed_size_key(&scope), resized(added));
    }
    for scope in revision.moved_scopes() {
        add(feed_size_key(&scope), moves);
    }
    if let Revision::Updated {
        left_seen: Some(seen),
        ..
    } = revision
    {
        let kept = ArchiveChange {
            shown: Some(sqlite::nanos(*seen)),
            ..ArchiveChange::default()
        };
        for scope in revision.previous_scopes() {
            add(feed_size_key(&scope), kept);
        }
    }
}

impl ArchivePage {
    /// A page from its stored articles, read in archive order; `next_filled` is the create
    /// time of the next page's last article, when there is a next page (the first write of
    /// that article filled it, which gave this page its `next` link). The page shows the
    /// articles visible at `now`, newest first. `shift` is the scope's, read with `pages`.
    pub(super) fn of(
        mut articles: Vec<Article>,
        (pages, shift): (usize, Option<Shift>),
        next_filled: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        // A move changed this page if it touched a place up to the end of the next page:
        // on this page it shifted the articles, on the next it may have filled or emptied
        // that page's last place, giving or taking this one's `next` link. That is any move
        // for the newest page, and for the others a move of an article first stored no
        // later than the next page's last (pages before a move keep their dates).
        let shifted = shift
            .filter(|shift| next_filled.is_none_or(|end| end >= shift.from))
            .map(|shift| shift.time);
        let last_change = articles
            .iter()
            .filter_map(|a| a.last_page_change(now))
            .chain(next_filled)
            .chain(shifted.filter(|_| !articles.is_empty()))
            .max();
        let pending = articles.iter().any(|a| a.is_pending(now));
        articles.retain(|a| a.is_visible(now));
        articles.sort_by(Article::feed_order);
        Self {
            articles,
            pages,
            last_change,
            pending,
        }
    }
}

/// The kinds of feed, as `feed_sizes` names them; [`feed_kind`] gives a scope's index here.
const FEED_KINDS: [&str; 4] = ["all", "section", "author", "tag"];

/// A scope's kind, as its index in [`FEED_KINDS`], and its name within the kind.
fn feed_kind(scope: &FeedScope) -> (usize, &str) {
    match scope {
        FeedScope::All => (0, ""),
        FeedScope::Section(slug) => (1, slug.as_str()),
        FeedScope::Author(named) => (2, named.name()),
        FeedScope::Tag(named) => (3, named.name()),
    }
}

/// The key of a scope's row in `feed_sizes`, the same in both backends: kind and name.
pub(super) fn feed_size_key(scope: &FeedScope) -> (&'static str, &str) {
    let (kind, name) = feed_kind(scope);
    (FEED_KINDS[kind], name)
}

/// For [`Store::first_carried`]: the table of the names of `scopes` (all authors or all
/// tags), their kind in `feed_sizes`, and the names; `None` when there are no scopes.
pub(super) fn contenders(scopes: &[FeedScope]) -> Option<(&'static str, &'static str, Vec<&str>)> {
    let first = scopes.first()?;
    let names = scopes.iter().filter_map(FeedScope::name).collect();
    Some((sqlite::names_table(first), feed_size_key(first).0, names))
}

/// For [`Store::first_carried`], in both backends (`{table}`, `{kind}` and the list of names
/// filled in): of the names carried by a stored article, the one a write gave an article
/// first (`feed_sizes.first_stored`), then by name; one not known to be, last.
pub(super) const FIRST_CARRIED_SQL: &str = "SELECT row.name FROM {table} AS row
     JOIN feed_sizes AS fs ON fs.kind = '{kind}' AND fs.name = row.name
     WHERE row.name IN ({names})
     ORDER BY fs.first_stored IS NULL, fs.first_stored, row.name LIMIT 1";

/// The scope of `scopes` whose name the store chose, if it chose one.
pub(super) fn contender_named(scopes: &[FeedScope], name: Option<String>) -> Option<FeedScope> {
    let name = name?;
    scopes.iter().find(|s| s.name() == Some(&name)).cloned()
}

/// Claimed deliveries read back as topic path and document: each topic checked.
pub(super) fn claimed_deliveries(
    rows: Vec<(String, String)>,
) -> Result<Vec<(Topic, String)>, StoreError> {
    rows.into_iter()
        .map(|(topic, document)| {
            let topic = Topic::new(&topic)
                .map_err(|e| StoreError::Corrupt(format!("claimed topic {topic:?}: {e}")))?;
            Ok((topic, document))
        })
        .collect()
}

/// A name for this process that no other process shares: 64 random bits in hex.
pub(super) fn new_origin() -> Result<String, StoreError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Corrupt(format!("no randomness for a process name: {e}")))?;
    Ok(hex::encode(random))
}

/// Moves `head` on to `seq`, the newest event a commit left, unless it is there already:
/// receivers are told only of a newer head.
pub(super) fn raise_event_head(head: &tokio::sync::watch::Sender<u64>, seq: u64) {
    head.send_if_modified(|current| {
        let newer = seq > *current;
        *current = seq.max(*current);
        newer
    });
}

/// What `make` builds for the kind of `scope` (`all`, a section, an author or a tag), built
/// once per kind and kept in `cells`: a feed's statements differ by kind, never by the
/// section or name, which is bound. Regeneration reads feeds on every publish.
pub(super) fn per_feed_kind<T>(
    cells: &'static [std::sync::OnceLock<T>; FEED_KINDS.len()],
    scope: &FeedScope,
    make: impl FnOnce() -> T,
) -> &'static T {
    cells[feed_kind(scope).0].get_or_init(make)
}

/// One article to create or replace, with what makes the write safe to retry and to race.
#[derive(Debug, Clone)]
pub struct ArticleWrite {
    pub id: ArticleId,
    /// The content with what validation found out about it: its etag, computed where the
    /// write is made (a request handler) rather than by the writer, which every publish
    /// waits for in turn, and its summary as sent.
    pub sent: SentContent,
    /// Becomes the GUID only if the article is new.
    pub new_guid: String,
    /// Write only if the article exists and this is its `resource_etag`.
    pub expected_etag: Option<String>,
    /// A retry with this key gets the first result and writes nothing.
    pub request: Option<RequestKey>,
}

impl ArticleWrite {
    /// A write of `sent` as article `id`, unconditional and without a request id.
    pub fn new(id: ArticleId, sent: impl Into<SentContent>, new_guid: String) -> Self {
        Self {
            id,
            sent: sent.into(),
            new_guid,
            expected_etag: None,
            request: None,
        }
    }

    /// The write applied on top of `existing` at `now` (its precondition checked already),
    /// with its request key, which a store records with the result.
    fn revise(
        self,
        existing: Option<Article>,
        partner: PartnerId,
        now: DateTime<Utc>,
    ) -> (Revision, Option<RequestKey>) {
        let new_guid = self.new_guid;
        let revision =
            Article::revise_sent(existing, partner, self.id, self.sent, now, |_| new_guid);
        (revision, self.request)
    }
}

/// A retraction to record, with what makes it safe to retry and to race.
#[derive(Debug, Clone)]
pub struct Retraction {
    pub id: ArticleId,
    /// Kept with the article, never published.
    pub reason: String,
    /// Retract only if this is the article's `resource_etag`.
    pub expected_etag: Option<String>,
    /// A retry with this key gets the first result and writes nothing.
    pub request: Option<RequestKey>,
    /// Retracted by an operator's command (`feedpub partner retract`), not by the partner:
    /// the audit log says so, and the event it logs is announced for a server on the same
    /// SQLite database to follow ([`Store::announced_events`]); PostgreSQL's replicas
    /// follow every other process's events already.
    pub by_operator: bool,
}

/// Which events of the log a follower sees.
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Only events of these sections; `None` for every section.
    pub sections: Option<Vec<SectionSlug>>,
    /// Whether it sees events while their article's embargo runs (its own articles' too:
    /// reading copy under embargo needs the embargo right, whoever filed it).
    pub embargoed: bool,
}

/// A new partner to record.
#[derive(Debug, Clone)]
pub struct NewPartner {
    pub name: PartnerName,
    pub rights: Rights,
    pub token_hash: TokenHash,
    pub token_prefix: String,
}

/// A partner's new token.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: TokenHash,
    pub prefix: String,
    /// For a revoked partner, made active again with it; else the partner must be active.
    pub restore: bool,
}

/// Durable storage of partners, articles, WebSub subscriptions and the audit log. Every
/// write is committed before it returns; every mutation of partners and articles is
/// recorded in the audit log in the same transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a partner (and `partner.add` in the audit log); `Conflict` when the name is
    /// taken, also by a revoked partner.
    async fn add_partner(
        &self,
        partner: NewPartner,
        now: DateTime<Utc>,
    ) -> Result<Partner, StoreError>;

    /// The active partner holding the token with this hash.
    async fn partner_by_token(&self, hash: &TokenHash) -> Result<Option<Partner>, StoreError>;

    /// The active partner with this name.
    async fn partner_by_name(&self, name: &PartnerName) -> Result<Option<Partner>, StoreError>;

    /// Creates or replaces a partner's article, atomically with respect to other writes,
    /// recording a new version and an event when the content changes, and records it for
    /// `actor` in the audit log. A request id seen before returns the result it got then (as
    /// `Revision::Unchanged`).
    async fn publish(
        &self,
        partner: PartnerId,
        write: ArticleWrite,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Revision, StoreError> {
        only_result(self.publish_batch(partner, vec![write], now, actor).await?)
    }

    /// Retracts a partner's article, recording it for `actor` in the audit log; `None` when
    /// there is no such article. The flag says whether the article was published until now
    /// (false when it was already retracted, or when a request id seen before returns the
    /// result it got then).
    async fn retract(
        &self,
        partner: PartnerId,
        retraction: Retraction,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<(Article, bool)>, StoreError>;

    /// One of a partner's articles, in any state.
    async fn article(
        &self,
        partner: PartnerId,
        id: &ArticleId,
    ) -> Result<Option<Article>, StoreError>;

    /// A partner's articles, newest `publish_time` first, after `cursor`.
    async fn list_articles(
        &self,
        partner: PartnerId,
        section: Option<&SectionSlug>,
        cursor: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Article>, StoreError>;

    /// What the feed of `scope` shows at `now`: the newest `limit` articles that are
    /// published, not expired, with `publish_time` reached and any embargo over, and also
    /// those of them on the open archive page (stored since the last full page of `limit`
    /// articles, the feeds' `max_items`, which is also the archive page's size) and at most
    /// `limit` corrected, moved in or out of embargo since the oldest of the newest was
    /// published (`sqlite::current_keys`), in feed order; at most `limit` tombstones of
    /// retractions less than `tombstone_window` before `now`; and the size of the scope's archive, all read
    /// together (a regeneration needs each of them).
    async fn feed_content(
        &self,
        scope: &FeedScope,
        now: DateTime<Utc>,
        limit: usize,
        tombstone_window: TimeDelta,
    ) -> Result<FeedContent, StoreError>;

    /// The next instant after `now` at which a feed changes without a write: an article
    /// enters (publish time, embargo end) or leaves (expire time) the feeds, or a tombstone's
    /// `tombstone_window` ends.
    async fn next_transition(
        &self,
        now: DateTime<Utc>,
        tombstone_window: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records a verified subscription, replacing (renewing) the one with the same topic
    /// and callback; `address` is where its callback was reached to verify it
    /// ([`crate::websub::address_key`]), by which [`Self::count_subscriptions`] counts.
    async fn save_subscription(
        &self,
        subscription: Subscription,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// How many subscriptions are leased past `now`: all of them, or those whose callback
    /// was reached at `address` when last verified.
    async fn count_subscriptions(
        &self,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Removes the subscription of `callback` to `topic`; false when there was none.
    async fn delete_subscription(
        &self,
        topic: &Topic,
        callback: &Callback,
    ) -> Result<bool, StoreError>;

    /// The subscriptions to `topic` whose lease runs past `now`, by callback; only that of
    /// `callback` when one is given.
    async fn active_subscriptions(
        &self,
        topic: &Topic,
        callback: Option<&Callback>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Removes every subscription whose lease ended at or before `now`, and delivery claims
    /// made a day or more before it; returns how many subscriptions.
    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Page `page` (1-based) of `size` articles of the archive of `scope`, as visible at `now`.
    async fn archive_page(
        &self,
        scope: &FeedScope,
        page: usize,
        size: usize,
        now: DateTime<Utc>,
    ) -> Result<ArchivePage, StoreError>;

    /// How many pages of `size` the archive of `scope` fills.
    async fn archive_pages(&self, scope: &FeedScope, size: usize) -> Result<usize, StoreError>;

    /// How many articles the feeds put on an archive page (`[feeds] max_items`;
    /// `config::DEFAULT_MAX_ITEMS` until told): a write that changes how many pages a feed's
    /// archive fills dates its current documents, whose `prev-archive` link it changed,
    /// even when what it wrote is out of view.
    fn set_archive_page(&self, size: usize);

    /// The author and tag scopes of every name carried by a stored article that has come
    /// into view by `now` (its publish time and embargo end come, not retracted before
    /// then), whatever its state since: the names that have feeds.
    async fn named_scopes(&self, now: DateTime<Utc>) -> Result<Vec<FeedScope>, StoreError>;

    /// Of `scopes`, author feeds or tag feeds whose names share a slug, the one whose name
    /// a write gave an article first (then by name), among those a stored article carries:
    /// the owner of their folder, the same on every replica and after every restart. A
    /// name added later to an older article is not stored earlier for it. `None` when no
    /// stored article carries any of them.
    async fn first_carried(&self, scopes: &[FeedScope]) -> Result<Option<FeedScope>, StoreError>;

    /// Whether the author or tag scope `scope` is one of [`Store::named_scopes`] at `now`
    /// (true for a section and `all`, which always have feeds).
    async fn has_feeds(&self, scope: &FeedScope, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The author and tag scopes of the articles whose feeds change without a write in
    /// `(after, until]`: publish time or embargo end reached, expire time passed, or the
    /// tombstone window of their retraction ended.
    async fn named_scopes_in_transition(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tombstone_window: TimeDelta,
    ) -> Result<Vec<FeedScope>, StoreError>;

    /// Waits for queued writes to finish and closes the database.
    async fn close(&self);

    /// Every partner, active or revoked, by name.
    async fn partner_records(&self) -> Result<Vec<PartnerRecord>, StoreError>;

    /// The partner with this name, active or revoked.
    async fn partner_record(&self, name: &PartnerName)
    -> Result<Option<PartnerRecord>, StoreError>;

    /// Revokes a partner: its token is refused from the next call on. `None` for an unknown
    /// name; the flag is false when it was already revoked.
    async fn revoke_partner(
        &self,
        name: &PartnerName,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError>;

    /// Replaces a partner's token: an active partner's (`partner.rotate`), or a revoked
    /// one's, which is active again with it (`partner.restore`, when `token.restore`); the
    /// old token is refused from the next call on. `None` for an unknown name; the flag is
    /// false when the partner is not in the state the change takes (returned unchanged).
    async fn new_token(
        &self,
        name: &PartnerName,
        token: NewToken,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError>;

    /// Grants or denies rights to an active partner (`configured`: the sections that exist).
    /// `None` for an unknown name; the flag is false when nothing changed (a revoked partner
    /// is returned unchanged).
    async fn change_rights(
        &self,
        name: &PartnerName,
        change: RightsChange,
        configured: Vec<SectionSlug>,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError>;

    /// Records a mutation that was refused before it reached the store.
    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError>;

    /// Audit log entries, newest first.
    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// Publishes many articles of one partner as `publish` does each, in order, in one
    /// transaction, each recorded for `actor` in the audit log; one result per write. The outer error means none was stored.
    async fn publish_batch(
        &self,
        partner: PartnerId,
        writes: Vec<ArticleWrite>,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Vec<Result<Revision, StoreError>>, StoreError> {
        self.publish_checked(partner, &WriteChecks::default(), writes, now, actor)
            .await
    }

    /// `publish_batch`, each write also held to `checks` in its transaction (refused when
    /// they do not let it replace the stored article, or when a remembered partner's row
    /// changed).
    async fn publish_checked(
        &self,
        partner: PartnerId,
        checks: &WriteChecks,
        writes: Vec<ArticleWrite>,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Vec<Result<Revision, StoreError>>, StoreError>;

    /// One of a partner's articles with the content of `version` (current or past); its
    /// state and retraction are those of now. `None` when there is no such version.
    async fn article_version(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        version: u32,
    ) -> Result<Option<Article>, StoreError>;

    /// The versions of a partner's article below `before` (all when `None`), newest first;
    /// empty when there is no such article.
    async fn article_versions(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        before: Option<u32>,
        limit: usize,
    ) -> Result<Vec<VersionSummary>, StoreError>;

    /// At most `limit` events with `after < seq <= until` that `filter` lets through, in
    /// order.
    async fn events(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<ArticleEvent>, StoreError>;

    /// `events`, without those this process logged itself: what a replica following the
    /// others' writes reads. A store of its own has no other writers and returns `events`.
    async fn events_of_others(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<ArticleEvent>, StoreError> {
        self.events(after, until, filter, limit).await
    }

    /// The sequence number of the newest committed event (0 for none), updated after every
    /// commit that logs events.
    fn event_head(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The sequence numbers after `after` of events that operators' commands announced
    /// ([`Retraction::by_operator`]), in order, at most `limit`: what a server on a store of
    /// its own did not write, and follows. None on a shared store, whose replicas follow
    /// every other process's events.
    async fn announced_events(&self, after: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let _ = (after, limit);
        Ok(Vec::new())
    }

    /// Moves [`Store::event_head`] on to `seq` when it is behind: an event another process
    /// logged, so that the streams following the log see it.
    fn note_event(&self, seq: u64) {
        let _ = seq;
    }

    /// Logs the end of every embargo that ended at or before `now`; returns how many.
    async fn lift_embargoes(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// When the next running embargo ends.
    async fn next_embargo_lift(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Forgets the request ids recorded before `before`; returns how many.
    async fn forget_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Commits a write that changes nothing stored but still reaches the disk (a page
    /// written again and synced, or a transaction's commit record): whether durable
    /// writes work, to clear a storage fault when no partner writes.
    async fn probe_write(&self) -> Result<(), StoreError>;

    /// True when other processes may write to the same database (replicas), so that this
    /// one must follow their events to keep its feeds current.
    fn is_shared(&self) -> bool {
        false
    }

    /// Most articles a batch hands to [`Store::publish_checked`] at once: the larger, the
    /// fewer commits a batch costs, the longer each transaction and the more it holds.
    fn batch_chunk(&self) -> usize {
        1_000
    }

    /// Reports to `health` what the store's own background work cannot do, from now on.
    fn report_faults_to(&self, _health: &crate::health::Health) {}

    /// Claims the delivery of the document `document` of `topic` to the topic's
    /// subscribers until `until`: false when a process sharing the database holds the claim
    /// (and delivers it), or finished it. A claim that lapsed unfinished (its process died)
    /// is taken over. A store of its own always answers true, and keeps the claim until it
    /// is finished, for the next process to take over. `document` names one version
    /// of the topic's document the same way on every replica (its entity tag and the stored
    /// change it shows: bytes a feed had before can be a new version to deliver).
    async fn claim_delivery(
        &self,
        _topic: &Topic,
        _document: &str,
        _now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Extends this process's claim on a delivery to `until`; false when the claim is no
    /// longer this process's (or is finished).
    async fn renew_delivery(
        &self,
        _topic: &Topic,
        _document: &str,
        _until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Marks a claimed delivery done: no process delivers it again.
    async fn finish_delivery(&self, _topic: &Topic, _document: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Up to `limit` claimed deliveries whose claim lapsed unfinished at `now`, as topic
    /// and document (as claimed), longest lapsed first: what a process that died left
    /// undelivered. A store of its own returns the unfinished claims of other processes,
    /// whatever their leases: one server runs on it at a time, so those an earlier run left.
    async fn lapsed_deliveries(
        &self,
        _now: DateTime<Utc>,
        _limit: usize,
    ) -> Result<Vec<(Topic, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// Per topic, the last document whose delivery was claimed (its deliveries ended or
    /// not): what the subscribers were last sent, unless the process that built a newer one
    /// stopped after writing the feed's new files and before claiming their delivery. On a
    /// shared database, whichever replica claimed it: the claim written last, which a
    /// replica taking an older claim over may leave older than the newest. Topics nobody
    /// subscribes to are forgotten with the expired subscriptions.
    async fn last_claims(&self) -> Result<Vec<(Topic, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// Dates a version of a document built from what the store holds (the index page, the
    /// OPML list), recorded under `name` so that every process on the store, and the next
    /// after a restart, dates the same bytes alike: the dates recorded for `etag` when that
    /// is the version recorded last; else `now` (whole seconds), never before the version
    /// it replaces, recorded with it and with that version's date.
    async fn date_document(
        &self,
        name: &str,
        etag: &str,
        now: DateTime<Utc>,
    ) -> Result<DocumentDate, StoreError>;

    /// What the feeds' Atom ids begin with: the site URL recorded by the first server to
    /// ask, `proposed` (this one's) when none was, recorded now. An id never changes, even
    /// when the site moves (RFC 4287, 4.2.6).
    async fn atom_id_base(&self, proposed: &str) -> Result<String, StoreError>;

    /// Takes one call from `partner`'s allowance shared by every process on the database
    /// (`rate` calls a second on average, `burst` at once): `None` when the call is
    /// admitted, else how long until one would be. A store of its own keeps no allowance
    /// and admits every call: its one process holds the limit in memory.
    async fn take_call(
        &self,
        _partner: PartnerId,
        _rate: CallRate,
        _now: DateTime<Utc>,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(None)
    }

    /// Takes `names` new author and tag feeds at once from `partner`'s allowance shared by
    /// every process on the database (`per_hour` an hour, all at once or spread out; never
    /// more than `per_hour` at once): `None` when they are admitted, else how long until
    /// they would be. A store of its own keeps no allowance and admits them: its one
    /// process holds the allowance in memory.
    async fn take_new_names(
        &self,
        _partner: PartnerId,
        _names: std::num::NonZeroU32,
        _per_hour: std::num::NonZeroU32,
        _now: DateTime<Utc>,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(None)
    }
}

/// The date of a version of a derived document ([`Store::date_document`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentDate {
    pub date: DateTime<Utc>,
    /// The date of the version it replaced, if any: equal to `date` when both fall within
    /// one second, and then a client holding that one must not be answered 304 by date.
    /// Recorded, so that every process serving this version knows it.
    pub replaced: Option<DateTime<Utc>>,
}

/// A version of a derived document as the store records it: its entity tag, its date and
/// the date of the version it replaced, in Unix nanoseconds.
pub(super) type RecordedDate = (String, i64, Option<i64>);

impl DocumentDate {
    /// The date of version `etag` built at `now`, given the version recorded last, and
    /// whether it is to be recorded.
    pub(super) fn of(
        recorded: Option<RecordedDate>,
        etag: &str,
        now: DateTime<Utc>,
    ) -> (Self, bool) {
        let now = now.trunc_subsecs(0);
        match recorded {
            Some((recorded, date, replaced)) if recorded == etag => (
                Self {
                    date: DateTime::from_timestamp_nanos(date),
                    replaced: replaced.map(DateTime::from_timestamp_nanos),
                },
                false,
            ),
            Some((_, date, _)) => {
                let replaced = DateTime::from_timestamp_nanos(date);
                let date = now.max(replaced);
                (
                    Self {
                        date,
                        replaced: Some(replaced),
                    },
                    true,
                )
            }
            None => (
                Self {
                    date: now,
                    replaced: None,
                },
                true,
            ),
        }
    }
}

/// A partner's call rate: `per_second` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRate {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

#[cfg(test)]
mod tests {
    use super::{StoreError, only_result};

    #[test]
    fn a_batch_of_one_must_give_exactly_one_result() {
        let refused = || Err(StoreError::Closed);
        assert!(matches!(
            only_result(vec![refused()]),
            Err(StoreError::Closed)
        ));
        for results in [vec![], vec![refused(), refused()]] {
            assert!(matches!(only_result(results), Err(StoreError::Corrupt(_))));
        }
    }
}
