//! What only the SQLite backend does: author and tag feeds read through the name's index,
//! names stored by an older schema, its log copied while it runs and at close, the writer's
//! undoing of one failed job among those it runs together. What every backend must do is
//! in `contract_tests.rs`.

use super::Store;
use super::contract_tests::{AUTHOR, TAG, actor, add_partner, at, publish, write};
use super::sqlite::{FeedSql, SqliteStore, distinct_names_sql, feed_rows_sql, next_transition_sql};
use crate::domain::{FeedScope, Partner, SectionSlug};
use chrono::TimeDelta;

async fn store_with_partner(dir: &std::path::Path) -> (SqliteStore, Partner) {
    let store = SqliteStore::open(dir).await.unwrap();
    let partner = add_partner(&store, "newsroom").await;
    (store, partner)
}

/// The query plans of an author or tag feed search every table through an index, so a
/// feed reads its own rows however many articles carry the name (the keys' plans in
/// detail: `a_feeds_keys_are_read_from_indexes_alone_in_feed_order`).
#[tokio::test]
async fn author_and_tag_feeds_are_read_through_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    publish(&store, &partner, "a-1", 1, |_| {}).await;
    for (scope, name) in [
        (FeedScope::author(AUTHOR), AUTHOR),
        (FeedScope::tag(TAG), TAG),
    ] {
        let sql = FeedSql::of(&scope);
        let keys = store.query_plan(&sql.keys, 2, Some(name)).await;
        for plan in [keys, store.query_plan(&sql.summary, 2, Some(name)).await] {
            let walked: Vec<_> = scans(&plan)
                .into_iter()
                .filter(|s| s.starts_with("SCAN article"))
                .collect();
            assert!(walked.is_empty(), "{plan:?}");
        }
    }
    store.close().await;
}

/// The steps of a plan that read a table or index from end to end; not those that go
/// through the summary's own one row or its tombstones (at most the limit).
fn scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|step| step.starts_with("SCAN"))
        .filter(|step| !matches!(step.as_str(), "SCAN CONSTANT ROW" | "SCAN summary"))
        .filter(|step| !step.starts_with("SCAN tombstone"))
        .collect()
}

/// When a feed last changed, its tombstones and the next transition are found by walking
/// the partial indexes of embargo ends and retractions from the newest, in every scope: not
/// through the index on `state`, which made them read every published or retracted row of
/// the scope, bodies' overflow pages included.
#[tokio::test]
async fn last_changes_tombstones_and_transitions_walk_the_embargo_and_retraction_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    publish(&store, &partner, "a-1", 1, |_| {}).await;
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    for (scope, value, prefix) in [
        (FeedScope::All, None, "articles"),
        (rural, Some("rural"), "articles_section"),
        (FeedScope::author(AUTHOR), Some(AUTHOR), "article_authors"),
        (FeedScope::tag(TAG), Some(TAG), "article_tags"),
    ] {
        let sql = FeedSql::of(&scope);
        let last_change = store.query_plan(&sql.summary, 2, value).await;
        for index in [
            format!("INDEX {prefix}_embargo ("),
            format!("INDEX {prefix}_retract ("),
            // The 'all' feed's has no column before the time.
            format!("INDEX {prefix}_shown"),
        ] {
            assert!(
                last_change.iter().any(|step| step.contains(&index)),
                "{scope:?} {index}: {last_change:?}"
            );
        }
        let tombstones = store.query_plan(&sql.tombstones, 2, value).await;
        assert!(
            tombstones[0].contains(&format!("INDEX {prefix}_retract (")),
            "{scope:?}: {tombstones:?}"
        );
        // The keys' plans: `a_feeds_keys_are_read_from_indexes_alone_in_feed_order`.
        for plan in [&last_change, &tombstones] {
            assert!(scans(plan).is_empty(), "{scope:?}: {plan:?}");
        }
    }
    let next = store.query_plan(&next_transition_sql(), 3, None).await;
    for index in ["articles_embargo", "articles_retract"] {
        assert!(
            next.iter().any(|s| s.contains(&format!("INDEX {index} ("))),
            "{next:?}"
        );
    }
    assert!(scans(&next).is_empty(), "{next:?}");
    store.close().await;
}

