//! The storage contract: the same tests against every backend, SQLite in a temporary folder
//! and PostgreSQL in a fresh schema of the database `FEEDPUB_TEST_DATABASE_URL` names. Without
//! that variable PostgreSQL is skipped, with a message, except in CI (`CI` set), where the
//! tests fail instead.

use super::{
    ArchivePage, ArticleWrite, EventFilter, ListCursor, NewPartner, NewToken, Retraction, Store,
};
use super::{PostgresStore, SqliteStore, StoreError, WriteChecks};
use crate::domain::{
    Actor, Article, ArticleDraft, ArticleId, ArticleState, AuditFilter, AuditOperation, EventKind,
    FeedScope, HtmlPolicy, Outcome, Partner, PartnerId, PartnerName, Refusal, RequestKey, Revision,
    Right, Rights, RightsChange, SectionGrant, SectionSlug, TokenHash,
};
use crate::websub::{Callback, Secret, Subscription, Topic};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool};
use std::str::FromStr;
use std::sync::Arc;

/// The variable naming the PostgreSQL database the tests may create schemas in.
pub(crate) const DATABASE_URL_VARIABLE: &str = "FEEDPUB_TEST_DATABASE_URL";

/// One backend under test, with what it needs to be removed afterwards.
pub(super) struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    /// The same store as its own type, and what opens it again.
    opened: Opened,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(PgPool, String)>,
}

enum Opened {
    Sqlite(Arc<SqliteStore>, std::path::PathBuf),
    Postgres(Arc<PostgresStore>, Box<PgConnectOptions>),
}

impl Opened {
    async fn open(&self) -> Self {
        match self {
            Self::Sqlite(_, dir) => {
                Self::Sqlite(Arc::new(SqliteStore::open(dir).await.unwrap()), dir.clone())
            }
            Self::Postgres(_, options) => Self::Postgres(
                Arc::new(
                    PostgresStore::connect_with((**options).clone())
                        .await
                        .unwrap(),
                ),
                options.clone(),
            ),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store, _) => store.clone(),
            Self::Postgres(store, _) => store.clone(),
        }
    }
}

impl Backend {
    /// Closes the store and drops its schema.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin, schema)) = self.schema {
            drop_schema(&admin, &schema).await;
            admin.close().await;
        }
    }

    /// Closes the store and opens another on the same data: nothing cached, nothing kept
    /// from the first but what the database holds.
    pub async fn reopen(&mut self) {
        self.store.close().await;
        self.opened = self.opened.open().await;
        self.store = self.opened.store();
    }

    /// Runs `statement` on the store's database behind its back, as an operator with a
    /// database shell could.
    pub async fn execute(&self, statement: &str) {
        use sqlx::Connection;
        match (&self.opened, &self.schema) {
            (Opened::Sqlite(_, dir), _) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join(super::sqlite::DATABASE_FILE));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            (Opened::Postgres(..), Some((admin, schema))) => {
                let script =
                    format!("BEGIN; SET LOCAL search_path TO {schema}; {statement}; COMMIT;");
                sqlx::raw_sql(&script).execute(admin).await.unwrap();
            }
            (Opened::Postgres(..), None) => unreachable!("a PostgreSQL backend has a schema"),
        }
    }

    /// The PostgreSQL store, when this is that backend.
    pub fn postgres(&self) -> Option<&PostgresStore> {
        match &self.opened {
            Opened::Sqlite(..) => None,
            Opened::Postgres(store, _) => Some(store),
        }
    }

    /// How many rows the store's feed reads have fetched whole: those its cache lacked.
    pub fn feed_rows_kept(&self) -> usize {
        match &self.opened {
            Opened::Sqlite(store, _) => store.feed_rows_kept(),
            Opened::Postgres(store, _) => store.feed_rows_kept(),
        }
    }
}

/// Drops a schema the tests made, and everything in it.
async fn drop_schema(admin: &PgPool, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(admin)
        .await
        .unwrap();
}

/// The URL of the test database, when there is one; fails in CI when there is none.
pub(crate) fn test_database_url() -> Option<String> {
    match std::env::var(DATABASE_URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{DATABASE_URL_VARIABLE} is not set: CI must test the PostgreSQL backend")
        }
        _ => {
            eprintln!("PostgreSQL skipped: {DATABASE_URL_VARIABLE} is not set");
            None
        }
    }
}

/// A fresh SQLite store, and a fresh PostgreSQL one when a test database is configured.
pub(super) async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let mut backends = vec![Backend {
        name: "sqlite",
        store: sqlite.clone(),
        opened: Opened::Sqlite(sqlite, dir.path().to_owned()),
        _dir: Some(dir),
        schema: None,
    }];
    if let Some(url) = test_database_url() {
        let options = PgConnectOptions::from_str(&url).unwrap();
        let admin = PgPool::connect_with(options.clone()).await.unwrap();
        let mut random = [0_u8; 8];
        getrandom::fill(&mut random).unwrap();
        let schema = format!("contract_{}", hex::encode(random));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let options = options.options([("search_path", &schema)]);
        let store = Arc::new(PostgresStore::connect_with(options.clone()).await.unwrap());
        backends.push(Backend {
            name: "postgres",
            store: store.clone(),
            opened: Opened::Postgres(store, Box::new(options)),
            _dir: None,
            schema: Some((admin, schema)),
        });
    }
    backends
}

/// A test run against every backend: `$check(store: &dyn Store)`, or with `backend:`,
/// `$check(backend: &mut Backend)` for a check that reopens the store, reaches its database
/// behind its back, or asks what only that backend can tell.
macro_rules! contract {
    ($name:ident, $check:ident) => {
        #[tokio::test]
        async fn $name() {
            for backend in backends().await {
                eprintln!("backend: {}", backend.name);
                $check(backend.store.as_ref()).await;
                backend.finish().await;
            }
        }
    };
    (backend: $name:ident, $check:ident) => {
        #[tokio::test]
        async fn $name() {
            for mut backend in backends().await {
                eprintln!("backend: {}", backend.name);
                $check(&mut backend).await;
                backend.finish().await;
            }
        }
    };
}

pub(super) const AUTHOR: &str = "刘磊";
pub(super) const TAG: &str = "乡村振兴";

pub(super) fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 6, 7, 0, 0, 0).unwrap() + TimeDelta::minutes(minute)
}

pub(super) fn actor(partner: &Partner) -> Actor {
    Actor {
        partner: partner.name.clone(),
        peer: None,
    }
}

pub(super) async fn add_partner(store: &dyn Store, name: &str) -> Partner {
    store
        .add_partner(
            NewPartner {
                name: PartnerName::parse(name).unwrap(),
                rights: Rights {
                    sections: SectionGrant::All,
                    embargoed: true,
                },
                token_hash: TokenHash(format!("hash-{name}")),
                token_prefix: "fp_".into(),
            },
            at(0),
        )
        .await
        .unwrap()
}

/// The write of article `id` carrying the author and the tag; `change` tweaks the draft.
pub(super) fn write(
    id: &str,
    publish_minute: i64,
    change: impl FnOnce(&mut ArticleDraft),
) -> ArticleWrite {
    let mut draft = ArticleDraft {
        id: id.into(),
        section: "rural".into(),
        title: format!("右玉县 {id}"),
        authors: vec![AUTHOR.into(), "张智宙".into()],
        tags: vec![TAG.into()],
        content_text: "农旅融合助力乡村振兴".repeat(100),
        publish_time: Some(at(publish_minute)),
        ..Default::default()
    };
    change(&mut draft);
    let valid = draft.validate("", &HtmlPolicy::default()).unwrap();
    ArticleWrite::new(
        valid.id,
        valid.content,
        format!("tag:example.com,2023-06-07:newsroom/{id}"),
    )
}

/// Publishes article `id` at minute 1000; see `write`.
pub(super) async fn publish(
    store: &dyn Store,
    partner: &Partner,
    id: &str,
    publish_minute: i64,
    change: impl FnOnce(&mut ArticleDraft),
) -> Revision {
    publish_at(store, partner, id, (publish_minute, 1000), change).await
}

/// Publishes article `id` at the second of `minutes`, its publish time at the first; see
/// `write`.
pub(super) async fn publish_at(
    store: &dyn Store,
    partner: &Partner,
    id: &str,
    (publish_minute, minute): (i64, i64),
    change: impl FnOnce(&mut ArticleDraft),
) -> Revision {
    store
        .publish(
            partner.id,
            write(id, publish_minute, change),
            at(minute),
            &actor(partner),
        )
        .await
        .unwrap()
}

fn retraction(id: &str) -> Retraction {
    Retraction {
        id: ArticleId::parse(id).unwrap(),
        reason: "错误".into(),
        expected_etag: None,
        request: None,
        by_operator: false,
    }
}

/// What a feed of these articles must show at `now`: visible ones, newest publish time
/// first, then by GUID, at most `limit`.
fn expected(mut articles: Vec<Article>, now: DateTime<Utc>, limit: usize) -> Vec<String> {
    articles.retain(|a| a.is_visible(now));
    articles.sort_by(Article::feed_order);
    articles.into_iter().take(limit).map(|a| a.guid).collect()
}

contract!(
    names_have_feeds_once_an_article_of_theirs_has_come_into_view,
    check_names_with_feeds
);
/// The names of an embargoed or scheduled article get no feeds of their own before it comes
/// into view (a feed's title would give them away), nor those of one retracted before then.
async fn check_names_with_feeds(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let names = |author: &str, tag: &str| (vec![author.to_owned()], vec![tag.to_owned()]);
    // Stored at minute 1000 (see `publish`).
    for (id, publish_minute, embargo, expire, (authors, tags)) in [
        ("seen", 5, None, None, names("可见作者", "可见")),
        ("hidden", 5, Some(at(2000)), None, names("秘密作者", "并购")),
        ("soon", 3000, None, None, names("未来作者", "预告")),
        ("pulled", 5, Some(at(2000)), None, names("撤稿作者", "撤稿")),
        ("gone", 5, None, Some(at(1100)), names("过期作者", "过期")),
        ("stale", 5, None, Some(at(500)), names("陈旧作者", "陈旧")),
    ] {
        publish(store, &partner, id, publish_minute, |d| {
            d.embargo_time = embargo;
            d.expire_time = expire;
            d.authors = authors;
            d.tags = tags;
        })
        .await;
    }
    store
        .retract(partner.id, retraction("pulled"), at(1001), &actor(&partner))
        .await
        .unwrap();
    let seen = [FeedScope::author("可见作者"), FeedScope::tag("可见")];
    let hidden = [FeedScope::author("秘密作者"), FeedScope::tag("并购")];
    let soon = [FeedScope::author("未来作者"), FeedScope::tag("预告")];
    let pulled = [FeedScope::author("撤稿作者"), FeedScope::tag("撤稿")];
    // In view until it expired: its names keep (empty) feeds. Stored already expired: never
    // seen.
    let gone = [FeedScope::author("过期作者"), FeedScope::tag("过期")];
    let stale = [FeedScope::author("陈旧作者"), FeedScope::tag("陈旧")];
    for (minute, with, without) in [
        (
            1500,
            vec![&seen, &gone],
            vec![&hidden, &soon, &pulled, &stale],
        ),
        (
            2500,
            vec![&seen, &hidden, &gone],
            vec![&soon, &pulled, &stale],
        ),
        (
            3500,
            vec![&seen, &hidden, &soon, &gone],
            vec![&pulled, &stale],
        ),
    ] {
        let now = at(minute);
        let named = store.named_scopes(now).await.unwrap();
        let expected: std::collections::BTreeSet<&FeedScope> = with.into_iter().flatten().collect();
        assert_eq!(
            named.iter().collect::<std::collections::BTreeSet<_>>(),
            expected,
            "at minute {minute}"
        );
        for scope in expected {
            assert!(
                store.has_feeds(scope, now).await.unwrap(),
                "{scope:?} at {minute}"
            );
        }
        for scope in without.into_iter().flatten() {
            assert!(
                !store.has_feeds(scope, now).await.unwrap(),
                "{scope:?} at {minute}"
            );
        }
        assert!(store.has_feeds(&FeedScope::All, now).await.unwrap());
    }
}

contract!(
    the_first_stored_name_owns_a_shared_folder,
    check_first_carried
);
async fn check_first_carried(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let (early, late, never) = ("刘磊", "刘雷", "刘蕾");
    assert_eq!(store.first_carried(&[]).await.unwrap(), None);
    let authors = |names: &[&str]| -> Vec<FeedScope> {
        names.iter().map(|name| FeedScope::author(name)).collect()
    };
    assert_eq!(
        store.first_carried(&authors(&[early, late])).await.unwrap(),
        None
    );
    // Stored later but published earlier, and the other way round: the store time decides.
    publish_at(store, &partner, "late", (10, 2000), |d| {
        d.authors = vec![late.into()];
        d.tags = vec![late.into()];
    })
    .await;
    assert_eq!(
        store
            .first_carried(&authors(&[early, late, never]))
            .await
            .unwrap(),
        Some(FeedScope::author(late)),
        "the only name carried"
    );
    publish_at(store, &partner, "early", (20, 1000), |d| {
        d.authors = vec![early.into()];
        d.tags = vec![early.into()];
    })
    .await;
    for names in [[early, late, never], [never, late, early]] {
        assert_eq!(
            store.first_carried(&authors(&names)).await.unwrap(),
            Some(FeedScope::author(early)),
            "{names:?}"
        );
    }
    // Tags are looked up among tags.
    let tags = [FeedScope::tag(late), FeedScope::tag(early)];
    assert_eq!(
        store.first_carried(&tags).await.unwrap(),
        Some(FeedScope::tag(early))
    );
    // A tie of store times goes to the first name in order.
    publish_at(store, &partner, "tie", (30, 1000), |d| {
        d.authors = vec!["刘A".into(), "刘B".into()];
    })
    .await;
    assert_eq!(
        store
            .first_carried(&authors(&["刘B", "刘A"]))
            .await
            .unwrap(),
        Some(FeedScope::author("刘A"))
    );
    // A name added later to an older article is stored when it was added: another
    // partner's name, stored between, keeps the folder (else a name made to collide, added
    // to an old article, would take the feed over).
    let other = add_partner(store, "county").await;
    publish_at(store, &other, "old", (40, 500), |_| {}).await;
    publish_at(store, &partner, "carrier", (41, 600), |d| {
        d.tags = vec!["地震~!".into()];
        d.authors = vec!["王芳~!".into()];
    })
    .await;
    // Its names sort first: only when they were stored puts them after.
    publish_at(store, &other, "old", (40, 700), |d| {
        d.tags = vec!["地震".into()];
        d.authors = vec!["王芳".into()];
    })
    .await;
    assert_eq!(
        store
            .first_carried(&[FeedScope::tag("地震"), FeedScope::tag("地震~!")])
            .await
            .unwrap(),
        Some(FeedScope::tag("地震~!"))
    );
    assert_eq!(
        store
            .first_carried(&authors(&["王芳", "王芳~!"]))
            .await
            .unwrap(),
        Some(FeedScope::author("王芳~!"))
    );
}

