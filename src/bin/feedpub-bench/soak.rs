//! Soak (issue 8 item 5): mixed publish, poll and watch traffic at a moderate fixed rate
//! against a real `feedpub serve` for a set time, sampling feedpub's resident memory, open
//! file descriptors and SQLite files every few seconds and counting every error.
//!
//! - **Publishers** publish new articles cut from the sample edition's paragraphs into the
//!   five sections, correct earlier ones (a new title, with the stored etag as precondition),
//!   retract some, and now and then send a batch through PublishArticles.
//! - **Pollers** walk the RSS, Atom and JSON feeds of every section and of `all` with
//!   `If-None-Match`; every 200 must carry the ETag its body hashes to and parse, every 304
//!   must be empty; `/healthz` and `/metrics` in between.
//! - **Watchers** follow WatchArticles from the start, reconnecting from their cursor every
//!   few seconds; every event must be the one after the previous (no gap, no repeat), and at
//!   the end each has seen exactly the events the publishers were acknowledged.
//!
//! The verdicts (see [`Bounds`]): memory flat, descriptors flat, WAL bounded, zero errors.
//! The same driver runs `feedpub-bench soak` and `tests/soak.rs` (which reads `--soak-json`).

use crate::fixture::Fixture;
use crate::report::{Figure, Target};
use anyhow::Context;
use feedpub::grpc::convert::position_from_cursor;
use feedpub::grpc::proto::{
    Article, ArticleEventType, PublishArticleRequest, PublishArticlesRequest,
    RetractArticleRequest, WatchArticlesRequest,
};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sections of the embedded sample configuration, which the soak's feedpub runs with.
const SECTIONS: [&str; 5] = ["party-building", "politics", "notices", "features", "rural"];
/// Feed formats polled, per scope.
const FORMATS: [&str; 3] = ["rss.xml", "atom.xml", "feed.json"];
/// feedpub's database in its data folder, and its write-ahead log.
const DATABASE_FILE: &str = "feedpub.sqlite3";
const WAL_FILE: &str = "feedpub.sqlite3-wal";
/// Articles stored before the clock starts (through PublishArticles, dated back in time),
/// so that the store is larger than SQLite's page cache and every feed has archive pages.
const PRELOAD: usize = 10_000;
/// Articles per PublishArticles message, and messages per stream, of the preload.
const PRELOAD_MESSAGE: usize = 200;
const PRELOAD_STREAM: usize = 5;
/// Error messages kept in the summary (the counts are always complete).
const KEPT_ERRORS: usize = 20;

/// The traffic: how many of each client, and how often each acts.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub publishers: usize,
    /// One action (a publish, a correction, a retraction or a batch) per publisher per tick.
    pub publish_every: Duration,
    /// Articles of one PublishArticles batch.
    pub batch: usize,
    pub pollers: usize,
    pub poll_every: Duration,
    pub watchers: usize,
    /// A watcher drops its stream and resumes from its cursor after this long (each a
    /// little differently, see [`Watcher`]).
    pub reconnect_every: Duration,
    pub sample_every: Duration,
}

impl Plan {
    /// The fixed moderate rate the soak runs at: about 12 article writes and 12 feed
    /// requests a second, three watch streams.
    pub const MODERATE: Plan = Plan {
        publishers: 3,
        publish_every: Duration::from_millis(400),
        batch: 10,
        pollers: 3,
        poll_every: Duration::from_millis(250),
        watchers: 3,
        reconnect_every: Duration::from_secs(15),
        sample_every: Duration::from_secs(5),
    };
}

/// What the verdicts allow.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Share of the samples, from the start, that are warm-up (caches filling) and are
    /// left out of the flatness verdicts.
    pub warm_up: f64,
    /// Memory flat: the highest resident size of the last third of the samples after
    /// warm-up is at most the highest of the first third plus this many MiB...
    pub rss_growth_mib: f64,
    /// ... or this share of it, whichever is larger.
    pub rss_growth_ratio: f64,
    /// Descriptors flat: the highest count of the last third at most the highest of the
    /// first third plus this.
    pub fd_growth: u64,
    /// WAL bounded: the write-ahead log never larger than this many MiB (feedpub
    /// checkpoints it at 10,000 pages, about 40 MiB).
    pub wal_max_mib: f64,
}

impl Bounds {
    /// The bounds the benchmark and the CI test hold feedpub to.
    pub const STATED: Bounds = Bounds {
        warm_up: 0.25,
        rss_growth_mib: 16.0,
        rss_growth_ratio: 0.10,
        fd_growth: 8,
        wal_max_mib: 64.0,
    };
}

/// One sample of feedpub's process and files, with the traffic so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub t: Duration,
    pub rss_kib: u64,
    pub fds: u64,
    pub wal_bytes: u64,
    /// The WAL header's checkpoint sequence number: it grows each time the log is
    /// restarted from its beginning after a checkpoint.
    pub wal_restarts: u64,
    pub db_bytes: u64,
    pub counts: Counts,
}

