//! Publication: regenerates feeds (coalesced, only those touched), replaces files in `feeds/`
//! atomically (with `.gz` and `.br` siblings) and keeps an in-memory snapshot of every
//! document in every coding, with strong ETags, for the HTTP server.

use crate::config::Settings;
use crate::domain::{FeedScope, SectionSlug, Tombstone};
use crate::health::{Component, Health};
use crate::locks::lock;
use crate::render::{FeedMeta, Format};
use crate::storage::{Store, StoreError};
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

mod archive;
mod builders;
mod document;
mod files;
mod folder;
mod regeneration;
pub mod replicas;
#[cfg(test)]
mod tests;
mod unfinished;

use regeneration::Swap;
use unfinished::UnfinishedScopes;

pub(crate) use document::MAX_DOCUMENT_FILES;
pub use document::{
    BROTLI_SUFFIX, Codings, Compression, DiskFile, Encoded, FeedFile, GZIP_SUFFIX, Links,
    ResponseHeaders, http_date, variant_etag,
};
pub use folder::FeedsFolder;

/// How long no change may come before a burst is over: from then on feeds are finished at
/// once with the full compression levels, and those compressed fast during the burst are
/// compressed again.
const CALM: Duration = Duration::from_millis(100);

/// How long the files of author and tag feeds are still written at shutdown (sections and
/// `all` are written whatever they take); the next start writes those left.
const NAMES_AT_EXIT: Duration = Duration::from_secs(10);

/// How long the feeds that changes acknowledged before a stop left stale are built at
/// shutdown, before what is served is written.
const STALE_AT_EXIT: Duration = Duration::from_secs(10);

/// While stale feeds keep the scheduler busy, how often it still builds a few of the author
/// and tag feeds a start found (see [`Scheduler`]).
const UNBUILT_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

/// How many headlines of each feed the index page shows.
const HEADLINES: usize = 5;

/// The date (`updated`, `lastBuildDate`, Last-Modified) of a feed in whose scope nothing was
/// ever stored, such as a section nobody has published to yet: a fixed instant, so that
/// every replica and every restart gives such a feed the same bytes, and not 1 January 1970,
/// which readers show as a broken date. Any stored change (a publish, an article moving out
/// of the scope) dates the feed from then on.
const NEVER_CHANGED: DateTime<Utc> = match DateTime::from_timestamp(1_795_996_800, 0) {
    Some(time) => time, // 2026-11-30T00:00:00Z
    None => DateTime::UNIX_EPOCH,
};

/// One of a feed's latest entries, for pages that list headlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    pub title: String,
    /// The article's own page, when it has one.
    pub url: Option<String>,
    /// Publish time in the site's offset.
    pub published: DateTime<chrono::FixedOffset>,
}

/// A feed document whose bytes changed, announced to subscribers (e.g. the WebSub hub).
#[derive(Debug, Clone)]
pub struct FeedChange {
    /// Feed path under `/feeds/`, e.g. `politics/atom.xml`.
    pub path: String,
    /// The new document.
    pub file: Arc<FeedFile>,
}

/// Why a feed could not be regenerated.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("feed rendering task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Feed paths (`politics/rss.xml`) to their current documents: a persistent map, whose copy
/// shares everything with the original, so that putting one scope's documents in costs the
/// same however many feeds there are (thousands of author and tag feeds, finished one at a
/// time).
type Snapshot = rpds::HashTrieMapSync<String, Arc<FeedFile>>;