contract!(
    author_and_tag_feeds_show_the_visible_newest_in_feed_order,
    check_author_and_tag_feeds
);
async fn check_author_and_tag_feeds(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    // Three articles per minute, so ties of publish_time are broken by GUID; one retracted,
    // one under embargo, one expired, one not published yet, one corrected out of the feeds.
    for n in 0..30 {
        publish(store, &partner, &format!("a-{n:02}"), n / 3, |_| {}).await;
    }
    publish(store, &partner, "embargoed", 40, |d| {
        d.embargo_time = Some(at(5000));
    })
    .await;
    publish(store, &partner, "expired", 41, |d| {
        d.expire_time = Some(at(500));
    })
    .await;
    publish(store, &partner, "scheduled", 3000, |_| {}).await;
    publish(store, &partner, "moved", 42, |_| {}).await;
    publish(store, &partner, "moved", 42, |d| {
        d.authors = vec!["武跃林".into()];
        d.tags = Vec::new();
    })
    .await;
    store
        .retract(partner.id, retraction("a-29"), at(1001), &actor(&partner))
        .await
        .unwrap();
    let now = at(1002);
    let mut all = Vec::new();
    for id in ["embargoed", "expired", "scheduled", "moved"]
        .map(String::from)
        .into_iter()
        .chain((0..30).map(|n| format!("a-{n:02}")))
    {
        let id = ArticleId::parse(&id).unwrap();
        all.push(store.article(partner.id, &id).await.unwrap().unwrap());
    }
    let carrying: Vec<Article> = all
        .iter()
        .filter(|a| a.content.authors.iter().any(|n| n == AUTHOR))
        .cloned()
        .collect();
    assert_eq!(carrying.len(), 33, "the corrected article left the author");
    for scope in [FeedScope::author(AUTHOR), FeedScope::tag(TAG)] {
        for limit in [10, 50] {
            let content = store
                .feed_content(&scope, now, limit, TimeDelta::hours(1))
                .await
                .unwrap();
            let shown: Vec<String> = content.articles.iter().map(|a| a.guid.clone()).collect();
            assert_eq!(shown, expected(carrying.clone(), now, limit), "{scope:?}");
            let tombstones: Vec<String> = content.tombstones.into_iter().map(|t| t.guid).collect();
            assert_eq!(tombstones, ["tag:example.com,2023-06-07:newsroom/a-29"]);
            assert_eq!(content.last_change, Some(at(1001)), "the retraction");
        }
    }
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    for scope in [FeedScope::All, rural] {
        let content = store
            .feed_content(&scope, now, 50, TimeDelta::hours(1))
            .await
            .unwrap();
        let shown: Vec<String> = content.articles.iter().map(|a| a.guid.clone()).collect();
        assert_eq!(shown, expected(all.clone(), now, 50), "{scope:?}");
        assert_eq!(content.last_change, Some(at(1001)), "{scope:?}");
    }
    // An empty scope has no last change; the transitions to come are the embargo's end and
    // the end of the tombstone's window.
    let empty = FeedScope::Section(SectionSlug::parse("notices").unwrap());
    let content = store
        .feed_content(&empty, now, 50, TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(content.articles.is_empty() && content.tombstones.is_empty());
    assert_eq!(content.last_change, None);
    assert_eq!(
        store
            .next_transition(now, TimeDelta::hours(1))
            .await
            .unwrap(),
        Some(at(1061)),
        "the tombstone's window ends"
    );
    assert_eq!(
        store
            .next_transition(at(1062), TimeDelta::hours(1))
            .await
            .unwrap(),
        Some(at(3000)),
        "the scheduled article"
    );
    let due = store
        .named_scopes_in_transition(at(2999), at(3000), TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(due.contains(&FeedScope::author(AUTHOR)), "{due:?}");
    assert!(due.contains(&FeedScope::tag(TAG)), "{due:?}");
    let named = store.named_scopes(now).await.unwrap();
    for scope in [
        FeedScope::author(AUTHOR),
        FeedScope::author("武跃林"),
        FeedScope::tag(TAG),
    ] {
        assert!(named.contains(&scope), "{scope:?} in {named:?}");
    }
}

contract!(
    tombstones_come_newest_first_then_by_guid_within_their_window_and_the_limit,
    check_tombstone_order
);
async fn check_tombstone_order(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    for n in 0..5 {
        publish(store, &partner, &format!("t-{n}"), n, |_| {}).await;
    }
    // t-0 out of the window by now; t-1 and t-2 at the same instant; t-4 still shown.
    for (id, minute) in [("t-0", 1001), ("t-2", 1100), ("t-1", 1100), ("t-3", 1110)] {
        store
            .retract(partner.id, retraction(id), at(minute), &actor(&partner))
            .await
            .unwrap();
    }
    let guid = |id: &str| format!("tag:example.com,2023-06-07:newsroom/{id}");
    let now = at(1120);
    for scope in [
        FeedScope::All,
        FeedScope::Section(SectionSlug::parse("rural").unwrap()),
        FeedScope::author(AUTHOR),
        FeedScope::tag(TAG),
    ] {
        for (limit, tombstones) in [(50, ["t-3", "t-1", "t-2"].as_slice()), (2, &["t-3", "t-1"])] {
            let content = store
                .feed_content(&scope, now, limit, TimeDelta::hours(1))
                .await
                .unwrap();
            let shown: Vec<String> = content.articles.iter().map(|a| a.guid.clone()).collect();
            assert_eq!(shown, [guid("t-4")], "{scope:?}");
            let gone: Vec<String> = content.tombstones.iter().map(|t| t.guid.clone()).collect();
            let expected: Vec<String> = tombstones.iter().map(|id| guid(id)).collect();
            assert_eq!(gone, expected, "{scope:?} limit {limit}");
            let when: Vec<DateTime<Utc>> = content.tombstones.iter().map(|t| t.when).collect();
            assert_eq!(when, [at(1110), at(1100), at(1100)][..tombstones.len()]);
            assert_eq!(content.last_change, Some(at(1110)), "{scope:?}");
            assert_eq!(content.archived, 5, "{scope:?}");
        }
    }
}

contract!(
    feeds_change_when_the_embargoes_of_their_own_articles_end,
    check_embargo_ends_per_scope
);
async fn check_embargo_ends_per_scope(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let economy = |d: &mut ArticleDraft| {
        d.section = "economy".into();
        d.authors = vec!["王五".into()];
        d.tags = vec!["财经".into()];
    };
    publish(store, &partner, "rural-embargo", 1, |d| {
        d.embargo_time = Some(at(2000));
    })
    .await;
    publish(store, &partner, "economy-embargo", 1, |d| {
        economy(d);
        d.embargo_time = Some(at(2100));
    })
    .await;
    // Retracted under embargo: never shown, so neither the retraction nor its embargo's end
    // changes anything.
    publish(store, &partner, "economy-retracted", 1, |d| {
        economy(d);
        d.embargo_time = Some(at(2200));
    })
    .await;
    store
        .retract(
            partner.id,
            retraction("economy-retracted"),
            at(1500),
            &actor(&partner),
        )
        .await
        .unwrap();
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let economy = FeedScope::Section(SectionSlug::parse("economy").unwrap());
    // Economy's only article is under embargo: its feeds have no date yet.
    for (now, scope, changed) in [
        (2050, FeedScope::All, Some(2000)),
        (2050, rural.clone(), Some(2000)),
        (2050, economy.clone(), None),
        (2050, FeedScope::author("王五"), None),
        (2500, FeedScope::All, Some(2100)),
        (2500, rural, Some(2000)),
        (2500, economy, Some(2100)),
        (2500, FeedScope::author(AUTHOR), Some(2000)),
        (2500, FeedScope::tag(TAG), Some(2000)),
        (2500, FeedScope::author("王五"), Some(2100)),
        (2500, FeedScope::tag("财经"), Some(2100)),
    ] {
        let content = store
            .feed_content(&scope, at(now), 50, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(content.last_change, changed.map(at), "{scope:?} at {now}");
        assert!(content.tombstones.is_empty(), "{scope:?} at {now}");
    }
    let window = TimeDelta::hours(1);
    assert_eq!(
        store.next_transition(at(1600), window).await.unwrap(),
        Some(at(2000))
    );
    assert_eq!(
        store.next_transition(at(2000), window).await.unwrap(),
        Some(at(2100))
    );
    assert_eq!(store.next_transition(at(2100), window).await.unwrap(), None);
}

contract!(
    writes_out_of_view_leave_the_dates_of_their_feeds,
    check_writes_out_of_view
);
/// A feed is dated by what it shows. Storing, editing or retracting an article under
/// embargo or before its publish time leaves the dates of its feeds as they were (so their
/// bytes and ETags, which an aggregator polls, do not tell that such copy is being written);
/// a publish time passed under embargo does not date them either. Putting a shown article
/// back under embargo dates them, and so does an embargo's end.
async fn check_writes_out_of_view(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let store_at = |id: &'static str, minute: i64, change: fn(&mut ArticleDraft)| {
        publish_at(store, &partner, id, (5, minute), change)
    };
    // Shown from its store at minute 1000.
    publish(store, &partner, "shown", 5, |_| {}).await;
    fn secret(d: &mut ArticleDraft) {
        d.tags = vec![TAG.into(), "独家".into()];
        d.publish_time = Some(at(1050));
        d.embargo_time = Some(at(3000));
    }
    store_at("secret", 1100, secret).await;
    store_at("soon", 1150, |d| d.publish_time = Some(at(3100))).await;
    store_at("secret", 1200, |d| {
        secret(d);
        d.title = "更正".into();
    })
    .await;
    store
        .retract(partner.id, retraction("soon"), at(1250), &actor(&partner))
        .await
        .unwrap();
    let scopes = [
        FeedScope::All,
        FeedScope::Section(SectionSlug::parse("rural").unwrap()),
        FeedScope::author(AUTHOR),
        FeedScope::tag(TAG),
    ];
    let dates = |now: i64| {
        let scopes = &scopes;
        async move {
            let mut dates = Vec::new();
            for scope in scopes.iter().chain([&FeedScope::tag("独家")]) {
                let content = store
                    .feed_content(scope, at(now), 50, TimeDelta::hours(1))
                    .await
                    .unwrap();
                let page = whole_history(store, scope, at(now)).await;
                dates.push((content.last_change, page.last_change));
            }
            dates
        }
    };
    // Too few articles to fill an archive page of 50: no write, whatever it shows, changes
    // the `prev-archive` link of the current documents.
    let dated = |shown: Option<i64>, secret: Option<i64>| {
        let mut dates = vec![(shown.map(at), shown.map(at)); 4];
        dates.push((secret.map(at), secret.map(at)));
        dates
    };
    assert_eq!(dates(1300).await, dated(Some(1000), None), "out of view");
    // Back under embargo: the feeds that showed it change.
    store_at("shown", 1400, |d| d.embargo_time = Some(at(3200))).await;
    assert_eq!(dates(1450).await, dated(Some(1400), None), "hidden again");
    store_at("shown", 1500, |d| {
        d.embargo_time = Some(at(3200));
        d.title = "更正".into();
    })
    .await;
    assert_eq!(dates(1550).await, dated(Some(1400), None), "edited hidden");
    assert_eq!(
        dates(3050).await,
        dated(Some(3000), Some(3000)),
        "embargo ended"
    );
    // Moved out of view (another section, another byline): the archive pages it left
    // shift, and are dated by the move, but nothing the current documents show changed
    // (in sections shown already, so that no archive gains or loses a page).
    for (id, section, minute) in [
        ("culture-seen", "culture", 3090),
        ("politics-seen", "politics", 3091),
        ("economy-seen", "economy", 3092),
        ("sports-seen", "sports", 3093),
        ("notices-seen", "notices", 3094),
    ] {
        let write = write(id, 5, |d| {
            d.section = section.into();
            d.authors = vec!["赵六".into()];
            d.tags = Vec::new();
        });
        store
            .publish(partner.id, write, at(minute), &actor(&partner))
            .await
            .unwrap();
    }
    fn hidden_in(section: &str, d: &mut ArticleDraft) {
        d.section = section.into();
        d.embargo_time = Some(at(9000));
    }
    store_at("drifting", 3100, |d| hidden_in("culture", d)).await;
    store_at("drifting", 3150, |d| {
        hidden_in("politics", d);
        d.authors = vec!["王五".into()];
    })
    .await;
    // Shown, hidden again, then moved out of view: the section it left keeps the date of
    // its hiding, the one it joined has none, and `all` and its byline's feed, which it
    // stays in, keep theirs.
    fn leaving(d: &mut ArticleDraft) {
        d.section = "economy".into();
        d.authors = vec!["李四".into()];
    }
    store_at("leaving", 3105, leaving).await;
    store_at("leaving", 3120, |d| {
        leaving(d);
        d.embargo_time = Some(at(9000));
    })
    .await;
    store_at("leaving", 3140, |d| {
        leaving(d);
        hidden_in("sports", d);
    })
    .await;
    // Retracted before its publish time: its expiry changes nothing shown.
    store_at("fleeting", 3101, |d| {
        d.section = "notices".into();
        d.publish_time = Some(at(3180));
        d.expire_time = Some(at(3185));
    })
    .await;
    store
        .retract(
            partner.id,
            retraction("fleeting"),
            at(3102),
            &actor(&partner),
        )
        .await
        .unwrap();
    let section = |slug: &str| FeedScope::Section(SectionSlug::parse(slug).unwrap());
    for (scope, shown) in [
        (section("culture"), Some(3090)),
        (section("politics"), Some(3091)),
        (FeedScope::author(AUTHOR), Some(3000)),
        (section("economy"), Some(3120)),
        (section("sports"), Some(3093)),
        (FeedScope::All, Some(3120)),
        (FeedScope::author("李四"), Some(3120)),
        (section("notices"), Some(3094)),
    ] {
        let content = store
            .feed_content(&scope, at(3190), 50, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(content.last_change, shown.map(at), "{scope:?}");
    }
    let page = whole_history(store, &FeedScope::author(AUTHOR), at(3190)).await;
    assert_eq!(page.last_change, Some(at(3150)), "the archive page it left");
}

contract!(
    copy_no_reader_saw_before_it_expired_dates_no_feed,
    check_expired_unseen
);
/// An article stored already expired, or moved into a feed after it expired, never came
/// or went in that feed: its publish and expire times do not date it (a feed dated by
/// them would take an old date on a fresh render and keep a newer one where it was served
/// before, so that two servers of one store disagreed). One shown before it expired
/// dates the feeds it was in by its expiry, as before.
async fn check_expired_unseen(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    // Shown from minute 1000 in rural, expired at 1200.
    publish_at(store, &partner, "seen", (5, 1000), |d| {
        d.expire_time = Some(at(1200));
    })
    .await;
    // Published at minute 5, expired at 1100, stored at 1150 in notices.
    publish_at(store, &partner, "late", (5, 1150), |d| {
        d.section = "notices".into();
        d.authors = vec!["王五".into()];
        d.tags = Vec::new();
        d.expire_time = Some(at(1100));
    })
    .await;
    let section = |slug: &str| FeedScope::Section(SectionSlug::parse(slug).unwrap());
    let date = |scope: FeedScope, now: i64| async move {
        store
            .feed_content(&scope, at(now), 50, TimeDelta::hours(1))
            .await
            .unwrap()
            .last_change
    };
    assert_eq!(date(section("notices"), 1300).await, None, "stored expired");
    assert_eq!(date(FeedScope::author("王五"), 1300).await, None);
    assert_eq!(
        date(section("rural"), 1300).await,
        Some(at(1200)),
        "expired"
    );
    // Stored again, still expired: nothing of it was shown, nothing is now.
    publish_at(store, &partner, "late", (5, 1310), |d| {
        d.section = "notices".into();
        d.authors = vec!["王五".into()];
        d.tags = Vec::new();
        d.expire_time = Some(at(1100));
        d.title = "更正".into();
    })
    .await;
    assert_eq!(date(section("notices"), 1350).await, None, "written again");
    // The expired article moves to culture, out of view: rural keeps the date of its
    // expiry; culture, which never showed it, has none.
    publish_at(store, &partner, "seen", (5, 1400), |d| {
        d.section = "culture".into();
        d.expire_time = Some(at(1200));
    })
    .await;
    assert_eq!(date(section("rural"), 1450).await, Some(at(1200)));
    assert_eq!(
        date(section("culture"), 1450).await,
        None,
        "moved in expired"
    );
    let page = whole_history(store, &section("culture"), at(1450)).await;
    assert_eq!(page.last_change, Some(at(1400)), "its archive page shifted");
    // `all` keeps it: the page that showed it until it expired is dated by the expiry
    // still, though the move cleared what its row kept of what feeds saw.
    let page = whole_history(store, &FeedScope::All, at(1450)).await;
    assert_eq!(page.last_change, Some(at(1200)), "the page it expired from");
    assert_eq!(date(FeedScope::All, 1450).await, Some(at(1200)));
}

contract!(
    copy_filed_behind_the_newest_is_in_the_current_documents_until_its_page_fills,
    check_open_page_shown
);
/// Every feed's current documents show the articles in view of their open archive page
/// (stored since the last full page) beside the newest by publish time: copy filed with an
/// older publish time than those is in no archive page yet, and would otherwise be in no
/// document at all until its page filled. The author's and the tag's feeds, which every
/// article in rural carries, show what rural shows (their rows carry the archive order).
async fn check_open_page_shown(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    store.set_archive_page(3);
    // The newest of all, in politics, under other names: `all` holds one article more than
    // rural.
    publish_at(store, &partner, "p-0", (20, 999), |d| {
        d.section = "politics".into();
        d.authors = vec!["张智宙".into()];
        d.tags = Vec::new();
    })
    .await;
    // Six in rural, stored in order: two full pages.
    for n in 0..6 {
        publish_at(
            store,
            &partner,
            &format!("a-{n}"),
            (10 + n, 1000 + n),
            |_| {},
        )
        .await;
    }
    // Filed later with an older publish time; then copy under embargo, as old.
    publish_at(store, &partner, "late", (1, 1010), |_| {}).await;
    publish_at(store, &partner, "embargoed", (2, 1011), |d| {
        d.embargo_time = Some(at(5000));
    })
    .await;
    let guid = |id: &str| format!("tag:example.com,2023-06-07:newsroom/{id}");
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let shown = |scope: FeedScope| async move {
        let content = store
            .feed_content(&scope, at(1100), 3, TimeDelta::hours(1))
            .await
            .unwrap();
        let guids: Vec<String> = content.articles.iter().map(|a| a.guid.clone()).collect();
        (guids, content.archive_pages(3))
    };
    let names = [FeedScope::author(AUTHOR), FeedScope::tag(TAG)];
    // Rural's open page holds the late copy (shown) and the embargoed (not); `all`, one
    // article more, has three full pages and none open.
    assert_eq!(
        shown(rural.clone()).await,
        (["a-5", "a-4", "a-3", "late"].map(guid).to_vec(), 2),
        "the newest three, then the open page's in view"
    );
    assert_eq!(
        shown(FeedScope::All).await,
        (["p-0", "a-5", "a-4"].map(guid).to_vec(), 3)
    );
    for name in names.clone() {
        assert_eq!(
            shown(name.clone()).await,
            shown(rural.clone()).await,
            "{name:?}"
        );
    }
    // Rural's page fills: the late copy is on it, and the current documents show the
    // newest; `all`'s open page holds what is among its newest already.
    publish_at(store, &partner, "a-6", (16, 1020), |_| {}).await;
    assert_eq!(
        shown(rural.clone()).await,
        (["a-6", "a-5", "a-4"].map(guid).to_vec(), 3)
    );
    assert_eq!(
        shown(FeedScope::All).await,
        (["p-0", "a-6", "a-5"].map(guid).to_vec(), 3)
    );
    for name in names.clone() {
        assert_eq!(
            shown(name.clone()).await,
            shown(rural.clone()).await,
            "{name:?}"
        );
    }
    for scope in [FeedScope::All, rural].into_iter().chain(names) {
        let page = store.archive_page(&scope, 3, 3, at(1100)).await.unwrap();
        let archived: Vec<String> = page.articles.iter().map(|a| a.guid.clone()).collect();
        assert!(archived.contains(&guid("late")), "{scope:?}: {archived:?}");
    }
}

contract!(
    corrections_and_late_arrivals_are_in_the_current_documents_while_new_copy_would_be,
    check_changes_shown
);
/// An article on an archive page that is corrected, moved into the feed, or comes into
/// view (its embargo ending) after the oldest of the newest was published is in the
/// current documents too, as new copy at that moment would be: readers may never fetch an
/// archive page again (RFC 5005 §4.2). It leaves when newer copy pushes that moment out,
/// and at most a page's worth of such articles is shown, the latest first. The author's and
/// the tag's feeds, which every article here carries, show what rural shows.
async fn check_changes_shown(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    store.set_archive_page(3);
    let now_written =
        |id: &'static str, minute: i64| publish_at(store, &partner, id, (minute, minute), |_| {});
    // Pages [a-0 a-1 a-2] [e-0 a-3 a-4] [a-5 a-6 a-7]: e-0 is under embargo until 300.
    for n in 0..3 {
        now_written(["a-0", "a-1", "a-2"][n], 100 + 10 * n as i64).await;
    }
    publish_at(store, &partner, "e-0", (125, 125), |d| {
        d.embargo_time = Some(at(300));
    })
    .await;
    for (n, id) in ["a-3", "a-4", "a-5", "a-6", "a-7"].into_iter().enumerate() {
        now_written(id, 130 + 10 * n as i64).await;
    }
    // In politics, to be moved into rural.
    publish_at(store, &partner, "m-0", (90, 90), |d| {
        d.section = "politics".into();
    })
    .await;
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let shown_in = |scope: FeedScope, minute: i64| async move {
        let content = store
            .feed_content(&scope, at(minute), 3, TimeDelta::hours(1))
            .await
            .unwrap();
        let ids: Vec<String> = content
            .articles
            .iter()
            .map(|a| a.id.as_str().to_owned())
            .collect();
        (ids, content.last_change)
    };
    // What the scope shows; rural's checked against the author's and the tag's.
    let shown = |scope: &FeedScope, minute: i64| {
        let (scope, names) = (scope.clone(), *scope == rural);
        async move {
            let shown = shown_in(scope, minute).await;
            if names {
                for name in [FeedScope::author(AUTHOR), FeedScope::tag(TAG)] {
                    assert_eq!(shown_in(name.clone(), minute).await, shown, "{name:?}");
                }
            }
            shown
        }
    };
    assert_eq!(shown(&rural, 199).await.0, ["a-7", "a-6", "a-5"]);
    // A correction of a-0, on the first archive page.
    publish_at(store, &partner, "a-0", (100, 200), |d| {
        d.title = "更正：右玉县".into();
    })
    .await;
    let (ids, date) = shown(&rural, 201).await;
    assert_eq!(ids, ["a-7", "a-6", "a-5", "a-0"]);
    assert_eq!(date, Some(at(200)));
    assert_eq!(shown(&FeedScope::All, 201).await.0, ids);
    // e-0's embargo ends; m-0 moves into rural.
    assert_eq!(shown(&rural, 299).await.0, ["a-7", "a-6", "a-5", "a-0"]);
    let (ids, date) = shown(&rural, 300).await;
    assert_eq!(ids, ["a-7", "a-6", "a-5", "e-0", "a-0"]);
    assert_eq!(date, Some(at(300)));
    publish_at(store, &partner, "m-0", (90, 302), |_| {}).await;
    let (ids, date) = shown(&rural, 303).await;
    assert_eq!(ids, ["a-7", "a-6", "a-5", "e-0", "a-0", "m-0"]);
    assert_eq!(date, Some(at(302)));
    // A page's worth at most, the latest changes first: a-0's correction is left out.
    publish_at(store, &partner, "a-1", (110, 304), |d| {
        d.title = "更正：右玉县 a-1".into();
    })
    .await;
    assert_eq!(
        shown(&rural, 305).await.0,
        ["a-7", "a-6", "a-5", "e-0", "a-1", "m-0"]
    );
    // Retractions write articles again too, but take no place of a correction (a-1's
    // retraction gives a-0's back); an article corrected after its embargo ended takes one
    // place, not two.
    for (n, id) in ["a-1", "a-2", "a-3"].into_iter().enumerate() {
        store
            .retract(
                partner.id,
                retraction(id),
                at(306 + n as i64),
                &actor(&partner),
            )
            .await
            .unwrap()
            .unwrap();
    }
    publish_at(store, &partner, "e-0", (125, 310), |d| {
        d.title = "更正：右玉县 e-0".into();
        d.embargo_time = Some(at(300));
    })
    .await;
    assert_eq!(
        shown(&rural, 311).await.0,
        ["a-7", "a-6", "a-5", "e-0", "a-0", "m-0"]
    );
    // Newer copy pushes those moments out once the oldest of the newest is later than
    // them: the newest alone again.
    for (n, id) in ["n-0", "n-1"].into_iter().enumerate() {
        now_written(id, 400 + 10 * n as i64).await;
    }
    assert_eq!(
        shown(&rural, 500).await.0,
        ["n-1", "n-0", "a-7", "e-0", "a-0", "m-0"]
    );
    now_written("n-2", 420).await;
    assert_eq!(shown(&rural, 500).await.0, ["n-2", "n-1", "n-0"]);
}

/// The scope's whole history as one archive page: full, and the newest.
async fn whole_history(store: &dyn Store, scope: &FeedScope, now: DateTime<Utc>) -> ArchivePage {
    let content = store
        .feed_content(scope, now, 50, TimeDelta::hours(1))
        .await
        .unwrap();
    let page = store
        .archive_page(scope, 1, content.archived.max(1), now)
        .await
        .unwrap();
    assert_eq!(page.pages, usize::from(content.archived > 0), "{scope:?}");
    page
}

contract!(
    a_write_out_of_view_that_changes_the_archive_pages_dates_the_feeds_linking_them,
    check_archive_link_dates
);
/// Copy out of view keeps a slot in its feeds' archives: a write of it that fills an
/// archive page (or, moving the copy away, takes a full page back below its size) changes
/// the `prev-archive` link of the feeds' current documents, so it dates them, as on every
/// replica; one that leaves the number of full pages as it was does not.
async fn check_archive_link_dates(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    store.set_archive_page(2);
    // Two shown at minute 1000: one full page.
    publish(store, &partner, "a-0", 5, |_| {}).await;
    publish(store, &partner, "a-1", 5, |_| {}).await;
    let store_at = |id: &'static str, minute: i64, change: fn(&mut ArticleDraft)| {
        publish_at(store, &partner, id, (5, minute), change)
    };
    fn hidden(d: &mut ArticleDraft) {
        d.embargo_time = Some(at(9000));
    }
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let politics = FeedScope::Section(SectionSlug::parse("politics").unwrap());
    let date = |scope: &FeedScope, now: i64| {
        let scope = scope.clone();
        async move {
            let content = store
                .feed_content(&scope, at(now), 50, TimeDelta::hours(1))
                .await
                .unwrap();
            (content.archive_pages(2), content.last_change)
        }
    };
    store_at("h-0", 1100, hidden).await;
    assert_eq!(
        date(&rural, 1150).await,
        (1, Some(at(1000))),
        "the open page is no archive page"
    );
    store_at("h-1", 1200, hidden).await;
    assert_eq!(
        date(&rural, 1250).await,
        (2, Some(at(1200))),
        "page 2 filled"
    );
    assert_eq!(date(&FeedScope::All, 1250).await, (2, Some(at(1200))));
    // Moved away: rural's four articles down to three leave one full page; politics has
    // none yet.
    store_at("h-1", 1300, |d| {
        hidden(d);
        d.section = "politics".into();
    })
    .await;
    assert_eq!(
        date(&rural, 1350).await,
        (1, Some(at(1300))),
        "page 2 no longer full"
    );
    assert_eq!(date(&politics, 1350).await, (0, None), "no page yet");
    store_at("h-0", 1400, |d| {
        hidden(d);
        d.section = "politics".into();
    })
    .await;
    assert_eq!(
        date(&rural, 1450).await,
        (1, Some(at(1300))),
        "still one page"
    );
    assert_eq!(
        date(&politics, 1450).await,
        (1, Some(at(1400))),
        "page 1 filled"
    );
    // One batch writing an article twice (its rows are written before the second write
    // is staged), then copy that fills politics' second page.
    let batch = vec![
        write("h-0", 5, |d| {
            hidden(d);
            d.section = "politics".into();
            d.title = "更正".into();
        }),
        write("h-0", 5, |d| {
            hidden(d);
            d.section = "politics".into();
            d.title = "再更正".into();
        }),
        write("h-2", 5, |d| {
            hidden(d);
            d.section = "politics".into();
        }),
        write("h-3", 5, |d| {
            hidden(d);
            d.section = "politics".into();
        }),
    ];
    let results = store
        .publish_batch(partner.id, batch, at(1500), &actor(&partner))
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        date(&politics, 1550).await,
        (2, Some(at(1500))),
        "page 2 filled in a batch"
    );
    let politics_now = store
        .feed_content(&politics, at(1550), 50, TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(politics_now.archived, 4, "h-0 written twice counts once");
}

contract!(
    archive_sizes_follow_new_moved_renamed_and_retracted_articles,
    check_archive_sizes
);
async fn check_archive_sizes(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    for n in 0..10 {
        publish(store, &partner, &format!("a-{n}"), n, |_| {}).await;
    }
    // A correction of the same article, a move to another section and author, a retraction.
    publish(store, &partner, "a-0", 0, |d| d.title = "更正".into()).await;
    publish(store, &partner, "a-1", 1, |d| {
        d.section = "politics".into();
        d.authors = vec!["武跃林".into()];
        d.tags = Vec::new();
    })
    .await;
    store
        .retract(partner.id, retraction("a-2"), at(1001), &actor(&partner))
        .await
        .unwrap();
    let sizes = [
        (FeedScope::All, 10),
        (FeedScope::Section(SectionSlug::parse("rural").unwrap()), 9),
        (
            FeedScope::Section(SectionSlug::parse("politics").unwrap()),
            1,
        ),
        (
            FeedScope::Section(SectionSlug::parse("notices").unwrap()),
            0,
        ),
        (FeedScope::author(AUTHOR), 9),
        (FeedScope::author("武跃林"), 1),
        (FeedScope::author("张智宙"), 9),
        (FeedScope::tag(TAG), 9),
        (FeedScope::tag("无人用过"), 0),
    ];
    for (scope, articles) in sizes {
        assert_eq!(
            store.archive_pages(&scope, 1).await.unwrap(),
            articles,
            "{scope:?}"
        );
        assert_eq!(
            store.archive_pages(&scope, 4).await.unwrap(),
            articles / 4,
            "{scope:?}"
        );
        // A feed's content carries the same size, read with it.
        let content = store
            .feed_content(&scope, at(2000), 50, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(content.archived, articles, "{scope:?}");
        assert_eq!(content.archive_pages(4), articles / 4, "{scope:?}");
    }
    // Pages in the order articles were first stored, showing the visible ones.
    let page = store
        .archive_page(&FeedScope::All, 1, 4, at(2000))
        .await
        .unwrap();
    assert_eq!(page.pages, 2, "ten articles fill two pages of four");
    let ids: Vec<&str> = page.articles.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a-3", "a-1", "a-0"], "a-2 is retracted");
    assert_eq!(page.last_change, Some(at(1001)));
}

contract!(
    an_archive_page_is_dated_by_what_it_shows_and_its_next_link,
    check_archive_page_dates
);
/// An archive page's date (its Last-Modified) moves whenever its bytes can: a write to
/// one of its articles, an expire time passing, and the next page filling.
async fn check_archive_page_dates(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    publish(store, &partner, "a-0", 0, |_| {}).await;
    publish(store, &partner, "a-1", 1, |d| {
        d.expire_time = Some(at(1500))
    })
    .await;
    let page = |now| async move {
        store
            .archive_page(&FeedScope::All, 1, 2, now)
            .await
            .unwrap()
    };
    let before = page(at(1100)).await;
    assert_eq!((before.articles.len(), before.pages), (2, 1));
    assert_eq!(before.last_change, Some(at(1000)), "the writes");
    let expired = page(at(1600)).await;
    assert_eq!(expired.articles.len(), 1);
    assert_eq!(expired.last_change, Some(at(1500)), "a-1 expired");
    // A third article opens page 2, which is no archive page until a fourth fills it; page
    // 1 then gains its `next` link.
    for (id, minute) in [("a-2", 1700), ("a-3", 1750)] {
        let opened = page(at(1720)).await;
        assert_eq!(opened.pages, 1, "{id}");
        assert_eq!(opened.last_change, Some(at(1500)), "{id}");
        store
            .publish(
                partner.id,
                write(id, 2, |_| {}),
                at(minute),
                &actor(&partner),
            )
            .await
            .unwrap();
    }
    let full = page(at(1800)).await;
    assert_eq!(full.pages, 2);
    assert_eq!(
        full.articles.len(),
        1,
        "page 1 shows a-0 alone: a-1 expired"
    );
    assert_eq!(full.last_change, Some(at(1750)), "page 2 filled");
}

contract!(
    a_feed_an_article_left_counts_the_move_as_its_last_change,
    check_last_change_of_a_move
);
/// An article moving out of a feed (another section, a byline or tag taken off) changes
/// what the feed shows, though no row of the feed's scope records it: the feed's last
/// change is the move, also when the feed is left empty.
async fn check_last_change_of_a_move(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    for (id, minute) in [("m-0", 1000), ("m-1", 1001)] {
        store
            .publish(
                partner.id,
                write(id, 0, |_| {}),
                at(minute),
                &actor(&partner),
            )
            .await
            .unwrap();
    }
    store
        .publish(
            partner.id,
            write("m-0", 0, |d| d.authors = vec!["张智宙".into()]),
            at(1100),
            &actor(&partner),
        )
        .await
        .unwrap();
    store
        .publish(
            partner.id,
            write("m-1", 0, |d| {
                d.section = "culture".into();
                d.authors = vec!["张智宙".into()];
            }),
            at(1200),
            &actor(&partner),
        )
        .await
        .unwrap();
    for (scope, shown) in [
        (FeedScope::Section(SectionSlug::parse("rural").unwrap()), 1),
        (FeedScope::author(AUTHOR), 0),
        (
            FeedScope::Section(SectionSlug::parse("culture").unwrap()),
            1,
        ),
    ] {
        let content = store
            .feed_content(&scope, at(2000), 50, TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(content.articles.len(), shown, "{scope:?}");
        assert_eq!(content.last_change, Some(at(1200)), "{scope:?}");
    }
}

contract!(
    archive_pages_an_article_moved_across_are_dated_by_the_move,
    check_archive_shifts
);
/// An article moving into or out of a feed shifts every archive page of it from its place
/// on; those pages are dated by the move, as is the page before (whose next page may have
/// filled or lost its last place: its `next` link), and the pages before that keep their
/// dates.
async fn check_archive_shifts(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let store_at = |id: &'static str, minute: i64, change: fn(&mut ArticleDraft)| {
        publish_at(store, &partner, id, (0, minute), change)
    };
    // First stored at minutes 1000 to 1007, two to a page: [0 1] [2 3] [4 5] [6 7].
    for n in 0..8 {
        let id: &'static str = ["a-0", "a-1", "a-2", "a-3", "a-4", "a-5", "a-6", "a-7"][n];
        store_at(id, 1000 + n as i64, |_| {}).await;
    }
    let rural = FeedScope::Section(SectionSlug::parse("rural").unwrap());
    let dates = |scope: &FeedScope| {
        let scope = scope.clone();
        async move {
            let mut dates = Vec::new();
            for page in 1..=4 {
                let read = store.archive_page(&scope, page, 2, at(2000)).await.unwrap();
                dates.push((read.articles.len(), read.last_change));
            }
            dates
        }
    };
    let last_changes = |dates: Vec<(usize, Option<DateTime<Utc>>)>| -> Vec<Option<i64>> {
        dates
            .into_iter()
            .map(|(_, d)| d.map(|d| (d - at(0)).num_minutes()))
            .collect()
    };
    let before = dates(&rural).await;
    let counts: Vec<usize> = before.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, [2, 2, 2, 2]);
    assert_eq!(
        last_changes(before),
        [Some(1003), Some(1005), Some(1007), Some(1007)],
        "the next pages' fills, the last write"
    );

    // a-5 leaves: [0 1] [2 3] [4 6], and 7 alone on the open page.
    store_at("a-5", 1200, |d| d.section = "culture".into()).await;
    assert_eq!(
        last_changes(dates(&rural).await),
        [Some(1003), Some(1200), Some(1200), None],
        "page 1 is as it was; page 2's next page lost a place: dated, its bytes unchanged"
    );
    // It comes back: [0 1] [2 3] [4 5] [6 7], pages 3 and 4 shifted again.
    store_at("a-5", 1300, |_| {}).await;
    assert_eq!(
        last_changes(dates(&rural).await),
        [Some(1003), Some(1300), Some(1300), Some(1300)]
    );
    // Moves between sections leave the feed of every article alone.
    assert_eq!(
        last_changes(dates(&FeedScope::All).await),
        [Some(1003), Some(1005), Some(1300), Some(1007)],
        "a-5's writes are on page 3"
    );

    // a-2 loses its tag: the tag's pages become [0 1] [3 4] [5 6], 7 on the open page.
    store_at("a-2", 1400, |d| d.tags.clear()).await;
    assert_eq!(
        last_changes(dates(&FeedScope::tag(TAG)).await),
        [Some(1400), Some(1400), Some(1400), None],
        "page 1's next page lost a-2: dated too, its bytes unchanged"
    );

    // A full last page gains its `next` link when an article joining the feed fills the
    // page after it.
    for (id, minute) in [("e-0", 1700), ("e-1", 1701), ("e-2", 1702)] {
        store_at(id, minute, |d| d.section = "economy".into()).await;
    }
    store_at("b", 1710, |d| d.section = "culture".into()).await;
    store_at("e-1", 1750, |d| {
        d.section = "economy".into();
        d.subtitle = "更正".into();
    })
    .await;
    let economy = FeedScope::Section(SectionSlug::parse("economy").unwrap());
    assert_eq!(
        last_changes(dates(&economy).await),
        [Some(1750), None, None, None],
        "e-2 alone is on the open page"
    );
    store_at("b", 1800, |d| d.section = "economy".into()).await;
    assert_eq!(
        last_changes(dates(&economy).await)[..2],
        [Some(1800); 2],
        "page 1 links to page 2 now"
    );
    // And keeps that date once later pages follow.
    store_at("e-3", 1900, |d| d.section = "economy".into()).await;
    store_at("e-4", 1901, |d| d.section = "economy".into()).await;
    assert_eq!(
        last_changes(dates(&economy).await)[..3],
        [Some(1800), Some(1901), Some(1901)]
    );
}

async fn read_feed(store: &dyn Store, scope: &FeedScope) -> Vec<Arc<Article>> {
    store
        .feed_content(scope, at(2000), 50, TimeDelta::hours(1))
        .await
        .unwrap()
        .articles
}

/// The scopes `publish` writes every article into.
fn every_scope_of_an_article() -> [FeedScope; 4] {
    [
        FeedScope::All,
        FeedScope::Section(SectionSlug::parse("rural").unwrap()),
        FeedScope::author(AUTHOR),
        FeedScope::tag(TAG),
    ]
}

/// Edits a-2, publishes a-4 and retracts a-3, all at minute 1000 like the first writes.
async fn edit_add_and_retract(store: &dyn Store, partner: &Partner) {
    publish(store, partner, "a-2", 2, |d| d.title = "右玉县 更正".into()).await;
    publish(store, partner, "a-4", 4, |_| {}).await;
    store
        .retract(partner.id, retraction("a-3"), at(1000), &actor(partner))
        .await
        .unwrap();
}

/// What every feed shows after `edit_add_and_retract`: id and title, in feed order.
const AFTER_THE_EDITS: [(&str, &str); 3] = [
    ("a-4", "右玉县 a-4"),
    ("a-2", "右玉县 更正"),
    ("a-1", "右玉县 a-1"),
];

fn ids_and_titles(articles: &[Arc<Article>]) -> Vec<(&str, &str)> {
    articles
        .iter()
        .map(|a| (a.id.as_str(), a.content.title.as_str()))
        .collect()
}

contract!(
    backend: a_feed_read_again_shows_every_write_since_as_a_fresh_read_does,
    check_feed_read_again
);
/// A feed read again shows what a store opened afresh reads from the rows, after edits, a
/// retraction and a new article, even when every write comes at the same instant: the
/// articles kept from the last read are used only in the version they were read in. Whole
/// rows are fetched once per article, whichever feed reads it first; none on a read with
/// nothing changed, and one per changed article after the writes.
async fn check_feed_read_again(backend: &mut Backend) {
    let store = backend.store.clone();
    let partner = add_partner(store.as_ref(), "newsroom").await;
    for n in 1..=3 {
        publish(store.as_ref(), &partner, &format!("a-{n}"), n, |_| {}).await;
    }
    let scopes = every_scope_of_an_article();
    for scope in scopes.iter().rev() {
        assert_eq!(read_feed(store.as_ref(), scope).await.len(), 3, "{scope:?}");
    }
    assert_eq!(backend.feed_rows_kept(), 3, "{}", backend.name);
    for scope in &scopes {
        assert_eq!(read_feed(store.as_ref(), scope).await.len(), 3, "{scope:?}");
    }
    assert_eq!(
        backend.feed_rows_kept(),
        3,
        "{}: nothing changed",
        backend.name
    );
    edit_add_and_retract(store.as_ref(), &partner).await;
    let mut again = Vec::new();
    for scope in &scopes {
        let articles = read_feed(store.as_ref(), scope).await;
        assert_eq!(ids_and_titles(&articles), AFTER_THE_EDITS, "{scope:?}");
        again.push(articles);
    }
    assert_eq!(
        backend.feed_rows_kept(),
        5,
        "{}: the edited article and the new one",
        backend.name
    );
    drop(store);
    backend.reopen().await;
    for (scope, articles) in scopes.iter().zip(again) {
        assert_eq!(
            read_feed(backend.store.as_ref(), scope).await,
            articles,
            "{scope:?}"
        );
    }
}

contract!(
    copy_a_retraction_took_down_stays_down_when_its_article_is_published_again,
    check_taken_down_events
);
/// Every event of an article up to its retraction tells copy taken down, also once the
/// article is published again with other copy (which its own events tell); an article
/// never retracted is told whole.
async fn check_taken_down_events(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    publish(store, &partner, "down", 1, |d| {
        d.title = "必须撤下的标题".into()
    })
    .await;
    publish(store, &partner, "kept", 2, |_| {}).await;
    store
        .retract(partner.id, retraction("down"), at(1001), &actor(&partner))
        .await
        .unwrap()
        .unwrap();
    publish_at(store, &partner, "down", (3, 1002), |d| {
        d.title = "重新发布的稿件".into()
    })
    .await;
    let everything = EventFilter {
        sections: None,
        embargoed: false,
    };
    let head = *store.event_head().borrow();
    let events = store.events(0, head, &everything, 10).await.unwrap();
    let told: Vec<(&str, EventKind, bool)> = events
        .iter()
        .map(|e| (e.article.id.as_str(), e.kind, e.taken_down))
        .collect();
    assert_eq!(told.len(), 4, "{told:?}");
    assert_eq!(
        told[..3],
        [
            ("down", EventKind::Published, true),
            ("kept", EventKind::Published, false),
            ("down", EventKind::Retracted, true),
        ]
    );
    assert_eq!((told[3].0, told[3].2), ("down", false), "{told:?}");
    assert_eq!(events[3].article.content.title, "重新发布的稿件");
}

contract!(
    corrections_keep_every_version_and_the_event_log_tells_them_in_order,
    check_versions_and_events
);
async fn check_versions_and_events(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let other = add_partner(store, "county").await;
    let first = publish(store, &partner, "a-1", 1, |_| {}).await;
    assert!(matches!(first, Revision::Created(_)));
    let again = publish(store, &partner, "a-1", 1, |_| {}).await;
    assert!(matches!(again, Revision::Unchanged(_)), "identical content");
    let corrected = publish(store, &partner, "a-1", 1, |d| d.title = "更正后".into()).await;
    assert!(corrected.is_new_version());
    assert_eq!(corrected.article().version, 2);
    publish(store, &partner, "politics", 2, |d| {
        d.section = "politics".into()
    })
    .await;
    let (retracted, changed) = store
        .retract(partner.id, retraction("a-1"), at(1001), &actor(&partner))
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(retracted.state, ArticleState::Retracted);
    let (_, changed) = store
        .retract(partner.id, retraction("a-1"), at(1002), &actor(&partner))
        .await
        .unwrap()
        .unwrap();
    assert!(!changed, "already retracted");
    assert!(
        store
            .retract(partner.id, retraction("none"), at(1002), &actor(&partner))
            .await
            .unwrap()
            .is_none()
    );
    let id = ArticleId::parse("a-1").unwrap();
    let versions = store
        .article_versions(partner.id, &id, None, 10)
        .await
        .unwrap();
    let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(versions[0].title, "更正后");
    assert_eq!(versions[1].title, "右玉县 a-1");
    let older = store
        .article_versions(partner.id, &id, Some(2), 10)
        .await
        .unwrap();
    assert_eq!(older, versions[1..]);
    let v1 = store
        .article_version(partner.id, &id, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.content, first.article().content);
    assert_eq!(v1.state, ArticleState::Retracted, "the state of now");
    assert!(
        store
            .article_version(partner.id, &id, 3)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .article_version(other.id, &id, 1)
            .await
            .unwrap()
            .is_none(),
        "another partner's"
    );

    let head = *store.event_head().borrow();
    assert_eq!(head, 4);
    let everything = EventFilter {
        sections: None,
        embargoed: false,
    };
    let events = store.events(0, head, &everything, 10).await.unwrap();
    let seen: Vec<(u64, EventKind, &str, u32)> = events
        .iter()
        .map(|e| (e.seq, e.kind, e.article.id.as_str(), e.article.version))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::Published, "a-1", 1),
            (2, EventKind::Updated, "a-1", 2),
            (3, EventKind::Published, "politics", 1),
            (4, EventKind::Retracted, "a-1", 2),
        ]
    );
    assert_eq!(events[0].article.content.title, "右玉县 a-1");
    assert_eq!(events[0].article.state, ArticleState::Published);
    assert_eq!(events[3].article.state, ArticleState::Retracted);
    assert_eq!(
        events[3].article.retract_reason, "",
        "the reason stays private"
    );
    assert_eq!(events[0].owner.as_str(), "newsroom");
    let politics = EventFilter {
        sections: Some(vec![SectionSlug::parse("politics").unwrap()]),
        ..everything.clone()
    };
    let events = store.events(0, head, &politics, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(store.events(1, 3, &everything, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.events(0, head, &everything, 1).await.unwrap().len(),
        1
    );

    // Listing, newest publish time first, in pages.
    let listed = store
        .list_articles(partner.id, None, None, 1)
        .await
        .unwrap();
    assert_eq!(listed[0].id.as_str(), "politics");
    let cursor = ListCursor {
        publish_time: listed[0].content.publish_time,
        id: listed[0].id.clone(),
    };
    let rest = store
        .list_articles(partner.id, None, Some(&cursor), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a-1"]);
    let rural = SectionSlug::parse("rural").unwrap();
    assert_eq!(
        store
            .list_articles(partner.id, Some(&rural), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_articles(other.id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

contract!(
    request_ids_and_etags_make_writes_safe_to_retry_and_to_race,
    check_requests_and_etags
);
async fn check_requests_and_etags(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let key = |payload: &[u8]| RequestKey::parse("req-1", "publish", payload).unwrap();
    let mut first = write("a-1", 1, |_| {});
    first.request = key(b"first");
    let created = store
        .publish(partner.id, first.clone(), at(1000), &actor(&partner))
        .await
        .unwrap();
    assert!(matches!(created, Revision::Created(_)));
    // The retry gets the first answer, even after a correction.
    let corrected = publish(store, &partner, "a-1", 1, |d| d.title = "更正".into()).await;
    let retried = store
        .publish(partner.id, first.clone(), at(1005), &actor(&partner))
        .await
        .unwrap();
    // The article as the first answer gave it (its change time, which no answer shows, is
    // the article's latest).
    let Revision::Unchanged(replayed) = retried else {
        panic!("a retry writes nothing: {retried:?}");
    };
    assert_eq!(
        Article {
            change_time: created.article().change_time,
            shown_change_time: created.article().shown_change_time,
            ..replayed
        },
        *created.article()
    );
    let mut reused = write("a-2", 1, |_| {});
    reused.request = key(b"second");
    let refused = store
        .publish(partner.id, reused, at(1006), &actor(&partner))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::RequestIdReused(_)),
        "{refused:?}"
    );
    assert!(
        store
            .article(partner.id, &ArticleId::parse("a-2").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // A precondition: the etag partners saw.
    let mut stale = write("a-1", 1, |d| d.title = "第三版".into());
    stale.expected_etag = Some(created.article().resource_etag());
    let refused = store
        .publish(partner.id, stale.clone(), at(1007), &actor(&partner))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::EtagMismatch(_)),
        "{refused:?}"
    );
    stale.expected_etag = Some(corrected.article().resource_etag());
    let third = store
        .publish(partner.id, stale, at(1008), &actor(&partner))
        .await
        .unwrap();
    assert_eq!(third.article().version, 3);

    // A batch: one refusal does not stop the others.
    let mut bad = write("b-2", 1, |_| {});
    bad.expected_etag = Some("\"nope\"".into());
    let results = store
        .publish_batch(
            partner.id,
            vec![write("b-1", 1, |_| {}), bad, write("b-3", 1, |_| {})],
            at(1009),
            &actor(&partner),
        )
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(StoreError::EtagMismatch(_))));

    // A retraction with a request id, retried.
    let mut retract = retraction("b-1");
    retract.request = RequestKey::parse("req-r", "retract", b"r").unwrap();
    let (first, changed) = store
        .retract(partner.id, retract.clone(), at(1010), &actor(&partner))
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    let (again, changed) = store
        .retract(partner.id, retract, at(1011), &actor(&partner))
        .await
        .unwrap()
        .unwrap();
    assert!(!changed);
    assert_eq!(again, first);
    assert_eq!(store.forget_requests(at(1011)).await.unwrap(), 2);
}

contract!(
    a_probe_write_commits_and_changes_nothing_stored,
    check_probe_write
);
async fn check_probe_write(store: &dyn Store) {
    let partner = add_partner(store, "wire").await;
    publish(store, &partner, "a-1", 1, |_| {}).await;
    let id = ArticleId::parse("a-1").unwrap();
    let before = store.article(partner.id, &id).await.unwrap();
    for _ in 0..3 {
        store.probe_write().await.unwrap();
    }
    let after = store.article(partner.id, &id).await.unwrap();
    assert!(after.is_some());
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
    // Still a working store.
    publish(store, &partner, "a-2", 2, |_| {}).await;
}

contract!(
    a_remembered_partner_writes_only_while_its_row_holds_its_token_and_rights,
    check_remembered_partner_in_the_write
);
async fn check_remembered_partner_in_the_write(store: &dyn Store) {
    let partner = add_partner(store, "wire").await;
    let bystander = add_partner(store, "county").await;
    let token = TokenHash("hash-wire".into());
    let name = partner.name.clone();
    let publish_as = |partner: &Partner, token: &TokenHash, writes: Vec<ArticleWrite>, at| {
        let checks = WriteChecks::of(partner, Some(token));
        let (id, actor) = (partner.id, actor(partner));
        async move {
            store
                .publish_checked(id, &checks, writes, at, &actor)
                .await
                .unwrap()
        }
    };
    let plain = |id: &str| write(id, 10, |_| {});
    let embargoed = |id: &str| write(id, 10, |d| d.embargo_time = Some(at(5000)));
    let stored = |partner: PartnerId, id: &'static str| async move {
        store
            .article(partner, &ArticleId::parse(id).unwrap())
            .await
            .unwrap()
            .map(|a| a.version)
    };
    let changed = |results: &[Result<Revision, StoreError>]| {
        !results.is_empty()
            && results
                .iter()
                .all(|r| matches!(r, Err(StoreError::CredentialChanged)))
    };
    let embargo_refused = |result: &Result<Revision, StoreError>| {
        matches!(result, Err(StoreError::Refused(Refusal::EmbargoNotGranted { partner }))
            if partner == "wire")
    };

    // While its row holds the token, a batch and a lone write go through.
    let results = publish_as(&partner, &token, vec![plain("w-1"), plain("w-2")], at(10)).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Revision::Created(_)))),
        "{results:?}"
    );

    // Under a token the row does not hold, or for a partner with no row, nothing is written.
    let refused = publish_as(
        &partner,
        &TokenHash("hash-other".into()),
        vec![plain("w-3")],
        at(11),
    )
    .await;
    assert!(changed(&refused), "{refused:?}");
    let mut gone = partner.clone();
    gone.id = PartnerId(partner.id.0 + bystander.id.0 + 100);
    let refused = publish_as(&gone, &token, vec![plain("w-3")], at(11)).await;
    assert!(changed(&refused), "{refused:?}");
    assert_eq!(stored(partner.id, "w-3").await, None);

    // Remembered with fewer rights than the row gives: the row's decide.
    let mut narrowed = partner.clone();
    narrowed.grant = SectionGrant::Only(vec![SectionSlug::parse("politics").unwrap()]);
    narrowed.embargoed = false;
    let results = publish_as(&narrowed, &token, vec![embargoed("w-3")], at(12)).await;
    assert!(
        matches!(results[0], Ok(Revision::Created(_))),
        "{results:?}"
    );

    // The row's rights narrowed since the partner was remembered with more: a new embargo,
    // and a correction of the article whose embargo runs, are refused; the write beside
    // them goes through.
    let deny = RightsChange {
        grant: false,
        rights: vec![Right::Embargoed],
    };
    let configured = vec![SectionSlug::parse("rural").unwrap()];
    store
        .change_rights(&name, deny, configured, at(13))
        .await
        .unwrap()
        .unwrap();
    let results = publish_as(
        &partner,
        &token,
        vec![
            embargoed("w-4"),
            plain("w-5"),
            write("w-3", 10, |d| d.title = "更正".into()),
        ],
        at(14),
    )
    .await;
    assert!(embargo_refused(&results[0]), "{results:?}");
    assert!(
        matches!(results[1], Ok(Revision::Created(_))),
        "{results:?}"
    );
    assert!(embargo_refused(&results[2]), "{results:?}");
    assert_eq!(stored(partner.id, "w-4").await, None);
    assert_eq!(stored(partner.id, "w-3").await, Some(1));

    // Rotated: the old token's write is refused before its request id is looked up, the
    // new token's is stored.
    let rotated = TokenHash("hash-wire-2".into());
    store
        .new_token(&name, rotation(rotated.clone(), "fp_", false), at(15))
        .await
        .unwrap()
        .unwrap();
    let mut retried = plain("w-6");
    retried.request = RequestKey::parse("req-w", "publish", b"w-6").unwrap();
    let refused = publish_as(&partner, &token, vec![retried.clone()], at(16)).await;
    assert!(changed(&refused), "{refused:?}");
    assert_eq!(stored(partner.id, "w-6").await, None);
    let results = publish_as(&partner, &rotated, vec![retried.clone()], at(16)).await;
    assert!(
        matches!(results[0], Ok(Revision::Created(_))),
        "{results:?}"
    );
    let refused = publish_as(&partner, &token, vec![retried], at(16)).await;
    assert!(changed(&refused), "a replay too: {refused:?}");

    // Revoked: any token is refused, and nothing written.
    store.revoke_partner(&name, at(17)).await.unwrap().unwrap();
    let refused = publish_as(&partner, &rotated, vec![plain("w-7"), plain("w-1")], at(18)).await;
    assert!(changed(&refused), "{refused:?}");
    assert_eq!(stored(partner.id, "w-7").await, None);
    assert_eq!(stored(partner.id, "w-1").await, Some(1));

    // Another partner's writes never depend on this one's row.
    let county = TokenHash("hash-county".into());
    let results = publish_as(&bystander, &county, vec![plain("c-1")], at(18)).await;
    assert!(
        matches!(results[0], Ok(Revision::Created(_))),
        "{results:?}"
    );
}

