//! The two steps of a regeneration (see `regeneration.rs`): a change is served as soon as
//! it is rendered, uncompressed, and its files and compressed codings follow; a scope whose
//! files cannot be written stays served from memory and is written once that works.

use super::document::FileStamp;
use super::regeneration::Swap;
use super::{Compression, Publication, Step};
use crate::config::Settings;
use crate::domain::{
    Actor, ArticleDraft, FeedScope, HtmlPolicy, PartnerName, Rights, SectionGrant, SectionSlug,
    TokenHash,
};
use crate::health::Health;
use crate::storage::{ArticleWrite, NewPartner, Store};
use chrono::{DateTime, SubsecRound, Utc};
use std::path::Path;
use std::sync::Arc;

async fn started(dir: &Path) -> (Arc<dyn Store>, Publication) {
    let (store, publication, _scheduler) = started_with_scheduler(dir).await;
    (store, publication)
}

/// A store and its publication on the sample settings as `change` leaves them.
async fn started_with(dir: &Path, change: impl Fn(&mut Settings)) -> (Arc<dyn Store>, Publication) {
    let mut settings = Settings::isolated_sample(dir).unwrap();
    change(&mut settings);
    let store = crate::storage::open(&settings.server).await.unwrap();
    let folder = crate::app::lock_feeds_folder(&settings.server).unwrap();
    let (publication, _scheduler) =
        Publication::start(store.clone(), Arc::new(settings), Health::new(), folder)
            .await
            .unwrap();
    (store, publication)
}

/// A store and its publication with the author and tag feeds found at start built, as the
/// scheduler builds them first.
async fn restarted(dir: &Path) -> (Arc<dyn Store>, Publication) {
    let (store, publication, mut scheduler) = started_with_scheduler(dir).await;
    while !scheduler.unbuilt.is_empty() {
        scheduler.build_unbuilt().await;
    }
    assert_eq!(publication.unbuilt(), 0);
    (store, publication)
}

/// A store and its publication, with the scheduler not running yet.
async fn started_with_scheduler(dir: &Path) -> (Arc<dyn Store>, Publication, super::Scheduler) {
    let settings = Settings::isolated_sample(dir).unwrap();
    let store = crate::storage::open(&settings.server).await.unwrap();
    let folder = crate::app::lock_feeds_folder(&settings.server).unwrap();
    let (publication, scheduler) =
        Publication::start(store.clone(), Arc::new(settings), Health::new(), folder)
            .await
            .unwrap();
    (store, publication, scheduler)
}

/// Stores a politics article titled `title`.
async fn publish(store: &Arc<dyn Store>, id: &str, title: &str) {
    publish_in(store, id, title, "politics").await;
}

/// Stores an article titled `title` in `section`.
async fn publish_in(store: &Arc<dyn Store>, id: &str, title: &str, section: &str) {
    publish_draft(
        store,
        ArticleDraft {
            id: id.into(),
            section: section.into(),
            title: title.into(),
            ..Default::default()
        },
    )
    .await;
}

/// Stores `draft` as the newsroom's, with a body and a publish time of now.
async fn publish_draft(store: &Arc<dyn Store>, draft: ArticleDraft) {
    publish_draft_at(store, draft, Utc::now()).await;
}

/// Stores `draft` as the newsroom's, with a body, published and written at `at`.
async fn publish_draft_at(store: &Arc<dyn Store>, draft: ArticleDraft, at: DateTime<Utc>) {
    let id = draft.id.clone();
    let name = PartnerName::parse("newsroom").unwrap();
    let partner = match store.partner_by_name(&name).await.unwrap() {
        Some(partner) => partner,
        None => store
            .add_partner(
                NewPartner {
                    name,
                    rights: Rights {
                        sections: SectionGrant::All,
                        embargoed: false,
                    },
                    token_hash: TokenHash("hash".into()),
                    token_prefix: "fp_".into(),
                },
                Utc::now(),
            )
            .await
            .unwrap(),
    };
    let valid = ArticleDraft {
        content_text: "右玉县农旅融合助力乡村振兴。".repeat(200),
        publish_time: Some(at),
        ..draft
    }
    .validate("", &HtmlPolicy::default())
    .unwrap();
    let write = ArticleWrite::new(
        valid.id,
        valid.content,
        format!("tag:example.com,2023:{id}"),
    );
    let actor = Actor {
        partner: partner.name.clone(),
        peer: None,
    };
    store.publish(partner.id, write, at, &actor).await.unwrap();
}

/// Regenerates `scope` as a publish does (served before it is compressed); none fails.
async fn regenerated(publication: &Publication, scope: FeedScope) {
    regenerated_together(publication, [scope]).await;
}

/// Regenerates `scopes` in one batch as a publish does; none fails.
async fn regenerated_together(
    publication: &Publication,
    scopes: impl IntoIterator<Item = FeedScope>,
) {
    let failed = publication
        .inner
        .regenerate_batch(scopes, Swap::Early)
        .await;
    assert!(failed.is_empty(), "{failed:?}");
}

/// A politics article `id` titled `title`, signed by `author`.
fn signed(id: &str, title: &str, author: &str) -> ArticleDraft {
    ArticleDraft {
        id: id.into(),
        section: "politics".into(),
        title: title.into(),
        authors: vec![author.into()],
        ..Default::default()
    }
}

fn politics() -> FeedScope {
    FeedScope::Section(SectionSlug::parse("politics").unwrap())
}

