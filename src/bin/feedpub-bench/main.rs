//! feedpub-bench: measures feedpub side by side with what users would run instead (issue 6)
//! and prints one Markdown table of medians, then every run. See BENCHMARKS.md.
//!
//! Each benchmark is a module with a `run` that returns [`report::Figure`]s for one run; the
//! shared set-up (a real `feedpub serve` process holding a data set) lives in `fixture`.
//! Adding a benchmark means adding a module, a [`Bench`] variant and its arm in [`run_all`].

mod cpu;
mod fixture;
mod freshness;
mod http2;
mod ingest;
mod loadgen;
mod micro;
mod process;
mod profile;
mod render;
mod replicas;
mod report;
mod scale;
mod serve;
mod soak;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Measures feedpub against its peers and prints one Markdown table.
#[derive(Debug, Parser)]
#[command(name = "feedpub-bench")]
struct Args {
    /// Short runs: the whole suite in under 2 minutes (one run unless --runs says otherwise)
    #[arg(long)]
    quick: bool,
    /// How many times each benchmark runs; the table shows medians [default: 5, 1 with --quick]
    #[arg(long)]
    runs: Option<usize>,
    /// Open connections of every wrk run (the same for feedpub and nginx)
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads (the same for feedpub and nginx)
    #[arg(long, default_value_t = 1)]
    wrk_threads: u32,
    /// Pause between two polls of the freshness poller, in microseconds (0: back to back)
    #[arg(long, default_value_t = 1000)]
    poll_interval_us: u64,
    /// RUST_LOG filter for the feedpub process, besides the lines announcing its listeners
    /// (its log is kept with --keep)
    #[arg(long, value_name = "FILTER")]
    feedpub_log: Option<String>,
    /// The feedpub binary to measure [default: target/release/feedpub, built first]
    #[arg(long)]
    feedpub: Option<PathBuf>,
    /// Keep the working folder (data, feeds, logs, nginx.conf) after the run
    #[arg(long)]
    keep: bool,
    /// Record feedpub with `perf record` while it is measured; summaries go to the working
    /// folder (implies --keep)
    #[arg(long)]
    perf: bool,
    /// Calls in flight of the Ingest load (the same for feedpub, the echo server and h2load)
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Store sizes of the Scale benchmark, in articles [default: 10000,100000,1000000;
    /// 10000,100000 with --quick]
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Option<Vec<usize>>,
    /// Length of the Soak, in minutes (fractions allowed) [default: 30, 0.5 with --quick]
    #[arg(long)]
    minutes: Option<f64>,
    /// Also write the Soak's JSON summary (samples, totals, errors, verdicts) to this file
    #[arg(long, value_name = "PATH")]
    soak_json: Option<PathBuf>,
    /// PostgreSQL server of the Replicas benchmark, as a role that may create databases
    /// (one per set-up and run, dropped after): postgres://user:password@host/database
    #[arg(long, env = "FEEDPUB_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Benchmarks to run [default: all but soak, replicas and micro, which run only when named]
    #[arg(value_enum)]
    benchmarks: Vec<Bench>,
}

/// The benchmarks (issue 6 items 1 to 5), in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// feedpub's RSS and Atom renderers against feedgen, npm feed and a bare escape-and-copy
    Render,
    /// wrk against feedpub and nginx serving the same feed: 200 identity, 200 gzip, 304
    Serve,
    /// Time from a PublishArticle answer to the entry being served over HTTP
    Freshness,
    /// Sustained PublishArticle throughput against a tonic echo server, and one in flight
    Ingest,
    /// Publish latency, regeneration and serve rate at 10k, 100k and 1M stored articles
    Scale,
    /// Mixed publish, poll and watch traffic for --minutes: memory, fds, WAL, errors
    Soak,
    /// Ingest and serve on SQLite, PostgreSQL and 2 replicas on PostgreSQL; replication lag
    Replicas,
    /// In process: snapshot lookups, brotli per call by window, one document's compression
    Micro,
}

impl Bench {
    const ALL: [Bench; 8] = [
        Bench::Render,
        Bench::Serve,
        Bench::Freshness,
        Bench::Ingest,
        Bench::Scale,
        Bench::Soak,
        Bench::Replicas,
        Bench::Micro,
    ];
}