/// The names that have feeds are found with one index search per name, not by walking every
/// article's names; and they are every name some article carries, once each, in order.
#[tokio::test]
async fn names_with_feeds_are_looked_up_one_index_search_each() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    assert_eq!(store.named_scopes(at(2000)).await.unwrap(), []);
    publish(&store, &partner, "a-1", 1, |_| {}).await;
    publish(&store, &partner, "a-2", 2, |d| {
        d.authors = vec!["王五".into(), AUTHOR.into()];
        d.tags = vec!["财经".into(), TAG.into()];
    })
    .await;
    publish(&store, &partner, "a-3", 3, |d| d.tags = Vec::new()).await;
    let mut authors = [AUTHOR, "张智宙", "王五"];
    let mut tags = [TAG, "财经"];
    authors.sort_unstable();
    tags.sort_unstable();
    let expected: Vec<FeedScope> = (authors.map(FeedScope::author).into_iter())
        .chain(tags.map(FeedScope::tag))
        .collect();
    assert_eq!(store.named_scopes(at(2000)).await.unwrap(), expected);
    for table in ["article_authors", "article_tags"] {
        let plan = store.query_plan(&distinct_names_sql(table), 1, None).await;
        let walks: Vec<&String> = scans(&plan)
            .into_iter()
            .filter(|step| !step.starts_with("SCAN names"))
            .collect();
        assert!(walks.is_empty(), "{plan:?}");
    }
    store.close().await;
}