/// Handle to the feeds: mark them stale, read the current snapshot. Cheap to clone.
#[derive(Clone)]
pub struct Publication {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    /// What the feeds' Atom ids begin with in place of the site URL (see
    /// [`Store::atom_id_base`]).
    atom_id_base: String,
    snapshot: ArcSwap<Snapshot>,
    stale: mpsc::UnboundedSender<FeedScope>,
    regenerations: Mutex<HashMap<FeedScope, u64>>,
    /// Stale marks sent, and stale marks dealt with: equal when nothing is pending.
    marks_sent: AtomicU64,
    marks_done: AtomicU64,
    /// Stale marks the scheduler has taken into its current batch (or dealt with): below
    /// `marks_sent` when more are waiting, that is during a burst.
    marks_taken: AtomicU64,
    /// When the last stale mark was sent, in microseconds since `epoch`.
    last_mark: AtomicU64,
    epoch: std::time::Instant,
    /// Scopes whose documents in the snapshot were compressed with [`Compression::Fast`]
    /// during a burst, to compress again with the full levels once it is over.
    fast: Mutex<BTreeSet<FeedScope>>,
    /// Scopes served before they were compressed and written, or to compress again: the
    /// scheduler finishes them between batches.
    unfinished: Mutex<UnfinishedScopes>,
    /// Told when scopes are left unfinished.
    finish_wake: tokio::sync::Notify,
    /// Held while a scope is being finished: one at a time.
    finishing: tokio::sync::Mutex<()>,
    /// Scopes whose last regeneration failed, and at which step; the fault lasts until
    /// each has succeeded.
    failing: Mutex<BTreeSet<(Step, FeedScope)>>,
    /// True while the stylesheet's files could not be written to `feeds/`: a fault of the
    /// feeds like a failing scope's, tried again every second.
    stylesheet_unwritten: AtomicBool,
    /// `feeds/`, locked by this server: every file is written through it.
    folder: Arc<FeedsFolder>,
    changes: broadcast::Sender<FeedChange>,
    /// Subscribed before the feeds are built at start, for the first subscriber: the
    /// documents whose bytes differ from the files the last run left, which changed while
    /// no process served them.
    start_changes: Mutex<Option<broadcast::Receiver<FeedChange>>>,
    /// The folders (`authors/{slug}`, `tags/{slug}`) of the author and tag feeds found at
    /// start and not built yet: the scheduler builds them while the rest is served (see
    /// [`Scheduler`]), and a request for one meanwhile is asked to come back.
    /// What waits for them all waits for it to be empty.
    unbuilt: watch::Sender<HashSet<String>>,
    archives: archive::ArchiveCache,
    headlines: ArcSwap<HashMap<FeedScope, Arc<[Headline]>>>,
    /// Author and tag scopes whose feeds show at least one article.
    named: Mutex<BTreeSet<FeedScope>>,
    /// The folder of each author and tag scope read so far, to the one name whose feeds are
    /// in it (see `claim_folder`).
    folders: Mutex<HashMap<String, FeedScope>>,
    /// Moves on each time `named` changes, so that what is built from it (the OPML list)
    /// knows when to build again without comparing the names.
    named_changes: AtomicU64,
    /// Moves on each time `headlines` changes, so that what is built from them (the index
    /// page) knows when to build again.
    headline_changes: AtomicU64,
    /// Documents built at once: one per core.
    parallel: usize,
    /// The threads that render, compress and write documents.
    builders: builders::Builders,
    /// Told when feeds cannot be regenerated, and when they can again.
    health: Health,
}

/// The step of a regeneration that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Reading the store and rendering.
    Read,
    /// Compressing and writing the files.
    Write,
}

/// Drives regeneration until shut down; returned by [`Publication::start`]. It first builds
/// the author and tag feeds the start found, a few at a time between the batches of stale
/// feeds: there can be tens of thousands, and `all` and the sections are served meanwhile.
pub struct Scheduler {
    inner: Arc<Inner>,
    stale: mpsc::UnboundedReceiver<FeedScope>,
    /// Author and tag feeds are current with every transition up to this instant.
    named_until: DateTime<Utc>,
    /// The author and tag scopes found at start and not built yet, in `FeedScope` order.
    unbuilt: VecDeque<FeedScope>,
    /// How many the start found, and when.
    found: (usize, std::time::Instant),
    /// When some of them were last built (when the start found them, at first).
    unbuilt_built_at: std::time::Instant,
}