/// A write committed after another but dated before it (replicas take their times before
/// they wait for each other) changes what a feed shows with no later stored change: the
/// new document is dated by the versions it shows, as a process that never saw the
/// document in between dates it, not by the regeneration's clock, so that both serve the
/// same bytes.
#[tokio::test]
async fn a_change_stored_after_a_later_dated_one_is_dated_as_a_fresh_start_dates_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let latest = (Utc::now() - chrono::TimeDelta::minutes(5)).trunc_subsecs(0);
    let draft = |id: &str, title: &str| ArticleDraft {
        id: id.into(),
        section: "politics".into(),
        title: title.into(),
        ..Default::default()
    };
    publish_draft_at(&store, draft("later", "后写的"), latest).await;
    regenerated(&publication, politics()).await;
    let earlier = latest - chrono::TimeDelta::seconds(30);
    publish_draft_at(&store, draft("earlier", "先写的"), earlier).await;
    regenerated(&publication, politics()).await;
    let served = publication.get("politics/atom.xml").unwrap();
    assert!(String::from_utf8_lossy(&served.bytes()).contains("先写的"));
    assert_eq!(served.last_modified, latest);
    assert!(served.shares_its_second, "the version before had its date");
    // A process that never saw the version in between renders the same bytes.
    drop(publication);
    store.close().await;
    std::fs::remove_dir_all(dir.path().join("feeds/politics")).unwrap();
    let (_store, fresh) = restarted(dir.path()).await;
    let again = fresh.get("politics/atom.xml").unwrap();
    assert_eq!(again.etag, served.etag);
    assert_eq!(again.last_modified, latest);
}

#[tokio::test]
async fn a_change_is_served_before_it_is_compressed_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    let file = dir.path().join("feeds/politics/rss.xml");
    let before = std::fs::read(&file).unwrap();
    assert!(
        publication
            .get("politics/rss.xml")
            .unwrap()
            .codings
            .is_some()
    );

    publish(&store, "a", "第一篇").await;
    let failed = inner.regenerate_batch([politics()], Swap::Early).await;
    assert!(failed.is_empty(), "{failed:?}");
    let served = publication.get("politics/rss.xml").unwrap();
    assert!(String::from_utf8_lossy(&served.bytes()).contains("第一篇"));
    assert!(served.codings.is_none(), "served before it is compressed");
    assert!(std::fs::read(&file).unwrap() == before, "not written yet");
    assert!(!publication.is_settled());

    assert!(served.holds_identity(), "no file holds it yet");

    let outcomes = inner.finish_unfinished(usize::MAX, false).await;
    assert!(outcomes.iter().all(|(_, r)| r.is_ok()), "{outcomes:?}");
    let finished = publication.get("politics/rss.xml").unwrap();
    assert_eq!(finished.etag, served.etag, "the same document");
    assert_eq!(
        finished.codings.as_ref().unwrap().compression,
        Compression::Full
    );
    assert!(
        std::fs::read(&file).unwrap() == served.bytes()[..],
        "written"
    );
    let gz = std::fs::read(dir.path().join("feeds/politics/rss.xml.gz")).unwrap();
    assert_eq!(gz, finished.codings.as_ref().unwrap().gzip.bytes);
    assert!(publication.is_settled());

    // Once written, the identity coding is the file's to hold, and comes back whole from
    // the gzip coding when asked for.
    let written = std::fs::File::open(&file).unwrap();
    assert_eq!(finished.stamp(), Some(FileStamp::of(&written).unwrap()));
    assert!(!finished.holds_identity());
    assert!(finished.held_bytes() < served.held_bytes() / 2);
    assert_eq!(finished.len(), served.len());
    assert_eq!(finished.bytes(), served.bytes());
    assert!(finished.holds_identity(), "restored once, then held");
}

/// The index page is built again only when a feed's headlines change, which most
/// regenerations leave as they were.
#[tokio::test]
async fn the_count_of_headline_changes_moves_only_when_headlines_change() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let count = publication.headline_changes();
    regenerated_together(&publication, [politics(), FeedScope::All]).await;
    assert_eq!(publication.headline_changes(), count, "nothing changed");

    publish(&store, "a", "第一篇").await;
    regenerated(&publication, politics()).await;
    assert!(publication.headline_changes() > count);
    assert_eq!(publication.headlines(&politics())[0].title, "第一篇");
    regenerated(&publication, FeedScope::All).await;
    let count = publication.headline_changes();
    regenerated_together(&publication, [politics(), FeedScope::All]).await;
    assert_eq!(publication.headline_changes(), count, "the same headlines");
    // An author's feed changes, but the index lists no author.
    publish_draft(&store, signed("b", "第二篇", "李明")).await;
    let author = FeedScope::author("李明");
    regenerated(&publication, author).await;
    assert_eq!(
        publication.headline_changes(),
        count,
        "no section's headlines"
    );
    regenerated(&publication, FeedScope::All).await;
    assert!(publication.headline_changes() > count);
    assert_eq!(publication.headlines(&FeedScope::All)[0].title, "第二篇");
}

#[tokio::test]
async fn the_feeds_built_at_start_up_are_held_compressed_and_read_from_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    publish(&store, "a", "第一篇").await;
    drop((store, publication));

    let (_store, again) = started(dir.path()).await;
    std::fs::remove_dir_all(dir.path().join("feeds")).unwrap();
    let (_store, fresh) = started(dir.path()).await;
    for publication in [again, fresh] {
        for format in crate::render::Format::ALL {
            let key = format!("politics/{}", format.file_name());
            let served = publication.get(&key).unwrap();
            assert!(!served.holds_identity(), "{key}");
            let on_disk = std::fs::read(dir.path().join("feeds").join(&key)).unwrap();
            assert!(on_disk == served.bytes()[..], "{key}");
        }
    }
}

#[tokio::test]
async fn a_scope_changed_twice_before_it_is_finished_is_written_once_in_its_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    publish(&store, "a", "第一篇").await;
    inner.regenerate_batch([politics()], Swap::Early).await;
    publish(&store, "b", "第二篇").await;
    inner.regenerate_batch([politics()], Swap::Early).await;
    let outcomes = inner.finish_unfinished(usize::MAX, false).await;
    assert_eq!(outcomes.len(), 1, "one scope, finished once: {outcomes:?}");
    let on_disk = std::fs::read_to_string(dir.path().join("feeds/politics/atom.xml")).unwrap();
    assert!(on_disk.contains("第一篇") && on_disk.contains("第二篇"));
    assert_eq!(
        on_disk.as_bytes(),
        &publication.get("politics/atom.xml").unwrap().bytes()[..]
    );
}

