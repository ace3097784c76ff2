//! Harness of the WebSub tests: the hub's server (feedpub on port 0 in a temporary folder,
//! loopback callbacks allowed unless told otherwise, 20 ms retry base) and a subscriber (an
//! HTTP server on 127.0.0.1:0 that answers verifications as told and records every request).

use crate::common::{self, TestServer, authed};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use feedpub::config::{DatabaseUrl, Settings};
use feedpub::grpc::proto::{self, PublishArticleRequest};
use feedpub::websub::Hub;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use url::Url;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// `site.base_url` of the sample configuration: topics and the hub URL derive from it.
pub const BASE: &str = "http://127.0.0.1:8080/";

pub fn topic(path: &str) -> String {
    format!("{BASE}feeds/{path}")
}

// ---------------------------------------------------------------------------------------
// The subscriber: records every request, answers as told per callback path.

/// How a callback answers the hub's verification GET.
#[derive(Clone, Copy, Default)]
pub enum Verify {
    /// 200 with the challenge: the subscriber confirms.
    #[default]
    Echo,
    /// 200 with something else.
    Wrong,
    /// 404: the subscriber does not want it.
    Refuse,
    /// 302 to `/elsewhere`, which would echo.
    Redirect,
    /// Echoes a subscribe's challenge after this long, an unsubscribe's at once.
    SlowSubscribe(Duration),
}

#[derive(Clone)]
pub struct Behaviour {
    pub verify: Verify,
    /// Statuses for the next deliveries, in order; then `then`.
    pub first: VecDeque<u16>,
    pub then: u16,
    /// How long deliveries wait for their answer (they are recorded on arrival).
    pub stall: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            verify: Verify::Echo,
            first: VecDeque::new(),
            then: 200,
            stall: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Default)]
struct Recorder {
    hits: Mutex<Vec<Hit>>,
    /// The path and status of every POST answered, in the order they were answered.
    answered: Mutex<Vec<(String, u16)>>,
    behaviours: Mutex<HashMap<String, Behaviour>>,
    changed: watch::Sender<usize>,
}

pub struct Subscriber {
    pub addr: SocketAddr,
    recorder: Arc<Recorder>,
}

async fn answer(
    State(recorder): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let behaviour = recorder
        .behaviours
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_default();
    let is_post = method == Method::POST;
    recorder.hits.lock().unwrap().push(Hit {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    recorder.changed.send_modify(|n| *n += 1);
    if is_post {
        tokio::time::sleep(behaviour.stall).await;
    }
    if method == Method::GET {
        let challenge = query.get("hub.challenge").cloned().unwrap_or_default();
        match behaviour.verify {
            Verify::Echo => challenge.into_response(),
            Verify::SlowSubscribe(wait) => {
                if query.get("hub.mode").map(String::as_str) == Some("subscribe") {
                    tokio::time::sleep(wait).await;
                }
                challenge.into_response()
            }
            Verify::Wrong => "not the challenge".into_response(),
            Verify::Refuse => StatusCode::NOT_FOUND.into_response(),
            Verify::Redirect => (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    format!("/elsewhere?{}", uri.query().unwrap_or("")),
                )],
            )
                .into_response(),
        }
    } else {
        let status = {
            let mut behaviours = recorder.behaviours.lock().unwrap();
            let entry = behaviours.entry(path.clone()).or_default();
            entry.first.pop_front().unwrap_or(entry.then)
        };
        recorder.answered.lock().unwrap().push((path, status));
        recorder.changed.send_modify(|n| *n += 1);
        let status = StatusCode::from_u16(status).unwrap();
        (status, [(header::LOCATION, "/elsewhere")]).into_response()
    }
}

impl Subscriber {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// A subscriber on another loopback address (`127.0.0.2`, say): another host to the
    /// hub, whose delivery slots are shared by host whatever the port.
    pub async fn start_on(ip: &str) -> Self {
        let recorder = Arc::new(Recorder::default());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(answer).with_state(recorder.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, recorder }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.recorder
            .behaviours
            .lock()
            .unwrap()
            .insert(path.to_owned(), behaviour);
    }