/// Requests of each kind so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub published: u64,
    pub corrected: u64,
    pub retracted: u64,
    pub batches: u64,
    pub batch_articles: u64,
    pub polls_200: u64,
    pub polls_304: u64,
    pub health: u64,
    pub events: u64,
    pub reconnects: u64,
    pub errors: u64,
}

/// Every counter the clients bump, shared.
#[derive(Default)]
struct Tally {
    published: AtomicU64,
    corrected: AtomicU64,
    retracted: AtomicU64,
    batches: AtomicU64,
    batch_articles: AtomicU64,
    polls_200: AtomicU64,
    polls_304: AtomicU64,
    health: AtomicU64,
    events: AtomicU64,
    reconnects: AtomicU64,
    errors: Mutex<Errors>,
    stop: AtomicBool,
}

#[derive(Default)]
struct Errors {
    by_kind: BTreeMap<&'static str, u64>,
    first: Vec<String>,
}

impl Tally {
    fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, kind: &'static str, message: String) {
        let mut errors = self.errors.lock().expect("errors lock");
        *errors.by_kind.entry(kind).or_default() += 1;
        if errors.first.len() < KEPT_ERRORS {
            eprintln!("soak: {kind}: {message}");
            errors.first.push(format!("{kind}: {message}"));
        }
    }

    fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            published: get(&self.published),
            corrected: get(&self.corrected),
            retracted: get(&self.retracted),
            batches: get(&self.batches),
            batch_articles: get(&self.batch_articles),
            polls_200: get(&self.polls_200),
            polls_304: get(&self.polls_304),
            health: get(&self.health),
            events: get(&self.events),
            reconnects: get(&self.reconnects),
            errors: self
                .errors
                .lock()
                .expect("errors lock")
                .by_kind
                .values()
                .sum(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The events the store must have logged for the acknowledged writes, by type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    published: u64,
    updated: u64,
    retracted: u64,
}

impl Expected {
    fn total(&self) -> u64 {
        self.published + self.updated + self.retracted
    }

    fn add(&mut self, kind: ArticleEventType) {
        match kind {
            ArticleEventType::Published => self.published += 1,
            ArticleEventType::Updated => self.updated += 1,
            ArticleEventType::Retracted => self.retracted += 1,
            _ => {}
        }
    }
}

/// The outcome of a soak: the samples, the totals, the errors and the verdicts.
pub struct Outcome {
    pub duration: Duration,
    pub plan: Plan,
    pub bounds: Bounds,
    pub samples: Vec<Sample>,
    pub totals: Counts,
    pub errors: BTreeMap<&'static str, u64>,
    pub first_errors: Vec<String>,
    pub verdicts: Verdicts,
}

/// The verdicts, each with the figures it was made from.
#[derive(Debug, Clone, Copy)]
pub struct Verdicts {
    pub rss_first_mib: f64,
    pub rss_last_mib: f64,
    pub rss_allowed_mib: f64,
    pub memory_flat: bool,
    pub fds_first: u64,
    pub fds_last: u64,
    pub fds_flat: bool,
    pub wal_max_mib: f64,
    pub wal_bounded: bool,
    pub zero_errors: bool,
}

impl Verdicts {
    fn pass(&self) -> bool {
        self.memory_flat && self.fds_flat && self.wal_bounded && self.zero_errors
    }
}