#[tokio::test]
async fn a_scope_whose_files_cannot_be_written_is_served_from_memory_and_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    // A file where the scope's folder should be makes writing its files fail.
    let folder = dir.path().join("feeds/politics");
    let away = dir.path().join("politics-away");
    std::fs::rename(&folder, &away).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();

    publish(&store, "a", "第一篇").await;
    inner.regenerate_batch([politics()], Swap::Early).await;
    let outcomes = inner.finish_unfinished(usize::MAX, false).await;
    assert!(matches!(&outcomes[..], [(_, Err(_))]), "{outcomes:?}");
    inner.record_outcome(Step::Write, outcomes);
    assert!(!inner.health.faults().is_empty(), "the fault is reported");
    let served = publication.get("politics/rss.xml").unwrap();
    assert!(String::from_utf8_lossy(&served.bytes()).contains("第一篇"));
    assert!(served.codings.is_some(), "compressed, from memory");
    assert_eq!(std::fs::read(&folder).unwrap(), b"in the way");
    // Not tried again before its second is up; then written.
    assert!(inner.finish_unfinished(usize::MAX, false).await.is_empty());
    assert!(!publication.is_settled());
    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(&away, &folder).unwrap();
    let outcomes = inner.finish_unfinished(usize::MAX, true).await;
    assert!(matches!(&outcomes[..], [(_, Ok(()))]), "{outcomes:?}");
    inner.record_outcome(Step::Write, outcomes);
    assert!(inner.health.faults().is_empty(), "recovered");
    let on_disk = std::fs::read(folder.join("rss.xml")).unwrap();
    assert!(on_disk == served.bytes()[..], "written once that works");
    let json = std::fs::read_to_string(folder.join("feed.json")).unwrap();
    assert!(json.contains("第一篇"));
    assert!(publication.is_settled());
}

#[tokio::test]
async fn changes_that_come_one_at_a_time_are_a_burst_until_they_stop_for_a_while() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (_store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    assert!(!inner.busy(), "calm from the start");
    publication.touch(&[SectionSlug::parse("politics").unwrap()]);
    // As if the scheduler had taken every mark at once: none waits.
    let sent = inner.marks_sent.load(Ordering::SeqCst);
    inner.marks_taken.store(sent, Ordering::SeqCst);
    let calm = inner.calm_at().expect("a change just came");
    assert!(inner.busy());
    assert_eq!(inner.compression_now(), Compression::Fast);
    tokio::time::sleep_until(calm.into()).await;
    assert!(!inner.busy(), "calm again");
    assert_eq!(inner.compression_now(), Compression::Full);
}

#[tokio::test]
async fn documents_compressed_fast_during_a_burst_are_compressed_again_after_it() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    let gz = dir.path().join("feeds/politics/rss.xml.gz");
    publish(&store, "a", "第一篇").await;
    inner.regenerate_batch([politics()], Swap::Early).await;
    // A burst: more stale marks wait than the scheduler has taken. Its feeds are finished
    // half a second after their oldest change, not at once.
    inner.marks_sent.fetch_add(1, Ordering::SeqCst);
    assert!(inner.finish_unfinished(usize::MAX, false).await.is_empty());
    let outcomes = inner.finish_unfinished(usize::MAX, true).await;
    assert!(matches!(&outcomes[..], [(_, Ok(()))]), "{outcomes:?}");
    let fast = publication.get("politics/rss.xml").unwrap();
    let codings = fast.codings.clone().unwrap();
    assert_eq!(codings.compression, Compression::Fast);
    assert!(
        codings.gzip.etag.ends_with("-gz1\""),
        "{}",
        codings.gzip.etag
    );
    assert!(std::fs::read(&gz).unwrap() == codings.gzip.bytes);
    inner.marks_sent.fetch_sub(1, Ordering::SeqCst);
    assert!(!publication.is_settled(), "compressed fast is not final");

    inner.queue_recompression();
    let outcomes = inner.finish_unfinished(usize::MAX, false).await;
    assert!(matches!(&outcomes[..], [(_, Ok(()))]), "{outcomes:?}");
    let full = publication.get("politics/rss.xml").unwrap();
    let codings = full.codings.clone().unwrap();
    assert_eq!(codings.compression, Compression::Full);
    assert_eq!(full.etag, fast.etag, "the same document");
    assert!(std::fs::read(&gz).unwrap() == codings.gzip.bytes);
    assert!(publication.is_settled());
}

/// A store with one politics article, whose feeds are regenerated and written.
async fn politics_written(dir: &Path) -> (Arc<dyn Store>, Publication) {
    let (store, publication) = started(dir).await;
    publish(&store, "a", "第一篇").await;
    publication
        .inner
        .regenerate_batch([politics()], Swap::Early)
        .await;
    publication.inner.finish_unfinished(usize::MAX, false).await;
    (store, publication)
}

#[tokio::test]
async fn a_restart_leaves_files_that_already_hold_the_feeds_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = politics_written(dir.path()).await;
    let files = [
        "rss.xml",
        "rss.xml.gz",
        "rss.xml.br",
        "atom.xml",
        "feed.json.br",
    ]
    .map(|name| dir.path().join("feeds/politics").join(name));
    let inode = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.ino(), meta.mtime(), meta.mtime_nsec())
    };
    let before = files.each_ref().map(|f| inode(f));
    drop((store, publication));

    // Every file is replaced by a rename, so a rewrite shows as another inode.
    let (_store, again) = started(dir.path()).await;
    assert!(again.is_settled());
    assert_eq!(
        files.each_ref().map(|f| inode(f)),
        before,
        "nothing rewritten"
    );
    let served = again.get("politics/rss.xml").unwrap();
    assert!(served.codings.is_some());
    // The file found holding the document holds it for the server too.
    let found = std::fs::File::open(&files[0]).unwrap();
    assert_eq!(served.stamp(), Some(FileStamp::of(&found).unwrap()));
    assert!(!served.holds_identity());
    assert!(std::fs::read(&files[0]).unwrap() == served.bytes()[..]);
}