    pub fn hits(&self, method: Method, path: &str) -> Vec<Hit> {
        let hits = self.recorder.hits.lock().unwrap();
        hits.iter()
            .filter(|h| h.method == method && h.path == path)
            .cloned()
            .collect()
    }

    pub fn all_hits(&self) -> usize {
        self.recorder.hits.lock().unwrap().len()
    }

    /// Waits until `path` has received at least `count` requests of `method`.
    pub async fn wait_for(&self, method: Method, path: &str, count: usize) -> Vec<Hit> {
        self.wait_recorded(|| {
            let hits = self.hits(method.clone(), path);
            match hits.len() {
                got if got >= count => Ok(hits),
                got => Err(format!("{path} got {got} {method} requests, not {count}")),
            }
        })
        .await
    }

    /// Waits until `path` has answered at least `count` POSTs, and returns the statuses it
    /// answered. A POST's status is chosen when its stall is over, after it is recorded:
    /// [`Self::wait_for`] may return before the hub has its answer.
    pub async fn wait_answered(&self, path: &str, count: usize) -> Vec<u16> {
        self.wait_recorded(|| {
            let answered = self.recorder.answered.lock().unwrap();
            let statuses: Vec<u16> = answered
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, status)| *status)
                .collect();
            match statuses.len() {
                got if got >= count => Ok(statuses),
                got => Err(format!("{path} answered {got} POSTs, not {count}")),
            }
        })
        .await
    }

    /// Waits until `ready` gives a value, checking again at each request recorded or
    /// answered; fails with its message at the deadline.
    async fn wait_recorded<T>(&self, ready: impl Fn() -> Result<T, String>) -> T {
        let mut changed = self.recorder.changed.subscribe();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let not_yet = match ready() {
                Ok(value) => return value,
                Err(not_yet) => not_yet,
            };
            let waited = tokio::time::timeout_at(deadline, changed.changed()).await;
            assert!(waited.is_ok(), "{not_yet}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The hub's server.

#[derive(Clone)]
pub struct Options {
    pub allow_loopback: bool,
    pub external_hubs: Vec<String>,
    /// PostgreSQL instead of SQLite in the data folder.
    pub database_url: Option<String>,
    /// The wait before a delivery's first retry.
    pub retry_base_ms: u64,
    /// `[websub] max_subscriptions` and `max_subscriptions_per_address`.
    pub max_subscriptions: (u64, u64),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_loopback: true,
            external_hubs: Vec::new(),
            database_url: None,
            retry_base_ms: 20,
            max_subscriptions: (100_000, 10_000),
        }
    }
}

/// The sample settings changed as `options` say (a 20 ms retry base unless told).
fn configure(settings: &mut Settings, options: &Options) {
    if let Some(url) = &options.database_url {
        settings.server.database_url = Some(DatabaseUrl::parse(url).unwrap());
    }
    if options.allow_loopback {
        settings.websub.allowed_callback_networks = vec!["127.0.0.0/8".parse().unwrap()];
    }
    settings.websub.retry_base_ms = options.retry_base_ms;
    (
        settings.websub.max_subscriptions,
        settings.websub.max_subscriptions_per_address,
    ) = options.max_subscriptions;
    settings.websub.external_hubs = options
        .external_hubs
        .iter()
        .map(|u| Url::parse(u).unwrap())
        .collect();
}

