//! Partner management and the audit log end to end: the built binary's `partner` and
//! `audit` commands work on the database of a running server, and the server's next call
//! sees what they changed.

mod common;

use common::binary::{error_of, on_data, run, stdout_of, text, token_of};
use common::{TestServer, authed, ts};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{
    self, ArticleState, GetArticleRequest, ListArticleVersionsRequest, ListArticlesRequest,
    ListSectionsRequest, PublishArticleRequest, PublishArticlesRequest, RetractArticleRequest,
    WatchArticlesRequest,
};
use feedpub::storage::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use tonic::Code;
use tonic_types::StatusExt;

/// `feedpub ARGS…` on the test server's database, run on a blocking thread so that the
/// server's tasks go on meanwhile (the CLI waits for the server's writes to commit).
async fn cli(server: &TestServer, args: &[&str]) -> Output {
    let cwd = server.dir.path().to_owned();
    let data = server.data_dir();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        on_data(&cwd, &data, &args)
    })
    .await
    .expect("the CLI runs")
}

/// `partner add wire --section politics` on the test server's database: the new token.
async fn add_wire(server: &TestServer) -> String {
    token_of(&cli(server, &["partner", "add", "wire", "--section", "politics"]).await)
}

/// Publishes article `id` in politics as the partner of `token`, under `title`.
async fn publish_titled(
    client: &mut PublisherServiceClient<tonic::transport::Channel>,
    token: &str,
    id: &str,
    title: &str,
) {
    let mut request = article(id, "politics");
    request.article.as_mut().unwrap().title = title.into();
    client
        .publish_article(authed(token, request))
        .await
        .expect("the partner publishes");
}