/// After a restart, a document found in its identity file takes its codings from the
/// gzip and brotli files beside it when both hold it, the gzip one at a middle level, rather
/// than being compressed again; files that hold another document, or gzip at the fastest
/// level (as during a burst), are made again.
#[tokio::test]
async fn a_restart_takes_the_codings_the_last_run_wrote_when_they_hold_the_document() {
    use std::io::Write;
    let gzip = |bytes: &[u8], level: u32| {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let brotli = |bytes: &[u8]| {
        let mut out = Vec::new();
        brotli::CompressorWriter::new(&mut out, 4096, 4, 20)
            .write_all(bytes)
            .unwrap();
        out
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = politics_written(dir.path()).await;
    drop((store, publication));
    // Codings the server would not make itself (gzip level 5, brotli quality 4), so that
    // where the served ones come from shows.
    let feeds = dir.path().join("feeds/politics");
    let [rss, atom, json] =
        ["rss.xml", "atom.xml", "feed.json"].map(|name| std::fs::read(feeds.join(name)).unwrap());
    let planted = [
        ("rss.xml", gzip(&rss, 5), brotli(&rss)),
        ("atom.xml", gzip(&atom, 1), brotli(&atom)),
        ("feed.json", gzip(b"{}", 5), brotli(&json)),
    ];
    for (name, gz, br) in &planted {
        std::fs::write(feeds.join(format!("{name}.gz")), gz).unwrap();
        std::fs::write(feeds.join(format!("{name}.br")), br).unwrap();
    }

    let (_store, again) = started(dir.path()).await;
    let codings = |key: &str| again.get(key).unwrap().codings.clone().unwrap();
    let rss_codings = codings("politics/rss.xml");
    assert!(
        rss_codings.gzip.bytes == planted[0].1,
        "gzip taken from the file"
    );
    assert!(
        rss_codings.brotli.bytes == planted[0].2,
        "brotli taken from the file"
    );
    assert_eq!(rss_codings.compression, super::Compression::Full);
    for (key, name, identity) in [
        ("politics/atom.xml", "atom.xml", &atom),
        ("politics/feed.json", "feed.json", &json),
    ] {
        let made = codings(key);
        let (_, planted_gz, planted_br) = planted.iter().find(|p| p.0 == name).unwrap();
        assert!(made.gzip.bytes != planted_gz[..], "{name}: gzip made again");
        assert!(
            made.brotli.bytes != planted_br[..],
            "{name}: brotli made again"
        );
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&made.gzip.bytes[..]),
            &mut decoded,
        )
        .unwrap();
        assert!(decoded == identity[..], "{name}");
        let on_disk = std::fs::read(feeds.join(format!("{name}.gz"))).unwrap();
        assert!(on_disk == made.gzip.bytes, "{name}: written again");
    }
}

