//! Ingest (issue 6 item 2): sustained PublishArticle throughput with durable
//! acknowledgements, 64 calls in flight, 3 KB Chinese articles of the sample edition's copy,
//! against the ceiling: the same load on `feedpub-echo`, a tonic server with the same
//! settings that answers at once. Then one call in flight, whose latency over the echo's
//! should be at most one fdatasync (measured on the same disk, for the same size). Last,
//! batch streaming ingest: PublishArticles calls of 1,000 articles, several in flight,
//! against a fixed rate (no peer has this RPC).
//!
//! The load comes from this program's generator (`loadgen`), which sends every article with
//! its own id and checks every answer's grpc-status; in the same run it is checked to be at
//! least as fast as h2load against the echo server. Every run starts a fresh feedpub on an
//! empty store, so runs compare; the load alternates between feedpub and the echo in slices.

use crate::Mode;
use crate::cpu::{TICKS_PER_SECOND, own_ticks, thread_deltas, thread_ticks};
use crate::fixture::{self, Fixture, SampleCopy};
use crate::freshness::percentile;
use crate::loadgen::{self, Frames, Outcome};
use crate::process::{Process, tee_lines};
use crate::report::{Figure, Target};
use anyhow::Context;
use feedpub::domain::{FieldLimits, HtmlPolicy};
use feedpub::grpc::convert;
use feedpub::grpc::proto::{Article, PublishArticleRequest, PublishArticlesRequest};
use prost::Message;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The RPC every call makes.
pub const PUBLISH_PATH: &str = "/feedpub.v1.PublisherService/PublishArticle";
/// Distinct article bodies the requests cycle through.
const TEMPLATES: usize = 16;
/// How many write + fdatasync pairs the disk figure is the median of.
const FSYNCS: usize = 50;
/// Articles per PublishArticles call of the batch load (one writer chunk of feedpub's).
const BATCH_ARTICLES: usize = 1_000;
/// Articles per message of a PublishArticles stream (about 0.8 MB, under the 4 MB limit).
const BATCH_MESSAGE: usize = 250;
/// PublishArticles calls in flight in the batch load.
const BATCH_STREAMS: usize = 4;
/// The batch streaming target, in articles per second.
const BATCH_TARGET: f64 = 20_000.0;
/// How often one PublishArticle is sent beside the batch load, to time a single publish
/// while batches stream (each waits for the one before).
const BESIDE_EVERY: Duration = Duration::from_millis(100);

/// Which server a load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Feedpub,
    Echo,
}

/// The echo server, running for every run, and what feedpub runs need.
pub struct Ingest {
    echo: Mutex<Process>,
    echo_addr: SocketAddr,
    feedpub_bin: PathBuf,
    log: Option<String>,
    work: PathBuf,
    mode: Mode,
    copy: SampleCopy,
    h2load_version: String,
}

