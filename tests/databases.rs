//! feedpub on PostgreSQL: `feedpub serve --database-url` takes publishes over gRPC and serves
//! their feeds, and a SQLite deployment moves to PostgreSQL with `feedpub export` and
//! `feedpub import` with nothing lost: every partner, article, version, event and audit
//! entry equal, and byte-identical feeds with identical ETags.

mod common;

use common::binary::{ServeOptions, ServeProcess, feedpub, run, stdout_of, text, token_of};
use common::postgres::fresh_database;
use common::{TestServer, all_feed_paths, authed, brief, settings};
use feedpub::domain::AuditFilter;
use feedpub::grpc::proto::{self, PublishArticleRequest, RetractArticleRequest};
use feedpub::storage::{EventFilter, PostgresStore, SqliteStore, Store};

fn publish(article: proto::Article) -> PublishArticleRequest {
    PublishArticleRequest {
        article: Some(article),
        ..Default::default()
    }
}

#[tokio::test]
async fn serve_on_postgresql_takes_publishes_over_grpc_and_serves_their_feeds() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let migrated = run(feedpub(dir.path()).args(["migrate", "--database-url", &database.url]));
    assert!(stdout_of(&migrated).contains("up to date"), "{migrated:?}");

    let (data_dir, feeds_dir) = (dir.path().join("data"), dir.path().join("feeds"));
    let mut server = ServeProcess::start(ServeOptions {
        database_url: Some(&database.url),
        ..ServeOptions::new(&data_dir, &feeds_dir)
    });
    let running = server.wait_ready();
    let mut client = running.client().await;
    client
        .publish_article(authed(&token, publish(brief("brief-1", "研讨会召开"))))
        .await
        .unwrap();
    let url = running.url("/feeds/politics/atom.xml");
    let mut waited = 0;
    let body = loop {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if body.contains("研讨会召开") || waited > 3000 {
            break body;
        }
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(body.contains("研讨会召开"), "{body}\n{}", server.log());
    let feed = feed_rs::parser::parse(body.as_bytes()).unwrap();
    assert_eq!(feed.entries.len(), 1);
    assert!(
        !data_dir.join("feedpub.sqlite3").exists(),
        "no SQLite database beside PostgreSQL"
    );
    // An operator's takedown from another process reaches the server's feeds, as any
    // other replica's write does.
    let taken = run(feedpub(dir.path()).args([
        "partner",
        "retract",
        "newsroom",
        "brief-1",
        "--reason",
        "法律要求",
        "--database-url",
        &database.url,
    ]));
    assert!(stdout_of(&taken).contains("retracted"), "{taken:?}");
    let mut waited = 0;
    let body = loop {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if !body.contains("研讨会召开") || waited > 3000 {
            break body;
        }
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(!body.contains("研讨会召开"), "{body}\n{}", server.log());
    server.kill();

    // The article is in PostgreSQL, for the next process to find.
    let store = PostgresStore::connect(&database.url).await.unwrap();
    let partner = store
        .partner_by_token(&feedpub::domain::Token::from_presented(&token).hash())
        .await
        .unwrap();
    let partner = partner.expect("the partner is stored");
    let articles = store
        .list_articles(partner.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(articles.len(), 1);
    assert_eq!(articles[0].content.title, "研讨会召开");
    store.close().await;
    database.remove().await;
}

/// A partner calling while the database is out of reach is told so, with UNAVAILABLE and
/// the storage error, once the pool has waited 15 s for a connection, before the request
/// timeout (30 s) would cancel its call; and the replica
/// takes calls again once the database is back, without a restart.
// Two workers: waiting for the server blocks one, the proxy runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_while_the_database_is_out_of_reach_are_answered_unavailable() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let (target, proxy, mut server) = serve_through_proxy(&database.url, dir.path()).await;
    let running = server.wait_ready();
    let mut client = running.client().await;
    let get = |id: &str| {
        authed(
            &token,
            proto::GetArticleRequest {
                id: id.into(),
                ..Default::default()
            },
        )
    };
    client
        .publish_article(authed(&token, publish(brief("before", "断线之前"))))
        .await
        .expect("published while the database is reachable");
    proxy.cut();
    let (mut reader, mut publisher) = (client.clone(), client.clone());
    let (read, published) = tokio::join!(
        reader.get_article(get("before")),
        publisher.publish_article(authed(&token, publish(brief("during", "断线之中"))))
    );
    for (call, outcome) in [
        ("GetArticle", read.map(drop)),
        ("PublishArticle", published.map(drop)),
    ] {
        let refused = outcome.expect_err(call);
        assert_eq!(
            refused.code(),
            tonic::Code::Unavailable,
            "{call}: {refused:?}\n{}",
            server.log()
        );
        assert_eq!(
            common::error_reason(&refused),
            "STORAGE_UNAVAILABLE",
            "{call}: {refused:?}"
        );
    }
    let proxy = CuttableProxy::start_on(proxy.port, target).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client.get_article(get("before")).await {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "never back: {e:?}\n{}",
                server.log()
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.kill();
    drop(proxy);
    database.remove().await;
}

/// A server told to stop while its database is out of reach, with feeds left stale by a
/// publish it could not build, stops within the test's deadline (30 s) and cleanly: it does
/// not wait for a connection for every feed it would build at the stop, nor for its last
/// look at the other replicas' writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stops_in_bounded_time_while_its_database_is_out_of_reach() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let (_, proxy, mut server) = serve_through_proxy(&database.url, dir.path()).await;
    let running = server.wait_ready();
    let mut client = running.client().await;
    client
        .publish_article(authed(&token, publish(brief("cut-off", "断线前最后一稿"))))
        .await
        .expect("published while the database is reachable");
    // At once: its feeds are built, or fail to be, with the database gone.
    proxy.cut();
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let health = reqwest::get(running.url("/healthz")).await.unwrap();
        let body = health.text().await.unwrap();
        if body.starts_with("degraded") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never degraded: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // SIGTERM, and a clean exit within the deadline.
    server.stop();
    drop(proxy);
    database.remove().await;
}

/// `feedpub serve` with folders in `dir`, on the database at `url` reached through a proxy
/// that can be cut: the database's address, the proxy and the server.
async fn serve_through_proxy(
    url: &str,
    dir: &std::path::Path,
) -> (String, CuttableProxy, ServeProcess) {
    let mut through = url::Url::parse(url).unwrap();
    let target = format!(
        "{}:{}",
        through.host_str().unwrap(),
        through.port().unwrap_or(5432)
    );
    let proxy = CuttableProxy::start(target.clone()).await;
    through.set_port(Some(proxy.port)).unwrap();
    through.set_host(Some("127.0.0.1")).unwrap();
    let (data_dir, feeds_dir) = (dir.join("data"), dir.join("feeds"));
    let server = ServeProcess::start(ServeOptions {
        database_url: Some(through.as_str()),
        ..ServeOptions::new(&data_dir, &feeds_dir)
    });
    (target, proxy, server)
}

/// A TCP proxy to the database that can be cut: every connection through it closed, and
/// new ones refused.
struct CuttableProxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(target: String) -> Self {
        Self::start_on(0, target).await
    }

    async fn start_on(port: u16, target: String) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut cut = watching.clone();
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                    // The listener is dropped: new connections are refused.
                    _ = cut.wait_for(|cut| *cut) => return,
                };
                let mut cut = watching.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The store a command opens follows other replicas' events while it is open; its end