/// Waits, on a condition and never a duration, until `done` (failing after 30 s).
async fn until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Coalescing without timing: every mark is waiting when the scheduler first looks (it
/// is started after them), so 200 publishes to one section make one regeneration of it.
#[tokio::test]
async fn marks_waiting_when_the_scheduler_looks_make_one_regeneration_per_feed() {
    use std::sync::atomic::Ordering::SeqCst;
    const BURST: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let (store, publication, scheduler) = started_with_scheduler(dir.path()).await;
    let slug = SectionSlug::parse("politics").unwrap();
    let before = publication.regenerations(&politics());
    for i in 0..BURST {
        publish(&store, &format!("burst-{i:03}"), &format!("快讯 {i:03}")).await;
        publication.touch(std::slice::from_ref(&slug));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(scheduler.run(stopped));
    let inner = publication.inner.clone();
    until(|| inner.marks_done.load(SeqCst) == inner.marks_sent.load(SeqCst)).await;
    assert_eq!(publication.regenerations(&politics()) - before, 1);
    let rss = publication.get("politics/rss.xml").unwrap();
    assert!(String::from_utf8_lossy(&rss.bytes()).contains(&format!("快讯 {:03}", BURST - 1)));
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// The feed-level date of a served document (Atom `updated`, RSS `lastBuildDate`).
fn document_date(publication: &Publication, key: &str) -> chrono::DateTime<Utc> {
    let served = publication.get(key).unwrap();
    let feed = feed_rs::parser::parse(&served.bytes()[..]).unwrap();
    feed.updated.unwrap_or_else(|| panic!("{key} has no date"))
}

/// A feed whose last article left it (a byline changed) is dated by that change, and one
/// nothing was ever published in by a fixed date: never 1 January 1970.
#[tokio::test]
async fn a_feed_without_articles_is_dated_by_what_emptied_it_never_by_1970() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    for key in ["notices/atom.xml", "notices/rss.xml"] {
        assert_eq!(
            document_date(&publication, key),
            super::NEVER_CHANGED,
            "{key}"
        );
    }
    let byline = |author: &str| signed("a", "署名更正", author);
    let first = FeedScope::author("刘磊");
    publish_draft(&store, byline("刘磊")).await;
    regenerated(&publication, first.clone()).await;
    let moved = Utc::now().trunc_subsecs(0);
    publish_draft(&store, byline("张智宙")).await;
    regenerated(&publication, first.clone()).await;
    for format in crate::render::Format::ALL.into_iter().take(2) {
        let key = format!("{}/{}", first.path_segment(), format.file_name());
        let served = publication.get(&key).unwrap();
        assert!(!String::from_utf8_lossy(&served.bytes()).contains("署名更正"));
        let date = document_date(&publication, &key);
        assert!(date >= moved, "{key}: {date}");
    }
}

/// Every RSS and Atom document of `scope` carries its Last-Modified as its own date (the
/// Atom document's within that second); returns that date.
fn dated_as_served(publication: &Publication, scope: &FeedScope) -> chrono::DateTime<Utc> {
    let mut dates = Vec::new();
    for format in crate::render::Format::ALL.into_iter().take(2) {
        let key = format!("{}/{}", scope.path_segment(), format.file_name());
        let served = publication.get(&key).unwrap();
        let date = document_date(publication, &key).trunc_subsecs(0);
        assert_eq!(date, served.last_modified, "{key}");
        dates.push(date);
    }
    assert_eq!(dates[0], dates[1], "{scope:?}");
    dates[0]
}

/// A feed's date and its Last-Modified are one value: after a publish, after an article
/// moved out of the feed, and when the bytes change with no newer stored change (a new
/// configuration at a restart); a changed document is dated later than the one it
/// replaces, and a restart with nothing changed leaves the date and bytes as they were.
#[tokio::test]
async fn a_feed_carries_its_last_modified_as_its_date_and_moves_it_with_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let inner = publication.inner.clone();
    publish(&store, "a", "移走的一篇").await;
    publish(&store, "b", "留下的一篇").await;
    regenerated(&publication, politics()).await;
    let published = dated_as_served(&publication, &politics());
    let before = publication.get("politics/rss.xml").unwrap();
    // Dates have whole seconds: the move comes in a later one. The article moved out
    // changes the feed's bytes with no newer stored change in its scope (a newer article
    // stays): a client revalidating by date alone must not be told its copy is current.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    publish_in(&store, "a", "移走的一篇", "rural").await;
    regenerated(&publication, politics()).await;
    let after = publication.get("politics/rss.xml").unwrap();
    assert_ne!(after.etag, before.etag);
    assert!(!String::from_utf8_lossy(&after.bytes()).contains("移走的一篇"));
    let moved = dated_as_served(&publication, &politics());
    assert!(moved > published, "{published} then {moved}");
    assert!(after.last_modified > before.last_modified);
    inner.finish_unfinished(usize::MAX, true).await;
    drop((store, publication, inner));

    // A new site title changes every document with no stored change to date it.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let renamed = |settings: &mut Settings| settings.site.title = "朔州日报（新版）".into();
    let (store, publication) = started_with(dir.path(), renamed).await;
    let retitled = dated_as_served(&publication, &politics());
    assert!(retitled > moved, "{moved} then {retitled}");
    let bytes = publication.get("politics/atom.xml").unwrap().etag.clone();
    drop((store, publication));

    // Started again as it is: the same bytes and date, read back from the files; the
    // JSON Feed, which carries no date, is dated with the Atom document beside it.
    let (_store, publication) = started_with(dir.path(), renamed).await;
    assert_eq!(dated_as_served(&publication, &politics()), retitled);
    assert_eq!(publication.get("politics/atom.xml").unwrap().etag, bytes);
    assert_eq!(
        publication.get("politics/feed.json").unwrap().last_modified,
        retitled
    );
}

/// After a restart a document's date read back from its file is kept when it is ahead of
/// the clock by a little (a clock stepped back), but not when it is far ahead (a file
/// edited, or written under a clock far off): that date would stay on every later version,
/// and past the year 9999 neither RSS nor Atom can state it.
#[tokio::test]
async fn a_date_far_ahead_in_a_file_found_at_start_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    publish(&store, "a", "重启前的一篇").await;
    regenerated(&publication, politics()).await;
    let dated = dated_as_served(&publication, &politics());
    drop((store, publication));

    let feeds = dir.path().join("feeds/politics");
    let redate = |rss: &str, atom: &str| {
        for (file, open, close, date) in [
            ("rss.xml", "<lastBuildDate>", "</lastBuildDate>", rss),
            ("atom.xml", "<updated>", "</updated>", atom),
        ] {
            let text = std::fs::read_to_string(feeds.join(file)).unwrap();
            let start = text.find(open).unwrap() + open.len();
            let end = start + text[start..].find(close).unwrap();
            let text = format!("{}{date}{}", &text[..start], &text[end..]);
            std::fs::write(feeds.join(file), text).unwrap();
        }
    };
    let hour_ahead = (Utc::now() + chrono::TimeDelta::hours(1)).trunc_subsecs(0);
    redate(
        &hour_ahead.to_rfc2822(),
        &hour_ahead.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let (store, publication) = started(dir.path()).await;
    assert_eq!(dated_as_served(&publication, &politics()), hour_ahead);
    drop((store, publication));

    for (rss, atom) in [
        (
            "Fri, 31 Dec 9999 23:59:59 -2359",
            "9999-12-31T23:59:59.999999999-23:59",
        ),
        ("Fri, 01 Jan 2100 00:00:00 +0000", "2100-01-01T00:00:00Z"),
    ] {
        redate(rss, atom);
        let (store, publication) = started(dir.path()).await;
        // Dated by the store's change, or by the restart that rewrote the file.
        let date = dated_as_served(&publication, &politics());
        assert!(dated <= date && date <= Utc::now(), "{atom}: {date}");
        drop((store, publication));
    }
}

/// An Atom feed is dated at the instant of its newest change, never before an entry's
/// `updated` (its Last-Modified is that instant's second): two versions within one second
/// state different dates, for a reader that compares the feed's date before its entries.
#[tokio::test]
async fn an_atom_feed_is_dated_at_the_instant_of_its_newest_change() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let mut dates = Vec::new();
    for id in ["a", "b"] {
        publish(&store, id, "同一秒内的两版").await;
        regenerated(&publication, politics()).await;
        let served = publication.get("politics/atom.xml").unwrap();
        let feed = feed_rs::parser::parse(&served.bytes()[..]).unwrap();
        let date = feed.updated.unwrap();
        let newest = feed.entries.iter().filter_map(|e| e.updated).max().unwrap();
        assert!(date >= newest, "{id}: {date} before {newest}");
        assert_eq!(date.trunc_subsecs(0), served.last_modified, "{id}");
        dates.push(date);
    }
    assert!(dates[1] > dates[0], "{dates:?}");
}

/// Versions of a document made by `version` (given a new name each time), two at a time,
/// until two fall within one second: a second may turn between them, and a few tries find
/// two within one. Returns the later of those two; each later one found in a later second
/// must have its date to itself.
async fn two_within_one_second(
    version: impl AsyncFn(String) -> Arc<super::FeedFile>,
) -> Arc<super::FeedFile> {
    for attempt in 0..5 {
        let before = version(format!("a{attempt}")).await;
        let after = version(format!("b{attempt}")).await;
        assert_ne!(after.etag, before.etag);
        if after.last_modified == before.last_modified {
            return after;
        }
        assert!(!after.shares_its_second, "{attempt}");
    }
    panic!("no two versions within one second in five tries");
}