/// How long and how hard each benchmark runs.
#[derive(Debug, Clone)]
pub struct Mode {
    pub quick: bool,
    pub runs: usize,
    /// wrk time per server and scenario in one run, cut into `wrk_slices` alternating runs.
    pub wrk_duration: Duration,
    pub wrk_slices: usize,
    pub wrk_connections: u32,
    pub wrk_threads: u32,
    /// Publishes of the open-loop freshness phase, and their target rate per second.
    pub fresh_publishes: usize,
    pub fresh_rate: u32,
    /// Publishes of the one-in-flight freshness phase.
    pub fresh_sequential: usize,
    pub poll_interval: Duration,
    /// How long each renderer renders each format in one run, in seconds.
    pub render_seconds: f64,
    /// Ingest: calls in flight, the length and number of the alternating slices per server,
    /// and how long one call in flight is measured per server.
    pub ingest_in_flight: usize,
    pub ingest_slice: Duration,
    pub ingest_slices: usize,
    pub ingest_single: Duration,
    pub ingest_batch: Duration,
    /// Scale: store sizes, publishes per size and run, wrk seconds per size and run.
    pub scale_sizes: Vec<usize>,
    pub scale_publishes: usize,
    pub scale_wrk_seconds: u64,
    /// How long Scale waits for the feed to show the last publish of a run.
    pub scale_show_timeout: Duration,
    /// How long the Soak runs (once, whatever `runs` says).
    pub soak: Duration,
}

