//! Batch publishing (PublishArticles): a partner's articles are validated as they arrive,
//! stored a chunk at a time (one writer job, so one transaction, per chunk, the next chunk
//! validated while the last is stored), the partner's token and rights checked by the store
//! as it writes them (against the partner's row in the chunk's transaction), each with a
//! result of its own; the feeds they touch are marked stale once, when the batch ends.

use super::{PublishError, PublishRequest, Published, Publisher, Warnings, count_outcome};
use crate::domain::{Actor, ArticleId, AuditOperation, Caller, FeedScope, Revision, SectionSlug};
use crate::storage::{ArticleWrite, WriteChecks};
use chrono::Utc;
use std::collections::BTreeSet;
use tokio::task::JoinHandle;

/// Most articles one batch takes: the answer carries a result for each.
pub const MAX_BATCH_ARTICLES: usize = 10_000;
/// Bytes of bodies and summaries a chunk holds at most: a batch holds two chunks at once
/// (one validated, one being stored), so that a stream of large articles does not hold a
/// thousand of them, a gigabyte, in memory.
const CHUNK_BYTES: usize = 32 << 20;

/// A validated article waiting to be stored: its position, the write, its warnings.
type Pending = (usize, ArticleWrite, Warnings);
/// An article of a chunk being stored: its position, id and warnings.
#[derive(Clone)]
struct Item {
    index: usize,
    id: ArticleId,
    warnings: Warnings,
}
/// The articles of a chunk.
type Meta = Vec<Item>;
/// What became of each article of a stored chunk.
type Stored = Vec<(Item, Result<Revision, PublishError>)>;

/// A stored chunk, settled: what became of each article (refusals audited, embargoes
/// noticed), and the feeds its articles touched.
#[derive(Default)]
struct Settled {
    stored: Stored,
    sections: BTreeSet<SectionSlug>,
    names: BTreeSet<FeedScope>,
}

/// One partner's batch of publishes. Feed marks are sent when it is dropped, also when the
/// caller went away half-way: whatever was stored reaches the feeds.
pub struct Batch {
    publisher: Publisher,
    caller: Caller,
    pushed: usize,
    pending: Vec<Pending>,
    /// Bytes of the bodies and summaries in `pending`.
    pending_bytes: usize,
    /// The chunk being stored and settled, and its articles. Left here while it is awaited,
    /// so that a call dropped meanwhile leaves it to [`Batch`]'s `drop`.
    storing: Option<(Meta, JoinHandle<Settled>)>,
    results: Vec<(usize, Result<Published, PublishError>)>,
    sections: BTreeSet<SectionSlug>,
    names: BTreeSet<FeedScope>,
}

impl Publisher {
    /// Starts a batch of publishes for `caller`.
    pub fn batch(&self, caller: &Caller) -> Batch {
        Batch {
            publisher: self.clone(),
            caller: caller.clone(),
            pushed: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            storing: None,
            results: Vec::new(),
            sections: BTreeSet::new(),
            names: BTreeSet::new(),
        }
    }
}

impl Batch {
    /// Takes the next article (or the reason it could not be read); its result comes
    /// from [`Batch::finish`], at the position it was pushed. Fails when the batch is
    /// full, once the articles before are stored: the call must end there.
    pub async fn push(
        &mut self,
        request: Result<PublishRequest, PublishError>,
    ) -> Result<(), PublishError> {
        let index = self.pushed;
        if index >= MAX_BATCH_ARTICLES {
            self.store_pending().await;
            self.collect().await;
            return Err(PublishError::TooManyArticles);
        }
        self.pushed += 1;
        let prepared = match request {
            Ok(request) => {
                let id = request.draft.id.clone();
                let partner = &self.caller.partner;
                let prepared = async {
                    let (write, warnings) = self.publisher.prepare(partner, request).await?;
                    partner.may_publish(&write.sent.content, Utc::now())?;
                    self.publisher
                        .charge_new_names(partner, &write.sent.content)
                        .await?;
                    Ok::<_, PublishError>((write, warnings))
                }
                .await;
                // Refused before the store, as a single publish would be: audited alike.
                self.publisher
                    .audit_refusal(&self.caller, AuditOperation::Publish, &id, prepared)
                    .await
            }
            Err(e) => Err(e),
        };
        match prepared {
            Ok((write, warnings)) => {
                let c = &write.sent.content;
                self.pending_bytes += c.content_html.len()
                    + c.content_text.as_ref().map_or(0, String::len)
                    + c.summary.len();
                self.pending.push((index, write, warnings));
                // Articles stored together, in one writer job: as many as the store
                // takes at once, fewer when they are large.
                if self.pending.len() >= self.publisher.store.batch_chunk()
                    || self.pending_bytes >= CHUNK_BYTES
                {
                    self.store_pending().await;
                }
            }
            Err(e) => {
                let result = Err(e);
                count_outcome(&result);
                self.results.push((index, result));
            }
        }
        Ok(())
    }