/// Two versions of a feed within one second share its date: the later one says so (a
/// client's date may be the other's), and a version in a later second has its date to
/// itself.
#[tokio::test]
async fn a_version_dated_with_the_second_of_the_one_it_replaces_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let shared = two_within_one_second(async |id| {
        publish(&store, &id, "同一秒的一版").await;
        regenerated(&publication, politics()).await;
        publication.get("politics/rss.xml").unwrap()
    })
    .await;
    assert!(shared.shares_its_second);

    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    publish(&store, "c", "下一秒").await;
    regenerated(&publication, politics()).await;
    let later = publication.get("politics/rss.xml").unwrap();
    assert!(later.last_modified > shared.last_modified);
    assert!(!later.shares_its_second);

    // Started again on the same files: the documents found holding the feeds keep their
    // dates, each alone in its second.
    let inner = publication.inner.clone();
    inner.finish_unfinished(usize::MAX, true).await;
    drop((store, publication, inner));
    let (_store, publication) = started(dir.path()).await;
    for format in crate::render::Format::ALL {
        let key = format!("politics/{}", format.file_name());
        let found = publication.get(&key).unwrap();
        assert_eq!(found.last_modified, later.last_modified, "{key}");
        assert!(!found.shares_its_second, "{key}");
    }
}

/// An archive page changed twice within one second says so, as a feed's current document
/// does: a client's `If-Modified-Since` of that second may be the earlier version's. The
/// next version, in a later second, has its date to itself.
#[tokio::test]
async fn an_archive_page_changed_twice_within_one_second_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started_with(dir.path(), |s| s.feeds.max_items = 1).await;
    publish(&store, "old", "旧稿").await;
    publish(&store, "new", "新稿").await;
    regenerated(&publication, politics()).await;
    let page = "politics/archive/1/rss.xml";
    let corrected = async |title: &str| {
        publish(&store, "old", title).await;
        regenerated(&publication, politics()).await;
        let file = publication.archive(page).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&file.bytes()).contains(title));
        file
    };
    let shared = two_within_one_second(async |name| corrected(&format!("更正{name}")).await).await;
    assert!(shared.shares_its_second);

    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let later = corrected("下一秒的更正").await;
    assert!(later.last_modified > shared.last_modified);
    assert!(!later.shares_its_second);
}

/// An archive path whose folder no served feed has is not found without a read of the
/// store (which would otherwise list every author and tag name to look for it); the
/// archive of a served author feed is found.
#[tokio::test]
async fn archive_paths_of_folders_no_feed_has_are_not_found_without_the_store() {
    let dir = tempfile::tempdir().unwrap();
    // Pages of one article: the author's one fills its first.
    let (store, publication) = started_with(dir.path(), |s| s.feeds.max_items = 1).await;
    publish_draft(&store, signed("a", "署名的一篇", "陈淑兰")).await;
    let scope = FeedScope::author("陈淑兰");
    regenerated(&publication, scope.clone()).await;
    let page = format!("{}/archive/1/rss.xml", scope.path_segment());
    assert!(publication.archive(&page).await.unwrap().is_some());
    store.close().await;
    for path in [
        "authors/chen-000000/archive/1/rss.xml",
        "tags/nope-000000/archive/1/atom.xml",
        "x/y/archive/1/feed.json",
        "Politics/archive/1/rss.xml",
    ] {
        assert!(
            matches!(publication.archive(path).await, Ok(None)),
            "{path}"
        );
    }
}

/// Two author names with one slug (a collision of its short hash, which takes a second to
/// search for): the folder holds the feeds of the name stored first, however often and in
/// whichever order the two are built, in one batch or in two, and after a restart; the
/// other name has no feeds and is not listed.
#[tokio::test]
async fn a_name_made_to_share_a_slug_cannot_take_the_first_names_feeds_over() {
    // The other sorts first, so a build in name order reads it first.
    let (first, squatter) = ("刘磊", "Liu Lei·_:.·,?;");
    let (owner, other) = (FeedScope::author(first), FeedScope::author(squatter));
    assert_eq!(owner.path_segment(), other.path_segment(), "one slug");
    assert!(other < owner);
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let draft = |title: &str, author: &str| {
        let id = if author == first { "first" } else { "second" };
        signed(id, &format!("{title}：{author}的稿件"), author)
    };
    let atom = format!("{}/atom.xml", owner.path_segment());
    let holds_the_first = |text: &str| {
        text.contains(&format!("作者：{first}")) && text.contains("早稿") && !text.contains("晚稿")
    };
    publish_draft(&store, draft("早稿", first)).await;
    publish_draft(&store, draft("晚稿", squatter)).await;
    let stored = store.named_scopes(Utc::now()).await.unwrap();
    assert!(
        stored.contains(&owner) && stored.contains(&other),
        "{stored:?}"
    );
    for batch in [
        vec![other.clone(), owner.clone()],
        vec![other.clone()],
        vec![owner.clone(), other.clone()],
        vec![other.clone()],
    ] {
        regenerated_together(&publication, batch.clone()).await;
        let served = publication.get(&atom).unwrap();
        assert!(
            holds_the_first(&String::from_utf8_lossy(&served.bytes())),
            "after {batch:?}"
        );
        assert_eq!(publication.named_scopes(), std::slice::from_ref(&owner));
        let unfinished = publication.inner.unfinished.lock().unwrap();
        assert!(unfinished.get(&other).is_none(), "nothing of it to write");
    }
    publication.inner.finish_unfinished(usize::MAX, true).await;
    let on_disk = std::fs::read_to_string(dir.path().join("feeds").join(&atom)).unwrap();
    assert!(holds_the_first(&on_disk), "{on_disk}");
    store.close().await;
    drop(publication);

    // A restart builds both names' feeds, the other's first: the store decides, as before.
    let (_store, publication) = restarted(dir.path()).await;
    let served = publication.get(&atom).unwrap();
    assert!(holds_the_first(&String::from_utf8_lossy(&served.bytes())));
    assert_eq!(publication.named_scopes(), std::slice::from_ref(&owner));
    let on_disk = std::fs::read_to_string(dir.path().join("feeds").join(&atom)).unwrap();
    assert!(holds_the_first(&on_disk), "{on_disk}");
}