#[tokio::test]
async fn names_stored_before_their_rows_carried_feed_times_still_show_in_their_feeds() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    // A database as the previous version left it: schema up to 0006, one article by one
    // author with one tag, and one retracted.
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join(super::sqlite::DATABASE_FILE))
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let mut migrator = sqlx::migrate!("src/storage/migrations/sqlite");
        let before: Vec<_> = migrator
            .migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect();
        migrator.migrations = before.into();
        migrator.run(&mut conn).await.unwrap();
        let minute = at(1).timestamp_nanos_opt().unwrap();
        // Written half a minute after their publish time: migration 0016 dates their feeds
        // by that write, as before it.
        let changed = minute + 30_000_000_000;
        sqlx::raw_sql(&format!(
            "INSERT INTO partners (id, name, token_hash, token_prefix, all_sections, sections,
                 create_time) VALUES (1, 'newsroom', 'h', 'fp_', 1, '[]', 0);
             INSERT INTO articles (partner_id, article_id, guid, section, state, title, subtitle,
                 kicker, authors, summary, content_html, content_text, tags, canonical_url,
                 publish_time, update_time, updated, expire_time, create_time, change_time,
                 retract_time, retract_reason, etag, embargo_time, media, language)
             VALUES
                 (1, 'old', 'g-old', 'rural', 1, '右玉', '', '', '[\"{AUTHOR}\"]', '', '<p>x</p>',
                  NULL, '[\"{TAG}\"]', NULL, {minute}, NULL, {minute}, NULL, {minute}, {changed},
                  NULL, '', 'e', NULL, '[]', NULL),
                 (1, 'gone', 'g-gone', 'rural', 2, '右玉', '', '', '[\"{AUTHOR}\"]', '', '<p>x</p>',
                  NULL, '[\"{TAG}\"]', NULL, {minute}, NULL, {minute}, NULL, {minute}, {changed},
                  {minute}, '', 'e', NULL, '[]', NULL);
             INSERT INTO article_authors VALUES ('{AUTHOR}', 1, 'old'), ('{AUTHOR}', 1, 'gone');
             INSERT INTO article_tags VALUES ('{TAG}', 1, 'old'), ('{TAG}', 1, 'gone');"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for scope in [FeedScope::author(AUTHOR), FeedScope::tag(TAG)] {
        let content = store
            .feed_content(&scope, at(2), 50, TimeDelta::hours(1))
            .await
            .unwrap();
        let shown: Vec<&str> = content.articles.iter().map(|a| a.guid.as_str()).collect();
        assert_eq!(shown, ["g-old"], "{scope:?}");
        assert_eq!(content.tombstones.len(), 1, "{scope:?}");
        assert_eq!(
            content.last_change,
            Some(at(1) + TimeDelta::seconds(30)),
            "{scope:?}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn a_closed_store_leaves_no_log_and_reopens_with_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    let store = std::sync::Arc::new(store);
    // Many at once, so that the writer commits them in groups, while feeds are read.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..100 {
        let (store, partner) = (store.clone(), partner.clone());
        calls.spawn(async move {
            publish(store.as_ref(), &partner, &format!("a-{n}"), n, |_| {}).await;
            let scope = FeedScope::Section(SectionSlug::parse("rural").unwrap());
            store
                .feed_content(&scope, at(2000), 50, TimeDelta::hours(1))
                .await
                .unwrap();
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
    store.close().await;
    let log = dir.path().join("feedpub.sqlite3-wal");
    assert!(
        std::fs::metadata(&log).map_or(true, |m| m.len() == 0),
        "the log is copied into the database at close"
    );

    let store = SqliteStore::open(dir.path()).await.unwrap();
    for n in 0..100 {
        let id = crate::domain::ArticleId::parse(&format!("a-{n}")).unwrap();
        assert!(
            store.article(partner.id, &id).await.unwrap().is_some(),
            "a-{n}"
        );
    }
    store.close().await;
}

/// A data folder and database the store creates are its owner's alone (they hold token
/// hashes, WebSub secrets, copy under embargo), the database's log too; a folder that
/// exists keeps its mode.
#[cfg(unix)]
#[tokio::test]
async fn a_new_data_folder_and_database_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new").join("data");
    let (store, partner) = store_with_partner(&data).await;
    publish(&store, &partner, "a-1", 1, |_| {}).await;
    assert_eq!(mode(&data) & 0o777, 0o700);
    assert_eq!(mode(&dir.path().join("new")) & 0o777, 0o700);
    for file in [
        "feedpub.sqlite3",
        "feedpub.sqlite3-wal",
        "feedpub.sqlite3-shm",
    ] {
        assert_eq!(mode(&data.join(file)) & 0o777, 0o600, "{file}");
    }
    drop(store);
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
    SqliteStore::open(&shared).await.unwrap();
    assert_eq!(mode(&shared) & 0o777, 0o750);
}

/// What the writer commits is copied from the log into the database file soon after, by a
/// connection of its own: not only once the log reaches the size at which the writer copies
/// it (some 10,000 pages), which a few articles are far from. A copy of the database file
/// alone, without its log, holds every article, whole.
#[tokio::test]
async fn commits_are_copied_into_the_database_file_off_the_writers_path() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    for n in 0..3 {
        publish(&store, &partner, &format!("a-{n}"), n, |_| {}).await;
    }
    let file = dir.path().join(super::sqlite::DATABASE_FILE);
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.sqlite3");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut found = (0, String::new());
    while std::time::Instant::now() < deadline {
        // A copy taken while a checkpoint writes may be torn: taken again until whole.
        std::fs::copy(&file, &copy).unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&copy);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let articles = sqlx::query_scalar("SELECT count(*) FROM articles")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        let integrity = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| e.to_string());
        conn.close().await.unwrap();
        found = (articles, integrity);
        if found == (3, "ok".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        found,
        (3, "ok".to_owned()),
        "articles and integrity of the file alone"
    );
    store.close().await;
}

