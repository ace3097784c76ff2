//! Regeneration of a batch of stale feeds, in two steps, so that compression never stands
//! between a change and the readers who poll for it.
//!
//! 1. **Served**: every scope of the batch is read from the store and its documents are
//!    rendered (cheap: well under a millisecond each) by the builder threads (see
//!    `builders`); all of them go into the snapshot together, uncompressed, so once a
//!    section feed shows an article, every feed does. They are served in the identity
//!    coding meanwhile.
//! 2. **Finished**: the scope's documents are compressed (gzip and brotli take most of a
//!    regeneration's time), its files written to `feeds/`, and the compressed documents
//!    swapped in. A task of its own finishes scopes, oldest first (author and tag feeds a
//!    minute behind the sections: see `unfinished`), beside the scheduler; a
//!    scope changed again before it was finished is finished once, in its latest version.
//!    While more changes wait (a burst), it takes one core at most, compresses fast, and
//!    finishes a section (or `all`) half a second after its oldest change and an author or
//!    tag feed five seconds after, so that compressing feeds that keep changing takes
//!    little of the CPU the changes themselves need.
//!
//! The start-up build finishes every scope before anything is served. A scope whose files
//! cannot be written (a full disk) is served from memory, compressed, and its files are
//! written again every second until that works: readers keep getting the latest feeds, and
//! `feeds/` holds whole files of the last version written.

use super::document::{FileStamp, etag_of};
use super::{
    Codings, Compression, FeedChange, FeedFile, Headline, Inner, Links, PublicationError, Snapshot,
};
use crate::domain::{Article, FeedScope};
use crate::locks::lock;
use crate::render::{FeedMeta, Format};
use axum::body::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// When the documents of a batch go into the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swap {
    /// As soon as the batch is rendered, uncompressed, to be finished later (the feeds are
    /// being served); failing scopes finished first.
    Early,
    /// Finished, all at once at the end: the feeds found at start, before they are served.
    Once,
}

/// One scope's content as read from the store.
struct Prepared {
    scope: FeedScope,
    articles: Vec<Arc<Article>>,
    meta: FeedMeta,
    headlines: Arc<[Headline]>,
    max_age: u32,
    now: DateTime<Utc>,
    /// The latest stored change of what the scope shows, to the nanosecond; `None` when
    /// nothing was ever stored in it.
    changed: Option<DateTime<Utc>>,
    /// How long reading it took.
    read: std::time::Duration,
}

/// A document whose bytes changed, to be compressed and written.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Path in the snapshot, e.g. `politics/rss.xml`.
    pub(super) key: String,
    file_name: &'static str,
    /// The document as rendered (or, compressed again, as served).
    file: Arc<FeedFile>,
    /// Its change is announced once it is written.
    announce: bool,
    /// Its identity file is written too: not when it is only compressed again, nor after a
    /// restart that found the file already holding these bytes.
    write_identity: bool,
    /// After a restart that found the identity file unchanged: the compressed files beside
    /// it may hold their bytes too, and only those that differ are written.
    check_disk: bool,
    /// The stamp of the identity file found holding the document's bytes after a restart.
    on_disk: Option<FileStamp>,
    /// Its codings were read from the compressed files beside that identity file
    /// (`FeedFile::codings_on_disk`): those files hold them, nothing to compare or write.
    codings_found: bool,
}

/// One scope read and rendered.
struct Rendered {
    scope: FeedScope,
    /// Documents whose bytes are the same but whose date or lifetime moved on.
    redated: Vec<(String, Arc<FeedFile>)>,
    pending: Vec<Pending>,
    headlines: Arc<[Headline]>,
    started: Instant,
    /// How long reading it took, of the time since `started`.
    read: std::time::Duration,
    /// How long rendering it took, once a builder thread had it.
    render: std::time::Duration,
}

/// A scope's documents compressed (and on disk when each has the stamp of its identity
/// file), ready to be swapped in.
struct Finished {
    docs: Vec<(Pending, Codings, Option<FileStamp>)>,
}

/// Scopes the start-up build reads, renders and finishes at once, per core: their
/// uncompressed documents are held together, so this bounds the memory the build takes
/// beside the finished feeds (whose identity coding is in their files).
pub(super) const START_UP_SCOPES_PER_CORE: usize = 4;

