//! The HTML index: every section with its latest headlines and its three feeds, the
//! autodiscovery links, and the OPML list of every feed. Author and tag feeds, which may
//! be thousands, are in the OPML list only.

use crate::config::Settings;
use crate::domain::FeedScope;
use crate::locks::lock;
use crate::publication::{Compression, FeedFile, Headline, Links, Publication};
use crate::render::Format;
use crate::render::opml::{self, OpmlGroup};
use crate::storage::DocumentDate;
use arc_swap::ArcSwapOption;
use chrono::SubsecRound;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every feed scope with its title and description: `all` first, then the sections.
fn scopes(settings: &Settings) -> Vec<(FeedScope, String, String)> {
    let site = &settings.site;
    let mut scopes = vec![(
        FeedScope::All,
        "全部栏目 · All sections".to_owned(),
        site.description.clone(),
    )];
    scopes.extend(settings.sections.iter().map(|s| {
        (
            FeedScope::Section(s.slug.clone()),
            s.title.clone(),
            s.description.clone(),
        )
    }));
    scopes
}

/// Where a feed is, relative to the site's base URL.
fn feed_file(scope: &FeedScope, format: Format) -> String {
    format!("feeds/{}/{}", scope.path_segment(), format.file_name())
}

/// The path of a feed under the site's base path (`/news/` when it is served there).
fn feed_path(settings: &Settings, scope: &FeedScope, format: Format) -> String {
    format!(
        "{}{}",
        settings.site.base_url.path(),
        feed_file(scope, format)
    )
}

