//! The shared set-up: a real `feedpub serve` process in a fresh folder, a partner made with
//! `feedpub partner add`, a gRPC client, and the data set of 50 articles of about 3 KB
//! built from the sample edition's paragraphs, published the way a partner would.

use crate::process::{Process, tee_lines};
use crate::profile::Recorder;
use anyhow::Context;
use feedpub::cli::{Listening, listening_in};
use feedpub::grpc::proto::publisher_service_client::PublisherServiceClient;
use feedpub::grpc::proto::{Article, PublishArticleRequest};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Calls per second and burst of every partner of a benchmark's feedpub: high enough that
/// no load the benchmarks make is refused for its rate.
pub const NO_RATE_LIMIT: u32 = 1_000_000;

/// The section every benchmark publishes into and reads.
pub const SECTION: &str = "politics";
/// The feed the benchmarks read, as a URL path (the same on feedpub and on nginx).
pub const FEED_PATH: &str = "/feeds/politics/rss.xml";
/// Articles in the served data set (the default `max_items` of a feed).
pub const DATA_SET_ARTICLES: usize = 50;
/// The tag of every article [`SampleCopy::article`] makes.
pub const BENCH_TAG: &str = "基准测试";
/// Body size of every benchmark article, in bytes of UTF-8 (about 1,000 Chinese characters).
const BODY_BYTES: usize = 3 * 1024;

/// Variables that would change what feedpub does if inherited.
const FEEDPUB_VARS: [&str; 7] = [
    "FEEDPUB_CONFIG",
    "FEEDPUB_DATA_DIR",
    "FEEDPUB_FEEDS_DIR",
    "FEEDPUB_GRPC_ADDR",
    "FEEDPUB_HTTP_ADDR",
    "FEEDPUB_DEMO",
    "RUST_LOG",
];

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A PublisherService client that authenticates as the benchmark partner.
pub type Client = PublisherServiceClient<InterceptedService<Channel, Bearer>>;

/// A running feedpub with its folders, addresses and a client.
/// Fields drop in order: the connections close before feedpub is told to stop, so its
/// graceful shutdown has nothing to wait for.
pub struct Fixture {
    pub client: Client,
    pub http: reqwest::Client,
    /// Where feedpub writes the feed files (nginx serves the same folder).
    pub feeds_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The benchmark partner's bearer token.
    pub token: String,
    copy: SampleCopy,
    /// feedpub, or `perf record` running feedpub with `--perf`.
    process: Mutex<Process>,
    recorder: Option<Recorder>,
}

