//! The embedded SQLite backend: WAL mode, one writer task that group-commits, a pool of readers.

use super::article_cache::{ArticleCache, FEED_CACHE_BYTES, Placed};
use super::rows::Columns;
use super::sqlite_audit as audit;
use super::sqlite_checkpoint::{Copier, FaultReport};
use super::sqlite_partners as partners;
use super::sqlite_websub as websub;
use super::{
    ArchivePage, ArticleWrite, DocumentDate, EventFilter, FeedContent, ListCursor, NewPartner,
    NewToken, Retraction, Store, StoreError, WriteChecks,
};
use super::{sqlite_history as history, sqlite_writes as writes};
use crate::domain::{
    Actor, Article, ArticleContent, ArticleEvent, ArticleId, ArticleState, AuditEntry, AuditFilter,
    AuditOperation, FeedScope, Media, Outcome, Partner, PartnerId, PartnerName, PartnerRecord,
    Revision, RightsChange, SectionSlug, TokenHash, Tombstone, VersionSummary,
};
use crate::websub::{Callback, Subscription, Topic};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use std::collections::VecDeque;
use std::iter::Peekable;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "feedpub.sqlite3";

/// Creates the data folder if it is missing, readable by its owner only: the database holds
/// token hashes, WebSub subscribers' secrets and copy under embargo. (A folder that exists
/// keeps the mode its operator gave it.)
pub fn create_data_folder(path: &Path) -> std::io::Result<()> {
    let mut folder = std::fs::DirBuilder::new();
    folder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
    folder.create(path)
}

/// The error of a database `file` SQLite could not open (`SQLITE_CANTOPEN`) or not write
/// (`SQLITE_READONLY`): why, in the system's words ("Read-only file system", "Permission
/// denied"), when that is that it may not be written. Even reading writes, in WAL mode.
pub(super) fn unopened(file: &Path, e: sqlx::Error) -> StoreError {
    match super::sqlite_code(&e) {
        Some(8 | 14) => unwritable(file).unwrap_or_else(|| e.into()),
        _ => e.into(),
    }
}

/// Whether the database `file`, or its write-ahead log beside it (or, with none, the
/// folder SQLite would make it in), may not be written, and why. `None` when they may.
fn unwritable(file: &Path) -> Option<StoreError> {
    let log = file.with_extension("sqlite3-wal");
    let folder = folder_of(file);
    let beside = if matches!(log.try_exists(), Ok(false)) {
        folder
    } else {
        &log
    };
    [file, beside].into_iter().find_map(|path| {
        write_refused(path).map(|error| StoreError::Unwritable {
            path: path.to_owned(),
            error: Arc::new(error),
        })
    })
}

/// Why `path` may not be written, asked of the system without opening it: closing a
/// descriptor of a file SQLite has open in this process would drop every lock SQLite holds
/// on it (POSIX record locks belong to the process and the file, not the descriptor), and
/// let another process write under its readers and writer.
fn write_refused(path: &Path) -> Option<std::io::Error> {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK)
        .err()
        .map(std::io::Error::from)
}

/// Whether the database `file` is empty: emptied after it was made (truncated, or copied
/// before it was written), since feedpub never leaves one so ([`create_database`]). A WAL
/// beside it does not save it: SQLite opening an empty file discards the WAL.
pub(super) fn emptied(file: &Path) -> Option<StoreError> {
    let empty = matches!(std::fs::metadata(file), Ok(meta) if meta.len() == 0);
    empty.then(|| StoreError::Emptied(file.to_owned()))
}

