//! Articles a feed read has already decoded, kept for the next regeneration.
//!
//! A burst of publishes regenerates the same feeds again and again, and each time all but
//! a few of the articles a feed shows are the ones it showed the time before. Reading them
//! whole walks every body's overflow pages and decodes every column again; with this cache
//! a feed's read asks the database only which articles it shows and when each last changed,
//! and fetches whole rows just for those it has not seen in that version.
//!
//! An entry is found by the row's key (SQLite's rowid, PostgreSQL's partner and article
//! ids) and is the right one only if the article's change time and GUID are those the read
//! just found: every write of an article moves its change time, so a stale entry is never
//! returned, only replaced. The cache holds at most about its budget of bytes, in two
//! generations: when the newer one fills half the budget, the older is dropped and the
//! newer takes its place, so what the feeds read lately stays.

use crate::domain::Article;
use crate::locks::lock;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Bytes of decoded articles (as [`weight`] counts them) each store keeps for the feeds'
/// next reads.
pub(super) const FEED_CACHE_BYTES: usize = 24 << 20;

/// Decoded articles by row key `K`, within a budget of bytes.
#[derive(Debug)]
pub(super) struct ArticleCache<K> {
    budget: usize,
    generations: Mutex<Generations<K>>,
    /// How many articles were offered to the cache: the rows feed reads fetched whole.
    #[cfg(test)]
    offered: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct Generations<K> {
    newer: HashMap<K, Arc<Article>>,
    older: HashMap<K, Arc<Article>>,
    /// Bytes held by `newer`, as [`weight`] counts them.
    newer_bytes: usize,
}

impl<K> Default for Generations<K> {
    fn default() -> Self {
        Self {
            newer: HashMap::new(),
            older: HashMap::new(),
            newer_bytes: 0,
        }
    }
}

impl<K: Eq + Hash + Clone> ArticleCache<K> {
    /// An empty cache holding about `budget` bytes of articles at most.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            generations: Mutex::default(),
            #[cfg(test)]
            offered: Default::default(),
        }
    }

    /// The article of row `key` if it is the one with this GUID that last changed at
    /// `change_time`.
    pub(super) fn get(
        &self,
        key: &K,
        change_time: DateTime<Utc>,
        guid: &str,
    ) -> Option<Arc<Article>> {
        let is_it = |a: &Arc<Article>| a.change_time == change_time && a.guid == guid;
        let mut g = lock(&self.generations);
        match g.newer.get(key) {
            Some(a) if is_it(a) => Some(Arc::clone(a)),
            Some(_) => None,
            None => {
                let older = g.older.remove(key).filter(is_it)?;
                g.keep(key.clone(), Arc::clone(&older), self.budget);
                Some(older)
            }
        }
    }

    /// Keeps `article`, read from row `key`, in place of an older version of it. An article
    /// heavier than a quarter of the budget is not kept: it would push out most others.
    pub(super) fn insert(&self, key: K, article: Arc<Article>) {
        #[cfg(test)]
        self.offered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if weight(&article) > self.budget / 4 {
            return;
        }
        let mut g = lock(&self.generations);
        // A read on an older snapshot may come after one on a newer: keep the newer.
        let held = g.newer.get(&key).or_else(|| g.older.get(&key));
        if held.is_some_and(|a| a.guid == article.guid && a.change_time > article.change_time) {
            return;
        }
        g.older.remove(&key);
        g.keep(key, article, self.budget);
    }

    /// How many rows feed reads have fetched whole and offered to the cache.
    #[cfg(test)]
    pub(super) fn offered(&self) -> usize {
        self.offered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many articles the cache holds, and about how many bytes.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let g = lock(&self.generations);
        let older: usize = g.older.values().map(|a| weight(a)).sum();
        (g.newer.len() + g.older.len(), g.newer_bytes + older)
    }
}

/// A feed's key as its read found it: the row's key, and the change time and GUID of the
/// version the feed shows.
pub(super) type FeedKey<K> = (K, DateTime<Utc>, String);

/// A feed's articles being gathered: those the cache held in the versions the keys name,
/// and the places of those it lacked.
pub(super) struct Gathering<K> {
    keys: Vec<FeedKey<K>>,
    articles: Vec<Option<Arc<Article>>>,
    missing: HashMap<K, usize>,
}