impl Publication {
    /// Builds the feeds of `all` and of every section (so serving starts with them) and
    /// returns the handle and the scheduler that keeps every feed current, reporting
    /// regeneration faults to `health`. The author and tag feeds the store has are shown at
    /// once by [`Publication::named_scopes`], and built by the scheduler: until each is,
    /// [`Publication::is_unbuilt`] tells.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: Arc<Settings>,
        health: Health,
        folder: FeedsFolder,
    ) -> Result<(Self, Scheduler), PublicationError> {
        // The store dates the feeds whose archive links a write changes.
        store.set_archive_page(settings.feeds.max_items);
        let atom_id_base = store.atom_id_base(settings.site.base_url.as_str()).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let builders = builders::Builders::new(settings.feeds.build_nice);
        let changes = broadcast::channel(1024).0;
        let start_changes = changes.subscribe();
        let inner = Arc::new(Inner {
            store,
            settings,
            atom_id_base,
            snapshot: ArcSwap::from_pointee(Snapshot::new_sync()),
            stale: tx,
            regenerations: Mutex::new(HashMap::new()),
            marks_sent: AtomicU64::new(0),
            marks_done: AtomicU64::new(0),
            marks_taken: AtomicU64::new(0),
            // Long before any mark: calm from the start.
            last_mark: AtomicU64::new(0),
            epoch: std::time::Instant::now()
                .checked_sub(CALM)
                .unwrap_or_else(std::time::Instant::now),
            fast: Mutex::new(BTreeSet::new()),
            unfinished: Mutex::new(UnfinishedScopes::default()),
            finish_wake: tokio::sync::Notify::new(),
            finishing: tokio::sync::Mutex::new(()),
            failing: Mutex::new(BTreeSet::new()),
            stylesheet_unwritten: AtomicBool::new(false),
            folder: Arc::new(folder),
            changes,
            start_changes: Mutex::new(Some(start_changes)),
            unbuilt: watch::Sender::new(HashSet::new()),
            archives: archive::ArchiveCache::default(),
            headlines: ArcSwap::from_pointee(HashMap::new()),
            named: Mutex::new(BTreeSet::new()),
            folders: Mutex::new(HashMap::new()),
            named_changes: AtomicU64::new(0),
            headline_changes: AtomicU64::new(0),
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            builders,
            health,
        });
        // A process killed while writing leaves its temporary files behind.
        files::remove_temporary_files(&inner.settings.server.feeds_dir);
        inner.publish_stylesheet();
        let named_until = Utc::now();
        let named = inner.build_feeds_at_start().await?;
        Ok((
            Self {
                inner: inner.clone(),
            },
            Scheduler {
                inner,
                stale: rx,
                named_until,
                found: (named.len(), std::time::Instant::now()),
                unbuilt_built_at: std::time::Instant::now(),
                unbuilt: named.into(),
            },
        ))
    }

    /// Marks the feeds of these sections, and the all-sections feed, as stale.
    pub fn touch(&self, sections: &[SectionSlug]) {
        if sections.is_empty() {
            return;
        }
        for slug in sections {
            self.inner.mark_stale(FeedScope::Section(slug.clone()));
        }
        self.inner.mark_stale(FeedScope::All);
    }

    /// Marks these feeds (of authors and tags, say) as stale.
    pub fn touch_scopes(&self, scopes: impl IntoIterator<Item = FeedScope>) {
        for scope in scopes {
            self.inner.mark_stale(scope);
        }
    }

    /// The author and tag scopes whose feeds show at least one article, in `FeedScope`
    /// order (authors, then tags, each by name).
    pub fn named_scopes(&self) -> Vec<FeedScope> {
        let named = lock(&self.inner.named);
        named.iter().cloned().collect()
    }

    /// Those of `scopes` (of authors and tags) whose feeds show no article: names new to
    /// the feeds.
    pub fn without_feeds(&self, scopes: impl IntoIterator<Item = FeedScope>) -> Vec<FeedScope> {
        let named = lock(&self.inner.named);
        scopes
            .into_iter()
            .filter(|scope| !named.contains(scope))
            .collect()
    }

    /// How many times [`Publication::named_scopes`] has changed since start.
    pub fn named_changes(&self) -> u64 {
        self.inner.named_changes.load(Ordering::SeqCst)
    }

    /// True when every change acknowledged so far is in the published feeds and their files,
    /// compressed with the full levels, and every feed found at start is built.
    pub fn is_settled(&self) -> bool {
        let inner = &self.inner;
        // Both locks at once, taken in the order of everything that moves a scope between
        // them.
        let unfinished = lock(&inner.unfinished);
        let fast = lock(&inner.fast);
        inner.marks_done.load(Ordering::SeqCst) == inner.marks_sent.load(Ordering::SeqCst)
            && unfinished.is_empty()
            && fast.is_empty()
            && inner.unbuilt.borrow().is_empty()
    }

    /// How many of the author and tag feeds found at start are not built yet.
    pub fn unbuilt(&self) -> usize {
        self.inner.unbuilt.borrow().len()
    }

    /// Resolves once every author and tag feed found at start is built.
    pub async fn all_built(&self) {
        let mut unbuilt = self.inner.unbuilt.subscribe();
        // The sender lives as long as `self`.
        let _ = unbuilt.wait_for(HashSet::is_empty).await;
    }

    /// Whether a feed path (`authors/{slug}/rss.xml`, or an archive page of it) is a
    /// document of an author or tag feed found at start that is not built yet: it will be
    /// served in a moment.
    pub fn is_unbuilt(&self, path: &str) -> bool {
        let folder = match archive::parse(path) {
            Some((folder, _, _)) => Some(folder),
            None => current_document_folder(path),
        };
        folder.is_some_and(|folder| self.inner.is_unbuilt_folder(folder))
    }

    /// [`Publication::is_unbuilt`] for a current document only (`authors/{slug}/atom.xml`),
    /// not an archive page.
    pub fn is_unbuilt_document(&self, path: &str) -> bool {
        current_document_folder(path).is_some_and(|folder| self.inner.is_unbuilt_folder(folder))
    }

    /// The current document at a feed path such as `politics/rss.xml`.
    pub fn get(&self, path: &str) -> Option<Arc<FeedFile>> {
        self.inner.snapshot.load().get(path).cloned()
    }

    /// How many times the feeds of `scope` were regenerated since start.
    pub fn regenerations(&self, scope: &FeedScope) -> u64 {
        let counts = lock(&self.inner.regenerations);
        counts.get(scope).copied().unwrap_or(0)
    }

    /// Announces every feed document whose bytes change from now on; the first receiver
    /// also hears of those built at start whose bytes differ from the files the last run
    /// left (or that it left none of). A receiver that falls more than 1024 changes behind
    /// is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedChange> {
        let mut first = lock(&self.inner.start_changes);
        first
            .take()
            .unwrap_or_else(|| self.inner.changes.subscribe())
    }

    /// The archive document (RFC 5005) at a path such as `politics/archive/2/atom.xml`,
    /// rendered from the store on first request and kept until its feed changes.
    pub async fn archive(&self, path: &str) -> Result<Option<Arc<FeedFile>>, PublicationError> {
        self.inner.archive_document(path).await
    }

    /// The date of a version of a document built from what the publication shows (the index
    /// page, the OPML list): see [`Store::date_document`].
    pub async fn date_document(
        &self,
        name: &str,
        etag: &str,
    ) -> Result<crate::storage::DocumentDate, crate::storage::StoreError> {
        self.inner
            .store
            .date_document(name, etag, chrono::Utc::now())
            .await
    }

    /// How many times the headlines of any feed ([`Publication::headlines`]) have changed
    /// since start.
    pub fn headline_changes(&self) -> u64 {
        self.inner.headline_changes.load(Ordering::SeqCst)
    }

    /// The newest headlines of a feed, as of its last regeneration.
    pub fn headlines(&self, scope: &FeedScope) -> Arc<[Headline]> {
        self.inner
            .headlines
            .load()
            .get(scope)
            .cloned()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// The scopes that have feeds: every section and `all`.
    pub fn scopes(&self) -> Vec<FeedScope> {
        self.inner.scopes()
    }
}