/// Runs the soak for `duration` against a fresh feedpub in `dir`, then stops it.
pub async fn run(
    bin: &Path,
    dir: &Path,
    duration: Duration,
    log: Option<&str>,
) -> anyhow::Result<Outcome> {
    let plan = Plan::MODERATE;
    let fixture = Arc::new(Fixture::start(bin, dir, log, false).await?);
    let pid = fixture.pid();
    let data = dir.join("data");
    let tally = Arc::new(Tally::default());
    let expected = Arc::new(Mutex::new(Expected::default()));
    eprintln!(
        "soak: {} s of {} publishers, {} pollers, {} watchers; a sample every {} s",
        duration.as_secs(),
        plan.publishers,
        plan.pollers,
        plan.watchers,
        plan.sample_every.as_secs()
    );

    preload(&fixture).await?;
    // Watchers first, each with its first (empty) message in hand, so they see every event.
    let mut watchers = Vec::new();
    for w in 0..plan.watchers {
        let mut watcher = Watcher::new(fixture.clone(), tally.clone(), w);
        watcher.connect(None).await?;
        watchers.push(tokio::spawn(watcher.follow(plan)));
    }
    let mut clients = Vec::new();
    for p in 0..plan.publishers {
        let publisher = Publisher {
            fixture: fixture.clone(),
            tally: tally.clone(),
            expected: expected.clone(),
            index: p,
            next: 0,
            live: Vec::new(),
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (p as u64 + 1)),
        };
        clients.push(tokio::spawn(publisher.run(plan)));
    }
    for p in 0..plan.pollers {
        clients.push(tokio::spawn(poll(fixture.clone(), tally.clone(), p, plan)));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(plan.sample_every);
    loop {
        ticker.tick().await;
        let t = started.elapsed();
        let sample = sample(pid, &data, t, tally.counts());
        eprintln!("soak: {}", sample_row(&sample));
        samples.push(sample);
        if fixture.ensure_running().is_err() {
            tally.error("server", "feedpub exited during the soak".into());
            break;
        }
        if t >= duration {
            break;
        }
    }
    tally.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.context("a soak client panicked")?;
    }
    // Every write is acknowledged now: each watcher must reach the last event.
    let expected = *expected.lock().expect("expected lock");
    for watcher in watchers {
        let seen = watcher.await.context("a soak watcher panicked")?;
        if let Err(e) = seen.finish(expected).await {
            tally.error("watch", format!("{e:#}"));
        }
    }
    let totals = tally.counts();
    let errors = std::mem::take(&mut *tally.errors.lock().expect("errors lock"));
    drop(tally);
    match Arc::try_unwrap(fixture) {
        Ok(fixture) => fixture.stop()?,
        Err(_) => anyhow::bail!("a soak client still holds feedpub"),
    }
    let bounds = Bounds::STATED;
    let verdicts = judge(&samples, &bounds, totals.errors);
    Ok(Outcome {
        duration,
        plan,
        bounds,
        samples,
        totals,
        errors: errors.by_kind,
        first_errors: errors.first,
        verdicts,
    })
}

/// Stores [`PRELOAD`] articles, one every ten minutes back from an hour ago, over the five
/// sections, through PublishArticles streams.
async fn preload(fixture: &Fixture) -> anyhow::Result<()> {
    let started = Instant::now();
    let now = std::time::SystemTime::now();
    let per_stream = PRELOAD_MESSAGE * PRELOAD_STREAM;
    for first in (0..PRELOAD).step_by(per_stream) {
        let messages: Vec<PublishArticlesRequest> = (first..(first + per_stream).min(PRELOAD))
            .map(|n| {
                let mut article =
                    fixture.article(format!("soak-pre-{n:05}"), &format!("（存档{n}）"), n);
                article.section = SECTIONS[n % SECTIONS.len()].to_owned();
                let age = Duration::from_secs(3600 + 600 * (PRELOAD - n) as u64);
                article.publish_time = Some(crate::fixture::timestamp(now - age));
                PublishArticleRequest {
                    article: Some(article),
                    request_id: String::new(),
                }
            })
            .collect::<Vec<_>>()
            .chunks(PRELOAD_MESSAGE)
            .map(|chunk| PublishArticlesRequest {
                requests: chunk.to_vec(),
            })
            .collect();
        let answer = fixture
            .client
            .clone()
            .publish_articles(tokio_stream::iter(messages))
            .await
            .context("PublishArticles of the preload")?
            .into_inner();
        let refused = answer
            .results
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.code != 0))
            .count();
        anyhow::ensure!(refused == 0, "{refused} preload articles refused");
    }
    eprintln!(
        "soak: {PRELOAD} articles preloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The verdicts on `samples` (see [`Bounds`]).
pub fn judge(samples: &[Sample], bounds: &Bounds, errors: u64) -> Verdicts {
    let skip = ((samples.len() as f64 * bounds.warm_up).ceil() as usize).min(samples.len());
    let steady = &samples[skip..];
    let third = (steady.len() / 3).max(1).min(steady.len());
    let (first, last) = (&steady[..third], &steady[steady.len() - third..]);
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss_first_mib = mib(max(first, |s| s.rss_kib));
    let rss_last_mib = mib(max(last, |s| s.rss_kib));
    let rss_allowed_mib = rss_first_mib
        + bounds
            .rss_growth_mib
            .max(rss_first_mib * bounds.rss_growth_ratio);
    let fds_first = max(first, |s| s.fds);
    let fds_last = max(last, |s| s.fds);
    let wal_max_mib = max(samples, |s| s.wal_bytes) as f64 / (1024.0 * 1024.0);
    Verdicts {
        rss_first_mib,
        rss_last_mib,
        rss_allowed_mib,
        memory_flat: !steady.is_empty() && rss_last_mib <= rss_allowed_mib,
        fds_first,
        fds_last,
        fds_flat: !steady.is_empty() && fds_last <= fds_first + bounds.fd_growth,
        wal_max_mib,
        wal_bounded: wal_max_mib <= bounds.wal_max_mib,
        zero_errors: errors == 0,
    }
}

/// Reads feedpub's resident size and descriptors from /proc and the database's sizes.
fn sample(pid: u32, data: &Path, t: Duration, counts: Counts) -> Sample {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let size = |name: &str| std::fs::metadata(data.join(name)).map_or(0, |m| m.len());
    Sample {
        t,
        rss_kib,
        fds,
        wal_bytes: size(WAL_FILE),
        wal_restarts: wal_checkpoint_sequence(&data.join(WAL_FILE)),
        db_bytes: size(DATABASE_FILE),
        counts,
    }
}

/// The checkpoint sequence number in a WAL file's header (bytes 12 to 15, big-endian).
fn wal_checkpoint_sequence(path: &PathBuf) -> u64 {
    use std::io::Read;
    let mut header = [0_u8; 16];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) => u64::from(u32::from_be_bytes([
            header[12], header[13], header[14], header[15],
        ])),
        Err(_) => 0,
    }
}