/// At shutdown `all` and the sections are written whatever they take, author and tag feeds
/// only for a while: those left are written by the next start.
#[tokio::test]
async fn at_shutdown_name_feeds_are_written_for_a_while_and_the_rest_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, publication) = started(dir.path()).await;
    let author = FeedScope::author("陈淑兰");
    publish_draft(&store, signed("signed", "署名的一篇", "陈淑兰")).await;
    regenerated_together(&publication, [author.clone(), politics(), FeedScope::All]).await;
    let holds = |segment: &str| {
        std::fs::read_to_string(dir.path().join("feeds").join(segment).join("atom.xml"))
            .is_ok_and(|text| text.contains("署名的一篇"))
    };
    assert!(!holds("politics") && !holds(author.path_segment()));

    let (outcomes, left) = publication
        .inner
        .finish_at_exit(std::time::Duration::ZERO)
        .await;
    // In the order they were left unfinished, one clock reading each: two readings alike
    // (a coarse clock) order them by scope instead.
    let mut finished: Vec<&FeedScope> = outcomes.iter().map(|(scope, _)| scope).collect();
    finished.sort();
    let mut expected = [&politics(), &FeedScope::All];
    expected.sort();
    assert_eq!(finished, expected);
    assert!(outcomes.iter().all(|(_, r)| r.is_ok()), "{outcomes:?}");
    assert_eq!(left, 1, "the author's feeds");
    assert!(holds("politics") && holds("all"));
    assert!(!holds(author.path_segment()), "not written at shutdown");
    store.close().await;
    drop(publication);

    let (_store, publication) = restarted(dir.path()).await;
    assert!(holds(author.path_segment()), "written by the next start");
    assert!(publication.is_settled());
}

/// A start serves `all` and the sections at once and builds the author and tag feeds it
/// finds after: they are listed from the start, and until each is built a request for it is
/// told it is not built yet (not that it does not exist). One regenerated meanwhile, from a
/// later write, is not built again from the start's reading.
#[tokio::test]
async fn a_start_serves_the_sections_first_and_builds_the_name_feeds_it_found_after() {
    let dir = tempfile::tempdir().unwrap();
    let (chen, wang) = (FeedScope::author("陈淑兰"), FeedScope::author("王芳"));
    let articles = [
        ("chen-1", "陈的第一篇", "陈淑兰"),
        ("wang-1", "王的第一篇", "王芳"),
    ];
    a_run_stored(dir.path(), &articles).await;

    let (store, publication, mut scheduler) = started_with_scheduler(dir.path()).await;
    let atom = |scope: &FeedScope| format!("{}/atom.xml", scope.path_segment());
    let shows = |scope: &FeedScope, title: &str| {
        publication
            .get(&atom(scope))
            .is_some_and(|file| String::from_utf8_lossy(&file.bytes()).contains(title))
    };
    assert!(
        shows(&politics(), "王的第一篇"),
        "the sections are served at once"
    );
    assert_eq!(publication.named_scopes(), [wang.clone(), chen.clone()]);
    assert_eq!(publication.unbuilt(), 2);
    assert!(!publication.is_settled());
    for scope in [&chen, &wang] {
        assert!(publication.get(&atom(scope)).is_none());
        assert!(publication.is_unbuilt(&atom(scope)));
        let archive = format!("{}/archive/1/rss.xml", scope.path_segment());
        assert!(publication.is_unbuilt(&archive));
    }
    let nobody = FeedScope::author("无名氏");
    assert!(
        !publication.is_unbuilt(&atom(&nobody)),
        "not found at start"
    );
    assert!(!publication.is_unbuilt("politics/atom.xml"));
    assert!(!publication.is_unbuilt("authors"));
    let folder = chen.path_segment();
    for not_a_document in ["x.xml", "archive/0/rss.xml", "archive/1/x.xml", "rss.xml/x"] {
        assert!(!publication.is_unbuilt(&format!("{folder}/{not_a_document}")));
    }
    assert!(publication.is_unbuilt_document(&atom(&chen)));
    let archive = format!("{folder}/archive/1/atom.xml");
    assert!(
        !publication.is_unbuilt_document(&archive),
        "not a current document"
    );
    // A new article of one of them, regenerated before the start's build comes to it.
    publish_draft(&store, signed("wang-2", "王的第二篇", "王芳")).await;
    regenerated_together(&publication, [wang.clone()]).await;
    let regenerated = publication.get(&atom(&wang)).unwrap();
    assert!(shows(&wang, "王的第二篇"));

    scheduler.build_unbuilt().await;
    assert!(scheduler.unbuilt.is_empty());
    assert_eq!(publication.unbuilt(), 0);
    assert!(!publication.is_unbuilt(&atom(&chen)));
    assert!(shows(&chen, "陈的第一篇"), "built");
    let kept = publication.get(&atom(&wang)).unwrap();
    assert!(
        Arc::ptr_eq(&kept, &regenerated),
        "the regenerated documents kept"
    );
    assert_eq!(publication.regenerations(&wang), 1, "not built again");
    assert_eq!(
        publication.regenerations(&chen),
        1,
        "built once, from the files"
    );
    assert_eq!(publication.named_scopes(), [wang.clone(), chen.clone()]);
}

/// A run on `dir` that stored these signed politics articles (id, title, author), built
/// their feeds, wrote them and stopped.
async fn a_run_stored(dir: &Path, articles: &[(&str, &str, &str)]) {
    let (store, publication) = started(dir).await;
    let mut scopes = std::collections::BTreeSet::from([politics()]);
    for (id, title, author) in articles {
        publish_draft(&store, signed(id, title, author)).await;
        scopes.insert(FeedScope::author(author));
    }
    regenerated_together(&publication, scopes).await;
    publication.inner.finish_unfinished(usize::MAX, true).await;
    store.close().await;
}

/// Builds the author and tag feeds the start found, as the scheduler does between batches.
async fn build_found(scheduler: &mut super::Scheduler) {
    while !scheduler.unbuilt.is_empty() {
        scheduler.build_unbuilt().await;
    }
}

