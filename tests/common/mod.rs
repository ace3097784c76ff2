//! Test harness: a real feedpub server on port 0 in a temporary folder, a real gRPC client
//! with partner tokens, and real HTTP.

#![allow(dead_code)]

use feedpub::app::Application;
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{SectionGrant, SectionSlug};
use feedpub::grpc::proto::{self, publisher_service_client::PublisherServiceClient};
use feedpub::publication::Publication;
use feedpub::publishing;
use feedpub::storage::{SqliteStore, Store};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Tokens of the partners every test server has.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `newsroom`: every section.
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
    pub tokens: Tokens,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn settings(dir: &TempDir) -> Settings {
    Settings::parse(
        "embedded sample",
        EMBEDDED_CONFIG,
        Overrides {
            data_dir: Some(dir.path().join("data")),
            feeds_dir: Some(dir.path().join("feeds")),
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .expect("the sample configuration loads")
}

impl TestServer {
    /// A fresh server with partners `newsroom` (all sections) and `county` (rural only).
    pub async fn start() -> Self {
        feedpub::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&dir);
        let store = SqliteStore::open(&settings.server.data_dir).await.unwrap();
        let newsroom = publishing::add_partner(&store, &settings, "newsroom", SectionGrant::All)
            .await
            .unwrap()
            .1;
        let county = publishing::add_partner(
            &store,
            &settings,
            "county",
            SectionGrant::Only(vec![SectionSlug::parse("rural").unwrap()]),
        )
        .await
        .unwrap()
        .1;
        store.close().await;
        let tokens = Tokens {
            newsroom: newsroom.expose().to_owned(),
            county: county.expose().to_owned(),
        };
        Self::start_in(dir, tokens).await
    }

    /// A server on the data and feeds folders of one that was stopped.
    pub async fn start_in(dir: TempDir, tokens: Tokens) -> Self {
        let app = Application::build(settings(&dir)).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let grpc_addr = app.grpc_addr();
        let http_addr = app.http_addr();
        let publication = app.publication().clone();
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
            tokens,
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
        let (dir, tokens) = self.stop().await;
        Self::start_in(dir, tokens).await
    }

    /// A gRPC client connected to the server.
    pub async fn client(&self) -> PublisherServiceClient<Channel> {
        PublisherServiceClient::connect(format!("http://{}", self.grpc_addr))
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
            let body = String::from_utf8(self.get_bytes(path).await).unwrap();
            if done(&body) {
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

/// The `google.rpc.ErrorInfo` reason of an error, after checking its domain.
pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "feedpub", "{status:?}");
    info.reason
}