/// A small deterministic generator (xorshift64*), so a soak's mix is the same every time.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// One publisher: its own article ids, the ones still live with their etags.
struct Publisher {
    fixture: Arc<Fixture>,
    tally: Arc<Tally>,
    expected: Arc<Mutex<Expected>>,
    index: usize,
    next: usize,
    live: Vec<(String, String, i32)>,
    rng: Rng,
}

impl Publisher {
    async fn run(mut self, plan: Plan) {
        let mut ticker = tokio::time::interval(plan.publish_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = 0_u64;
        while !self.tally.stopping() {
            ticker.tick().await;
            tick += 1;
            let result = match tick % 20 {
                // Every 20th tick a batch, every 10th (else) a retraction, every 4th a
                // correction, as long as there is something to correct; else a new article.
                0 => self.batch(plan.batch).await,
                10 if self.live.len() > 10 => self.retract().await,
                t if t % 4 == 1 && !self.live.is_empty() => self.correct().await,
                _ => self.publish_new().await,
            };
            if let Err((kind, e)) = result {
                self.tally.error(kind, e);
            }
        }
    }

    fn new_article(&mut self) -> Article {
        let n = self.next;
        self.next += 1;
        let id = format!("soak-{}-{n:06}", self.index);
        let mut article =
            self.fixture
                .article(id, &format!("（{}-{n}）", self.index), n * 7 + self.index);
        article.section = SECTIONS[(n + self.index) % SECTIONS.len()].to_owned();
        article
    }

    fn acknowledged(&self, kind: ArticleEventType) {
        self.expected.lock().expect("expected lock").add(kind);
    }

    async fn publish_new(&mut self) -> Result<(), (&'static str, String)> {
        let article = self.new_article();
        let id = article.id.clone();
        let answer = self
            .fixture
            .client
            .clone()
            .publish_article(PublishArticleRequest {
                article: Some(article),
                request_id: String::new(),
            })
            .await
            .map_err(|s| ("publish", format!("{id}: {s:?}")))?
            .into_inner();
        let stored = answer.article.unwrap_or_default();
        if stored.version != 1 {
            return Err((
                "publish",
                format!("{id}: new article at version {}", stored.version),
            ));
        }
        self.acknowledged(ArticleEventType::Published);
        Tally::bump(&self.tally.published, 1);
        self.live.push((id, stored.etag, stored.version));
        Ok(())
    }

    async fn correct(&mut self) -> Result<(), (&'static str, String)> {
        let at = self.rng.below(self.live.len());
        let (id, etag, version) = self.live[at].clone();
        let n: usize = id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut article = self.fixture.article(
            id.clone(),
            &format!("（更正{}）", version + 1),
            n * 7 + self.index,
        );
        article.section = SECTIONS[(n + self.index) % SECTIONS.len()].to_owned();
        article.etag = etag;
        let answer = self
            .fixture
            .client
            .clone()
            .publish_article(PublishArticleRequest {
                article: Some(article),
                request_id: format!("soak-fix-{id}-{version}"),
            })
            .await
            .map_err(|s| ("correct", format!("{id}: {s:?}")))?
            .into_inner();
        let stored = answer.article.unwrap_or_default();
        if stored.version != version + 1 {
            return Err((
                "correct",
                format!("{id}: version {} after {version}", stored.version),
            ));
        }
        self.acknowledged(ArticleEventType::Updated);
        Tally::bump(&self.tally.corrected, 1);
        self.live[at] = (id, stored.etag, stored.version);
        Ok(())
    }

    async fn retract(&mut self) -> Result<(), (&'static str, String)> {
        // The oldest live article, so the live set stays a window of recent ones.
        let (id, etag, _) = self.live.remove(0);
        let stored = self
            .fixture
            .client
            .clone()
            .retract_article(RetractArticleRequest {
                id: id.clone(),
                reason: "撤稿（浸泡测试）".into(),
                etag,
                request_id: String::new(),
            })
            .await
            .map_err(|s| ("retract", format!("{id}: {s:?}")))?
            .into_inner();
        if stored.state != feedpub::grpc::proto::ArticleState::Retracted as i32 {
            return Err(("retract", format!("{id}: state {} after", stored.state)));
        }
        self.acknowledged(ArticleEventType::Retracted);
        Tally::bump(&self.tally.retracted, 1);
        Ok(())
    }

    async fn batch(&mut self, size: usize) -> Result<(), (&'static str, String)> {
        let articles: Vec<Article> = (0..size).map(|_| self.new_article()).collect();
        let ids: Vec<String> = articles.iter().map(|a| a.id.clone()).collect();
        // Two messages, as a client streaming a larger batch would send them.
        let requests: Vec<PublishArticleRequest> = articles
            .into_iter()
            .map(|a| PublishArticleRequest {
                request_id: format!("soak-batch-{}", a.id),
                article: Some(a),
            })
            .collect();
        let half = requests.len() / 2;
        let (one, two) = requests.split_at(half);
        let messages = vec![
            PublishArticlesRequest {
                requests: one.to_vec(),
            },
            PublishArticlesRequest {
                requests: two.to_vec(),
            },
        ];
        let answer = self
            .fixture
            .client
            .clone()
            .publish_articles(tokio_stream::iter(messages))
            .await
            .map_err(|s| ("batch", format!("{}…: {s:?}", ids[0])))?
            .into_inner();
        if answer.results.len() != ids.len() {
            return Err((
                "batch",
                format!(
                    "{} results for {} articles",
                    answer.results.len(),
                    ids.len()
                ),
            ));
        }
        for (result, id) in answer.results.iter().zip(ids) {
            let ok = result.status.as_ref().is_none_or(|s| s.code == 0);
            if !ok || !result.changed || result.version != 1 || result.id != id {
                self.tally
                    .error("batch", format!("{id}: result {result:?}"));
                continue;
            }
            self.acknowledged(ArticleEventType::Published);
            Tally::bump(&self.tally.batch_articles, 1);
            self.live.push((id, result.etag.clone(), result.version));
        }
        Tally::bump(&self.tally.batches, 1);
        Ok(())
    }
}

/// One poller: the feeds of every section and of `all` in turn, each with the ETag of the
/// last body it got; `/healthz` (`/metrics` for the first poller) after every round.
async fn poll(fixture: Arc<Fixture>, tally: Arc<Tally>, index: usize, plan: Plan) {
    let mut paths: Vec<String> = SECTIONS
        .iter()
        .chain(&["all"])
        .flat_map(|scope| FORMATS.iter().map(move |f| format!("/feeds/{scope}/{f}")))
        .collect();
    let start = index * 5 % paths.len();
    paths.rotate_left(start);
    let currents = paths.len();
    let mut etags: HashMap<String, String> = HashMap::new();
    // The newest archive page of each feed, as its current RSS document links it.
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let mut ticker = tokio::time::interval(plan.poll_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0;
    while !tally.stopping() {
        ticker.tick().await;
        if next == paths.len() {
            // Next round: every current document, then the oldest and the newest archive
            // page of each feed that has some, in this poller's format: the oldest is
            // full and never changes (a 304 once fetched), the newest fills up.
            paths.truncate(currents);
            let format = FORMATS[index % FORMATS.len()];
            for (feed, &page) in &newest {
                paths.push(format!("/feeds/{feed}/archive/1/{format}"));
                if page > 1 {
                    paths.push(format!("/feeds/{feed}/archive/{page}/{format}"));
                }
            }
            next = 0;
            // And the service endpoints: /healthz, and /metrics as a Prometheus scrape.
            let endpoint = if index == 0 { "/metrics" } else { "/healthz" };
            match fixture.http.get(fixture.url(endpoint)).send().await {
                Ok(r) if r.status() == StatusCode::OK => match r.text().await {
                    Ok(body)
                        if body == "ok\n"
                            || (index == 0 && body.contains("feedpub_publish_total")) =>
                    {
                        Tally::bump(&tally.health, 1)
                    }
                    Ok(body) => tally.error("http", format!("{endpoint}: {body:.200}")),
                    Err(e) => tally.error("http", format!("{endpoint}: {e}")),
                },
                Ok(r) => tally.error("http", format!("{endpoint}: {}", r.status())),
                Err(e) => tally.error("http", format!("{endpoint}: {e}")),
            }
            continue;
        }
        let path = &paths[next];
        next += 1;
        match poll_one(&fixture, &tally, path, &mut etags).await {
            Ok(Some(page)) => {
                let feed = path
                    .trim_start_matches("/feeds/")
                    .trim_end_matches("/rss.xml");
                newest.insert(feed.to_owned(), page);
            }
            Ok(None) => {}
            Err((kind, e)) => tally.error(kind, format!("{path}: {e}")),
        }
    }
}

/// One conditional GET, checked; for a current RSS document, the number of the newest
/// archive page it links to.
async fn poll_one(
    fixture: &Fixture,
    tally: &Tally,
    path: &str,
    etags: &mut HashMap<String, String>,
) -> Result<Option<u64>, (&'static str, String)> {
    let mut request = fixture.http.get(fixture.url(path));
    if let Some(etag) = etags.get(path) {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.map_err(|e| ("http", e.to_string()))?;
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .bytes()
        .await
        .map_err(|e| ("http", e.to_string()))?;
    match status {
        StatusCode::NOT_MODIFIED => {
            if !body.is_empty() {
                return Err(("http", format!("304 with {} bytes", body.len())));
            }
            Tally::bump(&tally.polls_304, 1);
            Ok(None)
        }
        StatusCode::OK => {
            let etag = etag.ok_or(("http", "200 without an ETag".to_owned()))?;
            // Hashing and parsing a 200 KB document off the runtime's one worker thread,
            // which the publishers and watchers share: they keep their rate.
            let owned = path.to_owned();
            let (hashed, parsed) = tokio::task::spawn_blocking(move || {
                let hashed = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
                (hashed, parse_feed(&owned, &body))
            })
            .await
            .map_err(|e| ("parse", e.to_string()))?;
            if etag != hashed {
                return Err(("etag", format!("ETag {etag}, body hashes to {hashed}")));
            }
            let newest = parsed.map_err(|e| ("parse", e))?;
            etags.insert(path.to_owned(), etag);
            Tally::bump(&tally.polls_200, 1);
            Ok(newest.filter(|_| !path.contains("/archive/")))
        }
        other => Err(("http", format!("status {other}"))),
    }
}

/// Parses a feed body as its format and checks it holds at most a feed's 50 items; for
/// RSS, returns the number of the archive page it links as `prev-archive`.
fn parse_feed(path: &str, body: &[u8]) -> Result<Option<u64>, String> {
    let mut prev_archive = None;
    let items = if path.ends_with("rss.xml") {
        let channel = rss::Channel::read_from(body).map_err(|e| format!("RSS: {e}"))?;
        prev_archive = channel
            .atom_ext()
            .and_then(|atom| atom.links().iter().find(|l| l.rel() == "prev-archive"))
            .map(|link| archive_page(link.href()))
            .transpose()?;
        channel.items().len()
    } else if path.ends_with("atom.xml") {
        atom_syndication::Feed::read_from(body)
            .map_err(|e| format!("Atom: {e}"))?
            .entries()
            .len()
    } else {
        let feed: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("JSON Feed: {e}"))?;
        if feed["version"] != "https://jsonfeed.org/version/1.1" {
            return Err(format!("JSON Feed version {}", feed["version"]));
        }
        feed["items"]
            .as_array()
            .ok_or("JSON Feed without items")?
            .len()
    };
    if items > 50 {
        return Err(format!("{items} items in a 50-item feed"));
    }
    Ok(prev_archive)
}

/// The page number in an archive page's URL (`…/archive/<n>/rss.xml`).
fn archive_page(href: &str) -> Result<u64, String> {
    href.split_once("/archive/")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("prev-archive {href:?} is not an archive page"))
}

/// One watcher: follows every section from the first event, reconnecting from its cursor.
struct Watcher {
    fixture: Arc<Fixture>,
    tally: Arc<Tally>,
    index: usize,
    stream: Option<tonic::Streaming<feedpub::grpc::proto::WatchArticlesResponse>>,
    /// The cursor of the last message, and the sequence numbers of the event before the
    /// first one followed and of the last event.
    cursor: String,
    start_seq: u64,
    last_seq: u64,
    seen: Expected,
}

impl Watcher {
    fn new(fixture: Arc<Fixture>, tally: Arc<Tally>, index: usize) -> Self {
        Self {
            fixture,
            tally,
            index,
            stream: None,
            cursor: String::new(),
            start_seq: 0,
            last_seq: 0,
            seen: Expected::default(),
        }
    }