/// What became of an article fetched for a [`Gathering`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Placed {
    /// The version its key named: placed and kept in the cache.
    Kept,
    /// Another version than its key named: placed, not kept.
    OtherVersion,
    /// No missing article has its key: dropped.
    NotMissing,
}

impl<K: Eq + Hash + Clone> ArticleCache<K> {
    /// Starts gathering the articles of `keys`, in their order, from the cache.
    pub(super) fn gather(&self, keys: Vec<FeedKey<K>>) -> Gathering<K> {
        let articles: Vec<_> = (keys.iter())
            .map(|(key, changed, guid)| self.get(key, *changed, guid))
            .collect();
        let missing = (keys.iter().zip(&articles).enumerate())
            .filter(|(_, (_, cached))| cached.is_none())
            .map(|(at, ((key, ..), _))| (key.clone(), at))
            .collect();
        Gathering {
            keys,
            articles,
            missing,
        }
    }
}

impl<K: Eq + Hash + Clone> Gathering<K> {
    /// The keys of the articles the cache lacked, whose rows must be fetched.
    pub(super) fn missing(&self) -> impl Iterator<Item = &K> {
        self.missing.keys()
    }

    /// Places the fetched `article` of row `key`, and keeps it in `cache` when it is the
    /// version its key named.
    pub(super) fn place(&mut self, cache: &ArticleCache<K>, key: &K, article: Article) -> Placed {
        let Some(&at) = self.missing.get(key) else {
            return Placed::NotMissing;
        };
        let article = Arc::new(article);
        let (_, changed, guid) = &self.keys[at];
        let placed = if article.change_time == *changed && article.guid == *guid {
            cache.insert(key.clone(), Arc::clone(&article));
            Placed::Kept
        } else {
            Placed::OtherVersion
        };
        self.articles[at] = Some(article);
        placed
    }

    /// The feed's articles in order; `None` while some are still missing.
    pub(super) fn finish(self) -> Option<Vec<Arc<Article>>> {
        self.articles.into_iter().collect()
    }
}