contract!(
    a_checked_publish_refuses_only_the_writes_whose_stored_article_the_rights_do_not_cover,
    check_rights_in_the_write
);
async fn check_rights_in_the_write(store: &dyn Store) {
    let partner = add_partner(store, "wire").await;
    publish(store, &partner, "w-1", 1, |_| {}).await;
    publish(store, &partner, "w-2", 1, |d| {
        d.embargo_time = Some(at(5000))
    })
    .await;
    let section = |slug: &str| SectionSlug::parse(slug).unwrap();
    let stored_section = |id: &'static str| async move {
        store
            .article(partner.id, &ArticleId::parse(id).unwrap())
            .await
            .unwrap()
            .map(|a| a.content.section.to_string())
    };

    // The partner now holds only politics, and no longer the embargo right: it may not move
    // its rural article out, nor touch the one whose embargo runs; a new article, and the
    // writes around the refused ones, go through.
    let narrowed = Partner {
        grant: SectionGrant::Only(vec![section("politics")]),
        embargoed: false,
        ..partner.clone()
    };
    let to_politics = |id: &str| write(id, 1, |d| d.section = "politics".into());
    let results = store
        .publish_checked(
            partner.id,
            &WriteChecks::of(&narrowed, None),
            vec![to_politics("w-1"), to_politics("w-3")],
            at(1010),
            &actor(&partner),
        )
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(StoreError::Refused(Refusal::SectionNotGranted { partner, section }))
            if partner == "wire" && section == "rural"),
        "{results:?}"
    );
    assert!(results[0].as_ref().unwrap_err().is_refusal());
    assert!(
        matches!(results[1], Ok(Revision::Created(_))),
        "{results:?}"
    );
    assert_eq!(stored_section("w-1").await.as_deref(), Some("rural"));
    assert_eq!(stored_section("w-3").await.as_deref(), Some("politics"));

    let no_embargo = Partner {
        embargoed: false,
        ..partner.clone()
    };
    let correct_at = |second| {
        let correction = write("w-2", 1, |d| d.title = "更正".into());
        let (checks, actor) = (WriteChecks::of(&no_embargo, None), actor(&partner));
        async move {
            store
                .publish_checked(partner.id, &checks, vec![correction], at(second), &actor)
                .await
                .unwrap()
        }
    };
    let refused = correct_at(1011).await;
    assert!(
        matches!(&refused[0], Err(StoreError::Refused(Refusal::EmbargoNotGranted { partner })) if partner == "wire"),
        "{refused:?}"
    );
    // Once the embargo is over the same correction is the partner's to make.
    let allowed = correct_at(6000).await;
    assert!(
        matches!(allowed[0], Ok(Revision::Updated { .. })),
        "{allowed:?}"
    );
    // Without rights to check, the store checks nothing: the move goes through.
    let moved = store
        .publish_batch(
            partner.id,
            vec![to_politics("w-1")],
            at(6001),
            &actor(&partner),
        )
        .await
        .unwrap();
    assert!(
        matches!(moved[0], Ok(Revision::Updated { .. })),
        "{moved:?}"
    );
    assert_eq!(stored_section("w-1").await.as_deref(), Some("politics"));
}

