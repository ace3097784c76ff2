//! Test harness: a real feedpub server on port 0 in a temporary folder, a real gRPC client
//! with partner tokens, and real HTTP.

#![allow(dead_code)]

pub mod binary;
pub mod feeds_dir;
pub mod pki;
pub mod postgres;

use feedpub::app::Application;
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{Rights, SectionGrant, SectionSlug};
use feedpub::grpc::proto::{self, publisher_service_client::PublisherServiceClient};
use feedpub::publication::Publication;
use feedpub::publishing;
use feedpub::websub::Hub;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long a test waits for a condition, or for anything the binary does, before failing:
/// generous, for a machine busy with other work.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Tokens of the partners every test server has.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `newsroom`: every section, and embargoed articles.
    pub newsroom: String,
    /// `county`: only `rural`.
    pub county: String,
}

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub dir: TempDir,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub publication: Publication,
    /// The faults the server reports.
    pub health: feedpub::health::Health,
    /// The WebSub hub (its delivery counters).
    pub hub: Hub,
    pub tokens: Tokens,
    /// The settings the server runs with.
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The sample settings, with data and feeds in `dir` and both listeners on free ports.
pub fn settings(dir: &TempDir) -> Settings {
    Settings::isolated_sample(dir.path()).expect("the sample configuration loads")
}