    /// Stores what is left and returns one result per article pushed, in order.
    pub async fn finish(mut self) -> Vec<(usize, Result<Published, PublishError>)> {
        self.store_pending().await;
        self.collect().await;
        let mut results = std::mem::take(&mut self.results);
        results.sort_by_key(|(index, _)| *index);
        results
    }

    /// Hands the pending articles to the store, once the chunk before them is stored.
    async fn store_pending(&mut self) {
        self.collect().await;
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let (meta, writes) = split(chunk);
        let in_flight = meta.clone();
        let task = tokio::spawn(store_and_settle(
            self.publisher.clone(),
            self.caller.clone(),
            meta,
            writes,
        ));
        self.storing = Some((in_flight, task));
    }

    /// Waits for the chunk being stored and records its results and the feeds it touched.
    /// Nothing is awaited once the chunk is taken: a call dropped at any point leaves the
    /// chunk's feeds either to this batch or to its `drop`.
    async fn collect(&mut self) {
        let Some((_, storing)) = &mut self.storing else {
            return;
        };
        let joined = storing.await;
        let Some((in_flight, _)) = self.storing.take() else {
            return;
        };
        let settled = joined.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a batch chunk failed to store");
            Settled {
                stored: failed(in_flight, crate::storage::StoreError::Closed),
                ..Settled::default()
            }
        });
        self.sections.extend(settled.sections);
        self.names.extend(settled.names);
        for (item, result) in settled.stored {
            let Item {
                index, warnings, ..
            } = item;
            let result = recorded(&self.publisher, result, warnings);
            self.results.push((index, result));
        }
    }
}

/// A settled article's result as a batch keeps it (see [`without_bodies`]), counted in
/// the metrics and reported to the storage fault as a single publish's is.
fn recorded(
    publisher: &Publisher,
    result: Result<Revision, PublishError>,
    warnings: Warnings,
) -> Result<Published, PublishError> {
    let result = result.map(|revision| {
        let changed = !revision.touched_sections().is_empty();
        let article = revision.into_article();
        Published {
            warnings: warnings.settled(&article),
            article: without_bodies(article),
            changed,
        }
    });
    publisher.note_write(&result);
    count_outcome(&result);
    result
}

/// A stored article as a batch's result keeps it, until the batch ends: without its
/// bodies and summary, which the answer does not carry (only the article's etag, version,
/// state and times), so that a batch of ten thousand large articles does not hold them
/// all.
fn without_bodies(mut article: crate::domain::Article) -> crate::domain::Article {
    let c = &mut article.content;
    c.content_html = String::new();
    c.content_text = None;
    c.summary = String::new();
    article
}

/// Stores one chunk for `caller` and settles each of its articles ([`settle`]), in a task
/// of its own: done alike whether or not the caller still waits.
async fn store_and_settle(
    publisher: Publisher,
    caller: Caller,
    meta: Meta,
    writes: Vec<ArticleWrite>,
) -> Settled {
    let mut settled = Settled::default();
    for (item, result) in store_chunk(publisher.clone(), caller.clone(), meta, writes).await {
        let touched = (&mut settled.sections, &mut settled.names);
        let result = settle(&publisher, &caller, &item, result, touched).await;
        settled.stored.push((item, result));
    }
    settled
}