/// Makes a new database at `file` unless there is one: made under a name of its own beside
/// it (random, so that processes with one pid, in two containers say, never share it),
/// readable and writable by its owner only, given its first page by SQLite (WAL mode is in
/// its header), then linked into place, so that no process ever finds `file` empty (and
/// takes it for one emptied), even one that made it and stopped part-way. Where the file
/// system has no hard links, the page is copied into a file made only if none is there:
/// empty for the moment it takes to write it.
async fn create_database(file: &Path) -> std::io::Result<()> {
    if file.try_exists()? {
        return Ok(());
    }
    remove_abandoned_new_databases(file);
    let mut random = [0_u8; 8];
    getrandom::fill(&mut random).map_err(std::io::Error::other)?;
    let temporary = file.with_extension(format!("sqlite3{NEW_DATABASE}{}", hex::encode(random)));
    drop(create_private(&temporary)?);
    let first_page = async {
        let options = SqliteConnectOptions::new()
            .filename(&temporary)
            .journal_mode(SqliteJournalMode::Wal);
        let conn = SqliteConnection::connect_with(&options).await?;
        // Closed, the last connection removes the WAL.
        conn.close().await
    };
    let placed = match first_page.await {
        Ok(()) => std::fs::File::open(&temporary)
            .and_then(|made| made.sync_all())
            .and_then(|()| place_new_database(&temporary, file)),
        Err(e) => Err(std::io::Error::other(e)),
    };
    for leftover in ["", "-wal", "-shm"] {
        let mut path = temporary.clone().into_os_string();
        path.push(leftover);
        let _ = std::fs::remove_file(path);
    }
    match placed {
        Ok(()) => {
            // Once the name is on disk, so is the database: a failure to make sure of it
            // is no reason not to use it.
            let _ = std::fs::File::open(folder_of(file)).and_then(|folder| folder.sync_all());
            Ok(())
        }
        // Another process made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How many migrations the database records as applied (none before the first).
async fn migrations_applied(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(conn)
        .await
        .unwrap_or(0)
}

/// What follows `feedpub.sqlite3` in the name of a database being made.
const NEW_DATABASE: &str = ".new-";

/// Puts the new database `made` at `file`, unless a file is there: linked, or on a file
/// system without hard links, copied into a file created only if none is there.
fn place_new_database(made: &Path, file: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(made, file) {
        // EPERM and EOPNOTSUPP: a file system without hard links (vfat, some network ones).
        Err(e)
            if e.kind() == std::io::ErrorKind::Unsupported
                || matches!(e.raw_os_error(), Some(1 | 95)) =>
        {
            let bytes = std::fs::read(made)?;
            let mut copy = create_private(file)?;
            let written =
                std::io::Write::write_all(&mut copy, &bytes).and_then(|()| copy.sync_all());
            if written.is_err() {
                // Not an empty file left for a database emptied.
                let _ = std::fs::remove_file(file);
            }
            written
        }
        linked => linked,
    }
}

/// Removes what a process making a database beside `file` left when it stopped part-way:
/// those an hour old, which no process is still making (it takes milliseconds).
fn remove_abandoned_new_databases(file: &Path) {
    let Some(name) = file.file_name() else {
        return;
    };
    let mut prefix = name.to_os_string();
    prefix.push(NEW_DATABASE);
    let Ok(entries) = std::fs::read_dir(folder_of(file)) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes());
        let abandoned = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if ours && abandoned {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether the database `file` may be read only as an immutable file: it may not be
/// written (a read-only file system, say), and no WAL beside it holds writes it lacks.
/// SQLite reads a file in WAL mode through a shared-memory index it makes beside it, which
/// it cannot make there; an immutable file it reads without one.
pub(super) fn readable_only_as_immutable(file: &Path) -> bool {
    let log = file.with_extension("sqlite3-wal");
    matches!(log.try_exists(), Ok(false)) && write_refused(file).is_some()
}

/// Creates `file` empty, readable and writable by its owner only, open for writing: SQLite
/// then opens it as a new database, and gives its WAL the same mode.
fn create_private(file: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)
}

/// The folder `file` is in (`.` for a bare file name).
fn folder_of(file: &Path) -> &Path {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    }
}
/// Most writes committed together in one transaction.
const MAX_BATCH: usize = 512;

/// SQLite storage. Writes queue to one task that commits each batch in one transaction
/// (one fsync for many acknowledgements); reads use a separate pool.
pub struct SqliteStore {
    /// Articles to an archive page, as the feeds link them ([`Store::set_archive_page`]).
    archive_page: Arc<AtomicUsize>,
    read: SqlitePool,
    /// Articles the feeds' reads decoded, for the next regeneration.
    feed_articles: ArticleCache<i64>,
    writer: mpsc::Sender<Command>,
    /// The newest committed event, as the writer announces it.
    event_head: watch::Receiver<u64>,
    /// What the writer announces it with, also for events another process logged.
    head_tx: Arc<watch::Sender<u64>>,
    /// Names this process in the WebSub deliveries it claims: those of another name were
    /// left by a process that stopped.
    origin: String,
    /// Where the copying of the WAL reports its failures.
    faults: FaultReport,
    /// How many batches the writer has run (committed or not).
    #[cfg(test)]
    batches: Arc<std::sync::atomic::AtomicU64>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer's queue carries: jobs, and at the end the store's closing.
enum Command {
    Run(Job),
    /// Runs the jobs queued before it, then closes the connection and answers; jobs queued
    /// after it are dropped, which tells their callers the store is closed.
    Close(oneshot::Sender<()>),
}

enum Job {
    Publish {
        partner: PartnerId,
        /// What each write is held to: the caller's rights against the stored articles
        /// replaced, and a remembered partner against its row.
        checks: Box<WriteChecks>,
        writes: Vec<ArticleWrite>,
        now: DateTime<Utc>,
        actor: Actor,
        reply: Reply<Vec<Result<Revision, StoreError>>>,
    },
    Retract {
        partner: PartnerId,
        retraction: Box<Retraction>,
        now: DateTime<Utc>,
        actor: Actor,
        reply: Reply<Option<(Article, bool)>>,
    },
    LiftEmbargoes {
        now: DateTime<Utc>,
        reply: Reply<u64>,
    },
    ForgetRequests {
        before: DateTime<Utc>,
        reply: Reply<u64>,
    },
    ProbeWrite {
        reply: Reply<()>,
    },
    AddPartner {
        partner: NewPartner,
        now: DateTime<Utc>,
        reply: Reply<Partner>,
    },
    RevokePartner {
        name: PartnerName,
        now: DateTime<Utc>,
        reply: Reply<Option<(PartnerRecord, bool)>>,
    },
    NewToken {
        name: PartnerName,
        token: NewToken,
        now: DateTime<Utc>,
        reply: Reply<Option<(PartnerRecord, bool)>>,
    },
    ChangeRights {
        name: PartnerName,
        change: RightsChange,
        configured: Vec<SectionSlug>,
        now: DateTime<Utc>,
        reply: Reply<Option<(PartnerRecord, bool)>>,
    },
    RecordAudit {
        entry: Box<AuditEntry>,
        reply: Reply<()>,
    },
    SaveSubscription {
        subscription: Box<Subscription>,
        address: String,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
    DeleteSubscription {
        topic: Topic,
        callback: Callback,
        reply: Reply<bool>,
    },
    DeleteExpiredSubscriptions {
        now: DateTime<Utc>,
        reply: Reply<u64>,
    },
    ClaimDelivery {
        topic: Topic,
        document: String,
        claimant: String,
        now: DateTime<Utc>,
        reply: Reply<()>,
    },
    FinishDelivery {
        topic: Topic,
        document: String,
        reply: Reply<()>,
    },
    DateDocument {
        name: String,
        etag: String,
        now: DateTime<Utc>,
        reply: Reply<DocumentDate>,
    },
    AtomIdBase {
        proposed: String,
        reply: Reply<String>,
    },
}

/// A publish of more writes than this is bulk (a chunk of a PublishArticles batch): it is
/// written in a transaction of its own, after the small jobs that wait.
const SMALL_JOB: usize = 16;

impl Job {
    /// True for a publish of many articles (a batch's chunk).
    fn is_bulk(&self) -> bool {
        matches!(self, Self::Publish { writes, .. } if writes.len() > SMALL_JOB)
    }

    /// The instant a publish writes its articles at (their create and change times).
    fn publish_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Publish { now, .. } => Some(*now),
            _ => None,
        }
    }

    /// Moves a publish's instant on to just after `floor`, unless it is later already.
    fn write_after(&mut self, floor: DateTime<Utc>) {
        if let Self::Publish { now, .. } = self {
            *now = (*now).max(floor + TimeDelta::nanoseconds(1));
        }
    }

    /// True when the job may add to the event log.
    fn logs_events(&self) -> bool {
        matches!(
            self,
            Self::Publish { .. } | Self::Retract { .. } | Self::LiftEmbargoes { .. }
        )
    }
}

/// Sends the outcome of one job once its batch's commit is known.
type Delivery = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Pairs a job's result with its caller; also returns the job's error, if it failed.
fn deliver<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> (Delivery, Option<StoreError>) {
    let failure = result.as_ref().err().cloned();
    let delivery: Delivery = Box::new(move |commit| {
        // The caller may have gone away (cancelled RPC); the write stands regardless.
        let _ = reply.send(commit.and(result));
    });
    (delivery, failure)
}

impl SqliteStore {
    /// How many archive pages of `size` the scope fills, and its shift.
    async fn archive_size(
        &self,
        scope: &FeedScope,
        size: usize,
    ) -> Result<super::ArchiveSize, StoreError> {
        // Kept by triggers (migrations 0007 and 0012): no count of the scope's whole history.
        let (kind, name) = super::feed_size_key(scope);
        let row = sqlx::query_as(super::FEED_SIZE_SQL)
            .bind(kind)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(super::ArchiveSize::of(row, size))
    }

    /// Opens (creating if needed) `data_dir/feedpub.sqlite3` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let file = data_dir.join(DATABASE_FILE);
        let cannot_create = |path: &Path| {
            let path = path.to_owned();
            move |e| StoreError::Create {
                path,
                error: Arc::new(e),
            }
        };
        create_data_folder(data_dir).map_err(cannot_create(data_dir))?;
        create_database(&file).await.map_err(cannot_create(&file))?;
        if let Some(emptied) = emptied(&file) {
            return Err(emptied);
        }
        // SQLite opens a file it may not write for reading only, and says so at the first
        // write, which a store already migrated may not make for a while (and a WAL left
        // beside it lets it read): such a store is refused at once, and why.
        if let Some(refused) = unwritable(&file) {
            return Err(refused);
        }
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DATABASE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the acknowledgement, even on power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let mut writer = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| unopened(&file, e))?;
        // The writer revisits the pages of every index an article is in: keep them cached
        // (64 MiB) rather than read back from the file for each article of a batch; keep
        // the journal of each job's savepoint in memory rather than in a temporary file; and
        // leave the copying of the WAL into the database to a connection of its own
        // (`sqlite_checkpoint.rs`), checkpointing here only once the WAL reaches 40 MiB
        // rather than 4, to copy what is left and let the WAL start again; a WAL that a burst
        // grew past 64 MiB is cut back to that when it restarts.
        for pragma in [
            "PRAGMA cache_size = -65536",
            "PRAGMA temp_store = MEMORY",
            "PRAGMA wal_autocheckpoint = 10000",
            "PRAGMA journal_size_limit = 67108864",
        ] {
            sqlx::query(pragma).execute(&mut writer).await?;
        }
        let migrator = sqlx::migrate!("src/storage/migrations/sqlite");
        let mut attempts = 0;
        loop {
            let before = migrations_applied(&mut writer).await;
            let Err(e) = migrator.run(&mut writer).await else {
                break;
            };
            // Another process migrating the same database at once (two commands run on a
            // new data folder) applied a migration this one found missing: each runs in a
            // transaction of its own, with its record, so the one that lost rolled back
            // whole, and the next run finds it applied. Run again while the other one makes
            // progress; any other failure is the error.
            // (Or still holds the database's lock after the busy timeout: a migration
            // that takes long.)
            let raced = match &e {
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                    attempts < 40
                        && (super::sqlite_code(e) == Some(5)
                            || migrations_applied(&mut writer).await > before)
                }
                _ => false,
            };
            if !raced {
                return Err(super::migration_failed(e, &migrator));
            }
            attempts += 1;
        }
        // A pool tests a connection with a ping before lending it, by default: on SQLite
        // that is one more round trip to the connection's thread for every read (the token
        // of every call among them), to test a local file that cannot hang up.
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await?;
        let (head_tx, event_head) = watch::channel(history::event_head(&mut writer).await?);
        let head_tx = Arc::new(head_tx);
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let faults = FaultReport::default();
        let copier = Copier::open(&options, faults.clone()).await?;
        let archive_page = Arc::new(AtomicUsize::new(crate::config::DEFAULT_MAX_ITEMS));
        spawn_writer(run_writer(
            writer,
            rx,
            (Arc::clone(&head_tx), Arc::clone(&archive_page)),
            Arc::clone(&batches),
            copier,
        ))
        .await?;
        Ok(Self {
            archive_page,
            read,
            feed_articles: ArticleCache::new(FEED_CACHE_BYTES),
            writer: tx,
            event_head,
            head_tx,
            origin: super::new_origin()?,
            faults,
            #[cfg(test)]
            batches,
        })
    }

    /// How many batches of jobs the writer has run, each in one transaction.
    #[cfg(test)]
    pub(super) fn batches_run(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many rows feed reads have fetched whole (those not found decoded) and offered to
    /// the cache.
    #[cfg(test)]
    pub(super) fn feed_rows_kept(&self) -> usize {
        self.feed_articles.offered()
    }

    /// The steps of SQLite's plan for `sql`, its first `numbers` parameters bound to 0 and
    /// the next to `value`, if any.
    #[cfg(test)]
    pub(super) async fn query_plan(
        &self,
        sql: &str,
        numbers: usize,
        value: Option<&str>,
    ) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..numbers {
            query = query.bind(0_i64);
        }
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.read).await.unwrap();
        rows.iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect()
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Command::Run(job(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Runs the writer's loop on a thread of its own, with a runtime of its own. Each statement
/// is a round trip to the connection's thread, and the writer's task is woken once for
/// each answer: among the request handlers on the shared runtime, it would wait behind
/// them for every one of those wake-ups, many in each batch, while callers wait for the
/// batch's commit. The runtime is made on that thread, so nothing here has one to drop.
async fn spawn_writer(
    writer: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let (started, start) = oneshot::channel();
    std::thread::Builder::new()
        .name("feedpub-writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    runtime.block_on(writer);
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            }
        })
        .map_err(sqlx::Error::Io)?;
    start
        .await
        .map_err(|_| StoreError::Closed)?
        .map_err(sqlx::Error::Io)?;
    Ok(())
}