/// A short article with a fixed publish time.
pub fn brief(id: &str, section: &str) -> proto::Article {
    proto::Article {
        id: id.into(),
        section: section.into(),
        title: format!("快讯 {id}"),
        authors: vec!["陈淑兰".into()],
        content_text: "本报讯 6月6日，研讨会召开。".into(),
        publish_time: Some(prost_types::Timestamp {
            seconds: 1_686_092_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// A [`TestServer`] configured for the hub.
pub struct Server {
    server: TestServer,
    options: Options,
    pub http_addr: SocketAddr,
    pub hub: Hub,
}

impl Server {
    pub async fn start(options: Options) -> Self {
        let server = TestServer::start_with(|settings| configure(settings, &options)).await;
        Self::of(server, options)
    }

    fn of(server: TestServer, options: Options) -> Self {
        Self {
            http_addr: server.http_addr,
            hub: server.hub.clone(),
            server,
            options,
        }
    }

    /// Another server on the same PostgreSQL database (a replica), with folders of its own.
    pub async fn replica(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = common::settings(&dir);
        configure(&mut settings, &self.options);
        let tokens = self.server.tokens.clone();
        let server = TestServer::start_with_settings(dir, tokens, settings).await;
        Self::of(server, self.options.clone())
    }

    pub async fn restart(self) -> Self {
        Self::of(self.server.restart().await, self.options)
    }

    /// Stops the server, waits `pause`, and starts it again on the same folders.
    pub async fn restart_after(self, pause: Duration) -> Self {
        let settings = self.server.settings.clone();
        let (dir, tokens) = self.server.stop().await;
        tokio::time::sleep(pause).await;
        let server = TestServer::start_with_settings(dir, tokens, settings).await;
        Self::of(server, self.options)
    }

    /// POSTs a form to `/websub`; pairs may repeat.
    pub async fn hub_request(&self, pairs: &[(&str, &str)]) -> (StatusCode, String) {
        hub_request(self.http_addr, pairs).await
    }

    pub async fn subscribe(&self, feed: &str, callback: &str, extra: &[(&str, &str)]) {
        let topic = topic(feed);
        let mut pairs = vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic.as_str()),
            ("hub.callback", callback),
        ];
        pairs.extend_from_slice(extra);
        let (status, body) = self.hub_request(&pairs).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    /// Subscribes `callback` to `feed` and waits for the hub to verify it.
    pub async fn subscribed(&self, feed: &str, callback: &str) {
        let before = self.hub.verifications_ok();
        self.subscribe(feed, callback, &[]).await;
        self.wait_until("verified", |hub| hub.verifications_ok() > before)
            .await;
    }

    /// Publishes a new article over gRPC; returns when the answer arrived.
    pub async fn publish(&self, id: &str, section: &str) -> Instant {
        self.publish_article(brief(id, section)).await
    }

    /// Publishes `article` as the partner `newsroom` (every section, embargoes too).
    pub async fn publish_article(&self, article: proto::Article) -> Instant {
        let request = PublishArticleRequest {
            article: Some(article),
            ..Default::default()
        };
        let mut client = self.server.client().await;
        client
            .publish_article(authed(&self.server.tokens.newsroom, request))
            .await
            .unwrap();
        Instant::now()
    }

    /// Retracts an article published with [`Server::publish`].
    pub async fn retract(&self, id: &str) {
        let request = proto::RetractArticleRequest {
            id: id.into(),
            reason: "事实有误".into(),
            ..Default::default()
        };
        let mut client = self.server.client().await;
        client
            .retract_article(authed(&self.server.tokens.newsroom, request))
            .await
            .unwrap();
    }

    pub async fn feed_bytes(&self, path: &str) -> Bytes {
        let url = format!("http://{}/feeds/{path}", self.http_addr);
        reqwest::get(url).await.unwrap().bytes().await.unwrap()
    }

    /// Polls the hub's counters until `done` holds.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Hub) -> bool) {
        let start = Instant::now();
        while !done(&self.hub) {
            assert!(start.elapsed() < DEADLINE, "the hub never got to: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every acknowledged change is in the published feeds.
    pub async fn settle(&self) {
        self.server.settle().await;
    }

    /// Waits until every delivery started so far has ended.
    pub async fn wait_idle(&self) {
        self.wait_until("no delivery in flight", |hub| {
            hub.deliveries_in_flight() == 0
        })
        .await;
    }
}

/// A form `POST /websub` of `pairs` to the server at `http_addr`: its status and text.
pub async fn hub_request(http_addr: SocketAddr, pairs: &[(&str, &str)]) -> (StatusCode, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let response = reqwest::Client::new()
        .post(format!("http://{http_addr}/websub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

pub fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