    /// Opens a stream after `cursor` (from now when `None`) and checks its first message:
    /// no events, and the position asked for.
    async fn connect(&mut self, cursor: Option<String>) -> anyhow::Result<()> {
        let mut stream = self
            .fixture
            .client
            .clone()
            .watch_articles(WatchArticlesRequest {
                sections: Vec::new(),
                cursor: cursor.clone().unwrap_or_default(),
            })
            .await
            .context("WatchArticles")?
            .into_inner();
        let first = stream
            .message()
            .await
            .context("WatchArticles' first message")?
            .context("WatchArticles ended before its first message")?;
        anyhow::ensure!(first.events.is_empty(), "events in the first message");
        let at = seq_of(&first.cursor)?;
        if cursor.is_some() {
            anyhow::ensure!(
                at == self.last_seq,
                "resumed at {at}, not after event {}",
                self.last_seq
            );
        } else {
            (self.start_seq, self.last_seq) = (at, at);
        }
        self.cursor = first.cursor;
        self.stream = Some(stream);
        Ok(())
    }

    /// Reads until the soak stops, reconnecting from the cursor every so often.
    async fn follow(mut self, plan: Plan) -> Self {
        // Watchers reconnect at different moments: 1×, 1.5× and 2× the plan's period.
        let period = plan.reconnect_every.mul_f64(1.0 + self.index as f64 * 0.5);
        let mut reconnect_at = Instant::now() + period;
        while !self.tally.stopping() {
            if Instant::now() >= reconnect_at {
                reconnect_at = Instant::now() + period;
                self.reconnect().await;
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                self.reconnect().await;
                continue;
            };
            let message = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            match message {
                Err(_) => {} // nothing new within half a second
                Ok(Ok(Some(update))) => self.take(update),
                Ok(Ok(None)) => {
                    self.tally.error("watch", "stream ended".into());
                    self.stream = None;
                }
                Ok(Err(status)) => {
                    self.tally.error("watch", format!("{status:?}"));
                    self.stream = None;
                }
            }
        }
        self
    }