/// Which articles a feed shows, and when each last changed, come from indexes alone: the
/// newest from the feed's covering index, in feed order, then the open archive page's and
/// the corrected ones', each walked for no more than a page. Author and tag feeds look up
/// the name rows of those not among the newest by primary key, and the article rows' keys
/// from their ids' index. No body's overflow pages are read for it.
#[tokio::test]
async fn a_feeds_keys_are_read_from_indexes_alone_in_feed_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    publish(&store, &partner, "a-1", 1, |_| {}).await;
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    for (scope, value, source, first) in [
        (
            FeedScope::All,
            None,
            "articles",
            "USING COVERING INDEX articles_all_feed (state=?",
        ),
        (
            rural,
            Some("rural"),
            "articles",
            "USING COVERING INDEX articles_section_feed (section=? AND state=?",
        ),
        (
            FeedScope::author(AUTHOR),
            Some(AUTHOR),
            "article_authors",
            "USING COVERING INDEX article_authors_feed (name=? AND state=?",
        ),
        (
            FeedScope::tag(TAG),
            Some(TAG),
            "article_tags",
            "USING COVERING INDEX article_tags_feed (name=? AND state=?",
        ),
    ] {
        let keys = store.query_plan(&FeedSql::of(&scope).keys, 2, value).await;
        // The newest from the feed's index; the open page's keys from the index of the
        // archive order, walked from its newest end for no more than a page; the rows of
        // those not among the newest by their keys. Sorted (a temporary B-tree) are at
        // most three pages of keys.
        let newest = keys.iter().filter(|s| s.contains(first)).count();
        assert_eq!(newest, 1, "{scope:?}: {keys:?}");
        let (created, changed) = match scope {
            FeedScope::All => (
                "SCAN articles USING COVERING INDEX articles_created".to_owned(),
                [
                    "articles_corrected (shown_change_time>?)".to_owned(),
                    "articles_embargo (embargo_time>? AND embargo_time<?)".to_owned(),
                ],
            ),
            FeedScope::Section(_) => (
                "SEARCH articles USING COVERING INDEX articles_section_created (section=?)"
                    .to_owned(),
                [
                    "articles_section_corrected (section=? AND shown_change_time>?)".to_owned(),
                    "articles_section_embargo (section=? AND embargo_time>? AND embargo_time<?)"
                        .to_owned(),
                ],
            ),
            FeedScope::Author(_) | FeedScope::Tag(_) => (
                format!("SEARCH {source} USING COVERING INDEX {source}_archive (name=?)"),
                [
                    format!("{source}_corrected (name=? AND shown_change_time>?)"),
                    format!("{source}_embargo (name=? AND embargo_time>? AND embargo_time<?)"),
                ],
            ),
        };
        assert!(keys.contains(&created), "{scope:?}: {keys:?}");
        // The keys of what was corrected or came into view since the oldest of the newest
        // was published, from the partial indexes of corrections and embargo ends alone.
        // Those of corrections from the index alone; those of embargo ends, few, each
        // with its row, for the test of being in view.
        let [corrected, ended] = changed;
        let step = format!("SEARCH {source} USING COVERING INDEX {corrected}");
        assert!(keys.contains(&step), "{scope:?}: {keys:?}");
        let step = format!("SEARCH {source} USING INDEX {ended}");
        assert!(keys.contains(&step), "{scope:?}: {keys:?}");
        // Rows looked up by key: SQLite's article rows by rowid, name rows by their primary
        // key, and the rowids of the name rows' articles from the index of their ids.
        let by_key = if source == "articles" {
            vec!["SEARCH articles USING INTEGER PRIMARY KEY (rowid=?)".to_owned()]
        } else {
            vec![
                format!(
                    "SEARCH {source} USING PRIMARY KEY (name=? AND partner_id=? AND article_id=?)"
                ),
                "SEARCH articles USING COVERING INDEX sqlite_autoindex_articles_2 \
                 (partner_id=? AND article_id=?)"
                    .to_owned(),
            ]
        };
        let looked_up: Vec<&String> = keys
            .iter()
            .filter(|s| s.contains(&format!(" {source} ")) || s.contains(" articles "))
            .filter(|s| !s.contains(" INDEX ") || s.contains("sqlite_autoindex"))
            .collect();
        for step in &looked_up {
            assert!(by_key.contains(step), "{scope:?}: {step} in {keys:?}");
        }
        if source != "articles" {
            assert_eq!(looked_up.len(), 2, "{scope:?}: {keys:?}");
        }
        let walked: Vec<_> = scans(&keys)
            .into_iter()
            .filter(|s| s.starts_with("SCAN articles") || s.starts_with("SCAN article_"))
            .filter(|s| **s != created)
            .collect();
        assert!(walked.is_empty(), "{scope:?}: {keys:?}");
    }
    // The rows the cache lacks, each by its key.
    let rows = store.query_plan(feed_rows_sql(), 0, Some("[1]")).await;
    assert!(
        rows.iter()
            .any(|s| s.starts_with("SEARCH articles USING INTEGER PRIMARY KEY (rowid=?)")),
        "{rows:?}"
    );
    store.close().await;
}