async fn run_writer(
    mut conn: SqliteConnection,
    mut commands: mpsc::Receiver<Command>,
    (event_head, page): (Arc<watch::Sender<u64>>, Arc<AtomicUsize>),
    batches: Arc<std::sync::atomic::AtomicU64>,
    copier: Copier,
) {
    // On this runtime, so that the copying ends with the writer.
    let checkpoints = copier.start();
    let mut received = Vec::with_capacity(MAX_BATCH);
    // Bulk jobs (batch chunks) received and not yet run, in order of arrival, each with
    // the latest instant of the publishes written before it meanwhile.
    let mut bulk: VecDeque<(Job, Option<DateTime<Utc>>)> = VecDeque::new();
    let mut close: Option<Vec<oneshot::Sender<()>>> = None;
    loop {
        if bulk.is_empty() && close.is_none() {
            // Nothing left to do: wait for the next command.
            if commands.recv_many(&mut received, MAX_BATCH).await == 0 {
                return;
            }
        } else {
            // Between two transactions, take what has arrived meanwhile, without waiting.
            while received.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => received.push(command),
                    Err(_) => break,
                }
            }
        }
        let mut small = Vec::with_capacity(received.len());
        for command in received.drain(..) {
            match command {
                Command::Run(job) if close.is_none() => {
                    if job.is_bulk() {
                        bulk.push_back((job, None));
                    } else {
                        small.push(job);
                    }
                }
                // Dropping the reply tells the caller the store is closed.
                Command::Run(job) => drop(job),
                Command::Close(reply) => close.get_or_insert_with(Vec::new).push(reply),
            }
        }
        // Small jobs (single calls) get a transaction of their own, so that they wait for
        // at most the one bulk chunk being written, not for every chunk queued before them;
        // then one bulk chunk, whatever keeps arriving, so that neither starves the other.
        let page = page.load(std::sync::atomic::Ordering::Relaxed);
        if !small.is_empty() {
            // A chunk written after these publishes is written at an instant after theirs:
            // archive pages are in the order articles were first stored (their create
            // times), and a page one of them filled must not gain a chunk's article.
            if let Some(latest) = small.iter().filter_map(Job::publish_time).max() {
                for (_, floor) in &mut bulk {
                    *floor = (*floor).max(Some(latest));
                }
            }
            batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            commit_batch(&mut conn, small, (&event_head, page)).await;
            checkpoints.committed();
        }
        if let Some((mut job, floor)) = bulk.pop_front() {
            if let Some(floor) = floor {
                job.write_after(floor);
            }
            batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            commit_batch(&mut conn, vec![job], (&event_head, page)).await;
            checkpoints.committed();
        }
        if bulk.is_empty()
            && let Some(replies) = close.take()
        {
            checkpoints.stop().await;
            // Closing the last connection copies the log into the database, but a reader
            // the pool closes in the background may outlive the writer: copy it now, which
            // readers without a read in progress do not hinder.
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            for reply in replies {
                let _ = reply.send(());
            }
            return;
        }
    }
}

/// Runs every job of the batch in one transaction, each undone alone should it fail (see
/// [`Mark`]: to its own savepoint, or to the transaction's start while nothing is kept), then
/// commits once, announces the newest event, and answers every caller. Consecutive
/// publishes of one partner run together first, undone together, with one statement per
/// table for all their rows, as if they were one job; should that fail, they are undone and
/// run again one by one.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: Vec<Job>,
    (event_head, page): (&watch::Sender<u64>, usize),
) {
    if batch.is_empty() {
        return;
    }
    let logs_events = batch.iter().any(Job::logs_events);
    // Each statement is a round trip to the connection's thread: a job alone, the common
    // case with few callers, skips the savepoint and its release.
    let alone_in_batch = batch.len() == 1;
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(batch.len());
    // A publish alone is the whole transaction: it begins it in the command of its first read
    // and commits it in the command of its last write.
    let span = if alone_in_batch && matches!(batch.first(), Some(Job::Publish { .. })) {
        writes::Span::Whole
    } else {
        writes::Span::Inside
    };
    // The newest event, once a publish alone has committed.
    let mut committed = None;
    let begun = if span == writes::Span::Whole {
        Ok(Default::default())
    } else {
        sqlx::query(writes::BEGIN).execute(&mut *conn).await
    };
    if let Err(e) = begun {
        let error = StoreError::from(e);
        for job in batch {
            fail(job, error.clone());
        }
        return;
    }
    let mut jobs = batch.into_iter().peekable();
    // Jobs of a group that failed together, to run one by one before the next.
    let mut alone: VecDeque<Job> = VecDeque::new();
    // True until a job's writes are kept: the next job's undo point is then the
    // transaction's start.
    let mut nothing_kept = true;
    loop {
        let job = match alone.pop_front() {
            Some(job) => job,
            None => {
                let Some(job) = jobs.next() else { break };
                let group = publish_group(job, &mut jobs);
                if group.len() == 1 {
                    group.into_iter().next().expect("a group of one")
                } else {
                    match publish_together(conn, group, (nothing_kept, page)).await {
                        Together::Stored(stored) => {
                            nothing_kept = false;
                            deliveries.extend(stored);
                        }
                        Together::Undone(group) => alone.extend(group),
                        Together::Lost(error, group) => {
                            abandon(conn, deliveries, error, group.into_iter().chain(jobs)).await;
                            return;
                        }
                    }
                    continue;
                }
            }
        };
        let mark = if alone_in_batch {
            None
        } else {
            match Mark::set(conn, nothing_kept).await {
                Ok(mark) => Some(mark),
                Err(e) => {
                    fail(job, e.into());
                    continue;
                }
            }
        };
        let (delivery, failure) = match job {
            Job::Publish {
                partner,
                checks,
                writes,
                now,
                actor,
                reply,
            } => {
                let ids: Vec<String> = writes.iter().map(|w| w.id.to_string()).collect();
                let writes = writes.into_iter().map(|w| (w, now, &*checks)).collect();
                let audit = |results: &[_]| publish_entries(&actor, &ids, results, now);
                let result = writes::apply_publishes(conn, (partner, page), writes, span, audit)
                    .await
                    .map(|(results, head)| {
                        committed = head;
                        results
                    });
                deliver(reply, result)
            }
            Job::Retract {
                partner,
                retraction,
                now,
                actor,
                reply,
            } => {
                let article_id = retraction.id.to_string();
                let asked = (retraction.reason.clone(), retraction.by_operator);
                let result = writes::apply_retract(conn, partner, *retraction, now).await;
                let result = audit::record(conn, result, |retracted| {
                    let retracted = retracted.as_ref().map(|(a, done)| (a, *done));
                    let asked = (asked.0.as_str(), asked.1);
                    AuditEntry::retraction(&actor, &article_id, asked, retracted, now)
                })
                .await;
                deliver(reply, result)
            }
            Job::LiftEmbargoes { now, reply } => {
                deliver(reply, writes::apply_lifts(conn, now).await)
            }
            Job::ForgetRequests { before, reply } => {
                deliver(reply, writes::forget_requests(conn, before).await)
            }
            Job::ProbeWrite { reply } => deliver(reply, writes::probe_write(conn).await),
            Job::AddPartner {
                partner,
                now,
                reply,
            } => deliver(reply, partners::add(conn, partner, now).await),
            Job::RevokePartner { name, now, reply } => {
                deliver(reply, partners::revoke(conn, &name, now).await)
            }
            Job::NewToken {
                name,
                token,
                now,
                reply,
            } => deliver(
                reply,
                partners::replace_token(conn, &name, token, now).await,
            ),
            Job::ChangeRights {
                name,
                change,
                configured,
                now,
                reply,
            } => deliver(
                reply,
                partners::change_rights(conn, &name, change, configured, now).await,
            ),
            Job::RecordAudit { entry, reply } => deliver(reply, audit::insert(conn, &entry).await),
            Job::SaveSubscription {
                subscription,
                address,
                now,
                reply,
            } => deliver(
                reply,
                websub::save(conn, *subscription, &address, now).await,
            ),
            Job::DeleteSubscription {
                topic,
                callback,
                reply,
            } => deliver(reply, websub::delete(conn, &topic, &callback).await),
            Job::DeleteExpiredSubscriptions { now, reply } => {
                deliver(reply, websub::delete_expired(conn, now).await)
            }
            Job::ClaimDelivery {
                topic,
                document,
                claimant,
                now,
                reply,
            } => deliver(
                reply,
                websub::claim(conn, &topic, &document, &claimant, now).await,
            ),
            Job::FinishDelivery {
                topic,
                document,
                reply,
            } => deliver(reply, websub::finish(conn, &topic, &document).await),
            Job::DateDocument {
                name,
                etag,
                now,
                reply,
            } => deliver(reply, date_document(conn, &name, &etag, now).await),
            Job::AtomIdBase { proposed, reply } => {
                deliver(reply, atom_id_base(conn, &proposed).await)
            }
        };
        deliveries.push(delivery);
        let Some(mark) = mark else {
            if failure.is_some() {
                // The job was the whole transaction: undo it; its caller gets its own error.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                for delivery in deliveries {
                    delivery(Ok(()));
                }
                return;
            }
            continue;
        };
        // A failed job is undone; its caller gets its own error.
        let Some(error) = failure else {
            mark.release(conn).await;
            nothing_kept = false;
            continue;
        };
        if let Err(lost) = mark.undo(conn, &error).await {
            abandon(conn, deliveries, lost, alone.into_iter().chain(jobs)).await;
            return;
        }
    }
    // The newest event, when the batch logged any.
    let head = match committed {
        Some(head) => Ok(Some(head)),
        None if logs_events => writes::Script::default()
            .commit_reading_event_head(&mut *conn)
            .await
            .map(Some),
        None => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| None)
            .map_err(StoreError::from),
    };
    let commit = head.map(|head| {
        if let Some(head) = head {
            super::raise_event_head(event_head, head);
        }
    });
    if commit.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    for delivery in deliveries {
        delivery(commit.clone());
    }
}