fn article(id: &str, section: &str) -> PublishArticleRequest {
    PublishArticleRequest {
        article: Some(proto::Article {
            id: id.into(),
            section: section.into(),
            title: "全市打击私采滥挖工作推进会召开".into(),
            authors: vec!["武跃林".into()],
            content_text: "第一段。\n\n第二段。".into(),
            publish_time: Some(ts(1_686_092_400)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An article under embargo until a day from now.
fn embargoed(id: &str, section: &str) -> PublishArticleRequest {
    let mut request = article(id, section);
    let article = request.article.as_mut().unwrap();
    article.publish_time = Some(ts(chrono::Utc::now().timestamp() - 60));
    article.embargo_time = Some(ts(chrono::Utc::now().timestamp() + 86_400));
    request
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// The line of `partner list` that names `partner`.
fn listed(list: &str, partner: &str) -> String {
    list.lines()
        .find(|line| line.split_whitespace().next() == Some(partner))
        .unwrap_or_else(|| panic!("{partner} is not listed:\n{list}"))
        .to_owned()
}

#[tokio::test]
async fn revoked_and_rotated_tokens_are_refused_from_the_next_call_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let old = add_wire(&server).await;
    client
        .publish_article(authed(&old, article("w-1", "politics")))
        .await
        .expect("the new partner publishes");

    let list = stdout_of(&cli(&server, &["partner", "list"]).await);
    let line = listed(&list, "wire");
    let prefix = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('…');
    assert!(
        prefix.len() == 11 && old.starts_with(prefix),
        "the listed prefix {prefix:?} starts the token"
    );
    assert!(
        line.contains("active") && line.contains("politics"),
        "{line}"
    );
    assert!(!list.contains(&old), "the token itself is never listed");
    for partner in ["newsroom", "county"] {
        listed(&list, partner);
    }

    let rotated = cli(&server, &["partner", "rotate", "wire"]).await;
    let new = token_of(&rotated);
    assert_ne!(new, old);
    // The same connection: nothing the server remembers outlives the rotation.
    let refused = client
        .list_sections(authed(&old, ListSectionsRequest {}))
        .await
        .expect_err("the old token after rotation");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let got = client
        .get_article(authed(
            &new,
            GetArticleRequest {
                id: "w-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("the new token works, and the articles stay the partner's")
        .into_inner();
    assert_eq!(got.section, "politics");
    let list = stdout_of(&cli(&server, &["partner", "list"]).await);
    assert!(
        listed(&list, "wire").contains(&new[..11]),
        "the new prefix is listed:\n{list}"
    );

    let revoked = stdout_of(&cli(&server, &["partner", "revoke", "wire"]).await);
    assert!(revoked.contains("revoked"), "{revoked}");
    let refused = client
        .publish_article(authed(&new, article("w-2", "politics")))
        .await
        .expect_err("a revoked partner's token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        listed(
            &stdout_of(&cli(&server, &["partner", "list"]).await),
            "wire"
        )
        .contains("revoked")
    );
    // Revoking twice is harmless; a revoked partner gets no new token or rights.
    assert!(stdout_of(&cli(&server, &["partner", "revoke", "wire"]).await).contains("already"));
    let error = error_of(&cli(&server, &["partner", "rotate", "wire"]).await);
    assert!(error.contains("revoked"), "{error}");
    let error = error_of(&cli(&server, &["partner", "grant", "wire", "--section", "rural"]).await);
    assert!(error.contains("revoked"), "{error}");
    // The name stays taken.
    let error = error_of(&cli(&server, &["partner", "add", "wire", "--all-sections"]).await);
    assert!(error.contains("already exists"), "{error}");

    // Restored: active again with its rights, its articles and a new token; the revoked
    // token stays refused, and an active partner is not restored.
    let restored = cli(&server, &["partner", "restore", "wire"]).await;
    assert!(
        stdout_of(&restored).contains("active again"),
        "{restored:?}"
    );
    let back = token_of(&restored);
    assert!(back != new && back != old);
    client
        .publish_article(authed(&back, article("w-1", "politics")))
        .await
        .expect("the restored partner corrects its article");
    for refused in [&old, &new] {
        let refused = client
            .list_sections(authed(refused, ListSectionsRequest {}))
            .await
            .expect_err("a token from before the restoration");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let error = error_of(&cli(&server, &["partner", "restore", "wire"]).await);
    assert!(error.contains("is not revoked"), "{error}");

    // Every change is in the audit log, newest first, with no peer (the operator's).
    let audit = stdout_of(&cli(&server, &["audit", "--partner", "wire", "--json"]).await);
    let operations: Vec<(String, String)> = audit
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                entry["operation"].as_str().unwrap().to_owned(),
                entry["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("partner.restore", "unchanged"),
        ("publish", "unchanged"),
        ("partner.restore", "ok"),
        ("partner.grant", "revoked"),
        ("partner.rotate", "revoked"),
        ("partner.revoke", "unchanged"),
        ("partner.revoke", "ok"),
        ("partner.rotate", "ok"),
        ("publish", "ok"),
        ("partner.add", "ok"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(o, r)| (o.to_string(), r.to_string()))
        .collect();
    assert_eq!(operations, expected, "{audit}");
}

/// How many PublishArticle calls, across this process's servers, took a partner remembered
/// from its token's last lookup.
const REMEMBERED: &str = "feedpub_grpc_authentications_total{partner=\"remembered\"}";

/// A store of its own on the server's database, as another process would have, to change
/// partners at once.
async fn other_store(server: &TestServer) -> feedpub::storage::SqliteStore {
    feedpub::storage::SqliteStore::open(&server.data_dir())
        .await
        .unwrap()
}

/// Revokes `name` through `store`.
async fn revoke_in(store: &feedpub::storage::SqliteStore, name: &str) {
    let name = feedpub::domain::PartnerName::parse(name).unwrap();
    let (_, revoked) = store
        .revoke_partner(&name, chrono::Utc::now())
        .await
        .unwrap()
        .expect("the partner exists");
    assert!(revoked);
}

/// `partner add NAME --section rural`, then two publishes: the second takes the partner
/// the first looked up. The token.
async fn remembered_partner(
    server: &TestServer,
    client: &mut PublisherServiceClient<tonic::transport::Channel>,
    name: &str,
) -> String {
    let token = token_of(&cli(server, &["partner", "add", name, "--section", "rural"]).await);
    let before = server.metric(REMEMBERED).await;
    for n in 1..=2 {
        let id = format!("{name}-{n}");
        client
            .publish_article(authed(&token, article(&id, "rural")))
            .await
            .expect("the partner publishes");
    }
    // Shared by the tests of this process, so other publishes may count too; but none
    // would if no partner were ever remembered.
    assert!(server.metric(REMEMBERED).await > before);
    token
}

/// A takedown the operator made just before the server was told to stop is in the feeds'
/// files it leaves (the server takes a last look at what operators' commands logged), for
/// whatever serves `feeds/` while no server runs.
#[tokio::test]
async fn an_operators_takedown_just_before_a_stop_is_in_the_files_the_server_leaves() {
    const TITLE: &str = "合作方稿件：停止前撤下";
    let server = TestServer::start().await;
    let wire = add_wire(&server).await;
    let mut client = server.client().await;
    publish_titled(&mut client, &wire, "wire-1", TITLE).await;
    server.settle().await;
    let feeds = server.settings.server.feeds_dir.clone();
    let files = ["politics/atom.xml", "politics/rss.xml", "all/feed.json"];
    for file in files {
        let body = std::fs::read_to_string(feeds.join(file)).unwrap();
        assert!(body.contains(TITLE), "{file} before");
    }
    let done = cli(&server, &["partner", "retract", "wire", "wire-1"]).await;
    stdout_of(&done);
    // The folders stay while `_dir` lives.
    let (_dir, _) = server.stop().await;
    for file in files {
        let body = std::fs::read_to_string(feeds.join(file)).unwrap();
        assert!(!body.contains(TITLE), "{file} after");
    }
}

/// The operator takes down a partner's article with the server running: it leaves the
/// feeds within seconds, the partner reads it retracted with the operator's reason, and a
/// stream following the log hears of it, without any write of the server's own.
#[tokio::test]
async fn an_operator_takes_down_a_partners_article_while_the_server_runs() {
    const TITLE: &str = "合作方稿件：待撤下";
    let server = TestServer::start().await;
    let wire = add_wire(&server).await;
    let mut client = server.client().await;
    publish_titled(&mut client, &wire, "wire-1", TITLE).await;
    server
        .wait_for_feed("/feeds/politics/atom.xml", |b| b.contains(TITLE))
        .await;
    let mut stream = client
        .watch_articles(authed(&wire, WatchArticlesRequest::default()))
        .await
        .expect("wire watches")
        .into_inner();
    let first = next(&mut stream).await.expect("the first message");
    assert!(first.events.is_empty());

    let done = cli(
        &server,
        &[
            "partner",
            "retract",
            "wire",
            "wire-1",
            "--reason",
            "法律要求",
        ],
    )
    .await;
    assert!(
        stdout_of(&done).starts_with("wire-1 of partner wire was retracted: "),
        "{}",
        text(&done.stdout)
    );
    for format in ["atom.xml", "rss.xml", "feed.json"] {
        let path = format!("/feeds/politics/{format}");
        server.wait_for_feed(&path, |b| !b.contains(TITLE)).await;
    }
    let heard = next(&mut stream).await.expect("an event");
    let event = &heard.events[0];
    assert_eq!(event.article.as_ref().unwrap().id, "wire-1");
    assert_eq!(event.r#type(), proto::ArticleEventType::Retracted);
    let got = client
        .get_article(authed(
            &wire,
            GetArticleRequest {
                id: "wire-1".into(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state(), ArticleState::Retracted);
    assert_eq!(got.retract_reason, "法律要求");

    let again = cli(&server, &["partner", "retract", "wire", "wire-1"]).await;
    assert!(
        stdout_of(&again).contains("was retracted already, reason: 法律要求"),
        "{}",
        text(&again.stdout)
    );
    let audit = stdout_of(&cli(&server, &["audit", "--partner", "wire", "--limit", "2"]).await);
    assert!(audit.contains("by the operator: 法律要求"), "{audit}");
    for (args, named) in [
        (&["partner", "retract", "nobody", "wire-1"][..], "nobody"),
        (&["partner", "retract", "wire", "wire-9"], "wire-9"),
    ] {
        let output = cli(&server, args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            text(&output.stderr).contains(named),
            "{}",
            text(&output.stderr)
        );
    }

    // A retraction whose output is lost (a full disk) still says that it was made.
    client
        .publish_article(authed(&wire, article("wire-2", "politics")))
        .await
        .expect("wire publishes");
    let (cwd, data) = (server.dir.path().to_owned(), server.data_dir());
    let lost = tokio::task::spawn_blocking(move || {
        let mut cmd = common::binary::feedpub(&cwd);
        cmd.args(["partner", "retract", "wire", "wire-2", "--data-dir"])
            .arg(data)
            .stdout(common::binary::full_disk())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap().wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = text(&lost.stderr);
    assert_eq!(lost.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("feedpub: cannot write the output: ")
            && stderr.contains("; wire-2 of partner wire was retracted"),
        "{stderr}"
    );
    let got = client
        .get_article(authed(
            &wire,
            GetArticleRequest {
                id: "wire-2".into(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state(), ArticleState::Retracted);
    // Asked with no reason, the entry says who retracted it and nothing after.
    let audit = stdout_of(&cli(&server, &["audit", "--partner", "wire", "--limit", "1"]).await);
    let entry = audit.lines().find(|l| l.contains("wire-2")).unwrap_or("");
    assert!(entry.trim_end().ends_with("by the operator"), "{audit}");
}

/// A token that authenticated is remembered for the calls that ask for it (PublishArticle
/// does), and only those: checked on a publisher of its own, so that no other test's calls
/// count (the metric `remembered_partner` reads is shared by the process).
#[tokio::test]
async fn a_token_that_authenticated_is_remembered_for_the_calls_that_ask() {
    let server = TestServer::start().await;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(other_store(&server).await);
    let publisher = feedpub::publishing::Publisher::new(
        store,
        std::sync::Arc::new(server.settings.clone()),
        server.publication.clone(),
        feedpub::health::Health::new(),
    );
    let token = feedpub::domain::Token::from_presented(&server.tokens.newsroom);
    let (first, remembered) = publisher.authenticate(&token, true).await.unwrap();
    assert_eq!(remembered, None, "looked up the first time");
    let (again, remembered) = publisher.authenticate(&token, true).await.unwrap();
    assert_eq!(remembered, Some(token.hash()), "remembered the second");
    assert_eq!(again, first);
    let (_, remembered) = publisher.authenticate(&token, false).await.unwrap();
    assert_eq!(remembered, None, "looked up when memory is not asked for");
    let stranger = feedpub::domain::Token::from_presented("fp_nobody");
    assert!(publisher.authenticate(&stranger, true).await.is_err());
}

#[tokio::test]
async fn a_remembered_publisher_is_answered_as_if_its_token_were_looked_up_again() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let store = other_store(&server).await;
    let unauthenticated = |result: Result<_, tonic::Status>, what: &str| {
        let refused = result.expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
    };

    // Revoked behind the server's back, each partner's next publish is refused as an
    // unknown token, not for what it asks: a request the service cannot read, an article
    // that is not valid, or one that is.
    let wire = remembered_partner(&server, &mut client, "wire").await;
    revoke_in(&store, "wire").await;
    let unreadable = PublishArticleRequest::default();
    unauthenticated(
        client.publish_article(authed(&wire, unreadable)).await,
        "a request without its article",
    );
    let desk = remembered_partner(&server, &mut client, "desk").await;
    revoke_in(&store, "desk").await;
    let mut invalid = article("desk-3", "rural");
    invalid.article.as_mut().unwrap().title.clear();
    unauthenticated(
        client.publish_article(authed(&desk, invalid)).await,
        "an invalid article",
    );
    let copy = remembered_partner(&server, &mut client, "copy").await;
    revoke_in(&store, "copy").await;
    unauthenticated(
        client
            .publish_article(authed(&copy, article("copy-3", "rural")))
            .await,
        "a valid article",
    );

    // Rotated: the old token's next publish is refused, the new one's stored.
    let slot = remembered_partner(&server, &mut client, "slot").await;
    let rotated = token_of(&cli(&server, &["partner", "rotate", "slot"]).await);
    unauthenticated(
        client
            .publish_article(authed(&slot, article("slot-3", "rural")))
            .await,
        "the old token after rotation",
    );
    client
        .publish_article(authed(&rotated, article("slot-4", "rural")))
        .await
        .expect("the new token publishes");
    store.close().await;

    // Nothing a refused call sent was stored or audited as the partner's.
    let audit = stdout_of(&cli(&server, &["audit", "--json"]).await);
    let mut published: Vec<String> = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["operation"] == "publish")
        .map(|e| format!("{} {}", e["article_id"].as_str().unwrap(), e["outcome"]))
        .collect();
    published.sort();
    let mut expected: Vec<String> = ["wire", "desk", "copy", "slot"]
        .iter()
        .flat_map(|name| [format!("{name}-1 \"ok\""), format!("{name}-2 \"ok\"")])
        .chain(["slot-4 \"ok\"".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(published, expected, "{audit}");
    // `--limit 0` shows every entry, as `list --limit 0` shows every article.
    let every = stdout_of(&cli(&server, &["audit", "--json", "--limit", "0"]).await);
    assert_eq!(every, audit);
    let two = stdout_of(&cli(&server, &["audit", "--json", "--limit", "2"]).await);
    assert_eq!(
        two.lines().collect::<Vec<_>>(),
        audit.lines().take(2).collect::<Vec<_>>()
    );
    // Refused as a lookup refuses them: neither failed publishes nor a storage fault.
    for series in [
        "feedpub_publish_total{outcome=\"failed\"}",
        "feedpub_fault{component=\"storage\"}",
    ] {
        assert_eq!(server.metric(series).await, 0.0, "{series}");
    }
}

#[tokio::test]
async fn a_remembered_publisher_over_its_rate_limit_is_refused_as_revoked_once_it_is() {
    let server = TestServer::start_with(|settings| {
        settings.limits.requests_per_second = std::num::NonZeroU32::new(1).unwrap();
        settings.limits.burst = std::num::NonZeroU32::new(2).unwrap();
    })
    .await;
    let mut client = server.client().await;
    let store = other_store(&server).await;
    // The burst: looked up, then remembered.
    let token = remembered_partner(&server, &mut client, "wire").await;
    revoke_in(&store, "wire").await;
    // Within a second of the burst the limit refuses the call (unless the machine was slow
    // enough to refill it); either way the answer is that the token is refused.
    let refused = client
        .publish_article(authed(&token, article("wire-3", "rural")))
        .await
        .expect_err("a revoked partner over its limit");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    store.close().await;
}

#[tokio::test]
async fn granted_and_denied_rights_hold_from_the_next_call_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let token = add_wire(&server).await;
    client
        .publish_article(authed(&token, article("w-1", "politics")))
        .await
        .unwrap();

    let denied = stdout_of(
        &cli(
            &server,
            &["partner", "deny", "wire", "--section", "politics"],
        )
        .await,
    );
    assert!(denied.contains("denied"), "{denied}");
    let refused = client
        .publish_article(authed(&token, article("w-2", "politics")))
        .await
        .expect_err("a denied section");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "SECTION_NOT_GRANTED");
    // Nor can it change what it has in that section: retract it, or move it elsewhere.
    let refused = client
        .retract_article(authed(
            &token,
            RetractArticleRequest {
                id: "w-1".into(),
                reason: "r".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("retracting in a denied section");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    stdout_of(&cli(&server, &["partner", "grant", "wire", "--section", "rural"]).await);
    let refused = client
        .publish_article(authed(&token, article("w-1", "rural")))
        .await
        .expect_err("moving an article out of a denied section");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    client
        .publish_article(authed(&token, article("w-3", "rural")))
        .await
        .expect("a granted section");
    // The same in a batch, whose stored articles the store checks as it writes them: the
    // move is refused, the article beside it answered.
    let results = client
        .publish_articles(authed(
            &token,
            tokio_stream::iter(vec![PublishArticlesRequest {
                requests: vec![article("w-1", "rural"), article("w-3", "rural")],
            }]),
        ))
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert_eq!(
        common::result_codes(&results),
        [Code::PermissionDenied, Code::Ok],
        "{results:?}"
    );
    // Both refusals, made before the store and by it, are in the audit log.
    let refused_batch = client
        .publish_articles(authed(
            &token,
            tokio_stream::iter(vec![PublishArticlesRequest {
                requests: vec![article("w-5", "politics")],
            }]),
        ))
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert_eq!(
        refused_batch[0].status.as_ref().map(|s| s.code),
        Some(Code::PermissionDenied as i32)
    );
    let audit = stdout_of(&cli(&server, &["audit", "--partner", "wire", "--json"]).await);
    let refusals: Vec<String> = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["operation"] == "publish" && e["outcome"] == "permission_denied")
        .map(|e| e["article_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refusals, ["w-5", "w-1", "w-1", "w-2"], "{audit}");

    // Nor does it see what it has in a denied section: the refused move stored nothing,
    // so w-1 is still in politics.
    let get = |id: &str, version: i32| {
        let mut client = client.clone();
        let request = GetArticleRequest {
            id: id.into(),
            version,
        };
        let token = token.clone();
        async move { client.get_article(authed(&token, request)).await }
    };
    let refused = get("w-1", 0).await.expect_err("a denied section's article");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "SECTION_NOT_GRANTED");
    assert!(refused.message().contains("politics"), "{refused:?}");
    let refused = get("w-1", 1).await.expect_err("its versions too");
    assert_eq!(reason(&refused), "SECTION_NOT_GRANTED");
    let refused = client
        .list_article_versions(authed(
            &token,
            ListArticleVersionsRequest {
                id: "w-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("and their list");
    assert_eq!(reason(&refused), "SECTION_NOT_GRANTED");
    let list_in = |section: &str| {
        let mut client = client.clone();
        let request = ListArticlesRequest {
            section: section.into(),
            ..Default::default()
        };
        let token = token.clone();
        async move { client.list_articles(authed(&token, request)).await }
    };
    let refused = list_in("politics").await.expect_err("a denied section");
    assert_eq!(reason(&refused), "SECTION_NOT_GRANTED");
    let refused = list_in("sports").await.expect_err("an unknown section");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("section"), "{refused:?}");

    // Embargoes need their own right, for publishing and for seeing.
    let refused = client
        .publish_article(authed(&token, embargoed("w-4", "rural")))
        .await
        .expect_err("an embargo without the right");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "EMBARGO_NOT_GRANTED");
    stdout_of(&cli(&server, &["partner", "grant", "wire", "--embargoed"]).await);
    let stored = client
        .publish_article(authed(&token, embargoed("w-4", "rural")))
        .await
        .expect("an embargo with the right")
        .into_inner()
        .article
        .unwrap();
    assert_eq!(stored.state(), ArticleState::Embargoed);
    let listed_ids = |response: proto::ListArticlesResponse| -> Vec<String> {
        response.articles.into_iter().map(|a| a.id).collect()
    };
    let ids = listed_ids(
        client
            .list_articles(authed(&token, ListArticlesRequest::default()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(ids.contains(&"w-4".to_owned()), "{ids:?}");

    stdout_of(&cli(&server, &["partner", "deny", "wire", "--embargoed"]).await);
    let refused = client
        .get_article(authed(
            &token,
            GetArticleRequest {
                id: "w-4".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("an embargoed article without the right");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let ids = listed_ids(
        client
            .list_articles(authed(&token, ListArticlesRequest::default()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        ids,
        ["w-3"],
        "neither the embargoed article nor the denied section's"
    );
    let refused = client
        .list_article_versions(authed(
            &token,
            ListArticleVersionsRequest {
                id: "w-4".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("an embargoed article's versions without the right");
    assert_eq!(reason(&refused), "EMBARGO_NOT_GRANTED");
    // Nor does a stream replaying the log from its start tell it, though wire filed it.
    let request = WatchArticlesRequest {
        cursor: feedpub::grpc::convert::watch_cursor(0),
        ..Default::default()
    };
    let mut stream = client
        .watch_articles(authed(&token, request))
        .await
        .expect("wire watches")
        .into_inner();
    client
        .publish_article(authed(&token, article("w-5", "rural")))
        .await
        .expect("a later article, where the replay is sure to have passed w-4");
    let mut told = Vec::new();
    while !told.iter().any(|id| id == "w-5") {
        let message = next(&mut stream).await.expect("the replay goes on");
        told.extend(
            message
                .events
                .into_iter()
                .filter_map(|e| e.article.map(|a| a.id)),
        );
    }
    assert!(told.iter().all(|id| id != "w-4"), "{told:?}");

    // `list` shows the rights as they now are.
    let line = listed(
        &stdout_of(&cli(&server, &["partner", "list"]).await),
        "wire",
    );
    assert!(
        line.contains("rural") && !line.contains("politics"),
        "{line}"
    );
    assert!(line.contains(" no "), "embargoed: no\n{line}");
}

/// Runs `feedpub ARGS… --data-dir DATA` in `cwd`, which must exit with `code` (1: an
/// error, 2: a usage error) and say `named` on stderr.
/// An open WatchArticles stream follows the partner's rights as they are now: it stops
/// carrying embargoed articles once the embargo right is denied, ends when a section it
/// follows is denied, and ends when its token is rotated (or the partner revoked).
#[tokio::test]
async fn open_watch_streams_follow_the_partners_rights_as_they_change() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let newsroom = &server.tokens.newsroom;
    let wire = token_of(
        &cli(
            &server,
            &["partner", "add", "wire", "--all-sections", "--embargoed"],
        )
        .await,
    );
    let watch = |sections: &[&str]| {
        let request = WatchArticlesRequest {
            sections: sections.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut client = client.clone();
        let token = wire.clone();
        async move {
            let mut stream = client
                .watch_articles(authed(&token, request))
                .await
                .expect("wire watches")
                .into_inner();
            let first = next(&mut stream).await.expect("the first message");
            assert!(first.events.is_empty());
            stream
        }
    };
    let mut everything = watch(&[]).await;
    let mut rural = watch(&["rural"]).await;
    let publish = |request: PublishArticleRequest| {
        let mut client = client.clone();
        async move {
            client
                .publish_article(authed(newsroom, request))
                .await
                .expect("the newsroom publishes");
        }
    };
    let ids = |message: Result<proto::WatchArticlesResponse, tonic::Status>| -> Vec<String> {
        message
            .expect("more events")
            .events
            .iter()
            .map(|e| e.article.as_ref().unwrap().id.clone())
            .collect()
    };

    publish(embargoed("e-1", "politics")).await;
    assert_eq!(ids(next(&mut everything).await), ["e-1"]);
    stdout_of(&cli(&server, &["partner", "deny", "wire", "--embargoed"]).await);
    publish(embargoed("e-2", "politics")).await;
    publish(article("p-1", "politics")).await;
    assert_eq!(
        ids(next(&mut everything).await),
        ["p-1"],
        "no embargoed article once the right is denied"
    );

    stdout_of(&cli(&server, &["partner", "deny", "wire", "--section", "rural"]).await);
    publish(article("r-1", "rural")).await;
    let ended = next(&mut rural).await.expect_err("the rural stream ends");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert_eq!(reason(&ended), "SECTION_NOT_GRANTED");
    publish(article("p-2", "politics")).await;
    assert_eq!(
        ids(next(&mut everything).await),
        ["p-2"],
        "nothing of rural once it is denied"
    );

    // With nothing published after: the idle stream reads its rights again on its own.
    token_of(&cli(&server, &["partner", "rotate", "wire"]).await);
    let ended = next(&mut everything)
        .await
        .expect_err("the stream of the old token ends");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

/// The next message of a watch stream, or the status it ended with.
async fn next(
    stream: &mut tonic::Streaming<proto::WatchArticlesResponse>,
) -> Result<proto::WatchArticlesResponse, tonic::Status> {
    tokio::time::timeout(common::DEADLINE, stream.message())
        .await
        .expect("the watch stream answered in time")?
        .ok_or_else(|| tonic::Status::unknown("the stream ended"))
}

fn refused(cwd: &Path, data: &Path, args: &[&str], code: i32, named: &str) {
    let output = on_data(cwd, data, args);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}; stdout:\n{}\nstderr:\n{stderr}",
        text(&output.stdout)
    );
    assert!(stderr.contains(named), "{args:?}: {stderr}");
}

#[test]
fn unknown_partners_sections_and_missing_rights_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    token_of(&on_data(
        dir.path(),
        &data,
        &["partner", "add", "wire", "--section", "politics"],
    ));
    for args in [
        &["partner", "revoke", "nobody"][..],
        &["partner", "rotate", "nobody"],
        &["partner", "grant", "nobody", "--embargoed"],
        &["partner", "deny", "nobody", "--section", "rural"],
        &["audit", "--partner", "nobody"],
    ] {
        refused(dir.path(), &data, args, 1, "\"nobody\"");
    }
    let grant = |section| ["partner", "grant", "wire", "--section", section];
    refused(dir.path(), &data, &grant("nope"), 1, "\"nope\"");
    refused(dir.path(), &data, &grant("Bad Slug"), 1, "--section");
    // No right named is a usage error.
    refused(
        dir.path(),
        &data,
        &["partner", "grant", "wire"],
        2,
        "--embargoed",
    );
    let bad_since = run(common::binary::feedpub(dir.path()).args(["audit", "--since", "soon"]));
    assert_eq!(bad_since.status.code(), Some(2));
    assert!(text(&bad_since.stderr).contains("RFC 3339"));
}

#[tokio::test]
async fn the_audit_log_records_every_publish_and_retraction_with_the_peer_address() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let newsroom = &server.tokens.newsroom;
    client
        .publish_article(authed(newsroom, article("a-1", "politics")))
        .await
        .unwrap();
    client
        .publish_article(authed(newsroom, article("a-1", "politics")))
        .await
        .unwrap();
    client
        .retract_article(authed(
            newsroom,
            RetractArticleRequest {
                id: "a-1".into(),
                reason: "事实有误".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut bad = article("a-2", "politics");
    bad.article.as_mut().unwrap().title = String::new();
    client
        .publish_article(authed(newsroom, bad))
        .await
        .expect_err("an article without a title");
    client
        .retract_article(authed(
            newsroom,
            RetractArticleRequest {
                id: "missing".into(),
                reason: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("an unknown article");
    // Refused for its request id alone, before the article is looked up: audited all the
    // same.
    let refused = client
        .retract_article(authed(
            newsroom,
            RetractArticleRequest {
                id: "a-1".into(),
                reason: "重复".into(),
                request_id: "not a request id".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a bad request id");
    common::assert_invalid(&refused, "request_id");
    client
        .publish_article(authed(&server.tokens.county, article("c-1", "politics")))
        .await
        .expect_err("a section county may not publish to");
    // Reads are not mutations: they leave no entry.
    client
        .get_article(authed(
            newsroom,
            GetArticleRequest {
                id: "a-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    let json = stdout_of(&cli(&server, &["audit", "--json", "--partner", "newsroom"]).await);
    let entries: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["article_id"].as_str().unwrap_or("-"),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("retract", "a-1", "invalid_argument"),
            ("retract", "missing", "not_found"),
            ("publish", "a-2", "invalid_argument"),
            ("retract", "a-1", "ok"),
            ("publish", "a-1", "unchanged"),
            ("publish", "a-1", "ok"),
            ("partner.add", "-", "ok"),
        ],
        "{json}"
    );
    for entry in &entries[..6] {
        let peer: SocketAddr = entry["peer"]
            .as_str()
            .expect("calls carry their peer address")
            .parse()
            .unwrap();
        assert!(peer.ip().is_loopback(), "{peer}");
        assert_ne!(
            peer, server.grpc_addr,
            "the client's address, not the server's"
        );
        let time = chrono::DateTime::parse_from_rfc3339(entry["time"].as_str().unwrap());
        assert!(time.is_ok(), "{entry}");
    }
    assert!(
        entries[6]["peer"].is_null(),
        "the operator's entry has no peer"
    );
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("request_id")
    );
    assert!(entries[3]["detail"].as_str().unwrap().contains("事实有误"));
    assert!(
        entries[2]["detail"]
            .as_str()
            .unwrap()
            .contains("article.title")
    );

    let county = stdout_of(&cli(&server, &["audit", "--json", "--partner", "county"]).await);
    let first: serde_json::Value = serde_json::from_str(county.lines().next().unwrap()).unwrap();
    assert_eq!(first["outcome"], "permission_denied", "{county}");

    // The table, the limit and the time filter.
    let table = stdout_of(&cli(&server, &["audit", "--limit", "2"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two entries:\n{table}");
    for column in ["TIME", "PARTNER", "OPERATION", "ARTICLE", "PEER", "OUTCOME"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].contains("county") && lines[1].contains("permission_denied"),
        "{table}"
    );
    assert!(
        lines[2].contains("a-1")
            && lines[2].contains("invalid_argument")
            && lines[2].contains("127.0.0.1:"),
        "{table}"
    );
    let future = stdout_of(&cli(&server, &["audit", "--since", "2200-01-01"]).await);
    assert_eq!(future.lines().count(), 1, "only the header:\n{future}");
    let all = stdout_of(&cli(&server, &["audit", "--since", "2023-06-07T00:00:00+08:00"]).await);
    assert_eq!(
        all.lines().count(),
        1 + 9,
        "two partners added, seven calls:\n{all}"
    );
}

/// A PublishArticles stream is held to its partner as it stands when its articles are
/// stored, not as it stood when the stream opened: one open across the loss of a section,
/// or across a revocation, stores nothing the partner may no longer publish.
#[tokio::test]
async fn a_stream_open_across_a_lost_section_or_a_revocation_is_held_to_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let added = cli(
        &server,
        &[
            "partner",
            "add",
            "stream",
            "--section",
            "rural",
            "--section",
            "politics",
        ],
    )
    .await;
    let token = token_of(&added);
    // A stream opened and sent its first article; the sender of the rest, and the call.
    let open = |first: PublishArticleRequest| {
        let (mut client, token) = (client.clone(), token.clone());
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender
            .try_send(PublishArticlesRequest {
                requests: vec![first],
            })
            .unwrap();
        let call = tokio::spawn(async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
            client.publish_articles(authed(&token, stream)).await
        });
        (sender, call)
    };
    // Sends the last article and the end of the stream; the code of each result.
    let finish = |sender: tokio::sync::mpsc::Sender<PublishArticlesRequest>,
                  call: tokio::task::JoinHandle<_>,
                  last: PublishArticleRequest| async move {
        sender
            .send(PublishArticlesRequest {
                requests: vec![last],
            })
            .await
            .unwrap();
        drop(sender);
        let answer: Result<tonic::Response<proto::PublishArticlesResponse>, tonic::Status> =
            call.await.unwrap();
        let results = answer.expect("answered").into_inner().results;
        common::result_codes(&results)
    };

    let (sender, call) = open(article("s-1", "politics"));
    stdout_of(
        &cli(
            &server,
            &["partner", "deny", "stream", "--section", "politics"],
        )
        .await,
    );
    let codes = finish(sender, call, article("s-2", "rural")).await;
    assert_eq!(codes, [Code::PermissionDenied, Code::Ok]);

    let (sender, call) = open(article("s-3", "rural"));
    revoke_in(&other_store(&server).await, "stream").await;
    let codes = finish(sender, call, article("s-4", "rural")).await;
    assert_eq!(codes, [Code::Unauthenticated, Code::Unauthenticated]);

    // Only s-2 was stored.
    let store = other_store(&server).await;
    let name = feedpub::domain::PartnerName::parse("stream").unwrap();
    let partner = store.partner_record(&name).await.unwrap().unwrap().partner;
    let stored: Vec<String> = store
        .list_articles(partner.id, None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id.as_str().to_owned())
        .collect();
    assert_eq!(stored, ["s-2"]);
}