/// Two names with one slug, built in different batches after a start (names that sort
/// between them fill the first batch), or one of them new and built before the start's
/// build comes to the other: the folder stays the first stored name's, served and on disk,
/// and only that name is listed.
#[tokio::test]
async fn after_a_start_a_name_sharing_a_slug_cannot_take_the_folder_in_any_order() {
    let (first, squatter) = ("刘磊", "Liu Lei·_:.·,?;");
    let (owner, other) = (FeedScope::author(first), FeedScope::author(squatter));
    assert_eq!(owner.path_segment(), other.path_segment(), "one slug");
    let atom = format!("{}/atom.xml", owner.path_segment());
    let holds_the_first = |text: &str| text.contains("早稿") && !text.contains("晚稿");
    // Names that sort between the two, more than one batch of the start's build holds.
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let between: Vec<(String, String, String)> = (0
        ..=super::regeneration::START_UP_SCOPES_PER_CORE * parallel)
        .map(|n| (format!("m{n}"), format!("稿{n}"), format!("Mz{n:02}")))
        .collect();
    for squatter_at_start in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut articles = vec![("first", "早稿", first)];
        if squatter_at_start {
            articles.push(("second", "晚稿", squatter));
        }
        articles.extend(between.iter().map(|(id, t, a)| (&id[..], &t[..], &a[..])));
        a_run_stored(dir.path(), &articles).await;

        let (store, publication, mut scheduler) = started_with_scheduler(dir.path()).await;
        if !squatter_at_start {
            // Published after the start, built before the start's build reaches the owner.
            publish_draft(&store, signed("second", "晚稿", squatter)).await;
            regenerated_together(&publication, [other.clone()]).await;
        }
        build_found(&mut scheduler).await;
        publication.inner.finish_unfinished(usize::MAX, true).await;
        let served = publication.get(&atom).unwrap();
        let context = format!("squatter stored before the start: {squatter_at_start}");
        assert!(
            holds_the_first(&String::from_utf8_lossy(&served.bytes())),
            "{context}"
        );
        let on_disk = std::fs::read_to_string(dir.path().join("feeds").join(&atom)).unwrap();
        assert!(holds_the_first(&on_disk), "{context}");
        let named = publication.named_scopes();
        assert!(
            named.contains(&owner) && !named.contains(&other),
            "{context}"
        );
        store.close().await;
    }
}

/// A name found at start whose only article a correction signs otherwise before its feeds
/// are built: its feeds are emptied, on disk too, and it is no longer listed, as when it
/// was served.
#[tokio::test]
async fn a_name_corrected_away_before_its_feeds_are_built_has_them_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let (chen, wang) = (FeedScope::author("陈淑兰"), FeedScope::author("王芳"));
    a_run_stored(dir.path(), &[("a", "陈的稿", "陈淑兰")]).await;

    let (store, publication, mut scheduler) = started_with_scheduler(dir.path()).await;
    assert!(publication.named_scopes().contains(&chen));
    publish_draft(&store, signed("a", "改署名", "王芳")).await;
    regenerated_together(&publication, [chen.clone(), wang.clone(), politics()]).await;
    build_found(&mut scheduler).await;
    publication.inner.finish_unfinished(usize::MAX, true).await;
    assert_eq!(publication.named_scopes(), std::slice::from_ref(&wang));
    let atom = format!("{}/atom.xml", chen.path_segment());
    let served = publication.get(&atom).expect("emptied, still served");
    let on_disk = std::fs::read_to_string(dir.path().join("feeds").join(&atom)).unwrap();
    for text in [
        String::from_utf8_lossy(&served.bytes()).into_owned(),
        on_disk,
    ] {
        assert!(
            !text.contains("<entry>") && !text.contains("陈的稿"),
            "{text}"
        );
    }
    assert!(publication.is_settled());
}

/// Stale feeds that keep coming (a bulk import, a replica following busy peers) do not
/// keep the author and tag feeds a start found from being built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_feeds_a_start_found_are_built_while_stale_feeds_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let articles = [
        ("a0", "稿0", "作者0"),
        ("a1", "稿1", "作者1"),
        ("a2", "稿2", "作者2"),
    ];
    a_run_stored(dir.path(), &articles).await;

    let (_store, publication, scheduler) = started_with_scheduler(dir.path()).await;
    assert_eq!(publication.unbuilt(), 3);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // A mark every 50 µs from a thread of its own: one is always waiting when the
    // scheduler looks.
    let marking = std::thread::spawn({
        let (publication, stopped) = (publication.clone(), stopped.clone());
        move || {
            let politics = [SectionSlug::parse("politics").unwrap()];
            while !*stopped.borrow() {
                publication.touch(&politics);
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    });
    // Marks are waiting before the scheduler first looks.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let running = tokio::spawn(scheduler.run(stopped));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while publication.unbuilt() > 0 {
        assert!(std::time::Instant::now() < deadline, "never built");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        publication.regenerations(&politics()) > 0,
        "stale feeds regenerated meanwhile"
    );
    stop.send(true).unwrap();
    marking.join().unwrap();
    running.await.unwrap();
}

/// A name feed found at start whose files cannot be written when the scheduler builds it
/// (its folder taken by a file, as a full disk would refuse them) is served from memory,
/// compressed, at once rather than asked for again; the fault is reported, and its files
/// are written once that works.
#[tokio::test]
async fn a_found_name_feed_whose_files_cannot_be_written_is_served_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let chen = FeedScope::author("陈淑兰");
    a_run_stored(dir.path(), &[("a", "陈的稿", "陈淑兰")]).await;
    let folder = dir.path().join("feeds").join(chen.path_segment());
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();

    let (_store, publication, mut scheduler) = started_with_scheduler(dir.path()).await;
    build_found(&mut scheduler).await;
    let atom = format!("{}/atom.xml", chen.path_segment());
    let served = publication.get(&atom).expect("served from memory");
    assert!(String::from_utf8_lossy(&served.bytes()).contains("陈的稿"));
    assert!(served.codings.is_some(), "compressed");
    assert!(!publication.is_unbuilt(&atom));
    assert!(!publication.inner.health.faults().is_empty(), "reported");
    assert!(!publication.is_settled(), "its files are not written");
    std::fs::remove_file(&folder).unwrap();
    let outcomes = publication.inner.finish_unfinished(usize::MAX, true).await;
    assert!(matches!(&outcomes[..], [(_, Ok(()))]), "{outcomes:?}");
    publication.inner.record_outcome(Step::Write, outcomes);
    assert!(publication.inner.health.faults().is_empty(), "recovered");
    let on_disk = std::fs::read(folder.join("atom.xml")).unwrap();
    assert!(on_disk == served.bytes()[..], "written once that works");
    assert!(publication.is_settled());
}
