//! Articles a feed read has already decoded, kept for the next regeneration.
//!
//! A burst of publishes regenerates the same feeds again and again, and each time all but
//! a few of the articles a feed shows are the ones it showed the time before. Reading them
//! whole walks every body's overflow pages and decodes every column again; with this cache
//! a feed's read asks the database only which articles it shows and when each last changed,
//! and fetches whole rows just for those it has not seen in that version.
//!
//! An entry is found by the row's key and is the right one only if the article's change
//! time and GUID are those the read just found: every write of an article moves its change
//! time, so a stale entry is never returned, only replaced. The cache holds at most about
//! its budget of bytes, in two generations: when the newer one fills half the budget, the
//! older is dropped and the newer takes its place, so what the feeds read lately stays.

use crate::domain::Article;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Decoded articles by row key, within a budget of bytes.
#[derive(Debug)]
pub(super) struct ArticleCache {
    budget: usize,
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    newer: HashMap<i64, Arc<Article>>,
    older: HashMap<i64, Arc<Article>>,
    /// Bytes held by `newer`, as [`weight`] counts them.
    newer_bytes: usize,
}

impl ArticleCache {
    /// An empty cache holding about `budget` bytes of articles at most.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            generations: Mutex::default(),
        }
    }

    /// The article of row `key` if it is the one with this GUID that last changed at
    /// `change_time`.
    pub(super) fn get(&self, key: i64, change_time: DateTime<Utc>, guid: &str) -> Option<Article> {
        let is_it = |a: &Arc<Article>| a.change_time == change_time && a.guid == guid;
        let found = {
            let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
            match g.newer.get(&key) {
                Some(a) if is_it(a) => Some(Arc::clone(a)),
                Some(_) => None,
                None => {
                    let older = g.older.remove(&key).filter(is_it)?;
                    g.keep(key, Arc::clone(&older), self.budget);
                    Some(older)
                }
            }
        };
        // Copied outside the lock: other feeds' reads go on meanwhile.
        found.map(|a| Article::clone(&a))
    }

    /// Keeps `article`, read from row `key`, replacing what the key held.
    pub(super) fn insert(&self, key: i64, article: Article) {
        let article = Arc::new(article);
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.older.remove(&key);
        g.keep(key, article, self.budget);
    }

    /// How many articles the cache holds, and about how many bytes.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let older: usize = g.older.values().map(|a| weight(a)).sum();
        (g.newer.len() + g.older.len(), g.newer_bytes + older)
    }
}

impl Generations {
    fn keep(&mut self, key: i64, article: Arc<Article>, budget: usize) {
        let bytes = weight(&article);
        if self.newer_bytes + bytes > budget / 2 {
            self.older = std::mem::take(&mut self.newer);
            self.newer_bytes = 0;
        }
        self.newer_bytes += bytes;
        if let Some(replaced) = self.newer.insert(key, article) {
            self.newer_bytes -= weight(&replaced);
        }
    }
}

/// About how many bytes of heap an article holds: its text and a fixed share for the
/// structure, its lists and the map's entry.
fn weight(article: &Article) -> usize {
    let c = &article.content;
    let lists = c.authors.iter().chain(&c.tags).map(|s| s.len() + 24);
    let media = c
        .media
        .iter()
        .map(|m| m.url.len() + m.mime_type.len() + m.caption.len() + 96);
    512 + article.guid.len()
        + article.id.as_str().len()
        + article.etag.len()
        + article.retract_reason.len()
        + c.title.len()
        + c.subtitle.len()
        + c.kicker.len()
        + c.summary.len()
        + c.content_html.len()
        + c.content_text.as_ref().map_or(0, String::len)
        + c.canonical_url.as_ref().map_or(0, String::len)
        + c.language.as_ref().map_or(0, String::len)
        + c.section.as_str().len()
        + lists.sum::<usize>()
        + media.sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use chrono::TimeDelta;

    #[test]
    fn an_article_is_found_only_in_the_version_it_was_kept_in() {
        let cache = ArticleCache::new(1 << 20);
        let article = fixtures::articles().remove(0);
        let (changed, guid) = (article.change_time, article.guid.clone());
        assert_eq!(cache.get(7, changed, &guid), None);
        cache.insert(7, article.clone());
        assert_eq!(cache.get(7, changed, &guid), Some(article.clone()));
        let later = changed + TimeDelta::nanoseconds(1);
        assert_eq!(cache.get(7, later, &guid), None, "a later write");
        assert_eq!(
            cache.get(7, changed, "tag:other"),
            None,
            "another article's row"
        );
        assert_eq!(cache.get(8, changed, &guid), None, "another row");
        let edited = Article {
            change_time: later,
            ..article
        };
        cache.insert(7, edited.clone());
        assert_eq!(cache.get(7, later, &guid), Some(edited));
        assert_eq!(cache.get(7, changed, &guid), None, "replaced");
        assert_eq!(cache.size().0, 1);
    }

    #[test]
    fn the_cache_keeps_to_its_budget_and_keeps_what_was_read_lately() {
        let article = fixtures::articles().remove(0);
        let one = weight(&article);
        let cache = ArticleCache::new(one * 10);
        for key in 0..100 {
            cache.insert(key, article.clone());
            // The first article is read after every insert: it is never dropped.
            assert!(
                cache.get(0, article.change_time, &article.guid).is_some(),
                "{key}"
            );
            let (count, bytes) = cache.size();
            assert!(bytes <= one * 10, "{key}: {count} articles, {bytes} bytes");
        }
        // The oldest of those not read again are gone.
        assert_eq!(cache.get(1, article.change_time, &article.guid), None);
        assert!(cache.get(99, article.change_time, &article.guid).is_some());
    }
}