/// Runs the futures concurrently (each polled in turn, so that all of them are under way
/// before any finishes) and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

contract!(
    concurrent_publishes_each_get_their_own_result_time_event_and_audit_entry,
    check_concurrent_publishes
);
/// Many publishes of one partner at once (SQLite's writer runs those it finds queued
/// together): each call gets the result it would get alone, made at its own time, with one
/// event and one audit entry per stored change, and a refused call stores nothing.
async fn check_concurrent_publishes(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let other = add_partner(store, "county").await;
    let seed = publish(store, &partner, "c-seed", 1, |_| {}).await;
    let mut retry = write("c-retry", 1, |_| {});
    retry.request = RequestKey::parse("req-c", "publish", b"first").unwrap();
    let mut reused = write("c-reused", 1, |_| {});
    reused.request = RequestKey::parse("req-c", "publish", b"other").unwrap();
    let mut stale = write("c-seed", 1, |d| d.title = "过期的更正".into());
    stale.expected_etag = Some("\"stale\"".into());
    let mut calls: Vec<(PartnerId, ArticleWrite, i64)> = (0..40)
        .map(|n| (partner.id, write(&format!("c-{n:02}"), 2, |_| {}), 2000 + n))
        .collect();
    calls.push((other.id, write("c-other", 2, |_| {}), 2040));
    calls.push((partner.id, retry.clone(), 2041));
    calls.push((partner.id, retry, 2042));
    calls.push((partner.id, stale, 2043));
    let results = join_all(calls.iter().map(|(owner, write, minute)| {
        let actor = actor(if *owner == partner.id {
            &partner
        } else {
            &other
        });
        async move {
            store
                .publish(*owner, write.clone(), at(*minute), &actor)
                .await
        }
    }))
    .await;
    for (n, result) in results[..40].iter().enumerate() {
        let revision = result.as_ref().unwrap();
        assert!(matches!(revision, Revision::Created(_)), "{revision:?}");
        assert_eq!(revision.article().id.as_str(), format!("c-{n:02}"));
        assert_eq!(revision.article().create_time, at(2000 + n as i64));
    }
    assert!(matches!(results[40], Ok(Revision::Created(_))));
    assert_eq!(results[40].as_ref().unwrap().article().partner, other.id);
    // The same request twice: one stores, the other gets its answer, whichever came first.
    let retried: Vec<&Revision> = results[41..43]
        .iter()
        .map(|r| r.as_ref().unwrap())
        .collect();
    assert_eq!(
        retried
            .iter()
            .filter(|r| matches!(r, Revision::Created(_)))
            .count(),
        1
    );
    assert_eq!(retried[0].article(), retried[1].article());
    assert!(matches!(results[43], Err(StoreError::EtagMismatch(_))));
    let seed_now = store
        .article(partner.id, &ArticleId::parse("c-seed").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&seed_now, seed.article(), "a refused write stores nothing");
    // The request id is now taken: the same id with another payload is refused.
    let refused = store
        .publish(partner.id, reused, at(2050), &actor(&partner))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::RequestIdReused(_)),
        "{refused:?}"
    );

    // One event per stored change, at its call's time: the seed and 42 articles.
    let head = *store.event_head().borrow();
    let everything = EventFilter {
        sections: None,
        embargoed: false,
    };
    let events = store.events(0, head, &everything, 100).await.unwrap();
    assert_eq!(events.len(), 43);
    for event in &events[1..] {
        assert_eq!(event.kind, EventKind::Published);
        assert_eq!(event.time, event.article.create_time);
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // One audit entry per answered publish of the partner, at its call's time.
    let entries = store
        .audit_entries(&AuditFilter {
            partner: Some(partner.name.clone()),
            since: Some(at(2000)),
            limit: 100,
        })
        .await
        .unwrap();
    let mut seen: Vec<(String, Outcome, DateTime<Utc>)> = entries
        .iter()
        .filter(|e| e.operation == AuditOperation::Publish)
        .map(|e| (e.article_id.clone().unwrap_or_default(), e.outcome, e.time))
        .collect();
    seen.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    let mut expected: Vec<(String, Outcome, DateTime<Utc>)> = (0..40)
        .map(|n| (format!("c-{n:02}"), Outcome::Ok, at(2000 + n)))
        .collect();
    let retry_outcomes = match results[41] {
        Ok(Revision::Created(_)) => [Outcome::Ok, Outcome::Unchanged],
        _ => [Outcome::Unchanged, Outcome::Ok],
    };
    expected.push(("c-retry".into(), retry_outcomes[0], at(2041)));
    expected.push(("c-retry".into(), retry_outcomes[1], at(2042)));
    expected.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    assert_eq!(seen, expected);
}

