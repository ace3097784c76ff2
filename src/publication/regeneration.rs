//! Regeneration of a batch of stale feeds: every document of every scope is rendered,
//! compressed and written on the blocking pool, as many at once as there are cores, and each
//! is swapped into the snapshot as soon as it is on disk; section feeds only once every other
//! feed of the batch is in, so that once a section feed shows an article, every feed does.

use super::{
    Compression, FeedChange, FeedFile, Headline, Inner, Links, PublicationError, Snapshot, files,
};
use crate::domain::{Article, FeedScope};
use crate::render::{FeedMeta, Format};
use axum::body::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// When the documents of a batch go into the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swap {
    /// Each as soon as it is written (sections after the rest): the feeds are being served.
    AsReady,
    /// All at once at the end: one copy of the snapshot map however many feeds there are
    /// (at start-up, before anything is served).
    Once,
}

/// How hard the documents of a batch are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compress {
    /// With the full levels.
    Full,
    /// Fast when more stale marks wait as a scope is read (a burst: the feeds are turning
    /// over faster than full compression keeps up with), the full levels otherwise.
    WhenBusy,
    /// With the full levels, documents compressed fast during a burst: not counted as a
    /// regeneration, since what the feeds show does not change.
    Again,
}

/// One scope's content as read from the store, shared by the tasks of its three documents.
struct Prepared {
    scope: FeedScope,
    articles: Vec<Article>,
    meta: FeedMeta,
    headlines: Arc<[Headline]>,
    max_age: u32,
    now: DateTime<Utc>,
    compression: Compression,
}

/// How one scope of the batch is getting on.
struct ScopeState {
    scope: FeedScope,
    /// Swapped in after every feed of the first group (named feeds and `all`).
    last_group: bool,
    /// Documents not built yet; the scope is done at zero.
    left: usize,
    /// Built documents waiting for their turn to be swapped in.
    held: Vec<(String, Arc<FeedFile>)>,
    /// Files of the built documents whose bytes changed, written together once the last
    /// document of the scope is built.
    writes: Vec<(String, Bytes)>,
    changes: Vec<FeedChange>,
    error: Option<PublicationError>,
    headlines: Option<Arc<[Headline]>>,
    /// A document compressed fast is among `held`.
    fast: bool,
    started: Instant,
}

/// One document to build: scope index and format.
type Job = (usize, Arc<Prepared>, Format);
/// A built document: what to swap in, the files to write and the change to announce.
struct Built {
    key: String,
    file: Arc<FeedFile>,
    writes: Vec<(String, Bytes)>,
    change: Option<FeedChange>,
}
/// A built document of the scope with this index, if anything is to be swapped in.
type Done = (usize, Result<Option<Built>, PublicationError>);

/// Moves a finished scope's documents to `ready`; none of them when one failed, so that the
/// snapshot keeps serving the scope's last good feeds in every format together.
fn take_held(state: &mut ScopeState, ready: &mut Vec<(String, Arc<FeedFile>)>) {
    if state.error.is_some() {
        state.held.clear();
    } else {
        ready.append(&mut state.held);
    }
}