/// Renders the index page; `headlines` gives each feed's latest entries.
pub fn render(settings: &Settings, headlines: impl Fn(&FeedScope) -> Vec<Headline>) -> String {
    let site = &settings.site;
    let scopes = scopes(settings);
    let mut html = String::with_capacity(8192);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n",
        attr(&site.language),
        text(&site.title)
    );
    for (scope, title, _) in &scopes {
        for format in Format::ALL {
            let _ = writeln!(
                html,
                "<link rel=\"alternate\" type=\"{}\" title=\"{} · {} ({})\" href=\"{}\">",
                format.media_type(),
                attr(&site.title),
                attr(title),
                format.label(),
                attr(&feed_path(settings, scope, format))
            );
        }
    }
    let _ = write!(
        html,
        "<style>body{{font-family:system-ui,\"Noto Sans CJK SC\",sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.6}}\
         section{{border-bottom:1px solid #e5e5e5;padding:.5rem 0}}.feeds a{{margin-right:.75rem}}\
         time{{color:#666;font-size:.85rem;margin-left:.5rem}}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p>{}</p>\n\
         <p><a href=\"{}feeds.opml\">OPML</a> · 订阅全部栏目 / subscribe to every feed</p>\n",
        text(&site.title),
        text(&site.description),
        attr(site.base_url.path())
    );
    for (scope, title, description) in &scopes {
        let _ = write!(html, "<section>\n<h2>{}</h2>\n", text(title));
        if !description.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", text(description));
        }
        let latest = headlines(scope);
        if !latest.is_empty() {
            html.push_str("<ol class=\"headlines\">\n");
            for headline in latest {
                html.push_str("<li>");
                match &headline.url {
                    Some(url) => {
                        let _ = write!(
                            html,
                            "<a href=\"{}\">{}</a>",
                            attr(url),
                            text(&headline.title)
                        );
                    }
                    None => html.push_str(&text(&headline.title)),
                }
                let _ = writeln!(
                    html,
                    "<time datetime=\"{}\">{}</time></li>",
                    headline
                        .published
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                    headline.published.format("%Y-%m-%d %H:%M")
                );
            }
            html.push_str("</ol>\n");
        }
        html.push_str("<p class=\"feeds\">");
        for format in Format::ALL {
            let _ = write!(
                html,
                "<a href=\"{}\">{}</a>",
                attr(&feed_path(settings, scope, format)),
                format.label()
            );
        }
        html.push_str("</p>\n</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// The date of a version of a derived document: the one the store records for it
/// ([`Publication::date_document`]), never before `previous` (the version this process
/// served before, which a replica that recorded a newer one meanwhile may not have seen);
/// and the date of the version it is in place of, when they share a second. If the store
/// cannot be reached, dated by this process alone: as `previous` if it is the same bytes,
/// else now.
async fn date_of(
    publication: &Publication,
    name: &str,
    etag: &str,
    previous: Option<&FeedFile>,
) -> (
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    let same = previous.filter(|previous| previous.etag == etag);
    let other = previous.filter(|previous| previous.etag != etag);
    // A version that shared the second of the one before it still does.
    let shared = same
        .filter(|same| same.shares_its_second)
        .map(|same| same.last_modified);
    let recorded = match publication.date_document(name, etag).await {
        Ok(recorded) => recorded,
        Err(error) => {
            tracing::warn!(%error, document = name, "cannot record the date of a version; dated by this process");
            DocumentDate {
                date: same.map_or_else(
                    || chrono::Utc::now().trunc_subsecs(0),
                    |same| same.last_modified,
                ),
                replaced: None,
            }
        }
    };
    let date = previous.map_or(recorded.date, |previous| {
        previous.last_modified.max(recorded.date)
    });
    let replaced = [
        recorded.replaced,
        other.map(|other| other.last_modified),
        shared,
    ]
    .into_iter()
    .flatten()
    .find(|&replaced| replaced == date);
    (date, replaced)
}

/// A document built from what a publication shows (the index page from its headlines, the
/// OPML list from its author and tag feeds), served like a feed's: compressed codings, a
/// strong ETag, a date kept while it comes out the same, conditional GET. It is built again
/// only when the count of changes it is keyed on has moved, on the blocking pool (a list of
/// thousands of names is megabytes to compress, and brotli's full level takes milliseconds
/// even on a page), one build at a time.
struct Derived {
    /// The name its versions are dated under in the store.
    name: &'static str,
    content_type: &'static str,
    max_age: u32,
    self_url: String,
    /// The document built last and the count of changes it was built from, read without a
    /// lock.
    last: Arc<ArcSwapOption<Built>>,
    /// Held while a document is built.
    building: Arc<tokio::sync::Mutex<()>>,
    /// The count whose build failed last, and when: not tried again for [`Derived::pause`],
    /// so that a build that keeps failing does not run once per request.
    failed: Arc<std::sync::Mutex<Option<(u64, Instant)>>>,
    pause: Duration,
}

/// How long a build that failed is not tried again for the same count.
const FAILED_BUILD_PAUSE: Duration = Duration::from_secs(1);

/// The count of changes a document was built from, and the document.
type Built = (u64, Arc<FeedFile>);

impl Derived {
    fn new(name: &'static str, content_type: &'static str, max_age: u32, self_url: String) -> Self {
        Self {
            name,
            content_type,
            max_age,
            self_url,
            last: Arc::new(ArcSwapOption::empty()),
            building: Arc::new(tokio::sync::Mutex::new(())),
            failed: Arc::default(),
            pause: FAILED_BUILD_PAUSE,
        }
    }

    /// Whether the build for `changes` failed less than [`Derived::pause`] ago.
    fn failed_lately(&self, changes: u64) -> bool {
        let failed = lock(&self.failed);
        failed.is_some_and(|(count, at)| count == changes && at.elapsed() < self.pause)
    }

    /// The document as of `changes()`: the one built last if the count is the same, else
    /// the text of the function `read()` returns (which reads what the text is built from,
    /// after the count: a change in between only builds the document once more), dated as
    /// the store records it (see [`date_of`]). While another request builds it, the one
    /// built last, as a cache serves a stale copy while it fetches the next: a request
    /// never waits for a build it did not start, but for the first. If building it fails,
    /// the one built last; `None` if there is none; and the same for [`Derived::pause`]
    /// before that count is built again.
    async fn get<Text>(
        &self,
        publication: &Publication,
        changes: impl Fn() -> u64,
        read: impl FnOnce() -> Text,
    ) -> Option<Arc<FeedFile>>
    where
        Text: FnOnce() -> String + Send + 'static,
    {
        let current = |last: &Option<Arc<Built>>, changes: u64| {
            last.as_ref()
                .filter(|built| built.0 == changes)
                .map(|built| built.1.clone())
        };
        let last = self.last.load_full();
        if let Some(file) = current(&last, changes()) {
            return Some(file);
        }
        if self.failed_lately(changes()) {
            return last.map(|built| built.1.clone());
        }
        let building = match (self.building.clone().try_lock_owned(), &last) {
            (Ok(building), _) => building,
            (Err(_), Some(last)) => return Some(last.1.clone()),
            (Err(_), None) => self.building.clone().lock_owned().await,
        };
        // Built by the request that held the lock, maybe.
        let changes = changes();
        let last = self.last.load_full();
        if let Some(file) = current(&last, changes) {
            return Some(file);
        }
        let text = read();
        let previous = last.map(|built| built.1.clone());
        let (name, content_type, max_age) = (self.name, self.content_type, self.max_age);
        let links = Links {
            self_url: self.self_url.clone(),
            hub_url: None,
        };
        let (replaced, publication) = (previous.clone(), publication.clone());
        // Built, dated and kept by a task of its own, holding the lock: a request that goes
        // away meanwhile loses nothing, and the next finds the document built.
        let build = async move {
            let now = chrono::Utc::now().trunc_subsecs(0);
            let links_now = links.clone();
            let file = tokio::task::spawn_blocking(move || {
                FeedFile::uncompressed(text().into_bytes(), content_type, now, max_age, &links_now)
            })
            .await
            .ok()?;
            // Dated by the store even when the text is the one this process built last (what
            // it shows changed and changed back): another process may have recorded other
            // bytes since, which clients may hold.
            let (date, in_place_of) =
                date_of(&publication, name, &file.etag, replaced.as_deref()).await;
            if let Some(same) = replaced.filter(|previous| {
                previous.etag == file.etag
                    && previous.last_modified == date
                    && previous.shares_its_second == (in_place_of == Some(date))
            }) {
                return Some(same);
            }
            tokio::task::spawn_blocking(move || {
                let file = file.redated(date, max_age, &links);
                let codings = file.compress(Compression::Full);
                Arc::new(file.with_codings(codings).in_place_of(in_place_of))
            })
            .await
            .ok()
        };
        let (kept, failed) = (self.last.clone(), self.failed.clone());
        let built = tokio::spawn(async move {
            let Some(file) = build.await else {
                *lock(&failed) = Some((changes, Instant::now()));
                return None;
            };
            kept.store(Some(Arc::new((changes, file.clone()))));
            drop(building);
            Some(file)
        })
        .await
        .ok()
        .flatten();
        // The count stays as it was: a request after the pause tries again.
        built.or(previous)
    }
}

/// The index page, built again when a feed's headlines change.
pub struct IndexPage {
    settings: Arc<Settings>,
    page: Derived,
}

impl IndexPage {
    pub fn new(settings: Arc<Settings>) -> Self {
        let page = Derived::new(
            "index.html",
            "text/html; charset=utf-8",
            60,
            settings.site.base_url.to_string(),
        );
        Self { settings, page }
    }

    /// The page as `publication`'s headlines are now (see [`Derived::get`]); `None` if none
    /// could be built yet.
    pub async fn get(&self, publication: &Publication) -> Option<Arc<FeedFile>> {
        self.page
            .get(
                publication,
                || publication.headline_changes(),
                || {
                    let settings = self.settings.clone();
                    let headlines: HashMap<FeedScope, Arc<[Headline]>> = scopes(&settings)
                        .into_iter()
                        .map(|(scope, _, _)| {
                            let shown = publication.headlines(&scope);
                            (scope, shown)
                        })
                        .collect();
                    move || {
                        render(&settings, |scope| {
                            headlines.get(scope).map_or_else(Vec::new, |h| h.to_vec())
                        })
                    }
                },
            )
            .await
    }
}

/// The OPML list, built again when the author and tag feeds it lists change.
pub struct OpmlDocument {
    settings: Arc<Settings>,
    list: Derived,
}

impl OpmlDocument {
    pub fn new(settings: Arc<Settings>) -> Self {
        let list = Derived::new(
            "feeds.opml",
            "text/x-opml; charset=utf-8",
            300,
            settings.site.url("feeds.opml"),
        );
        Self { settings, list }
    }

    /// The document listing the named feeds `publication` serves (see [`Derived::get`]);
    /// `None` if none could be built yet.
    pub async fn get(&self, publication: &Publication) -> Option<Arc<FeedFile>> {
        self.list
            .get(
                publication,
                || publication.named_changes(),
                || {
                    let named = publication.named_scopes();
                    let settings = self.settings.clone();
                    move || opml(&settings, &named)
                },
            )
            .await
    }
}

/// The format the OPML list gives each feed in: one per feed, so that a reader importing
/// the list subscribes to each once (readers tell entries apart within a feed, not across
/// the formats of one); Atom, which carries the most. The index page links every format
/// of every section (and names them for autodiscovery), and the feed URLs differ only by
/// their file name.
const OPML_FORMAT: Format = Format::Atom;

/// The OPML list of every feed, once each ([`OPML_FORMAT`]): `all` and the sections, then
/// the feeds of the authors and of the tags in `named`, each kind under an outline of its
/// own, in the order given.
pub fn opml(settings: &Settings, named: &[FeedScope]) -> String {
    let site = &settings.site;
    let mut groups: Vec<OpmlGroup> = scopes(settings)
        .into_iter()
        .map(|(scope, title, _)| OpmlGroup {
            feeds: vec![(
                format!("{} · {title}", site.title),
                site.url(&feed_file(&scope, OPML_FORMAT)),
            )],
            title,
        })
        .collect();
    for (title, kind, author) in [
        ("作者 · Authors", "作者", true),
        ("标签 · Tags", "标签", false),
    ] {
        let mut feeds = Vec::new();
        for scope in named {
            let named = match scope {
                FeedScope::Author(named) if author => named,
                FeedScope::Tag(named) if !author => named,
                _ => continue,
            };
            feeds.push((
                format!("{} · {kind}：{}", site.title, named.name()),
                site.url(&feed_file(scope, OPML_FORMAT)),
            ));
        }
        if !feeds.is_empty() {
            groups.push(OpmlGroup {
                title: title.to_owned(),
                feeds,
            });
        }
    }
    opml::render(&site.title, site.base_url.as_str(), &groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publication on a store of its own, in `dir`.
    async fn publication(dir: &std::path::Path) -> Publication {
        let settings = Settings::isolated_sample(dir).unwrap();
        let store = crate::storage::open(&settings.server).await.unwrap();
        let folder = crate::app::lock_feeds_folder(&settings.server).unwrap();
        let (publication, _scheduler) = Publication::start(
            store,
            Arc::new(settings),
            crate::health::Health::new(),
            folder,
        )
        .await
        .unwrap();
        publication
    }

    fn derived(name: &'static str) -> Derived {
        Derived {
            pause: Duration::from_millis(100),
            ..Derived::new(name, "text/plain", 60, "https://example.com/".into())
        }
    }

    /// A document is built once per count of changes, however many ask for it; a new count
    /// with the same text keeps the document (its ETag and date), a new text replaces it.
    #[tokio::test]
    async fn a_derived_document_is_built_again_only_when_its_count_moves() {
        let dir = tempfile::tempdir().unwrap();
        let publication = &publication(dir.path()).await;
        let document = derived("test.txt");
        let reads = &std::sync::atomic::AtomicUsize::new(0);
        let start = chrono::Utc::now().trunc_subsecs(0);
        let get = |count: u64, text: &'static str| {
            document.get(
                publication,
                move || count,
                move || {
                    reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    move || text.to_owned()
                },
            )
        };
        let read = || reads.load(std::sync::atomic::Ordering::SeqCst);
        // Asked for at once before it is built: built once, for all.
        let asked = tokio::join!(get(1, "一"), get(1, "一"), get(1, "一"));
        let first = asked.0.unwrap();
        for file in [asked.1, asked.2] {
            assert!(Arc::ptr_eq(&file.unwrap(), &first));
        }
        assert_eq!(read(), 1);
        assert!(
            (start..=chrono::Utc::now()).contains(&first.last_modified),
            "dated when first built"
        );
        assert!(Arc::ptr_eq(&get(1, "二").await.unwrap(), &first), "built");
        assert_eq!(read(), 1);

        let same = get(2, "一").await.unwrap();
        assert!(
            Arc::ptr_eq(&same, &first),
            "the same text, the same document"
        );
        assert_eq!(read(), 2);
        let changed = get(3, "二").await.unwrap();
        assert_ne!(changed.etag, first.etag);
        assert_eq!(&changed.bytes()[..], "二".as_bytes());
        assert!(changed.last_modified >= first.last_modified);
        assert_eq!(
            changed.shares_its_second,
            changed.last_modified == first.last_modified
        );
        assert!(changed.codings.is_some(), "compressed when built");

        // A build that fails leaves the last document served, and is tried again after a
        // pause, not at every request.
        let failed = document
            .get(
                publication,
                || 4,
                || || -> String { panic!("a build that fails") },
            )
            .await;
        assert!(Arc::ptr_eq(&failed.unwrap(), &changed));
        let reads_then = read();
        let paused = get(4, "三").await.unwrap();
        assert!(Arc::ptr_eq(&paused, &changed));
        assert_eq!(read(), reads_then, "not tried again at once");
        tokio::time::sleep(document.pause).await;
        let again = get(4, "三").await.unwrap();
        assert_eq!(&again.bytes()[..], "三".as_bytes());
        assert_eq!(read(), reads_then + 1);

        // While one request builds a document, another gets the last one without waiting.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let slow = document.get(
            publication,
            || 5,
            move || {
                move || {
                    held.recv().expect("released");
                    "五".to_owned()
                }
            },
        );
        let meanwhile = async {
            let file = get(5, "六").await;
            release.send(()).expect("the build waits");
            file
        };
        let both = async { tokio::join!(slow, meanwhile) };
        let (slow, meanwhile) = tokio::time::timeout(std::time::Duration::from_secs(5), both)
            .await
            .expect("the second request waited for the build");
        assert!(Arc::ptr_eq(&meanwhile.unwrap(), &again));
        assert_eq!(&slow.unwrap().bytes()[..], "五".as_bytes());
        assert_eq!(read(), 4, "the second request read nothing");
    }

    /// `document` as of count `count`, where its text is `text`.
    async fn built(
        publication: &Publication,
        document: &Derived,
        count: u64,
        text: &'static str,
    ) -> Arc<FeedFile> {
        document
            .get(publication, move || count, move || move || text.to_owned())
            .await
            .unwrap()
    }

    /// `later` is dated after `earlier`, or shares its second and so is never answered 304
    /// to a client holding `earlier`.
    fn assert_dated_after(later: &FeedFile, earlier: &FeedFile) {
        assert!(
            later.last_modified > earlier.last_modified
                || (later.last_modified == earlier.last_modified && later.shares_its_second),
            "{} after {}",
            later.last_modified,
            earlier.last_modified
        );
    }

    /// A version is dated as the store records it: the same bytes alike by a document built
    /// again from nothing (after a restart, on another replica), other bytes never before
    /// the version they replace (or sharing its second, so that no client holding that one
    /// is told it is current).
    #[tokio::test]
    async fn a_derived_documents_date_is_the_one_its_store_records() {
        let dir = tempfile::tempdir().unwrap();
        let publication = &publication(dir.path()).await;
        let get = async |document: &Derived, count: u64, text: &'static str| {
            built(publication, document, count, text).await
        };
        let first = get(&derived("test.txt"), 1, "一").await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // Built again from nothing, a second later: the same bytes, the same date.
        let again = get(&derived("test.txt"), 1, "一").await;
        assert_eq!(again.etag, first.etag);
        assert_eq!(again.last_modified, first.last_modified);
        assert!(!again.shares_its_second);
        // Another document is dated apart.
        let other = get(&derived("other.txt"), 1, "一").await;
        assert!(other.last_modified > first.last_modified);
        // Other bytes built from nothing: after the version recorded, or sharing its second.
        let changed = get(&derived("test.txt"), 1, "二").await;
        assert!(
            changed.last_modified > first.last_modified,
            "a second later"
        );
        let back = get(&derived("test.txt"), 1, "一").await;
        assert_ne!(back.etag, changed.etag);
        assert_dated_after(&back, &changed);
    }

    /// Bytes this process built before are dated by the store too: if another process
    /// recorded other bytes since, which clients may hold, the version it builds again is
    /// dated after them (or shares their second), never answered 304 to their holders.
    #[tokio::test]
    async fn the_same_bytes_again_are_dated_after_what_another_process_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let publication = &publication(dir.path()).await;
        let (one, two) = (derived("test.txt"), derived("test.txt"));
        let get = async |document: &Derived, count: u64, text: &'static str| {
            built(publication, document, count, text).await
        };
        let a = get(&one, 1, "甲").await;
        assert_eq!(get(&two, 1, "甲").await.last_modified, a.last_modified);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let b = get(&one, 2, "乙").await;
        assert!(b.last_modified > a.last_modified);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let again = get(&two, 2, "甲").await;
        assert_eq!(again.etag, a.etag);
        assert_dated_after(&again, &b);
        // And the first process, building the same bytes, gets the same date.
        let agreed = get(&one, 3, "甲").await;
        assert_eq!(agreed.last_modified, again.last_modified);
        assert_eq!(agreed.shares_its_second, again.shares_its_second);
    }

    /// A version built within the second of the one it replaced shares that second in
    /// every process serving it, not only in the one that built it first: no process
    /// answers 304 by date to a client holding the version replaced.
    #[tokio::test]
    async fn a_version_sharing_a_second_shares_it_in_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let publication = &publication(dir.path()).await;
        let (one, two) = (derived("test.txt"), derived("test.txt"));
        const TEXTS: [[&str; 2]; 3] = [["甲", "乙"], ["丙", "丁"], ["戊", "己"]];
        let mut shared = None;
        for (attempt, [replaced, text]) in (0..).zip(TEXTS) {
            // From the start of a second, so that both versions fall within it.
            let into_second = chrono::Utc::now().timestamp_subsec_nanos().min(999_999_999);
            tokio::time::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second))).await;
            let before = built(publication, &one, 2 * attempt + 1, replaced).await;
            let version = built(publication, &one, 2 * attempt + 2, text).await;
            if version.last_modified == before.last_modified {
                shared = Some((attempt, text, version));
                break;
            }
        }
        let (attempt, text, version) = shared.expect("two versions built within one second");
        assert!(version.shares_its_second);
        let elsewhere = built(publication, &two, 2 * attempt + 2, text).await;
        assert_eq!(elsewhere.etag, version.etag);
        assert_eq!(elsewhere.last_modified, version.last_modified);
        assert!(elsewhere.shares_its_second, "known to the other process");
    }

    /// Behind a proxy that mounts the site under a path, every link of the index keeps it.
    #[test]
    fn links_keep_the_path_of_the_base_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::isolated_sample(dir.path()).unwrap();
        settings.site.base_url = "https://example.com/news/".parse().unwrap();
        let page = render(&settings, |_| Vec::new());
        let links: Vec<&str> = page
            .split("href=\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert!(links.len() > 10, "{page}");
        for link in links {
            assert!(link.starts_with("/news/feeds"), "{link}");
        }
        assert!(page.contains("href=\"/news/feeds.opml\""), "{page}");
        assert!(
            page.contains("href=\"/news/feeds/politics/rss.xml\""),
            "{page}"
        );
    }
}