/// How often the scheduler tries again to write a stylesheet it could not write.
const STYLESHEET_RETRY: Duration = Duration::from_secs(1);

/// How often the feeds folder is checked for being removed or replaced (writes check it
/// too).
const FOLDER_CHECK: Duration = Duration::from_secs(1);

impl Scheduler {
    /// Regenerates stale feeds until `shutdown` turns true, and then those marked stale
    /// before it did; then writes every feed served. A burst of marks arriving while a
    /// regeneration runs is coalesced into one more regeneration per feed. Feeds are also
    /// rebuilt when an article's publish, embargo or expire time comes, and when a
    /// tombstone's window ends.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        const MAX_SLEEP: Duration = Duration::from_secs(3600);
        let (stop_finishing, finishing) = watch::channel(false);
        let finisher = tokio::spawn(self.inner.clone().finish_continually(finishing.clone()));
        let keeper = tokio::spawn(self.inner.clone().keep_folder(finishing));
        // The feeds of a regeneration the stop cut short, built again at the stop.
        let mut cut_short: (BTreeSet<FeedScope>, u64) = (BTreeSet::new(), 0);
        loop {
            let now = Utc::now();
            let window = self.inner.settings.feeds.tombstone_window;
            let next = self.inner.store.next_transition(now, window);
            let wake = match unless_stopped(next, &mut shutdown).await {
                // The stop is taken below.
                None => Duration::ZERO,
                Some(Ok(Some(at))) => (at - now).to_std().unwrap_or_default().min(MAX_SLEEP),
                Some(Ok(None)) => MAX_SLEEP,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot look up the next publish or expiry time");
                    Duration::from_secs(1)
                }
            };
            let stylesheet_unwritten = self.inner.stylesheet_unwritten.load(Ordering::SeqCst);
            let mut stale = BTreeSet::new();
            let mut received = 0;
            let mut stop = false;
            let wake_at = tokio::time::Instant::now() + wake;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => stop = true,
                scope = self.stale.recv() => match scope {
                    Some(scope) => {
                        stale.insert(scope);
                        received += 1;
                    }
                    None => stop = true,
                },
                // Feeds found at start are built when no stale feed waits.
                () = std::future::ready(()), if !self.unbuilt.is_empty() => {}
                _ = tokio::time::sleep(wake) => {}
                _ = tokio::time::sleep(STYLESHEET_RETRY), if stylesheet_unwritten => {}
            }
            if stop {
                // Every change acknowledged before the stop is in the feeds the process
                // leaves (they are told to stop once every call is answered): those still
                // waiting for this loop are built first, for `STALE_AT_EXIT` at most, and
                // not while the database is out of reach (each read would wait for a
                // connection in vain); the next start builds every feed anyway. What is
                // served goes to disk too before the process ends.
                while let Ok(scope) = self.stale.try_recv() {
                    stale.insert(scope);
                    received += 1;
                }
                stale.append(&mut cut_short.0);
                received += cut_short.1;
                if !stale.is_empty() && !self.inner.database_out_of_reach() {
                    let built = self.regenerate(stale, received, window);
                    if tokio::time::timeout(STALE_AT_EXIT, built).await.is_err() {
                        tracing::info!(
                            "feeds changed before the stop left unbuilt after {} s; the next start builds them",
                            STALE_AT_EXIT.as_secs()
                        );
                    }
                }
                let _ = stop_finishing.send(true);
                if let Err(e) = finisher.await {
                    tracing::error!(error = %e, "the task finishing feeds failed");
                }
                if let Err(e) = keeper.await {
                    tracing::error!(error = %e, "the task keeping the feeds folder failed");
                }
                let (outcomes, left) = self.inner.finish_at_exit(NAMES_AT_EXIT).await;
                self.inner.record_outcome(Step::Write, outcomes);
                if left > 0 {
                    tracing::info!(
                        left,
                        "author and tag feeds left unwritten at shutdown; the next start writes them"
                    );
                }
                if !self.unbuilt.is_empty() {
                    tracing::info!(
                        left = self.unbuilt.len(),
                        "author and tag feeds found at start left unbuilt at shutdown; their files stay as they were"
                    );
                }
                self.inner.folder.release();
                return;
            }
            if stylesheet_unwritten {
                self.inner.publish_stylesheet();
            }
            // A publish or expiry time that came meanwhile is not lost: the next look only
            // finds those still ahead.
            if tokio::time::Instant::now() >= wake_at {
                stale.extend(self.inner.scopes());
            }
            while let Ok(scope) = self.stale.try_recv() {
                stale.insert(scope);
                received += 1;
            }
            let regenerated = !stale.is_empty();
            if regenerated {
                // A stop cuts it short (a database out of reach makes each read wait for a
                // connection): its feeds are built at the stop, within a bound.
                let batch = stale.clone();
                let built = self.regenerate(stale, received, window);
                if unless_stopped(built, &mut shutdown).await.is_none() {
                    cut_short = (batch, received);
                }
            }
            // Between batches of stale feeds; and while they keep coming, still a few at
            // least every `UNBUILT_AT_LEAST_EVERY`. Not once the stop came, nor while a shared database is out of reach (each
            // read would wait for a connection in vain); and not cut short by a stop once
            // begun: it writes the files of those it builds, and announces their changes
            // after.
            if !self.unbuilt.is_empty()
                && (!regenerated || self.unbuilt_built_at.elapsed() >= UNBUILT_AT_LEAST_EVERY)
                && !*shutdown.borrow()
                && !self.inner.database_out_of_reach()
            {
                self.build_unbuilt().await;
            }
        }
    }

    /// Builds the next few of the author and tag feeds found at start, finished (as at
    /// start), and puts them in the snapshot. One that a regeneration has built since is
    /// left as it is: it shows later writes than the start found.
    async fn build_unbuilt(&mut self) {
        let take = regeneration::START_UP_SCOPES_PER_CORE * self.inner.parallel;
        let taken: Vec<FeedScope> = self.unbuilt.drain(..take.min(self.unbuilt.len())).collect();
        let batch: Vec<FeedScope> = taken
            .iter()
            .filter(|scope| !self.inner.serves(scope))
            .cloned()
            .collect();
        let failed = self.inner.regenerate_batch(batch.clone(), Swap::Once).await;
        // One served all the same could not have its files written: the finisher writes
        // them. One not served stays unbuilt until a regeneration builds it (see
        // `record_outcome`).
        let (unwritten, unread): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|(scope, _)| self.inner.serves(scope));
        self.inner.mark_built(
            taken
                .iter()
                .filter(|scope| !unread.iter().any(|(failing, _)| failing == *scope)),
        );
        let unwritten = unwritten.into_iter().map(|(scope, e)| (scope, Err(e)));
        self.inner.record_outcome(Step::Write, unwritten.collect());
        self.inner
            .record_outcome(Step::Read, outcomes_of(batch, unread));
        self.unbuilt_built_at = std::time::Instant::now();
        if self.unbuilt.is_empty() {
            let (found, at) = self.found;
            tracing::info!(
                feeds = found,
                seconds = at.elapsed().as_secs_f64(),
                "author and tag feeds found at start built"
            );
        }
    }

    /// Regenerates the `stale` scopes, taking `received` marks, and the author and tag feeds
    /// of the articles whose time came since the last look.
    async fn regenerate(
        &mut self,
        mut stale: BTreeSet<FeedScope>,
        received: u64,
        window: chrono::Duration,
    ) {
        let taken = self.inner.marks_done.load(Ordering::SeqCst) + received;
        self.inner.marks_taken.store(taken, Ordering::SeqCst);
        let until = Utc::now();
        let mut looked = false;
        match self
            .inner
            .store
            .named_scopes_in_transition(self.named_until, until, window)
            .await
        {
            Ok(scopes) => {
                stale.extend(scopes);
                looked = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up the author and tag feeds to refresh");
            }
        }
        // Every feed of the batch goes into the snapshot at once, so once a section feed
        // shows a change, every feed does (a change marks its author, tag and `all` feeds
        // before its section, see `Publisher`). Marks arriving meanwhile wait for the next
        // batch, which takes them all.
        let batch: Vec<FeedScope> = stale.iter().cloned().collect();
        let failed = self.inner.regenerate_batch(stale, Swap::Early).await;
        // Only now: a regeneration the stop cuts short looks for them again at the stop.
        if looked {
            self.named_until = until;
        }
        let outcomes = outcomes_of(batch, failed);
        self.inner.built_since_start(&outcomes);
        self.inner.record_outcome(Step::Read, outcomes);
        self.inner.marks_done.fetch_add(received, Ordering::SeqCst);
    }
}