    async fn reconnect(&mut self) {
        self.stream = None;
        Tally::bump(&self.tally.reconnects, 1);
        if let Err(e) = self.connect(Some(self.cursor.clone())).await {
            self.tally.error("watch", format!("reconnect: {e:#}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks that every event follows the previous one, and counts it.
    fn take(&mut self, update: feedpub::grpc::proto::WatchArticlesResponse) {
        for event in &update.events {
            match seq_of(&event.cursor) {
                Ok(seq) if seq == self.last_seq + 1 => self.last_seq = seq,
                Ok(seq) => {
                    self.tally.error(
                        "watch",
                        format!(
                            "watcher {}: event {seq} after event {}",
                            self.index, self.last_seq
                        ),
                    );
                    self.last_seq = self.last_seq.max(seq);
                }
                Err(e) => self.tally.error("watch", format!("{e:#}")),
            }
            self.seen.add(event.r#type());
            Tally::bump(&self.tally.events, 1);
        }
        self.cursor = update.cursor;
    }

    /// Reads until every acknowledged write's event has come (or 60 s have passed), and
    /// checks that exactly those events came.
    async fn finish(mut self, expected: Expected) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.total() < expected.total() && Instant::now() < deadline {
            if self.stream.is_none() {
                self.connect(Some(self.cursor.clone())).await?;
            }
            let stream = self.stream.as_mut().context("no stream")?;
            match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
                Err(_) => {}
                Ok(Ok(Some(update))) => self.take(update),
                Ok(Ok(None)) => anyhow::bail!("stream ended"),
                Ok(Err(status)) => anyhow::bail!("{status:?}"),
            }
        }
        anyhow::ensure!(
            self.seen == expected && self.last_seq == self.start_seq + expected.total(),
            "watcher {} saw {:?}, events {} to {}; the writes acknowledged {expected:?}",
            self.index,
            self.seen,
            self.start_seq + 1,
            self.last_seq
        );
        Ok(())
    }
}

/// The event sequence number in a cursor.
fn seq_of(cursor: &str) -> anyhow::Result<u64> {
    position_from_cursor(cursor)
        .ok()
        .flatten()
        .with_context(|| format!("{cursor:?} is not a watch cursor"))
}

const TABLE_HEADER: &str = "| t (s) | RSS (MiB) | fds | WAL (MiB) | WAL restarts | DB (MiB) | \
     published | corrected | retracted | batched | polls 200 | polls 304 | events | \
     reconnects | errors |";

fn sample_row(s: &Sample) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let c = &s.counts;
    format!(
        "| {:.0} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        s.t.as_secs_f64(),
        s.rss_kib as f64 / 1024.0,
        s.fds,
        mib(s.wal_bytes),
        s.wal_restarts,
        mib(s.db_bytes),
        c.published,
        c.corrected,
        c.retracted,
        c.batch_articles,
        c.polls_200,
        c.polls_304,
        c.events,
        c.reconnects,
        c.errors
    )
}

impl Outcome {
    /// The samples as a Markdown table, then the verdicts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Soak: {:.0} s at {:?}\n",
            self.duration.as_secs_f64(),
            self.plan
        );
        let _ = writeln!(out, "{TABLE_HEADER}");
        let _ = writeln!(out, "{}", "|---".repeat(15) + "|");
        for s in &self.samples {
            let _ = writeln!(out, "{}", sample_row(s));
        }
        let t = &self.totals;
        let secs = self.duration.as_secs_f64().max(1.0);
        let writes = t.published + t.corrected + t.retracted + t.batch_articles;
        let _ = writeln!(
            out,
            "\nrates reached: {:.1} writes/s, {:.1} feed requests/s ({} events seen by \
             {} watchers)",
            writes as f64 / secs,
            (t.polls_200 + t.polls_304) as f64 / secs,
            t.events,
            self.plan.watchers
        );
        let v = &self.verdicts;
        let _ = writeln!(
            out,
            "memory flat: {} (max RSS {:.1} MiB in the last third, {:.1} in the first \
             after warm-up, at most {:.1} allowed)",
            v.memory_flat, v.rss_last_mib, v.rss_first_mib, v.rss_allowed_mib
        );
        let _ = writeln!(
            out,
            "fds flat: {} (max {} in the last third, {} in the first, at most +{})",
            v.fds_flat, v.fds_last, v.fds_first, self.bounds.fd_growth
        );
        let _ = writeln!(
            out,
            "WAL bounded: {} (max {:.1} MiB, at most {:.0})",
            v.wal_bounded, v.wal_max_mib, self.bounds.wal_max_mib
        );
        let _ = writeln!(out, "zero errors: {} ({:?})", v.zero_errors, self.errors);
        for e in &self.first_errors {
            let _ = writeln!(out, "  {e}");
        }
        out
    }

