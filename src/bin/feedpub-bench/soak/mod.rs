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

mod poller;
mod publisher;
mod summary;
mod watcher;

use crate::fixture::Fixture;
use anyhow::Context;
use feedpub::grpc::proto::{ArticleEventType, PublishArticleRequest, PublishArticlesRequest};
use publisher::Publisher;
use std::collections::BTreeMap;
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
        let mut watcher = watcher::Watcher::new(fixture.clone(), tally.clone(), w);
        watcher.connect(None).await?;
        watchers.push(tokio::spawn(watcher.follow(plan)));
    }
    let mut clients = Vec::new();
    for p in 0..plan.publishers {
        let publisher = Publisher::new(fixture.clone(), tally.clone(), expected.clone(), p);
        clients.push(tokio::spawn(publisher.run(plan)));
    }
    for p in 0..plan.pollers {
        clients.push(tokio::spawn(poller::poll(
            fixture.clone(),
            tally.clone(),
            p,
            plan,
        )));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(plan.sample_every);
    loop {
        ticker.tick().await;
        let t = started.elapsed();
        let sample = sample(pid, &data, t, tally.counts());
        eprintln!("soak: {}", summary::sample_row(&sample));
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
    let rss_kib = feedpub::heap::status_kib(pid, "VmRSS").unwrap_or(0);
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