impl Inner {
    /// Regenerates `scopes`; returns those that failed, with their errors. A document
    /// whose bytes did not change is not rewritten.
    pub(super) async fn regenerate_batch(
        self: &Arc<Self>,
        scopes: impl IntoIterator<Item = FeedScope>,
        swap: Swap,
    ) -> Vec<(FeedScope, PublicationError)> {
        let mut failed = Vec::new();
        let mut ready: Vec<(String, Arc<FeedFile>)> = Vec::new();
        let mut changes = Vec::new();
        let mut early = Vec::new();
        match swap {
            Swap::Once => {
                let mut scopes = scopes.into_iter().peekable();
                while scopes.peek().is_some() {
                    let chunk: Vec<FeedScope> = scopes
                        .by_ref()
                        .take(START_UP_SCOPES_PER_CORE * self.parallel)
                        .collect();
                    let rendered = self.read_and_render(chunk, swap, &mut failed).await;
                    self.finish_inline(rendered, &mut ready, &mut changes, &mut failed)
                        .await;
                }
            }
            Swap::Early => {
                early = self.read_and_render(scopes, swap, &mut failed).await;
                self.leave_unfinished(&early, &mut ready);
            }
        }
        self.swap_in(ready);
        if !early.is_empty() {
            self.finish_wake.notify_one();
        }
        for change in changes {
            // Nobody listening is fine: subscribers come and go.
            let _ = self.changes.send(change);
        }
        for rendered in &early {
            self.count_regeneration(rendered);
        }
        failed
    }

    /// Finishes rendered scopes before they are served (the feeds found at start): their
    /// documents go to `ready` and their changes to `changes`, with the full compression
    /// levels. A scope whose files could not be written is in `failed`, and served from
    /// memory, compressed, all the same, its files left to the finisher (a second later),
    /// as a regeneration's are; one that could not be compressed is not served.
    async fn finish_inline(
        self: &Arc<Self>,
        inline: Vec<Rendered>,
        ready: &mut Vec<(String, Arc<FeedFile>)>,
        changes: &mut Vec<FeedChange>,
        failed: &mut Vec<(FeedScope, PublicationError)>,
    ) {
        // A name that lost its folder to another in this batch is not written there.
        let inline: Vec<Rendered> = inline
            .into_iter()
            .filter(|r| self.owns_folder(&r.scope))
            .collect();
        let work: Vec<(&FeedScope, &[Pending])> =
            inline.iter().map(|r| (&r.scope, &r.pending[..])).collect();
        let finished = self
            .finish_all(&work, Compression::Full, self.parallel)
            .await;
        for (rendered, finished) in inline.iter().zip(finished) {
            let finished = match finished {
                (Some(finished), None) => finished,
                (Some(finished), Some(unwritten)) => {
                    let retry_at = Instant::now() + std::time::Duration::from_secs(1);
                    lock(&self.unfinished)
                        .entry(&rendered.scope)
                        .merge(&rendered.pending, Some(retry_at));
                    failed.push((rendered.scope.clone(), unwritten));
                    // Told after its due time is set.
                    self.finish_wake.notify_one();
                    finished
                }
                (None, error) => {
                    if let Some(e) = error {
                        failed.push((rendered.scope.clone(), e));
                    }
                    continue;
                }
            };
            ready.extend(rendered.redated.iter().cloned());
            for (pending, codings, stamp) in finished.docs {
                let file = Arc::new(pending.file.finished(codings, stamp));
                if pending.announce {
                    changes.push(FeedChange {
                        path: pending.key.clone(),
                        file: file.clone(),
                    });
                }
                ready.push((pending.key, file));
            }
            self.count_regeneration(rendered);
        }
    }

    /// Leaves rendered scopes to be finished by the finisher: their documents go to
    /// `ready`, to be served uncompressed meanwhile.
    fn leave_unfinished(&self, early: &[Rendered], ready: &mut Vec<(String, Arc<FeedFile>)>) {
        let mut unfinished = lock(&self.unfinished);
        // A name that lost its folder to another in this batch is not served there.
        for rendered in early.iter().filter(|r| self.owns_folder(&r.scope)) {
            ready.extend(rendered.redated.iter().cloned());
            if rendered.pending.is_empty() {
                continue;
            }
            unfinished
                .entry(&rendered.scope)
                .merge(&rendered.pending, None);
            ready.extend(
                rendered
                    .pending
                    .iter()
                    .map(|pending| (pending.key.clone(), pending.file.clone())),
            );
        }
    }

    /// Finishes unfinished scopes, oldest first, name feeds a minute behind (see
    /// `unfinished`): at most `limit` of them, and only those due unless `all`; one at a
    /// time across tasks. Returns their outcomes; those whose files could not be written
    /// are served from memory, compressed, and tried again in a second.
    pub(super) async fn finish_unfinished(
        self: &Arc<Self>,
        limit: usize,
        all: bool,
    ) -> Vec<(FeedScope, Result<(), PublicationError>)> {
        self.finish_some(limit, all, None).await
    }

    /// At shutdown: finishes `all` and the sections, however long they take (most readers
    /// poll them, and a proxy may serve their files while no process runs), and author and
    /// tag feeds until `names_for` has passed. Those left are not lost: the next start
    /// builds every feed and writes the files that differ. One call can leave tens of
    /// thousands of name feeds to finish, which would otherwise hold the process minutes
    /// after it was told to stop. Returns the outcomes and how many scopes were left.
    pub(super) async fn finish_at_exit(
        self: &Arc<Self>,
        names_for: std::time::Duration,
    ) -> (Vec<(FeedScope, Result<(), PublicationError>)>, usize) {
        let outcomes = self
            .finish_some(usize::MAX, true, Some(Instant::now() + names_for))
            .await;
        let left = lock(&self.unfinished).len();
        (outcomes, left)
    }