impl Inner {
    /// Regenerates `scopes` (named feeds and `all` first, sections last); returns those
    /// that failed, with their errors. A scope whose bytes did not change is not rewritten.
    pub(super) async fn regenerate_batch(
        self: &Arc<Self>,
        scopes: impl IntoIterator<Item = FeedScope>,
        swap: Swap,
        compress: Compress,
    ) -> Vec<(FeedScope, PublicationError)> {
        let (first, last): (Vec<_>, Vec<_>) = scopes
            .into_iter()
            .partition(|s| !matches!(s, FeedScope::Section(_)));
        let mut states: Vec<ScopeState> = first
            .into_iter()
            .map(|s| (s, false))
            .chain(last.into_iter().map(|s| (s, true)))
            .map(|(scope, last_group)| ScopeState {
                scope,
                last_group,
                left: Format::ALL.len(),
                held: Vec::new(),
                writes: Vec::new(),
                changes: Vec::new(),
                error: None,
                headlines: None,
                fast: false,
                started: Instant::now(),
            })
            .collect();
        let mut first_left = states.iter().filter(|s| !s.last_group).count();
        // Scopes are read in order, each just before its documents are needed, so the
        // sections are read after every other feed of the batch and at most a few scopes'
        // articles are in memory at once.
        let mut unread = 0..states.len();
        let mut jobs: VecDeque<Job> = VecDeque::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut ready: Vec<(String, Arc<FeedFile>)> = Vec::new();
        loop {
            while tasks.len() < self.parallel {
                if let Some((index, prepared, format)) = jobs.pop_front() {
                    let this = self.clone();
                    tasks.spawn(async move {
                        let built = tokio::task::spawn_blocking(move || {
                            this.build_document(&prepared, format)
                        })
                        .await;
                        (index, built.map_err(PublicationError::from).and_then(|b| b))
                    });
                    continue;
                }
                let Some(index) = unread.next() else { break };
                let state = &mut states[index];
                state.started = Instant::now();
                let compression = match compress {
                    Compress::WhenBusy if self.busy() => Compression::Fast,
                    Compress::Full | Compress::WhenBusy | Compress::Again => Compression::Full,
                };
                match self.prepare(&state.scope, compression).await {
                    Ok(Some(prepared)) => {
                        state.headlines = Some(prepared.headlines.clone());
                        let prepared = Arc::new(prepared);
                        jobs.extend(Format::ALL.map(|f| (index, prepared.clone(), f)));
                    }
                    Ok(None) => state.left = 0,
                    Err(e) => {
                        state.left = 0;
                        state.error = Some(e);
                    }
                }
                if state.left == 0 {
                    self.finish_scope(state, compress);
                    first_left -= usize::from(!state.last_group);
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let mut finished = vec![joined];
            while let Some(more) = tasks.try_join_next() {
                finished.push(more);
            }
            for joined in finished {
                let (index, built) = match joined {
                    Ok(done) => done,
                    // Each task catches its own failures; a panic in one is a bug that must
                    // still not take the scheduler down.
                    Err(e) => {
                        tracing::error!(error = %e, "a feed document task failed");
                        continue;
                    }
                };
                let state = &mut states[index];
                match built {
                    Ok(Some(built)) => {
                        state.fast |= built.file.compression == Compression::Fast;
                        state.held.push((built.key, built.file));
                        state.writes.extend(built.writes);
                        state.changes.extend(built.change);
                    }
                    Ok(None) => {}
                    Err(e) => state.error = Some(e),
                }
                state.left -= 1;
                if state.left == 0 {
                    self.write_scope(state).await;
                }
                if state.left == 0 && !state.last_group {
                    first_left -= 1;
                }
            }
            if swap == Swap::AsReady {
                // Every finished scope of the first group, and of the last once the first is
                // all in, goes in with one copy of the map.
                let due = |s: &ScopeState| s.left == 0 && (!s.last_group || first_left == 0);
                for state in states.iter_mut().filter(|s| due(s)) {
                    take_held(state, &mut ready);
                }
                self.swap_in(&mut ready);
                for state in states.iter_mut().filter(|s| due(s)) {
                    self.finish_scope(state, compress);
                }
            }
        }
        for state in &mut states {
            take_held(state, &mut ready);
        }
        self.swap_in(&mut ready);
        let mut failed = Vec::new();
        for mut state in states {
            self.finish_scope(&mut state, compress);
            if let Some(error) = state.error {
                failed.push((state.scope, error));
            }
        }
        failed
    }

    /// Writes the changed files of a scope whose documents are all built, all of them in one
    /// replacement (every temp file written before any is renamed), so that a failure leaves
    /// the scope's last good files, like its last good documents in the snapshot.
    async fn write_scope(&self, state: &mut ScopeState) {
        let writes = std::mem::take(&mut state.writes);
        if state.error.is_some() || writes.is_empty() {
            return;
        }
        let dir = self
            .settings
            .server
            .feeds_dir
            .join(state.scope.path_segment());
        let written = tokio::task::spawn_blocking(move || {
            let files: Vec<(String, &[u8])> =
                writes.iter().map(|(n, b)| (n.clone(), &b[..])).collect();
            files::replace_all(&dir, &files).map_err(|error| PublicationError::Write {
                path: dir.clone(),
                error,
            })
        })
        .await;
        if let Err(e) = written.map_err(PublicationError::from).and_then(|r| r) {
            state.error = Some(e);
        }
    }

    /// Puts `documents` into the snapshot with one copy of the map, and empties it.
    fn swap_in(&self, documents: &mut Vec<(String, Arc<FeedFile>)>) {
        if documents.is_empty() {
            return;
        }
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.extend(documents.iter().cloned());
            next
        });
        documents.clear();
    }

    /// After a scope's documents are in the snapshot: announces their changes, updates its
    /// headlines and counts the regeneration. Does nothing the second time.
    fn finish_scope(&self, state: &mut ScopeState, compress: Compress) {
        if state.left > 0 || !state.held.is_empty() {
            return;
        }
        for change in state.changes.drain(..) {
            // Nobody listening is fine: subscribers come and go.
            let _ = self.changes.send(change);
        }
        let Some(headlines) = state.headlines.take() else {
            return;
        };
        if state.error.is_some() {
            return;
        }
        if state.fast {
            self.compressed_fast(&state.scope);
        }
        if compress == Compress::Again {
            return;
        }
        // Only the index shows headlines, and it lists no author or tag feeds.
        if matches!(state.scope, FeedScope::All | FeedScope::Section(_)) {
            self.headlines.rcu(|current| {
                let mut next = std::collections::HashMap::clone(current);
                next.insert(state.scope.clone(), headlines.clone());
                next
            });
        }
        let feed = state.scope.metric_label().to_owned();
        metrics::counter!("feedpub_feed_regenerations_total", "feed" => feed.clone()).increment(1);
        metrics::histogram!("feedpub_feed_regeneration_seconds", "feed" => feed)
            .record(state.started.elapsed().as_secs_f64());
        *self
            .regenerations
            .lock()
            .expect("counter lock")
            .entry(state.scope.clone())
            .or_default() += 1;
        tracing::debug!(feed = state.scope.path_segment(), "feeds regenerated");
    }