/// `feedpub` run in `dir` (so no ./feedpub.toml is picked up: the embedded sample
/// configuration applies, five sections and 50 items per feed), with every variable that
/// would change what it does removed; under `perf record` when given one.
fn feedpub_command(bin: &Path, dir: &Path, log: Option<&str>, perf: Option<&Command>) -> Command {
    let mut cmd = match perf {
        Some(perf) => {
            let mut cmd = Command::new(perf.get_program());
            cmd.args(perf.get_args()).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    cmd.current_dir(dir).stdin(Stdio::null());
    for var in FEEDPUB_VARS {
        cmd.env_remove(var);
    }
    if let Some(filter) = log {
        // The benchmark waits for the lines that announce the listeners: a filter that
        // left them out (`feedpub::publication=debug` alone) would keep it waiting.
        cmd.env("RUST_LOG", format!("feedpub::cli=info,{filter}"));
    }
    cmd
}

/// Creates the partner `bench` (every section) with `feedpub partner add` in `dir/data`
/// and returns its token.
pub fn add_partner(bin: &Path, dir: &Path) -> anyhow::Result<String> {
    add_partner_to(bin, dir, None)
}

/// Creates the partner `bench` (every section) with `feedpub partner add`, in the
/// PostgreSQL database `database_url` when given, else in `dir/data`, and returns its token.
pub fn add_partner_to(
    bin: &Path,
    dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let data = dir.join("data");
    let mut command = feedpub_command(bin, dir, None, None);
    command
        .args(["partner", "add", "bench", "--all-sections", "--data-dir"])
        .arg(&data);
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "feedpub partner add failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    Ok(stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("feedpub partner add printed no token")?
        .trim()
        .to_owned())
}

impl Fixture {
    /// Creates the partner in a fresh `dir`, starts `feedpub serve` there and connects.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        log: Option<&str>,
        perf: bool,
    ) -> anyhow::Result<Self> {
        let token = add_partner(bin, dir)?;
        Self::serve(bin, dir, token, log, perf).await
    }

    /// Starts `feedpub serve` on `dir/data` (which holds the partner of `token`), writing
    /// feeds to `dir/feeds`, on free ports, and connects to it.
    pub async fn serve(
        bin: &Path,
        dir: &Path,
        token: String,
        log: Option<&str>,
        perf: bool,
    ) -> anyhow::Result<Self> {
        Self::serve_on(bin, dir, token, log, perf, None).await
    }

    /// [`Fixture::serve`], on the PostgreSQL database `database_url` when given.
    pub async fn serve_on(
        bin: &Path,
        dir: &Path,
        token: String,
        log: Option<&str>,
        perf: bool,
        database_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let feeds_dir = dir.join("feeds");
        let recorder = if perf {
            Some(Recorder::new(dir)?)
        } else {
            None
        };
        // The sample configuration, without per-partner rate limits: the bench publishes a
        // thousand articles a second as one partner, which the default limits refuse. Every
        // load comes from this machine's one address: its share of the HTTP connections is
        // the whole cap, as nginx's is.
        let config = dir.join("bench.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[limits]\nrequests_per_second = {NO_RATE_LIMIT}\nburst = {NO_RATE_LIMIT}\n\
                 max_http_connections_per_peer = 1024\n",
                feedpub::config::EMBEDDED_CONFIG
            ),
        )
        .context("cannot write the bench configuration")?;
        let mut child = feedpub_command(bin, dir, log, recorder.as_ref().map(|(_, cmd)| cmd))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--feeds-dir")
            .arg(&feeds_dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(
                database_url
                    .map(|url| ["--database-url", url])
                    .into_iter()
                    .flatten(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let mut process = Process::new("feedpub", child);
        let lines = tee_lines(stderr, &dir.join("feedpub.log"));
        let addrs = listening_addresses(&lines, &mut process, true)?;
        let (grpc_addr, http_addr) = (addrs[0], addrs[1]);
        drop(lines);
        eprintln!(
            "feedpub (pid {}) serves gRPC on {grpc_addr}, HTTP on {http_addr}",
            process.id()
        );

        let channel = Channel::from_shared(format!("http://{grpc_addr}"))?
            .connect()
            .await
            .context("cannot connect to feedpub's gRPC API")?;
        let bearer = Bearer(format!("Bearer {token}").parse()?);
        let client = PublisherServiceClient::with_interceptor(channel, bearer);
        Ok(Self {
            process: Mutex::new(process),
            recorder: recorder.map(|(r, _)| r),
            feeds_dir,
            http_addr,
            grpc_addr,
            token,
            client,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            copy: SampleCopy::load(),
        })
    }

    /// An error if feedpub has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        self.process.lock().expect("process lock").ensure_running()
    }

    /// feedpub's process id (perf's with `--perf`: feedpub is its only child).
    pub fn pid(&self) -> u32 {
        self.process.lock().expect("process lock").id()
    }

    /// With `--perf`, starts (`true`) or stops sampling feedpub; otherwise does nothing.
    pub fn profile(&self, on: bool) -> anyhow::Result<()> {
        match &self.recorder {
            Some(recorder) => recorder.sample(on),
            None => Ok(()),
        }
    }

    /// Closes the connections, stops feedpub, and with `--perf` writes the profile summary.
    pub fn stop(self) -> anyhow::Result<()> {
        let Self {
            client,
            http,
            process,
            recorder,
            ..
        } = self;
        drop((client, http));
        process.into_inner().expect("process lock").stop();
        if let Some(recorder) = recorder {
            eprintln!("profile: {}", recorder.summarize()?.display());
        }
        Ok(())
    }

    /// The URL of `path` on feedpub's HTTP server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// Article `n` of a series (see [`SampleCopy::article`]).
    pub fn article(&self, id: String, title_suffix: &str, n: usize) -> Article {
        self.copy.article(id, title_suffix, n)
    }

    /// True once every change is in the feeds and their files, compressed with the full
    /// levels (feedpub's `feedpub_feeds_settled`): the data set is compressed and written.
    pub async fn settled(&self) -> anyhow::Result<bool> {
        let metrics = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(metrics.lines().any(|line| {
            line.strip_prefix("feedpub_feeds_settled ")
                .and_then(|value| value.trim().parse::<f64>().ok())
                == Some(1.0)
        }))
    }

    /// Publishes the 50 articles of the data set (dated 7 June 2023, one minute apart) and
    /// waits until the section feed shows all of them, compressed with the full levels and
    /// written (a feed is served as soon as it is rendered, compressed a little later).
    pub async fn publish_data_set(&self) -> anyhow::Result<()> {
        let page = 1_686_092_400; // 2023-06-07T07:00:00+08:00
        for n in 0..DATA_SET_ARTICLES {
            let mut article = self.article(format!("bench-{n:03}"), &format!("（{}）", n + 1), n);
            article.publish_time = Some(prost_types::Timestamp {
                seconds: page - 60 * n as i64,
                nanos: 0,
            });
            self.client
                .clone()
                .publish_article(PublishArticleRequest {
                    article: Some(article),
                    ..Default::default()
                })
                .await
                .context("PublishArticle of the data set failed")?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = self
                .http
                .get(self.url(FEED_PATH))
                .send()
                .await?
                .text()
                .await?;
            let items = body.matches("<item>").count();
            if items == DATA_SET_ARTICLES && self.settled().await? {
                eprintln!(
                    "data set: {items} articles in {FEED_PATH} ({} bytes)",
                    body.len()
                );
                return Ok(());
            }
            self.ensure_running()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "{FEED_PATH} shows {items} items, not {DATA_SET_ARTICLES}, after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The sample edition's copy, cut into the articles every benchmark publishes.
pub struct SampleCopy {
    paragraphs: Vec<String>,
    titles: Vec<(String, Vec<String>)>,
}

impl SampleCopy {
    /// The paragraphs, titles and bylines of the embedded sample edition.
    pub fn load() -> Self {
        let edition = feedpub::demo::sample_edition();
        let paragraphs = edition
            .iter()
            .flat_map(|a| a.content_text.split("\n\n"))
            .map(str::to_owned)
            .collect();
        let titles = edition
            .iter()
            .map(|a| (a.title.clone(), a.authors.clone()))
            .collect();
        Self { paragraphs, titles }
    }

    /// Article `n` of a series: a title and byline of the sample edition, the tag 基准测试
    /// and about 3 KB of its paragraphs, starting at a different paragraph for each `n`,
    /// published now into the benchmark section.
    pub fn article(&self, id: String, title_suffix: &str, n: usize) -> Article {
        let (title, authors) = &self.titles[n % self.titles.len()];
        let body = self.text_from(n * 3, BODY_BYTES);
        Article {
            id,
            section: SECTION.to_owned(),
            title: format!("{title}{title_suffix}"),
            authors: authors.clone(),
            content_text: body,
            tags: vec![BENCH_TAG.to_owned()],
            publish_time: Some(timestamp(SystemTime::now())),
            ..Article::default()
        }
    }
}

impl SampleCopy {
    /// About `bytes` of the edition's paragraphs (blank lines between them), cut on a
    /// character boundary.
    pub fn text_of(&self, bytes: usize) -> String {
        self.text_from(0, bytes)
    }

    /// [`SampleCopy::text_of`], starting at paragraph `first` (and around again).
    fn text_from(&self, first: usize, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes + 2048);
        let mut p = first;
        while text.len() < bytes {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&self.paragraphs[p % self.paragraphs.len()]);
            p += 1;
        }
        let mut cut = bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text
    }
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// Reads a server's log until it has announced its gRPC listener, and its HTTP one with
/// `http_too` (feedpub-echo has none), and returns their addresses in that order.
pub fn listening_addresses(
    lines: &std::sync::mpsc::Receiver<String>,
    process: &mut Process,
    http_too: bool,
) -> anyhow::Result<Vec<SocketAddr>> {
    // Generous: at start-up feedpub builds every feed, which takes a while on a large store.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut found: Vec<Option<SocketAddr>> = vec![None; if http_too { 2 } else { 1 }];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                process.ensure_running()?;
                anyhow::ensure!(!left.is_zero(), "the server did not say where it listens");
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                process.ensure_running()?;
                anyhow::bail!("the server closed its log before saying where it listens");
            }
        };
        match listening_in(&line) {
            Some(Listening::Grpc(addr)) => found[0] = Some(addr),
            Some(Listening::Http(addr)) if http_too => found[1] = Some(addr),
            _ => {}
        }
    }
    Ok(found.into_iter().flatten().collect())
}