    /// [`Inner::finish_unfinished`], taking author and tag feeds only until `names_until`
    /// when it is given.
    async fn finish_some(
        self: &Arc<Self>,
        limit: usize,
        all: bool,
        names_until: Option<Instant>,
    ) -> Vec<(FeedScope, Result<(), PublicationError>)> {
        let _one_at_a_time = self.finishing.lock().await;
        let mut outcomes = Vec::new();
        // Each scope once: one whose files could not be written, or that changed again
        // meanwhile, waits for a later call.
        let mut done = HashSet::new();
        for _ in 0..limit {
            let now = Instant::now();
            let busy = self.busy();
            let oldest = {
                let unfinished = lock(&self.unfinished);
                let names = names_until.is_none_or(|until| now < until);
                unfinished
                    .next(now, busy, all, names, &done)
                    .map(|(scope, u)| (scope.clone(), u.docs.clone(), u.generation))
            };
            let Some((scope, docs, generation)) = oldest else {
                break;
            };
            // While more changes wait, one core is left to them.
            let (compression, parallel) = match self.compression_now() {
                Compression::Fast => (Compression::Fast, 1),
                Compression::Full => (Compression::Full, self.parallel),
            };
            let (made, error) = self
                .finish_all(&[(&scope, &docs[..])], compression, parallel)
                .await
                .pop()
                .unwrap_or((None, None));
            // Compressed documents are served even when their files could not be written.
            if let Some(made) = made {
                self.swap_finished(made);
            }
            let written = error.map_or(Ok(()), Err);
            let mut unfinished = lock(&self.unfinished);
            match &written {
                Ok(()) => {
                    if compression == Compression::Fast {
                        self.compressed_fast(&scope);
                    }
                    // Newer documents merged in meanwhile are finished next.
                    if unfinished
                        .get(&scope)
                        .is_some_and(|u| u.generation == generation)
                    {
                        unfinished.remove(&scope);
                    }
                }
                Err(_) => {
                    if let Some(entry) = unfinished.get_mut(&scope) {
                        entry.retry_at = Some(now + std::time::Duration::from_secs(1));
                    }
                }
            }
            drop(unfinished);
            done.insert(scope.clone());
            outcomes.push((scope, written));
        }
        outcomes
    }