impl Mode {
    fn from_args(args: &Args) -> Self {
        let runs = args.runs.unwrap_or(if args.quick { 1 } else { 5 }).max(1);
        Self {
            quick: args.quick,
            runs,
            wrk_duration: Duration::from_secs(if args.quick { 3 } else { 10 }),
            wrk_slices: if args.quick { 3 } else { 5 },
            wrk_connections: args.connections,
            wrk_threads: args.wrk_threads,
            fresh_publishes: if args.quick { 200 } else { 1000 },
            fresh_rate: 1000,
            fresh_sequential: if args.quick { 50 } else { 100 },
            poll_interval: Duration::from_micros(args.poll_interval_us),
            render_seconds: if args.quick { 0.3 } else { 1.0 },
            ingest_in_flight: args.in_flight.max(1),
            ingest_slice: Duration::from_secs(if args.quick { 1 } else { 2 }),
            ingest_slices: if args.quick { 2 } else { 3 },
            ingest_single: Duration::from_millis(if args.quick { 500 } else { 1500 }),
            ingest_batch: Duration::from_millis(if args.quick { 1500 } else { 3000 }),
            scale_sizes: args.scale_sizes.clone().unwrap_or_else(|| {
                if args.quick {
                    vec![10_000, 100_000]
                } else {
                    vec![10_000, 100_000, 1_000_000]
                }
            }),
            scale_publishes: if args.quick { 20 } else { 50 },
            scale_wrk_seconds: if args.quick { 1 } else { 2 },
            scale_show_timeout: Duration::from_secs(if args.quick { 60 } else { 120 }),
            soak: Duration::from_secs_f64(
                60.0 * args
                    .minutes
                    .unwrap_or(if args.quick { 0.5 } else { 30.0 })
                    .max(0.0),
            ),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let work = match WorkDir::create() {
        Ok(work) => work,
        Err(e) => {
            eprintln!("feedpub-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // One worker thread: the load the bench itself puts on the 2-core machine stays small,
    // and connection tasks still run (and close) while the main thread waits for a child.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run_all(&args, work.path()));
    drop(runtime);
    match result {
        Ok(table) => {
            println!("{table}");
            work.finish(args.keep || args.perf);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("feedpub-bench: {e:#}");
            eprintln!(
                "feedpub-bench: logs and configuration kept in {}",
                work.path().display()
            );
            work.finish(true);
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen benchmarks `mode.runs` times each and returns the report.
async fn run_all(args: &Args, work: &Path) -> anyhow::Result<String> {
    let mode = Mode::from_args(args);
    let benches = if args.benchmarks.is_empty() {
        // The Soak is long by design (30 minutes): the suite keeps to its 15 minutes without
        // it, and `feedpub-bench soak` runs it alone. Replicas needs a PostgreSQL server
        // (--database-url) and runs when named: `feedpub-bench replicas`. Micro measures
        // choices inside feedpub, not feedpub against its peers: `feedpub-bench micro`.
        Bench::ALL
            .into_iter()
            .filter(|b| !matches!(b, Bench::Soak | Bench::Replicas | Bench::Micro))
            .collect()
    } else {
        args.benchmarks.clone()
    };
    let feedpub_bin = match &args.feedpub {
        // feedpub runs in the working folder: a relative path would not resolve there.
        Some(path) => {
            std::fs::canonicalize(path).with_context(|| format!("--feedpub {}", path.display()))?
        }
        None => build_feedpub()?,
    };
    let log = args.feedpub_log.as_deref();
    let started = Instant::now();
    let mut machine = report::Machine::describe(&mode);
    let mut report = report::Report::default();

    // Every benchmark's runs are done together. Serve and Freshness share one feedpub:
    // freshness adds articles to the feed the serve benchmark measures, so serve goes first
    // and always sees the same 50 articles. Ingest, Scale and Soak start feedpubs of their own.
    let mut shared: Option<fixture::Fixture> = None;
    for bench in Bench::ALL {
        if !benches.contains(&bench) {
            continue;
        }
        if matches!(bench, Bench::Serve | Bench::Freshness) && shared.is_none() {
            let fixture = fixture::Fixture::start(&feedpub_bin, work, log, args.perf).await?;
            fixture.publish_data_set().await?;
            shared = Some(fixture);
        }
        if matches!(
            bench,
            Bench::Ingest | Bench::Scale | Bench::Soak | Bench::Replicas
        ) && let Some(fixture) = shared.take()
        {
            fixture.stop()?;
        }
        match bench {
            Bench::Render => {
                let render = render::Render::setup(work, &mode)?;
                machine.peers.push(render.peer_versions());
                for run in 0..mode.runs {
                    report.add(run, render.run(run)?);
                }
            }
            Bench::Serve => {
                let fixture = shared.as_ref().expect("started above");
                let serve = serve::Serve::setup(fixture, work, &mode).await?;
                machine.peers.push(serve.peer_versions());
                for run in 0..mode.runs {
                    report.add(run, serve.run(run).await?);
                }
                serve.stop();
            }
            Bench::Freshness => {
                let fixture = shared.as_ref().expect("started above");
                for run in 0..mode.runs {
                    report.add(run, freshness::run(fixture, &mode, run).await?);
                }
            }
            Bench::Ingest => {
                let ingest = ingest::Ingest::setup(&feedpub_bin, work, &mode, log)?;
                machine
                    .peers
                    .push(ingest.peer_versions(ingest.frames(0)?.largest_frame()));
                for run in 0..mode.runs {
                    report.add(run, ingest.run(run).await?);
                }
                ingest.stop();
            }
            Bench::Scale => {
                let scale = scale::Scale::setup(&feedpub_bin, work, &mode, log).await?;
                for run in 0..mode.runs {
                    report.add(run, scale.run(run).await?);
                }
                scale.stop()?;
            }
            Bench::Replicas => {
                let replicas = replicas::Replicas::setup(
                    &feedpub_bin,
                    work,
                    &mode,
                    log,
                    args.database_url.as_deref(),
                )
                .await?;
                machine.peers.push(replicas.peer_versions());
                for run in 0..mode.runs {
                    report.add(run, replicas.run(run).await?);
                }
            }
            Bench::Micro => {
                for run in 0..mode.runs {
                    report.add(run, micro::run(&mode));
                }
            }
            Bench::Soak => {
                // One long run, not `runs` of them: its figures are about time passing.
                let outcome = soak::run(&feedpub_bin, &work.join("soak"), mode.soak, log).await?;
                eprintln!("{}", outcome.table());
                if let Some(path) = &args.soak_json {
                    let json = serde_json::to_string_pretty(&outcome.json())?;
                    std::fs::write(path, json)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                report.add(0, outcome.figures());
            }
        }
    }
    if let Some(fixture) = shared {
        fixture.stop()?;
    }
    machine.finish(started.elapsed());
    Ok(report.render(&machine))
}

/// Builds `target/release/feedpub` and `feedpub-echo` beside it (a no-op when fresh), so
/// the figures are never those of a stale binary: `cargo run --bin feedpub-bench` builds
/// only the bench itself.
fn build_feedpub() -> anyhow::Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building target/release/feedpub and feedpub-echo …");
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "feedpub"])
        .args(["--bin", "feedpub-echo"])
        .current_dir(manifest_dir)
        .status()
        .context("cannot run cargo to build feedpub")?;
    anyhow::ensure!(status.success(), "cargo build --release failed ({status})");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target"));
    let bin = target.join("release").join("feedpub");
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

/// A fresh folder under the system temp dir holding everything a run writes.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("feedpub-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder, unless it is to be kept for inspection.
    fn finish(self, keep: bool) {
        if keep {
            eprintln!("working folder kept: {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}