impl Ingest {
    /// Starts `feedpub-echo` beside the feedpub binary.
    pub fn setup(
        feedpub_bin: &Path,
        work: &Path,
        mode: &Mode,
        log: Option<&str>,
    ) -> anyhow::Result<Self> {
        let h2load_version = crate::serve::require_tool("h2load", &["--version"])?;
        let echo_bin = feedpub_bin.with_file_name("feedpub-echo");
        let dir = work.join("ingest");
        std::fs::create_dir_all(&dir)?;
        let mut child = Command::new(&echo_bin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", echo_bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let mut echo = Process::new("feedpub-echo", child);
        let lines = tee_lines(stderr, &dir.join("echo.log"));
        let echo_addr = fixture::listening_addresses(&lines, &mut echo, false)?[0];
        eprintln!(
            "feedpub-echo (pid {}) serves gRPC on {echo_addr}",
            echo.id()
        );
        Ok(Self {
            echo: Mutex::new(echo),
            echo_addr,
            feedpub_bin: feedpub_bin.to_owned(),
            log: log.map(str::to_owned),
            work: dir,
            mode: mode.clone(),
            copy: SampleCopy::load(),
            h2load_version,
        })
    }

    /// What the ingest figures were measured with, for the report header.
    pub fn peer_versions(&self, largest_frame: usize) -> String {
        format!(
            "ingest: PublishArticle requests of up to {largest_frame} bytes (3 KB of copy), {} in flight \
             over one HTTP/2 connection, {} s per server per run in {} alternating slices, \
             against feedpub-echo (tonic, same settings, answers at once); generator checked \
             against {} -c1 -t1 -m{}; batch streaming: PublishArticles calls of \
             {BATCH_ARTICLES} articles (messages of {BATCH_MESSAGE}), {BATCH_STREAMS} in flight \
             for {} s per run",
            self.mode.ingest_in_flight,
            self.mode.ingest_slice.as_secs_f64() * self.mode.ingest_slices as f64,
            self.mode.ingest_slices,
            self.h2load_version,
            self.mode.ingest_in_flight,
            self.mode.ingest_batch.as_secs_f64(),
        )
    }

    /// The request frames of a run: articles with ids `ingest-r<run>-<counter>`.
    pub fn frames(&self, run: usize) -> anyhow::Result<Arc<Frames>> {
        publish_frames(&self.copy, &format!("ingest-r{}", run + 1))
    }

    /// One run on a fresh feedpub: the alternating load, the generator against h2load, one
    /// call in flight, and the disk's fdatasync.
    pub async fn run(&self, run: usize) -> anyhow::Result<Vec<Figure>> {
        let dir = self.work.join(format!("run{}", run + 1));
        std::fs::create_dir_all(&dir)?;
        let feedpub = Fixture::start(&self.feedpub_bin, &dir, self.log.as_deref(), false).await?;
        let result = self.measure(&feedpub, &dir, run).await;
        feedpub.stop()?;
        result
    }

    async fn measure(
        &self,
        feedpub: &Fixture,
        dir: &Path,
        run: usize,
    ) -> anyhow::Result<Vec<Figure>> {
        let frames = self.frames(run)?;
        let mode = &self.mode;
        let in_flight = mode.ingest_in_flight;
        let load = |server: Server, in_flight: usize, duration: Duration| {
            let addr = match server {
                Server::Feedpub => feedpub.grpc_addr,
                Server::Echo => self.echo_addr,
            };
            loadgen::run(
                addr,
                PUBLISH_PATH,
                &feedpub.token,
                frames.clone(),
                in_flight,
                duration,
            )
        };

        // Many in flight, in slices alternating the servers, with the CPU time each server
        // and the generator spent.
        let (mut ours, mut theirs) = (Outcome::default(), Outcome::default());
        let (mut our_cpu, mut their_cpu) = (CpuUse::default(), CpuUse::default());
        for slice in 0..mode.ingest_slices {
            let order = if (run + slice).is_multiple_of(2) {
                [Server::Feedpub, Server::Echo]
            } else {
                [Server::Echo, Server::Feedpub]
            };
            for server in order {
                let pid = match server {
                    Server::Feedpub => feedpub.pid(),
                    Server::Echo => self.echo.lock().expect("echo lock").id(),
                };
                let (outcome, cpu) =
                    CpuUse::during(pid, load(server, in_flight, mode.ingest_slice)).await;
                let outcome = outcome?;
                feedpub.ensure_running()?;
                self.echo_running()?;
                let (total, total_cpu) = match server {
                    Server::Feedpub => (&mut ours, &mut our_cpu),
                    Server::Echo => (&mut theirs, &mut their_cpu),
                };
                merge(total, outcome);
                total_cpu.add(cpu);
            }
        }
        anyhow::ensure!(
            theirs.failed == 0,
            "the echo server failed {} calls: {}",
            theirs.failed,
            theirs.first_failure.unwrap_or_default()
        );
        if let Some(failure) = &ours.first_failure {
            eprintln!(
                "ingest run {}: {} calls to feedpub failed, the first: {failure}",
                run + 1,
                ours.failed
            );
        }

        // The generator against h2load, both on the echo server.
        let (mut generator, mut h2load) = (0.0, 0.0);
        let body = dir.join("h2load-body.bin");
        std::fs::write(&body, frames.sample())?;
        for first in [run.is_multiple_of(2), !run.is_multiple_of(2)] {
            if first {
                let outcome = load(Server::Echo, in_flight, mode.ingest_slice).await?;
                anyhow::ensure!(
                    outcome.failed == 0,
                    "the echo server failed a call: {:?}",
                    outcome.first_failure
                );
                generator = outcome.rate();
            } else {
                h2load = self.h2load(&body, &feedpub.token, dir, run).await?;
            }
        }

        // One call in flight.
        let mut single = Vec::new();
        for server in [Server::Feedpub, Server::Echo] {
            let outcome = load(server, 1, mode.ingest_single).await?;
            anyhow::ensure!(
                outcome.failed == 0,
                "a call failed with one in flight: {:?}",
                outcome.first_failure
            );
            single.push(outcome);
        }
        let (mut our_single, mut their_single) = (single.remove(0), single.remove(0));
        let fsync_ms = fdatasync_ms(&dir.join("data"), frames.largest_frame())?;

        // Batch streaming ingest, last: it leaves feeds to regenerate behind it.
        let (batch, batch_cpu) = CpuUse::during(feedpub.pid(), self.batch_load(feedpub, run)).await;
        let (batch, mut beside) = batch?;
        anyhow::ensure!(
            beside.failed == 0,
            "a publish beside the batch load failed: {:?}",
            beside.first_failure
        );
        feedpub.ensure_running()?;
        if let Some(failure) = &batch.first_failure {
            eprintln!(
                "ingest run {}: {} batch articles failed, the first: {failure}",
                run + 1,
                batch.failed
            );
        }

        let (our_rate, their_rate) = (ours.rate(), theirs.rate());
        let (p50, p99) = (
            percentile(&mut ours.latencies_ms, 50.0),
            percentile(&mut ours.latencies_ms, 99.0),
        );
        let (echo_p50, echo_p99) = (
            percentile(&mut theirs.latencies_ms, 50.0),
            percentile(&mut theirs.latencies_ms, 99.0),
        );
        let single_ours = percentile(&mut our_single.latencies_ms, 50.0);
        let single_theirs = percentile(&mut their_single.latencies_ms, 50.0);
        eprintln!(
            "ingest run {}: feedpub {our_rate:.0}/s (p99 {p99:.2} ms), echo {their_rate:.0}/s; \
             generator {generator:.0}/s, h2load {h2load:.0}/s on the echo; one in flight: \
             {single_ours:.2} ms vs {single_theirs:.2} ms, fdatasync {fsync_ms:.2} ms; \
             batch {:.0} articles/s ({} failed); server CPU per call: feedpub {:.0} µs, echo \
             {:.0} µs",
            run + 1,
            batch.rate(),
            batch.failed,
            our_cpu.server_micros(ours.ok + ours.failed),
            their_cpu.server_micros(theirs.ok + theirs.failed),
        );
        let label = format!("Ingest, {in_flight} in flight");
        let (our_calls, their_calls) = (ours.ok + ours.failed, theirs.ok + theirs.failed);
        let (validated, decoded) = self.validation_micros();
        let mut figures = vec![
            Figure {
                name: format!("{label}: PublishArticle rate"),
                unit: "calls/s",
                feedpub: our_rate,
                peer: Some(("echo", their_rate)),
                target: Target::RatioAtLeast(0.7),
            },
            Figure {
                name: format!("{label}: p99 latency"),
                unit: "ms",
                feedpub: p99,
                peer: Some(("echo", echo_p99)),
                target: Target::AtMost(5.0),
            },
            Figure {
                name: format!("{label}: p50 latency"),
                unit: "ms",
                feedpub: p50,
                peer: Some(("echo", echo_p50)),
                target: Target::Info,
            },
            Figure {
                name: format!("{label}: failed calls"),
                unit: "calls",
                feedpub: ours.failed as f64,
                peer: None,
                target: Target::AtMost(0.0),
            },
            Figure {
                name: "Ingest: load generator on the echo server".into(),
                unit: "calls/s",
                feedpub: generator,
                peer: Some(("h2load", h2load)),
                target: Target::RatioAtLeast(1.0),
            },
            Figure {
                name: "Ingest, 1 in flight: p50 latency".into(),
                unit: "ms",
                feedpub: single_ours,
                peer: Some(("echo", single_theirs)),
                target: Target::Info,
            },
            Figure {
                name: "Ingest, 1 in flight: feedpub's p50 over the echo's".into(),
                unit: "fdatasyncs",
                feedpub: (single_ours - single_theirs) / fsync_ms,
                peer: None,
                target: Target::AtMost(1.0),
            },
            Figure {
                // Not named by its size, which may differ by a byte from run to run (the
                // header gives it): one row for every run.
                name: "Ingest: one write + fdatasync of one request in feedpub's data folder"
                    .into(),
                unit: "ms",
                feedpub: fsync_ms,
                peer: None,
                target: Target::Info,
            },
            Figure {
                name: format!(
                    "Ingest, batch streaming ({BATCH_STREAMS} PublishArticles of \
                     {BATCH_ARTICLES} in flight): rate"
                ),
                unit: "articles/s",
                feedpub: batch.rate(),
                peer: None,
                target: Target::AtLeast(BATCH_TARGET),
            },
            Figure {
                name: "Ingest, batch streaming: failed articles".into(),
                unit: "articles",
                feedpub: batch.failed as f64,
                peer: None,
                target: Target::AtMost(0.0),
            },
            Figure {
                name: "Ingest, one PublishArticle beside batch streaming: p50".into(),
                unit: "ms",
                feedpub: percentile(&mut beside.latencies_ms, 50.0),
                peer: None,
                target: Target::Info,
            },
            Figure {
                name: "Ingest, one PublishArticle beside batch streaming: p99".into(),
                unit: "ms",
                feedpub: percentile(&mut beside.latencies_ms, 99.0),
                peer: None,
                target: Target::Info,
            },
        ];
        // Where the CPU went: info rows, in microseconds per call (or article).
        let info = |name: String, feedpub: f64, peer: Option<(&'static str, f64)>| Figure {
            name,
            unit: "µs",
            feedpub,
            peer,
            target: Target::Info,
        };
        figures.push(info(
            format!("{label}: server CPU per call"),
            our_cpu.server_micros(our_calls),
            Some(("echo", their_cpu.server_micros(their_calls))),
        ));
        figures.push(info(
            format!("{label}: load generator's CPU per call"),
            our_cpu.generator_micros(our_calls),
            Some(("echo", their_cpu.generator_micros(their_calls))),
        ));
        figures.extend(
            our_cpu
                .by_kind(our_calls)
                .into_iter()
                .map(|(threads, micros)| {
                    info(
                        format!("{label}: feedpub's CPU per call, {threads}"),
                        micros,
                        None,
                    )
                }),
        );
        let batch_articles = batch.ok + batch.failed;
        let batch_label = "Ingest, batch streaming";
        figures.push(info(
            format!("{batch_label}: server CPU per article"),
            batch_cpu.server_micros(batch_articles),
            None,
        ));
        figures.extend(
            batch_cpu
                .by_kind(batch_articles)
                .into_iter()
                .map(|(threads, micros)| {
                    info(
                        format!("{batch_label}: feedpub's CPU per article, {threads}"),
                        micros,
                        None,
                    )
                }),
        );
        figures.push(info(
            "Ingest: one article of the load decoded and validated, in this process".into(),
            validated,
            Some(("decoded only", decoded)),
        ));
        Ok(figures)
    }

    /// What decoding a request of the load and then validating its article as feedpub does
    /// costs one thread of this process, in µs per article, against decoding it alone (which
    /// the echo does too): the least that feedpub's publish path adds to the echo's for every
    /// call, before its store. Each is timed for the render time of the mode.
    fn validation_micros(&self) -> (f64, f64) {
        let bodies: Vec<Vec<u8>> = (0..TEMPLATES)
            .map(|n| {
                PublishArticleRequest {
                    article: Some(self.copy.article(format!("ingest-validate-{n}"), "", n)),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect();
        let decode = |body: &[u8]| {
            PublishArticleRequest::decode(body).expect("the benchmark's own request decodes")
        };
        let policy = HtmlPolicy::default();
        let validate = |body: &[u8]| {
            let request = convert::publish_request(decode(body)).expect("a readable request");
            let valid = request
                .draft
                .validate_within("article.", &policy, FieldLimits::default())
                .expect("the benchmark's articles are valid");
            valid.content.content_html.len()
        };
        let seconds = self.mode.render_seconds;
        let per_article = |work: &dyn Fn(&[u8]) -> usize| {
            let start = Instant::now();
            let mut done = 0usize;
            while done < bodies.len() || start.elapsed().as_secs_f64() < seconds {
                for body in &bodies {
                    black_box(work(black_box(body)));
                }
                done += bodies.len();
            }
            start.elapsed().as_secs_f64() * 1e6 / done as f64
        };
        let validated = per_article(&validate);
        let decoded = per_article(&|body: &[u8]| decode(body).encoded_len());
        (validated, decoded)
    }

    /// Batch streaming ingest: `BATCH_STREAMS` PublishArticles calls in flight over the
    /// fixture's connection, each of `BATCH_ARTICLES` articles with ids of their own, for
    /// the batch duration (no call starts after it; the calls under way are waited for).
    /// An article counts as stored when its result's status is OK; a failed call fails all
    /// its articles.
    /// The batch load, and beside it one PublishArticle at a time every [`BESIDE_EVERY`]
    /// (the calls of another partner's editor while a wire service streams its batches).
    async fn batch_load(
        &self,
        feedpub: &Fixture,
        run: usize,
    ) -> anyhow::Result<(Outcome, Outcome)> {
        let templates: Arc<Vec<Article>> = Arc::new(
            (0..BATCH_ARTICLES)
                .map(|n| self.copy.article(String::new(), "", n))
                .collect(),
        );
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + self.mode.ingest_batch;
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..BATCH_STREAMS {
            let (mut client, templates, counter) =
                (feedpub.client.clone(), templates.clone(), counter.clone());
            streams.spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    let call = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let messages: Vec<PublishArticlesRequest> = templates
                        .chunks(BATCH_MESSAGE)
                        .enumerate()
                        .map(|(m, chunk)| PublishArticlesRequest {
                            requests: chunk
                                .iter()
                                .enumerate()
                                .map(|(i, template)| {
                                    let mut article = template.clone();
                                    let n = m * BATCH_MESSAGE + i;
                                    article.id = format!("batch-r{}-{call}-{n}", run + 1);
                                    PublishArticleRequest {
                                        article: Some(article),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                        })
                        .collect();
                    let sent = Instant::now();
                    match client.publish_articles(tokio_stream::iter(messages)).await {
                        Ok(response) => {
                            let results = response.into_inner().results;
                            let ok = results
                                .iter()
                                .filter(|r| r.status.as_ref().is_none_or(|s| s.code == 0))
                                .count();
                            let failed = BATCH_ARTICLES.saturating_sub(ok);
                            if failed > 0 && outcome.first_failure.is_none() {
                                outcome.first_failure = Some(
                                    results
                                        .iter()
                                        .find_map(|r| r.status.as_ref().filter(|s| s.code != 0))
                                        .map_or_else(
                                            || {
                                                format!(
                                                    "{} results of {BATCH_ARTICLES}",
                                                    results.len()
                                                )
                                            },
                                            |s| format!("code {}: {}", s.code, s.message),
                                        ),
                                );
                            }
                            outcome.ok += ok as u64;
                            outcome.failed += failed as u64;
                            outcome
                                .latencies_ms
                                .push(sent.elapsed().as_secs_f64() * 1000.0);
                        }
                        Err(status) => {
                            outcome.failed += BATCH_ARTICLES as u64;
                            outcome
                                .first_failure
                                .get_or_insert_with(|| format!("{status}"));
                        }
                    }
                }
                outcome
            });
        }
        let beside = {
            let (mut client, template) = (feedpub.client.clone(), templates[0].clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut n = 0;
                while Instant::now() < deadline {
                    let mut article = template.clone();
                    article.id = format!("beside-r{}-{n}", run + 1);
                    n += 1;
                    let sent = Instant::now();
                    let request = PublishArticleRequest {
                        article: Some(article),
                        ..Default::default()
                    };
                    match client.publish_article(request).await {
                        Ok(_) => {
                            outcome.ok += 1;
                            outcome
                                .latencies_ms
                                .push(sent.elapsed().as_secs_f64() * 1000.0);
                        }
                        Err(status) => {
                            outcome.failed += 1;
                            outcome
                                .first_failure
                                .get_or_insert_with(|| format!("{status}"));
                        }
                    }
                    tokio::time::sleep(BESIDE_EVERY).await;
                }
                outcome
            })
        };
        let mut total = Outcome::default();
        while let Some(done) = streams.join_next().await {
            merge(&mut total, done.context("a batch stream panicked")?);
        }
        total.elapsed = start.elapsed();
        let beside = beside
            .await
            .context("the publishes beside the batches panicked")?;
        Ok((total, beside))
    }

    /// h2load with the same connection and calls in flight on the echo server, for one
    /// slice; its calls per second. (It sends one body for every call, which the echo does
    /// not mind; grpc-status is not h2load's to check, the generator checks it.)
    async fn h2load(
        &self,
        body: &Path,
        token: &str,
        dir: &Path,
        run: usize,
    ) -> anyhow::Result<f64> {
        let mut cmd = Command::new("h2load");
        cmd.args(["-c1", "-t1"])
            .arg(format!("-m{}", self.mode.ingest_in_flight))
            .arg(format!("-D{}", self.mode.ingest_slice.as_secs().max(1)))
            .arg("-d")
            .arg(body)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"))
            .arg(format!("http://{}{PUBLISH_PATH}", self.echo_addr))
            .stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await?
            .context("cannot run h2load")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let _ = std::fs::write(dir.join(format!("h2load-run{}.txt", run + 1)), &text);
        anyhow::ensure!(
            output.status.success(),
            "h2load failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, …"
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix("requests: "))
            .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" failed")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .with_context(|| format!("no request counts in h2load's output:\n{text}"))?;
        anyhow::ensure!(
            failed == 0,
            "h2load: {failed} calls to the echo server failed:\n{text}"
        );
        // "finished in 2.00s, 31005.50 req/s, 103.39MB/s"
        text.lines()
            .find_map(|l| l.strip_prefix("finished in "))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|r| r.strip_suffix(" req/s"))
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no req/s in h2load's output:\n{text}"))
    }

    fn echo_running(&self) -> anyhow::Result<()> {
        self.echo.lock().expect("echo lock").ensure_running()
    }

    /// Stops the echo server.
    pub fn stop(self) {
        self.echo.into_inner().expect("echo lock").stop();
    }
}

/// The CPU time a server's threads and this process (the load generator) spent under a
/// load, in clock ticks, summed over the loads it was measured for.
#[derive(Debug, Default)]
struct CpuUse {
    /// By thread id of the server: the thread's name and ticks.
    threads: BTreeMap<u32, (String, u64)>,
    generator: u64,
}

impl CpuUse {
    /// Runs `load` and measures what server `pid` and this process spent meanwhile.
    async fn during<T>(pid: u32, load: impl Future<Output = T>) -> (T, Self) {
        let (threads, generator) = (thread_ticks(pid), own_ticks());
        let outcome = load.await;
        let used = Self {
            threads: thread_deltas(&threads, &thread_ticks(pid)),
            generator: own_ticks().saturating_sub(generator),
        };
        (outcome, used)
    }