contract!(
    embargoes_end_once_as_events_and_partners_see_them_by_right,
    check_embargoes
);
async fn check_embargoes(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    publish(store, &partner, "e-1", 1, |d| {
        d.embargo_time = Some(at(2000))
    })
    .await;
    publish(store, &partner, "e-2", 1, |d| {
        d.embargo_time = Some(at(2001))
    })
    .await;
    publish(store, &partner, "e-3", 1, |d| {
        d.embargo_time = Some(at(2002))
    })
    .await;
    // The third is retracted under embargo: its end logs nothing.
    store
        .retract(partner.id, retraction("e-3"), at(1001), &actor(&partner))
        .await
        .unwrap();
    assert_eq!(store.next_embargo_lift().await.unwrap(), Some(at(2000)));
    assert_eq!(
        store
            .next_transition(at(1002), TimeDelta::minutes(1))
            .await
            .unwrap(),
        Some(at(2000))
    );
    let outsider = EventFilter {
        sections: None,
        embargoed: false,
    };
    let head = *store.event_head().borrow();
    assert!(
        store
            .events(0, head, &outsider, 10)
            .await
            .unwrap()
            .is_empty(),
        "embargoed events are hidden from those without the right, their partner's too"
    );
    let entitled = EventFilter {
        embargoed: true,
        ..outsider.clone()
    };
    assert_eq!(store.events(0, head, &entitled, 10).await.unwrap().len(), 4);
    assert_eq!(store.lift_embargoes(at(2000)).await.unwrap(), 1);
    assert_eq!(store.lift_embargoes(at(2000)).await.unwrap(), 0, "once");
    assert_eq!(store.lift_embargoes(at(3000)).await.unwrap(), 1);
    assert_eq!(store.next_embargo_lift().await.unwrap(), None);
    let head = *store.event_head().borrow();
    let lifts: Vec<(EventKind, String, DateTime<Utc>)> = store
        .events(0, head, &outsider, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.article.id.to_string(), e.time))
        .collect();
    assert_eq!(
        lifts,
        [
            (EventKind::EmbargoLifted, "e-1".to_owned(), at(2000)),
            (EventKind::EmbargoLifted, "e-2".to_owned(), at(2001)),
        ]
    );
}