/// Ends a batch whose transaction is gone (see [`Mark::undo`]): nothing of it is stored, and
/// the callers of the jobs run (`deliveries`) and of those left (`rest`) all get `error`.
/// Later jobs must not run outside a transaction.
async fn abandon(
    conn: &mut SqliteConnection,
    deliveries: Vec<Delivery>,
    error: StoreError,
    rest: impl Iterator<Item = Job>,
) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    for delivery in deliveries {
        delivery(Err(error.clone()));
    }
    for job in rest {
        fail(job, error.clone());
    }
}

fn fail(job: Job, error: StoreError) {
    match job {
        Job::Publish { reply, .. } => drop(reply.send(Err(error))),
        Job::Retract { reply, .. } => drop(reply.send(Err(error))),
        Job::LiftEmbargoes { reply, .. } => drop(reply.send(Err(error))),
        Job::ForgetRequests { reply, .. } => drop(reply.send(Err(error))),
        Job::ProbeWrite { reply } => drop(reply.send(Err(error))),
        Job::AddPartner { reply, .. } => drop(reply.send(Err(error))),
        Job::RevokePartner { reply, .. } => drop(reply.send(Err(error))),
        Job::NewToken { reply, .. } => drop(reply.send(Err(error))),
        Job::ChangeRights { reply, .. } => drop(reply.send(Err(error))),
        Job::RecordAudit { reply, .. } => drop(reply.send(Err(error))),
        Job::SaveSubscription { reply, .. } => drop(reply.send(Err(error))),
        Job::DeleteSubscription { reply, .. } => drop(reply.send(Err(error))),
        Job::DeleteExpiredSubscriptions { reply, .. } => drop(reply.send(Err(error))),
        Job::ClaimDelivery { reply, .. } => drop(reply.send(Err(error))),
        Job::FinishDelivery { reply, .. } => drop(reply.send(Err(error))),
        Job::DateDocument { reply, .. } => drop(reply.send(Err(error))),
        Job::AtomIdBase { reply, .. } => drop(reply.send(Err(error))),
    }
}

/// The audit entries of a job's stored publishes, for `actor`; refused writes (a failed
/// precondition, a reused request id) changed nothing and are not recorded.
fn publish_entries(
    actor: &Actor,
    ids: &[String],
    results: &[Result<Revision, StoreError>],
    now: DateTime<Utc>,
) -> Vec<AuditEntry> {
    ids.iter()
        .zip(results)
        .filter_map(|(id, result)| {
            let revision = result.as_ref().ok()?;
            let outcome = match revision {
                Revision::Unchanged(_) => Outcome::Unchanged,
                Revision::Created(_) | Revision::Updated { .. } => Outcome::Ok,
            };
            Some(
                AuditEntry::new(actor, AuditOperation::Publish, Some(id), outcome, now)
                    .with_detail(format!("section {}", revision.article().content.section)),
            )
        })
        .collect()
}

/// `job` and the publishes of the same partner that follow it in `jobs`, if it is a
/// publish; otherwise `job` alone.
fn publish_group(job: Job, jobs: &mut Peekable<impl Iterator<Item = Job>>) -> Vec<Job> {
    let Job::Publish { partner, .. } = job else {
        return vec![job];
    };
    let mut group = vec![job];
    while let Some(next) =
        jobs.next_if(|next| matches!(next, Job::Publish { partner: p, .. } if *p == partner))
    {
        group.push(next);
    }
    group
}

/// Where a job's writes are undone to, without undoing the jobs kept before it.
enum Mark {
    /// The transaction's start: nothing is kept yet.
    Start,
    /// A savepoint, over the jobs kept before it.
    Savepoint,
}

impl Mark {
    /// Marks the point before a job (`nothing_kept`: at the transaction's start). The start
    /// needs no savepoint, and that matters beyond the two statements saved: every
    /// statement that writes under a savepoint cuts SQLite's in-memory sub-journal back to
    /// the savepoint's share when it ends, walking the journal's list of 1 KiB chunks from
    /// its start, so that a job of thousands of articles (each statement of 64 of them adds
    /// hundreds of chunks) spent a sixth of the connection's thread walking it.
    async fn set(conn: &mut SqliteConnection, nothing_kept: bool) -> Result<Self, sqlx::Error> {
        if nothing_kept {
            return Ok(Self::Start);
        }
        sqlx::query("SAVEPOINT job").execute(&mut *conn).await?;
        Ok(Self::Savepoint)
    }

    /// Keeps the job's writes.
    async fn release(self, conn: &mut SqliteConnection) {
        if let Self::Savepoint = self {
            let _ = sqlx::query("RELEASE job").execute(&mut *conn).await;
        }
    }

    /// Undoes the writes of a job that failed with `cause`, leaving the transaction open
    /// with the jobs kept before it. Fails, with the error every other caller of the batch
    /// is to get, when the transaction is gone: SQLite rolled it back by itself, which it
    /// does on a full disk or an I/O error (then `cause`, and the jobs kept are lost), or,
    /// at the start, it could not be begun again (its own error: nothing was kept, and
    /// nothing was stored).
    async fn undo(self, conn: &mut SqliteConnection, cause: &StoreError) -> Result<(), StoreError> {
        match self {
            Self::Start => {
                // It fails when SQLite rolled back already, which leaves the same state.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                sqlx::query(writes::BEGIN).execute(&mut *conn).await?;
            }
            Self::Savepoint => {
                if sqlx::query("ROLLBACK TO job")
                    .execute(&mut *conn)
                    .await
                    .is_err()
                {
                    return Err(cause.clone());
                }
                let _ = sqlx::query("RELEASE job").execute(&mut *conn).await;
            }
        }
        Ok(())
    }
}

/// What became of publishes run together.
enum Together {
    /// Stored in the transaction: each job's delivery.
    Stored(Vec<Delivery>),
    /// Failed and undone: to run again one by one.
    Undone(Vec<Job>),
    /// Failed, and the transaction is gone with everything in it: every caller gets this.
    Lost(StoreError, Vec<Job>),
}

/// Runs the publishes of one partner's jobs as one, undone together ([`Mark`];
/// `nothing_kept` while nothing is kept in the transaction): their writes in job order,
/// each at its job's time, then every audit entry in one statement. Each job gets the
/// results of its own writes, as if it had run alone right after the one before.
async fn publish_together(
    conn: &mut SqliteConnection,
    group: Vec<Job>,
    (nothing_kept, page): (bool, usize),
) -> Together {
    let Ok(mark) = Mark::set(conn, nothing_kept).await else {
        return Together::Undone(group);
    };
    let mut partner = None;
    let mut writes = Vec::new();
    for job in &group {
        if let Job::Publish {
            partner: p,
            checks,
            writes: w,
            now,
            ..
        } = job
        {
            partner = Some(*p);
            writes.extend(w.iter().map(|write| (write.clone(), *now, &**checks)));
        }
    }
    let Some(partner) = partner else {
        mark.release(conn).await;
        return Together::Undone(group);
    };
    // Each job's audit entries, of its own results, go with the rows.
    let audit = |results: &[Result<Revision, StoreError>]| {
        let mut entries = Vec::new();
        let mut rest = results;
        for job in &group {
            if let Job::Publish {
                writes, now, actor, ..
            } = job
            {
                let (mine, after) = rest.split_at(writes.len().min(rest.len()));
                rest = after;
                let ids: Vec<String> = writes.iter().map(|w| w.id.to_string()).collect();
                entries.extend(publish_entries(actor, &ids, mine, *now));
            }
        }
        entries
    };
    let target = (partner, page);
    let result = writes::apply_publishes(conn, target, writes, writes::Span::Inside, audit)
        .await
        .map(|(mut results, _)| {
            // Split the results back into each job's.
            let mut split = Vec::with_capacity(group.len());
            for job in &group {
                if let Job::Publish { writes, .. } = job {
                    let rest = results.split_off(writes.len().min(results.len()));
                    split.push(std::mem::replace(&mut results, rest));
                }
            }
            split
        });
    match result {
        Ok(split) => {
            mark.release(conn).await;
            let stored = group
                .into_iter()
                .zip(split)
                .filter_map(|(job, results)| match job {
                    Job::Publish { reply, .. } => Some(deliver(reply, Ok(results)).0),
                    _ => None,
                })
                .collect();
            Together::Stored(stored)
        }
        Err(error) => match mark.undo(conn, &error).await {
            Ok(()) => Together::Undone(group),
            Err(lost) => Together::Lost(lost, group),
        },
    }
}

pub(super) const ARTICLE_COLUMNS: &str = "partner_id, article_id, guid, section, state, title, subtitle, kicker, \
     authors, summary, content_html, content_text, tags, canonical_url, publish_time, update_time, \
     updated, expire_time, create_time, change_time, retract_time, retract_reason, etag, \
     embargo_time, media, language, version, shown_change_time";

/// `ARTICLE_COLUMNS` as columns of the `articles` table, for queries that join others.
pub(super) fn qualified_columns() -> String {
    let columns: Vec<String> = ARTICLE_COLUMNS
        .split(',')
        .map(|c| format!("articles.{}", c.trim()))
        .collect();
    columns.join(", ")
}

/// A retracted article that was in its feeds when it was retracted: published, its embargo
/// over and not expired. Only those leave a tombstone; any other would tell readers about
/// an article they never saw (an embargoed one, say).
pub(super) const SHOWN_WHEN_RETRACTED: &str = "state = 2 AND publish_time <= retract_time \
     AND (embargo_time IS NULL OR embargo_time <= retract_time) \
     AND (expire_time IS NULL OR expire_time > retract_time)";