    fn add(&mut self, other: Self) {
        for (tid, (name, ticks)) in other.threads {
            self.threads.entry(tid).or_insert((name, 0)).1 += ticks;
        }
        self.generator += other.generator;
    }

    fn server_micros(&self, calls: u64) -> f64 {
        micros(self.threads.values().map(|(_, t)| t).sum(), calls)
    }

    fn generator_micros(&self, calls: u64) -> f64 {
        micros(self.generator, calls)
    }

    /// feedpub's CPU per call by kind of thread: tokio's workers (the calls, HTTP/2, the
    /// codec, validation; its blocking pool bears the same name), the writer's task (its
    /// own thread: staging, statements handed to SQLite, commits), the busiest SQLite
    /// connection thread (the writer's, under a publish load), the other SQLite connections
    /// (reads: tokens, feeds), the feed builders, and every other thread.
    fn by_kind(&self, calls: u64) -> Vec<(&'static str, f64)> {
        let (mut runtime, mut writer, mut builders, mut other) = (0, 0, 0, 0);
        let mut sqlite = Vec::new();
        for (name, ticks) in self.threads.values() {
            match name.as_str() {
                n if n.starts_with("tokio") => runtime += ticks,
                n if n.starts_with("feedpub-writer") => writer += ticks,
                n if n.starts_with("sqlx-sqlite") => sqlite.push(*ticks),
                n if n.starts_with("feedpub-feeds") => builders += ticks,
                _ => other += ticks,
            }
        }
        let busiest = sqlite.iter().copied().max().unwrap_or(0);
        let readers = sqlite.iter().sum::<u64>() - busiest;
        [
            ("runtime workers", runtime),
            ("writer's task", writer),
            ("busiest SQLite connection", busiest),
            ("other SQLite connections", readers),
            ("feed builders", builders),
            ("other threads", other),
        ]
        .into_iter()
        .map(|(kind, ticks)| (kind, micros(ticks, calls)))
        .collect()
    }
}

/// Clock ticks spent per call, in microseconds.
fn micros(ticks: u64, calls: u64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND * 1e6 / calls.max(1) as f64
}

/// The request frames of an Ingest load: articles of the benchmark copy with ids
/// `<prefix>-<counter>`.
pub fn publish_frames(copy: &SampleCopy, prefix: &str) -> anyhow::Result<Arc<Frames>> {
    Ok(Arc::new(Frames::new(TEMPLATES, |placeholder, n| {
        PublishArticleRequest {
            article: Some(copy.article(format!("{prefix}-{placeholder}"), "", n)),
            ..Default::default()
        }
    })?))
}

/// Adds one load's outcome to a total.
pub fn merge(total: &mut Outcome, outcome: Outcome) {
    total.ok += outcome.ok;
    total.failed += outcome.failed;
    total.latencies_ms.extend(outcome.latencies_ms);
    total.elapsed += outcome.elapsed;
    if total.first_failure.is_none() {
        total.first_failure = outcome.first_failure;
    }
}

/// The median time of one append of `bytes` bytes followed by fdatasync, in a new file in
/// `dir` (on the disk that holds feedpub's database), in milliseconds.
fn fdatasync_ms(dir: &Path, bytes: usize) -> anyhow::Result<f64> {
    let path = dir.join("bench-fdatasync.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5a_u8; bytes];
    let mut times = Vec::with_capacity(FSYNCS);
    for _ in 0..FSYNCS {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(percentile(&mut times, 50.0))
}