contract!(
    partners_are_added_rotated_limited_revoked_and_audited,
    check_partners
);
async fn check_partners(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    let name = PartnerName::parse("newsroom").unwrap();
    let taken = store
        .add_partner(
            NewPartner {
                name: name.clone(),
                rights: Rights {
                    sections: SectionGrant::All,
                    embargoed: false,
                },
                token_hash: TokenHash("other".into()),
                token_prefix: "fp_x".into(),
            },
            at(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    assert_eq!(
        store
            .partner_by_token(&TokenHash("hash-newsroom".into()))
            .await
            .unwrap(),
        Some(partner.clone())
    );
    assert_eq!(
        store.partner_by_name(&name).await.unwrap(),
        Some(partner.clone())
    );
    let (rotated, replaced) = store
        .new_token(
            &name,
            rotation(TokenHash("new".into()), "fp_new", false),
            at(2),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(replaced);
    assert_eq!(rotated.token_prefix, "fp_new");
    assert_eq!(rotated.rotate_time, Some(at(2)));
    assert!(
        store
            .partner_by_token(&TokenHash("hash-newsroom".into()))
            .await
            .unwrap()
            .is_none()
    );
    let rural = SectionSlug::parse("rural").unwrap();
    let politics = SectionSlug::parse("politics").unwrap();
    let (limited, changed) = store
        .change_rights(
            &name,
            RightsChange {
                grant: false,
                rights: vec![Right::Section(politics.clone()), Right::Embargoed],
            },
            vec![rural.clone(), politics.clone()],
            at(3),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(limited.partner.grant, SectionGrant::Only(vec![rural]));
    assert!(!limited.partner.embargoed);
    let (revoked, changed) = store.revoke_partner(&name, at(4)).await.unwrap().unwrap();
    assert!(changed);
    assert_eq!(revoked.revoke_time, Some(at(4)));
    let (_, changed) = store.revoke_partner(&name, at(5)).await.unwrap().unwrap();
    assert!(!changed);
    assert!(store.partner_by_name(&name).await.unwrap().is_none());
    assert!(
        store
            .partner_by_token(&TokenHash("new".into()))
            .await
            .unwrap()
            .is_none()
    );
    let records = store.partner_records().await.unwrap();
    assert_eq!(records, std::slice::from_ref(&revoked));
    assert_eq!(store.partner_record(&name).await.unwrap(), Some(revoked));
    let unknown = PartnerName::parse("nobody").unwrap();
    assert!(
        store
            .revoke_partner(&unknown, at(6))
            .await
            .unwrap()
            .is_none()
    );
    // A revoked partner is not rotated; restored, it is active again with a new token and
    // the rights it had, its revoked token still refused; an active one is not restored.
    let refused = rotation(TokenHash("again".into()), "fp_again", false);
    let (unchanged, replaced) = store
        .new_token(&name, refused, at(7))
        .await
        .unwrap()
        .unwrap();
    assert!(!replaced);
    assert_eq!(unchanged.revoke_time, Some(at(4)));
    assert!(store.partner_by_name(&name).await.unwrap().is_none());
    let (restored, replaced) = store
        .new_token(
            &name,
            rotation(TokenHash("back".into()), "fp_back", true),
            at(8),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(replaced);
    assert_eq!(restored.revoke_time, None);
    assert_eq!(restored.token_prefix, "fp_back");
    assert_eq!(restored.partner, limited.partner);
    let back = TokenHash("back".into());
    assert_eq!(
        store.partner_by_token(&back).await.unwrap().as_ref(),
        Some(&limited.partner)
    );
    for refused in ["new", "again"] {
        let hash = TokenHash(refused.into());
        assert!(store.partner_by_token(&hash).await.unwrap().is_none());
    }
    let (active, replaced) = store
        .new_token(
            &name,
            rotation(TokenHash("twice".into()), "fp_twice", true),
            at(9),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!replaced);
    assert_eq!(active, restored);
    assert!(store.partner_by_token(&back).await.unwrap().is_some());

    let entries = store
        .audit_entries(&AuditFilter {
            partner: Some(name.clone()),
            since: None,
            limit: 10,
        })
        .await
        .unwrap();
    let seen: Vec<(AuditOperation, Outcome)> =
        entries.iter().map(|e| (e.operation, e.outcome)).collect();
    assert_eq!(
        seen,
        [
            (AuditOperation::PartnerRestore, Outcome::Unchanged),
            (AuditOperation::PartnerRestore, Outcome::Ok),
            (AuditOperation::PartnerRotate, Outcome::Revoked),
            (AuditOperation::PartnerRevoke, Outcome::Unchanged),
            (AuditOperation::PartnerRevoke, Outcome::Ok),
            (AuditOperation::PartnerDeny, Outcome::Ok),
            (AuditOperation::PartnerRotate, Outcome::Ok),
            (AuditOperation::PartnerAdd, Outcome::Ok),
        ]
    );
    let since = store
        .audit_entries(&AuditFilter {
            partner: None,
            since: Some(at(4)),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 5);
    assert_eq!(entries[1].detail, "token fp_new replaced by fp_back");
    // Dates beyond what nanoseconds since 1970 hold: all before the one, none after the other.
    for (since, count) in [("1600-01-01T00:00:00Z", 8), ("2300-01-01T00:00:00Z", 0)] {
        let found = store
            .audit_entries(&AuditFilter {
                partner: Some(name.clone()),
                since: Some(since.parse().unwrap()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(found.len(), count, "since {since}");
    }
}

/// A new token for `partner rotate` or, with `restore`, `partner restore`.
fn rotation(hash: TokenHash, prefix: &str, restore: bool) -> NewToken {
    NewToken {
        hash,
        prefix: prefix.into(),
        restore,
    }
}

contract!(
    restorations_and_rotations_racing_leave_one_token,
    check_racing_tokens
);
/// Restorations and rotations of a revoked partner, all under way at once: exactly one
/// restoration makes it active, each rotation refused was decided before it, and the one
/// token that authenticates is the last one the store says it gave.
async fn check_racing_tokens(store: &dyn Store) {
    let partner = add_partner(store, "racer").await;
    let name = partner.name.clone();
    store.revoke_partner(&name, at(1)).await.unwrap().unwrap();
    // Reads at once first, so that a store with a pool has connections for every call.
    for read in join_all((0..12).map(|_| store.partner_record(&name))).await {
        assert!(read.unwrap().is_some());
    }
    let calls: Vec<NewToken> = (0..12)
        .map(|i| {
            let hash = TokenHash(format!("race-{i}"));
            rotation(hash, &format!("fp_{i}"), i % 2 == 0)
        })
        .collect();
    let results = join_all(
        calls
            .iter()
            .map(|token| store.new_token(&name, token.clone(), at(2))),
    )
    .await;
    let outcomes: Vec<(bool, bool)> = calls
        .iter()
        .zip(results)
        .map(|(token, result)| (token.restore, result.unwrap().unwrap().1))
        .collect();
    let restored = outcomes.iter().filter(|o| **o == (true, true)).count();
    assert_eq!(restored, 1, "{outcomes:?}");
    let record = store.partner_record(&name).await.unwrap().unwrap();
    assert_eq!(record.revoke_time, None);
    let mut holders: Vec<&NewToken> = Vec::new();
    for token in &calls {
        if store.partner_by_token(&token.hash).await.unwrap().is_some() {
            holders.push(token);
        }
    }
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(record.token_prefix, holders[0].prefix);
    let entries = store
        .audit_entries(&AuditFilter {
            partner: Some(name.clone()),
            since: Some(at(2)),
            limit: 100,
        })
        .await
        .unwrap();
    let done = entries.iter().filter(|e| e.outcome == Outcome::Ok).count();
    let replaced = outcomes.iter().filter(|(_, replaced)| *replaced).count();
    assert_eq!(
        (entries.len(), done),
        (calls.len(), replaced),
        "{entries:?}"
    );
    // The rotations refused are those the store took before the restoration.
    let refused_rotations = outcomes.iter().filter(|o| **o == (false, false)).count();
    let revoked = entries
        .iter()
        .filter(|e| e.operation == AuditOperation::PartnerRotate && e.outcome == Outcome::Revoked)
        .count();
    assert_eq!(refused_rotations, revoked);
}

contract!(
    subscriptions_are_renewed_listed_while_leased_and_expired,
    check_subscriptions
);
async fn check_subscriptions(store: &dyn Store) {
    let now = at(0);
    let subscription = |callback: &str, lease_seconds: i64| Subscription {
        topic: Topic::new("politics/atom.xml").unwrap(),
        callback: Callback::parse(callback).unwrap(),
        secret: Some(Secret::new(b"s\xffcret".to_vec()).unwrap()),
        verify_time: now,
        expire_time: now + TimeDelta::seconds(lease_seconds),
    };
    let topic = Topic::new("politics/atom.xml").unwrap();
    let kept = subscription("https://a.example/cb", 3600);
    let (here, there) = ("192.0.2.1", "2001:db8::/64");
    store
        .save_subscription(kept.clone(), here, now)
        .await
        .unwrap();
    store
        .save_subscription(subscription("https://b.example/cb", -1), here, now)
        .await
        .unwrap();
    let renewed = Subscription {
        secret: None,
        ..subscription("https://c.example/cb", 60)
    };
    store
        .save_subscription(subscription("https://c.example/cb", 1), there, now)
        .await
        .unwrap();
    store
        .save_subscription(renewed.clone(), here, now)
        .await
        .unwrap();
    // Counted while leased, by where they were first verified (a renewal keeps its place).
    let count = |address| store.count_subscriptions(address, now);
    assert_eq!(count(None).await.unwrap(), 2);
    assert_eq!(count(Some(here)).await.unwrap(), 1);
    assert_eq!(count(Some(there)).await.unwrap(), 1);
    assert_eq!(count(Some("192.0.2.9")).await.unwrap(), 0);
    // Subscribed again once its lease ended (before any sweep): a new one, counted where
    // it was verified now.
    let lapsed = "https://e.example/cb";
    for (lease_seconds, address) in [(-1, here), (60, "192.0.2.9")] {
        store
            .save_subscription(subscription(lapsed, lease_seconds), address, now)
            .await
            .unwrap();
    }
    assert_eq!(count(Some("192.0.2.9")).await.unwrap(), 1);
    assert_eq!(count(Some(here)).await.unwrap(), 1);
    let lapsed = Callback::parse(lapsed).unwrap();
    assert!(store.delete_subscription(&topic, &lapsed).await.unwrap());
    let active = store.active_subscriptions(&topic, None, now).await.unwrap();
    assert_eq!(active, [kept.clone(), renewed.clone()]);
    // One of them, by its callback: while leased only, renewed with its new secret.
    let one = |callback: &str, topic: &Topic| {
        let (topic, callback) = (topic.clone(), Callback::parse(callback).unwrap());
        async move {
            store
                .active_subscriptions(&topic, Some(&callback), now)
                .await
                .unwrap()
                .pop()
        }
    };
    assert_eq!(
        one("https://a.example/cb", &topic).await,
        Some(kept.clone())
    );
    assert_eq!(
        one("https://c.example/cb", &topic).await,
        Some(renewed.clone())
    );
    assert_eq!(
        one("https://b.example/cb", &topic).await,
        None,
        "lease ended"
    );
    assert_eq!(one("https://d.example/cb", &topic).await, None);
    let rural = Topic::new("rural/atom.xml").unwrap();
    assert_eq!(one("https://a.example/cb", &rural).await, None);
    assert_eq!(store.delete_expired_subscriptions(now).await.unwrap(), 1);
    assert!(
        store
            .delete_subscription(&topic, &renewed.callback)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_subscription(&topic, &renewed.callback)
            .await
            .unwrap()
    );
    let other = Topic::new("rural/atom.xml").unwrap();
    assert!(
        store
            .active_subscriptions(&other, None, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.active_subscriptions(&topic, None, now).await.unwrap(),
        [kept]
    );
}

/// Two stores on one PostgreSQL schema, as two replicas have, with what connects to it
/// and what removes it.
struct Replicas {
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    /// Connects to the schema.
    options: PgConnectOptions,
    admin: PgPool,
    schema: String,
}

impl Replicas {
    /// Closes both stores and drops the schema.
    async fn finish(self) {
        self.a.close().await;
        self.b.close().await;
        drop_schema(&self.admin, &self.schema).await;
        self.admin.close().await;
    }
}

/// [`Replicas`] on a fresh schema; `None` without a test database.
async fn postgres_replicas() -> Option<Replicas> {
    let url = test_database_url()?;
    let options = PgConnectOptions::from_str(&url).unwrap();
    let admin = PgPool::connect_with(options.clone()).await.unwrap();
    let mut random = [0_u8; 8];
    getrandom::fill(&mut random).unwrap();
    let schema = format!("replicas_{}", hex::encode(random));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let options = options.options([("search_path", &schema)]);
    let a = PostgresStore::connect_with(options.clone()).await.unwrap();
    let b = PostgresStore::connect_with(options.clone()).await.unwrap();
    Some(Replicas {
        a: Arc::new(a),
        b: Arc::new(b),
        options,
        admin,
        schema,
    })
}

/// A replica that starts listening after others committed reads the newest event at once,
/// not at its next poll: no notification will come for what was committed before.
#[tokio::test]
async fn a_replica_reads_the_newest_event_as_soon_as_it_listens() {
    let Some(replicas) = postgres_replicas().await else {
        return;
    };
    let a = replicas.a.as_ref();
    let partner = add_partner(a, "newsroom").await;
    publish(a, &partner, "a-1", 1, |_| {}).await;
    let newest = *a.event_head().borrow();
    assert!(newest >= 1, "the publish logged an event: {newest}");
    // A follower that has seen nothing, would poll only after an hour, and listens on a
    // channel of its own: the other tests' publishes notify the whole database.
    let pool = PgPool::connect_with(replicas.options.clone())
        .await
        .unwrap();
    let (head, mut seen) = tokio::sync::watch::channel(0);
    let channel = format!("{}_events", replicas.schema);
    let follower = tokio::spawn(async move {
        super::postgres::follow_events(
            pool,
            Arc::new(head),
            &channel,
            std::time::Duration::from_secs(3600),
            Default::default(),
        )
        .await
    });
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        seen.wait_for(|&seq| seq >= newest),
    )
    .await
    .expect("the follower read the newest event without waiting for its poll")
    .unwrap();
    follower.abort();
    replicas.finish().await;
}

/// A TCP relay to the database that can be cut (every connection through it closed, new
/// ones closed at once) and restored: the database out of reach, as a partition makes it.
struct Relay {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(database: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_cut, held) = (cut.clone(), connections.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let database = database.clone();
                let relayed = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(database).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(relayed.abort_handle());
            }
        });
        Self {
            port,
            cut,
            connections,
            accepting,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A replica whose database goes out of reach reports it (`/healthz` degraded and gRPC
/// health NOT_SERVING follow from the fault), and reports it back once the database
/// answers again, with no write of its own needed.
#[tokio::test]
async fn a_replica_reports_its_database_out_of_reach_and_back() {
    use crate::health::{Component, Health};
    let Some(replicas) = postgres_replicas().await else {
        return;
    };
    let options = replicas.options.clone();
    let relay = Relay::to((options.get_host().to_owned(), options.get_port())).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_with(options.host("127.0.0.1").port(relay.port))
        .await
        .unwrap();
    let health = Health::new();
    let faults = super::sqlite_checkpoint::FaultReport::default();
    faults.set(health.clone()).unwrap();
    let (head, _) = tokio::sync::watch::channel(0);
    let channel = format!("{}_events", replicas.schema);
    let follower = tokio::spawn(async move {
        super::postgres::follow_events(
            pool,
            Arc::new(head),
            &channel,
            std::time::Duration::from_millis(200),
            faults,
        )
        .await
    });
    let out_of_reach = |health: &Health| {
        health
            .faults()
            .iter()
            .any(|(component, _)| *component == Component::Replication)
    };
    let until = |want: bool| {
        let health = health.clone();
        async move {
            for _ in 0..300 {
                if out_of_reach(&health) == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("out of reach: {} after 30 s", !want);
        }
    };
    until(false).await;
    relay.cut();
    until(true).await;
    relay.restore();
    until(false).await;
    follower.abort();
    relay.accepting.abort();
    replicas.finish().await;
}

/// Each replica keeps its own decoded articles, and uses one only in the version the
/// database shows it in: a replica that read the feeds before another's edits, retraction
/// and new article, all at the same instant, shows every one of them on its next read.
#[tokio::test]
async fn a_replica_shows_the_writes_of_another_in_feeds_it_read_before() {
    let Some(replicas) = postgres_replicas().await else {
        return;
    };
    let (a, b) = (replicas.a.clone(), replicas.b.clone());
    let partner = add_partner(a.as_ref(), "newsroom").await;
    for n in 1..=3 {
        publish(a.as_ref(), &partner, &format!("a-{n}"), n, |_| {}).await;
    }
    let scopes = every_scope_of_an_article();
    for scope in &scopes {
        assert_eq!(read_feed(a.as_ref(), scope).await.len(), 3, "{scope:?}");
    }
    edit_add_and_retract(b.as_ref(), &partner).await;
    for scope in &scopes {
        let on_a = read_feed(a.as_ref(), scope).await;
        assert_eq!(ids_and_titles(&on_a), AFTER_THE_EDITS, "{scope:?}");
        assert_eq!(on_a, read_feed(b.as_ref(), scope).await, "{scope:?}");
    }
    replicas.finish().await;
}

/// Two replicas racing corrections of the same articles, with request ids, end as some
/// serial order would: versions numbered without gaps or repeats, one event per version,
/// in sequence order with no hole, archive counts equal to the rows, and each request id
/// answered once.
#[tokio::test]
async fn replicas_racing_on_the_same_articles_end_as_some_serial_order() {
    let Some(replicas) = postgres_replicas().await else {
        return;
    };
    let (a, b) = (replicas.a.clone(), replicas.b.clone());
    let partner = add_partner(a.as_ref(), "newsroom").await;
    let rounds = 20;
    let race = |store: Arc<dyn Store>, replica: &'static str| {
        let partner = partner.clone();
        tokio::spawn(async move {
            for round in 0..rounds {
                for id in ["a-1", "a-2", "a-3"] {
                    let mut w = write(id, 1, |d| {
                        d.title = format!("{replica} {round}");
                        d.section = if round % 2 == 0 { "rural" } else { "politics" }.into();
                        d.tags = vec![format!("{replica}-{}", round % 3)];
                    });
                    w.request =
                        RequestKey::parse(&format!("{replica}-{round}-{id}"), "publish", b"x")
                            .unwrap();
                    store
                        .publish(partner.id, w, at(1000 + round), &actor(&partner))
                        .await
                        .unwrap();
                }
            }
        })
    };
    let (one, two) = (race(a.clone(), "a"), race(b.clone(), "b"));
    one.await.unwrap();
    two.await.unwrap();

    // Each replica announces its own commits at once, the other's when notified: the
    // newer of the two heads is the last commit.
    let head = (*a.event_head().borrow()).max(*b.event_head().borrow());
    let every = EventFilter {
        sections: None,
        embargoed: true,
    };
    let events = a.events(0, head, &every, 10_000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "no hole, no repeat");
    for id in ["a-1", "a-2", "a-3"] {
        let id = ArticleId::parse(id).unwrap();
        let versions = b
            .article_versions(partner.id, &id, None, 1000)
            .await
            .unwrap();
        let numbers: Vec<u32> = versions.iter().rev().map(|v| v.version).collect();
        let count = u32::try_from(numbers.len()).unwrap();
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>(), "{id:?}");
        // Each version follows the one before: its event shows exactly that content.
        let logged: Vec<u32> = events
            .iter()
            .filter(|e| e.article.id == id)
            .map(|e| e.article.version)
            .collect();
        assert_eq!(logged, (1..=count).collect::<Vec<_>>(), "{id:?}");
        for event in events.iter().filter(|e| e.article.id == id) {
            let stored = a
                .article_version(partner.id, &id, event.article.version)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.content, event.article.content);
        }
    }
    // The archive counts kept by both writers equal the rows.
    let articles = a.list_articles(partner.id, None, None, 100).await.unwrap();
    assert_eq!(articles.len(), 3);
    assert_eq!(a.archive_pages(&FeedScope::All, 1).await.unwrap(), 3);
    for section in ["rural", "politics"] {
        let slug = SectionSlug::parse(section).unwrap();
        let shown = articles
            .iter()
            .filter(|x| x.content.section == slug)
            .count();
        assert_eq!(
            b.archive_pages(&FeedScope::Section(slug), 1).await.unwrap(),
            shown,
            "{section}"
        );
    }
    for tag in ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"] {
        let shown = articles
            .iter()
            .filter(|x| x.content.tags.iter().any(|t| t == tag))
            .count();
        assert_eq!(
            a.archive_pages(&FeedScope::tag(tag), 1).await.unwrap(),
            shown,
            "{tag}"
        );
    }
    // A retry on the other replica gets the first answer.
    let mut retry = write("a-1", 1, |d| {
        d.title = "a 0".into();
        d.tags = vec!["a-0".into()];
    });
    retry.request = RequestKey::parse("a-0-a-1", "publish", b"x").unwrap();
    let replayed = b
        .publish(partner.id, retry, at(5000), &actor(&partner))
        .await
        .unwrap();
    assert!(matches!(replayed, Revision::Unchanged(_)));
    replicas.finish().await;
}

contract!(
    a_shared_store_lets_one_process_claim_each_delivery,
    check_delivery_claims
);
async fn check_delivery_claims(store: &dyn Store) {
    let topic = Topic::new("politics/atom.xml").unwrap();
    let other = Topic::new("rural/atom.xml").unwrap();
    let lease = |minutes: i64| at(minutes + 5);
    let first = store
        .claim_delivery(&topic, "\"e1\"", at(0), lease(0))
        .await
        .unwrap();
    let again = store
        .claim_delivery(&topic, "\"e1\"", at(1), lease(1))
        .await
        .unwrap();
    let newer = store
        .claim_delivery(&topic, "\"e2\"", at(1), lease(1))
        .await
        .unwrap();
    let elsewhere = store
        .claim_delivery(&other, "\"e1\"", at(1), lease(1))
        .await
        .unwrap();
    assert!(first && newer && elsewhere);
    // Only a store shared with other processes has anyone to leave a delivery to.
    assert_eq!(again, !store.is_shared());
    if store.is_shared() {
        // e2 of politics is finished; e1 of politics and of rural lapse unfinished.
        store.finish_delivery(&topic, "\"e2\"").await.unwrap();
        assert!(
            store.lapsed_deliveries(at(4), 10).await.unwrap().is_empty(),
            "no lease has ended yet"
        );
        // Renewed, e1 of rural lasts longer.
        assert!(
            store
                .renew_delivery(&other, "\"e1\"", lease(10))
                .await
                .unwrap()
        );
        let lapsed = store.lapsed_deliveries(at(7), 10).await.unwrap();
        assert_eq!(lapsed, vec![(topic.clone(), "\"e1\"".to_owned())]);
        // The lapsed one is taken over (here by the same store), the finished one never.
        assert!(
            store
                .claim_delivery(&topic, "\"e1\"", at(7), lease(7))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_delivery(&topic, "\"e2\"", at(60), lease(60))
                .await
                .unwrap()
        );
    }
    // A day later the claim is forgotten.
    store
        .delete_expired_subscriptions(at(2 * 24 * 60))
        .await
        .unwrap();
    assert!(
        store
            .claim_delivery(&topic, "\"e1\"", at(2 * 24 * 60), lease(2 * 24 * 60))
            .await
            .unwrap()
    );
}

contract!(
    backend: the_last_claimed_document_of_each_subscribed_topic_is_kept,
    check_last_claims
);
/// Each topic's last claimed document is kept after its delivery ended and across
/// reopening, and dropped once the topic has no subscriber.
async fn check_last_claims(backend: &mut Backend) {
    let now = at(0);
    let (politics, rural) = (
        Topic::new("politics/atom.xml").unwrap(),
        Topic::new("rural/atom.xml").unwrap(),
    );
    let subscribed = Subscription {
        topic: politics.clone(),
        callback: Callback::parse("https://a.example/cb").unwrap(),
        secret: None,
        verify_time: now,
        expire_time: now + TimeDelta::hours(1),
    };
    let lease = now + TimeDelta::minutes(5);
    let store = backend.store.clone();
    store
        .save_subscription(subscribed, "192.0.2.1", now)
        .await
        .unwrap();
    for (topic, document) in [
        (&politics, "\"a\" 1"),
        (&politics, "\"b\" 2"),
        (&rural, "\"c\" 3"),
    ] {
        assert!(
            store
                .claim_delivery(topic, document, now, lease)
                .await
                .unwrap()
        );
    }
    store.finish_delivery(&politics, "\"b\" 2").await.unwrap();
    if store.is_shared() {
        // A claim held (its lease running) is not taken again, and leaves the last as it is.
        assert!(
            !store
                .claim_delivery(&politics, "\"a\" 1", now, lease)
                .await
                .unwrap()
        );
    }
    drop(store);
    backend.reopen().await;

    let store = &backend.store;
    let last = |topic: &Topic, document: &str| (topic.clone(), document.to_owned());
    assert_eq!(
        store.last_claims().await.unwrap(),
        [last(&politics, "\"b\" 2"), last(&rural, "\"c\" 3")]
    );
    store.delete_expired_subscriptions(now).await.unwrap();
    assert_eq!(
        store.last_claims().await.unwrap(),
        [last(&politics, "\"b\" 2")],
        "rural has no subscriber"
    );
}

contract!(
    backend: a_name_row_out_of_step_with_its_article_still_shows_the_articles_row,
    check_name_row_out_of_step
);
/// Should a name row's change time ever differ from its article's, the author feed still
/// shows the article as its row has it, and keeps no copy of it.
async fn check_name_row_out_of_step(backend: &mut Backend) {
    let store = backend.store.clone();
    let partner = add_partner(store.as_ref(), "newsroom").await;
    publish(store.as_ref(), &partner, "a-1", 1, |_| {}).await;
    backend
        .execute("UPDATE article_authors SET change_time = change_time - 1")
        .await;
    for round in 1..=2 {
        let shown = read_feed(store.as_ref(), &FeedScope::author(AUTHOR)).await;
        assert_eq!(shown.len(), 1, "{}: {round}", backend.name);
        assert_eq!(shown[0].content.title, "右玉县 a-1", "{}", backend.name);
        // Fetched whole every round: never kept.
        assert_eq!(backend.feed_rows_kept(), 0, "{}: {round}", backend.name);
    }
}

contract!(
    backend: a_publish_whose_last_write_fails_stores_nothing_and_the_next_is_stored,
    check_failed_last_write
);
/// A publish alone commits in the command of its last write (SQLite; PostgreSQL in its own
/// transaction): when that write fails (here the audit entry, written last), nothing of the
/// publish is stored, no event is announced, and the store goes on with the next one.
async fn check_failed_last_write(backend: &mut Backend) {
    let store = backend.store.clone();
    let partner = add_partner(store.as_ref(), "newsroom").await;
    publish(store.as_ref(), &partner, "a-1", 1, |_| {}).await;
    let head = *store.event_head().borrow();
    let (refuse, allow) = match backend.name {
        "sqlite" => (
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            "DROP TRIGGER refuse_audit",
        ),
        _ => (
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
                 FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
            "DROP TRIGGER refuse_audit ON audit_log",
        ),
    };
    backend.execute(refuse).await;
    let failed = store
        .publish(
            partner.id,
            write("a-2", 2, |_| {}),
            at(1000),
            &actor(&partner),
        )
        .await;
    let error = failed.expect_err("the audit entry could not be written");
    assert!(
        error.to_string().contains("refused by the test"),
        "{}: {error}",
        backend.name
    );
    let a2 = ArticleId::parse("a-2").unwrap();
    assert!(
        store.article(partner.id, &a2).await.unwrap().is_none(),
        "{}",
        backend.name
    );
    assert_eq!(*store.event_head().borrow(), head, "{}", backend.name);
    backend.execute(allow).await;
    publish(store.as_ref(), &partner, "a-3", 3, |_| {}).await;
    let a3 = ArticleId::parse("a-3").unwrap();
    assert!(
        store.article(partner.id, &a3).await.unwrap().is_some(),
        "{}",
        backend.name
    );
    assert!(
        store.article(partner.id, &a2).await.unwrap().is_none(),
        "{}",
        backend.name
    );
    assert!(*store.event_head().borrow() > head, "{}", backend.name);
}

contract!(
    a_reader_hears_when_an_article_leaves_its_view,
    check_leaving_events
);

/// A reader of the section an article was open in hears when a write takes it out of
/// view: moved to a section the reader does not follow, or put under an embargo the reader
/// may not see. Readers who still see it get the event itself.
async fn check_leaving_events(store: &dyn Store) {
    let partner = add_partner(store, "newsroom").await;
    publish(store, &partner, "moved", 10, |_| {}).await;
    publish(store, &partner, "moved", 10, |d| {
        d.section = "politics".into()
    })
    .await;
    publish(store, &partner, "hidden", 10, |_| {}).await;
    publish(store, &partner, "hidden", 10, |d| {
        d.embargo_time = Some(at(2000))
    })
    .await;
    store
        .retract(partner.id, retraction("moved"), at(1001), &actor(&partner))
        .await
        .unwrap();
    // Moved while its embargo runs: only those who could see it in rural hear it left.
    let embargoed = |d: &mut ArticleDraft| d.embargo_time = Some(at(2000));
    publish(store, &partner, "secret", 10, embargoed).await;
    publish(store, &partner, "secret", 10, |d| {
        embargoed(d);
        d.section = "politics".into();
    })
    .await;
    let head = *store.event_head().borrow();
    let rural = SectionSlug::parse("rural").unwrap();
    let seen = |sections: Option<&str>, embargoed: bool| {
        let filter = EventFilter {
            sections: sections.map(|s| vec![SectionSlug::parse(s).unwrap()]),
            embargoed,
        };
        async move {
            let events = store.events(0, head, &filter, 10).await.unwrap();
            events
                .into_iter()
                .map(|e| (e.kind, e.article.id.to_string(), e.left))
                .collect::<Vec<_>>()
        }
    };
    use EventKind::{Published, Retracted, Updated};
    let event = |kind, id: &str, left: Option<&SectionSlug>| (kind, id.to_owned(), left.cloned());
    assert_eq!(
        seen(Some("rural"), false).await,
        [
            event(Published, "moved", None),
            event(Updated, "moved", Some(&rural)),
            event(Published, "hidden", None),
            event(Updated, "hidden", Some(&rural)),
        ],
        "a reader of rural without the embargo right"
    );
    assert_eq!(
        seen(Some("rural"), true).await,
        [
            event(Published, "moved", None),
            event(Updated, "moved", Some(&rural)),
            event(Published, "hidden", None),
            event(Updated, "hidden", None),
            event(Published, "secret", None),
            event(Updated, "secret", Some(&rural)),
        ],
        "with the right, the embargoed one stays in view, and the secret one leaves"
    );
    assert_eq!(
        seen(None, false).await,
        [
            event(Published, "moved", None),
            event(Updated, "moved", None),
            event(Published, "hidden", None),
            event(Updated, "hidden", Some(&rural)),
            event(Retracted, "moved", None),
        ],
        "a reader of every section sees the move, and never saw the secret one"
    );
    assert_eq!(
        seen(Some("politics"), false).await,
        [
            event(Updated, "moved", None),
            event(Retracted, "moved", None)
        ],
        "the section it went to"
    );
}

contract!(
    backend: a_derived_documents_version_keeps_its_date_and_a_new_one_comes_later,
    check_document_dates
);
/// The date of a derived document's version is recorded: the same entity tag gets it back
/// (also after reopening, and from another instant), other bytes a date never before it,
/// the version replaced named and recorded; names are dated apart; dates are whole seconds.
async fn check_document_dates(backend: &mut Backend) {
    use super::DocumentDate;
    let store = backend.store.clone();
    let first = at(0) + TimeDelta::milliseconds(1_500);
    let whole = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap();
    let dated = store.date_document("index.html", "a", first).await.unwrap();
    assert_eq!(
        dated,
        DocumentDate {
            date: whole(first),
            replaced: None
        }
    );
    drop(store);
    backend.reopen().await;
    let store = &backend.store;
    let same = store.date_document("index.html", "a", at(5)).await.unwrap();
    assert_eq!(same, dated, "the same bytes keep their date");
    let other = store.date_document("feeds.opml", "a", at(6)).await.unwrap();
    assert_eq!(other.date, at(6));
    let changed = store.date_document("index.html", "b", at(7)).await.unwrap();
    assert_eq!(
        changed,
        DocumentDate {
            date: at(7),
            replaced: Some(whole(first))
        }
    );
    // A process whose clock is behind the version recorded: not dated before it.
    let behind = store.date_document("index.html", "c", at(1)).await.unwrap();
    assert_eq!(
        behind,
        DocumentDate {
            date: at(7),
            replaced: Some(at(7))
        }
    );
    // Every process serving it, and the next after a restart, knows that it shares the
    // second of the version it replaced.
    assert_eq!(
        store.date_document("index.html", "c", at(9)).await.unwrap(),
        behind
    );
    backend.reopen().await;
    assert_eq!(
        backend
            .store
            .date_document("index.html", "c", at(10))
            .await
            .unwrap(),
        behind
    );
}

contract!(
    backend: the_first_site_url_asked_with_stays_the_base_of_atom_ids,
    check_atom_id_base
);
/// The base of the feeds' Atom ids is the site URL of the first to ask: later askers, with
/// another URL, get it too, also after reopening the store.
async fn check_atom_id_base(backend: &mut Backend) {
    const FIRST: &str = "http://127.0.0.1:8080/";
    let store = backend.store.clone();
    assert_eq!(store.atom_id_base(FIRST).await.unwrap(), FIRST);
    assert_eq!(
        store.atom_id_base("https://news.example/").await.unwrap(),
        FIRST
    );
    drop(store);
    backend.reopen().await;
    assert_eq!(
        backend
            .store
            .atom_id_base("https://elsewhere.example/")
            .await
            .unwrap(),
        FIRST
    );
}