/// closes the follower too, without a warning that the notifications were lost.
#[tokio::test]
async fn commands_on_postgresql_end_without_warning_of_lost_notifications() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    database.add_newsroom(dir.path());
    for _ in 0..10 {
        for command in [&["partner", "list"][..], &["audit"][..]] {
            let output = run(feedpub(dir.path())
                .args(command)
                .args(["--database-url", &database.url]));
            let stderr = text(&output.stderr);
            assert!(
                output.status.success() && stderr.is_empty(),
                "{command:?}: {output:?}"
            );
        }
    }
}

/// A database reached over the network takes TLS: with `sslmode=require` in its URL (as a
/// managed server asks) the store connects, and its connections are encrypted.
#[tokio::test]
async fn a_database_url_that_requires_tls_is_reached_over_tls() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let mut url = url::Url::parse(&database.url).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "require");
    let url = url.to_string();
    let store = PostgresStore::connect(&url).await.unwrap();
    assert!(store.partner_records().await.unwrap().is_empty());
    store.close().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted);
    drop(conn);
    database.remove().await;
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgresql_with_every_version_and_identical_feeds() {
    let Some(database) = fresh_database().await else {
        return;
    };
    // A SQLite deployment with the sample edition, a correction, a retraction, a second
    // partner's article and a revoked partner.
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    let mut client = server.client().await;
    let newsroom = server.tokens.newsroom.clone();
    client
        .publish_article(authed(&newsroom, publish(brief("brief-1", "原标题"))))
        .await
        .unwrap();
    client
        .publish_article(authed(&newsroom, publish(brief("brief-1", "更正后的标题"))))
        .await
        .unwrap();
    client
        .publish_article(authed(&newsroom, publish(brief("brief-2", "将被撤回"))))
        .await
        .unwrap();
    client
        .retract_article(authed(
            &newsroom,
            RetractArticleRequest {
                id: "brief-2".into(),
                reason: "事实有误".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let rural = proto::Article {
        section: "rural".into(),
        ..brief("county-1", "右玉县农旅融合")
    };
    client
        .publish_article(authed(&server.tokens.county, publish(rural)))
        .await
        .unwrap();
    server.settle().await;
    let (dir, tokens) = server.stop().await;
    let data_dir = dir.path().join("data");
    let revoked = run(feedpub(dir.path())
        .args(["partner", "add", "former", "--all-sections", "--data-dir"])
        .arg(&data_dir));
    token_of(&revoked);
    run(feedpub(dir.path())
        .args(["partner", "revoke", "former", "--data-dir"])
        .arg(&data_dir));

    // Export from SQLite, import into PostgreSQL.
    let exported = run(feedpub(dir.path())
        .arg("export")
        .arg("--data-dir")
        .arg(&data_dir));
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let dump = dir.path().join("dump.jsonl");
    std::fs::write(&dump, &exported.stdout).unwrap();
    let imported = run(feedpub(dir.path())
        .arg("import")
        .arg(&dump)
        .args(["--database-url", &database.url]));
    assert!(
        stdout_of(&imported).contains("3 partners"),
        "{}",
        text(&imported.stdout)
    );
    // A second import is refused: the target is no longer empty.
    let again = run(feedpub(dir.path())
        .arg("import")
        .arg(&dump)
        .args(["--database-url", &database.url]));
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("empty"),
        "{}",
        text(&again.stderr)
    );

    // And back: exported from PostgreSQL and imported into a new SQLite database, the rows
    // are the same again, line for line.
    let from_postgres = run(feedpub(dir.path())
        .arg("export")
        .args(["--database-url", &database.url]));
    assert!(
        from_postgres.status.success(),
        "{}",
        text(&from_postgres.stderr)
    );
    assert_eq!(text(&from_postgres.stdout), text(&exported.stdout));
    let back_dir = dir.path().join("back");
    let back = run(feedpub(dir.path())
        .arg("import")
        .arg(&dump)
        .arg("--data-dir")
        .arg(&back_dir));
    assert!(back.status.success(), "{}", text(&back.stderr));
    let round_trip = run(feedpub(dir.path())
        .arg("export")
        .arg("--data-dir")
        .arg(&back_dir));
    assert_eq!(text(&round_trip.stdout), text(&exported.stdout));

    // Every partner, article, version, event and audit entry equal.
    let sqlite = SqliteStore::open(&data_dir).await.unwrap();
    let postgres = PostgresStore::connect(&database.url).await.unwrap();
    let partners = sqlite.partner_records().await.unwrap();
    assert_eq!(partners.len(), 3);
    assert_eq!(postgres.partner_records().await.unwrap(), partners);
    let mut versions_seen = 0;
    for record in &partners {
        let id = record.partner.id;
        let articles = sqlite.list_articles(id, None, None, 1000).await.unwrap();
        assert_eq!(
            postgres.list_articles(id, None, None, 1000).await.unwrap(),
            articles
        );
        for article in &articles {
            let versions = sqlite
                .article_versions(id, &article.id, None, 1000)
                .await
                .unwrap();
            assert_eq!(
                postgres
                    .article_versions(id, &article.id, None, 1000)
                    .await
                    .unwrap(),
                versions
            );
            for version in &versions {
                let old = sqlite
                    .article_version(id, &article.id, version.version)
                    .await
                    .unwrap();
                assert!(old.is_some());
                assert_eq!(
                    postgres
                        .article_version(id, &article.id, version.version)
                        .await
                        .unwrap(),
                    old
                );
                versions_seen += 1;
            }
        }
    }
    assert!(versions_seen >= 10, "{versions_seen} versions compared");
    let head = *sqlite.event_head().borrow();
    assert!(head > 0);
    assert_eq!(*postgres.event_head().borrow(), head);
    let everything = EventFilter {
        sections: None,
        embargoed: true,
    };
    assert_eq!(
        postgres.events(0, head, &everything, 1000).await.unwrap(),
        sqlite.events(0, head, &everything, 1000).await.unwrap()
    );
    let audit = AuditFilter {
        partner: None,
        since: None,
        limit: 1000,
    };
    assert_eq!(
        postgres.audit_entries(&audit).await.unwrap(),
        sqlite.audit_entries(&audit).await.unwrap()
    );
    sqlite.close().await;
    postgres.close().await;

    // The same feeds, byte for byte, with the same ETags, from both.
    let on_sqlite = TestServer::start_in(dir, tokens.clone()).await;
    let pg_dir = tempfile::tempdir().unwrap();
    let mut pg_settings = settings(&pg_dir);
    pg_settings.server.database_url =
        Some(feedpub::config::DatabaseUrl::parse(&database.url).unwrap());
    let on_postgres = TestServer::start_with_settings(pg_dir, tokens, pg_settings).await;
    on_sqlite.settle().await;
    on_postgres.settle().await;
    for path in all_feed_paths() {
        let from_sqlite = reqwest::get(on_sqlite.url(&path)).await.unwrap();
        let from_postgres = reqwest::get(on_postgres.url(&path)).await.unwrap();
        let etag = |r: &reqwest::Response| r.headers().get("etag").cloned();
        assert_eq!(etag(&from_sqlite), etag(&from_postgres), "{path}");
        assert!(etag(&from_sqlite).is_some(), "{path}");
        assert_eq!(
            from_sqlite.bytes().await.unwrap(),
            from_postgres.bytes().await.unwrap(),
            "{path}"
        );
    }
    let retracted = on_postgres.get_bytes("/feeds/politics/atom.xml").await;
    let retracted = String::from_utf8(retracted).unwrap();
    assert!(retracted.contains("更正后的标题") && !retracted.contains("将被撤回"));
    on_sqlite.stop().await;
    on_postgres.stop().await;
    database.remove().await;
}

/// GETs `path` from a running server: the ETag and the body.
async fn fetch(running: &common::binary::Running, path: &str) -> (Option<String>, Vec<u8>) {
    let response = reqwest::get(running.url(path)).await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (etag, response.bytes().await.unwrap().to_vec())
}

/// Polls until every feed is the same, bytes and ETag, on both servers, and `done` holds
/// of `path` on the second; fails with the difference after the deadline.
async fn wait_until_identical(
    a: &common::binary::Running,
    b: &common::binary::Running,
    path: &str,
    done: impl Fn(&str) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        let mut differing = Vec::new();
        for feed in all_feed_paths() {
            if fetch(a, &feed).await != fetch(b, &feed).await {
                differing.push(feed);
            }
        }
        let body = String::from_utf8(fetch(b, path).await.1).unwrap();
        if differing.is_empty() && done(&body) {
            return;
        }
        assert!(
            start.elapsed() < common::binary::DEADLINE,
            "still different: {differing:?}\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn replicas_on_one_database_serve_each_others_publishes_with_identical_feeds() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), None);
    let mut client_a = on_a.client().await;
    let mut client_b = on_b.client().await;

    // Published on A, served by B.
    client_a
        .publish_article(authed(&token, publish(brief("brief-1", "研讨会召开"))))
        .await
        .unwrap();
    let politics = "/feeds/politics/atom.xml";
    wait_until_identical(&on_a, &on_b, politics, |b| b.contains("研讨会召开")).await;

    // Corrected and moved by B, then retracted on A: both follow.
    let moved = proto::Article {
        section: "rural".into(),
        ..brief("brief-1", "更正：移至农村版")
    };
    client_b
        .publish_article(authed(&token, publish(moved)))
        .await
        .unwrap();
    wait_until_identical(&on_b, &on_a, "/feeds/rural/rss.xml", |a| {
        a.contains("更正：移至农村版")
    })
    .await;
    // The section it left, too (sections are rebuilt after `all`, so wait for it).
    wait_until_identical(&on_b, &on_a, politics, |a| !a.contains("研讨会召开")).await;
    client_a
        .retract_article(authed(
            &token,
            RetractArticleRequest {
                id: "brief-1".into(),
                reason: "事实有误".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    wait_until_identical(&on_a, &on_b, "/feeds/rural/rss.xml", |b| {
        !b.contains("更正：移至农村版")
    })
    .await;
    a.kill();
    b.kill();
    database.remove().await;
}

#[tokio::test]
async fn a_replica_killed_mid_stream_loses_no_acknowledged_write() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = database.add_newsroom(dir.path());
    let [(mut a, on_a), (mut b, on_b)] = database.two_replicas(dir.path(), None);

    // A stream of publishes to A, every fifth retracted right after; A is killed once 60
    // writes were acknowledged, while the stream goes on.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let retracted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // A retraction sent but not answered when A died: committed or not, either is right.
    let unanswered = std::sync::Arc::new(std::sync::Mutex::new(None));
    let stream = {
        let (acknowledged, retracted) = (acknowledged.clone(), retracted.clone());
        let unanswered = unanswered.clone();
        let token = token.clone();
        let mut client = on_a.client().await;
        tokio::spawn(async move {
            for n in 0.. {
                let id = format!("k-{n:03}");
                let sent = client
                    .publish_article(authed(&token, publish(brief(&id, &format!("快讯{n}")))))
                    .await;
                if sent.is_err() {
                    return;
                }
                acknowledged.lock().unwrap().push(id.clone());
                if n % 5 == 0 {
                    let request = RetractArticleRequest {
                        id: id.clone(),
                        reason: "撤回".into(),
                        ..Default::default()
                    };
                    *unanswered.lock().unwrap() = Some(id.clone());
                    if client
                        .retract_article(authed(&token, request))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    *unanswered.lock().unwrap() = None;
                    retracted.lock().unwrap().push(id);
                }
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    a.kill();
    stream.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut retracted = retracted.lock().unwrap().clone();
    let unanswered = unanswered.lock().unwrap().clone();
    assert!(acknowledged.len() >= 60);

    // Every acknowledged write is stored, as B reports it.
    let mut client_b = on_b.client().await;
    for id in &acknowledged {
        let article = client_b
            .get_article(authed(
                &token,
                proto::GetArticleRequest {
                    id: id.clone(),
                    version: 0,
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("{id} was acknowledged but is lost: {e}"))
            .into_inner();
        let state = article.state();
        if unanswered.as_ref() == Some(id) {
            if state == proto::ArticleState::Retracted {
                retracted.push(id.clone());
            }
            continue;
        }
        assert_eq!(
            state == proto::ArticleState::Retracted,
            retracted.contains(id),
            "{id}"
        );
    }
    // A restarted A and B serve the same feeds, without the retracted articles.
    let mut a = database.replica(dir.path(), "a", None);
    let on_a = a.wait_ready();
    let newest = acknowledged.last().unwrap().clone();
    let newest_title = format!(
        "快讯{}",
        newest.trim_start_matches("k-").parse::<u32>().unwrap()
    );
    // A's files may hold a version written within the second of the last writes before
    // it died: the document it renders then changed with no newer stored change to date
    // it, and each replica dates such a document by its own regeneration until the next
    // change (README, "Caching and conditional GET"). One more publish is that change.
    client_b
        .publish_article(authed(&token, publish(brief("k-after", "快讯之后"))))
        .await
        .unwrap();
    let shown = |body: &str| {
        retracted
            .iter()
            .all(|id| !body.contains(&format!("newsroom/{id}<")))
            && (retracted.contains(&newest) || body.contains(&newest_title))
            && body.contains("快讯之后")
    };
    wait_until_identical(&on_a, &on_b, "/feeds/politics/atom.xml", shown).await;
    a.kill();
    b.kill();
    database.remove().await;
}