    /// The JSON summary: samples, totals, errors, bounds and verdicts.
    pub fn json(&self) -> serde_json::Value {
        let samples: Vec<_> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "t_s": s.t.as_secs_f64(),
                    "rss_kib": s.rss_kib,
                    "fds": s.fds,
                    "wal_bytes": s.wal_bytes,
                    "wal_restarts": s.wal_restarts,
                    "db_bytes": s.db_bytes,
                    "errors": s.counts.errors,
                })
            })
            .collect();
        let t = &self.totals;
        let v = &self.verdicts;
        let b = &self.bounds;
        json!({
            "duration_s": self.duration.as_secs_f64(),
            "sample_every_s": self.plan.sample_every.as_secs_f64(),
            "plan": format!("{:?}", self.plan),
            "bounds": {
                "warm_up": b.warm_up,
                "rss_growth_mib": b.rss_growth_mib,
                "rss_growth_ratio": b.rss_growth_ratio,
                "fd_growth": b.fd_growth,
                "wal_max_mib": b.wal_max_mib,
            },
            "samples": samples,
            "totals": {
                "published": t.published,
                "corrected": t.corrected,
                "retracted": t.retracted,
                "batches": t.batches,
                "batch_articles": t.batch_articles,
                "polls_200": t.polls_200,
                "polls_304": t.polls_304,
                "health": t.health,
                "events": t.events,
                "reconnects": t.reconnects,
            },
            "errors": {
                "total": t.errors,
                "by_kind": self.errors,
                "first": self.first_errors,
            },
            "verdicts": {
                "rss_first_mib": v.rss_first_mib,
                "rss_last_mib": v.rss_last_mib,
                "rss_allowed_mib": v.rss_allowed_mib,
                "memory_flat": v.memory_flat,
                "fds_first": v.fds_first,
                "fds_last": v.fds_last,
                "fds_flat": v.fds_flat,
                "wal_max_mib": v.wal_max_mib,
                "wal_bounded": v.wal_bounded,
                "zero_errors": v.zero_errors,
                "pass": v.pass(),
            },
        })
    }

    /// The figures of the benchmark report.
    pub fn figures(&self) -> Vec<Figure> {
        let v = &self.verdicts;
        let first = self.samples.first().copied().unwrap_or_default();
        let last = self.samples.last().copied().unwrap_or_default();
        let figure = |name: &str, unit, value, target| Figure {
            name: format!("Soak: {name}"),
            unit,
            feedpub: value,
            peer: None,
            target,
        };
        let minutes = self.duration.as_secs_f64() / 60.0;
        vec![
            figure(
                &format!("RSS growth, last third over first (of {minutes:.0} min)"),
                "MiB",
                v.rss_last_mib - v.rss_first_mib,
                Target::AtMost(v.rss_allowed_mib - v.rss_first_mib),
            ),
            figure(
                "RSS at the end",
                "MiB",
                last.rss_kib as f64 / 1024.0,
                Target::Info,
            ),
            figure(
                "open fds, growth last third over first",
                "fds",
                v.fds_last as f64 - v.fds_first as f64,
                Target::AtMost(self.bounds.fd_growth as f64),
            ),
            figure(
                "largest WAL",
                "MiB",
                v.wal_max_mib,
                Target::AtMost(self.bounds.wal_max_mib),
            ),
            figure(
                "database at the end",
                "MiB",
                last.db_bytes as f64 / (1024.0 * 1024.0),
                Target::Info,
            ),
            figure(
                "writes acknowledged",
                "writes",
                (self.totals.published
                    + self.totals.corrected
                    + self.totals.retracted
                    + self.totals.batch_articles) as f64,
                Target::Info,
            ),
            figure(
                "feed requests (200 and 304)",
                "requests",
                (self.totals.polls_200 + self.totals.polls_304) as f64,
                Target::Info,
            ),
            figure(
                "errors",
                "errors",
                self.totals.errors as f64,
                Target::AtMost(0.0),
            ),
            figure(
                "RSS at the start",
                "MiB",
                first.rss_kib as f64 / 1024.0,
                Target::Info,
            ),
        ]
    }
}