/// A row whose publish, embargo and expire times may date its feed: not one written after
/// it expired with nothing of it ever shown in the scope (stored already expired, or moved
/// in after it expired), which no reader of the feed saw come or go. As
/// `Article::last_shown_change` decides. In this order: the feed indexes of sections and
/// `all` hold `expire_time` and `change_time`, so a row with no expiry, or written before
/// it, is decided there, and SQLite seeks the article's row (its last column past the
/// body's overflow pages) only for the rest.
pub(super) const NOT_UNSEEN_AFTER_EXPIRY: &str = "(expire_time IS NULL \
     OR change_time < expire_time OR shown_change_time IS NOT NULL)";

pub(super) async fn select_article(
    conn: &mut SqliteConnection,
    partner: PartnerId,
    id: &ArticleId,
) -> Result<Option<Article>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ARTICLE_COLUMNS} FROM articles WHERE partner_id = ? AND article_id = ?"
    ))
    .bind(partner.0)
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(article_from_row).transpose()
}

/// Which articles make up a scope's archive.
pub(super) enum ArchiveFilter<'a> {
    All,
    Section(&'a str),
    /// The articles carrying a name in an author or tag table.
    Named {
        table: &'static str,
        name: &'a str,
    },
}

impl<'a> ArchiveFilter<'a> {
    pub(super) fn of(scope: &'a FeedScope) -> Self {
        match scope {
            FeedScope::All => Self::All,
            FeedScope::Section(slug) => Self::Section(slug.as_str()),
            FeedScope::Author(named) | FeedScope::Tag(named) => Self::Named {
                table: names_table(scope),
                name: named.name(),
            },
        }
    }

    /// The statement that reads archive page `page` of `size` articles, in archive order
    /// (first stored first), with what to bind: `?1` to `?3`, then the section or name as
    /// `?4`, if any. Each row carries the article's columns and `next_filled`, the create
    /// time of the next page's last article (NULL when there is no next page), in the same
    /// statement, so that both come from one snapshot.
    pub(super) fn page(&self, page: usize, size: usize) -> (String, [i64; 3], Option<&'a str>) {
        let (source, value) = self.source();
        let sql = format!(
            "SELECT {columns},
                    (SELECT articles.create_time FROM {source}
                     ORDER BY articles.create_time, articles.guid LIMIT 1 OFFSET ?3)
                        AS next_filled
             FROM {source}
             ORDER BY articles.create_time, articles.guid LIMIT ?1 OFFSET ?2",
            columns = qualified_columns(),
        );
        let bind = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let first = page.saturating_sub(1).saturating_mul(size);
        let next_last = page
            .saturating_add(1)
            .saturating_mul(size)
            .saturating_sub(1);
        (sql, [bind(size), bind(first), bind(next_last)], value)
    }

    /// `(FROM … WHERE …, bound value)`: the `?4` of the page query is the section or name.
    fn source(&self) -> (String, Option<&'a str>) {
        match self {
            Self::All => ("articles".to_owned(), None),
            Self::Section(section) => ("articles WHERE section = ?4".to_owned(), Some(section)),
            Self::Named { table, name } => (
                format!(
                    "{table} AS n JOIN articles ON articles.partner_id = n.partner_id \
                     AND articles.article_id = n.article_id WHERE n.name = ?4"
                ),
                Some(name),
            ),
        }
    }
}

/// Archive page `page` from the rows of [`ArchiveFilter::page`]; see [`ArchivePage::of`].
/// `size` is the scope's, read before: the newest page (`page` of `pages`) has no next
/// page, even should one fill between the two reads.
pub(super) fn archive_page_of(
    rows: &[impl Columns],
    page: usize,
    size: (usize, Option<super::Shift>),
    now: DateTime<Utc>,
) -> Result<ArchivePage, StoreError> {
    let next_filled = match rows.first() {
        Some(row) if page < size.0 => row.value::<Option<i64>>("next_filled")?.map(from_nanos),
        _ => None,
    };
    let articles = rows
        .iter()
        .map(article_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ArchivePage::of(articles, size, next_filled, now))
}

/// The table a feed's articles are chosen from, and the filter on it of the scope's `?3`
/// (`""` for `all`). Sections and `all` choose from `articles`; author and tag feeds from
/// the name's rows, which carry the article's state, feed times, change time and GUID and
/// have the indexes a section has, so they touch article rows only for those they show.
pub(super) fn feed_source(scope: &FeedScope) -> (&'static str, &'static str) {
    match scope {
        FeedScope::All => ("articles", ""),
        FeedScope::Section(_) => ("articles", "section = ?3 AND"),
        FeedScope::Author(_) | FeedScope::Tag(_) => (names_table(scope), "name = ?3 AND"),
    }
}

/// What the names of the partial indexes of the scope's [`feed_source`] start with
/// (`{prefix}_embargo`, `{prefix}_retract`, `{prefix}_corrected` for `all` and sections).
fn index_prefix(scope: &FeedScope) -> &'static str {
    match scope {
        FeedScope::All => "articles",
        FeedScope::Section(_) => "articles_section",
        FeedScope::Author(_) | FeedScope::Tag(_) => feed_source(scope).0,
    }
}

/// `FROM … WHERE … ORDER BY … LIMIT ?2`: the articles a feed shows at `?1`, in feed order
/// (newest publish time first, then GUID), at most `?2`, from the scope's [`feed_source`].
fn shown_in_order(scope: &FeedScope) -> String {
    let (source, filter3) = feed_source(scope);
    format!(
        "FROM {source}
         WHERE {filter3} {IN_VIEW}
         ORDER BY publish_time DESC, guid LIMIT ?2"
    )
}

/// An article in view at `?1`: published, its publish time come, not expired, no embargo
/// running.
const IN_VIEW: &str = "state = 1 AND publish_time <= ?1
         AND (expire_time IS NULL OR expire_time > ?1)
         AND (embargo_time IS NULL OR embargo_time <= ?1)";

/// `SELECT {keyed}, change_time, guid …`: what a feed's current documents show at `?1`, in
/// feed order. That is the newest `?2` articles by publish time
/// ([`shown_in_order`]), and, in view, two kinds of articles older than those:
///
/// - those of the feed's open archive page: the articles stored since its last full page
///   (fewer than `?2`, newest last), which no archive page holds yet. Copy filed with an
///   older publish time than the newest `?2` (a late report, a backfill) is then in the
///   current documents until its page fills, and the current documents and the archive
///   pages together hold every article (RFC 5005 §4);
/// - those that changed, or came into view, since the oldest of the newest was published:
///   a correction or a move into the scope (a write after the article's first) made since
///   then, an embargo that ended since then (at most `?2` of them in view, the latest
///   first, each counted once). Archive pages are documents a
///   reader may never fetch again (RFC 5005 §4.2), so a change that must reach every
///   reader is published in the current documents too; it stays there as long as an
///   article published at that moment would, so a reader that polls often enough not to
///   miss new articles misses no correction either.
///
/// The open page's keys come from the index of the archive order alone, and the changed
/// ones' from the indexes of change times and embargo ends; only those not among the
/// newest (rare) are looked up, since their times sit past the bodies in SQLite's rows,
/// each by its key. The key is the rowid in SQLite, the partner and article ids in
/// PostgreSQL (`postgres`).
pub(super) fn current_keys(scope: &FeedScope, postgres: bool) -> String {
    let (source, filter3) = feed_source(scope);
    let sqlite_name = !postgres && scope.name().is_some();
    // The keys the statement works with: the rowid of a SQLite article row, else the
    // article's ids (PostgreSQL, and SQLite's name rows, which join their article rows'
    // rowids at the end).
    let (key, keyed) = if postgres || sqlite_name {
        ("partner_id, article_id", "partner_id, article_id")
    } else {
        ("rowid AS key", "key")
    };
    let (kind, _) = super::feed_size_key(scope);
    // `all` binds no `?3` to its keys (PostgreSQL counts the parameters a statement names).
    let name = if filter3.is_empty() { "''" } else { "?3" };
    // Corrections and embargo ends on their partial indexes (embargo ends as `FeedSql::of`
    // reads them), so that no article written once is walked.
    let indexed = |index: &str| {
        if postgres {
            source.to_owned()
        } else {
            format!("{source} INDEXED BY {}_{index}", index_prefix(scope))
        }
    };
    let (corrected, embargoed) = (indexed("corrected"), indexed("embargo"));
    // The rows shown beside the newest, looked up by key.
    let others = format!(
        "SELECT {keyed} FROM open_page UNION SELECT {keyed} FROM changed
         EXCEPT SELECT {keyed} FROM newest"
    );
    let looked_up = if postgres {
        format!("articles WHERE (partner_id, article_id) IN ({others}) AND")
    } else if sqlite_name {
        // By the name rows' primary key: with a list of keys to test instead, SQLite walks
        // the name's feed index.
        format!("({others}) AS other CROSS JOIN {source} USING ({keyed}) WHERE {filter3}")
    } else {
        // Left to itself, SQLite walks the feed's index testing each row against the list.
        format!("articles NOT INDEXED WHERE rowid IN ({others}) AND")
    };
    // What is shown, with its key.
    let (outer, join) = if sqlite_name {
        (
            "SELECT articles.rowid AS key, shown.change_time, shown.guid FROM".to_owned(),
            "CROSS JOIN articles USING (partner_id, article_id)",
        )
    } else {
        (format!("SELECT {keyed}, change_time, guid FROM"), "")
    };
    format!(
        "WITH newest AS MATERIALIZED (SELECT {key}, change_time, guid, publish_time {newest}),
              open_page AS (
                  SELECT {key} FROM {source} WHERE {filter3} TRUE
                  ORDER BY create_time DESC, guid DESC
                  LIMIT COALESCE((SELECT articles % ?2 FROM feed_sizes
                                  WHERE kind = '{kind}' AND name = {name}), 0)),
              since AS (SELECT MIN(publish_time) AS t FROM newest HAVING COUNT(*) >= ?2),
              changed AS (
                  SELECT {keyed} FROM (
                      SELECT {key}, shown_change_time AS t FROM {corrected}
                      WHERE {filter3} shown_change_time > (SELECT t FROM since)
                        AND shown_change_time > create_time AND {in_view}
                      UNION ALL
                      SELECT {key}, embargo_time AS t FROM {embargoed}
                      WHERE {filter3} embargo_time > (SELECT t FROM since)
                        AND embargo_time <= ?1 AND {in_view}) AS change
                  WHERE ({keyed}) NOT IN (SELECT {keyed} FROM newest)
                  GROUP BY {keyed}
                  ORDER BY MAX(t) DESC, {keyed} LIMIT ?2)
         {outer} (
             SELECT {keyed}, change_time, guid, publish_time FROM newest
             UNION ALL
             SELECT {key}, change_time, guid, publish_time FROM {looked_up} {in_view}
         ) AS shown {join}
         ORDER BY shown.publish_time DESC, shown.guid",
        newest = shown_in_order(scope),
        in_view = IN_VIEW,
    )
}