/// Jobs the writer finds queued together are undone one by one when one of them fails with a
/// database error (here a trigger refusing the events of articles whose id starts with
/// `bad-`, written after their rows): a job first in the transaction back to the
/// transaction's start (begun again), the others back to their savepoint, and a group of
/// publishes undone together and run again one by one. Each failing publish gets its error
/// and stores nothing; every other is stored once, with its event, and the feeds' counts
/// (kept by triggers) match the rows.
#[tokio::test]
async fn jobs_queued_together_are_undone_alone_when_one_fails() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    let store = std::sync::Arc::new(store);
    let other = add_partner(store.as_ref(), "county").await;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join(super::sqlite::DATABASE_FILE));
    let mut lock = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON article_events
         WHEN NEW.article_id LIKE 'bad-%'
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&mut lock)
    .await
    .unwrap();
    // Rounds of calls queued while another connection holds the write lock: the first call
    // of a round waits for it alone, the rest queue behind it and are taken together.
    let rounds: [&[(&Partner, &str)]; 2] = [
        &[
            (&partner, "first-1"),
            (&partner, "bad-1"),
            (&other, "o-1"),
            (&partner, "a-1"),
            (&partner, "bad-2"),
            (&partner, "a-2"),
        ],
        &[
            (&partner, "first-2"),
            (&partner, "a-3"),
            (&partner, "bad-3"),
            (&partner, "a-4"),
        ],
    ];
    for calls in rounds {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut lock)
            .await
            .unwrap();
        let before = store.batches_run();
        let mut running = tokio::task::JoinSet::new();
        for (n, (owner, id)) in calls.iter().enumerate() {
            let (store, owner, id) = (store.clone(), (*owner).clone(), id.to_string());
            running.spawn(async move {
                let written = write(&id, n as i64, |_| {});
                let result = store
                    .publish(owner.id, written, at(1000), &actor(&owner))
                    .await;
                (id, result)
            });
            // Each call is queued before the next.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
        while let Some(call) = running.join_next().await {
            let (id, result) = call.unwrap();
            if id.starts_with("bad-") {
                let error = result.expect_err(&id).to_string();
                assert!(error.contains("refused by the test"), "{id}: {error}");
            } else {
                let revision = result.expect(&id);
                assert!(
                    matches!(revision, crate::domain::Revision::Created(_)),
                    "{id}"
                );
            }
        }
        // The first call alone (it was waiting for the lock), then all the others together.
        assert_eq!(store.batches_run() - before, 2);
    }
    for (owner, id) in rounds.iter().flat_map(|calls| calls.iter()) {
        let id = crate::domain::ArticleId::parse(id).unwrap();
        let stored = store.article(owner.id, &id).await.unwrap();
        assert_eq!(stored.is_some(), !id.as_str().starts_with("bad-"), "{id}");
    }
    for (sql, expected) in [
        ("SELECT COUNT(*) FROM articles", 7),
        ("SELECT COUNT(*) FROM article_events", 7),
        ("SELECT articles FROM feed_sizes WHERE kind = 'all'", 7),
        (
            "SELECT COUNT(*) FROM article_authors WHERE name = '刘磊'",
            7,
        ),
    ] {
        let found: i64 = sqlx::query_scalar(sql).fetch_one(&mut lock).await.unwrap();
        assert_eq!(found, expected, "{sql}");
    }
    store.close().await;
}

