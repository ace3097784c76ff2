//! Archive pages (RFC 5005): a feed's history, `max_items` articles a page in the order
//! they were first stored, so a page keeps its entries. Only full pages are served: the
//! newest articles after them are in the current documents until they fill a page. Pages
//! are rendered on request and kept until their feed changes; the subscription documents
//! link to the newest page, each page to its neighbours.

use super::regeneration::first_expiry;
use super::{FeedFile, Inner, Links, PublicationError};
use crate::domain::{FeedScope, SectionSlug};
use crate::render::{ArchiveLinks, Format, FormatUrls};
use crate::storage::{FeedContent, StoreError};
use chrono::{SubsecRound, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most archive documents kept rendered at once, and most bytes they may hold in all their
/// codings: a large feed's pages would otherwise hold hundreds of megabytes.
const CACHE_LIMIT: usize = 1024;
const CACHE_BYTES: usize = 64 << 20;
/// Longest `Cache-Control: max-age` of an archive page before the newest (its
/// `next-archive` link is there) none of whose articles is still to come into view: it no
/// longer changes by design, but for a retraction, a correction or a move.
const FULL_PAGE_MAX_AGE: u32 = 86_400;

/// `Cache-Control: max-age` of archive page `page` of `pages`, which last changed
/// `since_change` ago. The newest page gains its `next-archive` link, and a page still to
/// gain an article (`pending`: scheduled, or under embargo) changes when it comes into view:
/// both are cached like the current documents, for the feed's `max_age`. Any other page for
/// a tenth of the time since it changed (the heuristic of RFC 9111 §4.2.2), at least the
/// feed's `max_age` and at most a day: a page a retraction or correction changed lately
/// may well change again, and a cache then holds the old copy for minutes, not a day; a
/// page untouched for ten days is cached for a day.
fn page_max_age(
    page: usize,
    pages: usize,
    pending: bool,
    since_change: chrono::TimeDelta,
    feed_max_age: u32,
) -> u32 {
    if page >= pages || pending {
        return feed_max_age;
    }
    // A change in the future (another replica's clock ahead) counts as just now.
    let tenth = u32::try_from(since_change.num_seconds().max(0) / 10).unwrap_or(u32::MAX);
    tenth.clamp(feed_max_age.min(FULL_PAGE_MAX_AGE), FULL_PAGE_MAX_AGE)
}

/// Rendered archive documents by feed path, dropped when their feed changes.
#[derive(Default)]
pub(super) struct ArchiveCache {
    documents: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Each with the instant its `Cache-Control` lifetime ends: rendered again after that,
    /// so that a page's lifetime grows with its age (see [`page_max_age`]).
    by_path: HashMap<String, (Arc<FeedFile>, std::time::Instant)>,
    /// Bytes of every coding of the documents in `by_path`.
    bytes: usize,
    /// Counts the forgets: a page rendered from what the store held before one is not kept.
    forgets: u64,
    /// The date, entity tag and [`FeedFile::shares_its_second`] of the last version of each
    /// page rendered, kept when the page is forgotten: a page changed twice within one
    /// second is dated alike both times, and a client's `If-Modified-Since` of that date may
    /// be the earlier version's. Cleared past [`DATED_LIMIT`] pages (a stale 304 for a page
    /// changed twice in a second then, until it changes again).
    dated: HashMap<String, (chrono::DateTime<Utc>, String, bool)>,
}

/// Most pages whose last version's date [`Cached::dated`] keeps.
const DATED_LIMIT: usize = 16 * CACHE_LIMIT;

/// `(feed folder, page, format)` of an archive path such as `politics/archive/3/atom.xml`.
pub(super) fn parse(path: &str) -> Option<(&str, usize, Format)> {
    let (segment, rest) = path.split_once("/archive/")?;
    let (page, file) = rest.split_once('/')?;
    let number: usize = page.parse().ok().filter(|p| *p >= 1)?;
    if number.to_string() != page {
        return None; // "03" and "+3" are not page 3: one URL per document.
    }
    Some((segment, number, Format::from_file_name(file)?))
}

impl Inner {
    fn document_urls(&self, scope: &FeedScope, page: Option<usize>) -> FormatUrls {
        let folder = match page {
            Some(page) => format!("feeds/{}/archive/{page}/", scope.path_segment()),
            None => format!("feeds/{}/", scope.path_segment()),
        };
        let url = |format: Format| {
            self.settings
                .site
                .url(&format!("{folder}{}", format.file_name()))
        };
        FormatUrls {
            rss: url(Format::Rss),
            atom: url(Format::Atom),
            json: url(Format::JsonFeed),
        }
    }

    /// The scope whose feeds are in the folder `segment` (`all`, a section, `authors/…`).
    async fn scope_at(&self, segment: &str) -> Result<Option<FeedScope>, StoreError> {
        if segment == SectionSlug::ALL {
            return Ok(Some(FeedScope::All));
        }
        if let Ok(slug) = SectionSlug::parse(segment) {
            return Ok(self
                .settings
                .section(&slug)
                .map(|_| FeedScope::Section(slug)));
        }
        // An author or tag: only one whose feeds are served has archive pages. Looking
        // that up first keeps a request for any other folder from reading every name.
        let served = format!("{segment}/{}", Format::Rss.file_name());
        if self.snapshot.load().get(&served).is_none() {
            return Ok(None);
        }
        // The name whose feeds are in the folder (see `claim_folder`).
        let owner = self
            .folders
            .lock()
            .ok()
            .and_then(|folders| folders.get(segment).cloned());
        if owner.is_some() {
            return Ok(owner);
        }
        // Served, but not read since this process started: any name an article carries,
        // whether or not it has come into view, to find the one of this folder (the first
        // stored, should two names share it).
        let named: Vec<FeedScope> = self
            .store
            .named_scopes(chrono::DateTime::<Utc>::MAX_UTC)
            .await?
            .into_iter()
            .filter(|scope| scope.path_segment() == segment)
            .collect();
        match &named[..] {
            [] | [_] => Ok(named.into_iter().next()),
            _ => self.store.first_carried(&named).await,
        }
    }

    /// The archive links of the subscription documents of `scope`, read with `content`:
    /// to its newest page.
    pub(super) fn current_archive_links(
        &self,
        scope: &FeedScope,
        content: &FeedContent,
    ) -> ArchiveLinks {
        let pages = content.archive_pages(self.settings.feeds.max_items);
        ArchiveLinks {
            prev: (pages > 0).then(|| self.document_urls(scope, Some(pages))),
            ..ArchiveLinks::default()
        }
    }

    /// Forgets the rendered archive pages of `scope`, after it changed.
    pub(super) fn forget_archives(&self, scope: &FeedScope) {
        let prefix = format!("{}/archive/", scope.path_segment());
        if let Ok(mut cached) = self.archives.documents.lock() {
            let Cached {
                by_path,
                bytes,
                forgets,
                ..
            } = &mut *cached;
            by_path.retain(|path, (file, _)| {
                let keep = !path.starts_with(&prefix);
                if !keep {
                    *bytes -= file.held_bytes();
                }
                keep
            });
            *forgets += 1;
        }
    }

    /// The archive document at `path`, if there is one.
    pub(super) async fn archive_document(
        &self,
        path: &str,
    ) -> Result<Option<Arc<FeedFile>>, PublicationError> {
        let Some((segment, page, format)) = parse(path) else {
            return Ok(None);
        };
        let forgets = match self.archives.documents.lock() {
            Ok(cached) => match cached.by_path.get(path) {
                Some((found, fresh_until)) if std::time::Instant::now() < *fresh_until => {
                    return Ok(Some(found.clone()));
                }
                // None, or kept past its lifetime: rendered again.
                _ => cached.forgets,
            },
            Err(_) => u64::MAX,
        };
        let Some(scope) = self.scope_at(segment).await? else {
            return Ok(None);
        };
        let size = self.settings.feeds.max_items;
        let now = Utc::now();
        let content = self.store.archive_page(&scope, page, size, now).await?;
        if page > content.pages {
            return Ok(None);
        }
        // The page's Last-Modified, to the second; its own date is the instant in it.
        let updated = content
            .last_change
            .unwrap_or(super::NEVER_CHANGED)
            .trunc_subsecs(0);
        let mut meta = self.meta(
            &scope,
            super::regeneration::to_the_instant(updated, content.last_change),
            Vec::new(),
        );
        let urls = self.document_urls(&scope, Some(page));
        // The page number only: a total would change every page when a new one fills.
        meta.title = format!("{} · 存档 {page}", meta.title);
        meta.rss_url = urls.rss.clone();
        meta.atom_id = self.atom_id(&urls.atom);
        meta.atom_url = urls.atom.clone();
        meta.json_url = urls.json.clone();
        meta.archive = ArchiveLinks {
            is_archive: true,
            current: Some(self.document_urls(&scope, None)),
            prev: (page > 1).then(|| self.document_urls(&scope, Some(page - 1))),
            next: (page < content.pages).then(|| self.document_urls(&scope, Some(page + 1))),
        };
        let lifetime = page_max_age(
            page,
            content.pages,
            content.pending,
            now - updated,
            self.settings.feeds.max_age_of(&scope),
        );
        let links = Links {
            self_url: urls.get(format).to_owned(),
            hub_url: None,
        };
        let bytes = format.render(&meta, &content.articles);
        let mut file = FeedFile::new(bytes, format.content_type(), updated, lifetime, &links);
        file.expires = first_expiry(&content.articles);
        // Kept rendered for its lifetime, but no longer than until its first article
        // expires: rendered again then, without it.
        let kept_for = file.max_age_at(now);
        if let Ok(mut cached) = self.archives.documents.lock() {
            file.shares_its_second = match cached.dated.get(path) {
                Some((date, etag, shares)) if *date == updated => *etag != file.etag || *shares,
                _ => false,
            };
            if cached.dated.len() >= DATED_LIMIT {
                cached.dated.clear();
            }
            let dated = (updated, file.etag.clone(), file.shares_its_second);
            cached.dated.insert(path.to_owned(), dated);
        }
        let file = Arc::new(file);
        if let Ok(mut cached) = self.archives.documents.lock()
            && cached.forgets == forgets
        {
            let size = file.held_bytes();
            if cached.by_path.len() >= CACHE_LIMIT || cached.bytes + size > CACHE_BYTES {
                cached.by_path.clear();
                cached.bytes = 0;
            }
            cached.bytes += size;
            let fresh_until =
                std::time::Instant::now() + std::time::Duration::from_secs(kept_for.into());
            if let Some((replaced, _)) = cached
                .by_path
                .insert(path.to_owned(), (file.clone(), fresh_until))
            {
                cached.bytes -= replaced.held_bytes();
            }
        }
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_page_before_the_newest_is_cached_for_a_tenth_of_its_age_within_max_age_and_a_day() {
        let cases = [
            (TimeDelta::zero(), 60, 60),
            (TimeDelta::seconds(-5), 60, 60),
            (TimeDelta::hours(-1), 60, 60),
            (TimeDelta::MIN, 60, 60),
            (TimeDelta::minutes(5), 60, 60),
            (TimeDelta::hours(1), 60, 360),
            (TimeDelta::hours(1), 7, 360),
            (TimeDelta::days(1), 60, 8_640),
            (TimeDelta::days(10), 60, 86_400),
            (TimeDelta::days(3_650), 60, 86_400),
            (TimeDelta::MAX, 60, 86_400),
            (TimeDelta::hours(1), 7_200, 7_200),
            (TimeDelta::hours(1), 200_000, 86_400),
        ];
        for (since, feed, expected) in cases {
            assert_eq!(
                page_max_age(2, 3, false, since, feed),
                expected,
                "{since} {feed}"
            );
            // The newest page, and a page still to gain an article, however old.
            assert_eq!(
                page_max_age(3, 3, false, since, feed),
                feed,
                "{since} {feed}"
            );
            assert_eq!(
                page_max_age(2, 3, true, since, feed),
                feed,
                "{since} {feed}"
            );
        }
    }
}