/// The statements that read a feed. SQLite runs the keys and the summary as one script (one
/// round trip to the connection's thread), then reads whole rows only for the articles its
/// cache lacks; PostgreSQL does the same with its own keys (`postgres::FeedSql`). All bind
/// `?1` to now, `?2` to the limit, `?3` to the section, author or tag (`''` for `all`) and
/// `?4` to the tombstone window; the keys use only the first three.
pub(super) struct FeedSql {
    /// The row keys, change times and GUIDs of the visible articles in feed order, read from
    /// indexes alone: `key`, `change_time`, `guid`.
    pub(super) keys: String,
    /// Recent tombstones, newest first (part of `summary`).
    pub(super) tombstones: String,
    /// One row per recent tombstone, newest first, or a single row of NULLs when there is
    /// none; each carries when what the feed shows last changed and the size of its archive.
    pub(super) summary: String,
}

impl FeedSql {
    /// Chooses the articles from the scope's [`feed_source`], and reads article rows only
    /// for the keys of those it shows.
    pub(super) fn of(scope: &FeedScope) -> Self {
        let (source, filter3) = feed_source(scope);
        let index_prefix = index_prefix(scope);
        // Embargo ends and retractions are looked up on their own partial indexes, newest
        // first. Left to itself, SQLite takes the index on `state` (the equality looks more
        // selective than a range) and reads every published or retracted row of the scope,
        // embargo_time and retract_time included, which sit after the bodies.
        let embargoed = format!("{source} INDEXED BY {index_prefix}_embargo");
        let retracted = format!("{source} INDEXED BY {index_prefix}_retract");
        let keys = current_keys(scope, false);
        // Tombstones of retractions less than a window ago, newest first: they depend on
        // `now` only through the window, whose end is a transition of its own.
        let tombstones = format!(
            "SELECT guid, retract_time FROM {retracted}
             WHERE {filter3} {SHOWN_WHEN_RETRACTED}
               AND retract_time <= ?1 AND retract_time > ?1 - ?4
             ORDER BY retract_time DESC, guid LIMIT ?2"
        );
        // Everything that changes what the feed shows: writes with an article in view
        // before or after them, articles whose publish time has come (unless an embargo
        // still runs), whose embargo has ended or whose expire time has passed (unless
        // retracted before, or never seen in the scope), and tombstones whose window has
        // ended. NULL when none has: a feed of articles under
        // embargo only is dated as an empty one.
        let last_change = format!(
            "NULLIF(MAX(
                 COALESCE((SELECT MAX(shown_change_time) FROM {source} WHERE {filter3} 1), 0),
                 COALESCE((SELECT MAX(publish_time) FROM {source}
                           WHERE {filter3} state = 1 AND publish_time <= ?1
                             AND (embargo_time IS NULL OR embargo_time <= ?1)
                             AND {NOT_UNSEEN_AFTER_EXPIRY}), 0),
                 COALESCE((SELECT MAX(expire_time) FROM {source}
                           WHERE {filter3} expire_time <= ?1
                             AND (state = 1 OR retract_time > expire_time)
                             AND {NOT_UNSEEN_AFTER_EXPIRY}), 0),
                 COALESCE((SELECT MAX(embargo_time) FROM {embargoed}
                           WHERE {filter3} state = 1 AND embargo_time <= ?1
                             AND {NOT_UNSEEN_AFTER_EXPIRY}), 0),
                 COALESCE((SELECT MAX(retract_time) FROM {retracted}
                           WHERE {filter3} {SHOWN_WHEN_RETRACTED}
                             AND retract_time <= ?1 - ?4) + ?4, 0)), 0)"
        );
        let summary = feed_summary_sql(scope, &last_change, &tombstones, "1");
        Self {
            keys,
            tombstones,
            summary,
        }
    }

    /// The keys and summary statements, keys first, as one script.
    pub(super) fn script(&self) -> String {
        format!("{};\n{}", self.keys, self.summary)
    }
}

/// Whole rows of the articles whose row keys `?1` lists as a JSON array, each with its key
/// (built once: feeds are read on every publish).
pub(super) fn feed_rows_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT rowid AS key, {ARTICLE_COLUMNS} FROM articles
             WHERE rowid IN (SELECT value FROM json_each(?1))"
        )
    });
    &SQL
}

/// A feed's summary statement, the same in both backends (see [`FeedSql::summary`]): the
/// `last_change` expression and the size of the archive, joined to the `tombstones` query,
/// `on` being the backend's literal true.
pub(super) fn feed_summary_sql(
    scope: &FeedScope,
    last_change: &str,
    tombstones: &str,
    on: &str,
) -> String {
    let (kind, _) = super::feed_size_key(scope);
    // Kept by triggers in the transaction of every write: no count of the scope's whole
    // history.
    format!(
        "SELECT summary.last_change, summary.archived, summary.shifted, tombstone.guid,
                tombstone.retract_time
         FROM (SELECT {last_change} AS last_change,
                      (SELECT articles FROM feed_sizes WHERE kind = '{kind}' AND name = ?3)
                          AS archived,
                      (SELECT shown_shift_time FROM feed_sizes
                       WHERE kind = '{kind}' AND name = ?3) AS shifted) AS summary
         LEFT JOIN ({tombstones}) AS tombstone ON {on}
         ORDER BY tombstone.retract_time DESC, tombstone.guid"
    )
}

/// The next instant a feed changes without a write: `?1` now, `?2` a time later than any
/// (returned when there is none), `?3` the tombstone window. The embargo and retraction
/// arms name their partial indexes, for the reason given in [`FeedSql::of`]: this runs
/// before every regeneration batch.
pub(super) fn next_transition_sql() -> String {
    format!(
        "SELECT MIN(
             COALESCE((SELECT MIN(publish_time) FROM articles
                       WHERE state = 1 AND publish_time > ?1), ?2),
             COALESCE((SELECT MIN(expire_time) FROM articles WHERE expire_time > ?1), ?2),
             COALESCE((SELECT MIN(embargo_time) FROM articles INDEXED BY articles_embargo
                       WHERE state = 1 AND embargo_time > ?1), ?2),
             COALESCE((SELECT MIN(retract_time) FROM articles INDEXED BY articles_retract
                       WHERE {SHOWN_WHEN_RETRACTED} AND retract_time > ?1 - ?3) + ?3, ?2))"
    )
}

/// Every name of a table of author names or tags, in order. `SELECT DISTINCT name` walked
/// the whole table, one row per article and name (3 s for 1 M articles); this looks up the
/// next name after each, one index search per name.
pub(super) fn distinct_names_sql(table: &str) -> String {
    format!(
        "WITH RECURSIVE names (name) AS (
             SELECT MIN(name) FROM {table}
             UNION ALL
             SELECT (SELECT MIN(name) FROM {table} WHERE name > names.name)
             FROM names WHERE names.name IS NOT NULL
         )
         SELECT name FROM names WHERE name IS NOT NULL
             AND EXISTS (SELECT 1 FROM {table} AS row WHERE row.name = names.name
                         AND {CAME_INTO_VIEW})"
    )
}

/// A name row whose article has come into view by `?1`: its publish time and the end of its
/// embargo have come, and it was neither retracted nor expired before then (nor stored
/// already expired). Until one of its rows has, a name has no feed: an embargoed or
/// scheduled article's names are not given away by a feed of theirs (its title names
/// them). The row holds the article's current times only: a name whose only article was
/// put back under embargo, or corrected after it expired, keeps its feeds while they are
/// served, and has none after a restart, as a name no article carries any more.
pub(super) const CAME_INTO_VIEW: &str = "row.publish_time <= ?1
    AND (row.embargo_time IS NULL OR row.embargo_time <= ?1)
    AND NOT (row.state = 2
             AND row.retract_time <= MAX(row.publish_time, COALESCE(row.embargo_time, 0)))
    AND (row.expire_time IS NULL
         OR (row.expire_time > MAX(row.publish_time, COALESCE(row.embargo_time, 0))
             AND row.change_time < row.expire_time))";