impl TestServer {
    /// A fresh server with partners `newsroom` (all sections, embargoed articles) and
    /// `county` (rural only).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with the sample settings changed by `configure` (its
    /// `[limits]`, TLS files…).
    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        feedpub::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(&dir);
        configure(&mut settings);
        let tokens = add_partners_in(&settings).await;
        Self::start_with_settings(dir, tokens, settings).await
    }

    /// A server on the data and feeds folders of one that was stopped.
    pub async fn start_in(dir: TempDir, tokens: Tokens) -> Self {
        let settings = settings(&dir);
        Self::start_with_settings(dir, tokens, settings).await
    }

    /// A server with these settings, its folders in `dir`, its partners' tokens `tokens`.
    pub async fn start_with_settings(dir: TempDir, tokens: Tokens, settings: Settings) -> Self {
        let app = Application::build(settings.clone()).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let grpc_addr = app.grpc_addr();
        let http_addr = app.http_addr();
        let publication = app.publication().clone();
        let health = app.health().clone();
        let hub = app.websub().clone();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("the server stops cleanly");
        });
        Self {
            dir,
            grpc_addr,
            http_addr,
            publication,
            health,
            hub,
            tokens,
            settings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has closed its store.
    pub async fn stop(mut self) -> (TempDir, Tokens) {
        self.shutdown().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.tokens.clone())
    }

    /// The folder holding the server's database, for the CLI to work on.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.settings.server.data_dir.clone()
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task does not panic");
        }
    }

    /// Stops the server and starts a new one on the same data and feeds folders.
    pub async fn restart(self) -> Self {
        let settings = self.settings.clone();
        let (dir, tokens) = self.stop().await;
        Self::start_with_settings(dir, tokens, settings).await
    }

    /// A gRPC client connected to the server.
    pub async fn client(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::new(self.channel().await)
    }

    /// A channel to the gRPC server, for any of its services.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("a URL")
            .connect()
            .await
            .expect("the gRPC server accepts connections")
    }

    /// The URL of `path` on the HTTP server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// GETs `path` and returns the body of a 200 answer.
    pub async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let response = reqwest::get(self.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        let bytes = response.bytes().await.unwrap().to_vec();
        self.keep_for_validators(path, &bytes);
        bytes
    }

    /// Leaves a copy of every feed a test fetched in `target/feed-samples/harness/`, where
    /// CI's independent validators (lxml, feedparser, a JSON Feed schema) check them all.
    fn keep_for_validators(&self, path: &str, bytes: &[u8]) {
        let Some(feed) = path.strip_prefix("/feeds/") else {
            return;
        };
        if !(feed.ends_with(".xml") || feed.ends_with(".json")) {
            return;
        }
        let run = self.dir.path().file_name().unwrap_or_default();
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/feed-samples/harness")
            .join(run)
            .join(feed);
        if let Some(folder) = file.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        let _ = std::fs::write(file, bytes);
    }

    /// Polls `path` until its body satisfies `done`, and returns that body.
    pub async fn wait_for_feed(&self, path: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            // A feed not made yet (an author's, say, before an article of theirs shows) is
            // waited for like one not yet showing what is expected.
            let missing = reqwest::get(self.url(path)).await.unwrap().status() == 404;
            let body = if missing {
                String::new()
            } else {
                String::from_utf8(self.get_bytes(path).await).unwrap()
            };
            if !missing && done(&body) {
                return body;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{path} never reached the expected state:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestServer {
    /// Publishes the sample edition as `newsroom` through the real API, waits until the
    /// feeds show it, and returns the articles as stored.
    pub async fn publish_sample_edition(&self) -> Vec<proto::Article> {
        let mut client = self.client().await;
        let mut stored = Vec::new();
        for article in feedpub::demo::sample_edition() {
            let request = proto::PublishArticleRequest {
                article: Some(article),
                ..Default::default()
            };
            let response = client
                .publish_article(authed(&self.tokens.newsroom, request))
                .await
                .expect("the sample edition publishes");
            stored.extend(response.into_inner().article);
        }
        self.settle().await;
        stored
    }

    /// Publishes one article as `newsroom` through the real API and returns it as stored.
    pub async fn publish_as_newsroom(&self, article: proto::Article) -> proto::Article {
        let request = proto::PublishArticleRequest {
            article: Some(article),
            ..Default::default()
        };
        self.client()
            .await
            .publish_article(authed(&self.tokens.newsroom, request))
            .await
            .expect("the article publishes")
            .into_inner()
            .article
            .expect("the stored article")
    }

    /// Publishes a correction of the sample edition's last article (the rural one) with
    /// this title, and waits for the feeds: every `all` feed changes.
    pub async fn correct_title(&self, title: &str) {
        let mut article = feedpub::demo::sample_edition().pop().unwrap();
        article.title = title.to_owned();
        self.publish_as_newsroom(article).await;
        self.settle().await;
    }

    /// Waits until every acknowledged change is in the published feeds.
    pub async fn settle(&self) {
        let start = Instant::now();
        while !self.publication.is_settled() {
            assert!(start.elapsed() < DEADLINE, "the feeds never caught up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates the partners `newsroom` (all sections) and `county` (rural only) in the store of
/// `data_dir` (created if needed) and returns their tokens.
pub async fn add_partners(data_dir: &Path) -> Tokens {
    let settings = Settings::parse(
        "embedded sample",
        EMBEDDED_CONFIG,
        Overrides {
            data_dir: Some(data_dir.to_path_buf()),
            ..Overrides::default()
        },
    )
    .expect("the sample configuration loads");
    add_partners_in(&settings).await
}

/// Adds the partners of [`add_partners`] to the store `settings` name (SQLite in their data
/// folder, or their PostgreSQL database).
pub async fn add_partners_in(settings: &Settings) -> Tokens {
    let store = feedpub::storage::open(&settings.server).await.unwrap();
    let add = async |name: &str, rights: Rights| {
        let (_, token) = publishing::add_partner(store.as_ref(), settings, name, rights)
            .await
            .unwrap();
        token.expose().to_owned()
    };
    let newsroom = Rights {
        sections: SectionGrant::All,
        embargoed: true,
    };
    let newsroom = add("newsroom", newsroom).await;
    let county = Rights {
        sections: SectionGrant::Only(vec![SectionSlug::parse("rural").unwrap()]),
        embargoed: false,
    };
    let county = add("county", county).await;
    store.close().await;
    Tokens { newsroom, county }
}

/// A connection of the test's own to the SQLite database in `data_dir`, beside the server's.
pub async fn database_connection(data_dir: &Path) -> sqlx::SqliteConnection {
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(data_dir.join("feedpub.sqlite3"));
    <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("the database opens")
}

/// `PRAGMA integrity_check` (and the foreign keys) on the database file opened read-only.
pub async fn integrity_problems(data_dir: &Path) -> Vec<String> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("feedpub.sqlite3"))
        .read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("the database opens read-only");
    let mut problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check runs");
    if problems == ["ok"] {
        problems.clear();
    }
    let orphans: Vec<String> = sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("foreign_key_check runs");
    problems.extend(
        orphans
            .into_iter()
            .map(|t| format!("foreign key broken in {t}")),
    );
    let _ = sqlx::Connection::close(conn).await;
    problems
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Every feed path the sample configuration has.
pub fn all_feed_paths() -> Vec<String> {
    let scopes = [
        "all",
        "party-building",
        "politics",
        "notices",
        "features",
        "rural",
    ];
    scopes
        .iter()
        .flat_map(|s| {
            ["rss.xml", "atom.xml", "feed.json"]
                .iter()
                .map(move |f| format!("/feeds/{s}/{f}"))
        })
        .collect()
}

/// A protobuf timestamp for whole seconds.
pub fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// A short politics brief with this id and title, published 2023-06-07 07:00 +08:00.
pub fn brief(id: &str, title: &str) -> proto::Article {
    proto::Article {
        id: id.into(),
        section: "politics".into(),
        title: title.into(),
        authors: vec!["陈淑兰".into()],
        content_text: "本报讯（记者 陈淑兰）6月6日，研讨会召开。".into(),
        publish_time: Some(ts(1_686_092_400)),
        ..Default::default()
    }
}

/// The value of one series (name and labels, as written) in Prometheus text `metrics`.
pub fn series_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of one series of this process's metrics (the servers tests start in it
/// count there), 0 when absent. Read in process: a request for `/metrics` would open a
/// connection of its own.
pub fn in_process_metric(series: &str) -> f64 {
    series_value(&feedpub::telemetry::metrics().render(), series).unwrap_or(0.0)
}

/// The value of one Prometheus series at `metrics_url` (a server's `/metrics`), 0 when
/// absent.
pub async fn metric(http: &reqwest::Client, metrics_url: &str, series: &str) -> f64 {
    let text = http
        .get(metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    series_value(&text, series).unwrap_or(0.0)
}

impl TestServer {
    /// The value of one Prometheus series in `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let http = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .unwrap();
        metric(&http, &self.url("/metrics"), series).await
    }
}

/// The `google.rpc.ErrorInfo` reason of an error, after checking its domain.
pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "feedpub", "{status:?}");
    info.reason
}

/// Checks that `status` refuses a request for one invalid field: INVALID_ARGUMENT, a message
/// that names `field`, and a `google.rpc.BadRequest` detail whose only violation is `field`.
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_invalid_fields(status, &[field]);
}

/// Asserts an INVALID_ARGUMENT whose message and BadRequest detail name exactly `fields`,
/// in that order.
pub fn assert_invalid_fields(status: &tonic::Status, fields: &[&str]) {
    use tonic_types::StatusExt;
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{fields:?}: {status:?}"
    );
    for field in fields {
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    let details = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("{fields:?}: no BadRequest detail in {status:?}"));
    let named: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(named, fields, "{status:?}");
}

/// The status code of each result of a PublishArticles answer, in order (`Ok` when a
/// result carries no status).
pub fn result_codes(results: &[proto::PublishArticleResult]) -> Vec<tonic::Code> {
    results
        .iter()
        .map(|r| tonic::Code::from(r.status.as_ref().map_or(0, |s| s.code)))
        .collect()
}