/// Migration 0017: in a store written before only full pages were archive pages, the
/// newest full page loses its link to the page that was filling. The upgrade dates that
/// page; the pages before it keep their dates, and keep them at later moves after them.
#[tokio::test]
async fn the_upgrade_to_full_pages_only_dates_the_newest_archive_page() {
    use super::contract_tests::publish_at;
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    // Two to a page: [0 1] [2 3], then 4 alone; first stored at minutes 1000 to 1004.
    for n in 0..5 {
        publish_at(&store, &partner, &format!("a-{n}"), (n, 1000 + n), |_| {}).await;
    }
    store.close().await;
    // As the previous version left it: 0017 not run, no move recorded.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join(super::sqlite::DATABASE_FILE));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(
        "DELETE FROM _sqlx_migrations WHERE version = 17;
         UPDATE feed_sizes SET shift_time = NULL, shift_from = NULL;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let upgraded = chrono::Utc::now() - TimeDelta::seconds(1);
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    for scope in [FeedScope::All, rural.clone(), FeedScope::author(AUTHOR)] {
        let page = |n| store.archive_page(&scope, n, 2, at(2000));
        let (first, newest) = (page(1).await.unwrap(), page(2).await.unwrap());
        assert_eq!(newest.pages, 2, "{scope:?}");
        let dated = newest.last_change.unwrap();
        assert!(dated >= upgraded, "{scope:?}: {dated} before the upgrade");
        assert_eq!(
            first.last_change,
            Some(at(1003)),
            "{scope:?}: page 2's fill"
        );
    }
    // A later move past page 2's end (a-4, on the open page) leaves page 1's date: the
    // upgrade did not pin every later move to every page.
    publish_at(&store, &partner, "a-4", (4, 1500), |d| {
        d.section = "culture".into()
    })
    .await;
    let first = store.archive_page(&rural, 1, 2, at(2000)).await.unwrap();
    assert_eq!(first.last_change, Some(at(1003)), "before the move's place");
    store.close().await;
}

/// A publish of one article waits for at most the chunk of a batch being written, not for
/// every chunk queued before it: the writer commits small jobs in a transaction of their
/// own before the next chunk, so one partner's batches cannot hold back another's calls.
#[tokio::test]
async fn a_single_publish_is_written_before_batch_chunks_queued_ahead_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, partner) = store_with_partner(dir.path()).await;
    let store = std::sync::Arc::new(store);
    const CHUNKS: usize = 6;
    const CHUNK: usize = 200;
    let mut chunks = Vec::new();
    for c in 0..CHUNKS {
        let writes = (0..CHUNK)
            .map(|n| write(&format!("bulk-{c}-{n}"), 1, |_| {}))
            .collect();
        let (store, partner) = (store.clone(), partner.clone());
        chunks.push(tokio::spawn(async move {
            store
                .publish_batch(partner.id, writes, at(1000), &actor(&partner))
                .await
                .unwrap()
        }));
    }
    // Queued behind the chunks (the first of them is being written by now).
    tokio::task::yield_now().await;
    store
        .publish(
            partner.id,
            write("single", 2, |_| {}),
            at(1000),
            &actor(&partner),
        )
        .await
        .unwrap();
    for chunk in chunks {
        assert!(chunk.await.unwrap().iter().all(Result::is_ok));
    }
    let head = *store.event_head().borrow();
    let everything = super::EventFilter {
        sections: None,
        embargoed: false,
    };
    let events = store
        .events(0, head, &everything, CHUNKS * CHUNK + 1)
        .await
        .unwrap();
    assert_eq!(events.len(), CHUNKS * CHUNK + 1);
    let single = events
        .iter()
        .position(|e| e.article.id.as_str() == "single")
        .unwrap();
    let chunks_after = events[single..]
        .iter()
        .filter_map(|e| e.article.id.as_str().strip_prefix("bulk-"))
        .filter_map(|id| id.split('-').next())
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        chunks_after.len() >= CHUNKS - 2,
        "the single publish waited for chunks queued after the first: {} chunks after it",
        chunks_after.len()
    );
    // Written in the order of their create times, which is the archive's order: no
    // article stored after the single one sorts before it, as one would on a page the
    // single one had filled.
    let created: Vec<_> = events.iter().map(|e| e.article.create_time).collect();
    assert!(created.is_sorted(), "stored out of create-time order");
    let single_created = events[single].article.create_time;
    assert!(
        events[single + 1..]
            .iter()
            .all(|e| e.article.create_time > single_created),
        "a chunk written after the single publish was created at or before it"
    );
}