impl<K: Eq + Hash> Generations<K> {
    fn keep(&mut self, key: K, article: Arc<Article>, budget: usize) {
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
    let (bytes, items) = article.text_bytes();
    512 + bytes + 48 * items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use chrono::TimeDelta;

    #[test]
    fn an_article_is_found_only_in_the_version_it_was_kept_in() {
        let cache = ArticleCache::<i64>::new(1 << 20);
        let article = fixtures::articles().remove(0);
        let (changed, guid) = (article.change_time, article.guid.clone());
        assert_eq!(cache.get(&7, changed, &guid), None);
        cache.insert(7, Arc::new(article.clone()));
        assert_eq!(
            cache.get(&7, changed, &guid),
            Some(Arc::new(article.clone()))
        );
        let later = changed + TimeDelta::nanoseconds(1);
        assert_eq!(cache.get(&7, later, &guid), None, "a later write");
        assert_eq!(
            cache.get(&7, changed, "tag:other"),
            None,
            "another article's row"
        );
        assert_eq!(cache.get(&8, changed, &guid), None, "another row");
        let edited = Article {
            change_time: later,
            ..article
        };
        cache.insert(7, Arc::new(edited.clone()));
        assert_eq!(cache.get(&7, later, &guid), Some(Arc::new(edited)));
        assert_eq!(cache.get(&7, changed, &guid), None, "replaced");
        assert_eq!(cache.size().0, 1);
    }

    #[test]
    fn the_cache_keeps_to_its_budget_and_keeps_what_was_read_lately() {
        let article = fixtures::articles().remove(0);
        let one = weight(&article);
        let cache = ArticleCache::<i64>::new(one * 10);
        for key in 0..100 {
            cache.insert(key, Arc::new(article.clone()));
            // The first article is read after every insert: it is never dropped.
            assert!(
                cache.get(&0, article.change_time, &article.guid).is_some(),
                "{key}"
            );
            let (count, bytes) = cache.size();
            assert!(bytes <= one * 10, "{key}: {count} articles, {bytes} bytes");
        }
        // The oldest of those not read again are gone.
        assert_eq!(cache.get(&1, article.change_time, &article.guid), None);
        assert!(cache.get(&99, article.change_time, &article.guid).is_some());
    }

    #[test]
    fn an_article_heavier_than_a_quarter_of_the_budget_is_not_kept() {
        let mut heavy = fixtures::articles().remove(0);
        let light = heavy.clone();
        heavy.content.content_html = "<p>乡村振兴</p>".repeat(2_000);
        let cache = ArticleCache::<i64>::new(weight(&heavy) * 4 - 1);
        cache.insert(1, Arc::new(light.clone()));
        cache.insert(2, Arc::new(heavy.clone()));
        assert_eq!(cache.get(&2, heavy.change_time, &heavy.guid), None);
        assert_eq!(
            cache.get(&1, light.change_time, &light.guid),
            Some(Arc::new(light))
        );
        assert_eq!(cache.offered(), 2);
    }

    #[test]
    fn an_older_version_read_late_does_not_replace_a_newer_one() {
        let older = fixtures::articles().remove(0);
        let newer = Article {
            change_time: older.change_time + TimeDelta::seconds(1),
            ..older.clone()
        };
        let cache = ArticleCache::<i64>::new(1 << 20);
        cache.insert(3, Arc::new(newer.clone()));
        cache.insert(3, Arc::new(older.clone()));
        assert_eq!(
            cache.get(&3, newer.change_time, &newer.guid),
            Some(Arc::new(newer))
        );
        assert_eq!(cache.get(&3, older.change_time, &older.guid), None);
    }

    #[test]
    fn a_hit_in_the_older_generation_is_kept_and_a_stale_one_dropped() {
        let article = fixtures::articles().remove(0);
        let one = weight(&article);
        // Room for two articles per generation.
        let cache = ArticleCache::<i64>::new(one * 5);
        for key in 0..4 {
            cache.insert(key, Arc::new(article.clone()));
        }
        // Keys 0 and 1 went to the older generation when key 2 came.
        let later = article.change_time + TimeDelta::nanoseconds(1);
        assert_eq!(cache.get(&0, later, &article.guid), None, "stale");
        assert_eq!(cache.size().0, 3, "the stale entry is dropped");
        assert!(cache.get(&1, article.change_time, &article.guid).is_some());
        // Key 1 moved to the newer generation, pushing keys 2 and 3 to the older one.
        for key in 1..4 {
            assert!(
                cache
                    .get(&key, article.change_time, &article.guid)
                    .is_some(),
                "{key}"
            );
        }
    }

    #[test]
    fn a_gathering_takes_the_cached_and_places_the_fetched_keeping_only_named_versions() {
        let cache = ArticleCache::new(1 << 20);
        let mut articles = fixtures::articles();
        let (first, second) = (articles.remove(0), articles.remove(0));
        cache.insert(1, Arc::new(first.clone()));
        let key = |n: i64, a: &Article| (n, a.change_time, a.guid.clone());
        let mut gathering = cache.gather(vec![key(1, &first), key(2, &second)]);
        assert_eq!(gathering.missing().collect::<Vec<_>>(), [&2]);
        assert_eq!(
            gathering.place(&cache, &9, second.clone()),
            Placed::NotMissing
        );
        let later = Article {
            change_time: second.change_time + TimeDelta::nanoseconds(1),
            ..second.clone()
        };
        assert_eq!(
            gathering.place(&cache, &2, later.clone()),
            Placed::OtherVersion
        );
        assert_eq!(
            cache.get(&2, later.change_time, &later.guid),
            None,
            "not kept"
        );
        let gathered = gathering.finish().unwrap();
        assert_eq!(gathered, [Arc::new(first.clone()), Arc::new(later)]);

        let mut again = cache.gather(vec![key(1, &first), key(2, &second)]);
        assert!(cache.gather(vec![key(1, &first)]).finish().is_some());
        assert_eq!(again.place(&cache, &2, second.clone()), Placed::Kept);
        assert_eq!(
            cache.get(&2, second.change_time, &second.guid),
            Some(Arc::new(second))
        );
        assert!(again.finish().is_some());
        let lacking = cache.gather(vec![(3, first.change_time, first.guid.clone())]);
        assert_eq!(lacking.finish(), None, "an article still missing");
    }
}