/// Makes the author or tag scope of a name.
pub(super) type NamedScopeOf = fn(&str) -> FeedScope;

/// The tables of author names and of tags, with the scope each name has a feed in.
pub(super) const NAME_TABLES: [(&str, NamedScopeOf); 2] = [
    ("article_authors", FeedScope::author),
    ("article_tags", FeedScope::tag),
];

/// The table of the names of an author or tag scope (`article_tags` for the others).
pub(super) fn names_table(scope: &FeedScope) -> &'static str {
    match scope {
        FeedScope::Author(_) => "article_authors",
        _ => "article_tags",
    }
}

pub(super) fn state_code(state: ArticleState) -> i64 {
    match state {
        ArticleState::Published => 1,
        ArticleState::Retracted => 2,
    }
}

/// See [`Store::date_document`]: read and, for a new version, recorded by the writer, so
/// that two processes on one file cannot both take the version for theirs.
async fn date_document(
    conn: &mut SqliteConnection,
    name: &str,
    etag: &str,
    now: DateTime<Utc>,
) -> Result<DocumentDate, StoreError> {
    let recorded: Option<super::RecordedDate> =
        sqlx::query_as("SELECT etag, last_modified, replaced FROM document_dates WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let (dated, record) = DocumentDate::of(recorded, etag, now);
    if record {
        sqlx::query(
            "INSERT INTO document_dates (name, etag, last_modified, replaced) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET etag = excluded.etag,
                 last_modified = excluded.last_modified, replaced = excluded.replaced",
        )
        .bind(name)
        .bind(etag)
        .bind(nanos(dated.date))
        .bind(dated.replaced.map(nanos))
        .execute(conn)
        .await?;
    }
    Ok(dated)
}

/// See [`Store::atom_id_base`]: by the writer, so that the first process to ask records it.
async fn atom_id_base(conn: &mut SqliteConnection, proposed: &str) -> Result<String, StoreError> {
    sqlx::query(
        "INSERT INTO site_identity (one, atom_id_base) VALUES (1, ?) ON CONFLICT (one) DO NOTHING",
    )
    .bind(proposed)
    .execute(&mut *conn)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT atom_id_base FROM site_identity WHERE one = 1")
            .fetch_one(conn)
            .await?,
    )
}

/// Unix nanoseconds; validation keeps every stored time within i64's range (1677–2262).
/// A time outside it (a query's bound, say `audit --since 1600-01-01`) saturates, towards
/// the past as towards the future.
pub(super) fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub(super) fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

pub(super) fn article_from_row(row: &impl Columns) -> Result<Article, StoreError> {
    let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("{what}: {e}"));
    let json_list = |col: &str| -> Result<Vec<String>, StoreError> {
        let raw: String = row.value(col)?;
        serde_json::from_str(&raw).map_err(|e| corrupt(col, e.to_string()))
    };
    let media: Vec<Media> = serde_json::from_str(&row.value::<String>("media")?)
        .map_err(|e| corrupt("media", e.to_string()))?;
    let id: String = row.value("article_id")?;
    let section: String = row.value("section")?;
    let state = state_from_code(row.value("state")?)?;
    let version = u32::try_from(row.value::<i64>("version")?)
        .map_err(|e| corrupt("version", e.to_string()))?;
    Ok(Article {
        partner: PartnerId(row.value("partner_id")?),
        id: ArticleId::parse(&id).map_err(|e| corrupt("article_id", e))?,
        guid: row.value("guid")?,
        content: ArticleContent {
            section: SectionSlug::parse(&section).map_err(|e| corrupt("section", e))?,
            title: row.value("title")?,
            subtitle: row.value("subtitle")?,
            kicker: row.value("kicker")?,
            authors: json_list("authors")?,
            summary: row.value("summary")?,
            content_html: row.value("content_html")?,
            content_text: row.value("content_text")?,
            tags: json_list("tags")?,
            canonical_url: row.value("canonical_url")?,
            publish_time: from_nanos(row.value("publish_time")?),
            update_time: row.value::<Option<i64>>("update_time")?.map(from_nanos),
            expire_time: row.value::<Option<i64>>("expire_time")?.map(from_nanos),
            embargo_time: row.value::<Option<i64>>("embargo_time")?.map(from_nanos),
            media,
            language: row.value("language")?,
        },
        updated: from_nanos(row.value("updated")?),
        create_time: from_nanos(row.value("create_time")?),
        change_time: from_nanos(row.value("change_time")?),
        shown_change_time: row
            .value::<Option<i64>>("shown_change_time")?
            .map(from_nanos),
        state,
        retract_time: row.value::<Option<i64>>("retract_time")?.map(from_nanos),
        retract_reason: row.value("retract_reason")?,
        etag: row.value("etag")?,
        version,
    })
}

/// A feed's content from its articles and the rows of its summary statement
/// ([`FeedSql::summary`]).
pub(super) fn feed_content_of(
    articles: Vec<Arc<Article>>,
    summary: &[impl Columns],
) -> Result<FeedContent, StoreError> {
    let Some(first) = summary.first() else {
        return Err(StoreError::Corrupt(
            "a feed's summary returned no row".into(),
        ));
    };
    let last_change: Option<i64> = first.value("last_change")?;
    // An article that left the scope (a section move, a byline or tag taken off) in view
    // changed what the feed shows, though no row of the scope says so any more.
    let shifted: Option<i64> = first.value("shifted")?;
    let last_change = last_change.max(shifted);
    let archived: Option<i64> = first.value("archived")?;
    let mut tombstones = Vec::with_capacity(summary.len());
    for row in summary {
        let Some(guid) = row.value::<Option<String>>("guid")? else {
            continue; // the one row of a feed without tombstones
        };
        tombstones.push(Tombstone {
            guid,
            when: from_nanos(row.value("retract_time")?),
        });
    }
    Ok(FeedContent {
        articles,
        tombstones,
        last_change: last_change.map(from_nanos),
        archived: usize::try_from(archived.unwrap_or(0)).unwrap_or(0),
    })
}

/// One read of a feed's content (see [`Store::feed_content`]).
struct FeedRead<'a> {
    scope: &'a FeedScope,
    now: DateTime<Utc>,
    limit: usize,
    /// The tombstone window, in nanoseconds.
    window: i64,
    /// The section, author or tag; `''` for `all`.
    value: &'a str,
}

impl FeedRead<'_> {
    /// Reads the feed's keys and summary, then whole rows for the articles `cache` lacks;
    /// `None` when a row is not the version its key named (written in between). Read `in_snapshot`
    /// (one transaction), key and row cannot differ that way; should they differ anyway
    /// (a name row that does not match its article's), the article's row is the truth, and
    /// is used without being kept.
    async fn run(
        &self,
        conn: &mut SqliteConnection,
        cache: &ArticleCache<i64>,
        in_snapshot: bool,
    ) -> Result<Option<FeedContent>, StoreError> {
        use sqlx::Either;
        use tokio_stream::StreamExt;
        static SCRIPTS: [std::sync::OnceLock<String>; 4] =
            [const { std::sync::OnceLock::new() }; 4];
        let script =
            super::per_feed_kind(&SCRIPTS, self.scope, || FeedSql::of(self.scope).script());
        let query = sqlx::query(script)
            .bind(nanos(self.now))
            .bind(self.limit as i64)
            .bind(self.value)
            .bind(self.window);
        // Rows come statement by statement, each statement's end marked by its result.
        let mut steps = sqlx::Executor::fetch_many(&mut *conn, query);
        let mut keys = Vec::with_capacity(self.limit.min(64));
        let mut summary = Vec::new();
        let mut statement = 0;
        while let Some(step) = steps.next().await {
            match step? {
                Either::Left(_) => statement += 1,
                Either::Right(row) if statement == 0 => keys.push((
                    row.value::<i64>("key")?,
                    from_nanos(row.value("change_time")?),
                    row.value::<String>("guid")?,
                )),
                Either::Right(row) => summary.push(row),
            }
        }
        drop(steps);
        let mut gathering = cache.gather(keys);
        let wanted: Vec<i64> = gathering.missing().copied().collect();
        if !wanted.is_empty() {
            let rows = sqlx::query(feed_rows_sql())
                .bind(
                    serde_json::to_string(&wanted)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let key: i64 = row.value("key")?;
                let placed = gathering.place(cache, &key, article_from_row(row)?);
                // Outside one snapshot, another version was written in between.
                if placed == Placed::OtherVersion && !in_snapshot {
                    return Ok(None);
                }
            }
        }
        let Some(articles) = gathering.finish() else {
            return Ok(None);
        };
        feed_content_of(articles, &summary).map(Some)
    }
}