/// What a stored chunk's article needs once its result is known, whether or not the caller
/// still waits for it: a refusal by the store (a right on the stored article) audited as a
/// single publish's is, the feeds it touched added to `touched`, its embargo's end noticed.
async fn settle(
    publisher: &Publisher,
    caller: &Caller,
    item: &Item,
    result: Result<Revision, PublishError>,
    (sections, names): (&mut BTreeSet<SectionSlug>, &mut BTreeSet<FeedScope>),
) -> Result<Revision, PublishError> {
    let result = publisher
        .audit_refusal(caller, AuditOperation::Publish, item.id.as_str(), result)
        .await;
    if let Ok(revision) = &result {
        sections.extend(revision.touched_sections());
        names.extend(revision.touched_names());
        publisher.notice_embargo(revision);
    }
    result
}

/// A chunk's articles, and their writes.
fn split(chunk: Vec<Pending>) -> (Meta, Vec<ArticleWrite>) {
    chunk
        .into_iter()
        .map(|(index, write, warnings)| {
            let id = write.id.clone();
            (
                Item {
                    index,
                    id,
                    warnings,
                },
                write,
            )
        })
        .unzip()
}

/// Stores one chunk for `caller`: what became of each of its articles.
async fn store_chunk(
    publisher: Publisher,
    caller: Caller,
    meta: Meta,
    writes: Vec<ArticleWrite>,
) -> Stored {
    let count = writes.len();
    // A stream's partner is looked up when it starts, and checked in each chunk's
    // transaction against its row as it stands then: a stream open across a revocation, a
    // rotation or a change of rights is held to it from the next chunk on, as a call made
    // after it would be.
    let checks = WriteChecks::of(&caller.partner, caller.token.as_ref());
    let actor = Actor::from(&caller);
    match publisher
        .store
        .publish_checked(caller.partner.id, &checks, writes, Utc::now(), &actor)
        .await
    {
        Ok(results) if results.len() == count => meta
            .into_iter()
            .zip(results)
            .map(|(item, r)| (item, r.map_err(PublishError::from)))
            .collect(),
        Ok(_) => failed(
            meta,
            crate::storage::StoreError::Corrupt(
                "the store answered a batch with the wrong number of results".into(),
            ),
        ),
        Err(e) => failed(meta, e),
    }
}

/// The same storage failure for every article of a chunk.
fn failed(meta: Meta, error: crate::storage::StoreError) -> Stored {
    meta.into_iter()
        .map(|item| (item, Err(error.clone().into())))
        .collect()
}

impl Drop for Batch {
    fn drop(&mut self) {
        let publisher = self.publisher.clone();
        let mut sections = std::mem::take(&mut self.sections);
        let mut names = std::mem::take(&mut self.names);
        let mark = |publisher: &Publisher, sections: BTreeSet<SectionSlug>, names| {
            // Author and tag feeds first, so that they are current once the section's is.
            publisher.publication.touch_scopes(names);
            publisher
                .publication
                .touch(&sections.into_iter().collect::<Vec<_>>());
        };
        let pending = std::mem::take(&mut self.pending);
        match self.storing.take() {
            None if pending.is_empty() => mark(&publisher, sections, names),
            // The call ended before its end was handled (the client went away, its
            // deadline or the server's passed): the chunk being stored is awaited and the
            // articles validated since are stored all the same, as the end of the stream
            // would have stored them; their feeds are marked and the store's refusals
            // audited as they would have been.
            storing => {
                let caller = self.caller.clone();
                tokio::spawn(async move {
                    let mut chunks = Vec::new();
                    if let Some((_, storing)) = storing
                        && let Ok(chunk) = storing.await
                    {
                        chunks.push(chunk);
                    }
                    if !pending.is_empty() {
                        let (meta, writes) = split(pending);
                        chunks.push(
                            store_and_settle(publisher.clone(), caller.clone(), meta, writes).await,
                        );
                    }
                    for chunk in chunks {
                        sections.extend(chunk.sections);
                        names.extend(chunk.names);
                        for (_, result) in chunk.stored {
                            // Nobody waits for it: counted and reported only.
                            let _ = recorded(&publisher, result, Warnings::default());
                        }
                    }
                    mark(&publisher, sections, names);
                });
            }
        }
    }
}