/// What `work` gives, unless `shutdown` turns true first (or is already): then `None`, and
/// `work` is dropped where it was.
async fn unless_stopped<T>(
    work: impl std::future::Future<Output = T>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => None,
        value = work => Some(value),
    }
}

/// The folder of a feed's current document (`authors/{slug}` of `authors/{slug}/rss.xml`).
fn current_document_folder(path: &str) -> Option<&str> {
    let (folder, file) = path.rsplit_once('/')?;
    Format::from_file_name(file).map(|_| folder)
}

/// The outcome of regenerating each scope of `batch`, given those that failed.
fn outcomes_of(
    batch: Vec<FeedScope>,
    mut failed: Vec<(FeedScope, PublicationError)>,
) -> Vec<(FeedScope, Result<(), PublicationError>)> {
    batch
        .into_iter()
        .map(|scope| match failed.iter().position(|(s, _)| *s == scope) {
            Some(i) => (scope, Err(failed.swap_remove(i).1)),
            None => (scope, Ok(())),
        })
        .collect()
}

impl Inner {
    /// Whether a shared database is out of reach, as its follower reports (a store of its
    /// own fails no read for want of a connection; a write failing, on a full disk say,
    /// leaves reads working).
    fn database_out_of_reach(&self) -> bool {
        let faults = self.health.faults();
        faults.iter().any(|(c, _)| *c == Component::Replication)
    }