pub(super) fn state_from_code(code: i64) -> Result<ArticleState, StoreError> {
    match code {
        1 => Ok(ArticleState::Published),
        2 => Ok(ArticleState::Retracted),
        other => Err(StoreError::Corrupt(format!("state: {other}"))),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn add_partner(
        &self,
        partner: NewPartner,
        now: DateTime<Utc>,
    ) -> Result<Partner, StoreError> {
        self.submit(|reply| Job::AddPartner {
            partner,
            now,
            reply,
        })
        .await
    }

    fn report_faults_to(&self, health: &crate::health::Health) {
        let _ = self.faults.set(health.clone());
    }

    async fn partner_by_token(&self, hash: &TokenHash) -> Result<Option<Partner>, StoreError> {
        partners::by_token(&self.read, hash).await
    }

    async fn partner_by_name(&self, name: &PartnerName) -> Result<Option<Partner>, StoreError> {
        let found = partners::record(&self.read, name).await?;
        Ok(found.filter(|r| r.revoke_time.is_none()).map(|r| r.partner))
    }

    async fn retract(
        &self,
        partner: PartnerId,
        retraction: Retraction,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<(Article, bool)>, StoreError> {
        self.submit(|reply| Job::Retract {
            partner,
            retraction: Box::new(retraction),
            now,
            actor: actor.clone(),
            reply,
        })
        .await
    }

    async fn article(
        &self,
        partner: PartnerId,
        id: &ArticleId,
    ) -> Result<Option<Article>, StoreError> {
        let mut conn = self.read.acquire().await?;
        select_article(&mut conn, partner, id).await
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
             WHERE partner_id = ?1 AND (?2 IS NULL OR section = ?2)
               AND (publish_time < ?3 OR (publish_time = ?3 AND (?4 = '' OR article_id < ?4)))
             ORDER BY publish_time DESC, article_id DESC LIMIT ?5"
        ))
        .bind(partner.0)
        .bind(section.map(SectionSlug::as_str))
        .bind(after_time)
        .bind(after_id)
        .bind(limit as i64)
        .fetch_all(&self.read)
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
        let value = match scope {
            FeedScope::All => "",
            FeedScope::Section(slug) => slug.as_str(),
            FeedScope::Author(named) | FeedScope::Tag(named) => named.name(),
        };
        let read = FeedRead {
            scope,
            now,
            limit,
            window,
            value,
        };
        // The keys and the summary are one round trip, the rows the cache lacks a second. A
        // write between the two can make a row another version than its key named; the
        // read then runs again in one snapshot (two more round trips: its begin and end).
        let mut conn = self.read.acquire().await?;
        if let Some(content) = read.run(&mut conn, &self.feed_articles, false).await? {
            return Ok(content);
        }
        drop(conn);
        let mut tx = self.read.begin().await?;
        let content = read.run(&mut tx, &self.feed_articles, true).await?;
        tx.commit().await?;
        content.ok_or_else(|| StoreError::Corrupt("a feed's article rows vanished".into()))
    }

    async fn next_transition(
        &self,
        now: DateTime<Utc>,
        tombstone_window: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(&next_transition_sql())
            .bind(nanos(now))
            .bind(i64::MAX)
            .bind(tombstone_window.num_nanoseconds().unwrap_or(i64::MAX))
            .fetch_one(&self.read)
            .await?;
        Ok(next.filter(|n| *n != i64::MAX).map(from_nanos))
    }

    async fn save_subscription(
        &self,
        subscription: Subscription,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.submit(|reply| Job::SaveSubscription {
            subscription: Box::new(subscription),
            address: address.to_owned(),
            now,
            reply,
        })
        .await
    }

    async fn count_subscriptions(
        &self,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        websub::count(&self.read, address, now).await
    }

    async fn delete_subscription(
        &self,
        topic: &Topic,
        callback: &Callback,
    ) -> Result<bool, StoreError> {
        self.submit(|reply| Job::DeleteSubscription {
            topic: topic.clone(),
            callback: callback.clone(),
            reply,
        })
        .await
    }

    async fn active_subscriptions(
        &self,
        topic: &Topic,
        callback: Option<&Callback>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, StoreError> {
        websub::active(&self.read, topic, callback, now).await
    }

    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.submit(|reply| Job::DeleteExpiredSubscriptions { now, reply })
            .await
    }

    // Its one process delivers every document: a claim is always its own, and is recorded
    // so that the next process delivers again what this one leaves unfinished.
    async fn claim_delivery(
        &self,
        topic: &Topic,
        document: &str,
        now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.submit(|reply| Job::ClaimDelivery {
            topic: topic.clone(),
            document: document.to_owned(),
            claimant: self.origin.clone(),
            now,
            reply,
        })
        .await?;
        Ok(true)
    }

    async fn date_document(
        &self,
        name: &str,
        etag: &str,
        now: DateTime<Utc>,
    ) -> Result<DocumentDate, StoreError> {
        self.submit(|reply| Job::DateDocument {
            name: name.to_owned(),
            etag: etag.to_owned(),
            now,
            reply,
        })
        .await
    }

    async fn atom_id_base(&self, proposed: &str) -> Result<String, StoreError> {
        self.submit(|reply| Job::AtomIdBase {
            proposed: proposed.to_owned(),
            reply,
        })
        .await
    }

    async fn finish_delivery(&self, topic: &Topic, document: &str) -> Result<(), StoreError> {
        self.submit(|reply| Job::FinishDelivery {
            topic: topic.clone(),
            document: document.to_owned(),
            reply,
        })
        .await
    }

    // Every unfinished claim of an earlier process has lapsed: that process stopped.
    async fn lapsed_deliveries(
        &self,
        _now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Topic, String)>, StoreError> {
        websub::left_by_others(&self.read, &self.origin, limit).await
    }

    async fn last_claims(&self) -> Result<Vec<(Topic, String)>, StoreError> {
        websub::last_claims(&self.read).await
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
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.read).await?;
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
            let names: Vec<String> = sqlx::query_scalar(&distinct_names_sql(table))
                .bind(nanos(now))
                .fetch_all(&self.read)
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
            .replace("{names}", "SELECT value FROM json_each(?1)");
        let name: Option<String> = sqlx::query_scalar(&sql)
            .bind(serde_json::to_string(&names).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .fetch_optional(&self.read)
            .await?;
        Ok(super::contender_named(scopes, name))
    }

    async fn has_feeds(&self, scope: &FeedScope, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(name) = scope.name() else {
            return Ok(true);
        };
        let table = names_table(scope);
        let found: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {table} AS row WHERE row.name = ?2 AND {CAME_INTO_VIEW})"
        ))
        .bind(nanos(now))
        .bind(name)
        .fetch_one(&self.read)
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
            // Each arm is a range scan of an index on one of the times; the CROSS JOIN
            // then looks up the names of just those articles.
            let names: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT named.name FROM (
                     SELECT partner_id, article_id FROM articles
                         WHERE state = 1 AND publish_time > ?1 AND publish_time <= ?2
                     UNION SELECT partner_id, article_id FROM articles
                         WHERE expire_time > ?1 AND expire_time <= ?2
                     UNION SELECT partner_id, article_id FROM articles
                         WHERE embargo_time > ?1 AND embargo_time <= ?2
                     UNION SELECT partner_id, article_id FROM articles INDEXED BY articles_retract
                         WHERE state = 2 AND retract_time > ?1 - ?3 AND retract_time <= ?2 - ?3
                 ) AS due CROSS JOIN {table} AS named USING (partner_id, article_id)"
            ))
            .bind(nanos(after))
            .bind(nanos(until))
            .bind(window)
            .fetch_all(&self.read)
            .await?;
            scopes.extend(names.iter().map(|name| scope(name)));
        }
        Ok(scopes)
    }

    async fn close(&self) {
        // The readers first: the last connection to close copies the log into the database
        // and removes it, and read-only connections cannot.
        self.read.close().await;
        let (reply, done) = oneshot::channel();
        if self.writer.send(Command::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn partner_records(&self) -> Result<Vec<PartnerRecord>, StoreError> {
        partners::all(&self.read).await
    }

    async fn partner_record(
        &self,
        name: &PartnerName,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        partners::record(&self.read, name).await
    }

    async fn revoke_partner(
        &self,
        name: &PartnerName,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        self.submit(|reply| Job::RevokePartner {
            name: name.clone(),
            now,
            reply,
        })
        .await
    }

    async fn new_token(
        &self,
        name: &PartnerName,
        token: NewToken,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        self.submit(|reply| Job::NewToken {
            name: name.clone(),
            token,
            now,
            reply,
        })
        .await
    }

    async fn change_rights(
        &self,
        name: &PartnerName,
        change: RightsChange,
        configured: Vec<SectionSlug>,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
        self.submit(|reply| Job::ChangeRights {
            name: name.clone(),
            change,
            configured,
            now,
            reply,
        })
        .await
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.submit(|reply| Job::RecordAudit {
            entry: Box::new(entry),
            reply,
        })
        .await
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        audit::entries(&self.read, filter).await
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
        self.submit(|reply| Job::Publish {
            partner,
            checks: Box::new(checks.clone()),
            writes,
            actor: actor.clone(),
            now,
            reply,
        })
        .await
    }

    async fn article_version(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        version: u32,
    ) -> Result<Option<Article>, StoreError> {
        history::article_at(&self.read, partner, id, version).await
    }

    async fn article_versions(
        &self,
        partner: PartnerId,
        id: &ArticleId,
        before: Option<u32>,
        limit: usize,
    ) -> Result<Vec<VersionSummary>, StoreError> {
        history::versions(&self.read, partner, id, before, limit).await
    }

    async fn events(
        &self,
        after: u64,
        until: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<ArticleEvent>, StoreError> {
        history::events(&self.read, after, until, filter, limit).await
    }

    fn event_head(&self) -> watch::Receiver<u64> {
        self.event_head.clone()
    }

    async fn announced_events(&self, after: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM operator_events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }

    fn note_event(&self, seq: u64) {
        super::raise_event_head(&self.head_tx, seq);
    }

    async fn lift_embargoes(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.submit(|reply| Job::LiftEmbargoes { now, reply }).await
    }

    async fn next_embargo_lift(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        history::next_lift(&self.read).await
    }

    async fn forget_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.submit(|reply| Job::ForgetRequests { before, reply })
            .await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        self.submit(|reply| Job::ProbeWrite { reply }).await
    }
}
