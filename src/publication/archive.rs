//! Archive pages (RFC 5005): a feed's history, `max_items` articles a page in the order
//! they were first stored, so a page keeps its entries. Only full pages are served: the
//! newest articles after them are in the current documents until they fill a page. Pages
//! are rendered on request and kept until their feed changes; the subscription documents
//! link to the newest page, each page to its neighbours.

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
/// `Cache-Control: max-age` of an archive page before the newest (its `next-archive` link
/// is there) none of whose articles is still to come into view: it no longer changes by
/// design (but for a retraction or a move).
const FULL_PAGE_MAX_AGE: u32 = 86_400;

/// Rendered archive documents by feed path, dropped when their feed changes.
#[derive(Default)]
pub(super) struct ArchiveCache {
    documents: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    by_path: HashMap<String, Arc<FeedFile>>,
    /// Bytes of every coding of the documents in `by_path`.
    bytes: usize,
    /// Counts the forgets: a page rendered from what the store held before one is not kept.
    forgets: u64,
}

/// `(feed folder, page, format)` of an archive path such as `politics/archive/3/atom.xml`.
fn parse(path: &str) -> Option<(&str, usize, Format)> {
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
        let shown = self
            .named
            .lock()
            .ok()
            .and_then(|named| named.iter().find(|s| s.path_segment() == segment).cloned());
        if shown.is_some() {
            return Ok(shown);
        }
        // Served, but showing no article now (its archive may still hold some), such as a
        // name whose only article was put back under embargo: any name an article carries,
        // whether or not it has come into view, to find the one of this folder.
        let named = self
            .store
            .named_scopes(chrono::DateTime::<Utc>::MAX_UTC)
            .await?;
        Ok(named
            .into_iter()
            .find(|scope| scope.path_segment() == segment))
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
            } = &mut *cached;
            by_path.retain(|path, file| {
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
                Some(found) => return Ok(Some(found.clone())),
                None => cached.forgets,
            },
            Err(_) => u64::MAX,
        };
        let Some(scope) = self.scope_at(segment).await? else {
            return Ok(None);
        };
        let size = self.settings.feeds.max_items;
        let content = self
            .store
            .archive_page(&scope, page, size, Utc::now())
            .await?;
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
        meta.atom_url = urls.atom.clone();
        meta.json_url = urls.json.clone();
        meta.archive = ArchiveLinks {
            is_archive: true,
            current: Some(self.document_urls(&scope, None)),
            prev: (page > 1).then(|| self.document_urls(&scope, Some(page - 1))),
            next: (page < content.pages).then(|| self.document_urls(&scope, Some(page + 1))),
        };
        // A page still to gain an article (scheduled, or under embargo) changes when it
        // comes into view: cached like the newest page until then.
        let max_age = if page < content.pages && !content.pending {
            FULL_PAGE_MAX_AGE
        } else {
            self.settings.feeds.max_age_of(&scope)
        };
        let links = Links {
            self_url: urls.get(format).to_owned(),
            hub_url: None,
        };
        let bytes = format.render(&meta, &content.articles);
        let file = Arc::new(FeedFile::new(
            bytes,
            format.content_type(),
            updated,
            max_age,
            &links,
        ));
        if let Ok(mut cached) = self.archives.documents.lock()
            && cached.forgets == forgets
        {
            let size = file.held_bytes();
            if cached.by_path.len() >= CACHE_LIMIT || cached.bytes + size > CACHE_BYTES {
                cached.by_path.clear();
                cached.bytes = 0;
            }
            cached.bytes += size;
            if let Some(replaced) = cached.by_path.insert(path.to_owned(), file.clone()) {
                cached.bytes -= replaced.held_bytes();
            }
        }
        Ok(Some(file))
    }
}