    /// Puts the XSL stylesheet that RSS and Atom feeds name in the snapshot and in `feeds/`.
    /// If it cannot be written there, it is served all the same, the feeds are reported
    /// faulty, and the scheduler tries again ([`Inner::stylesheet_unwritten`]).
    fn publish_stylesheet(&self) {
        match self.put_stylesheet() {
            Ok(()) => {
                if self.stylesheet_unwritten.swap(false, Ordering::SeqCst) {
                    tracing::info!("the feeds' stylesheet is written");
                    self.recover_if_clear(&lock(&self.failing));
                }
            }
            Err(e) => {
                if !self.stylesheet_unwritten.swap(true, Ordering::SeqCst) {
                    tracing::error!(error = %e, "cannot write the feeds' stylesheet; it is served from memory, retrying");
                }
                let file = crate::render::STYLESHEET_FILE;
                self.health.fault(Component::Feeds, format!("{file}: {e}"));
            }
        }
    }

    /// [`Inner::publish_stylesheet`], with the error of a write.
    fn put_stylesheet(&self) -> Result<(), PublicationError> {
        use crate::render::{STYLESHEET, STYLESHEET_CONTENT_TYPE, STYLESHEET_FILE};
        let site = &self.settings.site;
        let links = Links {
            self_url: site.url(&format!("feeds/{STYLESHEET_FILE}")),
            // Not a topic of the hub: nothing is pushed when it changes.
            hub_url: None,
        };
        // A static asset: its date is that of its content, so every run and replica serves
        // the same headers, and a new stylesheet a later one.
        let file = FeedFile::new(
            STYLESHEET.as_bytes().to_vec(),
            STYLESHEET_CONTENT_TYPE,
            crate::render::stylesheet_updated(),
            86_400,
            &links,
        );
        let dir = &self.settings.server.feeds_dir;
        let writes: Vec<(String, bytes::Bytes)> = file
            .files()
            .into_iter()
            .map(|(suffix, bytes)| (format!("{STYLESHEET_FILE}{suffix}"), bytes))
            .filter(|(name, bytes)| std::fs::read(dir.join(name)).ok().as_deref() != Some(bytes))
            .collect();
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.insert_mut(STYLESHEET_FILE.to_owned(), Arc::new(file.clone()));
            next
        });
        self.folder.replace_all(dir, &writes).map(drop)
    }

    /// True during a burst of changes: while stale marks wait that the scheduler has not
    /// taken yet, or until [`CALM`] after the last one (changes that come one at a time, each
    /// sent once the previous is answered, never wait for the scheduler, yet they are a
    /// burst just the same).
    pub(super) fn busy(&self) -> bool {
        self.marks_sent.load(Ordering::SeqCst) > self.marks_taken.load(Ordering::SeqCst)
            || self.calm_at().is_some()
    }

    /// When the changes of the current burst will have stopped for [`CALM`]: `None` once
    /// they have.
    pub(super) fn calm_at(&self) -> Option<std::time::Instant> {
        let last = Duration::from_micros(self.last_mark.load(Ordering::SeqCst));
        let calm = self.epoch + last + CALM;
        (calm > std::time::Instant::now()).then_some(calm)
    }

    /// Remembers that `scope`'s documents were compressed fast, to do it again properly.
    fn compressed_fast(&self, scope: &FeedScope) {
        lock(&self.fast).insert(scope.clone());
    }

    /// Reports how each scope's `step` went: a fault while any fails, recovered once every
    /// one has succeeded again. A scope that could not be read is marked stale again in a
    /// second; one whose files could not be written is tried again by the scheduler.
    fn record_outcome(
        self: &Arc<Self>,
        step: Step,
        outcomes: Vec<(FeedScope, Result<(), PublicationError>)>,
    ) {
        let mut failing = lock(&self.failing);
        let had_failures = !failing.is_empty();
        for (scope, outcome) in outcomes {
            let key = (step, scope);
            let Err(e) = outcome else {
                failing.remove(&key);
                continue;
            };
            let scope = key.1.clone();
            failing.insert(key);
            let fault = format!("{}: {e}", scope.path_segment());
            match step {
                Step::Read => {
                    tracing::error!(feed = scope.path_segment(), error = %e, "feed regeneration failed; retrying");
                    let inner = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        inner.mark_stale(scope);
                    });
                }
                Step::Write => {
                    tracing::error!(feed = scope.path_segment(), error = %e, "cannot write the files of a feed; it is served from memory, retrying");
                }
            }
            // Reported after the log line, so that whoever sees the fault finds its cause.
            self.health.fault(Component::Feeds, fault);
        }
        if had_failures {
            self.recover_if_clear(&failing);
        }
    }

    /// Reports the feeds recovered when no fault of theirs is left: no scope failing, the
    /// stylesheet written, the feeds folder held and whole.
    fn recover_if_clear(&self, failing: &BTreeSet<(Step, FeedScope)>) {
        if failing.is_empty()
            && !self.stylesheet_unwritten.load(Ordering::SeqCst)
            && self.folder.is_whole()
        {
            self.health.recovered(Component::Feeds);
        }
    }

    fn mark_stale(&self, scope: FeedScope) {
        let since_epoch = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_mark.store(since_epoch, Ordering::SeqCst);
        self.marks_sent.fetch_add(1, Ordering::SeqCst);
        if self.stale.send(scope).is_err() {
            // The scheduler has stopped; the next start rebuilds every feed anyway.
            self.marks_done.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Builds the feeds of every section and of `all`, as many at once as there are cores,
    /// and swaps them all into the snapshot at once; removes the folders of names that no
    /// article carries any more. Returns the author and tag scopes of every name a stored
    /// article carries, left to build (see [`Scheduler`]): they are shown from now on (the
    /// OPML list, the allowance of new names), and each is unbuilt until then.
    async fn build_feeds_at_start(self: &Arc<Self>) -> Result<Vec<FeedScope>, PublicationError> {
        let named = self.store.named_scopes(Utc::now()).await?;
        self.remove_unnamed_folders(&named);
        self.warn_of_unconfigured_sections();
        let named = self.give_folders(named).await?;
        // A feed that could not be read stops the start; one whose files could not be
        // written (a full disk, say) is served from memory, reported, and written by the
        // finisher once it can be, as at any other time: a restart during a disk incident
        // does not take the feeds down with it.
        let (unwritten, unread): (Vec<_>, Vec<_>) = self
            .regenerate_batch(self.scopes(), Swap::Once)
            .await
            .into_iter()
            .partition(|(_, error)| matches!(error, PublicationError::Write { .. }));
        if let Some((_, error)) = unread.into_iter().next() {
            return Err(error);
        }
        if !unwritten.is_empty() {
            let outcomes = unwritten
                .into_iter()
                .map(|(scope, error)| (scope, Err(error)))
                .collect();
            self.record_outcome(Step::Write, outcomes);
        }
        if !named.is_empty() {
            // Corrected as each is built: one whose articles all left view since, or whose
            // folder another name holds, is no longer shown.
            lock(&self.named).extend(named.iter().cloned());
            self.named_changes.fetch_add(1, Ordering::SeqCst);
            self.unbuilt.send_modify(|unbuilt| {
                unbuilt.extend(named.iter().map(|scope| scope.path_segment().to_owned()));
            });
        }
        Ok(named)
    }

    /// Gives each folder of `named` to its name, or, where names share it, to the one the
    /// store decides (as [`Inner::claim_folder`] does), before any is built: whichever order
    /// they are built in, and whatever is published meanwhile, no other name takes it.
    /// Returns the names that have their folders.
    async fn give_folders(
        &self,
        named: Vec<FeedScope>,
    ) -> Result<Vec<FeedScope>, PublicationError> {
        let mut by_folder: HashMap<&str, Vec<FeedScope>> = HashMap::new();
        for scope in &named {
            by_folder
                .entry(scope.path_segment())
                .or_default()
                .push(scope.clone());
        }
        let mut owners = HashMap::with_capacity(by_folder.len());
        for (folder, names) in by_folder {
            let owner = match &names[..] {
                [one] => one.clone(),
                _ => self.folder_owner(&names, &names[0]).await?,
            };
            owners.insert(folder.to_owned(), owner);
        }
        let kept = named
            .iter()
            .filter(|scope| owners.get(scope.path_segment()) == Some(scope))
            .cloned()
            .collect();
        *lock(&self.folders) = owners;
        Ok(kept)
    }

    /// Whether `scope` is an author or tag feed found at start and not built yet.
    fn is_unbuilt(&self, scope: &FeedScope) -> bool {
        self.is_unbuilt_folder(scope.path_segment())
    }

    /// Whether `folder` (`authors/{slug}`) holds an author or tag feed found at start and
    /// not built yet.
    fn is_unbuilt_folder(&self, folder: &str) -> bool {
        self.unbuilt.borrow().contains(folder)
    }

    /// After a batch of stale feeds: those of its author and tag feeds found at start and
    /// not built then that it built are built.
    fn built_since_start(&self, outcomes: &[(FeedScope, Result<(), PublicationError>)]) {
        if self.unbuilt.borrow().is_empty() {
            return;
        }
        let built = outcomes.iter().filter(|(_, outcome)| outcome.is_ok());
        self.mark_built(built.map(|(scope, _)| scope));
    }

    /// `scopes` found at start are built (if they were not); the last of them tells those
    /// waiting for them all.
    fn mark_built<'a>(&self, scopes: impl Iterator<Item = &'a FeedScope>) {
        self.unbuilt.send_if_modified(|unbuilt| {
            let mut removed = false;
            for scope in scopes {
                removed |= unbuilt.remove(scope.path_segment());
            }
            removed && unbuilt.is_empty()
        });
    }

    /// Warns of folders under `feeds/` that hold the feeds of a section no longer configured:
    /// this server no longer serves or updates them, but whatever publishes the folder as it
    /// is (a static server, a bucket sync) still does, with what they last showed. They are
    /// the operator's to remove (a section taken out by mistake comes back with its feeds).
    fn warn_of_unconfigured_sections(&self) {
        let dir = &self.settings.server.feeds_dir;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let served: std::collections::HashSet<String> = self
            .scopes()
            .iter()
            .map(|scope| scope.path_segment().to_owned())
            .chain([FeedScope::AUTHORS, FeedScope::TAGS].map(str::to_owned))
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let holds_feeds = crate::render::Format::ALL
                .iter()
                .any(|format| path.join(format.file_name()).is_file());
            if path.is_dir() && holds_feeds && !served.contains(&name) {
                tracing::warn!(
                    folder = %path.display(),
                    "the folder holds the feeds of a section no longer configured: they are \
                     not served nor updated here, but a copy of feeds/ still publishes them; \
                     remove the folder"
                );
            }
        }
    }

    /// Removes `feeds/authors/{slug}` and `feeds/tags/{slug}` folders of names that none of
    /// `scopes` has: their feeds were emptied when the last article left them.
    fn remove_unnamed_folders(&self, scopes: &[FeedScope]) {
        let known: std::collections::HashSet<&str> =
            scopes.iter().map(FeedScope::path_segment).collect();
        for folder in [FeedScope::AUTHORS, FeedScope::TAGS] {
            let dir = self.settings.server.feeds_dir.join(folder);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let segment = format!("{folder}/{}", name.to_string_lossy());
                if !known.contains(segment.as_str())
                    && let Err(e) = std::fs::remove_dir_all(entry.path())
                {
                    tracing::warn!(feed = segment, error = %e, "cannot remove the feeds of a name no article carries");
                }
            }
        }
    }

    fn scopes(&self) -> Vec<FeedScope> {
        std::iter::once(FeedScope::All)
            .chain(
                self.settings
                    .sections
                    .iter()
                    .map(|s| FeedScope::Section(s.slug.clone())),
            )
            .collect()
    }

    fn meta(
        &self,
        scope: &FeedScope,
        updated: DateTime<Utc>,
        tombstones: Vec<Tombstone>,
    ) -> FeedMeta {
        let mut meta = feed_meta(&self.settings, scope, updated, tombstones);
        meta.atom_id = self.atom_id(&meta.atom_url);
        meta
    }

    /// The permanent Atom id of the document at `url`: its place under the site URL, under
    /// the one recorded first on the store, which a moved site keeps.
    fn atom_id(&self, url: &str) -> String {
        match url.strip_prefix(self.settings.site.base_url.as_str()) {
            Some(path) => format!("{}{path}", self.atom_id_base),
            None => url.to_owned(),
        }
    }
}