    /// Finishes scopes as they become due until `stop` turns true (see the module); once
    /// no change has come for a while, compresses again with the full levels what was
    /// compressed fast during a burst.
    pub(super) async fn finish_continually(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use super::CALM;
        loop {
            let next = self.next_unfinished();
            let recompress = next.is_none() && !lock(&self.fast).is_empty();
            let due = next.unwrap_or_else(Instant::now);
            // When a burst of changes that came one at a time is over, what is due changes.
            let calm = self.calm_at();
            let stopping = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => true,
                _ = self.finish_wake.notified() => false,
                _ = tokio::time::sleep_until(due.into()), if next.is_some() => false,
                _ = tokio::time::sleep_until(calm.unwrap_or(due).into()),
                    if next.is_some() && calm.is_some() => false,
                _ = tokio::time::sleep(CALM), if recompress => {
                    self.queue_recompression();
                    false
                }
            };
            if stopping {
                return;
            }
            loop {
                let outcomes = self.finish_unfinished(1, false).await;
                if outcomes.is_empty() {
                    break;
                }
                self.record_outcome(super::Step::Write, outcomes);
                if *stop.borrow() {
                    return;
                }
            }
        }
    }

    /// When the next unfinished scope is due: `None` when there is none.
    pub(super) fn next_unfinished(&self) -> Option<Instant> {
        let unfinished = lock(&self.unfinished);
        unfinished.next_due(self.busy())
    }

    /// Queues the scopes compressed fast during a burst to be compressed again with the
    /// full levels, as they are served.
    pub(super) fn queue_recompression(&self) {
        // Moved under the lock of the unfinished scopes, as everything that moves a scope
        // between the two, so that `is_settled` never sees it in neither.
        let mut unfinished = lock(&self.unfinished);
        let fast = std::mem::take(&mut *lock(&self.fast));
        let current = self.snapshot.load();
        for scope in fast {
            let segment = scope.path_segment();
            let entry = unfinished.entry(&scope);
            entry.generation += 1;
            for format in Format::ALL {
                let key = format!("{segment}/{}", format.file_name());
                let Some(file) = current.get(&key) else {
                    continue;
                };
                if entry.docs.iter().any(|d| d.key == key) {
                    continue; // changed since: finished in its new version
                }
                entry.docs.push(Pending {
                    key,
                    file_name: format.file_name(),
                    file: file.clone(),
                    announce: false,
                    write_identity: false,
                    check_disk: false,
                    on_disk: None,
                    codings_found: false,
                });
            }
        }
    }

    /// gzip 1 and brotli 1 while stale marks wait (a burst: the feeds are turning over
    /// faster than full compression keeps up with), the full levels otherwise.
    pub(super) fn compression_now(&self) -> Compression {
        if self.busy() {
            Compression::Fast
        } else {
            Compression::Full
        }
    }

    /// Reads each scope and renders its documents on the builder threads, as many scopes at
    /// once as there are cores, to be swapped in as `swap` says. Scopes that fail go to
    /// `failed`.
    async fn read_and_render(
        self: &Arc<Self>,
        scopes: impl IntoIterator<Item = FeedScope>,
        swap: Swap,
        failed: &mut Vec<(FeedScope, PublicationError)>,
    ) -> Vec<Rendered> {
        type Outcome = Result<Option<Rendered>, (FeedScope, PublicationError)>;
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut rendered = Vec::new();
        let mut collect = |joined: Result<Outcome, tokio::task::JoinError>| match joined {
            Ok(Ok(Some(r))) => rendered.push(r),
            Ok(Ok(None)) => {}
            Ok(Err(failure)) => failed.push(failure),
            // Each task catches its own failures; a panic in one is a bug that must still
            // not take the scheduler down.
            Err(e) => tracing::error!(error = %e, "a feed rendering task failed"),
        };
        for scope in scopes {
            while tasks.len() >= self.parallel {
                if let Some(joined) = tasks.join_next().await {
                    collect(joined);
                }
            }
            let this = self.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let prepared = match this.prepare(&scope).await {
                    Ok(Some(prepared)) => prepared,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err((scope, e)),
                };
                let renderer = this.clone();
                this.builders
                    .spawn(move || renderer.render_scope(prepared, started, swap))
                    .await
                    .map(Some)
                    .map_err(|e| (scope, PublicationError::from(e)))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            collect(joined);
        }
        rendered
    }

    /// Compresses the documents of every scope (as many at once as there are cores) and
    /// writes each scope's files in one replacement. For each scope: its compressed
    /// documents (unless compressing failed) and why they could not be made or written.
    async fn finish_all(
        self: &Arc<Self>,
        scopes: &[(&FeedScope, &[Pending])],
        compression: Compression,
        parallel: usize,
    ) -> Vec<(Option<Finished>, Option<PublicationError>)> {
        type Places = std::collections::HashMap<tokio::task::Id, (usize, usize)>;
        // Each document's codings, and whether they were read from its files.
        type Joined = Result<(tokio::task::Id, (Codings, bool)), tokio::task::JoinError>;
        let mut made: Vec<Vec<Option<(Codings, bool)>>> = scopes
            .iter()
            .map(|(_, docs)| vec![None; docs.len()])
            .collect();
        let mut errors: Vec<Option<PublicationError>> = scopes.iter().map(|_| None).collect();
        // Each compression's scope and document, by task.
        let mut places = Places::new();
        let mut record = |places: &mut Places, joined: Joined| match joined {
            Ok((id, codings)) => {
                if let Some((s, d)) = places.remove(&id) {
                    made[s][d] = Some(codings);
                }
            }
            // Compressing into memory cannot fail; a panic in it is a bug that must still
            // not take the scheduler down.
            Err(e) => {
                if let Some((s, _)) = places.remove(&e.id()) {
                    errors[s] = Some(PublicationError::Task(e));
                }
            }
        };
        let mut tasks: JoinSet<(Codings, bool)> = JoinSet::new();
        for (s, (scope, docs)) in scopes.iter().enumerate() {
            for (d, pending) in docs.iter().enumerate() {
                while tasks.len() >= parallel {
                    if let Some(joined) = tasks.join_next_with_id().await {
                        record(&mut places, joined);
                    }
                }
                let file = pending.file.clone();
                // A document found in its identity file (after a restart) may have its
                // codings beside it, as the last run wrote them.
                let beside = (compression == Compression::Full && pending.check_disk).then(|| {
                    let dir = self.settings.server.feeds_dir.join(scope.path_segment());
                    (dir, pending.file_name)
                });
                let task = tasks.spawn_blocking_on(
                    move || match beside.and_then(|(dir, name)| file.codings_on_disk(&dir, name)) {
                        Some(found) => (found, true),
                        None => (file.compress(compression), false),
                    },
                    &self.builders.handle(),
                );
                places.insert(task.id(), (s, d));
            }
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            record(&mut places, joined);
        }
        let mut finished = Vec::with_capacity(scopes.len());
        for (((scope, docs), made), error) in scopes.iter().zip(made).zip(errors) {
            // Every task ends with its codings or its error: a scope without an error has
            // all its documents.
            let made = made.into_iter().flatten();
            finished.push(match error {
                None => {
                    let docs: Vec<(Pending, Codings)> = docs
                        .iter()
                        .cloned()
                        .zip(made)
                        .map(|(pending, (codings, codings_found))| {
                            (
                                Pending {
                                    codings_found,
                                    ..pending
                                },
                                codings,
                            )
                        })
                        .collect();
                    match self.write_files(scope, &docs).await {
                        Ok(stamps) => {
                            let docs = docs
                                .into_iter()
                                .zip(stamps)
                                .map(|((pending, codings), stamp)| (pending, codings, stamp))
                                .collect();
                            (Some(Finished { docs }), None)
                        }
                        // Served from memory, compressed, until the files are written.
                        Err(e) => {
                            let docs = docs.into_iter().map(|(p, c)| (p, c, None)).collect();
                            (Some(Finished { docs }), Some(e))
                        }
                    }
                }
                Some(e) => (None, Some(e)),
            });
        }
        finished
    }

    /// Writes the files of a scope's compressed documents that differ from what is on disk,
    /// all in one replacement (every temp file written before any is renamed), so that a
    /// failure leaves the scope's last good files, like its last good documents. Returns,
    /// for each document, the stamp of the file that holds its identity coding, when known:
    /// written now, found holding it after a restart, or written before it was compressed
    /// again.
    async fn write_files(
        &self,
        scope: &FeedScope,
        docs: &[(Pending, Codings)],
    ) -> Result<Vec<Option<FileStamp>>, PublicationError> {
        let dir = self.settings.server.feeds_dir.join(scope.path_segment());
        let mut writes: Vec<(String, Bytes)> = Vec::new();
        /// Where a document's identity file stands in the replacement.
        enum Identity {
            /// Not rewritten; its stamp, when known.
            Kept(Option<FileStamp>),
            /// Written: the index of its file in `writes`.
            Written(usize),
        }
        let mut identities = Vec::with_capacity(docs.len());
        for (pending, codings) in docs {
            identities.push(if pending.write_identity {
                writes.push((pending.file_name.to_owned(), pending.file.bytes().clone()));
                Identity::Written(writes.len() - 1)
            } else {
                Identity::Kept(pending.on_disk.or_else(|| pending.file.stamp()))
            });
            if pending.codings_found {
                continue; // read from those very files
            }
            // Brotli before gzip: a gzip file at the full level vouches for the brotli file
            // beside it at the next start (`FeedFile::codings_on_disk`).
            let files = [
                (super::BROTLI_SUFFIX, &codings.brotli.bytes),
                (super::GZIP_SUFFIX, &codings.gzip.bytes),
            ];
            for (suffix, bytes) in files {
                let name = format!("{}{suffix}", pending.file_name);
                if pending.check_disk
                    && std::fs::read(dir.join(&name)).is_ok_and(|old| old == bytes[..])
                {
                    continue;
                }
                writes.push((name, bytes.clone()));
            }
        }
        let written = if writes.is_empty() {
            Vec::new()
        } else {
            let folder = Arc::clone(&self.folder);
            let written = self
                .builders
                .spawn(move || folder.replace_all(&dir, &writes))
                .await;
            written.map_err(PublicationError::from).and_then(|r| r)?
        };
        Ok(identities
            .into_iter()
            .map(|identity| match identity {
                Identity::Kept(stamp) => stamp,
                Identity::Written(at) => written.get(at).copied(),
            })
            .collect())
    }

    /// Swaps a finished scope's compressed documents in, over the uncompressed ones they
    /// were made from (keeping a later date), and announces their changes.
    fn swap_finished(&self, finished: Finished) {
        let mut changes = Vec::new();
        self.snapshot.rcu(|current| {
            changes.clear();
            let mut next = Snapshot::clone(current);
            for (pending, codings, stamp) in &finished.docs {
                let Some(served) = next.get_mut(&pending.key) else {
                    continue;
                };
                if served.etag != pending.file.etag {
                    continue; // replaced since; never the case while one task swaps
                }
                *served = Arc::new(served.finished(codings.clone(), *stamp));
                if pending.announce {
                    changes.push(FeedChange {
                        path: pending.key.clone(),
                        file: served.clone(),
                    });
                }
            }
            next
        });
        for change in changes {
            let _ = self.changes.send(change);
        }
    }

    /// Puts `documents` into the snapshot, all at once.
    fn swap_in(&self, documents: Vec<(String, Arc<FeedFile>)>) {
        if documents.is_empty() {
            return;
        }
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            for (key, file) in &documents {
                next.insert_mut(key.clone(), file.clone());
            }
            next
        });
    }

    /// After a scope's documents are in the snapshot: updates its headlines and counts the
    /// regeneration.
    fn count_regeneration(&self, rendered: &Rendered) {
        let scope = &rendered.scope;
        // Only the index shows headlines, and it lists no author or tag feeds. Most
        // regenerations leave them as they were, and so the index too.
        if matches!(scope, FeedScope::All | FeedScope::Section(_)) {
            // Compared in the update itself, which is tried again if another swapped the
            // headlines meanwhile: what it last found decides.
            let mut changed = false;
            self.headlines.rcu(|current| {
                changed = current.get(scope).map(|shown| &**shown) != Some(&*rendered.headlines);
                if !changed {
                    return current.clone();
                }
                let mut next = HashMap::clone(current);
                next.insert(scope.clone(), rendered.headlines.clone());
                Arc::new(next)
            });
            // After the headlines, so that whoever reads the count and then the headlines
            // never keeps older headlines under a newer count.
            if changed {
                self.headline_changes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let feed = scope.metric_label().to_owned();
        metrics::counter!("feedpub_feed_regenerations_total", "feed" => feed.clone()).increment(1);
        metrics::histogram!("feedpub_feed_regeneration_seconds", "feed" => feed)
            .record(rendered.started.elapsed().as_secs_f64());
        *lock(&self.regenerations).entry(scope.clone()).or_default() += 1;
        tracing::debug!(
            feed = scope.path_segment(),
            read_us = rendered.read.as_micros(),
            render_us = rendered.render.as_micros(),
            served_us = rendered.started.elapsed().as_micros(),
            "feeds regenerated"
        );
    }

    /// Reads what the feeds of `scope` show; `None` for a section no longer configured.
    async fn prepare(&self, scope: &FeedScope) -> Result<Option<Prepared>, PublicationError> {
        if let FeedScope::Section(slug) = scope
            && self.settings.section(slug).is_none()
        {
            return Ok(None);
        }
        if !self.claim_folder(scope).await? {
            // Shown since the start found it, maybe.
            self.unshow(scope);
            return Ok(None);
        }
        let now = Utc::now();
        let reading = Instant::now();
        let feeds = &self.settings.feeds;
        let mut content = self
            .store
            .feed_content(scope, now, feeds.max_items, feeds.tombstone_window)
            .await?;
        let changed = content.last_change;
        if matches!(scope, FeedScope::Author(_) | FeedScope::Tag(_)) {
            // A name gets its feeds once one of its articles has come into view, not before:
            // the names of an embargoed or scheduled article are not given away by feeds of
            // their own (their titles name them). Then they stay, emptied when the last
            // article leaves. The store decides, as at start, the same on every replica.
            // One found at start but not built yet is served as good as: its files are
            // there, and are emptied like a served feed's.
            if content.articles.is_empty()
                && content.tombstones.is_empty()
                && !self.serves(scope)
                && !self.is_unbuilt(scope)
                && !self.store.has_feeds(scope, now).await?
            {
                return Ok(None);
            }
            let mut shown = lock(&self.named);
            // Checked under the lock of the names shown, which a name that takes its folder
            // over takes to leave it out of them.
            let changed = if content.articles.is_empty() || !self.owns_folder(scope) {
                shown.remove(scope)
            } else {
                shown.insert(scope.clone())
            };
            if changed {
                self.named_changes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let offset = self.settings.site.utc_offset;
        let headlines = content
            .articles
            .iter()
            .take(super::HEADLINES)
            .map(|a| Headline {
                title: a.content.title.clone(),
                url: a.content.canonical_url.clone(),
                published: a.content.publish_time.with_timezone(&offset),
            })
            .collect();
        // Dated per document when it is rendered (see `render_scope`).
        let mut meta = self.meta(
            scope,
            super::NEVER_CHANGED,
            std::mem::take(&mut content.tombstones),
        );
        meta.archive = self.current_archive_links(scope, &content);
        self.forget_archives(scope);
        Ok(Some(Prepared {
            scope: scope.clone(),
            articles: content.articles,
            meta,
            headlines,
            max_age: feeds.max_age_of(scope),
            now,
            changed,
            read: reading.elapsed(),
        }))
    }

    /// Whether `scope` may have its feeds in its folder: always, but for an author or tag
    /// whose slug another name has (a collision of the slug's short hash, which can be
    /// searched for). One name per folder, decided by the store, the same everywhere: the
    /// one a write gave an article first ([`crate::storage::Store::first_carried`]).
    /// Otherwise whichever was built last would
    /// be served there, and a partner could take another's author or tag feed over with a
    /// name made to collide. A name that takes a folder over from one that had it leaves
    /// that one out of the names shown and of the scopes waiting to be finished.
    async fn claim_folder(&self, scope: &FeedScope) -> Result<bool, PublicationError> {
        if scope.name().is_none() {
            return Ok(true);
        }
        let folder = scope.path_segment();
        let claimant = {
            let mut folders = lock(&self.folders);
            match folders.get(folder) {
                None => {
                    folders.insert(folder.to_owned(), scope.clone());
                    return Ok(true);
                }
                Some(owner) if owner == scope => return Ok(true),
                Some(owner) => owner.clone(),
            }
        };
        let owner = self
            .folder_owner(&[claimant.clone(), scope.clone()], &claimant)
            .await?;
        tracing::warn!(
            feed = folder,
            kept_by = owner.name(),
            other = if owner == claimant {
                scope.name()
            } else {
                claimant.name()
            },
            "two names have one slug: the name stored first keeps the feed folder, the other has no feeds"
        );
        if owner == claimant {
            return Ok(false);
        }
        lock(&self.folders).insert(folder.to_owned(), scope.clone());
        self.unshow(&claimant);
        lock(&self.unfinished).remove(&claimant);
        Ok(true)
    }

    /// Whether `scope` has its folder, as last decided (see [`Inner::claim_folder`]).
    fn owns_folder(&self, scope: &FeedScope) -> bool {
        if scope.name().is_none() {
            return true;
        }
        let folders = lock(&self.folders);
        folders
            .get(scope.path_segment())
            .is_none_or(|owner| owner == scope)
    }

    /// Of names sharing one slug (`names`), the one that keeps the folder: the one the store
    /// stored first, or `otherwise` when it cannot tell.
    pub(super) async fn folder_owner(
        &self,
        names: &[FeedScope],
        otherwise: &FeedScope,
    ) -> Result<FeedScope, PublicationError> {
        let first = self.store.first_carried(names).await?;
        Ok(first.unwrap_or_else(|| otherwise.clone()))
    }

    /// `scope` is no longer among the names shown (the OPML list), if it was.
    fn unshow(&self, scope: &FeedScope) {
        if lock(&self.named).remove(scope) {
            self.named_changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Whether the feeds of `scope` are served (the Atom document stands for the three).
    pub(super) fn serves(&self, scope: &FeedScope) -> bool {
        let key = format!("{}/{}", scope.path_segment(), Format::Atom.file_name());
        self.snapshot.load().contains_key(&key)
    }

    /// Renders a scope's documents and sorts them: unchanged, redated (same bytes, later
    /// date), or changed (to be compressed and written).
    ///
    /// A document's own date (Atom `updated`, RSS `lastBuildDate`) is its Last-Modified:
    /// one value, decided here, to the second (Atom's keeps the fraction of the second the
    /// stored change has: see [`to_the_instant`]). It is the latest stored change of what the
    /// scope shows (the same on every replica and after a restart), never earlier than the
    /// date of the document it replaces; and when the bytes change without a newer stored
    /// change (a new configuration, a new version of the renderers), the time of the
    /// regeneration, so that new bytes carry a later date than those they replace unless
    /// both fall within one second: that document [`shares_its_second`], so a client
    /// revalidating by date alone is never told its old copy is current.
    ///
    /// [`shares_its_second`]: FeedFile::shares_its_second
    fn render_scope(&self, prepared: Prepared, started: Instant, swap: Swap) -> Rendered {
        let rendering = Instant::now();
        let Prepared {
            scope,
            articles,
            mut meta,
            headlines,
            max_age,
            now,
            changed,
            read,
        } = prepared;
        let segment = scope.path_segment();
        let dir = self.settings.server.feeds_dir.join(segment);
        let stored = changed.map(|t| t.trunc_subsecs(0));
        let shown = shown_versions(&articles);
        let expires = first_expiry(&articles);
        let current = self.snapshot.load();
        let mut redated = Vec::new();
        let mut pending = Vec::new();
        let mut atom_on_disk = None;
        for format in Format::ALL {
            let key = format!("{segment}/{}", format.file_name());
            let links = Links {
                self_url: meta.url(format).to_owned(),
                hub_url: Some(meta.hub_url.clone()),
            };
            let previous = current.get(&key);
            // After a restart the files on disk are the previous version.
            let on_disk = match previous {
                Some(_) => None,
                None => read_stamped(&dir.join(format.file_name())),
            };
            // A JSON Feed carries no date: its file's is the Atom document's beside it,
            // written with it, read in the loop before (`Format::ALL` has Atom first).
            let previous_date = match previous {
                Some(previous) => Some(previous.last_modified),
                None => on_disk.as_ref().and_then(|(old, _)| match format {
                    Format::JsonFeed => atom_on_disk,
                    Format::Rss | Format::Atom => document_date(format, old)
                        .filter(|date| *date <= now + FILE_DATE_AHEAD_AT_MOST),
                }),
            };
            if format == Format::Atom && previous.is_none() {
                atom_on_disk = previous_date;
            }
            let mut date = stored.max(previous_date).unwrap_or(super::NEVER_CHANGED);
            meta.updated = to_the_instant(date, changed);
            let mut bytes = format.render(&meta, &articles);
            let mut etag = etag_of(&bytes);
            if let Some(previous) = previous.filter(|p| p.etag == etag) {
                // Same bytes: nothing to write. A JSON Feed carries no date of its own, so
                // its Last-Modified may still move on to a later stored change (say, of an
                // article that went straight out of view), as every replica's does.
                if previous.last_modified < date
                    || previous.max_age != max_age
                    || previous.expires != expires
                {
                    let mut file = previous.redated(date, max_age, &links);
                    file.changed = changed;
                    file.shown = Some(shown);
                    file.expires = expires;
                    redated.push((key, Arc::new(file)));
                }
                continue;
            }
            let unchanged_on_disk = on_disk.as_ref().filter(|(old, _)| *old == bytes);
            let replaced = previous.is_some() || (on_disk.is_some() && unchanged_on_disk.is_none());
            // New bytes are explained by a newer stored change when it falls in a later
            // second than the date they replace, or, served since this start, in the same
            // second but later than the change that document showed (two changes within one
            // second share a date; their ETags still differ), or when they show other
            // versions of the articles: a write committed after another one but dated
            // before it (replicas, or writers on one database, take their times before
            // they wait for each other) moves no date on, and is dated like the versions
            // beside it, as a replica that never saw the document in between dates it.
            let newer_change = match previous {
                Some(previous) => {
                    stored > Some(previous.last_modified)
                        || (stored == Some(previous.last_modified) && changed > previous.changed)
                        || previous.shown.is_some_and(|before| before != shown)
                }
                None => previous_date.is_some_and(|old| stored > Some(old)),
            };
            if replaced && !newer_change {
                date = date.max(now.trunc_subsecs(0));
                meta.updated = to_the_instant(date, changed);
                bytes = format.render(&meta, &articles);
                etag = etag_of(&bytes);
            }
            let unchanged_on_disk = unchanged_on_disk.map(|(_, stamp)| *stamp);
            // In place of the version served since this start, or of the file found.
            let mut file =
                FeedFile::tagged(bytes, etag, format.content_type(), date, max_age, &links)
                    .in_place_of(previous_date.filter(|_| replaced));
            file.changed = changed;
            file.shown = Some(shown);
            file.expires = expires;
            pending.push(Pending {
                key,
                file_name: format.file_name(),
                file: Arc::new(file),
                // Of the feeds found at start, only a document that replaces a different file
                // the last run left: one with no file before (a fresh feeds folder) may well
                // be what subscribers last got, or they had none.
                announce: match swap {
                    Swap::Early => previous.is_some() || unchanged_on_disk.is_none(),
                    Swap::Once => replaced,
                },
                // Compared with the file already, in the read above.
                write_identity: unchanged_on_disk.is_none(),
                check_disk: unchanged_on_disk.is_some(),
                on_disk: unchanged_on_disk,
                codings_found: false,
            });
        }
        Rendered {
            scope,
            redated,
            pending,
            headlines,
            started,
            read,
            render: rendering.elapsed(),
        }
    }
}

/// A digest of the versions of `articles` (each write moves an article's change time on):
/// see [`FeedFile::shown`].
/// The first `expire_time` of `articles`: see [`FeedFile::expires`].
pub(super) fn first_expiry<A: std::borrow::Borrow<Article>>(
    articles: &[A],
) -> Option<DateTime<Utc>> {
    articles
        .iter()
        .filter_map(|a| a.borrow().content.expire_time)
        .min()
}

fn shown_versions(articles: &[Arc<Article>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for article in articles {
        (article.partner.0, article.id.as_str(), article.change_time).hash(&mut digest);
    }
    digest.finish()
}

/// The date a document states, given its Last-Modified `date` (to the second) and the
/// latest stored change of what it shows: that change itself when the date is that
/// change's second. An Atom feed's `updated` is then never earlier than its newest entry's
/// (RFC 4287 §4.2.15: the feed changed when the entry did), and it moves with every
/// change, also within one second, for a reader that compares it; RSS dates, to the
/// second, and Last-Modified stay the truncated `date`.
pub(super) fn to_the_instant(date: DateTime<Utc>, changed: Option<DateTime<Utc>>) -> DateTime<Utc> {
    changed
        .filter(|changed| changed.trunc_subsecs(0) == date)
        .unwrap_or(date)
}

/// How far ahead of the clock the date of a document found on disk at start may be and
/// still be kept: a clock stepped back by hours keeps its documents' dates going forward,
/// but a date further ahead (a file edited, a clock far off when it was written) would
/// stay on every later version of the document, and past the year 9999 no feed can state it.
const FILE_DATE_AHEAD_AT_MOST: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The date a document of `format` carries (RSS `lastBuildDate`, Atom `updated`), read
/// back from its bytes as feedpub writes them: the date of the file found on disk after a
/// restart. `None` for a JSON Feed, which has no date of its own, or an unreadable one.
fn document_date(format: Format, bytes: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let within = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = start + text[start..].find(close)?;
        Some(&text[start..end])
    };
    let date = match format {
        Format::Rss => DateTime::parse_from_rfc2822(within("<lastBuildDate>", "</lastBuildDate>")?),
        // The feed's own `updated` comes before the first entry's.
        Format::Atom => DateTime::parse_from_rfc3339(within("<updated>", "</updated>")?),
        Format::JsonFeed => return None,
    };
    date.ok().map(|t| t.to_utc().trunc_subsecs(0))
}

/// The bytes of the file at `path` and its stamp as they were read, if it can be read.
fn read_stamped(path: &std::path::Path) -> Option<(Vec<u8>, FileStamp)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let stamp = FileStamp::of(&file).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    // Written to while it was read: as good as unknown.
    (FileStamp::of(&file).ok()? == stamp).then_some((bytes, stamp))
}