    /// Reads what the feeds of `scope` show; `None` for a section no longer configured.
    async fn prepare(
        &self,
        scope: &FeedScope,
        compression: Compression,
    ) -> Result<Option<Prepared>, PublicationError> {
        let section = match scope {
            FeedScope::Section(slug) => match self.settings.section(slug) {
                Some(section) => Some(section.slug.clone()),
                None => return Ok(None),
            },
            FeedScope::All | FeedScope::Author(_) | FeedScope::Tag(_) => None,
        };
        let now = Utc::now();
        let feeds = &self.settings.feeds;
        let mut content = self
            .store
            .feed_content(scope, now, feeds.max_items, feeds.tombstone_window)
            .await?;
        let updated = content.last_change.unwrap_or(DateTime::UNIX_EPOCH);
        if matches!(scope, FeedScope::Author(_) | FeedScope::Tag(_)) {
            let mut shown = self.named.lock().expect("named scopes lock");
            if content.articles.is_empty() {
                shown.remove(scope);
            } else {
                shown.insert(scope.clone());
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
        let mut meta = self.meta(scope, updated, std::mem::take(&mut content.tombstones));
        meta.archive = self.current_archive_links(scope).await?;
        self.forget_archives(scope);
        Ok(Some(Prepared {
            scope: scope.clone(),
            articles: content.articles,
            meta,
            headlines,
            max_age: feeds.max_age_of(section.as_ref()),
            now,
            compression,
        }))
    }

    /// Renders one document; when its bytes changed, compresses it. Returns what to swap
    /// into the snapshot (also when only its date moved on), the files to write and the
    /// change to announce.
    fn build_document(
        &self,
        prepared: &Prepared,
        format: Format,
    ) -> Result<Option<Built>, PublicationError> {
        let Prepared {
            scope,
            articles,
            meta,
            max_age,
            now,
            compression,
            ..
        } = prepared;
        let max_age = *max_age;
        let segment = scope.path_segment();
        let dir = self.settings.server.feeds_dir.join(segment);
        let key = format!("{segment}/{}", format.file_name());
        let links = Links {
            self_url: meta.url(format).to_owned(),
            hub_url: meta.hub_url.clone(),
        };
        let derived = meta.updated.trunc_subsecs(0);
        let bytes = format.render(meta, articles);
        let current = self.snapshot.load();
        let previous = current.get(&key);
        let same = previous.filter(|p| p.bytes == bytes[..]);
        // Same bytes, compressed fast during a burst: compressed again, as they are.
        let recompress = same.filter(|p| p.compression != *compression);
        if let Some(previous) = same.filter(|_| recompress.is_none()) {
            // Same bytes: nothing to write, but a later change time (say, of an article
            // that went straight out of view) still moves Last-Modified on.
            if previous.last_modified < derived || previous.max_age != max_age {
                let last_modified = previous.last_modified.max(derived);
                let file = previous.redated(last_modified, max_age, &links);
                return Ok(Some(Built {
                    key,
                    file: Arc::new(file),
                    writes: Vec::new(),
                    change: None,
                }));
            }
            return Ok(None);
        }
        // After a restart the files on disk are the previous version.
        let on_disk = match previous {
            Some(_) => None,
            None => std::fs::read(dir.join(format.file_name())).ok(),
        };
        let unchanged_on_disk = on_disk.as_ref().is_some_and(|old| *old == bytes);
        // Last-Modified comes from the stored change times, so a restart or another replica
        // gives the same value. Only when the bytes changed without a newer stored change (a
        // new configuration, say) is "now" used instead, so that new bytes never look older
        // than the ones they replace. Two changes within one second share a Last-Modified;
        // their ETags still differ.
        let replaced = previous.is_some() || (on_disk.is_some() && !unchanged_on_disk);
        let stale_date = previous.is_none_or(|p| p.last_modified > derived);
        let last_modified = if let Some(previous) = recompress {
            previous.last_modified.max(derived)
        } else if replaced && stale_date {
            derived.max(now.trunc_subsecs(0))
        } else {
            derived
        };
        let announce = recompress.is_none() && (previous.is_some() || !unchanged_on_disk);
        let recompressed = recompress.is_some();
        drop(current);
        let file = Arc::new(FeedFile::compressed(
            bytes,
            format.content_type(),
            last_modified,
            max_age,
            &links,
            *compression,
        ));
        let mut writes: Vec<(String, Bytes)> = Vec::new();
        for (suffix, bytes) in file.files() {
            let name = format!("{}{suffix}", format.file_name());
            let same = (recompressed && suffix.is_empty())
                || unchanged_on_disk
                    && std::fs::read(dir.join(&name)).is_ok_and(|old| old == bytes[..]);
            if !same {
                writes.push((name, bytes.clone()));
            }
        }
        let change = announce.then(|| FeedChange {
            path: key.clone(),
            file: file.clone(),
        });
        Ok(Some(Built {
            key,
            file,
            writes,
            change,
        }))
    }
}