/// The metadata of the feeds of `scope` as the settings describe them: titles, URLs, hub,
/// stylesheet; `updated` and `tombstones` as given, no archive links.
pub fn feed_meta(
    settings: &Settings,
    scope: &FeedScope,
    updated: DateTime<Utc>,
    tombstones: Vec<Tombstone>,
) -> FeedMeta {
    let site = &settings.site;
    let (title, description) = match scope {
        FeedScope::All => (site.title.clone(), site.description.clone()),
        FeedScope::Section(slug) => match settings.section(slug) {
            Some(section) => (
                format!("{} · {}", site.title, section.title),
                section.description.clone(),
            ),
            None => (site.title.clone(), String::new()),
        },
        FeedScope::Author(named) => (
            format!("{} · 作者：{}", site.title, named.name()),
            format!("{}刊发的{}署名文章", site.title, named.name()),
        ),
        FeedScope::Tag(named) => (
            format!("{} · 标签：{}", site.title, named.name()),
            format!("{}标注“{}”的文章", site.title, named.name()),
        ),
    };
    let url = |format: Format| {
        site.url(&format!(
            "feeds/{}/{}",
            scope.path_segment(),
            format.file_name()
        ))
    };
    FeedMeta {
        description: if description.trim().is_empty() {
            title.clone()
        } else {
            description
        },
        title,
        language: site.language.clone(),
        site_url: site.base_url.to_string(),
        publisher: site.title.clone(),
        rights: site.rights.clone(),
        icon: site.icon.as_ref().map(|u| u.to_string()),
        logo: site.logo.as_ref().map(|u| u.to_string()),
        avatar: site.avatar.as_ref().map(|u| u.to_string()),
        atom_id: url(Format::Atom),
        atom_url: url(Format::Atom),
        rss_url: url(Format::Rss),
        json_url: url(Format::JsonFeed),
        hub_url: site.hub_url(),
        stylesheet: Some(format!(
            "{}feeds/{}",
            site.base_url.path(),
            crate::render::STYLESHEET_FILE
        )),
        updated,
        offset: site.utc_offset,
        tombstones,
        archive: crate::render::ArchiveLinks::default(),
    }
}
